//! The scheduled sweep: republishes what the stream did not (stream records expire after 24
//! hours, the event source mapping gives up on old or failing records, held keys were passed),
//! and takes down topic backlog markers once their topic has nothing left waiting.
//!
//! Each run:
//! 1. **Held keys first** ([`crate::held`]): each one's whole backlog goes through the engine;
//!    a key that goes through is released, one still refused stays held.
//! 2. **A scan, a page at a time**, resuming where the last run stopped (the position is kept in
//!    the state table after each page that is fully done; a page with a failure is tried again by
//!    the next run). Items older than `SWEEP_MIN_AGE_SECONDS` go through the engine, whose order
//!    gate publishes each key's earlier events first, so neither a page boundary inside a key nor
//!    an age cut-off can let a later event overtake an earlier one.
//! 3. **At the end of a pass**, the marker of each topic of which the pass left no event in the
//!    table is removed, unless a producer raised it after `pass start − MARKER_GRACE`. Producers
//!    raise the marker before every standby write (at most a refresh interval apart), so a marker
//!    is never removed while an event written during the pass is waiting; the grace covers the
//!    refresh interval and clock skew between producers and the function.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use sdk::standby_table::{Item, StandbyTable, TableError};
use serde::Serialize;
use shared::state_table::StateTable;
use wire::clock::now_ms;
use wire::record::{attr, marker, topic_of_partition_key};
// Sort key: the standby table name.
use shared::state_table::keys::REPUBLISHER_SWEEP as CHECKPOINT_PK;

use crate::engine::{self, Budget, Outcome, Sink, Table};
use crate::entry::{self, SkipReason, Work};
use crate::held;

const LAST_KEY: &str = "last_key";
const PASS_STARTED_AT: &str = "pass_started_at";
const TOPICS_WAITING: &str = "topics_waiting";
const MARKERS: &str = "markers";

#[derive(Debug, Clone, Copy)]
pub struct SweepSettings {
    pub min_age: Duration,
    pub page_size: i32,
    /// How long before a pass started a marker must have been raised last to be removed.
    pub marker_grace: Duration,
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub pages: usize,
    pub scanned: usize,
    pub republished: usize,
    /// Of those, events published ahead of a swept item of their key by the order gate.
    pub from_backlog: usize,
    pub dead_lettered: usize,
    pub failed: usize,
    pub held_released: usize,
    pub held_remaining: usize,
    pub markers_cleared: usize,
    /// Events the scan read that are still in the table after it (too young to sweep, held,
    /// or failed): the backlog this run saw.
    pub waiting: usize,
    /// The scan reached the end of the table (the next sweep starts a new pass).
    pub pass_completed: bool,
    /// Age of the oldest item republished, milliseconds.
    pub oldest_age_ms: u64,
}

/// Where a pass is, kept between runs.
#[derive(Debug, Default)]
struct Pass {
    last_key: Option<Item>,
    started_at_ms: u64,
    /// Topics of which the pass saw an event it left in the table.
    topics_waiting: BTreeSet<String>,
    /// Topics whose marker the pass saw.
    markers: BTreeSet<String>,
}

/// Sweeps held keys, then pages until the table is done, a page fails, or the budget runs out.
pub async fn run<S: Sink, T: Table>(
    standby: &StandbyTable,
    state: &StateTable,
    sink: &S,
    table: &T,
    settings: SweepSettings,
    budget: &Budget,
) -> Result<SweepReport, TableError> {
    let mut report = SweepReport::default();
    release_held(standby, state, sink, table, budget, &mut report).await?;

    let now = now_ms();
    let cutoff_ms = now.saturating_sub(settings.min_age.as_millis() as u64);
    let mut pass = load_pass(state, standby.name())
        .await?
        .unwrap_or_else(|| Pass {
            started_at_ms: now,
            ..Pass::default()
        });
    while budget.has_room() {
        let (items, last_key) = standby
            .scan_page(pass.last_key.clone(), settings.page_size)
            .await?;
        report.pages += 1;
        report.scanned += items.len();

        let mut due = Vec::new();
        for item in items {
            match item_pk(&item) {
                Some(pk) if marker::marker_topic(pk).is_some() => {
                    pass.markers
                        .extend(marker::marker_topic(pk).map(str::to_string));
                }
                _ if created_at(&item).is_some_and(|at| at < cutoff_ms) => due.push(item),
                pk => {
                    // Too young to sweep: the stream is still on it, and the topic is waiting.
                    report.waiting += 1;
                    pass.topics_waiting
                        .extend(pk.and_then(topic_of_partition_key).map(str::to_string));
                }
            }
        }
        let entries = entry::from_items(due);
        for entry in &entries {
            if let Work::Publish(record) = &entry.work {
                report.oldest_age_ms = report
                    .oldest_age_ms
                    .max(now.saturating_sub(record.created_at_ms));
            }
        }
        let outcome = engine::process(&entries, sink, table, budget).await;
        tally(&outcome, &mut report);
        for (entry, result) in entries.iter().zip(&outcome.outcomes) {
            let gone = matches!(
                result,
                Outcome::Republished { .. }
                    | Outcome::DeadLettered { .. }
                    | Outcome::Skipped(SkipReason::AlreadyRepublished)
            );
            if !gone {
                report.waiting += 1;
                pass.topics_waiting.extend(
                    entry
                        .key
                        .as_ref()
                        .and_then(|k| topic_of_partition_key(&k.pk))
                        .map(str::to_string),
                );
            }
        }
        held::record(state, standby.name(), &outcome.held).await?;
        if outcome.first_failure.is_some() {
            break;
        }
        match last_key {
            Some(last) => {
                pass.last_key = Some(last);
                save_pass(state, standby.name(), &pass).await?;
            }
            None => {
                let before = pass
                    .started_at_ms
                    .saturating_sub(settings.marker_grace.as_millis() as u64);
                for topic in pass.markers.difference(&pass.topics_waiting) {
                    if standby.clear_marker(topic, before).await? {
                        tracing::info!(
                            topic,
                            "no event of the topic waits any more; backlog marker removed"
                        );
                        report.markers_cleared += 1;
                    }
                }
                state.delete(CHECKPOINT_PK, standby.name()).await?;
                report.pass_completed = true;
                break;
            }
        }
    }
    Ok(report)
}

/// Republishes held keys' backlogs, oldest-retried first, for at most half of the invocation's
/// remaining time (the scan must get its turn even when a whole topic is held); releases the
/// keys that went through.
async fn release_held<S: Sink, T: Table>(
    standby: &StandbyTable,
    state: &StateTable,
    sink: &S,
    table: &T,
    budget: &Budget,
    report: &mut SweepReport,
) -> Result<(), TableError> {
    let now = Instant::now();
    let share = Budget {
        deadline: now + budget.deadline.saturating_duration_since(now) / 2,
        ..*budget
    };
    for held in held::list(state, standby.name()).await? {
        if !share.has_room() {
            report.held_remaining += 1;
            continue;
        }
        // One page at a time: the next sweep goes on where this one stopped.
        let (page, more) = standby.backlog(&held.pk, None, None, HELD_PAGE).await?;
        let whole_backlog = !more;
        let entries = entry::from_items(page);
        let outcome = engine::process(&entries, sink, table, &share).await;
        tally(&outcome, report);
        if whole_backlog && outcome.first_failure.is_none() && outcome.held.is_empty() {
            if held::release(state, standby.name(), &held).await? {
                let topic = wire::record::topic_of_partition_key(&held.pk);
                tracing::info!(topic, "held key released");
                tracing::debug!(partition_key = held.pk, "partition key of the released key");
                report.held_released += 1;
            } else {
                // Held again meanwhile by a stream batch: its record stays.
                report.held_remaining += 1;
            }
        } else {
            held::record(state, standby.name(), &outcome.held).await?;
            held::touch(state, standby.name(), &held).await?;
            report.held_remaining += 1;
        }
    }
    Ok(())
}

/// Items of a held key's backlog taken per sweep.
const HELD_PAGE: usize = 1000;

fn tally(outcome: &engine::Report, report: &mut SweepReport) {
    report.republished +=
        outcome.count(|o| matches!(o, Outcome::Republished { .. })) + outcome.from_backlog;
    report.from_backlog += outcome.from_backlog;
    report.dead_lettered += outcome.count(|o| matches!(o, Outcome::DeadLettered { .. }));
    report.failed += outcome.count(|o| matches!(o, Outcome::Failed { .. }));
}

fn item_pk(item: &Item) -> Option<&str> {
    match item.get(attr::PARTITION_KEY) {
        Some(AttributeValue::S(pk)) => Some(pk),
        _ => None,
    }
}

fn created_at(item: &Item) -> Option<u64> {
    match item.get(attr::CREATED_AT) {
        Some(AttributeValue::N(n)) => n.parse().ok(),
        _ => None,
    }
}

fn string_list(values: &BTreeSet<String>) -> AttributeValue {
    AttributeValue::L(values.iter().cloned().map(AttributeValue::S).collect())
}

fn read_string_list(value: Option<AttributeValue>) -> BTreeSet<String> {
    match value {
        Some(AttributeValue::L(list)) => list
            .into_iter()
            .filter_map(|v| match v {
                AttributeValue::S(s) => Some(s),
                _ => None,
            })
            .collect(),
        _ => BTreeSet::new(),
    }
}

async fn load_pass(state: &StateTable, table: &str) -> Result<Option<Pass>, TableError> {
    let Some(mut item) = state.get(CHECKPOINT_PK, table).await? else {
        return Ok(None);
    };
    Ok(Some(Pass {
        last_key: match item.remove(LAST_KEY) {
            Some(AttributeValue::M(map)) => Some(map),
            _ => None,
        },
        started_at_ms: match item.remove(PASS_STARTED_AT) {
            Some(AttributeValue::N(n)) => n.parse().unwrap_or(0),
            // A checkpoint from before passes had a start: as old as can be (no marker removed
            // unless raised before the epoch).
            _ => 0,
        },
        topics_waiting: read_string_list(item.remove(TOPICS_WAITING)),
        markers: read_string_list(item.remove(MARKERS)),
    }))
}

async fn save_pass(state: &StateTable, table: &str, pass: &Pass) -> Result<(), TableError> {
    let mut attributes = HashMap::from([
        (
            PASS_STARTED_AT.to_string(),
            AttributeValue::N(pass.started_at_ms.to_string()),
        ),
        (
            TOPICS_WAITING.to_string(),
            string_list(&pass.topics_waiting),
        ),
        (MARKERS.to_string(), string_list(&pass.markers)),
        (
            "updated_at".to_string(),
            AttributeValue::N(wire::clock::now_secs().to_string()),
        ),
    ]);
    if let Some(last) = &pass.last_key {
        attributes.insert(LAST_KEY.to_string(), AttributeValue::M(last.clone()));
    }
    state.put(CHECKPOINT_PK, table, attributes).await
}
