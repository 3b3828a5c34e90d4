//! The event ids of events that came with the caller's own id. This module owns the ids table.
//!
//! The platform's event id must be minted when the event first arrives (a key's events waiting
//! in the standby table are published in event-id order, and ids are UUIDv7), so a caller's id
//! cannot be used as it is. Instead, the first time a caller's id is seen for an event type,
//! the id minted for it is recorded under (client id, event type, caller's id), with a
//! conditional write; a retry within the window finds the record and publishes under the same
//! event id, which consumers then drop as a duplicate. Two callers' ids never meet: the client
//! id is part of the record's key, so a partner cannot make consumers drop another's event.
//!
//! The record also keeps a fingerprint of the event (its key and data): the same id sent with a
//! different event is a [`Assignment::Conflict`], refused, rather than published under the old
//! event id for consumers to drop as a duplicate.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use sha2::{Digest, Sha256};
use thiserror::Error;
use wire::record::EventId;

#[derive(Debug, Error)]
#[error("the ids table {table}: {reason}")]
pub struct IdsError {
    table: String,
    reason: String,
}

/// SHA-256 over `parts`, each length-prefixed (so no two lists of parts collide), as hex.
fn digest(parts: &[&[u8]]) -> String {
    let mut digest = Sha256::new();
    for part in parts {
        digest.update((part.len() as u64).to_be_bytes());
        digest.update(part);
    }
    hex::encode(digest.finalize())
}

/// The record's key: a digest, so neither the caller's id nor its length reach the key.
pub fn record_key(client_id: &str, event_type: &str, caller_id: &str) -> String {
    digest(&[
        client_id.as_bytes(),
        event_type.as_bytes(),
        caller_id.as_bytes(),
    ])
}

/// What identifies the event a caller's id was first given with: its Kafka key and its data
/// (as the gateway encodes it).
pub fn fingerprint(key: Option<&[u8]>, data: &[u8]) -> String {
    match key {
        Some(key) => digest(&[b"k", key, data]),
        None => digest(&[b"n", data]),
    }
}

/// The event id for a caller's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignment {
    /// First seen now: the id minted for this request, recorded.
    New(EventId),
    /// Seen within the window for the same event: the id it got then.
    Earlier(EventId),
    /// Seen within the window for a different event.
    Conflict,
}

#[derive(Clone)]
pub struct IdAssigner {
    client: Client,
    table: String,
    window: Duration,
}

impl IdAssigner {
    /// Records live `window` (DynamoDB's TTL removes them, usually within days after; an
    /// expired record still present counts as absent).
    pub fn new(client: Client, table: impl Into<String>, window: Duration) -> Self {
        Self {
            client,
            table: table.into(),
            window,
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// How long a caller's id keeps naming its event id.
    pub fn window(&self) -> Duration {
        self.window
    }

    fn error(&self, reason: impl std::fmt::Display) -> IdsError {
        IdsError {
            table: self.table.clone(),
            reason: reason.to_string(),
        }
    }

    /// The event id for the caller's id: the one recorded by an earlier request within the
    /// window, or `minted`, recorded now with the event's `fingerprint`.
    pub async fn assign(
        &self,
        client_id: &str,
        event_type: &str,
        caller_id: &str,
        minted: EventId,
        fingerprint: &str,
    ) -> Result<Assignment, IdsError> {
        let key = record_key(client_id, event_type, caller_id);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let written = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(key.clone()))
            .item("event_id", AttributeValue::S(minted.to_string()))
            .item("fingerprint", AttributeValue::S(fingerprint.to_string()))
            .item(
                "expires_at",
                AttributeValue::N((now + self.window.as_secs()).to_string()),
            )
            .condition_expression("attribute_not_exists(pk) OR expires_at < :now")
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let existing = match written {
            Ok(_) => return Ok(Assignment::New(minted)),
            Err(error) => match error.into_service_error() {
                PutItemError::ConditionalCheckFailedException(failed) => failed.item,
                other => return Err(self.error(DisplayErrorContext(other))),
            },
        };
        let item = match existing {
            Some(item) => item,
            None => self.read(&key).await?,
        };
        if item
            .get("fingerprint")
            .and_then(|v| v.as_s().ok())
            .is_some_and(|recorded| recorded != fingerprint)
        {
            return Ok(Assignment::Conflict);
        }
        item.get("event_id")
            .and_then(|v| v.as_s().ok())
            .and_then(|id| id.parse().ok())
            .map(Assignment::Earlier)
            .ok_or_else(|| self.error("a record has no event id"))
    }

    async fn read(&self, key: &str) -> Result<HashMap<String, AttributeValue>, IdsError> {
        self.client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key.into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error(DisplayErrorContext(e)))?
            .item
            .ok_or_else(|| self.error("a record the write found is gone"))
    }

    /// Creates the table as the template declares it (local stacks and tests).
    pub async fn create(&self) -> Result<(), IdsError> {
        crate::tables::create_keyed(&self.client, &self.table, "pk")
            .await
            .map_err(|reason| self.error(reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_callers_types_and_ids_unambiguously() {
        let key = record_key("acme", "order-created", "e-1");
        assert_eq!(key.len(), 64);
        assert_ne!(key, record_key("other", "order-created", "e-1"));
        assert_ne!(key, record_key("acme", "order-cancelled", "e-1"));
        // Length-prefixed parts: moving a character across a boundary changes the key.
        assert_ne!(record_key("ab", "c", "d"), record_key("a", "bc", "d"));
    }

    #[test]
    fn fingerprints_tell_events_apart_by_key_and_data() {
        let event = fingerprint(Some(b"o-1"), b"{}");
        assert_eq!(event, fingerprint(Some(b"o-1"), b"{}"));
        assert_ne!(event, fingerprint(Some(b"o-2"), b"{}"));
        assert_ne!(event, fingerprint(None, b"{}"));
        assert_ne!(event, fingerprint(Some(b"o-1"), b"{ }"));
    }
}
