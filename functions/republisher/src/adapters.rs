//! The real ports: Kafka through rdkafka, DynamoDB through the AWS SDK.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer;
use sdk::kafka::{Message, RenewingProducer};
use sdk::standby_table::StandbyTable;
use shared::topics::TopicAllowList;
use wire::headers;
use wire::record::{Header, StandbyRecord};

use crate::dead_letter::DeadLetter;
use crate::engine::{DeleteFailure, Sink, Table};
use crate::entry::{self, Entry, ItemKey};

/// How long a metadata request confirming a missing topic may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// Publishes through one idempotent producer, built once per execution environment (and again
/// after a fatal error, see [`RenewingProducer`]).
pub struct KafkaSink {
    producer: RenewingProducer,
    dead_letter_topic: String,
    topics: TopicAllowList,
}

impl KafkaSink {
    /// Publishes events to the topics `topics` allows, and dead letters to `dead_letter_topic`.
    pub fn new(
        producer: RenewingProducer,
        dead_letter_topic: String,
        topics: TopicAllowList,
    ) -> Self {
        Self {
            producer,
            dead_letter_topic,
            topics,
        }
    }

    pub fn producer(&self) -> &RenewingProducer {
        &self.producer
    }

    async fn send(&self, message: Message<'_>) -> Result<(), KafkaError> {
        // A full local queue is waited on briefly; the invocation budget keeps a margin for it.
        self.producer
            .send(message.record(), Duration::from_secs(1))
            .await
            .map(|_| ())
    }
}

impl Sink for KafkaSink {
    async fn republish(&self, record: &StandbyRecord) -> Result<(), KafkaError> {
        let ours = [
            Header::new(headers::EVENT_ID, record.event_id.to_string()),
            Header::new(headers::REPUBLISHED, "true"),
        ];
        self.send(Message {
            topic: &record.topic,
            key: record.key.as_deref(),
            value: &record.value,
            headers: &record.headers,
            extra: &ours,
        })
        .await
    }

    async fn dead_letter(&self, letter: DeadLetter) -> Result<(), KafkaError> {
        self.send(Message {
            topic: &self.dead_letter_topic,
            key: letter.key.as_deref(),
            value: &letter.value,
            headers: &letter.headers,
            extra: &[],
        })
        .await
    }

    async fn topic_is_missing(&self, topic: &str) -> bool {
        let producer: Arc<_> = self.producer.current();
        let name = topic.to_string();
        // librdkafka's metadata call blocks: keep it off the async workers.
        let answer = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&name), METADATA_TIMEOUT)
                .map(|metadata| {
                    metadata
                        .topics()
                        .iter()
                        .find(|t| t.name() == name)
                        .and_then(|t| t.error())
                        .map(RDKafkaErrorCode::from)
                })
        })
        .await;
        match answer {
            Ok(Ok(Some(
                RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic,
            ))) => true,
            Ok(Ok(_)) => false,
            Ok(Err(error)) => {
                tracing::warn!(topic, %error, "metadata request failed; the topic is not taken as missing");
                false
            }
            Err(_) => false,
        }
    }

    fn refuses(&self, topic: &str) -> Option<String> {
        (!self.topics.permits(topic)).then(|| self.topics.refusal(topic))
    }
}

/// The standby table as the engine's port.
pub struct DynamoTable {
    standby: StandbyTable,
}

impl DynamoTable {
    pub fn new(standby: StandbyTable) -> Self {
        Self { standby }
    }
}

impl Table for DynamoTable {
    async fn backlog(
        &self,
        pk: &str,
        after: Option<&str>,
        up_to: &str,
        limit: usize,
    ) -> Result<(Vec<Entry>, bool), String> {
        self.standby
            .backlog(pk, after, Some(up_to), limit)
            .await
            .map(|(items, more)| (entry::from_items(items), more))
            .map_err(|e| e.to_string())
    }

    async fn backlog_ids(
        &self,
        pk: &str,
        after: Option<&str>,
        up_to: &str,
        limit: usize,
    ) -> Result<(Vec<String>, bool), String> {
        self.standby
            .backlog_ids(pk, after, Some(up_to), limit)
            .await
            .map_err(|e| e.to_string())
    }

    async fn delete(&self, keys: &[ItemKey]) -> Result<(), DeleteFailure> {
        self.standby
            .delete_in_order(keys)
            .await
            .map_err(|stopped| DeleteFailure {
                first_not_deleted: stopped.first_not_deleted,
                reason: stopped.reason,
            })
    }
}
