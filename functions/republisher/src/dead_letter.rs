//! The message a dead-lettered entry becomes.
//!
//! A record Kafka rejects keeps its original key, value and headers, so an operator can redrive
//! it unchanged; a malformed record is sent as the raw stream record (or scanned item) in JSON,
//! since there is nothing decodable to resend. Both carry the context headers of
//! [`wire::dead_letter`].

use wire::dead_letter::{Context, ErrorClass, PayloadFormat, Source};
use wire::headers;
use wire::record::Header;

use crate::entry::{Entry, Work};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<Header>,
}

/// `dlt-malformed-kind` of an event whose topic is not on the allow-list
/// ([`shared::topics`]): the event is kept whole, so it can be redriven once the list allows it.
pub const TOPIC_NOT_ALLOWED: &str = "topic_not_allowed";

/// The dead-letter message for `entry`, failed with `reason`.
pub fn for_entry(entry: &Entry, reason: &str, class: ErrorClass) -> DeadLetter {
    build(entry, reason, class, None)
}

/// The dead-letter message for an event whose topic the republisher may not publish to.
pub fn for_refused_topic(entry: &Entry, reason: &str) -> DeadLetter {
    build(
        entry,
        reason,
        ErrorClass::Malformed,
        Some(TOPIC_NOT_ALLOWED),
    )
}

fn build(
    entry: &Entry,
    reason: &str,
    class: ErrorClass,
    malformed_kind: Option<&str>,
) -> DeadLetter {
    let mut context = Context::new(reason, class, Source::Republisher);
    context.malformed_kind = malformed_kind.map(str::to_string);
    context.original_topic = entry.topic().map(str::to_string);
    context.stream_sequence = entry.sequence_number.clone();
    // Poison is dead-lettered the first time it is seen; it never waits for retries.
    context.attempt = Some(1);
    // The event's own key, value and headers when there is an event; the raw record otherwise.
    let (key, value, mut headers) = match &entry.work {
        Work::Publish(record) => {
            context.producer_id = Some(record.producer_id.clone());
            (
                record.key.clone(),
                record.value.clone(),
                record.headers.clone(),
            )
        }
        Work::Malformed { raw, kind, .. } => {
            context.malformed_kind = Some(kind.to_string());
            context.payload_format = Some(if entry.sequence_number.is_some() {
                PayloadFormat::StreamRecordJson
            } else {
                PayloadFormat::ItemJson
            });
            let key = entry.key.as_ref().map(|k| k.pk.as_bytes().to_vec());
            (key, raw.to_string().into_bytes(), Vec::new())
        }
        Work::Skip(_) => (None, Vec::new(), Vec::new()),
    };
    headers.extend(context.headers());
    headers.extend(
        entry
            .key
            .as_ref()
            .map(|k| Header::new(headers::EVENT_ID, k.event_id.as_str())),
    );
    DeadLetter {
        key,
        value,
        headers,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wire::record::{EventId, StandbyRecord};

    use super::*;
    use crate::entry::ItemKey;
    use wire::dead_letter;

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
            header(&letter, dead_letter::ERROR_CLASS),
            Some(&b"non_retriable"[..])
        );
        assert_eq!(
            header(&letter, dead_letter::ORIGINAL_TOPIC),
            Some(&b"orders"[..])
        );
        assert_eq!(
            header(&letter, dead_letter::STREAM_SEQUENCE),
            Some(&b"42"[..])
        );
        assert_eq!(header(&letter, dead_letter::ATTEMPT), Some(&b"1"[..]));
        assert_eq!(
            header(&letter, dead_letter::PRODUCER_ID),
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
            header(&letter, dead_letter::ORIGINAL_TOPIC),
            Some(&b"orders"[..])
        );
        assert_eq!(
            header(&letter, dead_letter::MALFORMED_KIND),
            Some(&b"missing_attribute"[..])
        );
        assert_eq!(
            header(&letter, dead_letter::PAYLOAD_FORMAT),
            Some(&b"dynamodb-stream-record-json"[..])
        );
    }
}
