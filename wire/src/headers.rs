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

/// On events published through the event gateway: the client id the caller's token proved. Set
/// by the gateway, never taken from the request. Other producers could set it too, so a
/// consumer may trust it only on topics only the gateway writes.
pub const GATEWAY_CLIENT_ID: &str = "gateway-client-id";
/// On events published through the event gateway with the caller's own id: that id (the
/// `event-id` is minted by the platform and kept for the caller's retries).
pub const GATEWAY_CALLER_EVENT_ID: &str = "gateway-caller-event-id";

/// CloudEvents attributes of events the gateway took in structured mode, under the names of
/// the CloudEvents Kafka binding's binary mode (the value is the event's `data`).
pub mod cloud_events {
    pub const SPECVERSION: &str = "ce_specversion";
    pub const ID: &str = "ce_id";
    pub const SOURCE: &str = "ce_source";
    pub const TYPE: &str = "ce_type";
    pub const TIME: &str = "ce_time";
    pub const SUBJECT: &str = "ce_subject";
}

/// Prefixes of the header names only the platform sets: the event id consumers deduplicate on,
/// the republisher's and redrive's markers (`standby-…`) and the dead-letter context (`dlt-…`).
const RESERVED_PREFIXES: [&str; 2] = ["standby-", "dlt-"];

/// Whether `name` is a header only the platform may set. Producers refuse an event carrying one,
/// and a standby item carrying one is malformed: otherwise a producer could choose the id
/// consumers drop as a duplicate, or forge a dead-letter context. Compared case-insensitively,
/// as some Kafka clients and proxies fold header names.
pub fn is_reserved(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower == EVENT_ID || RESERVED_PREFIXES.iter().any(|p| lower.starts_with(p))
}

/// The first reserved header name among `names`, if any.
pub fn first_reserved<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    names.into_iter().find(|name| is_reserved(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_platforms_headers_are_reserved_and_others_are_not() {
        for name in [
            EVENT_ID,
            "Event-Id",
            REPUBLISHED,
            REDRIVEN_FROM,
            "standby-anything",
            crate::dead_letter::REASON,
            "DLT-original-topic",
        ] {
            assert!(is_reserved(name), "{name}");
        }
        for name in ["trace", "event-id-of-parent", "x-standby-note", "dltx", ""] {
            assert!(!is_reserved(name), "{name}");
        }
        assert_eq!(
            first_reserved(["a", "dlt-reason", "event-id"]),
            Some("dlt-reason")
        );
    }
}
