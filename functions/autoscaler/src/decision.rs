//! Whether to add brokers, and how many: a pure function of what the trigger said, what the
//! cluster looks like, the last scale action and the configuration. Every rule has its own test.

use std::time::{Duration, SystemTime};

use serde::Serialize;

/// What woke the autoscaler.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// An alarm's new state (`ALARM`, `OK`, `INSUFFICIENT_DATA`).
    Alarm { name: String, state: String },
    /// The periodic re-check: alarms notify only on state changes, so while CPU stays high
    /// only a schedule asks again.
    Recheck,
}

/// The cluster as the MSK control plane describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterView {
    pub arn: String,
    pub name: String,
    /// `ACTIVE`, `UPDATING`, `CREATING`, …
    pub state: String,
    pub current_version: String,
    pub kind: ClusterKind,
    /// An operation (any kind) still running on the cluster.
    pub operation_in_flight: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClusterKind {
    Provisioned {
        brokers: u32,
        /// Client subnets: one per AZ, so broker counts come in multiples of this.
        azs: u32,
        instance_type: String,
    },
    Serverless,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// CPU (user + system, %) above which to scale (MSK recommends 60). Checked on every trigger
    /// for which CloudWatch has fresh data.
    pub threshold: f64,
    /// CPU above which adding brokers would hurt: moving partitions needs headroom.
    pub too_hot: f64,
    /// Brokers added per AZ in one step.
    pub brokers_per_az_step: u32,
    pub max_brokers: u32,
    /// MSK's per-cluster broker quota for the account.
    pub broker_quota: u32,
    pub cooldown: Duration,
}

/// The input of one decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Situation {
    pub signal: Signal,
    pub cluster: ClusterView,
    /// Highest broker CPU (user + system, %) over the recent window; `None` without data.
    pub cpu: Option<f64>,
    pub last_scale_at: Option<SystemTime>,
    pub now: SystemTime,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    ScaleOut {
        from: u32,
        to: u32,
        reason: String,
    },
    /// Nothing to do now (the normal answer to OK alarms, cooldowns, busy clusters).
    NoAction {
        reason: String,
    },
    /// Adding brokers is not the right tool for this cluster.
    Refuse {
        reason: String,
    },
    /// Too hot to move partitions safely: recommend a larger broker type instead.
    RecommendLargerBrokers {
        cpu: f64,
        reason: String,
    },
}

/// The refusal of an alarm that is not the one the autoscaler acts on (`CPU_ALARM_NAME`), or
/// `None`. Anyone allowed to invoke the function, or an alarm wired to it by mistake, must not
/// be able to add brokers; the schedule's re-check is always the autoscaler's own.
pub fn foreign_alarm(signal: &Signal, configured: &str) -> Option<Decision> {
    match signal {
        Signal::Alarm { name, .. } if name != configured => Some(Decision::Refuse {
            reason: format!(
                "alarm {name:?} is not the alarm this autoscaler acts on ({configured:?}, \
                 CPU_ALARM_NAME); nothing done"
            ),
        }),
        _ => None,
    }
}

pub fn decide(situation: &Situation, policy: &Policy) -> Decision {
    let no = |reason: String| Decision::NoAction { reason };
    let cluster = &situation.cluster;

    let (brokers, azs, instance_type) = match &cluster.kind {
        ClusterKind::Serverless => {
            return Decision::Refuse {
                reason: format!(
                    "{} is MSK Serverless: it scales itself, there are no brokers to add",
                    cluster.name
                ),
            };
        }
        ClusterKind::Provisioned {
            brokers,
            azs,
            instance_type,
        } => (*brokers, (*azs).max(1), instance_type),
    };
    if instance_type.starts_with("express.") {
        return Decision::Refuse {
            reason: format!(
                "{} runs Express brokers ({instance_type}), which rebalance partitions themselves; \
                 scale them with their own capacity settings",
                cluster.name
            ),
        };
    }

    let why = match (&situation.signal, situation.cpu) {
        (Signal::Alarm { name, state }, _) if state != "ALARM" => {
            return no(format!("alarm {name} is {state}"));
        }
        // The alarm watches CpuUser alone (one Metrics Insights query over all brokers); fresh
        // CpuUser + CpuSystem below the threshold means it fired on a proxy, not on real load.
        (Signal::Alarm { name, .. }, Some(cpu)) if cpu < policy.threshold => {
            return no(format!(
                "alarm {name} is in ALARM but broker CPU (user + system) is {cpu:.1}%, below the {:.0}% threshold",
                policy.threshold
            ));
        }
        (Signal::Alarm { name, .. }, _) => format!("alarm {name} is in ALARM"),
        (Signal::Recheck, None) => return no("no recent CPU data for the brokers".into()),
        (Signal::Recheck, Some(cpu)) if cpu < policy.threshold => {
            return no(format!(
                "broker CPU {cpu:.1}% is below the {:.0}% threshold",
                policy.threshold
            ));
        }
        (Signal::Recheck, Some(cpu)) => format!(
            "broker CPU {cpu:.1}% is above the {:.0}% threshold",
            policy.threshold
        ),
    };

    if let Some(cpu) = situation.cpu
        && cpu >= policy.too_hot
    {
        return Decision::RecommendLargerBrokers {
            cpu,
            reason: format!(
                "broker CPU {cpu:.1}% is at or above {:.0}%: moving partitions onto new brokers would add \
                 replication load the cluster cannot take; move to a larger broker type instead",
                policy.too_hot
            ),
        };
    }
    if cluster.state != "ACTIVE" {
        return no(format!("cluster is {}, not ACTIVE", cluster.state));
    }
    if cluster.operation_in_flight {
        return no("an operation is still running on the cluster".into());
    }
    if let Some(last) = situation.last_scale_at {
        let since = situation.now.duration_since(last).unwrap_or_default();
        if since < policy.cooldown {
            return no(format!(
                "last scale-out {}s ago, cooldown is {}s",
                since.as_secs(),
                policy.cooldown.as_secs()
            ));
        }
    }

    let ceiling = policy.max_brokers.min(policy.broker_quota) / azs * azs;
    let step = policy.brokers_per_az_step.max(1) * azs;
    let target = (brokers + step).min(ceiling);
    if target <= brokers {
        return no(format!(
            "already at {brokers} brokers, the most allowed (max {}, quota {}, in multiples of {azs} AZs)",
            policy.max_brokers, policy.broker_quota
        ));
    }
    Decision::ScaleOut {
        from: brokers,
        to: target,
        reason: why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            threshold: 60.0,
            too_hot: 70.0,
            brokers_per_az_step: 1,
            max_brokers: 12,
            broker_quota: 30,
            cooldown: Duration::from_secs(3600),
        }
    }

    fn situation() -> Situation {
        Situation {
            signal: Signal::Alarm {
                name: "msk-cpu".into(),
                state: "ALARM".into(),
            },
            cluster: ClusterView {
                arn: "arn:aws:kafka:us-east-1:123456789012:cluster/prod/1".into(),
                name: "prod".into(),
                state: "ACTIVE".into(),
                current_version: "K1".into(),
                kind: ClusterKind::Provisioned {
                    brokers: 3,
                    azs: 3,
                    instance_type: "kafka.m7g.large".into(),
                },
                operation_in_flight: false,
            },
            cpu: Some(65.0),
            last_scale_at: None,
            now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        }
    }

    fn scaled(s: &Situation) -> Decision {
        decide(s, &policy())
    }

    #[test]
    fn only_the_configured_alarm_is_acted_on() {
        let signal = situation().signal;
        assert_eq!(foreign_alarm(&signal, "msk-cpu"), None);
        assert_eq!(foreign_alarm(&Signal::Recheck, "msk-cpu"), None);
        let Some(Decision::Refuse { reason }) = foreign_alarm(&signal, "prod-broker-cpu-high")
        else {
            panic!("another alarm must be refused");
        };
        assert!(reason.contains("\"msk-cpu\"") && reason.contains("CPU_ALARM_NAME"));
    }

    #[test]
    fn alarm_in_alarm_adds_one_broker_per_az() {
        assert!(matches!(
            scaled(&situation()),
            Decision::ScaleOut { from: 3, to: 6, .. }
        ));
    }

    #[test]
    fn ok_and_insufficient_data_alarms_do_nothing() {
        for state in ["OK", "INSUFFICIENT_DATA"] {
            let s = Situation {
                signal: Signal::Alarm {
                    name: "msk-cpu".into(),
                    state: state.into(),
                },
                ..situation()
            };
            assert!(matches!(scaled(&s), Decision::NoAction { reason } if reason.contains(state)));
        }
    }

    #[test]
    fn recheck_acts_only_above_the_threshold() {
        let cool = Situation {
            signal: Signal::Recheck,
            cpu: Some(42.0),
            ..situation()
        };
        assert!(matches!(scaled(&cool), Decision::NoAction { reason } if reason.contains("below")));
        let hot = Situation {
            signal: Signal::Recheck,
            cpu: Some(61.0),
            ..situation()
        };
        assert!(matches!(scaled(&hot), Decision::ScaleOut { to: 6, .. }));
        let blind = Situation {
            signal: Signal::Recheck,
            cpu: None,
            ..situation()
        };
        assert!(matches!(scaled(&blind), Decision::NoAction { .. }));
    }

    #[test]
    fn an_alarm_is_checked_against_fresh_cpu_when_there_is_some() {
        let proxy = Situation {
            cpu: Some(55.0),
            ..situation()
        };
        assert!(
            matches!(scaled(&proxy), Decision::NoAction { reason } if reason.contains("below"))
        );
        let blind = Situation {
            cpu: None,
            ..situation()
        };
        assert!(
            matches!(scaled(&blind), Decision::ScaleOut { .. }),
            "no data: the alarm is trusted"
        );
    }

    #[test]
    fn too_hot_to_move_recommends_larger_brokers() {
        let s = Situation {
            cpu: Some(70.0),
            ..situation()
        };
        assert!(matches!(scaled(&s), Decision::RecommendLargerBrokers { cpu, .. } if cpu == 70.0));
    }

    #[test]
    fn only_an_active_cluster_is_scaled() {
        let mut s = situation();
        s.cluster.state = "UPDATING".into();
        assert!(matches!(scaled(&s), Decision::NoAction { reason } if reason.contains("UPDATING")));
    }

    #[test]
    fn not_while_an_operation_runs() {
        let mut s = situation();
        s.cluster.operation_in_flight = true;
        assert!(
            matches!(scaled(&s), Decision::NoAction { reason } if reason.contains("operation"))
        );
    }

    #[test]
    fn express_brokers_are_refused() {
        let mut s = situation();
        s.cluster.kind = ClusterKind::Provisioned {
            brokers: 3,
            azs: 3,
            instance_type: "express.m7g.large".into(),
        };
        assert!(matches!(scaled(&s), Decision::Refuse { reason } if reason.contains("Express")));
    }

    #[test]
    fn serverless_is_refused() {
        let mut s = situation();
        s.cluster.kind = ClusterKind::Serverless;
        assert!(matches!(scaled(&s), Decision::Refuse { reason } if reason.contains("Serverless")));
    }

    #[test]
    fn cooldown_holds_back_a_second_scale_out() {
        let s = Situation {
            last_scale_at: Some(situation().now - Duration::from_secs(600)),
            ..situation()
        };
        assert!(matches!(scaled(&s), Decision::NoAction { reason } if reason.contains("cooldown")));
        let later = Situation {
            last_scale_at: Some(situation().now - Duration::from_secs(3601)),
            ..situation()
        };
        assert!(matches!(scaled(&later), Decision::ScaleOut { .. }));
    }

    #[test]
    fn step_is_a_multiple_of_the_azs_and_capped_by_maximum_and_quota() {
        let mut s = situation();
        s.cluster.kind = ClusterKind::Provisioned {
            brokers: 9,
            azs: 3,
            instance_type: "kafka.m5.large".into(),
        };
        let bigger = Policy {
            brokers_per_az_step: 2,
            ..policy()
        };
        // 9 + 6 = 15, capped at 12 (max).
        assert!(matches!(
            decide(&s, &bigger),
            Decision::ScaleOut { to: 12, .. }
        ));
        let quota = Policy {
            max_brokers: 100,
            broker_quota: 11,
            ..bigger
        };
        // The quota, rounded down to whole AZs: 9, so nothing to add.
        assert!(
            matches!(decide(&s, &quota), Decision::NoAction { reason } if reason.contains("quota"))
        );
        s.cluster.kind = ClusterKind::Provisioned {
            brokers: 12,
            azs: 3,
            instance_type: "kafka.m5.large".into(),
        };
        assert!(
            matches!(scaled(&s), Decision::NoAction { reason } if reason.contains("most allowed"))
        );
    }

    #[test]
    fn two_az_clusters_grow_by_two() {
        let mut s = situation();
        s.cluster.kind = ClusterKind::Provisioned {
            brokers: 4,
            azs: 2,
            instance_type: "kafka.m5.large".into(),
        };
        assert!(matches!(
            scaled(&s),
            Decision::ScaleOut { from: 4, to: 6, .. }
        ));
    }
}
