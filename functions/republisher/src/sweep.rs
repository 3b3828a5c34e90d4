//! The scheduled sweep: republishes items the stream did not deliver (stream records expire
//! after 24 hours, and Lambda gives up on a record after its retries).
//!
//! It scans the standby table for items older than `SWEEP_MIN_AGE_SECONDS`, a page at a time,
//! and runs each page through the same rules as a stream batch. After a page is fully done it
//! saves the scan position in the state table, so the next sweep resumes there; when the scan
//! reaches the end the position is cleared and the next sweep starts a new pass. A page with a
//! failure is not passed: the next sweep tries it again.
//!
//! Within a page, a key's items come in sort-key (creation) order, and a key split across pages
//! is finished page by page, so per-key order holds among swept items.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use shared::record::attr;
use shared::standby_table::{StandbyTable, TableError};
use shared::state_table::StateTable;

use crate::engine::{self, Budget, Outcome, Sink, Table};

/// State-table partition key of the sweep's resume points (sort key: the standby table name).
pub const CHECKPOINT_PK: &str = "republisher#sweep";
const LAST_KEY: &str = "last_key";

#[derive(Debug, Clone, Copy)]
pub struct SweepSettings {
    pub min_age: Duration,
    pub page_size: i32,
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub pages: usize,
    pub scanned: usize,
    pub republished: usize,
    pub dead_lettered: usize,
    pub failed: usize,
    /// The scan reached the end of the table (the next sweep starts a new pass).
    pub pass_completed: bool,
    /// Age of the oldest item republished, milliseconds.
    pub oldest_age_ms: u64,
}

/// Sweeps pages until the table is done, a page fails, or the budget runs out.
pub async fn run<S: Sink, T: Table>(
    standby: &StandbyTable,
    state: &StateTable,
    sink: &S,
    table: &T,
    settings: SweepSettings,
    budget: &Budget,
) -> Result<SweepReport, TableError> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let cutoff_ms = now_ms.saturating_sub(settings.min_age.as_millis() as u64);
    let mut report = SweepReport::default();
    while budget.has_room() {
        let start = load_checkpoint(state, standby.name()).await?;
        let page = standby
            .client()
            .scan()
            .table_name(standby.name())
            .set_exclusive_start_key(start)
            .limit(settings.page_size)
            .consistent_read(true)
            .filter_expression("#created < :cutoff")
            .expression_attribute_names("#created", attr::CREATED_AT)
            .expression_attribute_values(":cutoff", AttributeValue::N(cutoff_ms.to_string()))
            .send()
            .await?;
        let items = page.items.unwrap_or_default();
        report.pages += 1;
        report.scanned += items.len();

        let entries = crate::entry::from_items(items);
        for entry in &entries {
            if let crate::entry::Work::Publish(record) = &entry.work {
                report.oldest_age_ms = report
                    .oldest_age_ms
                    .max(now_ms.saturating_sub(record.created_at_ms));
            }
        }
        let outcome = engine::process(&entries, sink, table, budget).await;
        report.republished += outcome.count(|o| matches!(o, Outcome::Republished { .. }));
        report.dead_lettered += outcome.count(|o| matches!(o, Outcome::DeadLettered { .. }));
        if outcome.first_failure.is_some() {
            report.failed += outcome.count(|o| matches!(o, Outcome::Failed { .. }));
            break;
        }
        match page.last_evaluated_key {
            Some(last) => save_checkpoint(state, standby.name(), last).await?,
            None => {
                state.delete(CHECKPOINT_PK, standby.name()).await?;
                report.pass_completed = true;
                break;
            }
        }
    }
    Ok(report)
}

async fn load_checkpoint(
    state: &StateTable,
    table: &str,
) -> Result<Option<HashMap<String, AttributeValue>>, TableError> {
    Ok(state
        .get(CHECKPOINT_PK, table)
        .await?
        .and_then(|mut item| item.remove(LAST_KEY))
        .and_then(|key| match key {
            AttributeValue::M(map) => Some(map),
            _ => None,
        }))
}

async fn save_checkpoint(
    state: &StateTable,
    table: &str,
    last: HashMap<String, AttributeValue>,
) -> Result<(), TableError> {
    let updated = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    state
        .put(
            CHECKPOINT_PK,
            table,
            HashMap::from([
                (LAST_KEY.to_string(), AttributeValue::M(last)),
                (
                    "updated_at".to_string(),
                    AttributeValue::N(updated.to_string()),
                ),
            ]),
        )
        .await
}
