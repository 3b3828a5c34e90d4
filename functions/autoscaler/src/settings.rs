//! The autoscaler's configuration, read once per execution environment. The variables, their
//! defaults and meanings are documented in `docs/configuration.md` (Autoscaler), which a test
//! checks against what [`Settings::from_env`] reads.

use std::time::Duration;

use sdk::ConfigError;
use sdk::config::{self, Env};

use crate::decision::Policy;

pub const CLUSTER_ARN: &str = "MSK_CLUSTER_ARN";
pub const ALARM_NAME: &str = "CPU_ALARM_NAME";

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub cluster_arn: String,
    /// The only alarm whose invocations are acted on.
    pub alarm_name: String,
    pub state_table: String,
    pub policy: Policy,
    pub cpu_window: Duration,
    pub dry_run: bool,
}

fn percent(env: &impl Env, var: &'static str, default: f64) -> Result<f64, ConfigError> {
    let value: f64 = config::parsed(env, var, default, "a percentage between 0 and 100")?;
    if !(0.0..=100.0).contains(&value) {
        return Err(ConfigError::Invalid {
            var,
            value: value.to_string(),
            expected: "a percentage between 0 and 100",
        });
    }
    Ok(value)
}

impl Settings {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let cluster_arn = config::required(env, CLUSTER_ARN, "ARN of the MSK cluster to scale")?;
        if !cluster_arn.starts_with("arn:") || !cluster_arn.contains(":cluster/") {
            return Err(ConfigError::Invalid {
                var: CLUSTER_ARN,
                value: cluster_arn,
                expected: "an MSK cluster ARN (arn:aws:kafka:<region>:<account>:cluster/<name>/<id>)",
            });
        }
        let threshold = percent(env, "CPU_THRESHOLD_PERCENT", 60.0)?;
        let too_hot = percent(env, "TOO_HOT_PERCENT", 70.0)?;
        if too_hot <= threshold {
            return Err(ConfigError::Invalid {
                var: "TOO_HOT_PERCENT",
                value: too_hot.to_string(),
                expected: "a percentage above CPU_THRESHOLD_PERCENT",
            });
        }
        Ok(Self {
            cluster_arn,
            alarm_name: config::required(
                env,
                ALARM_NAME,
                "name of the broker CPU alarm the autoscaler acts on",
            )?,
            state_table: config::required(
                env,
                shared::state_table::STATE_TABLE_NAME,
                "table for claims, the last scale-out and the rebalancer handoff",
            )?,
            policy: Policy {
                threshold,
                too_hot,
                brokers_per_az_step: config::parsed(
                    env,
                    "BROKERS_PER_AZ_STEP",
                    1,
                    "a whole number of brokers",
                )?,
                max_brokers: config::parsed(env, "MAX_BROKERS", 30, "a whole number of brokers")?,
                broker_quota: config::parsed(env, "BROKER_QUOTA", 30, "a whole number of brokers")?,
                cooldown: config::seconds(
                    env,
                    "SCALE_COOLDOWN_SECONDS",
                    Duration::from_secs(3600),
                )?,
            },
            cpu_window: Duration::from_secs(
                60 * config::parsed::<u64>(env, "CPU_WINDOW_MINUTES", 5, "whole minutes")?.max(1),
            ),
            dry_run: config::parsed(env, "DRY_RUN", false, "true or false")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn requires_a_cluster_arn_and_sane_thresholds() {
        let mut env = HashMap::from([
            (CLUSTER_ARN, "prod"),
            ("STATE_TABLE_NAME", "state"),
            (ALARM_NAME, "prod-broker-cpu-high"),
        ]);
        assert!(
            Settings::from_env(&env)
                .unwrap_err()
                .to_string()
                .contains("MSK cluster ARN")
        );
        env.insert(
            CLUSTER_ARN,
            "arn:aws:kafka:us-east-1:123456789012:cluster/prod/abc",
        );
        let settings = Settings::from_env(&env).unwrap();
        assert_eq!(settings.policy.threshold, 60.0);
        assert!(!settings.dry_run);
        env.insert("TOO_HOT_PERCENT", "55");
        assert!(
            Settings::from_env(&env)
                .unwrap_err()
                .to_string()
                .contains("TOO_HOT_PERCENT")
        );
    }
}
