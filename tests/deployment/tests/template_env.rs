//! No drift between `template.yaml` and the code: for each function, the environment variables
//! the template sets are exactly those its configuration reads, less the ones Lambda provides
//! and the optional ones the template deliberately leaves at their defaults — and with only the
//! template's variables, the configuration loads. Likewise for `docs/configuration.md`: each
//! component's table lists exactly what it reads.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use sdk::config::Env;
use yaml_rust2::{Yaml, YamlLoader};

/// Records every variable asked for, answering from `values`.
struct Recording {
    values: HashMap<String, String>,
    asked: RefCell<BTreeSet<String>>,
}

impl Recording {
    fn new(values: HashMap<String, String>) -> Self {
        Self {
            values,
            asked: RefCell::new(BTreeSet::new()),
        }
    }
}

impl Env for Recording {
    fn var(&self, name: &str) -> Option<String> {
        self.asked.borrow_mut().insert(name.to_string());
        self.values.get(name).cloned()
    }
}

/// Set by Lambda itself, never by the template.
const FROM_LAMBDA: [&str; 1] = ["AWS_REGION"];
/// Read, but left at their defaults in AWS on purpose.
const LEFT_AT_DEFAULT: [&str; 2] = [
    "KAFKA_SSL_CA_LOCATION", // the system trust store holds MSK's CA
    "KAFKA_CLIENT_ID",       // the function's name is a fine client id
];

fn template() -> Yaml {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    YamlLoader::load_from_str(&text).unwrap().remove(0)
}

/// The environment variable names a function resource sets.
fn template_vars(template: &Yaml, resource: &str) -> BTreeSet<String> {
    let variables = &template["Resources"][resource]["Properties"]["Environment"]["Variables"];
    let hash = variables
        .as_hash()
        .unwrap_or_else(|| panic!("{resource} sets no environment"));
    hash.keys()
        .map(|k| k.as_str().unwrap().to_string())
        .collect()
}

/// Plausible values for every variable any function reads.
fn sample() -> HashMap<String, String> {
    [
        ("KAFKA_BOOTSTRAP_SERVERS", "b-1.msk:9098"),
        ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
        ("AWS_REGION", "eu-west-1"),
        ("STANDBY_TABLE_NAME", "standby"),
        ("STATE_TABLE_NAME", "state"),
        ("STANDBY_DEAD_LETTER_TOPIC", "dlt"),
        ("EVENT_TOPICS", "orders.*"),
        ("CPU_ALARM_NAME", "prod-broker-cpu-high"),
        ("STANDBY_PRODUCER_ID", "checkout-1"),
        ("STANDBY_METRICS_SERVICE", "checkout"),
        ("EVENT_TYPES_TABLE", "event-types"),
        ("GATEWAY_IDS_TABLE", "gateway-ids"),
        ("JWT_ISSUER", "https://issuer.example"),
        ("JWT_AUDIENCE", "partner-events"),
        (
            "MSK_CLUSTER_ARN",
            "arn:aws:kafka:eu-west-1:123456789012:cluster/prod/abc",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The variables a configuration loader reads, and whether it loads from the template's alone.
fn check(resource: &str, load: impl Fn(&Recording) -> Result<(), String>) {
    let template = template();
    let set = template_vars(&template, resource);

    let recording = Recording::new(sample());
    load(&recording).unwrap_or_else(|e| panic!("{resource}: sample configuration rejected: {e}"));
    let read: BTreeSet<String> = recording
        .asked
        .into_inner()
        .into_iter()
        .filter(|v| !FROM_LAMBDA.contains(&v.as_str()) && !LEFT_AT_DEFAULT.contains(&v.as_str()))
        .collect();
    assert_eq!(
        set, read,
        "{resource}: template variables (left) vs variables the code reads (right)"
    );

    // Only the template's variables (plus what Lambda sets): the function starts.
    let mut values: HashMap<String, String> = set
        .iter()
        .map(|v| {
            (
                v.clone(),
                sample().get(v).cloned().unwrap_or_else(|| default_for(v)),
            )
        })
        .collect();
    values.insert("AWS_REGION".into(), "eu-west-1".into());
    load(&Recording::new(values)).unwrap_or_else(|e| {
        panic!("{resource}: does not start with the template's variables: {e}")
    });
}

/// A stand-in for a `!Ref` to a parameter: the parameter's default in the template.
fn default_for(var: &str) -> String {
    let numbers = [
        ("KAFKA_DELIVERY_TIMEOUT_MS", "20000"),
        ("REPUBLISH_MARGIN_MS", "3000"),
        ("SWEEP_MIN_AGE_SECONDS", "3600"),
        ("SWEEP_PAGE_SIZE", "500"),
        ("SWEEP_MARKER_GRACE_SECONDS", "60"),
        ("CPU_THRESHOLD_PERCENT", "60"),
        ("TOO_HOT_PERCENT", "70"),
        ("BROKERS_PER_AZ_STEP", "1"),
        ("MAX_BROKERS", "30"),
        ("BROKER_QUOTA", "30"),
        ("SCALE_COOLDOWN_SECONDS", "3600"),
        ("CPU_WINDOW_MINUTES", "5"),
        ("DRY_RUN", "false"),
        ("REBALANCE_MAX_PARTITIONS_IN_FLIGHT", "50"),
        ("REBALANCE_MAX_MOVES_PER_BROKER", "10"),
        ("REBALANCE_THROTTLE_BYTES_PER_SEC", "52428800"),
        ("REBALANCE_MAX_BYTES_IN_FLIGHT_PER_BROKER", "10737418240"),
        ("REBALANCE_EXCLUDED_TOPICS", ""),
        ("REBALANCE_RACK_MODE", "spread"),
        ("REBALANCE_BYTES_MODE", "fewest"),
        ("REBALANCE_POLL_MS", "2000"),
        ("REBALANCE_MARGIN_MS", "10000"),
        ("EVENT_TYPES_CACHE_SECONDS", "30"),
        ("STANDBY_RETENTION_SECONDS", "1209600"),
        ("STANDBY_RECHECK_MAX_MS", "5000"),
        ("STANDBY_SIGNAL_INTERVAL_MS", "1000"),
        ("STANDBY_METRICS_INTERVAL_SECONDS", "60"),
        ("GATEWAY_ID_WINDOW_HOURS", "24"),
        ("GATEWAY_MAX_BODY_BYTES", "1048576"),
        ("GATEWAY_MAX_EVENTS", "500"),
        ("GATEWAY_MAX_EVENT_BYTES", "262144"),
        ("JWKS_URL", "https://issuer.example/.well-known/jwks.json"),
        ("JWT_ALGORITHMS", "RS256"),
        ("JWT_CLIENT_ID_CLAIMS", "client_id,azp"),
        ("JWT_LEEWAY_SECONDS", "30"),
        ("JWKS_MIN_REFETCH_SECONDS", "30"),
    ];
    numbers.iter().find(|(name, _)| *name == var).map_or_else(
        || panic!("no sample value for {var}"),
        |(_, value)| value.to_string(),
    )
}

#[test]
fn republisher_environment_matches_the_template() {
    check("RepublisherFunction", |env| {
        republisher::settings::Settings::from_env(env)
            .map(drop)
            .map_err(|e| e.to_string())
    });
}

#[test]
fn autoscaler_environment_matches_the_template() {
    check("AutoscalerFunction", |env| {
        autoscaler::settings::Settings::from_env(env)
            .map(drop)
            .map_err(|e| e.to_string())
    });
}

#[test]
fn rebalancer_environment_matches_the_template() {
    check("RebalancerFunction", |env| {
        let settings = rebalancer::settings::Settings::from_env(env).map_err(|e| e.to_string())?;
        assert!(
            settings.handoff.is_some(),
            "the template wires the autoscaler's handoff"
        );
        Ok(())
    });
}

/// What the gateway reads: its own settings and the producer fallback's.
fn load_gateway(env: &Recording) -> Result<(), String> {
    gateway::settings::Settings::from_env(env).map_err(|e| e.to_string())?;
    sdk::fallback::FallbackProducer::config_from_env(env)
        .map(drop)
        .map_err(|e| e.to_string())
}

#[test]
fn gateway_environment_matches_the_template() {
    check("GatewayFunction", load_gateway);
}

/// The variables listed in the first column of the table under `## {section}` in
/// `docs/configuration.md` (the one place each is documented).
fn documented(section: &str) -> BTreeSet<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let text = std::fs::read_to_string(path).unwrap();
    let heading = format!("## {section}");
    let body = text
        .split("\n## ")
        .find(|part| format!("## {part}").starts_with(&heading))
        .unwrap_or_else(|| panic!("docs/configuration.md has no `{heading}` section"));
    body.lines()
        .filter_map(|line| line.strip_prefix('|')?.split('|').next())
        .flat_map(|cell| cell.split('`').skip(1).step_by(2).map(str::to_string))
        .filter(|name| name.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .collect()
}

/// Every variable `load` reads is documented (in its section, or the Kafka connection's when it
/// connects to Kafka), and every variable its section documents is read.
fn check_docs(section: &str, kafka: bool, load: impl Fn(&Recording) -> Result<(), String>) {
    let recording = Recording::new(sample());
    load(&recording).unwrap_or_else(|e| panic!("{section}: sample configuration rejected: {e}"));
    let read: BTreeSet<String> = recording.asked.into_inner();
    let own = documented(section);
    let mut known = own.clone();
    if kafka {
        known.extend(documented("Kafka connection"));
    }
    let undocumented: Vec<_> = read.difference(&known).collect();
    assert!(
        undocumented.is_empty(),
        "{section}: read but not in docs/configuration.md: {undocumented:?}"
    );
    let unread: Vec<_> = own.difference(&read).collect();
    assert!(
        unread.is_empty(),
        "{section}: documented but never read: {unread:?}"
    );
}

#[test]
fn configuration_docs_match_what_the_code_reads() {
    check_docs("Producer SDK", true, |env| {
        sdk::fallback::FallbackProducer::config_from_env(env)
            .map(drop)
            .map_err(|e| e.to_string())
    });
    check_docs("Republisher", true, |env| {
        republisher::settings::Settings::from_env(env)
            .map(drop)
            .map_err(|e| e.to_string())
    });
    check_docs("Autoscaler", false, |env| {
        autoscaler::settings::Settings::from_env(env)
            .map(drop)
            .map_err(|e| e.to_string())
    });
    check_docs("Event gateway", true, load_gateway);
    check_docs("Rebalancer", true, |env| {
        rebalancer::settings::Settings::from_env(env)
            .map(drop)
            .map_err(|e| e.to_string())
    });
}

/// Every environment variable `standbyctl` reads (its flags' fallbacks, and `EDITOR`) is in its
/// section, and nothing else is; the Kafka connection is the shared section's.
#[test]
fn standbyctl_configuration_is_documented() {
    fn env_names(command: &clap::Command, names: &mut BTreeSet<String>) {
        for arg in command.get_arguments() {
            if let Some(name) = arg.get_env() {
                names.insert(name.to_string_lossy().into_owned());
            }
        }
        for sub in command.get_subcommands() {
            env_names(sub, names);
        }
    }
    let mut read = BTreeSet::from(["EDITOR".to_string()]);
    env_names(
        &<standbyctl::cli::Cli as clap::CommandFactory>::command(),
        &mut read,
    );
    assert_eq!(documented("standbyctl"), read);
}
