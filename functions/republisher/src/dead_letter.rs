//! The message a dead-lettered entry becomes.
//!
//! A record Kafka rejects keeps its original key, value and headers, so an operator can redrive
//! it unchanged; a malformed record is sent as the raw stream record (or scanned item) in JSON,
//! since there is nothing decodable to resend. Both carry the context headers of
//! [`shared::headers`].

use shared::headers;
use shared::record::Header;

use crate::entry::{Entry, Work};

/// Why an entry was dead-lettered (header `dlt-error-class`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Kafka rejects the event for good (too large for the topic, topic missing, invalid).
    NonRetriable,
    /// The item is not a valid standby record.
    Malformed,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NonRetriable => "non_retriable",
            Self::Malformed => "malformed",
        }
    }
}

/// Header naming the value's format on dead-lettered malformed records.
pub const PAYLOAD_FORMAT: &str = "dlt-payload-format";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<Header>,
}

/// The dead-letter message for `entry`, failed with `reason`.
pub fn for_entry(entry: &Entry, reason: &str, class: ErrorClass) -> DeadLetter {
    let mut context = vec![
        Header::new(headers::DLT_REASON, reason),
        Header::new(headers::DLT_ERROR_CLASS, class.as_str()),
        Header::new(headers::DLT_SOURCE, "republisher"),
        // Poison is dead-lettered the first time it is seen; it never waits for retries.
        Header::new(headers::DLT_ATTEMPT, "1"),
    ];
    if let Some(topic) = entry.topic() {
        context.push(Header::new(headers::DLT_ORIGINAL_TOPIC, topic));
    }
    if let Some(sequence) = &entry.sequence_number {
        context.push(Header::new(headers::DLT_STREAM_SEQUENCE, sequence.as_str()));
    }
    if let Some(key) = &entry.key {
        context.push(Header::new(headers::EVENT_ID, key.event_id.as_str()));
    }
    match &entry.work {
        Work::Publish(record) => {
            context.push(Header::new(
                headers::DLT_PRODUCER_ID,
                record.producer_id.as_str(),
            ));
            let mut all = record.headers.clone();
            all.extend(context);
            DeadLetter {
                key: record.key.clone(),
                value: record.value.clone(),
                headers: all,
            }
        }
        Work::Malformed { raw, kind, .. } => {
            context.push(Header::new("dlt-malformed-kind", *kind));
            context.push(Header::new(
                PAYLOAD_FORMAT,
                if entry.sequence_number.is_some() {
                    "dynamodb-stream-record-json"
                } else {
                    "dynamodb-item-json"
                },
            ));
            DeadLetter {
                key: entry.key.as_ref().map(|k| k.pk.as_bytes().to_vec()),
                value: raw.to_string().into_bytes(),
                headers: context,
            }
        }
        Work::Skip(_) => DeadLetter {
            key: None,
            value: Vec::new(),
            headers: context,
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use shared::record::{EventId, StandbyRecord};

    use super::*;
    use crate::entry::ItemKey;

    fn header<'a>(letter: &'a DeadLetter, name: &str) -> Option<&'a [u8]> {
        letter
            .headers
            .iter()
            .find(|h| h.name == name)
            .and_then(|h| h.value.as_deref())
    }

    #[test]
    fn rejected_records_keep_their_bytes_and_gain_context() {
        let record = StandbyRecord {
            event_id: EventId::new(),
            topic: "orders".into(),
            key: Some(b"k".to_vec()),
            value: b"\0\0\0\0\x01v".to_vec(),
            headers: vec![Header::new("trace", "1")],
            producer_id: "checkout".into(),
            created_at_ms: 0,
            expires_at: 0,
        };
        let entry = Entry {
            position: 0,
            sequence_number: Some("42".into()),
            key: Some(ItemKey {
                pk: record.partition_key(),
                event_id: record.event_id.to_string(),
            }),
            work: Work::Publish(Box::new(record.clone())),
        };
        let letter = for_entry(
            &entry,
            "Broker: Message size too large",
            ErrorClass::NonRetriable,
        );
        assert_eq!(letter.key, record.key);
        assert_eq!(letter.value, record.value);
        assert_eq!(
            letter.headers[0],
            Header::new("trace", "1"),
            "original headers first"
        );
        assert_eq!(
            header(&letter, headers::DLT_ERROR_CLASS),
            Some(&b"non_retriable"[..])
        );
        assert_eq!(
            header(&letter, headers::DLT_ORIGINAL_TOPIC),
            Some(&b"orders"[..])
        );
        assert_eq!(
            header(&letter, headers::DLT_STREAM_SEQUENCE),
            Some(&b"42"[..])
        );
        assert_eq!(header(&letter, headers::DLT_ATTEMPT), Some(&b"1"[..]));
        assert_eq!(
            header(&letter, headers::DLT_PRODUCER_ID),
            Some(&b"checkout"[..])
        );
        assert_eq!(
            header(&letter, headers::EVENT_ID),
            Some(record.event_id.to_string().as_bytes())
        );
    }

    #[test]
    fn malformed_records_are_sent_as_raw_json() {
        let raw = json!({"dynamodb": {"NewImage": {"topic": {"S": "orders"}}}});
        let entry = Entry {
            position: 3,
            sequence_number: Some("7".into()),
            key: Some(ItemKey {
                pk: "orders#k#ab".into(),
                event_id: "e-1".into(),
            }),
            work: Work::Malformed {
                raw: raw.clone(),
                kind: "missing_attribute",
                reason: "attribute `value` is missing".into(),
            },
        };
        let letter = for_entry(
            &entry,
            "attribute `value` is missing",
            ErrorClass::Malformed,
        );
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&letter.value).unwrap(),
            raw
        );
        assert_eq!(letter.key.as_deref(), Some(&b"orders#k#ab"[..]));
        assert_eq!(
            header(&letter, headers::DLT_ORIGINAL_TOPIC),
            Some(&b"orders"[..])
        );
        assert_eq!(
            header(&letter, "dlt-malformed-kind"),
            Some(&b"missing_attribute"[..])
        );
        assert_eq!(
            header(&letter, PAYLOAD_FORMAT),
            Some(&b"dynamodb-stream-record-json"[..])
        );
    }
}
