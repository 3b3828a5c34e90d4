//! The producer fallback: what a producer application links to publish without losing events.
//!
//! [`FallbackProducer::send`] publishes to Kafka (idempotent, `acks=all`) and waits for the ack.
//! When the failure means the cluster is unavailable ([`Disposition::Retriable`]) the event is
//! written to the standby table with a conditional put, for the republisher to deliver later;
//! when the event itself is rejected ([`Disposition::NonRetriable`]) it goes to the producer's
//! dead-letter topic with headers saying why. Either way the caller learns where the event went,
//! or gets an error that still leaves the event in its hands.
//!
//! # Per-key order across an outage
//! Once an event of a key has gone to the standby table, the producer *diverts* that key: its
//! later events go to the standby table too, behind the first, until a strongly consistent Query
//! finds no item of the key's partition key left (the republisher deletes each item only after
//! Kafka acked it). The check backs off ([`crate::retry::standby_recheck`]) so a long outage
//! costs one Query per key every few seconds, not one per event. Then the key returns to Kafka,
//! after all of its earlier events. Events without a key have no order to keep and are never
//! diverted.
//!
//! The guarantee covers events of one key sent one after another (each `send` awaited before
//! the next of the same key) by one `FallbackProducer`; the diverted keys live in its memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::error::KafkaError;
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::classify::{Disposition, classify};
use crate::config::{self, Env};
use crate::error::{ConfigError, FallbackError};
use crate::headers;
use crate::kafka::KafkaContext;
use crate::record::{self, DYNAMODB_MAX_ITEM_BYTES, EventId, Header, StandbyRecord};
use crate::retry;
use crate::standby_table::{PutOutcome, StandbyTable};

pub const PRODUCER_ID: &str = "STANDBY_PRODUCER_ID";
pub const DEAD_LETTER_TOPIC: &str = "STANDBY_DEAD_LETTER_TOPIC";
pub const RETENTION_SECONDS: &str = "STANDBY_RETENTION_SECONDS";
pub const RECHECK_MAX_MS: &str = "STANDBY_RECHECK_MAX_MS";

/// Default longest wait between two checks of a diverted key.
pub const DEFAULT_RECHECK_MAX_DELAY: Duration = Duration::from_secs(5);

/// Default time an event may wait in the standby table before DynamoDB's TTL removes it.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(14 * 24 * 3600);

/// An event as the application hands it over: value already framed and schema-validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<Header>,
}

impl Event {
    pub fn new(topic: impl Into<String>, key: Option<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            topic: topic.into(),
            key,
            value: value.into(),
            headers: Vec::new(),
        }
    }
}

/// Where an event went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Acked by Kafka.
    Kafka { partition: i32, offset: i64 },
    /// Waiting in the standby table; `reason` is the Kafka error, or the diverted key.
    Standby { reason: String },
    /// Rejected by Kafka for good and written to the dead-letter topic.
    DeadLettered { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub event_id: EventId,
    pub outcome: Outcome,
}

/// Settings of the fallback itself (Kafka and DynamoDB settings live with their clients).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FallbackSettings {
    /// Names this producer instance in standby records and dead-letter headers.
    pub producer_id: String,
    pub dead_letter_topic: String,
    /// How long an event may wait in the standby table (its TTL).
    pub retention: Duration,
    /// Longest wait between two checks of whether a diverted key's events have left the standby
    /// table (one strongly consistent Query per diverted key per check).
    pub recheck_max_delay: Duration,
}

impl FallbackSettings {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        Ok(Self {
            producer_id: config::required(
                env,
                PRODUCER_ID,
                "names this producer instance in standby records",
            )?,
            dead_letter_topic: config::required(
                env,
                DEAD_LETTER_TOPIC,
                "topic for events Kafka rejects for good",
            )?,
            retention: config::seconds(env, RETENTION_SECONDS, DEFAULT_RETENTION)?,
            recheck_max_delay: config::millis(env, RECHECK_MAX_MS, DEFAULT_RECHECK_MAX_DELAY)?,
        })
    }
}

/// A key whose events currently go to the standby table, and when to look again.
struct Diversion {
    next_check: Instant,
    delays: Box<dyn Iterator<Item = Duration> + Send>,
}

/// Publishes to Kafka, falling back to the standby table or the dead-letter topic.
pub struct FallbackProducer {
    kafka: FutureProducer<KafkaContext>,
    delivery_timeout: Duration,
    table: StandbyTable,
    settings: FallbackSettings,
    diverted: Mutex<HashMap<String, Diversion>>,
}

impl FallbackProducer {
    /// `delivery_timeout` must match the producer's `message.timeout.ms`; it also bounds the
    /// wait for room in librdkafka's local queue.
    pub fn new(
        kafka: FutureProducer<KafkaContext>,
        delivery_timeout: Duration,
        table: StandbyTable,
        settings: FallbackSettings,
    ) -> Self {
        Self {
            kafka,
            delivery_timeout,
            table,
            settings,
            diverted: Mutex::new(HashMap::new()),
        }
    }

    /// Number of keys currently diverted to the standby table.
    pub fn diverted_keys(&self) -> usize {
        self.lock_diverted().len()
    }

    /// Publishes `event` and reports where it went.
    pub async fn send(&self, event: Event) -> Result<Delivery, FallbackError> {
        let event_id = EventId::new();
        let partition_key = event
            .key
            .as_deref()
            .map(|key| record::partition_key(&event.topic, Some(key), event_id));

        if let Some(pk) = &partition_key
            && self.must_stay_diverted(pk, event_id).await
        {
            let reason = "earlier events of this key are still in the standby table".to_string();
            return self.to_standby(event_id, event, reason, None).await;
        }

        let kafka_headers =
            with_headers(&event.headers, [(headers::EVENT_ID, event_id.to_string())]);
        let record = FutureRecord {
            topic: &event.topic,
            partition: None,
            payload: Some(&event.value),
            key: event.key.as_ref(),
            timestamp: None,
            headers: Some(kafka_headers),
        };
        let error = match self.kafka.send(record, self.delivery_timeout).await {
            Ok(delivery) => {
                return Ok(Delivery {
                    event_id,
                    outcome: Outcome::Kafka {
                        partition: delivery.partition,
                        offset: delivery.offset,
                    },
                });
            }
            Err((error, _message)) => error,
        };

        match classify(&error) {
            Disposition::Retriable => {
                if let Some(pk) = partition_key {
                    self.divert(pk);
                }
                let reason = error.to_string();
                self.to_standby(event_id, event, reason, Some(&error)).await
            }
            Disposition::NonRetriable => self.to_dead_letter(event_id, event, error).await,
        }
    }

    /// Whether a key diverted earlier must keep going to the standby table. Queries the table
    /// once its back-off has elapsed; a failed Query keeps the key diverted (order first).
    async fn must_stay_diverted(&self, partition_key: &str, event_id: EventId) -> bool {
        {
            let diverted = self.lock_diverted();
            match diverted.get(partition_key) {
                None => return false,
                Some(diversion) if Instant::now() < diversion.next_check => return true,
                Some(_) => {}
            }
        }
        let still_waiting = match self.table.holds_partition(partition_key).await {
            Ok(holds) => holds,
            Err(error) => {
                tracing::warn!(%event_id, partition_key, %error, "could not check the standby table; key stays diverted");
                true
            }
        };
        let mut diverted = self.lock_diverted();
        if still_waiting {
            if let Some(diversion) = diverted.get_mut(partition_key) {
                let delay = diversion.delays.next().unwrap_or(Duration::from_secs(5));
                diversion.next_check = Instant::now() + delay;
            }
        } else {
            diverted.remove(partition_key);
            tracing::info!(%event_id, partition_key, "standby drained for key; back to Kafka");
        }
        still_waiting
    }

    fn divert(&self, partition_key: String) {
        let mut delays = retry::standby_recheck(self.settings.recheck_max_delay);
        let first = delays.next().unwrap_or_default();
        self.lock_diverted()
            .entry(partition_key)
            .or_insert_with(|| Diversion {
                next_check: Instant::now() + first,
                delays: Box::new(delays),
            });
    }

    async fn to_standby(
        &self,
        event_id: EventId,
        event: Event,
        reason: String,
        kafka_error: Option<&KafkaError>,
    ) -> Result<Delivery, FallbackError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let record = StandbyRecord {
            event_id,
            topic: event.topic,
            key: event.key,
            value: event.value,
            headers: event.headers,
            producer_id: self.settings.producer_id.clone(),
            created_at_ms: now.as_millis() as u64,
            expires_at: (now + self.settings.retention).as_secs(),
        };
        let size = record.item_size_bytes();
        if size > DYNAMODB_MAX_ITEM_BYTES {
            return Err(FallbackError::TooLargeForStandby {
                event_id,
                size,
                limit: DYNAMODB_MAX_ITEM_BYTES,
                kafka_error: kafka_error.map_or_else(|| reason.clone(), ToString::to_string),
            });
        }
        match self.table.put_new(&record).await {
            Ok(PutOutcome::Written) => {
                tracing::warn!(%event_id, topic = %record.topic, %reason, "event written to the standby table");
            }
            Ok(PutOutcome::AlreadyPresent) => {
                tracing::warn!(%event_id, topic = %record.topic, "event already in the standby table; left as it was");
            }
            Err(source) => {
                return Err(FallbackError::Standby {
                    event_id,
                    source: Box::new(source),
                });
            }
        }
        Ok(Delivery {
            event_id,
            outcome: Outcome::Standby { reason },
        })
    }

    async fn to_dead_letter(
        &self,
        event_id: EventId,
        event: Event,
        error: KafkaError,
    ) -> Result<Delivery, FallbackError> {
        let reason = error.to_string();
        let context = [
            (headers::EVENT_ID, event_id.to_string()),
            (headers::DLT_REASON, reason.clone()),
            (
                headers::DLT_ERROR_CLASS,
                Disposition::NonRetriable.as_str().to_string(),
            ),
            (headers::DLT_ORIGINAL_TOPIC, event.topic.clone()),
            (headers::DLT_SOURCE, "producer-fallback".to_string()),
            (headers::DLT_PRODUCER_ID, self.settings.producer_id.clone()),
        ];
        let record = FutureRecord {
            topic: &self.settings.dead_letter_topic,
            partition: None,
            payload: Some(&event.value),
            key: event.key.as_ref(),
            timestamp: None,
            headers: Some(with_headers(&event.headers, context)),
        };
        match self.kafka.send(record, self.delivery_timeout).await {
            Ok(_) => {
                tracing::error!(%event_id, topic = %event.topic, %reason, dead_letter_topic = %self.settings.dead_letter_topic, "Kafka rejected the event; dead-lettered");
                Ok(Delivery {
                    event_id,
                    outcome: Outcome::DeadLettered { reason },
                })
            }
            Err((source, _message)) => Err(FallbackError::DeadLetter {
                event_id,
                dead_letter_topic: self.settings.dead_letter_topic.clone(),
                kafka_error: reason,
                source,
            }),
        }
    }

    fn lock_diverted(&self) -> std::sync::MutexGuard<'_, HashMap<String, Diversion>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts and
        // removes), so a poisoned lock is still usable.
        self.diverted.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The application's headers followed by ours.
fn with_headers<const N: usize>(original: &[Header], ours: [(&str, String); N]) -> OwnedHeaders {
    let mut kafka_headers = OwnedHeaders::new_with_capacity(original.len() + N);
    for header in original {
        kafka_headers = kafka_headers.insert(KafkaHeader {
            key: &header.name,
            value: header.value.as_deref(),
        });
    }
    for (name, value) in &ours {
        kafka_headers = kafka_headers.insert(KafkaHeader {
            key: name,
            value: Some(value.as_bytes()),
        });
    }
    kafka_headers
}
