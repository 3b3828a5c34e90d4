//! `standbyctl dlt …`: the dead-letter topic read as a snapshot, its records filtered, shown,
//! and redriven to their original topic — optionally repaired first — with each redrive
//! recorded in the state table so a record is not sent twice by mistake.
//!
//! Layout: [`reader`] reads the topic; [`redrive_log`] is the state-table record of redrives;
//! [`redrive`] sends records back. This module holds the record, its id and the filter, and the
//! `ls` and `show` commands.

pub(crate) mod reader;
pub mod redrive;
pub mod redrive_log;

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use sdk::kafka::KafkaSettings;
use serde::Serialize;
use wire::dead_letter::{self, ErrorClass};
use wire::headers;
use wire::record::Header;

pub use redrive::{Redrive, RedriveOutcome, RedriveReport, Repair};
pub use redrive_log::{Destination, RedriveLog};

use crate::cli::DltFilterArgs;
use crate::error::CtlError;
use crate::render::{self, DecodedValue, HeaderView, Report, Shown};

/// A dead-letter record's position: `PARTITION:OFFSET`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct DltId {
    pub partition: i32,
    pub offset: i64,
}

impl FromStr for DltId {
    type Err = CtlError;

    fn from_str(text: &str) -> Result<Self, CtlError> {
        let bad = || {
            CtlError::Usage(format!(
                "{text:?} is not a dead-letter record id: expected PARTITION:OFFSET, e.g. 0:42"
            ))
        };
        let (partition, offset) = text.split_once(':').ok_or_else(bad)?;
        Ok(Self {
            partition: partition.parse().map_err(|_| bad())?,
            offset: offset.parse().map_err(|_| bad())?,
        })
    }
}

impl std::fmt::Display for DltId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.partition, self.offset)
    }
}

/// One record of the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DltRecord {
    pub id: DltId,
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<Header>,
}

impl DltRecord {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .rev()
            .find(|h| h.name == name)
            .and_then(|h| h.value.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// A malformed standby item: its value is the raw item as JSON, not an event.
    pub fn is_malformed_item(&self) -> bool {
        self.header(dead_letter::PAYLOAD_FORMAT).is_some()
    }

    /// The event's own headers: the context the republisher added (`dlt-*`) taken off.
    pub fn original_headers(&self) -> Vec<Header> {
        self.headers
            .iter()
            .filter(|h| !dead_letter::is_context_header(&h.name))
            .cloned()
            .collect()
    }
}

/// Which records a command takes.
#[derive(Debug, Clone, Default)]
pub struct DltFilter {
    pub ids: Vec<DltId>,
    pub original_topic: Option<String>,
    pub error_class: Option<ErrorClass>,
    pub event_ids: Vec<String>,
}

impl DltFilter {
    pub fn new(ids: &[String], args: DltFilterArgs) -> Result<Self, CtlError> {
        let error_class = match &args.error_class {
            None => None,
            Some(class) => Some(ErrorClass::parse(class).ok_or_else(|| {
                let known: Vec<&str> = ErrorClass::ALL.iter().map(|c| c.as_str()).collect();
                CtlError::Usage(format!("--error-class {class:?} is not one of {known:?}"))
            })?),
        };
        Ok(Self {
            ids: ids.iter().map(|id| id.parse()).collect::<Result<_, _>>()?,
            original_topic: args.original_topic,
            error_class,
            event_ids: args.event_ids,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
            && self.original_topic.is_none()
            && self.error_class.is_none()
            && self.event_ids.is_empty()
    }

    pub fn matches(&self, record: &DltRecord) -> bool {
        let header_is = |name, wanted: &Option<String>| {
            wanted
                .as_ref()
                .is_none_or(|w| record.header(name).as_ref() == Some(w))
        };
        (self.ids.is_empty() || self.ids.contains(&record.id))
            && header_is(dead_letter::ORIGINAL_TOPIC, &self.original_topic)
            && header_is(
                dead_letter::ERROR_CLASS,
                &self.error_class.map(|c| c.as_str().to_string()),
            )
            && (self.event_ids.is_empty()
                || record
                    .header(headers::EVENT_ID)
                    .is_some_and(|id| self.event_ids.contains(&id)))
    }
}

fn age_of(timestamp_ms: Option<i64>) -> Option<u64> {
    timestamp_ms.map(|t| render::now_ms().saturating_sub(t.max(0) as u64) / 1000)
}

#[derive(Debug, Serialize)]
pub struct DltRow {
    pub id: String,
    pub age_seconds: Option<u64>,
    pub original_topic: Option<String>,
    pub event_id: Option<String>,
    pub error_class: Option<String>,
    pub reason: Option<String>,
    pub redriven_to: Option<Destination>,
}

#[derive(Debug, Serialize)]
pub struct DltLsReport {
    pub total: usize,
    pub records: Vec<DltRow>,
    /// Whether `redriven_to` was looked up (a state table was given).
    pub redrives_known: bool,
}

impl Report for DltLsReport {
    fn human(&self) -> String {
        let mut columns = vec!["ID", "AGE", "ORIGINAL TOPIC", "EVENT ID", "CLASS", "REASON"];
        if self.redrives_known {
            columns.push("REDRIVEN TO");
        }
        let mut table = render::table(&columns);
        let dash = || "-".to_string();
        for row in &self.records {
            let mut cells = vec![
                row.id.clone(),
                row.age_seconds
                    .map_or_else(dash, |s| render::age(Duration::from_secs(s))),
                row.original_topic.clone().unwrap_or_else(dash),
                row.event_id.clone().unwrap_or_else(dash),
                row.error_class.clone().unwrap_or_else(dash),
                row.reason
                    .as_ref()
                    .map_or_else(dash, |r| Shown::Utf8(r.clone()).short(60)),
            ];
            if self.redrives_known {
                cells.push(
                    row.redriven_to
                        .as_ref()
                        .map_or_else(dash, |d| d.to_string()),
                );
            }
            table.add_row(cells);
        }
        render::listing(
            (!self.records.is_empty()).then(|| table.to_string()),
            &format!("{} record(s)", self.total),
            self.records.len(),
            self.total,
        )
    }
}

pub async fn ls(
    settings: &KafkaSettings,
    topic: &str,
    filter: &DltFilter,
    limit: usize,
    log: Option<&RedriveLog>,
) -> Result<DltLsReport, CtlError> {
    let records = reader::read_all(settings, topic).await?;
    let redrives = match log {
        Some(log) => log.all().await?,
        None => HashMap::new(),
    };
    let selected: Vec<&DltRecord> = records.iter().filter(|r| filter.matches(r)).collect();
    Ok(DltLsReport {
        total: selected.len(),
        redrives_known: log.is_some(),
        records: selected
            .into_iter()
            .take(limit)
            .map(|r| DltRow {
                id: r.id.to_string(),
                age_seconds: age_of(r.timestamp_ms),
                original_topic: r.header(dead_letter::ORIGINAL_TOPIC),
                event_id: r.header(headers::EVENT_ID),
                error_class: r.header(dead_letter::ERROR_CLASS),
                reason: r.header(dead_letter::REASON),
                redriven_to: redrives.get(&r.id).cloned(),
            })
            .collect(),
    })
}

#[derive(Debug, Serialize)]
pub struct DltShowReport {
    pub id: String,
    pub topic: String,
    pub age_seconds: Option<u64>,
    pub key: Option<Shown>,
    pub headers: Vec<HeaderView>,
    pub value: DecodedValue,
}

impl Report for DltShowReport {
    fn human(&self) -> String {
        let mut out = format!(
            "record         {}/{}\nage            {}\nkey            {}\nschema version {}\nvalue          {} bytes\n{}",
            self.topic,
            self.id,
            self.age_seconds
                .map_or_else(|| "-".into(), |s| render::age(Duration::from_secs(s))),
            render::or_null(self.key.as_ref()),
            self.value
                .schema_version
                .clone()
                .unwrap_or_else(|| "(no prefix)".into()),
            self.value.bytes,
            render::header_lines(&self.headers)
        );
        out.push_str(&format!("payload\n{}", self.value.payload.text()));
        out
    }
}

pub async fn show(
    settings: &KafkaSettings,
    topic: &str,
    id: DltId,
    force_hex: bool,
) -> Result<DltShowReport, CtlError> {
    let record = reader::read_one(settings, topic, id).await?;
    Ok(DltShowReport {
        id: id.to_string(),
        topic: topic.to_string(),
        age_seconds: age_of(record.timestamp_ms),
        key: record.key.as_deref().map(|k| Shown::of(k, force_hex)),
        headers: HeaderView::all(&record.headers, force_hex),
        value: DecodedValue::of(&record.value, force_hex),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(headers: &[(&str, &str)]) -> DltRecord {
        DltRecord {
            id: DltId {
                partition: 1,
                offset: 7,
            },
            timestamp_ms: None,
            key: None,
            value: Vec::new(),
            headers: headers.iter().map(|(n, v)| Header::new(*n, *v)).collect(),
        }
    }

    #[test]
    fn ids_parse_or_say_what_they_should_look_like() {
        assert_eq!(
            "3:42".parse::<DltId>().unwrap(),
            DltId {
                partition: 3,
                offset: 42
            }
        );
        for bad in ["3", "a:1", "1:", ":"] {
            let error = bad.parse::<DltId>().unwrap_err().to_string();
            assert!(error.contains("PARTITION:OFFSET"), "{error}");
        }
    }

    #[test]
    fn filters_read_the_context_headers() {
        let rejected = record(&[
            ("trace", "t"),
            (dead_letter::ORIGINAL_TOPIC, "orders"),
            (dead_letter::ERROR_CLASS, "non_retriable"),
            (headers::EVENT_ID, "e-1"),
        ]);
        let filter = |args: DltFilterArgs| DltFilter::new(&[], args).unwrap();
        assert!(filter(DltFilterArgs::default()).matches(&rejected));
        assert!(
            filter(DltFilterArgs {
                original_topic: Some("orders".into()),
                error_class: Some("non_retriable".into()),
                event_ids: vec!["e-1".into()],
            })
            .matches(&rejected)
        );
        assert!(
            !filter(DltFilterArgs {
                original_topic: Some("payments".into()),
                ..Default::default()
            })
            .matches(&rejected)
        );
        assert!(
            !DltFilter::new(&["1:8".into()], DltFilterArgs::default())
                .unwrap()
                .matches(&rejected)
        );
        assert!(
            DltFilter::new(
                &[],
                DltFilterArgs {
                    error_class: Some("oops".into()),
                    ..Default::default()
                }
            )
            .unwrap_err()
            .to_string()
            .contains("--error-class")
        );
    }

    #[test]
    fn redriven_records_lose_the_dead_letter_context_only() {
        let rejected = record(&[
            ("trace", "t"),
            (headers::EVENT_ID, "e-1"),
            (dead_letter::REASON, "too large"),
            (dead_letter::ORIGINAL_TOPIC, "orders"),
        ]);
        assert_eq!(
            rejected.original_headers(),
            vec![
                Header::new("trace", "t"),
                Header::new(headers::EVENT_ID, "e-1")
            ]
        );
        assert!(!rejected.is_malformed_item());
        assert!(record(&[(dead_letter::PAYLOAD_FORMAT, "dynamodb-item-json")]).is_malformed_item());
    }
}
