//! No drift between the operators' alarms and dashboard in `template.yaml` and the metrics the
//! code emits: every metric an alarm or a dashboard widget names (namespace, name, dimension
//! names) is declared by a component's metrics family (`sdk::metrics::Family`, which the
//! component cannot emit outside of) with exactly those dimensions, or is one of AWS's own; every
//! declared metric is on the dashboard; every alarm notifies the operators, is on the dashboard's
//! alarm widget and has its runbook entry in the README.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use regex_lite::Regex;
use sdk::metrics::Family;
use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

/// Every component's metrics.
fn families() -> [&'static Family; 6] {
    [
        &republisher::handler::METRICS,
        &autoscaler::handler::METRICS,
        &rebalancer::handler::METRICS,
        &gateway::handler::METRICS,
        &sdk::fallback::METRICS,
        &sdk::consumer::METRICS,
    ]
}

/// AWS's own metrics the template may name: (namespace, names, dimensions).
const AWS_METRICS: &[(&str, &[&str], &[&str])] = &[
    (
        "AWS/Lambda",
        &["Errors", "Throttles", "IteratorAge", "Duration"],
        &["FunctionName"],
    ),
    (
        "AWS/Kafka",
        &["CpuUser", "CpuSystem"],
        &["Broker ID", "Cluster Name"],
    ),
];

/// A metric as an alarm or a widget names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct MetricRef {
    namespace: String,
    name: String,
    dimensions: BTreeSet<String>,
    /// Dimension values it is filtered by (`FunctionName` and `Trigger` are checked).
    filters: BTreeMap<String, BTreeSet<String>>,
    /// Where: the alarm, or the widget's title.
    place: String,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn template() -> Yaml {
    let text = std::fs::read_to_string(repo().join("template.yaml")).unwrap();
    YamlLoader::load_from_str(&text).unwrap().remove(0)
}

fn resources_of_type<'a>(template: &'a Yaml, kind: &str) -> BTreeMap<&'a str, &'a Yaml> {
    template["Resources"]
        .as_hash()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(name, r)| (name.as_str().unwrap(), r))
        .collect()
}

/// The `FunctionName` of every function of the template.
fn function_names(template: &Yaml) -> BTreeSet<String> {
    resources_of_type(template, "AWS::Serverless::Function")
        .values()
        .filter_map(|f| f["Properties"]["FunctionName"].as_str().map(str::to_string))
        .collect()
}

/// `SELECT FN(Metric) FROM SCHEMA(namespace, dimension, …) [WHERE …]`, names quoted or not.
fn parse_insights(query: &str, place: &str) -> MetricRef {
    let select = Regex::new(r#"^SELECT\s+\w+\((\w+)\)\s+FROM\s+SCHEMA\(([^)]*)\)(.*)$"#).unwrap();
    let captures = select.captures(query.trim()).unwrap_or_else(|| {
        panic!("{place}: a Metrics Insights query must read FROM SCHEMA(namespace, dimensions…), so it names exact dimensions: {query}")
    });
    let mut schema = captures[2]
        .split(',')
        .map(|part| part.trim().trim_matches('"').to_string());
    let namespace = schema.next().unwrap();
    let equals = Regex::new(r"(\w+)\s*=\s*'([^']*)'").unwrap();
    let mut filters: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for c in equals.captures_iter(&captures[3]) {
        filters
            .entry(c[1].to_string())
            .or_default()
            .insert(c[2].to_string());
    }
    MetricRef {
        namespace,
        name: captures[1].to_string(),
        dimensions: schema.collect(),
        filters,
        place: place.to_string(),
    }
}

fn string(yaml: &Yaml) -> String {
    yaml.as_str()
        .map(str::to_string)
        .or_else(|| yaml.as_i64().map(|n| n.to_string()))
        .unwrap_or_default()
}

/// A metric named by `Namespace`, `MetricName` and `Dimensions` (an alarm, or a `MetricStat`).
fn from_metric_properties(metric: &Yaml, place: &str) -> MetricRef {
    let dimensions = metric["Dimensions"].as_vec().cloned().unwrap_or_default();
    let mut filters: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for d in &dimensions {
        filters
            .entry(string(&d["Name"]))
            .or_default()
            .insert(string(&d["Value"]));
    }
    MetricRef {
        namespace: string(&metric["Namespace"]),
        name: string(&metric["MetricName"]),
        dimensions: dimensions.iter().map(|d| string(&d["Name"])).collect(),
        filters,
        place: place.to_string(),
    }
}

/// Every metric each alarm reads.
fn alarm_metrics(template: &Yaml) -> Vec<MetricRef> {
    let mut found = Vec::new();
    for (name, alarm) in resources_of_type(template, "AWS::CloudWatch::Alarm") {
        let properties = &alarm["Properties"];
        if !properties["MetricName"].is_badvalue() {
            found.push(from_metric_properties(properties, name));
        }
        for metric in properties["Metrics"].as_vec().into_iter().flatten() {
            if !metric["MetricStat"].is_badvalue() {
                found.push(from_metric_properties(
                    &metric["MetricStat"]["Metric"],
                    name,
                ));
            } else if let Some(query) = metric["Expression"]
                .as_str()
                .filter(|e| e.starts_with("SELECT"))
            {
                found.push(parse_insights(query, name));
            }
        }
    }
    found
}

/// The dashboard's body as CloudWatch receives it, with the template's `${…}` substituted:
/// numbers for number parameters, names elsewhere.
fn dashboard(template: &Yaml) -> Value {
    let dashboards = resources_of_type(template, "AWS::CloudWatch::Dashboard");
    assert_eq!(dashboards.len(), 1, "one dashboard");
    let body = dashboards.values().next().unwrap()["Properties"]["DashboardBody"]
        .as_str()
        .expect("DashboardBody is a !Sub string")
        .to_string();
    let parameters = template["Parameters"].as_hash().unwrap();
    let substitution = Regex::new(r"\$\{([^}]+)\}").unwrap();
    let body = substitution.replace_all(&body, |c: &regex_lite::Captures| {
        let name = Yaml::String(c[1].to_string());
        match parameters.get(&name) {
            Some(p) if p["Type"].as_str() == Some("Number") => string(&p["Default"]),
            _ => c[1].replace([':', '.'], "-"),
        }
    });
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("the dashboard body is not JSON: {e}"))
}

/// Every metric the dashboard's widgets show.
fn dashboard_metrics(body: &Value) -> Vec<MetricRef> {
    let mut found = Vec::new();
    for widget in body["widgets"].as_array().unwrap() {
        let place = widget["properties"]["title"]
            .as_str()
            .unwrap_or("untitled widget")
            .to_string();
        for metric in widget["properties"]["metrics"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let parts = metric.as_array().unwrap();
            if let Some(expression) = parts[0].get("expression").and_then(Value::as_str) {
                if expression.starts_with("SELECT") {
                    found.push(parse_insights(expression, &place));
                }
                continue;
            }
            let names: Vec<&str> = parts.iter().filter_map(Value::as_str).collect();
            assert!(
                !names.contains(&"."),
                "{place}: write every metric out in full, without \".\" for \"as above\""
            );
            let pairs: Vec<(&str, &str)> = names[2..].chunks(2).map(|p| (p[0], p[1])).collect();
            let mut filters: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for (k, v) in &pairs {
                filters
                    .entry(k.to_string())
                    .or_default()
                    .insert(v.to_string());
            }
            found.push(MetricRef {
                namespace: names[0].to_string(),
                name: names[1].to_string(),
                dimensions: pairs.iter().map(|(k, _)| k.to_string()).collect(),
                filters,
                place: place.clone(),
            });
        }
    }
    found
}

/// The (trigger, metric) pairs the republisher emits: a stream batch that republished an event,
/// and a sweep, through the functions that build its documents.
fn republisher_emits() -> BTreeSet<(String, String)> {
    use republisher::engine::{Outcome, Report};
    let report = Report {
        outcomes: vec![Outcome::Republished {
            latency: std::time::Duration::from_millis(3),
        }],
        ..Report::default()
    };
    let stream = republisher::handler::stream_metrics("republisher", &[], &report, 0);
    let sweep = republisher::handler::sweep_metrics(
        "republisher",
        &republisher::sweep::SweepReport::default(),
    );
    stream
        .names()
        .map(|n| ("stream".to_string(), n.to_string()))
        .chain(sweep.names().map(|n| ("sweep".to_string(), n.to_string())))
        .collect()
}

/// Why `metric` matches nothing the code or AWS emits, if it does not.
fn mismatch(metric: &MetricRef, functions: &BTreeSet<String>) -> Option<String> {
    let named = metric
        .filters
        .get("FunctionName")
        .cloned()
        .unwrap_or_default();
    let unknown_functions: Vec<_> = named.difference(functions).collect();
    if !unknown_functions.is_empty() {
        return Some(format!(
            "{}: {} filters by FunctionName {unknown_functions:?}, not a function of the template",
            metric.place, metric.name
        ));
    }
    if let Some((_, names, dimensions)) = AWS_METRICS
        .iter()
        .find(|(namespace, _, _)| *namespace == metric.namespace)
    {
        let expected: BTreeSet<String> = dimensions.iter().map(|d| d.to_string()).collect();
        return (!names.contains(&metric.name.as_str()) || metric.dimensions != expected).then(
            || {
                format!(
                    "{}: {}/{} {:?} is none of AWS's metrics this template knows",
                    metric.place, metric.namespace, metric.name, metric.dimensions
                )
            },
        );
    }
    let in_namespace: Vec<_> = families()
        .into_iter()
        .filter(|f| f.namespace == metric.namespace)
        .collect();
    if in_namespace.is_empty() {
        return Some(format!(
            "{}: nothing emits namespace {}",
            metric.place, metric.namespace
        ));
    }
    let emitted = in_namespace.iter().any(|f| {
        f.metrics.contains(&metric.name.as_str())
            && f.dimensions
                .iter()
                .map(|d| d.to_string())
                .collect::<BTreeSet<_>>()
                == metric.dimensions
    });
    if emitted && metric.dimensions.contains("Trigger") {
        let pairs = republisher_emits();
        for trigger in metric.filters.get("Trigger").into_iter().flatten() {
            if !pairs.contains(&(trigger.clone(), metric.name.clone())) {
                return Some(format!(
                    "{}: the republisher emits {} only for other triggers than {trigger}",
                    metric.place, metric.name
                ));
            }
        }
    }
    (!emitted).then(|| {
        format!(
            "{}: {}/{} with dimensions {:?} is not emitted; {}",
            metric.place,
            metric.namespace,
            metric.name,
            metric.dimensions,
            in_namespace
                .iter()
                .map(|f| format!(
                    "{} emits {:?} with {:?}",
                    f.component, f.metrics, f.dimensions
                ))
                .collect::<Vec<_>>()
                .join("; ")
        )
    })
}

#[test]
fn alarms_and_the_dashboard_name_only_metrics_the_code_or_aws_emits() {
    let template = template();
    let functions = function_names(&template);
    let referenced: Vec<MetricRef> = alarm_metrics(&template)
        .into_iter()
        .chain(dashboard_metrics(&dashboard(&template)))
        .collect();
    assert!(referenced.len() > 50, "parsed too little: {referenced:?}");
    let problems: Vec<String> = referenced
        .iter()
        .filter_map(|m| mismatch(m, &functions))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_metric_the_code_emits_is_on_the_dashboard() {
    let template = template();
    let shown: BTreeSet<(String, String)> = dashboard_metrics(&dashboard(&template))
        .into_iter()
        .map(|m| (m.namespace, m.name))
        .collect();
    let missing: Vec<String> = families()
        .iter()
        .flat_map(|f| {
            f.metrics
                .iter()
                .filter(|name| !shown.contains(&(f.namespace.to_string(), name.to_string())))
                .map(|name| format!("{}: {}/{name}", f.component, f.namespace))
        })
        .collect();
    assert!(missing.is_empty(), "not on the dashboard: {missing:?}");
}

#[test]
fn every_alarm_wakes_the_operators_is_on_the_dashboard_and_has_a_runbook() {
    let template = template();
    let body = dashboard(&template);
    let on_dashboard: BTreeSet<String> = body["widgets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["type"] == "alarm")
        .flat_map(|w| w["properties"]["alarms"].as_array().unwrap().clone())
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let runbook = Regex::new(r#"README "Alarms": ([a-z-]+)"#).unwrap();
    let mut checked = 0;
    for (name, alarm) in resources_of_type(&template, "AWS::CloudWatch::Alarm") {
        let properties = &alarm["Properties"];
        // The CPU alarm acts: it invokes the autoscaler rather than waking anyone.
        if name == "BrokerCpuAlarm" {
            continue;
        }
        for actions in ["AlarmActions", "OKActions"] {
            assert_eq!(
                properties[actions]
                    .as_vec()
                    .map(|v| v.iter().map(string).collect::<Vec<_>>()),
                Some(vec!["AlarmTopicArn".to_string()]),
                "{name}: {actions} must notify the AlarmTopicArn topic"
            );
        }
        assert!(
            on_dashboard.contains(&format!("{name}-Arn")),
            "{name} is not on the dashboard's alarm widget"
        );
        let description = string(&properties["AlarmDescription"]);
        let entry = runbook.captures(&description).unwrap_or_else(|| {
            panic!(
                "{name}: its description must name its runbook entry: README \"Alarms\": <entry>"
            )
        });
        assert!(
            readme.contains(&format!("<a id=\"alarm-{}\"></a>", &entry[1])),
            "README has no runbook entry alarm-{} for {name}",
            &entry[1]
        );
        checked += 1;
    }
    assert!(checked >= 12, "only {checked} alarms");
}

#[test]
fn a_producer_document_carries_every_metric_of_its_family() {
    let document = sdk::fallback::Tally::default()
        .metrics("checkout", 0)
        .to_emf(0)
        .unwrap();
    let emitted: Vec<&str> = document["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Name"].as_str().unwrap())
        .collect();
    assert_eq!(emitted, sdk::fallback::METRICS.metrics);
    assert_eq!(document["Service"], "checkout");
}

/// The risks operators must be woken for each have an alarm on the metric that shows them, and
/// every function's errors are watched.
#[test]
fn every_risk_has_its_alarm() {
    let template = template();
    let alarmed: BTreeSet<(String, String)> = alarm_metrics(&template)
        .into_iter()
        .map(|m| (m.namespace, m.name))
        .collect();
    let required = [
        ("StandbyEvents", "ExpiredByTtl"),
        ("StandbyEvents", "HeldKeys"),
        ("StandbyEvents", "OldestRecordAge"),
        ("AWS/Lambda", "IteratorAge"),
        ("AWS/Lambda", "Errors"),
        ("AWS/Lambda", "Throttles"),
        ("StandbyEvents", "DeadLettered"),
        ("StandbyEvents/Producer", "DeadLettered"),
        ("StandbyEvents/Consumer", "DeadLettered"),
        ("StandbyEvents/Producer", "Diverted"),
        ("MskRebalancer", "Finished"),
        ("MskAutoscaler", "RecommendLargerBrokerType"),
    ];
    let missing: Vec<_> = required
        .iter()
        .filter(|(ns, name)| !alarmed.contains(&(ns.to_string(), name.to_string())))
        .collect();
    assert!(missing.is_empty(), "no alarm on {missing:?}");
    let errors_watched: BTreeSet<String> = alarm_metrics(&template)
        .into_iter()
        .filter(|m| m.namespace == "AWS/Lambda" && m.name == "Errors")
        .flat_map(|m| m.filters.get("FunctionName").cloned().unwrap_or_default())
        .collect();
    assert_eq!(errors_watched, function_names(&template));
}
