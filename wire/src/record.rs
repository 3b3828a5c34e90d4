//! The standby record: the DynamoDB item a producer writes when Kafka is unreachable, and the
//! only definition of its bytes.
//!
//! [`StandbyRecord`] is the domain type; [`StandbyRecord::to_item`] and the `from_*` decoders are
//! the single mapping to and from DynamoDB attributes, built on `serde_dynamo`, so the item a
//! producer writes, the stream image the republisher receives and the page a sweep scans all go
//! through the same code. The attribute table in `docs/producer-guide.md` mirrors [`StandbyItem`].
//!
//! Ordering: every event of one (topic, Kafka key) shares a partition key and sorts by event id
//! (UUIDv7, time-ordered) within it, so one strongly consistent Query returns a key's waiting
//! events oldest first; the republisher's order gate relies on that, not on DynamoDB Streams
//! (which orders records per item only). Events without a Kafka key have no order in Kafka
//! either; they are spread over [`NULL_KEY_BUCKETS`] partition keys so one busy topic does not
//! make a hot DynamoDB partition.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::envelope;
use crate::error::RecordError;
use crate::headers;

/// Version of the item layout this build writes. Version 2 made `schema_version` a string (a
/// Glue schema version UUID, or a Confluent id in decimal); version 1 had it as a number.
pub const FORMAT_VERSION: u32 = 2;

/// Layout versions this build reads; readers refuse others by name.
pub const READABLE_FORMAT_VERSIONS: [u32; 2] = [1, 2];

/// DynamoDB's hard limit on the size of one item (names plus values).
pub const DYNAMODB_MAX_ITEM_BYTES: usize = 400 * 1024;

/// Partition keys used for events without a Kafka key, per topic.
pub const NULL_KEY_BUCKETS: u8 = 16;

/// Attribute names, shared with code that builds key conditions and projections.
pub mod attr {
    pub const PARTITION_KEY: &str = "pk";
    pub const EVENT_ID: &str = "event_id";
    pub const FORMAT_VERSION: &str = "format_version";
    pub const TOPIC: &str = "topic";
    pub const CREATED_AT: &str = "created_at";
    pub const EXPIRES_AT: &str = "expires_at";
}

/// Unique, time-ordered identity of one event: a UUIDv7 assigned by the producer. Its text form
/// sorts by creation time, which makes it the table's sort key. Consumers deduplicate on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(Uuid);

impl EventId {
    /// A new id; ids made by one process are strictly increasing.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for EventId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

impl From<Uuid> for EventId {
    fn from(uuid: Uuid) -> Self {
        Self(uuid)
    }
}

/// The primary key of a standby item (an event's, or a topic's backlog marker).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ItemKey {
    pub pk: String,
    pub event_id: String,
}

impl ItemKey {
    /// Whether this is a topic's backlog marker rather than an event.
    pub fn is_marker(&self) -> bool {
        marker::marker_topic(&self.pk).is_some()
    }
}

/// One Kafka header. Names may repeat and order matters, as in Kafka; a value may be null.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: Option<Vec<u8>>,
}

impl Header {
    pub fn new(name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            name: name.into(),
            value: Some(value.into()),
        }
    }
}

/// An event waiting in the standby store to be republished to Kafka, exactly as produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandbyRecord {
    pub event_id: EventId,
    pub topic: String,
    /// `None` is Kafka's null key, distinct from an empty key.
    pub key: Option<Vec<u8>>,
    /// The exact value bytes, schema-version prefix included.
    pub value: Vec<u8>,
    pub headers: Vec<Header>,
    /// Who wrote the record (a producer instance), for operators tracing an outage.
    pub producer_id: String,
    /// When the producer created the event, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// DynamoDB TTL, seconds since the Unix epoch. A last resort: the sweep should have
    /// republished the event long before.
    pub expires_at: u64,
}

impl StandbyRecord {
    /// The DynamoDB partition key: equal for all events of one topic and Kafka key.
    pub fn partition_key(&self) -> String {
        partition_key(&self.topic, self.key.as_deref(), self.event_id)
    }

    /// Schema id from the value's prefix, if the value is framed.
    pub fn schema_id(&self) -> Option<envelope::SchemaId> {
        envelope::schema_id(&self.value)
    }

    /// Age of the event at `now`, saturating at zero for clocks that disagree.
    pub fn age_at(&self, now: SystemTime) -> Duration {
        let now_ms = crate::clock::epoch_ms(now);
        Duration::from_millis(now_ms.saturating_sub(self.created_at_ms))
    }

    /// The attribute map for `PutItem`.
    pub fn to_item(&self) -> HashMap<String, AttributeValue> {
        serde_dynamo::aws_sdk_dynamodb_1::to_item(StandbyItem::from(self))
            .expect("StandbyItem has only strings, numbers, bytes, lists and maps")
    }

    /// The attribute map as `serde_dynamo` models it (the shape of Lambda stream images).
    pub fn to_image(&self) -> serde_dynamo::Item {
        serde_dynamo::to_item(StandbyItem::from(self))
            .expect("StandbyItem has only strings, numbers, bytes, lists and maps")
    }

    /// Decodes an item read with the DynamoDB API (`Scan`, `Query`, `GetItem`).
    pub fn from_item(item: HashMap<String, AttributeValue>) -> Result<Self, RecordError> {
        Self::from_image(serde_dynamo::Item::from(item))
    }

    /// Decodes a stream record's `NewImage` (as `aws_lambda_events` delivers it) or any other
    /// `serde_dynamo` item.
    pub fn from_image(image: serde_dynamo::Item) -> Result<Self, RecordError> {
        if image.is_empty() {
            return Err(RecordError::EmptyImage);
        }
        check_format_version(&image)?;
        let deserializer = serde_dynamo::Deserializer::from_attribute_value(
            serde_dynamo::AttributeValue::M(image.into_inner()),
        );
        let item: StandbyItem =
            serde_path_to_error::deserialize(deserializer).map_err(RecordError::from_serde)?;
        item.try_into()
    }

    /// Upper bound of the item's size as DynamoDB counts it (attribute names plus values), so a
    /// writer can refuse an oversized event with a clear message before calling the API.
    pub fn item_size_bytes(&self) -> usize {
        const NUMBER: usize = 21; // DynamoDB counts at most 21 bytes per number
        const NESTING: usize = 3; // per list or map, and per element inside one
        let header_bytes: usize = self
            .headers
            .iter()
            .map(|h| {
                NESTING
                    + "name".len()
                    + h.name.len()
                    + "value".len()
                    + h.value.as_ref().map_or(0, Vec::len)
            })
            .sum();
        let pk = self.partition_key();
        "pk".len()
            + pk.len()
            + "event_id".len()
            + 36
            + "format_version".len()
            + NUMBER
            + "topic".len()
            + self.topic.len()
            + "key".len()
            + self.key.as_ref().map_or(0, Vec::len)
            + "value".len()
            + self.value.len()
            + "headers".len()
            + NESTING
            + header_bytes
            + "producer_id".len()
            + self.producer_id.len()
            + "created_at".len()
            + NUMBER
            + "schema_version".len()
            + 36
            + "expires_at".len()
            + NUMBER
    }
}

/// Partition key for an event of `topic` with Kafka `key`.
///
/// Keyed: `{topic}#k#{hex(sha256(key))[..32]}`: fixed length whatever the key's size (DynamoDB
/// caps partition keys at 2 KB), and a collision would only merge two keys' ordering groups.
/// Null key: `{topic}#n#{bucket}`, the bucket taken from the event id's hash so it is stable
/// for the event.
pub fn partition_key(topic: &str, key: Option<&[u8]>, event_id: EventId) -> String {
    match key {
        Some(key) => {
            let digest = Sha256::digest(key);
            format!("{topic}#k#{}", hex::encode(&digest[..16]))
        }
        None => {
            let digest = Sha256::digest(event_id.as_uuid().as_bytes());
            format!("{topic}#n#{:02}", digest[0] % NULL_KEY_BUCKETS)
        }
    }
}

/// The topic backlog marker: one item per topic, written by producers before any event of the
/// topic goes to the standby table, so every producer instance (also one restarted mid-outage)
/// learns that the topic has events waiting and checks a key before sending it straight to Kafka.
/// The sweep removes it once a full pass finds no event of the topic left.
///
/// Its partition key `{topic}#backlog` cannot collide with an event's (`{topic}#k#…`,
/// `{topic}#n#…`): Kafka topic names have no `#`. Every reader of the table recognises it by
/// [`marker_topic`] before decoding an item as a [`StandbyRecord`].
pub mod marker {
    /// Sort key value of every marker item.
    pub const SORT_KEY: &str = "backlog";
    /// Attribute: when a producer last wrote an event of the topic to the table, ms since the
    /// Unix epoch (the producer's clock).
    pub const RAISED_AT: &str = "raised_at";
    const SUFFIX: &str = "#backlog";

    /// Partition key of `topic`'s marker.
    pub fn partition_key(topic: &str) -> String {
        format!("{topic}{SUFFIX}")
    }

    /// The topic whose marker has partition key `pk`, or `None` for an event's partition key.
    pub fn marker_topic(pk: &str) -> Option<&str> {
        pk.strip_suffix(SUFFIX).filter(|topic| !topic.contains('#'))
    }
}

/// Whether `pk` is a null-key bucket (`{topic}#n#…`): its events share no order.
pub fn is_null_key_partition(pk: &str) -> bool {
    pk.split('#').nth(1) == Some("n")
}

/// The topic of an event's partition key (`{topic}#k#…` or `{topic}#n#…`).
pub fn topic_of_partition_key(pk: &str) -> Option<&str> {
    pk.split_once('#').map(|(topic, _)| topic)
}

/// The item layout, attribute by attribute. Private: callers use [`StandbyRecord`].
#[derive(Debug, Serialize, Deserialize)]
struct StandbyItem {
    /// Partition key, see [`partition_key`].
    pk: String,
    /// Sort key: the event id (UUIDv7, hyphenated, sorts by time).
    event_id: String,
    format_version: u32,
    topic: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<ByteBuf>,
    value: ByteBuf,
    headers: Vec<HeaderItem>,
    producer_id: String,
    /// Milliseconds since the Unix epoch.
    created_at: u64,
    /// Parsed from the value's prefix for metrics and operators; never used to decode. Read
    /// whatever its type (a number in layout 1), as nothing depends on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    schema_version: Option<SchemaVersionAttribute>,
    /// DynamoDB TTL attribute, seconds since the Unix epoch.
    expires_at: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum SchemaVersionAttribute {
    Number(u64),
    Text(String),
}

#[derive(Debug, Serialize, Deserialize)]
struct HeaderItem {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<ByteBuf>,
}

impl From<&StandbyRecord> for StandbyItem {
    fn from(record: &StandbyRecord) -> Self {
        Self {
            pk: record.partition_key(),
            event_id: record.event_id.to_string(),
            format_version: FORMAT_VERSION,
            topic: record.topic.clone(),
            key: record.key.clone().map(ByteBuf::from),
            value: ByteBuf::from(record.value.clone()),
            headers: record
                .headers
                .iter()
                .map(|h| HeaderItem {
                    name: h.name.clone(),
                    value: h.value.clone().map(ByteBuf::from),
                })
                .collect(),
            producer_id: record.producer_id.clone(),
            created_at: record.created_at_ms,
            schema_version: record
                .schema_id()
                .map(|id| SchemaVersionAttribute::Text(id.to_string())),
            expires_at: record.expires_at,
        }
    }
}

impl TryFrom<StandbyItem> for StandbyRecord {
    type Error = RecordError;

    fn try_from(item: StandbyItem) -> Result<Self, RecordError> {
        let event_id =
            item.event_id
                .parse()
                .map_err(|e: uuid::Error| RecordError::InvalidAttribute {
                    attribute: attr::EVENT_ID.into(),
                    reason: format!("{:?} is not a UUID: {e}", item.event_id),
                })?;
        if item.topic.is_empty() {
            return Err(RecordError::InvalidAttribute {
                attribute: attr::TOPIC.into(),
                reason: "empty topic name".into(),
            });
        }
        if let Some(name) = headers::first_reserved(item.headers.iter().map(|h| h.name.as_str())) {
            return Err(RecordError::ReservedHeader {
                name: name.to_string(),
            });
        }
        let record = Self {
            event_id,
            topic: item.topic,
            key: item.key.map(ByteBuf::into_vec),
            value: item.value.into_vec(),
            headers: item
                .headers
                .into_iter()
                .map(|h| Header {
                    name: h.name,
                    value: h.value.map(ByteBuf::into_vec),
                })
                .collect(),
            producer_id: item.producer_id,
            created_at_ms: item.created_at,
            expires_at: item.expires_at,
        };
        // The partition key is what a writer's IAM policy can limit (`dynamodb:LeadingKeys`);
        // the topic is what the republisher publishes to. An item whose two disagree would let
        // a writer allowed one topic's keys publish to another topic.
        let expected = record.partition_key();
        if item.pk != expected {
            return Err(RecordError::PartitionKeyMismatch {
                stored: item.pk,
                expected,
            });
        }
        Ok(record)
    }
}

/// Checked before the full decode, so an item from a future layout is reported as such rather
/// than as whichever attribute changed first.
fn check_format_version(image: &serde_dynamo::Item) -> Result<(), RecordError> {
    match image.get(attr::FORMAT_VERSION) {
        None => Err(RecordError::MissingAttribute {
            attribute: attr::FORMAT_VERSION.into(),
        }),
        Some(serde_dynamo::AttributeValue::N(n))
            if n.trim()
                .parse()
                .is_ok_and(|v| READABLE_FORMAT_VERSIONS.contains(&v)) =>
        {
            Ok(())
        }
        Some(serde_dynamo::AttributeValue::N(n)) => {
            Err(RecordError::UnknownFormatVersion { found: n.clone() })
        }
        Some(other) => Err(RecordError::InvalidAttribute {
            attribute: attr::FORMAT_VERSION.into(),
            reason: format!("expected a number, found {}", attribute_kind(other)),
        }),
    }
}

fn attribute_kind(value: &serde_dynamo::AttributeValue) -> &'static str {
    use serde_dynamo::AttributeValue as Av;
    match value {
        Av::N(_) => "N (number)",
        Av::S(_) => "S (string)",
        Av::Bool(_) => "BOOL",
        Av::B(_) => "B (binary)",
        Av::Null(_) => "NULL",
        Av::M(_) => "M (map)",
        Av::L(_) => "L (list)",
        Av::Ss(_) => "SS (string set)",
        Av::Ns(_) => "NS (number set)",
        Av::Bs(_) => "BS (binary set)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA_VERSION: Uuid = Uuid::from_u128(0x0123_4567_89ab_4cde_8f01_2345_6789_abcd);

    fn sample() -> StandbyRecord {
        StandbyRecord {
            event_id: EventId::new(),
            topic: "orders".into(),
            key: Some(b"customer-42".to_vec()),
            value: envelope::Envelope::glue(SCHEMA_VERSION, b"{\"total\":10}").encode(),
            headers: vec![
                Header::new("trace", "a"),
                Header::new("trace", "b"),
                Header {
                    name: "null".into(),
                    value: None,
                },
            ],
            producer_id: "checkout-1".into(),
            created_at_ms: 1_700_000_000_123,
            expires_at: 1_700_604_800,
        }
    }

    #[test]
    fn one_key_one_partition_key() {
        let a = sample();
        let b = StandbyRecord {
            event_id: EventId::new(),
            ..sample()
        };
        assert_eq!(a.partition_key(), b.partition_key());
        assert!(a.partition_key().starts_with("orders#k#"));
        let other_topic = StandbyRecord {
            topic: "payments".into(),
            ..sample()
        };
        assert_ne!(a.partition_key(), other_topic.partition_key());
    }

    #[test]
    fn null_and_empty_keys_are_different_groups() {
        let empty = StandbyRecord {
            key: Some(vec![]),
            ..sample()
        };
        let null = StandbyRecord {
            key: None,
            ..sample()
        };
        assert!(empty.partition_key().contains("#k#"));
        assert!(null.partition_key().contains("#n#"));
        assert_eq!(null.partition_key(), null.clone().partition_key());
    }

    #[test]
    fn item_carries_schema_version_and_format() {
        let item = sample().to_item();
        assert_eq!(
            item["schema_version"],
            AttributeValue::S("01234567-89ab-4cde-8f01-23456789abcd".into())
        );
        assert_eq!(item["format_version"], AttributeValue::N("2".into()));
        assert!(matches!(item["value"], AttributeValue::B(_)));
    }

    #[test]
    fn layout_1_items_are_still_read() {
        let record = StandbyRecord {
            value: envelope::Envelope::confluent(3, b"{}").encode(),
            ..sample()
        };
        let mut item = record.to_item();
        item.insert("format_version".into(), AttributeValue::N("1".into()));
        item.insert("schema_version".into(), AttributeValue::N("3".into()));
        assert_eq!(StandbyRecord::from_item(item).unwrap(), record);
    }

    #[test]
    fn missing_attribute_is_named() {
        let mut item = sample().to_item();
        item.remove("topic");
        let err = StandbyRecord::from_item(item).unwrap_err();
        assert_eq!(
            err,
            RecordError::MissingAttribute {
                attribute: "topic".into()
            }
        );
    }

    #[test]
    fn wrong_type_names_the_attribute_path() {
        let mut item = sample().to_item();
        item.insert("value".into(), AttributeValue::S("not bytes".into()));
        let err = StandbyRecord::from_item(item).unwrap_err();
        assert!(
            matches!(&err, RecordError::InvalidAttribute { attribute, .. } if attribute == "value"),
            "{err:?}"
        );

        let mut item = sample().to_item();
        let AttributeValue::L(mut headers) = item.remove("headers").unwrap() else {
            panic!("headers is a list");
        };
        headers[1] = AttributeValue::M(HashMap::from([(
            "name".to_string(),
            AttributeValue::N("7".into()),
        )]));
        item.insert("headers".into(), AttributeValue::L(headers));
        let err = StandbyRecord::from_item(item).unwrap_err();
        assert!(
            matches!(&err, RecordError::InvalidAttribute { attribute, .. } if attribute == "headers[1].name"),
            "{err:?}"
        );
    }

    #[test]
    fn unknown_format_version_is_reported_first() {
        let mut item = sample().to_item();
        item.insert("format_version".into(), AttributeValue::N("3".into()));
        item.remove("topic");
        let err = StandbyRecord::from_item(item).unwrap_err();
        assert_eq!(err, RecordError::UnknownFormatVersion { found: "3".into() });
    }

    #[test]
    fn bad_event_id_is_named() {
        let mut item = sample().to_item();
        item.insert("event_id".into(), AttributeValue::S("evt-1".into()));
        let err = StandbyRecord::from_item(item).unwrap_err();
        assert!(err.to_string().contains("event_id"), "{err}");
    }

    #[test]
    fn empty_image_is_its_own_error() {
        let err = StandbyRecord::from_image(serde_dynamo::Item::from(HashMap::<
            String,
            serde_dynamo::AttributeValue,
        >::new()))
        .unwrap_err();
        assert_eq!(err, RecordError::EmptyImage);
    }

    #[test]
    fn size_estimate_is_an_upper_bound_of_the_payload() {
        let record = StandbyRecord {
            value: vec![0; 300_000],
            ..sample()
        };
        let size = record.item_size_bytes();
        assert!(size > 300_000 && size < 301_000, "{size}");
    }

    #[test]
    fn event_ids_sort_by_creation() {
        let ids: Vec<EventId> = (0..1000).map(|_| EventId::new()).collect();
        let texts: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let mut sorted = texts.clone();
        sorted.sort();
        assert_eq!(texts, sorted);
    }

    #[test]
    fn backlog_markers_never_look_like_an_event_partition_key() {
        let pk = marker::partition_key("orders.v1");
        assert_eq!(pk, "orders.v1#backlog");
        assert_eq!(marker::marker_topic(&pk), Some("orders.v1"));
        let event = sample();
        assert_eq!(marker::marker_topic(&event.partition_key()), None);
        assert_eq!(
            topic_of_partition_key(&event.partition_key()),
            Some("orders")
        );
        assert!(!is_null_key_partition(&event.partition_key()));
        assert!(is_null_key_partition("orders#n#07"));
        // A key whose hash happened to end in "backlog" is still an event's key.
        assert_eq!(marker::marker_topic("orders#k#backlog"), None);
    }
}
