//! Which Kafka produce errors mean "wait and try again" and which mean "this event will never be
//! accepted". One table, used by the producer fallback (standby vs dead-letter), the republisher
//! (report the batch failure vs dead-letter) and the operator tools.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// What to do with an event whose produce failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// The cluster (or our access to it) is the problem, not the event: keep the event and
    /// retry later. Unknown errors land here too, so nothing is dead-lettered by guesswork.
    Retriable,
    /// The event itself cannot be written to its topic (too large, topic missing, invalid):
    /// retrying cannot help, so it goes to the dead-letter topic with the reason.
    NonRetriable,
}

/// Classifies an error code from a produce request or delivery report.
pub fn classify_code(code: RDKafkaErrorCode) -> Disposition {
    use RDKafkaErrorCode as C;
    match code {
        // Too large for the client's or the broker's limit.
        C::MessageSizeTooLarge | C::InvalidMessageSize | C::MessageBatchTooLarge
        // The topic or partition does not exist (auto-creation is off on our clusters).
        | C::UnknownTopic | C::UnknownPartition | C::UnknownTopicOrPartition | C::UnknownTopicId
        | C::InvalidTopic
        // The broker refuses the record's content.
        | C::InvalidRecord | C::InvalidMessage | C::BadMessage | C::InvalidTimestamp
        | C::PolicyViolation | C::UnsupportedForMessageFormat => Disposition::NonRetriable,
        // Everything else: brokers down or moving (MessageTimedOut, AllBrokersDown,
        // BrokerTransportFailure, LeaderNotAvailable, NotLeaderForPartition, NotEnoughReplicas,
        // RequestTimedOut, QueueFull, …), and access problems an operator can fix (SASL or topic
        // authorization), after which the same event goes through.
        _ => Disposition::Retriable,
    }
}

/// Classifies any Kafka error; errors without a code (a cancelled future, a client that could
/// not be created) are retriable.
pub fn classify(error: &KafkaError) -> Disposition {
    error
        .rdkafka_error_code()
        .map_or(Disposition::Retriable, classify_code)
}

/// Whether a retriable failure concerns the record's topic only (the topic's authorization), so
/// that other topics' events still go through. The republisher holds back the affected key rather
/// than failing a whole stream batch, which would stop every other key of the shard.
pub fn concerns_topic_only(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed)
    )
}

/// Whether the error says the topic does not exist. Brokers can say so for a while during
/// restarts (stale metadata), so callers confirm with a fresh metadata request before treating
/// it as permanent.
pub fn says_topic_missing(error: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        error.rdkafka_error_code(),
        Some(C::UnknownTopic | C::UnknownTopicOrPartition | C::UnknownTopicId)
    )
}

/// Whether librdkafka's producer has entered its fatal state (idempotence guarantees broken):
/// every later produce on that instance fails, so the instance must be replaced.
pub fn is_fatal(error: &KafkaError) -> bool {
    matches!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::Fatal))
}

#[cfg(test)]
mod tests {
    use super::*;
    use RDKafkaErrorCode as C;

    #[test]
    fn classification_table() {
        let table = [
            // brokers unavailable
            (C::MessageTimedOut, Disposition::Retriable),
            (C::AllBrokersDown, Disposition::Retriable),
            (C::BrokerTransportFailure, Disposition::Retriable),
            (C::NetworkException, Disposition::Retriable),
            (C::Resolve, Disposition::Retriable),
            (C::LeaderNotAvailable, Disposition::Retriable),
            (C::NotLeaderForPartition, Disposition::Retriable),
            (C::RequestTimedOut, Disposition::Retriable),
            (C::BrokerNotAvailable, Disposition::Retriable),
            (C::NotEnoughReplicas, Disposition::Retriable),
            (C::NotEnoughReplicasAfterAppend, Disposition::Retriable),
            (C::KafkaStorageError, Disposition::Retriable),
            (C::QueueFull, Disposition::Retriable),
            (C::OperationTimedOut, Disposition::Retriable),
            (C::PurgeQueue, Disposition::Retriable),
            (C::PurgeInflight, Disposition::Retriable),
            (C::ThrottlingQuotaExceeded, Disposition::Retriable),
            // access an operator can fix
            (C::SaslAuthenticationFailed, Disposition::Retriable),
            (C::TopicAuthorizationFailed, Disposition::Retriable),
            (C::Authentication, Disposition::Retriable),
            // idempotent producer trouble: the event is fine
            (C::OutOfOrderSequenceNumber, Disposition::Retriable),
            (C::Fatal, Disposition::Retriable),
            // the event itself
            (C::MessageSizeTooLarge, Disposition::NonRetriable),
            (C::InvalidMessageSize, Disposition::NonRetriable),
            (C::MessageBatchTooLarge, Disposition::NonRetriable),
            (C::UnknownTopic, Disposition::NonRetriable),
            (C::UnknownPartition, Disposition::NonRetriable),
            (C::UnknownTopicOrPartition, Disposition::NonRetriable),
            (C::UnknownTopicId, Disposition::NonRetriable),
            (C::InvalidTopic, Disposition::NonRetriable),
            (C::InvalidRecord, Disposition::NonRetriable),
            (C::InvalidMessage, Disposition::NonRetriable),
            (C::BadMessage, Disposition::NonRetriable),
            (C::InvalidTimestamp, Disposition::NonRetriable),
            (C::PolicyViolation, Disposition::NonRetriable),
            (C::UnsupportedForMessageFormat, Disposition::NonRetriable),
        ];
        for (code, expected) in table {
            assert_eq!(classify_code(code), expected, "{code:?}");
        }
    }

    #[test]
    fn errors_without_a_code_are_retriable() {
        assert_eq!(classify(&KafkaError::Canceled), Disposition::Retriable);
        assert_eq!(
            classify(&KafkaError::MessageProduction(C::MessageSizeTooLarge)),
            Disposition::NonRetriable
        );
    }

    #[test]
    fn scopes_of_failures() {
        let produce = |code| KafkaError::MessageProduction(code);
        assert!(concerns_topic_only(&produce(C::TopicAuthorizationFailed)));
        assert!(!concerns_topic_only(&produce(C::MessageTimedOut)));
        assert!(says_topic_missing(&produce(C::UnknownTopicOrPartition)));
        assert!(!says_topic_missing(&produce(C::MessageSizeTooLarge)));
        assert!(is_fatal(&produce(C::Fatal)));
        assert!(!is_fatal(&produce(C::OutOfOrderSequenceNumber)));
    }
}
