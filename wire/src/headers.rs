//! Names of the Kafka headers this project adds. Consumers rely on them: keep them stable. The
//! dead-letter context headers (`dlt-…`) are [`crate::dead_letter`]'s.

/// The event id (UUIDv7 text) on every message the fallback or the republisher writes, so a
/// consumer can drop the duplicates that at-least-once delivery allows.
pub const EVENT_ID: &str = "event-id";
/// Present (value `true`) on messages republished from the standby store.
pub const REPUBLISHED: &str = "standby-republished";
/// On a message `standbyctl dlt redrive` sent: the dead-letter record it came from
/// (`{dead-letter topic}/{partition}/{offset}`).
pub const REDRIVEN_FROM: &str = "standby-redriven-from";
