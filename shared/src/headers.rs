//! Names of the Kafka headers this project adds. Consumers rely on them: keep them stable.

/// The event id (UUIDv7 text) on every message the fallback or the republisher writes, so a
/// consumer can drop the duplicates that at-least-once delivery allows.
pub const EVENT_ID: &str = "event-id";
/// Present (value `true`) on messages republished from the standby store.
pub const REPUBLISHED: &str = "standby-republished";

/// Dead-letter context: why the event could not be written.
pub const DLT_REASON: &str = "dlt-reason";
/// Dead-letter context: `non_retriable` or `malformed` (see `classify::Disposition`).
pub const DLT_ERROR_CLASS: &str = "dlt-error-class";
/// Dead-letter context: the topic the event was meant for, when known.
pub const DLT_ORIGINAL_TOPIC: &str = "dlt-original-topic";
/// Dead-letter context: which component dead-lettered it (`producer-fallback`, `republisher`).
pub const DLT_SOURCE: &str = "dlt-source";
/// Dead-letter context: the producer instance that created the event.
pub const DLT_PRODUCER_ID: &str = "dlt-producer-id";
/// Dead-letter context: the DynamoDB stream sequence number of the standby record.
pub const DLT_STREAM_SEQUENCE: &str = "dlt-stream-sequence";
/// Dead-letter context: how many times the record had been tried.
pub const DLT_ATTEMPT: &str = "dlt-attempt";
