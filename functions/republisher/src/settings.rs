//! The republisher's configuration, read once per execution environment. The variables, their
//! defaults and meanings are documented in `docs/configuration.md` (Republisher), which a test
//! checks against what [`Settings::from_env`] reads.

use std::time::Duration;

use sdk::ConfigError;
use sdk::config::{self, Env};
use sdk::kafka::KafkaSettings;
use sdk::standby_table;
use shared::state_table;
use shared::topics::TopicAllowList;

pub const DEAD_LETTER_TOPIC: &str = "STANDBY_DEAD_LETTER_TOPIC";
pub const MARGIN_MS: &str = "REPUBLISH_MARGIN_MS";
pub const SWEEP_MIN_AGE_SECONDS: &str = "SWEEP_MIN_AGE_SECONDS";
pub const SWEEP_PAGE_SIZE: &str = "SWEEP_PAGE_SIZE";
pub const SWEEP_MARKER_GRACE_SECONDS: &str = "SWEEP_MARKER_GRACE_SECONDS";

pub const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub kafka: KafkaSettings,
    pub standby_table: String,
    pub state_table: String,
    pub dead_letter_topic: String,
    /// The only topics events are republished to.
    pub topics: TopicAllowList,
    pub margin: Duration,
    pub sweep_min_age: Duration,
    pub sweep_page_size: i32,
    pub marker_grace: Duration,
}

impl Settings {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let sweep_page_size =
            config::parsed(env, SWEEP_PAGE_SIZE, 500, "a whole number from 1 to 1000")?;
        if !(1..=1000).contains(&sweep_page_size) {
            return Err(ConfigError::Invalid {
                var: SWEEP_PAGE_SIZE,
                value: sweep_page_size.to_string(),
                expected: "a whole number from 1 to 1000",
            });
        }
        Ok(Self {
            kafka: KafkaSettings::from_env(env, "republisher", DEFAULT_DELIVERY_TIMEOUT)?,
            standby_table: config::required(
                env,
                standby_table::TABLE_NAME,
                "DynamoDB table that holds standby events",
            )?,
            state_table: config::required(
                env,
                state_table::STATE_TABLE_NAME,
                "table for the sweep's resume point",
            )?,
            dead_letter_topic: config::required(
                env,
                DEAD_LETTER_TOPIC,
                "topic for records that cannot be republished",
            )?,
            topics: TopicAllowList::from_env(env)?,
            margin: config::millis(env, MARGIN_MS, Duration::from_secs(3))?,
            sweep_min_age: config::seconds(env, SWEEP_MIN_AGE_SECONDS, Duration::from_secs(3600))?,
            sweep_page_size,
            marker_grace: config::seconds(
                env,
                SWEEP_MARKER_GRACE_SECONDS,
                Duration::from_secs(60),
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn defaults_and_required_variables() {
        let mut env = HashMap::from([
            ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            ("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
            ("STANDBY_TABLE_NAME", "standby"),
            ("STATE_TABLE_NAME", "state"),
            ("EVENT_TOPICS", "orders.*"),
        ]);
        let err = Settings::from_env(&env).unwrap_err();
        assert!(err.to_string().contains(DEAD_LETTER_TOPIC), "{err}");
        env.insert(DEAD_LETTER_TOPIC, "dlt");
        let settings = Settings::from_env(&env).unwrap();
        assert_eq!(settings.kafka.delivery_timeout, DEFAULT_DELIVERY_TIMEOUT);
        assert_eq!(settings.sweep_page_size, 500);
        env.insert(SWEEP_PAGE_SIZE, "5000");
        assert!(
            Settings::from_env(&env)
                .unwrap_err()
                .to_string()
                .contains(SWEEP_PAGE_SIZE)
        );
    }
}
