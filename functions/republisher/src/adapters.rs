//! The real ports: Kafka through rdkafka, DynamoDB through the AWS SDK.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, WriteRequest};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{FutureRecord, Producer};
use shared::headers;
use shared::kafka::RenewingProducer;
use shared::record::{Header, StandbyRecord, attr};
use shared::standby_table::StandbyTable;

use crate::dead_letter::DeadLetter;
use crate::engine::{DeleteFailure, Sink, Table};
use crate::entry::{self, Entry, ItemKey};

/// How long a metadata request confirming a missing topic may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// DynamoDB's limit of requests per `BatchWriteItem`.
const BATCH_WRITE_LIMIT: usize = 25;

/// Publishes through one idempotent producer, built once per execution environment (and again
/// after a fatal error, see [`RenewingProducer`]).
pub struct KafkaSink {
    producer: RenewingProducer,
    dead_letter_topic: String,
}

impl KafkaSink {
    pub fn new(producer: RenewingProducer, dead_letter_topic: String) -> Self {
        Self {
            producer,
            dead_letter_topic,
        }
    }

    pub fn producer(&self) -> &RenewingProducer {
        &self.producer
    }

    async fn send(
        &self,
        topic: &str,
        key: Option<&Vec<u8>>,
        value: &[u8],
        headers: OwnedHeaders,
    ) -> Result<(), KafkaError> {
        let record = FutureRecord {
            topic,
            partition: None,
            payload: Some(value),
            key,
            timestamp: None,
            headers: Some(headers),
        };
        // A full local queue is waited on briefly; the invocation budget keeps a margin for it.
        self.producer
            .send(record, Duration::from_secs(1))
            .await
            .map(|_| ())
    }
}

fn kafka_headers(headers: &[Header], extra: &[(&str, &[u8])]) -> OwnedHeaders {
    let mut owned = OwnedHeaders::new_with_capacity(headers.len() + extra.len());
    for header in headers {
        owned = owned.insert(KafkaHeader {
            key: &header.name,
            value: header.value.as_deref(),
        });
    }
    for (key, value) in extra {
        owned = owned.insert(KafkaHeader {
            key,
            value: Some(*value),
        });
    }
    owned
}

impl Sink for KafkaSink {
    async fn republish(&self, record: &StandbyRecord) -> Result<(), KafkaError> {
        let event_id = record.event_id.to_string();
        let headers = kafka_headers(
            &record.headers,
            &[
                (headers::EVENT_ID, event_id.as_bytes()),
                (headers::REPUBLISHED, b"true"),
            ],
        );
        self.send(&record.topic, record.key.as_ref(), &record.value, headers)
            .await
    }

    async fn dead_letter(&self, letter: DeadLetter) -> Result<(), KafkaError> {
        let headers = kafka_headers(&letter.headers, &[]);
        self.send(
            &self.dead_letter_topic,
            letter.key.as_ref(),
            &letter.value,
            headers,
        )
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
}

/// Deletes standby items with `BatchWriteItem`, 25 at a time, in order.
///
/// The item key is (partition key, event id) and event ids are never reused (the producer's put
/// is conditional), so a delete by key can only ever remove the event that was republished: it
/// is the "only if it is still the same event" delete, without the cost of a transaction.
/// Batches run one after another so that, when one fails, nothing after it has been deleted.
pub struct DynamoTable {
    client: Client,
    name: String,
    standby: StandbyTable,
}

impl DynamoTable {
    pub fn new(client: Client, name: String) -> Self {
        Self {
            standby: StandbyTable::new(client.clone(), &name),
            client,
            name,
        }
    }

    async fn delete_chunk(&self, chunk: &[ItemKey]) -> Result<(), (usize, String)> {
        let mut pending: Vec<WriteRequest> = chunk.iter().map(delete_request).collect();
        // Unprocessed items mean DynamoDB is throttling the table: back off and resend only
        // those. Request errors were already retried by the SDK.
        let mut delays = shared::retry::unprocessed_items();
        loop {
            let output = self
                .client
                .batch_write_item()
                .request_items(&self.name, pending.clone())
                .send()
                .await
                .map_err(|e| {
                    (
                        first_pending(chunk, &pending),
                        aws_sdk_dynamodb::Error::from(e).to_string(),
                    )
                })?;
            let unprocessed = output
                .unprocessed_items
                .and_then(|mut by_table| by_table.remove(&self.name))
                .unwrap_or_default();
            if unprocessed.is_empty() {
                return Ok(());
            }
            let Some(delay) = delays.next() else {
                return Err((
                    first_pending(chunk, &unprocessed),
                    format!(
                        "{} deletes still unprocessed (throttled)",
                        unprocessed.len()
                    ),
                ));
            };
            pending = unprocessed;
            tokio::time::sleep(delay).await;
        }
    }
}

fn delete_request(key: &ItemKey) -> WriteRequest {
    WriteRequest::builder()
        .delete_request(
            DeleteRequest::builder()
                .key(attr::PARTITION_KEY, AttributeValue::S(key.pk.clone()))
                .key(attr::EVENT_ID, AttributeValue::S(key.event_id.clone()))
                .build()
                .expect("key is set"),
        )
        .build()
}

/// Index in `chunk` of the first key still among `pending`.
fn first_pending(chunk: &[ItemKey], pending: &[WriteRequest]) -> usize {
    chunk
        .iter()
        .position(|key| {
            let wanted = delete_request(key);
            pending
                .iter()
                .any(|p| p.delete_request == wanted.delete_request)
        })
        .unwrap_or(0)
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

    async fn delete(&self, keys: &[ItemKey]) -> Result<(), DeleteFailure> {
        for (index, chunk) in keys.chunks(BATCH_WRITE_LIMIT).enumerate() {
            if let Err((offset, reason)) = self.delete_chunk(chunk).await {
                return Err(DeleteFailure {
                    first_not_deleted: index * BATCH_WRITE_LIMIT + offset,
                    reason,
                });
            }
        }
        Ok(())
    }
}
