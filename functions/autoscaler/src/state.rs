//! What the autoscaler remembers between invocations, in the state table:
//! - a *claim* per (cluster, version): written with a conditional put before UpdateBrokerCount,
//!   so a duplicated or retried alarm event scales a given cluster version at most once;
//! - the last scale-out (time, operation, brokers before), for the cooldown and the follow-up;
//! - the *handoff* the rebalancer reads on its schedule (`shared::handoff`).

use std::time::SystemTime;

use sdk::standby_table::TableError;
use serde::{Deserialize, Serialize};
use serde_dynamo::aws_sdk_dynamodb_1::{from_item, to_item};
use shared::state_table::StateTable;

use shared::state_table::keys::{AUTOSCALER_CLAIM as CLAIM, AUTOSCALER_SCALE as SCALE};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleRecord {
    /// Seconds since the epoch.
    pub at: u64,
    pub operation_arn: String,
    pub from: u32,
    pub to: u32,
    pub brokers_before: Vec<i32>,
    pub handed_off: bool,
}

impl ScaleRecord {
    pub fn at_time(&self) -> SystemTime {
        wire::clock::time_of_ms(self.at * 1000)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state table: {0}")]
    Table(#[from] TableError),
    #[error("state table item {pk}/{sk} is malformed: {source}")]
    Malformed {
        pk: &'static str,
        sk: String,
        #[source]
        source: serde_dynamo::Error,
    },
}

/// Claims the scale-out of `cluster_arn` at `version`; false if already claimed.
pub async fn claim(
    state: &StateTable,
    cluster_arn: &str,
    version: &str,
) -> Result<bool, StateError> {
    let sk = format!("{cluster_arn}#{version}");
    let item =
        to_item(serde_json::json!({ "at": wire::clock::now_secs() })).expect("a number serializes");
    Ok(state.put_new(CLAIM, &sk, item).await?)
}

/// Gives a claim back (UpdateBrokerCount failed, nothing changed).
pub async fn release(
    state: &StateTable,
    cluster_arn: &str,
    version: &str,
) -> Result<(), StateError> {
    Ok(state
        .delete(CLAIM, &format!("{cluster_arn}#{version}"))
        .await?)
}

pub async fn last_scale(
    state: &StateTable,
    cluster_arn: &str,
) -> Result<Option<ScaleRecord>, StateError> {
    let Some(mut item) = state.get(SCALE, cluster_arn).await? else {
        return Ok(None);
    };
    item.remove("pk");
    item.remove("sk");
    from_item(item)
        .map(Some)
        .map_err(|source| StateError::Malformed {
            pk: SCALE,
            sk: cluster_arn.to_string(),
            source,
        })
}

pub async fn record_scale(
    state: &StateTable,
    cluster_arn: &str,
    record: &ScaleRecord,
) -> Result<(), StateError> {
    let item = to_item(record).expect("ScaleRecord serializes");
    Ok(state.put(SCALE, cluster_arn, item).await?)
}
