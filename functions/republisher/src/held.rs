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
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use shared::standby_table::TableError;
use shared::state_table::StateTable;

use crate::engine::HeldKey;

fn partition(standby_table: &str) -> String {
    format!("republisher#held#{standby_table}")
}

/// Records `held` keys (the event each is held at and why).
pub async fn record(
    state: &StateTable,
    standby_table: &str,
    held: &[HeldKey],
) -> Result<(), TableError> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    for key in held {
        state
            .put(
                &partition(standby_table),
                &key.pk,
                HashMap::from([
                    ("event_id".into(), AttributeValue::S(key.event_id.clone())),
                    ("reason".into(), AttributeValue::S(key.reason.clone())),
                    ("held_at".into(), AttributeValue::N(now_ms.to_string())),
                ]),
            )
            .await?;
    }
    Ok(())
}

/// The standby partition keys currently held.
pub async fn list(state: &StateTable, standby_table: &str) -> Result<Vec<String>, TableError> {
    Ok(state
        .list(&partition(standby_table))
        .await?
        .into_iter()
        .filter_map(|mut item| match item.remove("sk") {
            Some(AttributeValue::S(pk)) => Some(pk),
            _ => None,
        })
        .collect())
}

/// Forgets a held key whose backlog went through.
pub async fn release(state: &StateTable, standby_table: &str, pk: &str) -> Result<(), TableError> {
    state.delete(&partition(standby_table), pk).await
}
