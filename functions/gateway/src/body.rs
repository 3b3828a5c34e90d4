//! Reading a publish request's body: which of the three formats it is (by `Content-Type`), the
//! request-wide limits, and each event's own fields.
//!
//! | `Content-Type` | body | an event's id | its data |
//! |---|---|---|---|
//! | `application/json` | an array of event objects | `metadata.eid` (optional) | the object without `metadata` |
//! | `application/cloudevents+json` | one CloudEvent 1.0 (structured mode) | `id` | `data` |
//! | `application/cloudevents-batch+json` | an array of CloudEvents | `id` | `data` |
//!
//! A problem with the request as a whole (a format we do not take, JSON that does not parse, too
//! large, too many events) is a [`Rejection`]; a problem with one event is that event's
//! [`Invalid`], so the caller learns about every bad event of a batch in one answer.

use serde_json::{Map, Value};
use thiserror::Error;

/// The three body formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/json`: an array of events.
    Events,
    /// `application/cloudevents+json`: one CloudEvent.
    CloudEvent,
    /// `application/cloudevents-batch+json`: an array of CloudEvents.
    CloudEventBatch,
}

/// Request-wide limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_events: usize,
    /// An event's data, as compact JSON, and the attributes that become its headers.
    pub max_event_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_events: 500,
            max_event_bytes: 256 * 1024,
        }
    }
}

/// The longest id a caller may give an event.
pub const MAX_ID_CHARS: usize = 128;
/// The longest CloudEvents `source`, `time` or `subject` (each becomes a Kafka header).
pub const MAX_ATTRIBUTE_CHARS: usize = 512;

/// The request cannot be read as a batch of events: nothing in it is published.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{title}: {detail}")]
pub struct Rejection {
    pub status: u16,
    pub title: &'static str,
    pub detail: String,
}

impl Rejection {
    fn new(status: u16, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            title,
            detail: detail.into(),
        }
    }
}

/// One event is not acceptable; `path` is a JSON pointer into the event as sent.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{path}: {message}")]
pub struct Invalid {
    pub path: String,
    pub message: String,
}

impl Invalid {
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// CloudEvents attributes carried to Kafka as `ce_*` headers (the binary-mode names).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CloudAttributes {
    pub source: String,
    pub time: Option<String>,
    pub subject: Option<String>,
}

/// One event of the request, read.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    /// The id the caller gave it, if any.
    pub caller_id: Option<String>,
    /// What is validated against the event type's schema and published.
    pub data: Value,
    pub cloud: Option<CloudAttributes>,
}

/// The format a `Content-Type` names. Parameters other than `charset=utf-8` are refused (a body
/// in another charset would be misread).
pub fn format_of(content_type: Option<&str>) -> Result<Format, Rejection> {
    let unsupported = |detail: String| Rejection::new(415, "Unsupported Media Type", detail);
    let accepted = "application/json, application/cloudevents+json or \
                    application/cloudevents-batch+json";
    let Some(content_type) = content_type else {
        return Err(unsupported(format!(
            "the request has no Content-Type; send {accepted}"
        )));
    };
    let mut parts = content_type.split(';');
    let media_type = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    for parameter in parts.filter(|p| !p.trim().is_empty()) {
        let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        let value = value.trim().trim_matches('"');
        if !(name.trim().eq_ignore_ascii_case("charset") && value.eq_ignore_ascii_case("utf-8")) {
            return Err(unsupported(format!(
                "Content-Type parameter `{}` is not supported (only charset=utf-8)",
                parameter.trim()
            )));
        }
    }
    match media_type.as_str() {
        "application/json" => Ok(Format::Events),
        "application/cloudevents+json" => Ok(Format::CloudEvent),
        "application/cloudevents-batch+json" => Ok(Format::CloudEventBatch),
        other => Err(unsupported(format!(
            "Content-Type `{other}` is not accepted; send {accepted}"
        ))),
    }
}

impl Submitted {
    /// Bytes it will take in Kafka: the data as compact JSON, and the attributes that become
    /// headers.
    pub fn size(&self) -> usize {
        let data = serde_json::to_vec(&self.data).map_or(0, |bytes| bytes.len());
        let id = self.caller_id.as_ref().map_or(0, String::len);
        let cloud = self.cloud.as_ref().map_or(0, |c| {
            c.source.len()
                + c.time.as_ref().map_or(0, String::len)
                + c.subject.as_ref().map_or(0, String::len)
        });
        data + id + cloud
    }
}

/// Reads `body` as events of `event_type` in `format`: the request's problems as a
/// [`Rejection`], each event's as its own [`Invalid`] (in the order sent).
pub fn parse(
    format: Format,
    event_type: &str,
    body: &[u8],
    limits: &Limits,
) -> Result<Vec<Result<Submitted, Invalid>>, Rejection> {
    if body.len() > limits.max_body_bytes {
        return Err(Rejection::new(
            413,
            "Payload Too Large",
            format!(
                "the body is {} bytes; the limit is {}",
                body.len(),
                limits.max_body_bytes
            ),
        ));
    }
    let json: Value = serde_json::from_slice(body).map_err(|e| {
        // Position only: the message of a syntax error never quotes the body.
        Rejection::new(
            400,
            "Malformed JSON",
            format!(
                "the body is not JSON: {} at line {} column {}",
                syntax_error_kind(&e),
                e.line(),
                e.column()
            ),
        )
    })?;
    let elements = match (format, json) {
        (Format::CloudEvent, event) => vec![event],
        (_, Value::Array(events)) => events,
        (_, _) => {
            return Err(Rejection::new(
                400,
                "Not A Batch",
                "the body must be a JSON array of events",
            ));
        }
    };
    if elements.is_empty() {
        return Err(Rejection::new(
            400,
            "Empty Batch",
            "the batch has no events",
        ));
    }
    if elements.len() > limits.max_events {
        return Err(Rejection::new(
            413,
            "Too Many Events",
            format!(
                "the batch has {} events; the limit is {}",
                elements.len(),
                limits.max_events
            ),
        ));
    }
    let mut events: Vec<Result<Submitted, Invalid>> = elements
        .into_iter()
        .map(|element| {
            let event = match format {
                Format::Events => plain_event(element),
                Format::CloudEvent | Format::CloudEventBatch => cloud_event(element, event_type),
            }?;
            let size = event.size();
            if size > limits.max_event_bytes {
                return Err(Invalid::at(
                    "",
                    format!(
                        "the event is {size} bytes (data and attributes); the limit is {}",
                        limits.max_event_bytes
                    ),
                ));
            }
            Ok(event)
        })
        .collect();
    refuse_repeated_ids(&mut events, format);
    Ok(events)
}

/// An event of a plain JSON array: the object, its optional `metadata.eid` the id.
fn plain_event(element: Value) -> Result<Submitted, Invalid> {
    let Value::Object(mut object) = element else {
        return Err(Invalid::at("", "an event must be a JSON object"));
    };
    let caller_id = match object.remove("metadata") {
        None => None,
        Some(Value::Object(metadata)) => match metadata.get("eid") {
            None => None,
            Some(id) => Some(event_id(id, "/metadata/eid")?),
        },
        Some(_) => return Err(Invalid::at("/metadata", "metadata must be an object")),
    };
    Ok(Submitted {
        caller_id,
        data: Value::Object(object),
        cloud: None,
    })
}

/// A CloudEvent 1.0 in structured mode whose `type` is the event type of the request.
fn cloud_event(element: Value, event_type: &str) -> Result<Submitted, Invalid> {
    let Value::Object(mut object) = element else {
        return Err(Invalid::at("", "a CloudEvent must be a JSON object"));
    };
    match object.get("specversion") {
        Some(Value::String(version)) if version == "1.0" => {}
        _ => {
            return Err(Invalid::at("/specversion", "specversion must be \"1.0\""));
        }
    }
    let id = event_id(object.get("id").unwrap_or(&Value::Null), "/id")?;
    let source = required_string(&object, "source")?;
    if required_string(&object, "type")? != event_type {
        return Err(Invalid::at(
            "/type",
            "type must be the event type the request is sent to",
        ));
    }
    if let Some(content_type) = object.get("datacontenttype") {
        let json = content_type.as_str().is_some_and(|t| {
            let media = t.split(';').next().unwrap_or_default().trim();
            media.eq_ignore_ascii_case("application/json") || media.ends_with("+json")
        });
        if !json {
            return Err(Invalid::at(
                "/datacontenttype",
                "datacontenttype must be application/json (or a +json type)",
            ));
        }
    }
    if object.contains_key("data_base64") {
        return Err(Invalid::at(
            "/data_base64",
            "data_base64 is not accepted: an event type's data is JSON",
        ));
    }
    let Some(data) = object.remove("data") else {
        return Err(Invalid::at("/data", "data is required"));
    };
    Ok(Submitted {
        caller_id: Some(id),
        data,
        cloud: Some(CloudAttributes {
            source,
            time: optional_string(&object, "time")?,
            subject: optional_string(&object, "subject")?,
        }),
    })
}

fn event_id(value: &Value, path: &str) -> Result<String, Invalid> {
    match value {
        Value::String(id)
            if !id.is_empty()
                && id.chars().count() <= MAX_ID_CHARS
                && !id.chars().any(char::is_control) =>
        {
            Ok(id.clone())
        }
        _ => Err(Invalid::at(
            path,
            format!(
                "the id must be a string of 1 to {MAX_ID_CHARS} characters without control characters"
            ),
        )),
    }
}

fn required_string(object: &Map<String, Value>, name: &str) -> Result<String, Invalid> {
    match optional_string(object, name)? {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(Invalid::at(
            format!("/{name}"),
            format!("{name} must be a non-empty string"),
        )),
    }
}

fn optional_string(object: &Map<String, Value>, name: &str) -> Result<Option<String>, Invalid> {
    match object.get(name) {
        None => Ok(None),
        Some(Value::String(value)) if value.chars().count() <= MAX_ATTRIBUTE_CHARS => {
            Ok(Some(value.clone()))
        }
        Some(_) => Err(Invalid::at(
            format!("/{name}"),
            format!("{name} must be a string of at most {MAX_ATTRIBUTE_CHARS} characters"),
        )),
    }
}

/// An id given twice in one batch names one event: the later one is refused, so the caller
/// does not learn only from a missing event that one of the two was taken for the other.
fn refuse_repeated_ids(events: &mut [Result<Submitted, Invalid>], format: Format) {
    let path = match format {
        Format::Events => "/metadata/eid",
        Format::CloudEvent | Format::CloudEventBatch => "/id",
    };
    let mut seen = std::collections::HashMap::new();
    for (index, event) in events.iter_mut().enumerate() {
        let Ok(Submitted {
            caller_id: Some(id),
            ..
        }) = event
        else {
            continue;
        };
        if let Some(first) = seen.insert(id.clone(), index) {
            seen.insert(id.clone(), first);
            *event = Err(Invalid::at(
                path,
                format!("event {first} of this batch has the same id"),
            ));
        }
    }
}

/// serde_json's description of a syntax error without its position (added separately).
fn syntax_error_kind(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(end) => text[..end].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse_ok(format: Format, body: &str) -> Vec<Result<Submitted, Invalid>> {
        parse(format, "order-created", body.as_bytes(), &Limits::default()).unwrap()
    }

    #[test]
    fn content_types() {
        assert_eq!(format_of(Some("application/json")), Ok(Format::Events));
        assert_eq!(
            format_of(Some("Application/JSON; charset=UTF-8")),
            Ok(Format::Events)
        );
        assert_eq!(format_of(Some("application/json;")), Ok(Format::Events));
        assert_eq!(
            format_of(Some("application/cloudevents+json")),
            Ok(Format::CloudEvent)
        );
        assert_eq!(
            format_of(Some("application/cloudevents-batch+json")),
            Ok(Format::CloudEventBatch)
        );
        for refused in [
            None,
            Some("text/plain"),
            Some("application/json; charset=latin1"),
            Some("application/json; version=2"),
            Some("application/xml"),
        ] {
            let rejection = format_of(refused).unwrap_err();
            assert_eq!(rejection.status, 415, "{refused:?}");
        }
    }

    #[test]
    fn a_plain_batch_takes_ids_from_metadata_and_publishes_the_rest() {
        let events = parse_ok(
            Format::Events,
            r#"[{"metadata":{"eid":"a-1"},"order_id":"o1"},{"order_id":"o2"}]"#,
        );
        assert_eq!(
            events,
            vec![
                Ok(Submitted {
                    caller_id: Some("a-1".into()),
                    data: json!({"order_id": "o1"}),
                    cloud: None
                }),
                Ok(Submitted {
                    caller_id: None,
                    data: json!({"order_id": "o2"}),
                    cloud: None
                }),
            ]
        );
    }

    #[test]
    fn each_bad_event_is_named_with_its_path() {
        let events = parse_ok(
            Format::Events,
            r#"[1, {"metadata":[]}, {"metadata":{"eid":""}}, {"metadata":{"eid":"x"}}, {"metadata":{"eid":"x"}}]"#,
        );
        let paths: Vec<_> = events
            .iter()
            .map(|e| e.as_ref().err().map(|i| i.path.as_str()))
            .collect();
        assert_eq!(
            paths,
            vec![
                Some(""),
                Some("/metadata"),
                Some("/metadata/eid"),
                None,
                Some("/metadata/eid")
            ]
        );
        assert!(events[4].as_ref().unwrap_err().message.contains("event 3"));
    }

    #[test]
    fn cloud_events_are_checked_attribute_by_attribute() {
        let good = json!({"specversion":"1.0","id":"e-1","source":"/partner/a","type":"order-created",
            "time":"2026-11-30T10:00:00Z","datacontenttype":"application/json","data":{"order_id":"o1"}});
        let single = parse_ok(Format::CloudEvent, &good.to_string());
        assert_eq!(
            single,
            vec![Ok(Submitted {
                caller_id: Some("e-1".into()),
                data: json!({"order_id": "o1"}),
                cloud: Some(CloudAttributes {
                    source: "/partner/a".into(),
                    time: Some("2026-11-30T10:00:00Z".into()),
                    subject: None
                }),
            })]
        );
        let with = |field: &str, value: Value| {
            let mut event = good.clone();
            event[field] = value;
            event
        };
        let without = |field: &str| {
            let mut event = good.clone();
            event.as_object_mut().unwrap().remove(field);
            event
        };
        let cases = [
            (with("specversion", json!("0.3")), "/specversion"),
            (without("id"), "/id"),
            (without("source"), "/source"),
            (with("type", json!("order-cancelled")), "/type"),
            (
                with("datacontenttype", json!("text/plain")),
                "/datacontenttype",
            ),
            (with("data_base64", json!("AAAA")), "/data_base64"),
            (without("data"), "/data"),
            (with("time", json!(12)), "/time"),
            (with("subject", json!("s".repeat(513))), "/subject"),
        ];
        let batch = Value::Array(cases.iter().map(|(event, _)| event.clone()).collect());
        let events = parse_ok(Format::CloudEventBatch, &batch.to_string());
        for ((_, path), event) in cases.iter().zip(&events) {
            assert_eq!(event.as_ref().unwrap_err().path, *path);
        }
    }

    #[test]
    fn request_wide_problems_are_rejections() {
        let limits = Limits {
            max_body_bytes: 100,
            max_events: 2,
            max_event_bytes: 20,
        };
        let status = |format, body: &str| {
            parse(format, "t", body.as_bytes(), &limits)
                .map(|_| 200)
                .unwrap_or_else(|r| r.status)
        };
        assert_eq!(status(Format::Events, &"[".repeat(101)), 413);
        assert_eq!(status(Format::Events, "[{},{},{}]"), 413);
        assert_eq!(status(Format::Events, "[]"), 400);
        assert_eq!(status(Format::Events, "{}"), 400);
        assert_eq!(status(Format::CloudEventBatch, "{}"), 400);
        let malformed = parse(Format::Events, "t", b"[{\"a\":\n secret}]", &limits).unwrap_err();
        assert_eq!(malformed.status, 400);
        assert!(malformed.detail.contains("line 2 column"), "{malformed}");
        assert!(!malformed.detail.contains("secret"), "{malformed}");
        let big = parse(
            Format::Events,
            "t",
            br#"[{"a":"01234567890123456789"}]"#,
            &limits,
        )
        .unwrap();
        assert!(big[0].as_ref().unwrap_err().message.contains("limit is 20"));
    }
}
