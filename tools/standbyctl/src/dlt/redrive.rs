//! The redrive: selected dead-letter records sent back to their original topic, optionally
//! repaired first, each send recorded in the [redrive log](super::redrive_log).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use rdkafka::producer::FutureProducer;
use sdk::kafka::{KafkaContext, KafkaSettings};
use sdk::schema::SchemaCache;
use serde::Serialize;
use shared::topics::TopicAllowList;
use wire::dead_letter;
use wire::envelope::{Envelope, SchemaId};
use wire::record::Header;

use super::reader::read_all;
use super::redrive_log::{Destination, RedriveLog};
use super::{DltFilter, DltId, DltRecord};
use crate::error::{CtlError, Finish};
use crate::patch::{self, Jq, PatchError};
use crate::render::{self, DecodedValue, Report};

/// How payloads are repaired before sending.
pub enum Repair {
    AsIs,
    Jq(Jq),
    Editor(String),
}

impl Repair {
    fn apply(&self, record: &DltRecord) -> Result<Vec<u8>, PatchError> {
        match self {
            Self::AsIs => Ok(record.value.clone()),
            Self::Jq(jq) => patch::apply_jq(&record.value, jq),
            Self::Editor(editor) => patch::apply_editor(
                &record.value,
                editor,
                &format!("{}-{}", record.id.partition, record.id.offset),
            ),
        }
    }
}

/// What became of one selected record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RedriveOutcome {
    /// Sent to its original topic (and recorded, with a state table).
    Sent,
    /// A dry run would send it.
    WouldSend,
    /// Recorded as redriven before; `--again` sends it once more.
    AlreadyRedriven,
    /// Not an event that can go back (a malformed item, no original topic).
    Refused,
    /// The repair or the send failed.
    Failed,
}

impl RedriveOutcome {
    fn human(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::WouldSend => "would send",
            Self::AlreadyRedriven => "already redriven",
            Self::Refused => "refused",
            Self::Failed => "failed",
        }
    }
}

#[derive(Debug, Serialize)]
pub struct RedriveRow {
    pub id: String,
    pub outcome: RedriveOutcome,
    pub original_topic: Option<String>,
    pub to: Option<Destination>,
    pub edited: bool,
    pub detail: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct RedriveReport {
    pub dry_run: bool,
    pub selected: usize,
    pub sent: usize,
    pub records: Vec<RedriveRow>,
}

impl Report for RedriveReport {
    fn human(&self) -> String {
        let mut table = render::table(&["ID", "OUTCOME", "TO", "EDITED", "DETAIL"]);
        for row in &self.records {
            table.add_row(vec![
                row.id.clone(),
                row.outcome.human().to_string(),
                row.to.as_ref().map_or_else(
                    || row.original_topic.clone().unwrap_or_else(|| "-".into()),
                    |d| d.to_string(),
                ),
                if row.edited { "yes" } else { "no" }.to_string(),
                row.detail.clone().unwrap_or_default(),
            ]);
        }
        let summary = if self.dry_run {
            format!(
                "dry run: {} record(s) selected; nothing was sent or recorded",
                self.selected
            )
        } else {
            format!("redrove {} of {} record(s)", self.sent, self.selected)
        };
        render::listing(
            (!self.records.is_empty()).then(|| table.to_string()),
            &summary,
            0,
            0,
        )
    }
}

impl RedriveReport {
    pub fn finish(&self) -> Finish {
        if self
            .records
            .iter()
            .any(|r| matches!(r.outcome, RedriveOutcome::Failed | RedriveOutcome::Refused))
        {
            Finish::Partial
        } else {
            Finish::Done
        }
    }
}

pub struct Redrive<'a> {
    pub settings: &'a KafkaSettings,
    pub topic: &'a str,
    pub filter: &'a DltFilter,
    pub repair: &'a Repair,
    /// Original topics a record may go back to; others are refused.
    pub topics: &'a TopicAllowList,
    pub dry_run: bool,
    pub again: bool,
    pub log: Option<&'a RedriveLog>,
    /// Glue-framed values are validated with the schema version they name before they go back
    /// (a dead-lettered event may be invalid, and a repair may break a valid one).
    pub schemas: &'a SchemaCache,
}

impl Redrive<'_> {
    /// Why `value` may not go back to a topic, if it may not: an Avro value kept as JSON, or a
    /// Glue-framed payload that does not match its schema version. The standby path's
    /// Confluent-framed and unframed values are sent as they are (no registry to check them).
    async fn unfit(&self, record: &DltRecord, value: &[u8]) -> Option<(RedriveOutcome, String)> {
        if record.header(dead_letter::PAYLOAD_FORMAT).as_deref()
            == Some(dead_letter::PayloadFormat::AvroValueJson.as_str())
        {
            return Some((
                RedriveOutcome::Refused,
                "an Avro value that failed validation, kept as JSON: it cannot be sent as Avro; \
                 fix the producer and send the event again"
                    .into(),
            ));
        }
        let envelope = Envelope::parse(value).ok()?;
        let SchemaId::Glue(version) = envelope.schema else {
            return None;
        };
        let schema = match self.schemas.by_id(version).await {
            Ok(schema) => schema,
            Err(error) if error.is_events_fault() => {
                return Some((RedriveOutcome::Refused, error.to_string()));
            }
            Err(error) => {
                return Some((
                    RedriveOutcome::Failed,
                    format!("the schema registry could not be asked: {error}"),
                ));
            }
        };
        let checked = envelope
            .decoded_payload()
            .map_err(|e| e.to_string())
            .and_then(|payload| schema.decode(&payload).map_err(|e| e.to_string()));
        match checked {
            Ok(_) => None,
            Err(error) => Some((
                RedriveOutcome::Refused,
                format!(
                    "invalid for schema version {version}: {error}; repair it with --jq or --edit"
                ),
            )),
        }
    }

    pub async fn run(&self) -> Result<RedriveReport, CtlError> {
        let records = read_all(self.settings, self.topic).await?;
        let selected: Vec<&DltRecord> = records.iter().filter(|r| self.filter.matches(r)).collect();
        if let Some(missing) = self
            .filter
            .ids
            .iter()
            .find(|id| !records.iter().any(|r| r.id == **id))
        {
            return Err(CtlError::NotFound(format!(
                "no record {missing} in {}",
                self.topic
            )));
        }
        let done = match self.log {
            Some(log) => log.all().await?,
            None => HashMap::new(),
        };
        let producer: FutureProducer<KafkaContext> = self.settings.producer()?;
        let mut report = RedriveReport {
            dry_run: self.dry_run,
            selected: selected.len(),
            sent: 0,
            records: Vec::new(),
        };
        for record in selected {
            let row = self.one(record, &done, &producer).await?;
            if row.outcome == RedriveOutcome::Sent {
                report.sent += 1;
            }
            report.records.push(row);
        }
        Ok(report)
    }

    async fn one(
        &self,
        record: &DltRecord,
        done: &HashMap<DltId, Destination>,
        producer: &FutureProducer<KafkaContext>,
    ) -> Result<RedriveRow, CtlError> {
        let original_topic = record.header(dead_letter::ORIGINAL_TOPIC);
        let row = |outcome: RedriveOutcome, detail: Option<String>| RedriveRow {
            id: record.id.to_string(),
            outcome,
            original_topic: original_topic.clone(),
            to: None,
            edited: false,
            detail,
        };
        if record.is_malformed_item() {
            return Ok(row(
                RedriveOutcome::Refused,
                Some("a malformed standby item (raw item JSON, not an event): fix the producer and rewrite the event; `dlt show` prints the item".into()),
            ));
        }
        let Some(topic) = original_topic.clone() else {
            return Ok(row(
                RedriveOutcome::Refused,
                Some(format!("no {} header", dead_letter::ORIGINAL_TOPIC)),
            ));
        };
        if !self.topics.permits(&topic) {
            return Ok(row(
                RedriveOutcome::Refused,
                Some(self.topics.refusal(&topic)),
            ));
        }
        if let Some(before) = done.get(&record.id)
            && !self.again
        {
            return Ok(RedriveRow {
                to: Some(before.clone()),
                ..row(
                    RedriveOutcome::AlreadyRedriven,
                    Some("pass --again to send it once more".into()),
                )
            });
        }
        // The repair runs jq or waits on the operator's editor: off the async workers.
        let value = match tokio::task::block_in_place(|| self.repair.apply(record)) {
            Ok(value) => value,
            Err(error) => return Ok(row(RedriveOutcome::Failed, Some(error.to_string()))),
        };
        let edited = value != record.value;
        if let Some((outcome, detail)) = self.unfit(record, &value).await {
            return Ok(RedriveRow {
                edited,
                ..row(outcome, Some(detail))
            });
        }
        if self.dry_run {
            return Ok(RedriveRow {
                edited,
                ..row(
                    RedriveOutcome::WouldSend,
                    edited.then(|| DecodedValue::of(&value, false).payload.short(80)),
                )
            });
        }
        let from = format!(
            "{}/{}/{}",
            self.topic, record.id.partition, record.id.offset
        );
        let original_headers = record.original_headers();
        let redriven_from = [Header::new(wire::headers::REDRIVEN_FROM, from)];
        let message = sdk::kafka::Message {
            topic: &topic,
            key: record.key.as_deref(),
            value: &value,
            headers: &original_headers,
            extra: &redriven_from,
        };
        let delivered = producer
            .send(message.record(), Duration::from_secs(1))
            .await;
        let delivery = match delivered {
            Ok(delivery) => delivery,
            Err((error, _)) => return Ok(row(RedriveOutcome::Failed, Some(error.to_string()))),
        };
        let destination = Destination {
            topic,
            partition: delivery.partition,
            offset: delivery.offset,
            at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            edited,
        };
        if let Some(log) = self.log {
            log.record(record.id, &destination).await?;
        }
        Ok(RedriveRow {
            to: Some(destination),
            edited,
            ..row(RedriveOutcome::Sent, None)
        })
    }
}
