//! What the republisher works on: one [`Entry`] per stream record or scanned item, in the order
//! it arrived, already classified as something to publish, to skip, or to dead-letter.
//!
//! Parsing is per record: one malformed record becomes a [`Work::Malformed`] entry (dead-lettered
//! with its raw JSON), never a failed batch, so a poison record cannot block its shard.

use std::collections::HashMap;

use aws_lambda_events::dynamodb::EventRecord;
use serde_json::Value;
use wire::record::{StandbyRecord, attr, is_null_key_partition};

/// Principal that DynamoDB's TTL process deletes items as.
const TTL_PRINCIPAL: &str = "dynamodb.amazonaws.com";

pub use wire::record::ItemKey;

/// The item key in a stream image or scanned item.
fn item_key(image: &serde_dynamo::Item) -> Option<ItemKey> {
    let text = |name: &str| match image.get(name) {
        Some(serde_dynamo::AttributeValue::S(s)) => Some(s.clone()),
        _ => None,
    };
    Some(ItemKey {
        pk: text(attr::PARTITION_KEY)?,
        event_id: text(attr::EVENT_ID)?,
    })
}

/// Why an entry needs no publishing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Our own delete after a republish.
    Removed,
    /// DynamoDB's TTL removed an event that was never republished: it is lost, loudly.
    ExpiredByTtl,
    /// A topic's backlog marker ([`wire::record::marker`]), not an event.
    Marker,
    /// The item was no longer in the table when its key's backlog was read: another path (the
    /// sweep, an operator's replay, an earlier delivery) published and deleted it already.
    AlreadyRepublished,
}

/// What to do with one entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    Skip(SkipReason),
    Publish(Box<StandbyRecord>),
    /// Not a valid standby record: dead-lettered as raw JSON with `reason`.
    Malformed {
        raw: Value,
        kind: &'static str,
        reason: String,
    },
}

/// One unit of work, at its position in the batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Index in the batch: stream order, or scan order for the sweep.
    pub position: usize,
    /// The stream record's sequence number (what `batchItemFailures` reports); `None` in a sweep.
    pub sequence_number: Option<String>,
    /// The item to delete once the entry is done; `None` when even the key is unreadable.
    pub key: Option<ItemKey>,
    pub work: Work,
}

impl Entry {
    /// Entries of one key must be handled one after another, in position order; entries with
    /// different chain keys are independent. Events without a Kafka key have no order: only the
    /// records of one such item (an INSERT and a MODIFY) share a chain, handled once.
    pub fn chain_key(&self) -> ChainKey {
        match (&self.work, &self.key) {
            (Work::Publish(record), Some(key)) if record.key.is_none() => {
                ChainKey::Item(key.clone())
            }
            (Work::Publish(record), None) if record.key.is_none() => ChainKey::Alone(self.position),
            // A malformed item in a null-key bucket has no order to keep either.
            (Work::Malformed { .. }, Some(key)) if is_null_key_partition(&key.pk) => {
                ChainKey::Item(key.clone())
            }
            (_, Some(key)) => ChainKey::Partition(key.pk.clone()),
            (_, None) => ChainKey::Alone(self.position),
        }
    }

    /// The event id for log lines, whatever state the entry is in.
    pub fn event_id(&self) -> &str {
        match (&self.work, &self.key) {
            (_, Some(key)) => &key.event_id,
            _ => "unknown",
        }
    }

    /// The topic the event was meant for, when known.
    pub fn topic(&self) -> Option<&str> {
        match &self.work {
            Work::Publish(record) => Some(&record.topic),
            Work::Malformed { raw, .. } => raw
                .pointer("/dynamodb/NewImage/topic/S")
                .or_else(|| raw.pointer("/topic/S"))
                .and_then(Value::as_str),
            Work::Skip(_) => None,
        }
    }
}

/// Groups entries that must keep their relative order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChainKey {
    Partition(String),
    /// The records of one null-key event.
    Item(ItemKey),
    Alone(usize),
}

/// Positions grouped into chains, each chain in position order, chains ordered by first position.
pub fn chains(entries: &[Entry]) -> Vec<Vec<usize>> {
    let mut index: HashMap<ChainKey, usize> = HashMap::new();
    let mut chains: Vec<Vec<usize>> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let slot = *index.entry(entry.chain_key()).or_insert_with(|| {
            chains.push(Vec::new());
            chains.len() - 1
        });
        chains[slot].push(i);
    }
    chains
}

/// Why a Lambda event could not be read as a DynamoDB stream batch at all.
#[derive(Debug, thiserror::Error)]
#[error("expected a DynamoDB stream event with a `Records` array: {0}")]
pub struct NotAStreamEvent(String);

/// Entries for every record of a DynamoDB stream event, in order.
pub fn from_stream_event(event: &Value) -> Result<Vec<Entry>, NotAStreamEvent> {
    let records = event
        .get("Records")
        .and_then(Value::as_array)
        .ok_or_else(|| NotAStreamEvent("no `Records` array".into()))?;
    Ok(records
        .iter()
        .enumerate()
        .map(|(position, raw)| from_stream_record(position, raw))
        .collect())
}

fn from_stream_record(position: usize, raw: &Value) -> Entry {
    let sequence_number = raw
        .pointer("/dynamodb/SequenceNumber")
        .and_then(Value::as_str)
        .map(str::to_string);
    let malformed = |key: Option<ItemKey>, kind: &'static str, reason: String| Entry {
        position,
        sequence_number: sequence_number.clone(),
        key,
        work: Work::Malformed {
            raw: raw.clone(),
            kind,
            reason,
        },
    };
    let record: EventRecord = match serde_json::from_value(raw.clone()) {
        Ok(record) => record,
        Err(e) => {
            return malformed(
                None,
                "malformed_stream_record",
                format!("stream record: {e}"),
            );
        }
    };
    let keys = item_key(&record.change.keys);
    if keys.as_ref().is_some_and(ItemKey::is_marker) {
        return Entry {
            position,
            sequence_number,
            key: None,
            work: Work::Skip(SkipReason::Marker),
        };
    }
    let work = match record.event_name.as_str() {
        "REMOVE" => {
            let by_ttl = record
                .user_identity
                .as_ref()
                .is_some_and(|id| id.principal_id == TTL_PRINCIPAL);
            Work::Skip(if by_ttl {
                SkipReason::ExpiredByTtl
            } else {
                SkipReason::Removed
            })
        }
        "INSERT" | "MODIFY" => match StandbyRecord::from_image(record.change.new_image) {
            Ok(standby) => Work::Publish(Box::new(standby)),
            Err(e) => return malformed(keys, e.kind(), e.to_string()),
        },
        other => {
            return malformed(
                keys,
                "unknown_event_name",
                format!("eventName {other:?} is none of INSERT, MODIFY, REMOVE"),
            );
        }
    };
    Entry {
        position,
        sequence_number,
        key: keys,
        work,
    }
}

/// Entries for items read with `Scan` (the sweep), in scan order.
pub fn from_items(
    items: Vec<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>,
) -> Vec<Entry> {
    items
        .into_iter()
        .enumerate()
        .map(|(position, item)| {
            let image = serde_dynamo::Item::from(item);
            let key = item_key(&image);
            if key.as_ref().is_some_and(ItemKey::is_marker) {
                return Entry {
                    position,
                    sequence_number: None,
                    key: None,
                    work: Work::Skip(SkipReason::Marker),
                };
            }
            let work = match StandbyRecord::from_image(image.clone()) {
                Ok(record) => Work::Publish(Box::new(record)),
                Err(e) => Work::Malformed {
                    raw: serde_json::to_value(&image).unwrap_or(Value::Null),
                    kind: e.kind(),
                    reason: e.to_string(),
                },
            };
            Entry {
                position,
                sequence_number: None,
                key,
                work,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wire::record::{EventId, Header};

    use super::*;

    fn record(key: Option<&str>) -> StandbyRecord {
        StandbyRecord {
            event_id: EventId::new(),
            topic: "orders".into(),
            key: key.map(|k| k.as_bytes().to_vec()),
            value: vec![0, 0, 0, 0, 1, b'x'],
            headers: vec![Header::new("h", "v")],
            producer_id: "p".into(),
            created_at_ms: 1,
            expires_at: 2,
        }
    }

    fn stream_record(name: &str, record: &StandbyRecord, seq: &str) -> Value {
        json!({
            "eventID": "id", "eventName": name, "eventVersion": "1.1", "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "dynamodb": {
                "Keys": {"pk": {"S": record.partition_key()}, "event_id": {"S": record.event_id.to_string()}},
                "NewImage": if name == "REMOVE" { Value::Null } else { serde_json::to_value(record.to_image()).unwrap() },
                "SequenceNumber": seq, "SizeBytes": 10, "StreamViewType": "NEW_IMAGE"
            }
        })
    }

    #[test]
    fn insert_and_modify_publish_remove_skips() {
        let r = record(Some("k"));
        let mut ttl = stream_record("REMOVE", &r, "3");
        ttl["userIdentity"] = json!({"type": "Service", "principalId": "dynamodb.amazonaws.com"});
        let event = json!({"Records": [
            stream_record("INSERT", &r, "1"),
            stream_record("MODIFY", &r, "2"),
            ttl,
            stream_record("REMOVE", &r, "4"),
        ]});
        let entries = from_stream_event(&event).unwrap();
        assert_eq!(entries[0].work, Work::Publish(Box::new(r.clone())));
        assert_eq!(entries[1].work, Work::Publish(Box::new(r.clone())));
        assert_eq!(entries[2].work, Work::Skip(SkipReason::ExpiredByTtl));
        assert_eq!(entries[3].work, Work::Skip(SkipReason::Removed));
        assert_eq!(entries[1].sequence_number.as_deref(), Some("2"));
        assert_eq!(
            entries[0].key.as_ref().unwrap().event_id,
            r.event_id.to_string()
        );
    }

    #[test]
    fn a_bad_image_is_malformed_not_fatal() {
        let r = record(Some("k"));
        let mut bad = stream_record("INSERT", &r, "7");
        bad["dynamodb"]["NewImage"]["format_version"] = json!({"N": "9"});
        let mut broken = stream_record("INSERT", &r, "8");
        broken["dynamodb"] = json!("not an object");
        let event = json!({"Records": [bad, broken, stream_record("INSERT", &r, "9")]});
        let entries = from_stream_event(&event).unwrap();
        let Work::Malformed { kind, reason, .. } = &entries[0].work else {
            panic!()
        };
        assert_eq!(*kind, "unknown_format_version");
        assert!(reason.contains("format_version"), "{reason}");
        assert_eq!(entries[0].topic(), Some("orders"));
        assert!(
            entries[0].key.is_some(),
            "keys still known, so the item can be deleted"
        );
        let Work::Malformed { kind, .. } = &entries[1].work else {
            panic!()
        };
        assert_eq!(*kind, "malformed_stream_record");
        assert_eq!(entries[1].sequence_number, None);
        assert!(matches!(entries[2].work, Work::Publish(_)));
    }

    #[test]
    fn not_a_stream_event() {
        let err = from_stream_event(&json!({"detail-type": "Scheduled Event"})).unwrap_err();
        assert!(err.to_string().contains("Records"));
    }

    #[test]
    fn chains_group_by_key_and_isolate_null_keys() {
        let a = record(Some("a"));
        let b = record(Some("b"));
        let n = record(None);
        let event = json!({"Records": [
            stream_record("INSERT", &a, "1"),
            stream_record("INSERT", &n, "2"),
            stream_record("INSERT", &b, "3"),
            stream_record("INSERT", &a, "4"),
            stream_record("INSERT", &n, "5"),
        ]});
        let entries = from_stream_event(&event).unwrap();
        assert_eq!(
            chains(&entries),
            vec![vec![0, 3], vec![1, 4], vec![2]],
            "the two records of the null-key item share a chain"
        );
        let other_null = record(None);
        let event = json!({"Records": [
            stream_record("INSERT", &n, "1"),
            stream_record("INSERT", &other_null, "2"),
        ]});
        assert_eq!(
            chains(&from_stream_event(&event).unwrap()),
            vec![vec![0], vec![1]]
        );
    }
}
