//! Keys the republisher holds back, kept in the state table so the sweep can retry them.
//!
//! A key is held when publishing its oldest waiting event fails for a reason that concerns that
//! key only (its topic refuses the republisher, or the record is stranded): its items stay in the
//! standby table, in order, while every other key flows. The stream cannot be relied on to bring
//! the key back (its records were passed), so each held key is recorded here — state-table
//! partition key `republisher#held#{standby table}`, sort key the standby partition key — and
//! each sweep republishes held keys' whole backlogs through the order gate before it scans, and
//! forgets a key once nothing holds it any more.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use sdk::standby_table::TableError;
use shared::state_table::{StateTable, keys};
use wire::clock::now_ms;

use crate::engine::HeldKey;

const HELD_AT: &str = "held_at";

/// Records `held` keys (the event each is held at and why).
pub async fn record(
    state: &StateTable,
    standby_table: &str,
    held: &[HeldKey],
) -> Result<(), TableError> {
    let now_ms = now_ms();
    for key in held {
        state
            .put(
                &keys::republisher_held(standby_table),
                &key.pk,
                HashMap::from([
                    ("event_id".into(), AttributeValue::S(key.event_id.clone())),
                    ("reason".into(), AttributeValue::S(key.reason.clone())),
                    (HELD_AT.into(), AttributeValue::N(now_ms.to_string())),
                ]),
            )
            .await?;
    }
    Ok(())
}

/// A held key as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The standby partition key.
    pub pk: String,
    /// When it was last held or retried (ms since the epoch): the sweep retries the oldest first,
    /// and releases a key only if nobody held it again since it was read.
    pub held_at: u64,
    /// Why, as last recorded (a Kafka error: never an event's contents).
    pub reason: Option<String>,
}

/// The keys currently held, oldest-retried first.
pub async fn list(state: &StateTable, standby_table: &str) -> Result<Vec<Held>, TableError> {
    let mut held: Vec<Held> = state
        .list(&keys::republisher_held(standby_table))
        .await?
        .into_iter()
        .filter_map(|item| {
            let pk = match item.get("sk") {
                Some(AttributeValue::S(pk)) => pk.clone(),
                _ => return None,
            };
            let held_at = match item.get(HELD_AT) {
                Some(AttributeValue::N(n)) => n.parse().unwrap_or(0),
                _ => 0,
            };
            let reason = match item.get("reason") {
                Some(AttributeValue::S(reason)) => Some(reason.clone()),
                _ => None,
            };
            Some(Held {
                pk,
                held_at,
                reason,
            })
        })
        .collect();
    held.sort_by_key(|h| h.held_at);
    Ok(held)
}

/// Forgets a held key whose backlog went through, unless it was held again since it was read
/// (a stream batch running alongside); returns whether it was forgotten.
pub async fn release(
    state: &StateTable,
    standby_table: &str,
    held: &Held,
) -> Result<bool, TableError> {
    state
        .delete_if(
            &keys::republisher_held(standby_table),
            &held.pk,
            HELD_AT,
            AttributeValue::N(held.held_at.to_string()),
        )
        .await
}

/// Moves a key that is still held to the back of the retry order.
pub async fn touch(state: &StateTable, standby_table: &str, held: &Held) -> Result<(), TableError> {
    state
        .set(
            &keys::republisher_held(standby_table),
            &held.pk,
            HELD_AT,
            AttributeValue::N(now_ms().to_string()),
        )
        .await
}
