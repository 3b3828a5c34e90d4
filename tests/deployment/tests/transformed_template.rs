//! Least privilege as CloudFormation receives it: `template.yaml` after SAM's transform (run
//! offline by `sam_transform.py` with SAM's own translator), not as written. SAM adds roles and
//! managed policies of its own (a DynamoDB event source brings `AWSLambdaDynamoDBExecutionRole`,
//! stream reads on every stream); checking the source template would miss them.
//!
//! Needs `.venv` with `aws-sam-cli` (`make setup`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// Actions AWS offers no resource-level permission for: the only ones allowed on `"*"`.
const NO_RESOURCE_LEVEL: [&str; 3] = [
    "cloudwatch:GetMetricData",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn transformed() -> Value {
    as_cloudformation_receives("template.yaml")
}

/// `path` (from the repository root) as JSON, after SAM's transform if it has one.
fn as_cloudformation_receives(path: &str) -> Value {
    let root = repo();
    let python = root.join(".venv/bin/python");
    let output = Command::new(&python)
        .arg(root.join("tests/deployment/sam_transform.py"))
        .arg(root.join(path))
        .output()
        .unwrap_or_else(|e| panic!("running {} (make setup installs it): {e}", python.display()));
    assert!(
        output.status.success(),
        "SAM's transform failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the transform prints JSON")
}

fn resources(template: &Value) -> &serde_json::Map<String, Value> {
    template["Resources"].as_object().expect("Resources")
}

fn of_type<'a>(template: &'a Value, kind: &str) -> BTreeMap<&'a str, &'a Value> {
    resources(template)
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .map(|(name, r)| (name.as_str(), r))
        .collect()
}

/// A value that may be a string or a list of them (after `Fn::If` branches are taken).
fn strings(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    }
}

/// Statements of a policy document, with both branches of a conditional statement.
fn statements(document: &Value) -> Vec<&Value> {
    strings(&document["Statement"])
        .into_iter()
        .flat_map(|s| match s.get("Fn::If").and_then(Value::as_array) {
            Some(branches) => branches[1..].iter().collect(),
            None => vec![s],
        })
        .filter(|s| s.get("Effect").is_some())
        .collect()
}

/// Every IAM policy document in the transformed template, named by where it is.
fn policy_documents(template: &Value) -> Vec<(String, &Value)> {
    let mut documents = Vec::new();
    for (name, role) in of_type(template, "AWS::IAM::Role") {
        for policy in strings(&role["Properties"]["Policies"]) {
            documents.push((
                format!("{name}/{}", policy["PolicyName"]),
                &policy["PolicyDocument"],
            ));
        }
    }
    for kind in ["AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"] {
        for (name, policy) in of_type(template, kind) {
            documents.push((name.to_string(), &policy["Properties"]["PolicyDocument"]));
        }
    }
    documents
}

fn actions(statement: &Value) -> BTreeSet<String> {
    strings(&statement["Action"])
        .into_iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

#[test]
fn every_function_runs_as_a_role_of_the_template_and_sam_adds_none() {
    let template = transformed();
    let roles = of_type(&template, "AWS::IAM::Role");
    assert_eq!(
        roles.keys().copied().collect::<Vec<_>>(),
        [
            "AutoscalerRole",
            "GatewayRole",
            "RebalancerRole",
            "RepublisherRole"
        ],
        "SAM created a role of its own"
    );
    for (name, role) in &roles {
        assert!(
            role["Properties"].get("ManagedPolicyArns").is_none(),
            "{name} has managed policies: {}",
            role["Properties"]["ManagedPolicyArns"]
        );
    }
    for (name, function) in of_type(&template, "AWS::Lambda::Function") {
        let role = &function["Properties"]["Role"]["Fn::GetAtt"][0];
        assert!(
            role.as_str().is_some_and(|r| roles.contains_key(r)),
            "{name} runs as {role}"
        );
    }
}

#[test]
fn no_statement_allows_every_resource_unless_aws_offers_no_narrower_one() {
    let template = transformed();
    let documents = policy_documents(&template);
    assert!(documents.len() >= 5, "{documents:?}");
    for (name, document) in &documents {
        for statement in statements(document) {
            if statement["Effect"] != "Allow" {
                continue;
            }
            let everything = strings(&statement["Resource"]).iter().any(|r| *r == "*");
            let broad: BTreeSet<String> = actions(statement)
                .into_iter()
                .filter(|a| !NO_RESOURCE_LEVEL.contains(&a.as_str()))
                .collect();
            assert!(
                !everything || broad.is_empty(),
                "{name} / {}: {broad:?} on \"*\"",
                statement["Sid"]
            );
            assert!(
                statement.get("NotResource").is_none() && statement.get("NotAction").is_none(),
                "{name} / {}: Allow with NotResource or NotAction",
                statement["Sid"]
            );
        }
    }
}

/// The topic grants carry wildcards for region, account and cluster after their first entry
/// (CloudFormation cannot prefix list elements); a Deny in the same document must keep every
/// such action to the cluster's own topics.
#[test]
fn wildcard_topic_grants_are_held_to_the_cluster_by_a_deny() {
    let template = transformed();
    let mut checked = 0;
    for (name, document) in policy_documents(&template) {
        let statements = statements(document);
        for statement in &statements {
            let text = statement["Resource"].to_string();
            if statement["Effect"] != "Allow" || !text.contains("arn:*:kafka:*:*:topic/*/*/") {
                continue;
            }
            checked += 1;
            let guarded: BTreeSet<String> = statements
                .iter()
                .filter(|s| {
                    s["Effect"] == "Deny" && s["NotResource"].to_string().contains(":topic/")
                })
                .flat_map(|s| actions(s))
                .collect();
            let missing: Vec<_> = actions(statement).difference(&guarded).cloned().collect();
            assert!(
                missing.is_empty(),
                "{name}: {missing:?} not held to the cluster"
            );
        }
    }
    assert_eq!(
        checked, 3,
        "the republisher's, the gateway's and the operators' event topic grants"
    );
}

#[test]
fn the_key_outlives_the_stack_like_the_table_it_encrypts() {
    let template = transformed();
    let keys = of_type(&template, "AWS::KMS::Key");
    assert!(!keys.is_empty());
    for (name, key) in keys {
        assert_eq!(key["DeletionPolicy"], "Retain", "{name}");
        assert_eq!(key["UpdateReplacePolicy"], "Retain", "{name}");
    }
}

#[test]
fn the_rebalancer_and_the_autoscaler_never_run_twice_at_once_nor_retry() {
    let template = transformed();
    let configs = of_type(&template, "AWS::Lambda::EventInvokeConfig");
    for function in ["RebalancerFunction", "AutoscalerFunction"] {
        let properties = &resources(&template)[function]["Properties"];
        assert_eq!(properties["ReservedConcurrentExecutions"], 1, "{function}");
        let config = configs
            .values()
            .find(|c| c["Properties"]["FunctionName"]["Ref"] == function)
            .unwrap_or_else(|| panic!("{function} has no EventInvokeConfig"));
        assert_eq!(
            config["Properties"]["MaximumRetryAttempts"], 0,
            "{function}"
        );
    }
}

#[test]
fn every_function_logs_to_a_group_with_a_retention() {
    let template = transformed();
    let groups = of_type(&template, "AWS::Logs::LogGroup");
    for (name, function) in of_type(&template, "AWS::Lambda::Function") {
        let group = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} logs to no declared group"));
        assert!(
            groups[group]["Properties"].get("RetentionInDays").is_some(),
            "{group} keeps logs forever"
        );
    }
}

#[test]
fn the_failure_bucket_uses_the_tables_key_tls_only_and_expires() {
    let template = transformed();
    let bucket = &resources(&template)["StreamFailureBucket"]["Properties"];
    let sse = &bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0];
    assert_eq!(
        sse["ServerSideEncryptionByDefault"]["KMSMasterKeyID"]["Fn::GetAtt"][0],
        "StandbyTableKey"
    );
    // Batches the stream gave up on name items to restore: they are kept as long as the
    // table's point-in-time recovery can bring those items back (35 days).
    let rule = &bucket["LifecycleConfiguration"]["Rules"][0];
    assert_eq!(rule["Status"], "Enabled");
    assert_eq!(
        rule["ExpirationInDays"]["Ref"], "StreamFailureRetentionDays",
        "{rule}"
    );
    assert_eq!(
        template["Parameters"]["StreamFailureRetentionDays"]["Default"], 35,
        "the default is the point-in-time recovery window"
    );
    for table in ["StandbyTable", "StateTable"] {
        assert_eq!(
            resources(&template)[table]["Properties"]["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
            true,
            "{table}"
        );
    }
    let policy = of_type(&template, "AWS::S3::BucketPolicy");
    let statement =
        &policy["StreamFailureBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0];
    assert_eq!(statement["Effect"], "Deny");
    assert_eq!(
        statement["Condition"]["Bool"]["aws:SecureTransport"],
        "false"
    );
}

/// CloudFormation matches AllowedPattern against the whole value.
fn allowed(template: &Value, parameter: &str, value: &str) -> bool {
    let pattern = template["Parameters"][parameter]["AllowedPattern"]
        .as_str()
        .unwrap_or_else(|| panic!("{parameter} has no AllowedPattern"));
    regex_lite::Regex::new(&format!("^(?:{pattern})$"))
        .unwrap()
        .is_match(value)
}

#[test]
fn event_topics_has_no_default_and_never_means_every_topic() {
    let template = transformed();
    assert!(
        template["Parameters"]["EventTopics"]
            .get("Default")
            .is_none()
    );
    for good in ["orders", "orders.*", "orders.*,payments", "a_b-c.d*"] {
        assert!(allowed(&template, "EventTopics", good), "{good}");
    }
    for bad in [
        "*",
        "",
        "orders,*",
        "or*ders",
        "orders, payments",
        "*.orders",
    ] {
        assert!(!allowed(&template, "EventTopics", bad), "{bad:?}");
    }
    // The code reads the same list, with the same rules.
    for value in ["orders.*,payments", "*", "orders,*"] {
        assert_eq!(
            allowed(&template, "EventTopics", value),
            shared::topics::TopicAllowList::parse(value).is_some(),
            "{value}"
        );
    }
}

/// The intrinsic functions the policies use, evaluated with `params` (pseudo parameters
/// included); `Fn::GetAtt` becomes `<Resource.Attribute>`.
fn eval(value: &Value, params: &HashMap<&str, &str>) -> Value {
    let text = |v: &Value| eval(v, params).as_str().unwrap_or_default().to_string();
    let list = |v: &Value| match eval(v, params) {
        Value::Array(items) => items,
        other => panic!("expected a list, got {other}"),
    };
    let Some((function, args)) = value.as_object().and_then(|o| o.iter().next()) else {
        return match value {
            Value::Array(items) => Value::Array(items.iter().map(|v| eval(v, params)).collect()),
            other => other.clone(),
        };
    };
    match function.as_str() {
        "Ref" => Value::from(params[args.as_str().unwrap()]),
        "Fn::GetAtt" => Value::from(format!(
            "<{}.{}>",
            args[0].as_str().unwrap(),
            args[1].as_str().unwrap()
        )),
        "Fn::Split" => {
            let delimiter = args[0].as_str().unwrap();
            Value::from(text(&args[1]).split(delimiter).collect::<Vec<_>>())
        }
        "Fn::Join" => {
            let parts: Vec<String> = list(&args[1])
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            Value::from(parts.join(args[0].as_str().unwrap()))
        }
        "Fn::Select" => list(&args[1])[args[0].as_u64().unwrap() as usize].clone(),
        "Fn::Sub" => {
            let (template, vars) = match args {
                Value::String(template) => (template.clone(), serde_json::Map::new()),
                _ => (
                    args[0].as_str().unwrap().to_string(),
                    args[1].as_object().unwrap().clone(),
                ),
            };
            let mut out = template;
            for (name, value) in &vars {
                out = out.replace(&format!("${{{name}}}"), &text(value));
            }
            for (name, value) in params {
                out = out.replace(&format!("${{{name}}}"), value);
            }
            Value::from(out)
        }
        _ => value.clone(),
    }
}

/// IAM's wildcard match: `*` any run of characters, `?` one.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    fn go(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(&p, &t)
}

fn sample_parameters() -> HashMap<&'static str, &'static str> {
    HashMap::from([
        ("AWS::Partition", "aws"),
        ("AWS::Region", "eu-west-1"),
        ("AWS::AccountId", "123456789012"),
        (
            "MskClusterArn",
            "arn:aws:kafka:eu-west-1:123456789012:cluster/prod/abc-1",
        ),
        ("EventTopics", "orders.*,payments"),
        ("ProducerTopics", "orders.*,payments"),
        ("DeadLetterTopic", "standby-events-dlt"),
        (
            "StandbyTableArn",
            "arn:aws:dynamodb:eu-west-1:123456789012:table/standby-events",
        ),
        (
            "StandbyTableKeyArn",
            "arn:aws:kms:eu-west-1:123456789012:key/k",
        ),
    ])
}

/// Whether `document` lets an identity do `action` on `resource`: an Allow matches and no Deny
/// does (a `NotResource` Deny applies to everything outside its patterns).
fn permitted(document: &Value, action: &str, resource: &str, params: &HashMap<&str, &str>) -> bool {
    let patterns = |s: &Value, key: &str| -> Vec<String> {
        match eval(&s[key], params) {
            Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect(),
            Value::String(one) => vec![one],
            _ => Vec::new(),
        }
    };
    let mut allowed = false;
    for statement in statements(document) {
        if !actions(statement).contains(action) {
            continue;
        }
        let matches = if statement.get("NotResource").is_some() {
            !patterns(statement, "NotResource")
                .iter()
                .any(|p| glob(p, resource))
        } else {
            patterns(statement, "Resource")
                .iter()
                .any(|p| glob(p, resource))
        };
        match (statement["Effect"].as_str(), matches) {
            (Some("Deny"), true) => return false,
            (Some("Allow"), true) => allowed = true,
            _ => {}
        }
    }
    allowed
}

/// The topic grants, evaluated with sample parameters and read as IAM reads them: exactly this
/// cluster's EventTopics (and the dead-letter topic), whatever the wildcards in the ARNs.
#[test]
fn the_functions_may_write_exactly_this_clusters_event_topics() {
    let template = transformed();
    let params = sample_parameters();
    let ours = "arn:aws:kafka:eu-west-1:123456789012:topic/prod/abc-1";
    let other_cluster = "arn:aws:kafka:eu-west-1:123456789012:topic/staging/xyz-9";
    for (name, document) in policy_documents(&template) {
        if !(name.starts_with("RepublisherRole")
            || name.starts_with("GatewayRole")
            || name == "StandbyOperatorPolicy")
        {
            continue;
        }
        for (topic, expected) in [
            (format!("{ours}/orders.created"), true),
            (format!("{ours}/payments"), true),
            (format!("{ours}/standby-events-dlt"), true),
            (format!("{ours}/payments.v2"), false),
            (format!("{ours}/audit"), false),
            (format!("{other_cluster}/payments"), false),
            (format!("{other_cluster}/orders.created"), false),
            (
                "arn:aws:kafka:us-east-1:999999999999:topic/prod/abc-1/payments".into(),
                false,
            ),
        ] {
            assert_eq!(
                permitted(document, "kafka-cluster:WriteData", &topic, &params),
                expected,
                "{name}: {topic}"
            );
        }
    }
}

/// The producer policies (the main template's and the per-group template) evaluated with
/// sample topics: a producer may write only its topics' partition keys.
#[test]
fn producer_policies_cover_exactly_their_topics_partition_keys() {
    let params = sample_parameters();
    let main = transformed();
    let group = as_cloudformation_receives("templates/producer-policy.yaml");
    // The gateway produces for every event type, so it has the main policy's reach.
    let gateway = &of_type(&main, "AWS::IAM::Role")["GatewayRole"]["Properties"]["Policies"][0]["PolicyDocument"];
    let documents = [&main, &group]
        .map(|template| {
            &of_type(template, "AWS::IAM::ManagedPolicy")["ProducerPolicy"]["Properties"]
                ["PolicyDocument"]
        })
        .into_iter()
        .chain([gateway]);
    for document in documents {
        let table = statements(document)
            .into_iter()
            .find(|s| {
                actions(s).contains("dynamodb:PutItem")
                    && s["Resource"].to_string().contains("StandbyTable")
            })
            .expect("a PutItem statement on the standby table");
        let leading = eval(
            &table["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"],
            &params,
        );
        assert_eq!(leading, serde_json::json!(["orders.*#*", "payments#*"]));
        let may = |pk: &str| {
            leading
                .as_array()
                .unwrap()
                .iter()
                .any(|p| glob(p.as_str().unwrap(), pk))
        };
        assert!(may("orders.created#k#a045eb33f8797f35ea7d5fad7c5e0d02"));
        assert!(may("payments#n#07") && may("payments#backlog"));
        assert!(!may("paymentsx#k#00") && !may("audit#k#00"));
    }
}

#[test]
fn functions_reach_only_the_brokers_and_https_and_the_autoscaler_stays_outside_the_vpc() {
    let template = transformed();
    let resources = resources(&template);
    let egress = &resources["FunctionSecurityGroup"]["Properties"]["SecurityGroupEgress"];
    let rules: Vec<(i64, bool)> = egress
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["FromPort"], r["ToPort"], "{r}");
            (
                r["FromPort"].as_i64().unwrap(),
                r.get("DestinationSecurityGroupId").is_some(),
            )
        })
        .collect();
    assert_eq!(rules, [(9098, true), (443, false)]);
    let ingress = &resources["BrokerIngressFromFunctions"]["Properties"];
    assert_eq!(
        ingress["SourceSecurityGroupId"]["Ref"],
        "FunctionSecurityGroup"
    );
    assert_eq!(ingress["FromPort"], 9098);
    // Without AutoscalerInVpc=true the autoscaler has no VPC configuration.
    let vpc = &resources["AutoscalerFunction"]["Properties"]["VpcConfig"]["Fn::If"];
    assert_eq!(vpc[0], "AutoscalerInVpc");
    assert_eq!(vpc[2]["Ref"], "AWS::NoValue");
}

#[test]
fn keys_are_used_only_through_their_services_and_unused_grants_are_gone() {
    let template = transformed();
    for (name, document) in policy_documents(&template) {
        for statement in statements(document) {
            if actions(statement).iter().any(|a| a.starts_with("kms:")) {
                assert!(
                    statement["Condition"]["StringEquals"]
                        .get("kms:ViaService")
                        .is_some(),
                    "{name} / {}: KMS without kms:ViaService",
                    statement["Sid"]
                );
            }
        }
    }
    let operator = &of_type(&template, "AWS::IAM::ManagedPolicy")["StandbyOperatorPolicy"];
    let granted: BTreeSet<String> = statements(&operator["Properties"]["PolicyDocument"])
        .into_iter()
        .flat_map(actions)
        .collect();
    for unused in ["dynamodb:DeleteItem", "kafka-cluster:AlterGroup"] {
        assert!(!granted.contains(unused), "standbyctl never calls {unused}");
    }
}

/// The gateway's API as API Gateway receives it: every route behind the JWT authorizer (the
/// template's issuer and audience), throttled, and logged without bodies; only this API's routes
/// may invoke the function.
#[test]
fn every_gateway_route_needs_a_token_and_is_throttled_and_logged() {
    let template = transformed();
    let api = &of_type(&template, "AWS::ApiGatewayV2::Api")["GatewayApi"]["Properties"]["Body"];
    let scheme =
        &api["components"]["securitySchemes"]["PartnerJwt"]["x-amazon-apigateway-authorizer"];
    assert_eq!(scheme["type"], "jwt");
    assert_eq!(scheme["identitySource"], "$request.header.Authorization");
    assert_eq!(
        scheme["jwtConfiguration"]["issuer"]["Ref"],
        "GatewayJwtIssuer"
    );
    assert_eq!(
        scheme["jwtConfiguration"]["audience"]["Ref"],
        "GatewayJwtAudience"
    );
    let mut routes = Vec::new();
    for (path, methods) in api["paths"].as_object().expect("paths") {
        for (method, route) in methods.as_object().expect("methods") {
            assert_eq!(
                route["security"],
                serde_json::json!([{"PartnerJwt": []}]),
                "{method} {path} without the authorizer"
            );
            routes.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    routes.sort();
    assert_eq!(
        routes,
        ["GET /event-types", "POST /event-types/{name}/events"]
    );

    let stage = &of_type(&template, "AWS::ApiGatewayV2::Stage")["GatewayApiApiGatewayDefaultStage"]
        ["Properties"];
    assert_eq!(
        stage["DefaultRouteSettings"]["ThrottlingRateLimit"]["Ref"],
        "GatewayThrottleRatePerSecond"
    );
    assert_eq!(
        stage["DefaultRouteSettings"]["ThrottlingBurstLimit"]["Ref"],
        "GatewayThrottleBurst"
    );
    assert_eq!(
        stage["AccessLogSettings"]["DestinationArn"]["Fn::GetAtt"][0],
        "GatewayAccessLogs"
    );
    let format = stage["AccessLogSettings"]["Format"]
        .as_str()
        .expect("a format");
    assert!(
        !format.contains("requestBody") && format.contains("$context.requestId"),
        "{format}"
    );

    for (name, permission) in of_type(&template, "AWS::Lambda::Permission") {
        let properties = &permission["Properties"];
        if properties["FunctionName"]["Ref"] != "GatewayFunction" {
            continue;
        }
        assert_eq!(
            properties["Principal"], "apigateway.amazonaws.com",
            "{name}"
        );
        assert_eq!(
            properties["SourceArn"]["Fn::Sub"][1]["__ApiId__"]["Ref"], "GatewayApi",
            "{name}"
        );
    }
}
