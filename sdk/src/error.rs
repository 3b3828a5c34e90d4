//! The SDK's errors. Each names the thing that was wrong (an environment variable, an event id)
//! so a log line is enough to act on.

use thiserror::Error;
use wire::record::EventId;

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
        "event {event_id}: header {name:?} is reserved for the platform (`event-id`, `standby-*`, \
         `dlt-*`); rename it"
    )]
    ReservedHeader { event_id: EventId, name: String },
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

impl FallbackError {
    /// Whether sending the same event again later may succeed: the cluster or the standby
    /// table was unavailable, or the event waits for the cluster (too large for the table).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Standby { .. } | Self::Kafka { .. } | Self::TooLargeForStandby { .. } => true,
            Self::ReservedHeader { .. } | Self::DeadLetter { .. } => false,
        }
    }
}

/// Why a producer could not be built from its configuration.
#[derive(Debug, Error)]
pub enum SetupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("creating the Kafka producer: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}
