//! The rebalancer's configuration, read once per execution environment. The variables, their
//! defaults and meanings are documented in `docs/configuration.md` (Rebalancer), which a test
//! checks against what [`Settings::from_env`] reads.

use std::path::PathBuf;
use std::time::Duration;

use sdk::ConfigError;
use sdk::config::{self, Env};
use sdk::kafka::{KafkaSettings, Security};

use crate::admin::Transport;
use crate::executor::Limits;
use crate::planner::{BytesMode, Options, RackMode};

pub const MAX_PARTITIONS_IN_FLIGHT: &str = "REBALANCE_MAX_PARTITIONS_IN_FLIGHT";
pub const MAX_MOVES_PER_BROKER: &str = "REBALANCE_MAX_MOVES_PER_BROKER";
pub const THROTTLE_BYTES_PER_SEC: &str = "REBALANCE_THROTTLE_BYTES_PER_SEC";
pub const MAX_BYTES_IN_FLIGHT_PER_BROKER: &str = "REBALANCE_MAX_BYTES_IN_FLIGHT_PER_BROKER";
pub const EXCLUDED_TOPICS: &str = "REBALANCE_EXCLUDED_TOPICS";
pub const RACK_MODE: &str = "REBALANCE_RACK_MODE";
pub const BYTES_MODE: &str = "REBALANCE_BYTES_MODE";
pub const POLL_MS: &str = "REBALANCE_POLL_MS";
pub const MARGIN_MS: &str = "REBALANCE_MARGIN_MS";

#[derive(Debug, Clone)]
pub struct Settings {
    pub bootstrap_servers: String,
    pub transport: Transport,
    pub limits: Limits,
    pub options: Options,
    /// Where the autoscaler hands over new broker ids.
    pub handoff: Option<HandoffSource>,
}

/// The state table the autoscaler writes its handoff to, and the cluster the handoff is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoffSource {
    pub state_table: String,
    pub cluster_arn: String,
}

impl Settings {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let kafka = KafkaSettings::admin_from_env(env, "rebalancer")?;
        let positive = |var: &'static str, default: usize| -> Result<usize, ConfigError> {
            let value: usize = config::parsed(env, var, default, "a positive whole number")?;
            if value == 0 {
                return Err(ConfigError::Invalid {
                    var,
                    value: "0".into(),
                    expected: "a positive whole number",
                });
            }
            Ok(value)
        };
        Ok(Self {
            transport: transport(&kafka),
            bootstrap_servers: kafka.bootstrap_servers,
            limits: Limits {
                max_partitions_in_flight: positive(MAX_PARTITIONS_IN_FLIGHT, 50)?,
                max_moves_per_broker: positive(MAX_MOVES_PER_BROKER, 10)?,
                throttle_bytes_per_sec: positive(THROTTLE_BYTES_PER_SEC, 50 * 1024 * 1024)? as u64,
                max_bytes_in_flight_per_broker: positive(
                    MAX_BYTES_IN_FLIGHT_PER_BROKER,
                    10 * 1024 * 1024 * 1024,
                )? as u64,
                poll_interval: config::millis(env, POLL_MS, Duration::from_secs(2))?,
                margin: config::millis(env, MARGIN_MS, Duration::from_secs(10))?,
            },
            options: Options {
                excluded_topics: config::optional(env, EXCLUDED_TOPICS)
                    .map(|list| {
                        list.split(',')
                            .map(str::trim)
                            .filter(|t| !t.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
                racks: config::parsed(env, RACK_MODE, RackMode::Spread, "spread or keep")?,
                bytes: config::parsed(env, BYTES_MODE, BytesMode::Fewest, "fewest or even")?,
            },
            handoff: match (
                config::optional(env, shared::state_table::STATE_TABLE_NAME),
                config::optional(env, "MSK_CLUSTER_ARN"),
            ) {
                (Some(state_table), Some(cluster_arn)) => Some(HandoffSource {
                    state_table,
                    cluster_arn,
                }),
                (None, None) => None,
                (Some(_), None) => {
                    return Err(ConfigError::Missing {
                        var: "MSK_CLUSTER_ARN",
                        hint: "STATE_TABLE_NAME is set, so the handoff needs the cluster it is for",
                    });
                }
                (None, Some(_)) => {
                    return Err(ConfigError::Missing {
                        var: "STATE_TABLE_NAME",
                        hint: "MSK_CLUSTER_ARN is set, so the handoff needs the table it is in",
                    });
                }
            },
        })
    }
}

/// The admin client's transport for the shared Kafka settings.
pub fn transport(kafka: &KafkaSettings) -> Transport {
    let ca_location = kafka.ca_location.as_ref().map(PathBuf::from);
    match &kafka.security {
        Security::Plaintext => Transport::Plaintext,
        Security::Tls => Transport::Tls {
            iam_region: None,
            ca_location,
        },
        Security::MskIam { region } => Transport::Tls {
            iam_region: Some(region.clone()),
            ca_location,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn defaults_exclusions_and_bad_values() {
        let mut env = HashMap::from([
            ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            ("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
            (EXCLUDED_TOPICS, " audit , ,logs"),
        ]);
        let settings = Settings::from_env(&env).unwrap();
        assert_eq!(settings.limits.max_partitions_in_flight, 50);
        assert_eq!(
            settings.options.excluded_topics,
            BTreeSet::from(["audit".to_string(), "logs".to_string()])
        );
        assert_eq!(settings.options.racks, RackMode::Spread);
        assert_eq!(settings.options.bytes, BytesMode::Fewest);
        env.insert(BYTES_MODE, "even");
        env.insert(RACK_MODE, "keep");
        let modes = Settings::from_env(&env).unwrap().options;
        assert_eq!(
            (modes.racks, modes.bytes),
            (RackMode::Keep, BytesMode::Even)
        );
        for (var, bad) in [(BYTES_MODE, "balanced"), (RACK_MODE, "any")] {
            let mut wrong = env.clone();
            wrong.insert(var, bad);
            let err = Settings::from_env(&wrong).unwrap_err();
            assert!(err.to_string().contains(var), "{err}");
        }
        env.insert(MAX_MOVES_PER_BROKER, "0");
        let err = Settings::from_env(&env).unwrap_err();
        assert!(err.to_string().contains(MAX_MOVES_PER_BROKER), "{err}");
    }

    #[test]
    fn the_admin_client_trusts_the_ca_file_librdkafka_is_given() {
        let env = |protocol: &'static str| {
            HashMap::from([
                ("KAFKA_BOOTSTRAP_SERVERS", "b-1:9098"),
                ("KAFKA_SECURITY_PROTOCOL", protocol),
                ("KAFKA_SSL_CA_LOCATION", "/etc/msk/ca.pem"),
                ("AWS_REGION", "eu-west-1"),
            ])
        };
        let ca = Some(PathBuf::from("/etc/msk/ca.pem"));
        let iam = Settings::from_env(&env("SASL_SSL")).unwrap();
        assert!(matches!(
            iam.transport,
            Transport::Tls { iam_region: Some(region), ca_location } if region == "eu-west-1" && ca_location == ca
        ));
        let tls = Settings::from_env(&env("SSL")).unwrap();
        assert!(matches!(
            tls.transport,
            Transport::Tls { iam_region: None, ca_location } if ca_location == ca
        ));
    }
}
