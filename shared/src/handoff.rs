//! The autoscaler → rebalancer handoff: when a scale-out operation has finished, the autoscaler
//! writes the new broker ids to the state table; the rebalancer's scheduled run reads them, waits
//! until those brokers are registered, moves partitions onto them, and clears the handoff when
//! the cluster is balanced. The cluster itself stays the source of truth: a lost handoff only
//! means the rebalancer does not wait for brokers it would see anyway.

use serde::{Deserialize, Serialize};
use serde_dynamo::aws_sdk_dynamodb_1::{from_item, to_item};

use crate::state_table::StateTable;
use sdk::standby_table::TableError;
// Sort key: the cluster ARN.
use crate::state_table::keys::REBALANCER_HANDOFF as HANDOFF_PK;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handoff {
    pub new_broker_ids: Vec<i32>,
    /// The MSK operation that added them.
    pub operation_arn: String,
    /// Seconds since the epoch.
    pub at: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    #[error("state table: {0}")]
    Table(Box<TableError>),
    #[error("handoff item for {cluster} is malformed: {source}")]
    Malformed {
        cluster: String,
        #[source]
        source: serde_dynamo::Error,
    },
}

impl From<TableError> for HandoffError {
    fn from(error: TableError) -> Self {
        Self::Table(Box::new(error))
    }
}

pub async fn write(
    state: &StateTable,
    cluster_arn: &str,
    handoff: &Handoff,
) -> Result<(), HandoffError> {
    let item = to_item(handoff).expect("Handoff has only numbers, strings and lists");
    Ok(state.put(HANDOFF_PK, cluster_arn, item).await?)
}

pub async fn read(state: &StateTable, cluster_arn: &str) -> Result<Option<Handoff>, HandoffError> {
    let Some(mut item) = state.get(HANDOFF_PK, cluster_arn).await? else {
        return Ok(None);
    };
    item.remove("pk");
    item.remove("sk");
    from_item(item)
        .map(Some)
        .map_err(|source| HandoffError::Malformed {
            cluster: cluster_arn.to_string(),
            source,
        })
}

pub async fn clear(state: &StateTable, cluster_arn: &str) -> Result<(), HandoffError> {
    Ok(state.delete(HANDOFF_PK, cluster_arn).await?)
}
