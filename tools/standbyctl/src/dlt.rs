//! `standbyctl dlt …`: the dead-letter topic read as a snapshot (every partition up to the
//! high watermark seen at the start), its records filtered, shown, and redriven to their
//! original topic — optionally repaired first — with each redrive recorded in the state table
//! so a record is not sent twice by mistake.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::types::AttributeValue;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use sdk::kafka::{KafkaContext, KafkaSettings};
use serde::{Deserialize, Serialize};
use shared::state_table::StateTable;
// Sort key: `{dlt topic}/{partition}/{offset}`.
use shared::state_table::keys::STANDBYCTL_REDRIVE as REDRIVE_PK;
use wire::dead_letter;
use wire::headers;
use wire::record::Header;

use crate::cli::DltFilterArgs;
use crate::error::{CtlError, Finish};
use crate::patch::{self, Jq, PatchError};
use crate::render::{self, DecodedValue, HeaderView, Report, Shown};

/// Header on a redriven message naming the dead-letter record it came from.
pub const REDRIVEN_FROM: &str = "standby-redriven-from";

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
    pub error_class: Option<String>,
    pub event_ids: Vec<String>,
}

impl DltFilter {
    pub fn new(ids: &[String], args: DltFilterArgs) -> Result<Self, CtlError> {
        const CLASSES: [&str; 2] = ["non_retriable", "malformed"];
        if let Some(class) = &args.error_class
            && !CLASSES.contains(&class.as_str())
        {
            return Err(CtlError::Usage(format!(
                "--error-class {class:?} is not one of {CLASSES:?}"
            )));
        }
        Ok(Self {
            ids: ids.iter().map(|id| id.parse()).collect::<Result<_, _>>()?,
            original_topic: args.original_topic,
            error_class: args.error_class,
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
            && header_is(dead_letter::ERROR_CLASS, &self.error_class)
            && (self.event_ids.is_empty()
                || record
                    .header(headers::EVENT_ID)
                    .is_some_and(|id| self.event_ids.contains(&id)))
    }
}

/// How long a metadata, watermark or fetch call may take.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(15);

/// A consumer that joins no group and commits nothing, and `topic`'s partition count.
fn open(
    settings: &KafkaSettings,
    topic: &str,
) -> Result<(BaseConsumer<KafkaContext>, i32), CtlError> {
    let consumer: BaseConsumer<KafkaContext> = settings
        .client_config()
        .set("group.id", "standbyctl")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create_with_context(settings.context())?;
    let metadata = consumer.fetch_metadata(Some(topic), KAFKA_TIMEOUT)?;
    match metadata.topics().first() {
        Some(t) if t.error().is_none() => Ok((consumer, t.partitions().len() as i32)),
        _ => Err(CtlError::Usage(format!(
            "there is no topic {topic:?} on these brokers (check --topic / STANDBY_DEAD_LETTER_TOPIC)"
        ))),
    }
}

fn timed_out() -> CtlError {
    CtlError::Kafka(rdkafka::error::KafkaError::MessageConsumption(
        rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
    ))
}

fn owned(message: &BorrowedMessage<'_>) -> DltRecord {
    DltRecord {
        id: DltId {
            partition: message.partition(),
            offset: message.offset(),
        },
        timestamp_ms: message.timestamp().to_millis(),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        headers: message
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| Header {
                        name: h.key.to_string(),
                        value: h.value.map(<[u8]>::to_vec),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Every record now in `topic`, by partition and offset.
fn read_all_blocking(settings: &KafkaSettings, topic: &str) -> Result<Vec<DltRecord>, CtlError> {
    let (consumer, partitions) = open(settings, topic)?;
    let mut assignment = TopicPartitionList::new();
    let mut remaining: HashMap<i32, i64> = HashMap::new();
    for partition in 0..partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, KAFKA_TIMEOUT)?;
        if high > low {
            assignment.add_partition_offset(topic, partition, Offset::Offset(low))?;
            remaining.insert(partition, high);
        }
    }
    let mut records = Vec::new();
    if remaining.is_empty() {
        return Ok(records);
    }
    consumer.assign(&assignment)?;
    while !remaining.is_empty() {
        match consumer.poll(KAFKA_TIMEOUT) {
            None => return Err(timed_out()),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) => {
                remaining.remove(&partition);
            }
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(message)) => {
                let Some(&high) = remaining.get(&message.partition()) else {
                    continue;
                };
                if message.offset() < high {
                    records.push(owned(&message));
                }
                if message.offset() + 1 >= high {
                    remaining.remove(&message.partition());
                }
            }
        }
    }
    records.sort_by_key(|r| r.id);
    Ok(records)
}

/// The record at `id`, fetched directly (not by reading the topic).
fn read_one_blocking(
    settings: &KafkaSettings,
    topic: &str,
    id: DltId,
) -> Result<DltRecord, CtlError> {
    let missing = || CtlError::NotFound(format!("no record {id} in {topic}"));
    let (consumer, partitions) = open(settings, topic)?;
    if !(0..partitions).contains(&id.partition) {
        return Err(missing());
    }
    let (low, high) = consumer.fetch_watermarks(topic, id.partition, KAFKA_TIMEOUT)?;
    if !(low..high).contains(&id.offset) {
        return Err(missing());
    }
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, id.partition, Offset::Offset(id.offset))?;
    consumer.assign(&assignment)?;
    loop {
        match consumer.poll(KAFKA_TIMEOUT) {
            None => return Err(timed_out()),
            // Past the offset without seeing it: compacted away.
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return Err(missing()),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(message)) if message.offset() == id.offset => return Ok(owned(&message)),
            Some(Ok(message)) if message.offset() > id.offset => return Err(missing()),
            Some(Ok(_)) => {}
        }
    }
}

/// Every record of `topic`. librdkafka's `poll` blocks, so the read runs on a blocking thread,
/// not on the async workers.
pub async fn read_all(settings: &KafkaSettings, topic: &str) -> Result<Vec<DltRecord>, CtlError> {
    let (settings, topic) = (settings.clone(), topic.to_string());
    off_the_workers(move || read_all_blocking(&settings, &topic)).await
}

/// The record at `id` (see [`read_all`] for why on a blocking thread).
pub async fn read_one(
    settings: &KafkaSettings,
    topic: &str,
    id: DltId,
) -> Result<DltRecord, CtlError> {
    let (settings, topic) = (settings.clone(), topic.to_string());
    off_the_workers(move || read_one_blocking(&settings, &topic, id)).await
}

async fn off_the_workers<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, CtlError> + Send + 'static,
) -> Result<T, CtlError> {
    tokio::task::spawn_blocking(read)
        .await
        .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
}

/// Where a record went when it was redriven (also the redrive log's item attributes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub at: String,
    pub edited: bool,
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]@{}", self.topic, self.partition, self.offset)
    }
}

/// Redrive records, in the state table.
pub struct RedriveLog {
    state: StateTable,
    dlt_topic: String,
}

impl RedriveLog {
    pub fn new(state: StateTable, dlt_topic: &str) -> Self {
        Self {
            state,
            dlt_topic: dlt_topic.to_string(),
        }
    }

    fn sort_key(&self, id: DltId) -> String {
        format!("{}/{}/{}", self.dlt_topic, id.partition, id.offset)
    }

    /// Every recorded redrive of this topic's records.
    pub async fn all(&self) -> Result<HashMap<DltId, Destination>, CtlError> {
        let prefix = format!("{}/", self.dlt_topic);
        let items = self
            .state
            .list_prefixed(REDRIVE_PK, &prefix)
            .await
            .map_err(|e| self.table_error(e))?;
        let mut found = HashMap::new();
        for item in items {
            // An entry that does not parse (written by another version) is not a redrive we
            // can show; the record then simply reads as not redriven.
            let id = match item.get("sk") {
                Some(AttributeValue::S(sort_key)) => sort_key
                    .strip_prefix(&prefix)
                    .and_then(|position| position.split_once('/'))
                    .and_then(|(partition, offset)| {
                        Some(DltId {
                            partition: partition.parse().ok()?,
                            offset: offset.parse().ok()?,
                        })
                    }),
                _ => None,
            };
            if let (Some(id), Ok(destination)) = (id, serde_dynamo::from_item(item)) {
                found.insert(id, destination);
            }
        }
        Ok(found)
    }

    pub async fn record(&self, id: DltId, destination: &Destination) -> Result<(), CtlError> {
        let attributes =
            serde_dynamo::to_item(destination).expect("a destination is strings and numbers");
        self.state
            .put(REDRIVE_PK, &self.sort_key(id), attributes)
            .await
            .map_err(|e| self.table_error(e))
    }

    fn table_error(&self, error: sdk::standby_table::TableError) -> CtlError {
        CtlError::table(self.state.name(), "--state-table / STATE_TABLE_NAME", error)
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
    let records = read_all(settings, topic).await?;
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
                .map_or_else(|| "(no prefix)".into(), |v| v.to_string()),
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
    let record = read_one(settings, topic, id).await?;
    Ok(DltShowReport {
        id: id.to_string(),
        topic: topic.to_string(),
        age_seconds: age_of(record.timestamp_ms),
        key: record.key.as_deref().map(|k| Shown::of(k, force_hex)),
        headers: HeaderView::all(&record.headers, force_hex),
        value: DecodedValue::of(&record.value, force_hex),
    })
}

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

#[derive(Debug, Serialize)]
pub struct RedriveRow {
    pub id: String,
    /// `sent`, `would_send`, `already_redriven`, `refused`, `failed`.
    pub outcome: &'static str,
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
                row.outcome.replace('_', " "),
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
            .any(|r| matches!(r.outcome, "failed" | "refused"))
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
    pub dry_run: bool,
    pub again: bool,
    pub log: Option<&'a RedriveLog>,
}

impl Redrive<'_> {
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
            if row.outcome == "sent" {
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
        let row = |outcome, detail: Option<String>| RedriveRow {
            id: record.id.to_string(),
            outcome,
            original_topic: original_topic.clone(),
            to: None,
            edited: false,
            detail,
        };
        if record.is_malformed_item() {
            return Ok(row(
                "refused",
                Some("a malformed standby item (raw item JSON, not an event): fix the producer and rewrite the event; `dlt show` prints the item".into()),
            ));
        }
        let Some(topic) = original_topic.clone() else {
            return Ok(row(
                "refused",
                Some(format!("no {} header", dead_letter::ORIGINAL_TOPIC)),
            ));
        };
        if let Some(before) = done.get(&record.id)
            && !self.again
        {
            return Ok(RedriveRow {
                to: Some(before.clone()),
                ..row(
                    "already_redriven",
                    Some("pass --again to send it once more".into()),
                )
            });
        }
        let value = match self.repair.apply(record) {
            Ok(value) => value,
            Err(error) => return Ok(row("failed", Some(error.to_string()))),
        };
        let edited = value != record.value;
        if self.dry_run {
            return Ok(RedriveRow {
                edited,
                ..row(
                    "would_send",
                    edited.then(|| DecodedValue::of(&value, false).payload.short(80)),
                )
            });
        }
        let from = format!(
            "{}/{}/{}",
            self.topic, record.id.partition, record.id.offset
        );
        let original_headers = record.original_headers();
        let redriven_from = [Header::new(REDRIVEN_FROM, from)];
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
            Err((error, _)) => return Ok(row("failed", Some(error.to_string()))),
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
            ..row("sent", None)
        })
    }
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
