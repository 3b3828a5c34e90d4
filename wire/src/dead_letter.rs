//! The dead-letter context: the headers every component that dead-letters an event adds to it,
//! and the one place they are written ([`Context::headers`]) and read ([`Context::read`]).
//!
//! A dead-lettered message keeps the event's own key, value and headers (so an operator can
//! redrive it unchanged) and gains these, all named `dlt-…`. Redriving takes them off again
//! ([`is_context_header`]).

use crate::record::Header;

/// Why the event could not be written.
pub const REASON: &str = "dlt-reason";
/// [`ErrorClass`]: `non_retriable`, `malformed`, `invalid` or `handler_failed`.
pub const ERROR_CLASS: &str = "dlt-error-class";
/// The topic the event was meant for, when known.
pub const ORIGINAL_TOPIC: &str = "dlt-original-topic";
/// [`Source`]: which component dead-lettered it.
pub const SOURCE: &str = "dlt-source";
/// The producer instance that created the event.
pub const PRODUCER_ID: &str = "dlt-producer-id";
/// The DynamoDB stream sequence number of the standby record.
pub const STREAM_SEQUENCE: &str = "dlt-stream-sequence";
/// How many times the record had been tried.
pub const ATTEMPT: &str = "dlt-attempt";
/// On malformed records: which way the item is broken (`RecordError::kind`).
pub const MALFORMED_KIND: &str = "dlt-malformed-kind";
/// On malformed records: the value's format ([`PayloadFormat`]), since there is no event to keep.
pub const PAYLOAD_FORMAT: &str = "dlt-payload-format";
/// On events that failed schema validation: where in the payload (a JSON pointer, or the Avro
/// field path); the message is in [`REASON`].
pub const ERROR_PATH: &str = "dlt-error-path";
/// On records a consumer forwarded: the partition and offset they were read at.
pub const ORIGINAL_PARTITION: &str = "dlt-original-partition";
pub const ORIGINAL_OFFSET: &str = "dlt-original-offset";
/// On records a consumer forwarded: when handling it first failed, milliseconds since the epoch.
pub const FIRST_FAILURE_AT: &str = "dlt-first-failure-at";
/// On records in a consumer's retry topic: when the next attempt is due, milliseconds since the
/// epoch.
pub const DUE_AT: &str = "dlt-due-at";

/// Whether `name` is a dead-letter context header (as opposed to one of the event's own).
pub fn is_context_header(name: &str) -> bool {
    name.starts_with("dlt-")
}

/// Why an event was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Kafka rejects the event for good (too large for the topic, topic missing, invalid).
    NonRetriable,
    /// The standby item is not a valid record: there is no event to publish.
    Malformed,
    /// The event does not match its schema (or its schema is not known).
    Invalid,
    /// A consumer's handler failed for good, or ran out of retries.
    HandlerFailed,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NonRetriable => "non_retriable",
            Self::Malformed => "malformed",
            Self::Invalid => "invalid",
            Self::HandlerFailed => "handler_failed",
        }
    }

    pub const ALL: [Self; 4] = [
        Self::NonRetriable,
        Self::Malformed,
        Self::Invalid,
        Self::HandlerFailed,
    ];

    pub fn parse(text: &str) -> Option<Self> {
        by_label(Self::ALL, Self::as_str, text)
    }
}

/// Which component dead-lettered the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The producer SDK, when Kafka rejected the event at the first send.
    ProducerFallback,
    /// The republisher, publishing from the standby table.
    Republisher,
    /// The producer SDK, when an event failed validation against its schema.
    ProducerValidation,
    /// The consumer SDK (validation, or the handler).
    Consumer,
}

impl Source {
    const ALL: [Self; 4] = [
        Self::ProducerFallback,
        Self::Republisher,
        Self::ProducerValidation,
        Self::Consumer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProducerFallback => "producer-fallback",
            Self::Republisher => "republisher",
            Self::ProducerValidation => "producer-validation",
            Self::Consumer => "consumer",
        }
    }
}

/// What the value of a dead-lettered record is, when it is not the event's own value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadFormat {
    /// The raw DynamoDB stream record, as JSON.
    StreamRecordJson,
    /// The raw item as a scan returned it, as JSON.
    ItemJson,
    /// An Avro value that failed validation, so could not be encoded: its JSON rendering,
    /// framed with the schema version it failed against.
    AvroValueJson,
}

impl PayloadFormat {
    const ALL: [Self; 3] = [Self::StreamRecordJson, Self::ItemJson, Self::AvroValueJson];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::StreamRecordJson => "dynamodb-stream-record-json",
            Self::ItemJson => "dynamodb-item-json",
            Self::AvroValueJson => "avro-value-json",
        }
    }
}

/// The context of one dead-lettered event. Fields that are `None` are not written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub reason: String,
    pub class: ErrorClass,
    /// Read back as `None` when the header is missing or names no known component.
    pub source: Option<Source>,
    pub original_topic: Option<String>,
    pub producer_id: Option<String>,
    pub stream_sequence: Option<String>,
    pub attempt: Option<u32>,
    pub malformed_kind: Option<String>,
    pub payload_format: Option<PayloadFormat>,
    pub error_path: Option<String>,
    pub original_partition: Option<i32>,
    pub original_offset: Option<i64>,
    pub first_failure_at_ms: Option<u64>,
    pub due_at_ms: Option<u64>,
}

impl Context {
    /// A context with the required fields; set the optional ones on the result.
    pub fn new(reason: impl Into<String>, class: ErrorClass, source: Source) -> Self {
        Self {
            reason: reason.into(),
            class,
            source: Some(source),
            original_topic: None,
            producer_id: None,
            stream_sequence: None,
            attempt: None,
            malformed_kind: None,
            payload_format: None,
            error_path: None,
            original_partition: None,
            original_offset: None,
            first_failure_at_ms: None,
            due_at_ms: None,
        }
    }

    /// The headers to append to the event's own.
    pub fn headers(&self) -> Vec<Header> {
        let optional = [
            (ORIGINAL_TOPIC, self.original_topic.clone()),
            (PRODUCER_ID, self.producer_id.clone()),
            (STREAM_SEQUENCE, self.stream_sequence.clone()),
            (ATTEMPT, self.attempt.map(|a| a.to_string())),
            (MALFORMED_KIND, self.malformed_kind.clone()),
            (
                PAYLOAD_FORMAT,
                self.payload_format.map(|f| f.as_str().to_string()),
            ),
            (ERROR_PATH, self.error_path.clone()),
            (
                ORIGINAL_PARTITION,
                self.original_partition.map(|p| p.to_string()),
            ),
            (ORIGINAL_OFFSET, self.original_offset.map(|o| o.to_string())),
            (
                FIRST_FAILURE_AT,
                self.first_failure_at_ms.map(|t| t.to_string()),
            ),
            (DUE_AT, self.due_at_ms.map(|t| t.to_string())),
        ];
        let mut headers = vec![
            Header::new(REASON, self.reason.as_str()),
            Header::new(ERROR_CLASS, self.class.as_str()),
        ];
        if let Some(source) = self.source {
            headers.push(Header::new(SOURCE, source.as_str()));
        }
        headers.extend(
            optional
                .into_iter()
                .filter_map(|(name, value)| value.map(|v| Header::new(name, v))),
        );
        headers
    }

    /// The context found in a message's headers; `None` when it has no reason or error class
    /// (not a dead-lettered message, or written by something else).
    pub fn read(headers: &[Header]) -> Option<Self> {
        let text = |name: &str| {
            headers
                .iter()
                .rev()
                .find(|h| h.name == name)
                .and_then(|h| h.value.as_deref())
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let class = ErrorClass::parse(&text(ERROR_CLASS)?)?;
        Some(Self {
            reason: text(REASON)?,
            class,
            source: text(SOURCE).and_then(|s| by_label(Source::ALL, Source::as_str, &s)),
            original_topic: text(ORIGINAL_TOPIC),
            producer_id: text(PRODUCER_ID),
            stream_sequence: text(STREAM_SEQUENCE),
            attempt: text(ATTEMPT).and_then(|a| a.parse().ok()),
            malformed_kind: text(MALFORMED_KIND),
            payload_format: text(PAYLOAD_FORMAT)
                .and_then(|f| by_label(PayloadFormat::ALL, PayloadFormat::as_str, &f)),
            error_path: text(ERROR_PATH),
            original_partition: text(ORIGINAL_PARTITION).and_then(|p| p.parse().ok()),
            original_offset: text(ORIGINAL_OFFSET).and_then(|o| o.parse().ok()),
            first_failure_at_ms: text(FIRST_FAILURE_AT).and_then(|t| t.parse().ok()),
            due_at_ms: text(DUE_AT).and_then(|t| t.parse().ok()),
        })
    }
}

/// The value among `all` whose header label is `text`.
fn by_label<T: Copy, const N: usize>(
    all: [T; N],
    label: fn(T) -> &'static str,
    text: &str,
) -> Option<T> {
    all.into_iter().find(|value| label(*value) == text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_context_reads_back() {
        let mut context = Context::new("too large", ErrorClass::NonRetriable, Source::Republisher);
        context.original_topic = Some("orders".into());
        context.stream_sequence = Some("42".into());
        context.attempt = Some(1);
        let mut headers = vec![Header::new("trace", "t")];
        headers.extend(context.headers());
        assert_eq!(Context::read(&headers), Some(context));
        assert!(headers.iter().skip(1).all(|h| is_context_header(&h.name)));
        assert!(!is_context_header("trace"));
    }

    #[test]
    fn malformed_context_names_its_kind_and_format() {
        let mut context = Context::new("bad", ErrorClass::Malformed, Source::Republisher);
        context.malformed_kind = Some("missing_attribute".into());
        context.payload_format = Some(PayloadFormat::ItemJson);
        let headers = context.headers();
        assert!(headers.contains(&Header::new(MALFORMED_KIND, "missing_attribute")));
        assert!(headers.contains(&Header::new(PAYLOAD_FORMAT, "dynamodb-item-json")));
        assert_eq!(Context::read(&headers), Some(context));
    }

    #[test]
    fn a_consumers_context_reads_back() {
        let mut context = Context::new("timeout", ErrorClass::HandlerFailed, Source::Consumer);
        context.original_topic = Some("orders".into());
        context.original_partition = Some(3);
        context.original_offset = Some(1234);
        context.attempt = Some(4);
        context.first_failure_at_ms = Some(1_700_000_000_000);
        context.due_at_ms = Some(1_700_000_005_000);
        context.error_path = Some("/total".into());
        assert_eq!(Context::read(&context.headers()), Some(context));
    }

    #[test]
    fn messages_without_context_read_as_none() {
        assert_eq!(Context::read(&[Header::new("trace", "t")]), None);
        assert_eq!(
            Context::read(&[
                Header::new(REASON, "r"),
                Header::new(ERROR_CLASS, "something_else")
            ]),
            None
        );
    }
}
