//! Which standby items a command takes: the filter flags checked, turned into a DynamoDB read
//! (a `Query` when topic and key name one partition, else a `Scan` with a filter expression),
//! and applied again in full to what comes back. Pure: no I/O here.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use republisher::entry::{Entry, Work};
use sdk::standby_table::ReadPlan;
use wire::record::{self, EventId, attr};

use crate::cli::StandbyFilterArgs;
use crate::error::CtlError;

/// A checked filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StandbyFilter {
    pub topic: Option<String>,
    pub key: Option<String>,
    pub older_than: Option<Duration>,
    pub newer_than: Option<Duration>,
    pub event_ids: Vec<String>,
    pub malformed_only: bool,
}

impl TryFrom<StandbyFilterArgs> for StandbyFilter {
    type Error = CtlError;

    fn try_from(args: StandbyFilterArgs) -> Result<Self, CtlError> {
        if args.key.is_some() && args.topic.is_none() {
            return Err(CtlError::Usage("--key needs --topic".into()));
        }
        if let Some(bad) = args
            .event_ids
            .iter()
            .find(|id| id.parse::<EventId>().is_err())
        {
            return Err(CtlError::Usage(format!(
                "--event-id {bad:?} is not an event id (a UUID such as 019a5b7e-8f00-7c4e-9a3b-2f1d5e6c7a80)"
            )));
        }
        if let (Some(older), Some(newer)) = (args.older_than, args.newer_than)
            && older >= newer
        {
            return Err(CtlError::Usage(format!(
                "--older-than {} and --newer-than {} select nothing: the first must be shorter",
                humantime::format_duration(older),
                humantime::format_duration(newer)
            )));
        }
        if args.malformed
            && (args.topic.is_some() || args.older_than.is_some() || args.newer_than.is_some())
        {
            return Err(CtlError::Usage(
                "--malformed cannot be combined with --topic/--key/--older-than/--newer-than: a malformed item's topic and age are not known"
                    .into(),
            ));
        }
        Ok(Self {
            topic: args.topic,
            key: args.key,
            older_than: args.older_than,
            newer_than: args.newer_than,
            event_ids: args.event_ids,
            malformed_only: args.malformed,
        })
    }
}

impl StandbyFilter {
    /// Whether no filter was given: the selection is the whole table.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Narrows the read as far as DynamoDB can; [`Self::matches`] has the last word.
    pub fn read_plan(&self, now_ms: u64) -> ReadPlan {
        let mut conditions = Vec::new();
        let mut names = HashMap::new();
        let mut values = HashMap::new();
        let partition_key = match (&self.topic, &self.key) {
            // Keyed partition keys do not depend on the event id.
            (Some(topic), Some(key)) => Some(record::partition_key(
                topic,
                Some(key.as_bytes()),
                EventId::new(),
            )),
            (Some(topic), None) => {
                conditions.push("#topic = :topic".to_string());
                names.insert("#topic".into(), attr::TOPIC.into());
                values.insert(":topic".into(), AttributeValue::S(topic.clone()));
                None
            }
            _ => None,
        };
        if let Some(older) = self.older_than {
            conditions.push("#created <= :created_max".into());
            names.insert("#created".into(), attr::CREATED_AT.into());
            values.insert(
                ":created_max".into(),
                AttributeValue::N(now_ms.saturating_sub(older.as_millis() as u64).to_string()),
            );
        }
        if let Some(newer) = self.newer_than {
            conditions.push("#created > :created_min".into());
            names.insert("#created".into(), attr::CREATED_AT.into());
            values.insert(
                ":created_min".into(),
                AttributeValue::N(now_ms.saturating_sub(newer.as_millis() as u64).to_string()),
            );
        }
        ReadPlan {
            partition_key,
            filter_expression: (!conditions.is_empty()).then(|| conditions.join(" AND ")),
            names,
            values,
        }
    }

    /// Whether `entry` (read from the table) is selected.
    pub fn matches(&self, entry: &Entry, now_ms: u64) -> bool {
        if !self.event_ids.is_empty() && !self.event_ids.iter().any(|id| id == entry.event_id()) {
            return false;
        }
        match &entry.work {
            Work::Publish(record) => {
                let age_ms = now_ms.saturating_sub(record.created_at_ms);
                !self.malformed_only
                    && self.topic.as_ref().is_none_or(|t| *t == record.topic)
                    && self
                        .key
                        .as_ref()
                        .is_none_or(|k| record.key.as_deref() == Some(k.as_bytes()))
                    && self
                        .older_than
                        .is_none_or(|older| age_ms >= older.as_millis() as u64)
                    && self
                        .newer_than
                        .is_none_or(|newer| age_ms < newer.as_millis() as u64)
            }
            Work::Malformed { .. } => {
                self.topic.is_none() && self.older_than.is_none() && self.newer_than.is_none()
            }
            Work::Skip(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use republisher::entry::ItemKey;
    use serde_json::json;
    use wire::record::StandbyRecord;

    use super::*;

    const NOW: u64 = 1_000_000_000;

    fn entry(topic: &str, key: Option<&str>, age: Duration) -> Entry {
        let record = StandbyRecord {
            event_id: EventId::new(),
            topic: topic.into(),
            key: key.map(|k| k.as_bytes().to_vec()),
            value: b"v".to_vec(),
            headers: vec![],
            producer_id: "p".into(),
            created_at_ms: NOW - age.as_millis() as u64,
            expires_at: 0,
        };
        Entry {
            position: 0,
            sequence_number: None,
            key: Some(ItemKey {
                pk: record.partition_key(),
                event_id: record.event_id.to_string(),
            }),
            work: Work::Publish(Box::new(record)),
        }
    }

    fn malformed() -> Entry {
        Entry {
            position: 0,
            sequence_number: None,
            key: Some(ItemKey {
                pk: "x".into(),
                event_id: "e".into(),
            }),
            work: Work::Malformed {
                raw: json!({}),
                kind: "missing_attribute",
                reason: "attribute `value` is missing".into(),
            },
        }
    }

    fn filter(args: StandbyFilterArgs) -> Result<StandbyFilter, CtlError> {
        StandbyFilter::try_from(args)
    }

    #[test]
    fn no_filter_takes_everything_but_a_plain_scan() {
        let all = filter(StandbyFilterArgs::default()).unwrap();
        assert!(all.matches(&entry("orders", Some("k"), Duration::ZERO), NOW));
        assert!(all.matches(&malformed(), NOW));
        let plan = all.read_plan(NOW);
        assert_eq!(plan.partition_key, None);
        assert_eq!(plan.filter_expression, None);
    }

    #[test]
    fn topic_and_key_read_one_partition() {
        let one = filter(StandbyFilterArgs {
            topic: Some("orders".into()),
            key: Some("k".into()),
            ..Default::default()
        })
        .unwrap();
        let wanted = entry("orders", Some("k"), Duration::ZERO);
        let Work::Publish(record) = &wanted.work else {
            unreachable!()
        };
        assert_eq!(
            one.read_plan(NOW).partition_key,
            Some(record.partition_key())
        );
        assert!(one.matches(&wanted, NOW));
        assert!(!one.matches(&entry("orders", Some("other"), Duration::ZERO), NOW));
        assert!(!one.matches(&entry("orders", None, Duration::ZERO), NOW));
        assert!(
            !one.matches(&malformed(), NOW),
            "a malformed item has no known topic"
        );
    }

    #[test]
    fn ages_bound_both_ways() {
        let window = filter(StandbyFilterArgs {
            older_than: Some(Duration::from_secs(60)),
            newer_than: Some(Duration::from_secs(3600)),
            ..Default::default()
        })
        .unwrap();
        assert!(!window.matches(&entry("t", None, Duration::from_secs(10)), NOW));
        assert!(window.matches(&entry("t", None, Duration::from_secs(60)), NOW));
        assert!(!window.matches(&entry("t", None, Duration::from_secs(3600)), NOW));
        let plan = window.read_plan(NOW);
        assert_eq!(
            plan.filter_expression.as_deref(),
            Some("#created <= :created_max AND #created > :created_min")
        );
        assert_eq!(
            plan.values[":created_max"],
            AttributeValue::N((NOW - 60_000).to_string())
        );
    }

    #[test]
    fn event_ids_and_malformed_select_exactly() {
        let target = entry("t", None, Duration::ZERO);
        let by_id = filter(StandbyFilterArgs {
            event_ids: vec![target.event_id().to_string()],
            ..Default::default()
        })
        .unwrap();
        assert!(by_id.matches(&target, NOW));
        assert!(!by_id.matches(&entry("t", None, Duration::ZERO), NOW));
        let broken = filter(StandbyFilterArgs {
            malformed: true,
            ..Default::default()
        })
        .unwrap();
        assert!(broken.matches(&malformed(), NOW));
        assert!(!broken.matches(&target, NOW));
    }

    #[test]
    fn contradictions_are_usage_errors_naming_the_flags() {
        let message = |args| filter(args).unwrap_err().to_string();
        assert!(
            message(StandbyFilterArgs {
                event_ids: vec!["nope".into()],
                ..Default::default()
            })
            .contains("--event-id \"nope\"")
        );
        assert!(
            message(StandbyFilterArgs {
                older_than: Some(Duration::from_secs(3600)),
                newer_than: Some(Duration::from_secs(60)),
                ..Default::default()
            })
            .contains("--older-than 1h and --newer-than 1m")
        );
        assert!(
            message(StandbyFilterArgs {
                malformed: true,
                topic: Some("t".into()),
                ..Default::default()
            })
            .contains("--malformed")
        );
    }
}
