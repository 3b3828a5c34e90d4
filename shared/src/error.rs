//! The shared crate's errors. Each names the thing that was wrong (an attribute, an environment
//! variable, an event id) so a log line is enough to act on.

use thiserror::Error;

use crate::record::EventId;

/// A DynamoDB item or stream image that is not a valid standby record.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordError {
    #[error("the image has no attributes (a REMOVE record, or a stream without NEW_IMAGE)")]
    EmptyImage,
    #[error("attribute `{attribute}` is missing")]
    MissingAttribute { attribute: String },
    #[error("attribute `{attribute}` is invalid: {reason}")]
    InvalidAttribute { attribute: String, reason: String },
    #[error(
        "attribute `format_version` is {found}, this build reads only version {}",
        crate::record::FORMAT_VERSION
    )]
    UnknownFormatVersion { found: String },
}

impl RecordError {
    pub(crate) fn from_serde(err: serde_path_to_error::Error<serde_dynamo::Error>) -> Self {
        let path = err.path().to_string();
        let reason = err.into_inner().to_string();
        // serde reports a missing field at the parent's path, naming the field in backticks.
        if let Some(field) = reason
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
        {
            let attribute = if path == "." {
                field.to_string()
            } else {
                format!("{path}.{field}")
            };
            return Self::MissingAttribute { attribute };
        }
        Self::InvalidAttribute {
            attribute: path,
            reason,
        }
    }

    /// Stable, short label for metrics and dead-letter headers.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::EmptyImage => "empty_image",
            Self::MissingAttribute { .. } => "missing_attribute",
            Self::InvalidAttribute { .. } => "invalid_attribute",
            Self::UnknownFormatVersion { .. } => "unknown_format_version",
        }
    }
}

/// Configuration read from the environment.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("environment variable {var} is not set ({hint})")]
    Missing {
        var: &'static str,
        hint: &'static str,
    },
    #[error("environment variable {var}={value:?} is invalid: expected {expected}")]
    Invalid {
        var: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// What the producer fallback could not do. Every variant carries the event id, and the event
/// itself stays with the caller: nothing is dropped silently.
#[derive(Debug, Error)]
pub enum FallbackError {
    #[error(
        "event {event_id}: item would be {size} bytes, over DynamoDB's {limit}-byte limit, so it \
         cannot wait in the standby store (Kafka said: {kafka_error})"
    )]
    TooLargeForStandby {
        event_id: EventId,
        size: usize,
        limit: usize,
        kafka_error: String,
    },
    #[error("event {event_id}: writing to the standby table failed: {source}")]
    Standby {
        event_id: EventId,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "event {event_id}: rejected by Kafka ({kafka_error}) and the dead-letter topic {dead_letter_topic} \
         did not take it either: {source}"
    )]
    DeadLetter {
        event_id: EventId,
        dead_letter_topic: String,
        kafka_error: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error(
        "event {event_id}: Kafka did not accept it ({source}) and the error is not one the fallback handles"
    )]
    Kafka {
        event_id: EventId,
        #[source]
        source: rdkafka::error::KafkaError,
    },
}
