//! `standbyctl standby …`: read the standby table, and replay or purge what a filter selects.
//!
//! Replay runs the selected items through the republisher's own engine (the same code the
//! Lambda runs), so the bytes, headers, per-key order, ack-before-delete and dead-lettering are
//! the republisher's by construction, not by imitation.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use republisher::adapters::{DynamoTable, KafkaSink};
use republisher::engine::{self, Budget, Outcome, Table};
use republisher::entry::{self, Entry, SkipReason, Work};
use sdk::standby_table::{StandbyTable, TableError};
use serde::Serialize;

use crate::error::{CtlError, Finish};
use crate::render::{self, DecodedValue, HeaderView, Report, Shown, now_ms};
use crate::selection::StandbyFilter;

/// Items handed to the engine at once: big enough for concurrency across keys, small enough
/// for a progress bar that moves.
const REPLAY_CHUNK: usize = 500;

/// A failed read of the standby table; a missing table is a configuration mistake.
fn standby_table_error(table: &StandbyTable, error: TableError) -> CtlError {
    CtlError::table(table.name(), "--table / STANDBY_TABLE_NAME", error)
}

/// Every item `filter` selects, oldest event first (event ids are UUIDv7, so a key's items
/// keep their sort-key order), positions numbered in that order.
pub async fn select(
    table: &StandbyTable,
    filter: &StandbyFilter,
    now_ms: u64,
) -> Result<Vec<Entry>, CtlError> {
    let items = table
        .read_all(&filter.read_plan(now_ms))
        .await
        .map_err(|e| standby_table_error(table, e))?;
    let mut selected: Vec<Entry> = entry::from_items(items)
        .into_iter()
        // Topic backlog markers are the producers' signal, not events.
        .filter(|e| e.work != Work::Skip(SkipReason::Marker))
        .filter(|e| filter.matches(e, now_ms))
        .collect();
    selected.sort_by(|a, b| a.event_id().cmp(b.event_id()));
    for (position, entry) in selected.iter_mut().enumerate() {
        entry.position = position;
    }
    Ok(selected)
}

/// One item as a table row / JSON object.
#[derive(Debug, Clone, Serialize)]
pub struct ItemRow {
    pub event_id: String,
    pub topic: Option<String>,
    pub key: Option<Shown>,
    pub age_seconds: Option<u64>,
    pub value_bytes: Option<usize>,
    pub schema_version: Option<String>,
    pub producer_id: Option<String>,
    /// When DynamoDB's TTL deletes it (seconds since the epoch).
    pub expires_at: Option<u64>,
    /// Why the item is not a valid standby record.
    pub malformed: Option<String>,
}

impl ItemRow {
    pub fn of(entry: &Entry, now_ms: u64) -> Self {
        let event_id = entry.event_id().to_string();
        match &entry.work {
            Work::Publish(record) => Self {
                event_id,
                topic: Some(record.topic.clone()),
                key: record.key.as_deref().map(|k| Shown::of(k, false)),
                age_seconds: Some(now_ms.saturating_sub(record.created_at_ms) / 1000),
                value_bytes: Some(record.value.len()),
                schema_version: record.schema_id().map(|id| id.to_string()),
                producer_id: Some(record.producer_id.clone()),
                expires_at: Some(record.expires_at),
                malformed: None,
            },
            Work::Malformed { reason, .. } => Self {
                event_id,
                topic: entry.topic().map(str::to_string),
                key: None,
                age_seconds: None,
                value_bytes: None,
                schema_version: None,
                producer_id: None,
                expires_at: None,
                malformed: Some(reason.clone()),
            },
            Work::Skip(_) => unreachable!("a table read yields no removals"),
        }
    }
}

/// The rows as a table; `None` when there are none.
fn item_table(rows: &[ItemRow]) -> Option<String> {
    if rows.is_empty() {
        return None;
    }
    let mut table = render::table(&[
        "EVENT ID",
        "TOPIC",
        "KEY",
        "AGE",
        "BYTES",
        "SCHEMA",
        "PRODUCER / PROBLEM",
    ]);
    let dash = || "-".to_string();
    for row in rows {
        table.add_row(vec![
            row.event_id.clone(),
            row.topic.clone().unwrap_or_else(|| "?".into()),
            row.key
                .as_ref()
                .map_or_else(|| "(null)".into(), |k| k.short(24)),
            row.age_seconds
                .map_or_else(dash, |s| render::age(Duration::from_secs(s))),
            row.value_bytes.map_or_else(dash, |b| b.to_string()),
            row.schema_version.clone().unwrap_or_else(dash),
            match (&row.malformed, &row.producer_id) {
                (Some(reason), _) => format!("malformed: {reason}"),
                (None, Some(producer)) => producer.clone(),
                (None, None) => dash(),
            },
        ]);
    }
    Some(table.to_string())
}

fn oldest_age_seconds(rows: &[ItemRow]) -> Option<u64> {
    rows.iter().filter_map(|r| r.age_seconds).max()
}

fn totals_line(total: usize, oldest: Option<u64>) -> String {
    match oldest {
        Some(age) => format!(
            "{total} item(s), oldest {}",
            render::age(Duration::from_secs(age))
        ),
        None => format!("{total} item(s)"),
    }
}

#[derive(Debug, Serialize)]
pub struct LsReport {
    pub total: usize,
    pub oldest_age_seconds: Option<u64>,
    /// The rows shown (at most `--limit`), oldest first.
    pub items: Vec<ItemRow>,
}

impl Report for LsReport {
    fn human(&self) -> String {
        render::listing(
            item_table(&self.items),
            &totals_line(self.total, self.oldest_age_seconds),
            self.items.len(),
            self.total,
        )
    }
}

pub async fn ls(
    table: &StandbyTable,
    filter: &StandbyFilter,
    limit: usize,
) -> Result<LsReport, CtlError> {
    let now = now_ms();
    let rows: Vec<ItemRow> = select(table, filter, now)
        .await?
        .iter()
        .map(|e| ItemRow::of(e, now))
        .collect();
    Ok(LsReport {
        total: rows.len(),
        oldest_age_seconds: oldest_age_seconds(&rows),
        items: rows.into_iter().take(limit).collect(),
    })
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TopicCount {
    pub topic: String,
    pub items: usize,
    pub oldest_age_seconds: u64,
    pub value_bytes: usize,
    /// Items whose TTL has passed: DynamoDB deletes them (within days), unpublished.
    pub past_ttl: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct CountReport {
    pub total: usize,
    pub malformed: usize,
    pub oldest_age_seconds: Option<u64>,
    pub topics: Vec<TopicCount>,
}

impl Report for CountReport {
    fn human(&self) -> String {
        let mut table = render::table(&["TOPIC", "ITEMS", "OLDEST", "BYTES", "PAST TTL"]);
        for topic in &self.topics {
            table.add_row(vec![
                topic.topic.clone(),
                topic.items.to_string(),
                render::age(Duration::from_secs(topic.oldest_age_seconds)),
                topic.value_bytes.to_string(),
                topic.past_ttl.to_string(),
            ]);
        }
        if self.malformed > 0 {
            table.add_row(vec![
                "(malformed)".into(),
                self.malformed.to_string(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
        }
        let totals = totals_line(self.total, self.oldest_age_seconds);
        if self.total == 0 {
            totals
        } else {
            format!("{table}\n{totals}")
        }
    }
}

pub async fn count(table: &StandbyTable, filter: &StandbyFilter) -> Result<CountReport, CtlError> {
    let now = now_ms();
    let rows: Vec<ItemRow> = select(table, filter, now)
        .await?
        .iter()
        .map(|e| ItemRow::of(e, now))
        .collect();
    let mut topics: BTreeMap<String, TopicCount> = BTreeMap::new();
    let mut malformed = 0;
    for row in &rows {
        let (Some(topic), None) = (&row.topic, &row.malformed) else {
            malformed += 1;
            continue;
        };
        let counted = topics.entry(topic.clone()).or_insert_with(|| TopicCount {
            topic: topic.clone(),
            ..Default::default()
        });
        counted.items += 1;
        counted.oldest_age_seconds = counted.oldest_age_seconds.max(row.age_seconds.unwrap_or(0));
        counted.value_bytes += row.value_bytes.unwrap_or(0);
        if row
            .expires_at
            .is_some_and(|at| at.saturating_mul(1000) <= now)
        {
            counted.past_ttl += 1;
        }
    }
    Ok(CountReport {
        total: rows.len(),
        malformed,
        oldest_age_seconds: oldest_age_seconds(&rows),
        topics: topics.into_values().collect(),
    })
}

#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ShowReport {
    Record {
        event_id: String,
        partition_key: String,
        topic: String,
        key: Option<Shown>,
        producer_id: String,
        created_at: String,
        age_seconds: u64,
        expires_at: String,
        headers: Vec<HeaderView>,
        value: DecodedValue,
    },
    Malformed {
        event_id: String,
        problem: String,
        item: serde_json::Value,
    },
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(wire::clock::time_of_ms(ms)).to_string()
}

impl Report for ShowReport {
    fn human(&self) -> String {
        match self {
            Self::Record {
                event_id,
                partition_key,
                topic,
                key,
                producer_id,
                created_at,
                age_seconds,
                expires_at,
                headers,
                value,
            } => {
                let mut out = format!(
                    "event id       {event_id}\npartition key  {partition_key}\ntopic          {topic}\nkey            {}\nproducer       {producer_id}\ncreated        {created_at} ({} ago)\nexpires        {expires_at}\nschema version {}\nvalue          {} bytes\n",
                    render::or_null(key.as_ref()),
                    render::age(Duration::from_secs(*age_seconds)),
                    value
                        .schema_version
                        .clone()
                        .unwrap_or_else(|| "(no prefix)".into()),
                    value.bytes,
                );
                out.push_str(&render::header_lines(headers));
                out.push_str(&format!("payload\n{}", value.payload.text()));
                out
            }
            Self::Malformed {
                event_id,
                problem,
                item,
            } => format!(
                "event id  {event_id}\nmalformed {problem}\nitem\n{}",
                serde_json::to_string_pretty(item).unwrap_or_default()
            ),
        }
    }
}

pub async fn show(
    table: &StandbyTable,
    event_id: &str,
    force_hex: bool,
) -> Result<ShowReport, CtlError> {
    if event_id.parse::<wire::record::EventId>().is_err() {
        return Err(CtlError::Usage(format!(
            "{event_id:?} is not an event id (a UUID, as `standby ls` prints it)"
        )));
    }
    let filter = StandbyFilter {
        event_ids: vec![event_id.to_string()],
        ..Default::default()
    };
    let now = now_ms();
    let found = select(table, &filter, now).await?;
    let Some(entry) = found.into_iter().next() else {
        return Err(CtlError::NotFound(format!(
            "no item with event id {event_id} in table {}",
            table.name()
        )));
    };
    Ok(match entry.work {
        Work::Publish(record) => ShowReport::Record {
            event_id: record.event_id.to_string(),
            partition_key: record.partition_key(),
            key: record.key.as_deref().map(|k| Shown::of(k, force_hex)),
            producer_id: record.producer_id.clone(),
            created_at: rfc3339(record.created_at_ms),
            age_seconds: now.saturating_sub(record.created_at_ms) / 1000,
            expires_at: rfc3339(record.expires_at * 1000),
            headers: HeaderView::all(&record.headers, force_hex),
            value: DecodedValue::of(&record.value, force_hex),
            topic: record.topic,
        },
        Work::Malformed { raw, reason, .. } => ShowReport::Malformed {
            event_id: event_id.to_string(),
            problem: reason,
            item: raw,
        },
        Work::Skip(_) => unreachable!("a table read yields no removals"),
    })
}

/// What happened to one item that did not go cleanly.
#[derive(Debug, Serialize)]
pub struct Trouble {
    pub event_id: String,
    pub outcome: TroubleKind,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TroubleKind {
    /// Kafka refused it for good, or it was malformed: now in the dead-letter topic.
    DeadLettered,
    /// Refused by its topic and by the dead-letter topic: still in the table, its key held.
    Stranded,
    /// Kafka did not take it this time: still in the table.
    Failed,
    /// Its topic refuses us: still in the table, its key held.
    Held,
}

impl TroubleKind {
    fn human(self) -> &'static str {
        match self {
            Self::DeadLettered => "dead-lettered",
            Self::Stranded => "stranded",
            Self::Failed => "failed",
            Self::Held => "held",
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct ReplayReport {
    pub dry_run: bool,
    pub selected: usize,
    pub republished: usize,
    pub dead_lettered: usize,
    /// Failed, or not attempted because an earlier event of the same run failed; still in the table.
    pub left_in_table: usize,
    /// Earlier events of a selected event's key that were not selected but waited in the table
    /// ahead of it: the order gate republishes them first (a key's events never overtake).
    pub earlier_of_same_key: usize,
    pub troubles: Vec<Trouble>,
    /// With --dry-run: what would be replayed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<ItemRow>,
}

impl Report for ReplayReport {
    fn human(&self) -> String {
        if self.dry_run {
            let summary = format!(
                "dry run: would replay {} item(s) (malformed ones to the dead-letter topic), and first any earlier events of their keys still in the table; nothing was sent or deleted",
                self.selected
            );
            return render::listing(item_table(&self.items), &summary, 0, 0);
        }
        let mut out = format!(
            "replayed {} of {} item(s): {} republished, {} dead-lettered, {} left in the table",
            self.republished + self.dead_lettered,
            self.selected,
            self.republished,
            self.dead_lettered,
            self.left_in_table
        );
        if self.earlier_of_same_key > 0 {
            out.push_str(&format!(
                "\n  also republished first, to keep each key in order: {} earlier event(s) of the selected keys",
                self.earlier_of_same_key
            ));
        }
        for trouble in &self.troubles {
            out.push_str(&format!(
                "\n  {} {}: {}",
                trouble.event_id,
                trouble.outcome.human(),
                trouble.reason
            ));
        }
        out
    }
}

impl ReplayReport {
    pub fn finish(&self) -> Finish {
        if self.left_in_table > 0 {
            Finish::Partial
        } else {
            Finish::Done
        }
    }
}

/// Replays `entries` (from [`select`]) through the republisher's engine, a chunk at a time.
/// The first failure stops the run: a later event of the same key must not overtake it.
pub async fn replay(
    entries: Vec<Entry>,
    sink: &KafkaSink,
    table: &DynamoTable,
    delivery_timeout: Duration,
    progress: &ProgressBar,
) -> ReplayReport {
    let mut report = ReplayReport {
        selected: entries.len(),
        ..Default::default()
    };
    // An operator's run has no Lambda deadline; the budget only keeps the engine's shape.
    let budget = Budget {
        deadline: Instant::now() + Duration::from_secs(365 * 86_400),
        delivery_timeout,
        margin: Duration::ZERO,
    };
    progress.set_length(entries.len() as u64);
    let mut stopped = false;
    for chunk in entries.chunks(REPLAY_CHUNK) {
        if stopped {
            report.left_in_table += chunk.len();
            continue;
        }
        let mut chunk = chunk.to_vec();
        for (position, entry) in chunk.iter_mut().enumerate() {
            entry.position = position;
        }
        let outcome = engine::process(&chunk, sink, table, &budget).await;
        report.earlier_of_same_key += outcome.from_backlog;
        for (entry, result) in chunk.iter().zip(&outcome.outcomes) {
            let trouble = match result {
                Outcome::Republished { .. } => {
                    report.republished += 1;
                    None
                }
                Outcome::DeadLettered { reason } => {
                    report.dead_lettered += 1;
                    Some((TroubleKind::DeadLettered, reason))
                }
                Outcome::Stranded { reason } => {
                    report.left_in_table += 1;
                    Some((TroubleKind::Stranded, reason))
                }
                Outcome::Failed { reason } => {
                    report.left_in_table += 1;
                    Some((TroubleKind::Failed, reason))
                }
                Outcome::Held { reason } => {
                    report.left_in_table += 1;
                    Some((TroubleKind::Held, reason))
                }
                Outcome::NotAttempted => {
                    report.left_in_table += 1;
                    None
                }
                Outcome::Skipped(_) => None,
            };
            if let Some((outcome, reason)) = trouble {
                report.troubles.push(Trouble {
                    event_id: entry.event_id().to_string(),
                    outcome,
                    reason: reason.clone(),
                });
            }
        }
        // A delete that failed after a successful publish leaves the item for the republisher;
        // the event is in Kafka, so it counts as republished but is not gone from the table.
        if let Some(first) = outcome.first_failure {
            stopped = true;
            let undeleted = outcome.outcomes[first..]
                .iter()
                .filter(|o| {
                    matches!(
                        o,
                        Outcome::Republished { .. } | Outcome::DeadLettered { .. }
                    )
                })
                .count();
            report.left_in_table += undeleted;
        }
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();
    report
}

#[derive(Debug, Serialize)]
pub struct PurgeReport {
    pub selected: usize,
    pub deleted: usize,
    /// The count `--expect` pinned, when given.
    pub expected: Option<usize>,
    /// True when --yes was missing or the selection no longer has the expected count: nothing
    /// was deleted.
    pub refused: bool,
    pub error: Option<String>,
    pub items: Vec<ItemRow>,
}

impl Report for PurgeReport {
    fn human(&self) -> String {
        let summary = match (self.refused, &self.error) {
            (true, _) if self.expected.is_some_and(|n| n != self.selected) => format!(
                "the selection has {} item(s), not the {} expected: the table changed since the \
                 listing; nothing deleted",
                self.selected,
                self.expected.unwrap_or_default()
            ),
            (true, _) => format!(
                "would delete {} item(s); refusing without --yes (these events would be lost)",
                self.selected
            ),
            (false, None) => format!("deleted {} of {} item(s)", self.deleted, self.selected),
            (false, Some(error)) => format!(
                "deleted {} of {} item(s); stopped: {error}",
                self.deleted, self.selected
            ),
        };
        render::listing(item_table(&self.items), &summary, 0, 0)
    }
}

impl PurgeReport {
    pub fn finish(&self) -> Finish {
        match (self.refused, self.deleted == self.selected) {
            (true, _) => Finish::Refused,
            (false, true) => Finish::Done,
            (false, false) => Finish::Partial,
        }
    }
}

/// Deletes the items `filter` selects, if `yes`; with `expect`, only if they are exactly that
/// many (the operator pins what a listing showed, so a selection that grew since deletes nothing).
pub async fn purge(
    standby: &StandbyTable,
    filter: &StandbyFilter,
    expect: Option<usize>,
    yes: bool,
) -> Result<PurgeReport, CtlError> {
    let now = now_ms();
    let entries = select(standby, filter, now).await?;
    let items: Vec<ItemRow> = entries.iter().map(|e| ItemRow::of(e, now)).collect();
    let unexpected = expect.is_some_and(|n| n != entries.len());
    let mut report = PurgeReport {
        selected: entries.len(),
        deleted: 0,
        expected: expect,
        refused: unexpected || (!yes && !entries.is_empty()),
        error: None,
        items,
    };
    if report.refused || entries.is_empty() {
        return Ok(report);
    }
    let keys: Vec<_> = entries.iter().filter_map(|e| e.key.clone()).collect();
    let deleter = DynamoTable::new(standby.clone());
    match deleter.delete(&keys).await {
        Ok(()) => report.deleted = keys.len(),
        Err(failure) => {
            report.deleted = failure.first_not_deleted;
            report.error = Some(failure.reason);
        }
    }
    Ok(report)
}

pub fn progress_bar(visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{spinner} {bar:40} {pos}/{len} {per_sec} eta {eta}")
            .expect("a valid template"),
    )
}
