//! The redrive log: which dead-letter records were sent where, one state-table item per record
//! (sort key `{dead-letter topic}/{partition}/{offset}`), so a record is not sent twice by
//! mistake.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use shared::state_table::StateTable;
use shared::state_table::keys::STANDBYCTL_REDRIVE as REDRIVE_PK;

use super::DltId;
use crate::error::CtlError;

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
