//! The producer fallback: what a producer application links to publish without losing events.
//!
//! [`FallbackProducer::send`] publishes to Kafka (idempotent, `acks=all`) and waits for the ack.
//! When the failure means the cluster is unavailable ([`Disposition::Retriable`]) the event is
//! written to the standby table with a conditional put, for the republisher to deliver later;
//! when the event itself is rejected ([`Disposition::NonRetriable`]) it goes to the producer's
//! dead-letter topic with headers saying why. Either way the caller learns where the event went,
//! or gets an error that still leaves the event in its hands.
//!
//! # Per-key order across an outage, across instances
//! Plain Kafka keeps causal order across producer instances: an event sent after another was
//! acked lands after it. The fallback keeps it too, with two signals:
//! - **In this instance**, once an event of a key has gone to the standby table the key is
//!   *diverted*: its later events go to the table too, behind the first, until a strongly
//!   consistent Query finds none of the key's items left (the republisher deletes each only
//!   after Kafka acked it). Checks back off ([`crate::retry::standby_recheck`]).
//! - **Across instances** (many instances behind a load balancer, an instance restarted
//!   mid-outage), before any event of a topic goes to the table its *backlog marker* is raised
//!   ([`wire::record::marker`]). Every instance reads the marker of a topic it sends to at most
//!   once per signal interval; while it is up, a keyed send first checks its key (at most once
//!   per signal interval per key) and goes to the table behind any event waiting there.
//!
//! The guarantee: an event sent more than one signal interval after an earlier event of its key
//! was written to the standby table — by any instance whose clock is within one signal interval
//! of the writer's — reaches Kafka after it. Within one instance the interval does not apply:
//! an event sent after `send` returned for an earlier event of its key always lands after it.
//! Events without a key have no order to keep and are never diverted.
//!
//! # Metrics
//! Each producer emits [`METRICS`] (EMF on stdout, for Lambda or the CloudWatch agent) at most
//! once per metrics interval, from within `send`: where events went since the last document,
//! and how many keys are diverted. [`FallbackProducer::emit_metrics`] flushes the rest at
//! shutdown. The `Service` dimension is `STANDBY_METRICS_SERVICE`, else the producer id: set it
//! to the service's name when producer ids name instances, or every instance is a metric.
//!
//! # Retries by the caller
//! [`FallbackProducer::send_with_id`] takes the event id from the caller: a caller that retries
//! after an ambiguous error (a timeout that may have been written; a standby put that failed)
//! keeps the id, so the event is at most duplicated under one id, which consumers drop.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use wire::dead_letter::{self, ErrorClass};
use wire::headers;
use wire::record::{self, DYNAMODB_MAX_ITEM_BYTES, EventId, Header, StandbyRecord};

use crate::classify::{Disposition, classify};
use crate::config::{self, Env};
use crate::error::{ConfigError, FallbackError, SetupError};
use crate::kafka::{KafkaSettings, Message, RenewingProducer};
use crate::metrics::{Family, Metrics};
use crate::retry;
use crate::standby_table::{PutOutcome, StandbyTable};

pub const PRODUCER_ID: &str = "STANDBY_PRODUCER_ID";
pub const DEAD_LETTER_TOPIC: &str = "STANDBY_DEAD_LETTER_TOPIC";
pub const RETENTION_SECONDS: &str = "STANDBY_RETENTION_SECONDS";
pub const RECHECK_MAX_MS: &str = "STANDBY_RECHECK_MAX_MS";
pub const SIGNAL_INTERVAL_MS: &str = "STANDBY_SIGNAL_INTERVAL_MS";
pub const METRICS_SERVICE: &str = "STANDBY_METRICS_SERVICE";
pub const METRICS_INTERVAL_SECONDS: &str = "STANDBY_METRICS_INTERVAL_SECONDS";

/// What producers emit: where their events went (to Kafka, diverted to the standby table,
/// dead-lettered, or failed back to the caller) and the keys diverted when it was emitted.
pub static METRICS: Family = Family {
    component: "producer fallback",
    namespace: "StandbyEvents/Producer",
    dimensions: &["Service"],
    metrics: &[
        "SentToKafka",
        "Diverted",
        "DeadLettered",
        "Failed",
        "DivertedKeys",
    ],
};

/// Default time between two metrics documents of one producer.
pub const DEFAULT_METRICS_INTERVAL: Duration = Duration::from_secs(60);

/// Default longest wait between two checks of a diverted key.
pub const DEFAULT_RECHECK_MAX_DELAY: Duration = Duration::from_secs(5);

/// Default time an event may wait in the standby table before DynamoDB's TTL removes it.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(14 * 24 * 3600);

/// Default time a send waits for Kafka's ack before the event goes to the standby table.
pub const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long before a send a client error report still explains its timeout.
const CLIENT_ERROR_WINDOW: Duration = Duration::from_secs(60);

/// Default age after which a topic's marker or a key's "nothing waiting" is read again.
pub const DEFAULT_SIGNAL_INTERVAL: Duration = Duration::from_secs(1);

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
    /// Waiting in the standby table; `reason` is the Kafka error, or why the key is diverted.
    Standby { reason: String },
    /// Rejected by Kafka for good and written to the dead-letter topic.
    DeadLettered { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub event_id: EventId,
    pub outcome: Outcome,
}

/// Everything a fallback producer is built from, as [`FallbackProducer::config_from_env`] reads
/// it.
#[derive(Debug, Clone)]
pub struct FallbackConfig {
    pub settings: FallbackSettings,
    pub kafka: KafkaSettings,
    /// The standby table's name.
    pub table: String,
    /// The `Service` dimension of its metrics.
    pub metrics_service: String,
    pub metrics_interval: Duration,
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
    /// How stale this instance's view of a topic's backlog marker, or of a key found with
    /// nothing waiting, may be; also how often it refreshes a marker while writing to the table.
    /// The cross-instance order guarantee holds for events sent more than this apart.
    pub signal_interval: Duration,
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
            signal_interval: config::millis(env, SIGNAL_INTERVAL_MS, DEFAULT_SIGNAL_INTERVAL)?,
        })
    }
}

/// What this instance knows about one key.
struct KeyEntry {
    state: KeyState,
    /// Stamp of the latest standby write of the key this instance started (0: none). Stamps
    /// come from one counter and never repeat, so a check that raced a write always sees that
    /// the stamp moved, whatever happened to the entry meanwhile.
    last_write: u64,
}

enum KeyState {
    /// Events go to the standby table until a check finds the key's backlog gone.
    Diverted {
        next_check: Instant,
        delays: Box<dyn Iterator<Item = Duration> + Send>,
    },
    /// A check found nothing of the key waiting.
    Clear { checked_at: Instant },
}

/// Entries kept before stale "nothing waiting" ones are dropped (diverted keys always stay).
const KEYS_REMEMBERED: usize = 100_000;

/// What this instance knows about one topic's backlog marker.
#[derive(Default)]
struct TopicState {
    /// When the marker was last read, and whether it was up.
    read: Option<(Instant, bool)>,
    /// When this instance last raised it.
    raised: Option<Instant>,
}

/// DynamoDB reads and writes the fallback made to keep order, for measuring its cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignalStats {
    /// Reads of a topic's backlog marker (`GetItem`).
    pub marker_reads: u64,
    /// Marker raises and refreshes (`UpdateItem`).
    pub marker_writes: u64,
    /// Checks of a key for waiting events (`Query`, one item).
    pub key_checks: u64,
    /// Time spent in those calls, summed over concurrent sends.
    pub busy: Duration,
}

#[derive(Default)]
struct Counters {
    marker_reads: AtomicU64,
    marker_writes: AtomicU64,
    key_checks: AtomicU64,
    busy_micros: AtomicU64,
}

/// Where events went since the last metrics document.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub sent_to_kafka: u64,
    pub diverted: u64,
    pub dead_lettered: u64,
    pub failed: u64,
}

impl Tally {
    /// The document for `service`, with the keys diverted now.
    pub fn metrics(&self, service: &str, diverted_keys: usize) -> Metrics {
        let mut metrics = METRICS.metrics(&[service]);
        metrics.count("SentToKafka", self.sent_to_kafka);
        metrics.count("Diverted", self.diverted);
        metrics.count("DeadLettered", self.dead_lettered);
        metrics.count("Failed", self.failed);
        metrics.count("DivertedKeys", diverted_keys as u64);
        metrics
    }
}

/// The producer's metrics: counts since the last document, and when that was.
struct MetricsState {
    service: String,
    interval: Duration,
    sent_to_kafka: AtomicU64,
    diverted: AtomicU64,
    dead_lettered: AtomicU64,
    failed: AtomicU64,
    last_emitted_ms: AtomicU64,
}

impl MetricsState {
    fn new(service: String, interval: Duration) -> Self {
        Self {
            service,
            interval,
            sent_to_kafka: AtomicU64::new(0),
            diverted: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last_emitted_ms: AtomicU64::new(wire::clock::now_ms()),
        }
    }

    fn observe(&self, result: &Result<Delivery, FallbackError>) {
        let counter = match result {
            Ok(Delivery {
                outcome: Outcome::Kafka { .. },
                ..
            }) => &self.sent_to_kafka,
            Ok(Delivery {
                outcome: Outcome::Standby { .. },
                ..
            }) => &self.diverted,
            Ok(Delivery {
                outcome: Outcome::DeadLettered { .. },
                ..
            }) => &self.dead_lettered,
            Err(_) => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether this caller won the right to emit now (one per interval, whoever sends first).
    fn due(&self) -> bool {
        let now = wire::clock::now_ms();
        let last = self.last_emitted_ms.load(Ordering::Relaxed);
        now.saturating_sub(last) >= self.interval.as_millis() as u64
            && self
                .last_emitted_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// The counts, each read with `read` (a load, or a swap that starts the next document).
    fn tally(&self, read: impl Fn(&AtomicU64) -> u64) -> Tally {
        Tally {
            sent_to_kafka: read(&self.sent_to_kafka),
            diverted: read(&self.diverted),
            dead_lettered: read(&self.dead_lettered),
            failed: read(&self.failed),
        }
    }
}

impl Counters {
    fn busy_since(&self, started: Instant) {
        self.busy_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    }
}

/// Where a keyed event must go before Kafka is even tried.
enum Route {
    Kafka,
    Standby(String),
}

/// Publishes to Kafka, falling back to the standby table or the dead-letter topic.
pub struct FallbackProducer {
    kafka: RenewingProducer,
    delivery_timeout: Duration,
    table: StandbyTable,
    settings: FallbackSettings,
    keys: Mutex<HashMap<String, KeyEntry>>,
    topics: Mutex<HashMap<String, TopicState>>,
    write_stamps: AtomicU64,
    counters: Counters,
    metrics: MetricsState,
}

impl FallbackProducer {
    /// `delivery_timeout` must match the producer's `message.timeout.ms`; it also bounds the
    /// wait for room in librdkafka's local queue.
    pub fn new(
        kafka: RenewingProducer,
        delivery_timeout: Duration,
        table: StandbyTable,
        settings: FallbackSettings,
    ) -> Self {
        let metrics = MetricsState::new(settings.producer_id.clone(), DEFAULT_METRICS_INTERVAL);
        Self {
            kafka,
            delivery_timeout,
            table,
            settings,
            metrics,
            keys: Mutex::new(HashMap::new()),
            topics: Mutex::new(HashMap::new()),
            write_stamps: AtomicU64::new(0),
            counters: Counters::default(),
        }
    }

    /// A fallback producer configured from the environment, as a deployed service builds it
    /// once at start-up: [`FallbackSettings::from_env`], [`KafkaSettings::from_env`] (client id
    /// the producer id; deliveries time out after [`DEFAULT_DELIVERY_TIMEOUT`] unless
    /// `KAFKA_DELIVERY_TIMEOUT_MS` says otherwise) and the table named by `STANDBY_TABLE_NAME`.
    pub fn from_env(
        env: &impl Env,
        dynamodb: aws_sdk_dynamodb::Client,
    ) -> Result<Self, SetupError> {
        let config = Self::config_from_env(env)?;
        let table = StandbyTable::new(dynamodb, config.table);
        Ok(Self::from_settings(&config.kafka, table, config.settings)?
            .with_metrics(config.metrics_service, config.metrics_interval))
    }

    /// Emits metrics under `service` at most once per `interval` (by default the producer id
    /// and [`DEFAULT_METRICS_INTERVAL`]).
    pub fn with_metrics(mut self, service: impl Into<String>, interval: Duration) -> Self {
        self.metrics = MetricsState::new(service.into(), interval);
        self
    }

    /// Where events went since the last metrics document.
    pub fn tally(&self) -> Tally {
        self.metrics.tally(|count| count.load(Ordering::Relaxed))
    }

    /// Emits the metrics counted since the last document now (at shutdown, so none are lost).
    pub fn emit_metrics(&self) {
        self.metrics
            .tally(|count| count.swap(0, Ordering::Relaxed))
            .metrics(&self.metrics.service, self.diverted_keys())
            .emit();
    }

    /// What [`Self::from_env`] reads.
    pub fn config_from_env(env: &impl Env) -> Result<FallbackConfig, ConfigError> {
        let settings = FallbackSettings::from_env(env)?;
        let kafka = KafkaSettings::from_env(env, &settings.producer_id, DEFAULT_DELIVERY_TIMEOUT)?;
        Ok(FallbackConfig {
            table: crate::standby_table::name_from_env(env)?,
            metrics_service: config::optional(env, METRICS_SERVICE)
                .unwrap_or_else(|| settings.producer_id.clone()),
            metrics_interval: config::seconds(
                env,
                METRICS_INTERVAL_SECONDS,
                DEFAULT_METRICS_INTERVAL,
            )?,
            settings,
            kafka,
        })
    }

    /// A fallback producer over an idempotent producer built from `kafka`.
    pub fn from_settings(
        kafka: &KafkaSettings,
        table: StandbyTable,
        settings: FallbackSettings,
    ) -> Result<Self, KafkaError> {
        Ok(Self::new(
            kafka.renewing_producer(&[])?,
            kafka.delivery_timeout,
            table,
            settings,
        ))
    }

    /// The Kafka producer in use.
    pub fn kafka(&self) -> &RenewingProducer {
        &self.kafka
    }

    /// Number of keys currently diverted to the standby table.
    pub fn diverted_keys(&self) -> usize {
        self.lock_keys()
            .values()
            .filter(|k| matches!(k.state, KeyState::Diverted { .. }))
            .count()
    }

    /// DynamoDB calls made so far to keep order.
    pub fn signal_stats(&self) -> SignalStats {
        SignalStats {
            marker_reads: self.counters.marker_reads.load(Ordering::Relaxed),
            marker_writes: self.counters.marker_writes.load(Ordering::Relaxed),
            key_checks: self.counters.key_checks.load(Ordering::Relaxed),
            busy: Duration::from_micros(self.counters.busy_micros.load(Ordering::Relaxed)),
        }
    }

    /// Publishes `event` under a new event id and reports where it went.
    pub async fn send(&self, event: Event) -> Result<Delivery, FallbackError> {
        self.send_with_id(event, EventId::new()).await
    }

    /// Publishes `event` under `event_id`. A caller retrying after an error passes the id of the
    /// first attempt, so the event exists at most once per id (in Kafka and the standby table).
    ///
    /// The id must come from [`EventId::new`] when the event was created: a key's events that
    /// wait in the standby table are published in event-id order, so an id minted earlier than
    /// the key's previous event (or not a UUIDv7) would be published before it.
    pub async fn send_with_id(
        &self,
        event: Event,
        event_id: EventId,
    ) -> Result<Delivery, FallbackError> {
        let result = self.deliver(event, event_id).await;
        self.metrics.observe(&result);
        if self.metrics.due() {
            self.emit_metrics();
        }
        result
    }

    async fn deliver(&self, event: Event, event_id: EventId) -> Result<Delivery, FallbackError> {
        // Refused on either path: the platform sets these, and the republisher refuses an item
        // carrying one, so a send must not succeed directly and fail later from the table.
        if let Some(name) = headers::first_reserved(event.headers.iter().map(|h| h.name.as_str())) {
            return Err(FallbackError::ReservedHeader {
                event_id,
                name: name.to_string(),
            });
        }
        let partition_key = event
            .key
            .as_deref()
            .map(|key| record::partition_key(&event.topic, Some(key), event_id));

        if let Some(pk) = &partition_key
            && let Route::Standby(reason) = self.route(&event.topic, pk, event_id).await
        {
            return self.to_standby(event_id, event, reason, None).await;
        }

        let id_header = [Header::new(headers::EVENT_ID, event_id.to_string())];
        let record = Message {
            topic: &event.topic,
            key: event.key.as_deref(),
            value: &event.value,
            headers: &event.headers,
            extra: &id_header,
        }
        .record();
        let error = match self.kafka.send(record, self.delivery_timeout).await {
            Ok((partition, offset)) => {
                return Ok(Delivery {
                    event_id,
                    outcome: Outcome::Kafka { partition, offset },
                });
            }
            Err(error) => error,
        };

        match classify(&error) {
            Disposition::Retriable => {
                // A timeout alone does not say why the brokers were unreachable; the client's
                // last error report (TLS, authentication, connection refused) does. librdkafka
                // reports a repeated error once and suppresses the repeats, so the report that
                // still holds may predate this send (a producer that never got through reports
                // when it is built): it counts if it is from this send or the minute before.
                let window = self.delivery_timeout + CLIENT_ERROR_WINDOW;
                let reason = match self.kafka.recent_client_error(window) {
                    Some((age, client)) => format!(
                        "{error} (last client error, {:.1} s ago: {client})",
                        age.as_secs_f64()
                    ),
                    None => error.to_string(),
                };
                self.to_standby(event_id, event, reason, Some(&error)).await
            }
            Disposition::NonRetriable => self.to_dead_letter(event_id, event, error).await,
        }
    }

    /// Whether a keyed event may be tried on Kafka, or must queue behind its key's events in the
    /// standby table. Any doubt (a failed read) sends it to the table: order first.
    async fn route(&self, topic: &str, partition_key: &str, event_id: EventId) -> Route {
        let interval = self.settings.signal_interval;
        let (diverted, stamp_seen) = {
            let keys = self.lock_keys();
            match keys.get(partition_key) {
                None => (false, 0),
                Some(entry) => match &entry.state {
                    KeyState::Diverted { next_check, .. } if Instant::now() < *next_check => {
                        return Route::Standby(
                            "earlier events of this key are still in the standby table".into(),
                        );
                    }
                    KeyState::Diverted { .. } => (true, entry.last_write),
                    KeyState::Clear { checked_at } if checked_at.elapsed() < interval => {
                        return Route::Kafka;
                    }
                    KeyState::Clear { .. } => (false, entry.last_write),
                },
            }
        };
        if !diverted && !self.topic_has_backlog(topic).await {
            return Route::Kafka;
        }

        let checked_at = Instant::now();
        self.counters.key_checks.fetch_add(1, Ordering::Relaxed);
        let result = self.table.holds_partition(partition_key).await;
        self.counters.busy_since(checked_at);
        let waiting = match result {
            Ok(waiting) => waiting,
            Err(error) => {
                tracing::warn!(%event_id, topic, %error, "could not check the standby table; the event queues behind its key");
                log_partition_key(event_id, partition_key);
                true
            }
        };
        let mut keys = self.lock_keys();
        if waiting {
            let entry = keys
                .entry(partition_key.to_string())
                .or_insert_with(|| KeyEntry {
                    state: self.diversion(),
                    last_write: 0,
                });
            match &mut entry.state {
                KeyState::Diverted {
                    next_check, delays, ..
                } => {
                    *next_check = Instant::now() + delays.next().unwrap_or(Duration::from_secs(5));
                }
                KeyState::Clear { .. } => entry.state = self.diversion(),
            }
            return Route::Standby(
                "earlier events of this key are still in the standby table".into(),
            );
        }
        // Trust "nothing waiting" only if no standby write of the key started meanwhile (its
        // item may not have been visible to the Query).
        if keys.get(partition_key).map_or(0, |e| e.last_write) != stamp_seen {
            return Route::Standby(
                "an event of this key was just written to the standby table".into(),
            );
        }
        if diverted {
            tracing::info!(%event_id, topic, "standby drained for this event's key; back to Kafka");
            log_partition_key(event_id, partition_key);
        }
        if keys.len() >= KEYS_REMEMBERED {
            keys.retain(|_, e| match e.state {
                KeyState::Diverted { .. } => true,
                KeyState::Clear { checked_at } => checked_at.elapsed() < interval,
            });
        }
        let entry = keys
            .entry(partition_key.to_string())
            .or_insert_with(|| KeyEntry {
                state: KeyState::Clear { checked_at },
                last_write: 0,
            });
        entry.state = KeyState::Clear { checked_at };
        Route::Kafka
    }

    /// Whether `topic`'s backlog marker is up, as read at most one signal interval ago.
    async fn topic_has_backlog(&self, topic: &str) -> bool {
        let interval = self.settings.signal_interval;
        if let Some((read_at, up)) = self.lock_topics().get(topic).and_then(|t| t.read)
            && read_at.elapsed() < interval
        {
            return up;
        }
        let read_at = Instant::now();
        self.counters.marker_reads.fetch_add(1, Ordering::Relaxed);
        let result = self.table.marker_raised_at(topic).await;
        self.counters.busy_since(read_at);
        let up = match result {
            Ok(raised) => raised.is_some(),
            Err(error) => {
                tracing::warn!(topic, %error, "could not read the topic's backlog marker; taking it as up");
                true
            }
        };
        let mut topics = self.lock_topics();
        let state = topics.entry(topic.to_string()).or_default();
        // A raise by this instance since the read began wins over what the read saw.
        if !state.read.is_some_and(|(at, up)| up && at > read_at) {
            state.read = Some((read_at, up));
        }
        state.read.is_some_and(|(_, up)| up)
    }

    fn diversion(&self) -> KeyState {
        let mut delays = retry::standby_recheck(self.settings.recheck_max_delay);
        let first = delays.next().unwrap_or_default();
        KeyState::Diverted {
            next_check: Instant::now() + first,
            delays: Box::new(delays),
        }
    }

    /// Marks the key diverted and stamps a new write (before the write, so no check racing it
    /// trusts a miss).
    fn divert(&self, partition_key: &str) {
        let stamp = self.write_stamps.fetch_add(1, Ordering::Relaxed) + 1;
        let mut keys = self.lock_keys();
        let entry = keys
            .entry(partition_key.to_string())
            .or_insert_with(|| KeyEntry {
                state: self.diversion(),
                last_write: 0,
            });
        if matches!(entry.state, KeyState::Clear { .. }) {
            entry.state = self.diversion();
        }
        entry.last_write = stamp;
    }

    /// Raises the topic's marker unless this instance did so within the signal interval.
    async fn raise_marker(
        &self,
        topic: &str,
        now_ms: u64,
    ) -> Result<(), crate::standby_table::TableError> {
        let interval = self.settings.signal_interval;
        let fresh = self
            .lock_topics()
            .get(topic)
            .and_then(|t| t.raised)
            .is_some_and(|at| at.elapsed() < interval);
        if fresh {
            return Ok(());
        }
        let raised = Instant::now();
        self.counters.marker_writes.fetch_add(1, Ordering::Relaxed);
        let result = self.table.raise_marker(topic, now_ms).await;
        self.counters.busy_since(raised);
        result?;
        let mut topics = self.lock_topics();
        let state = topics.entry(topic.to_string()).or_default();
        state.raised = Some(raised);
        state.read = Some((raised, true));
        Ok(())
    }

    async fn to_standby(
        &self,
        event_id: EventId,
        event: Event,
        reason: String,
        kafka_error: Option<&KafkaError>,
    ) -> Result<Delivery, FallbackError> {
        let now_ms = wire::clock::now_ms();
        let record = StandbyRecord {
            event_id,
            topic: event.topic,
            key: event.key,
            value: event.value,
            headers: event.headers,
            producer_id: self.settings.producer_id.clone(),
            created_at_ms: now_ms,
            expires_at: now_ms / 1000 + self.settings.retention.as_secs(),
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
        let standby_error = |source| FallbackError::Standby {
            event_id,
            source: Box::new(source),
        };
        if record.key.is_some() {
            self.divert(&record.partition_key());
        }
        // Every instance must be able to see that the topic has events waiting before this one
        // is in the table.
        self.raise_marker(&record.topic, now_ms)
            .await
            .map_err(standby_error)?;
        match self.table.put_new(&record).await {
            Ok(PutOutcome::Written) => {
                tracing::warn!(%event_id, topic = %record.topic, %reason, "event written to the standby table");
                log_partition_key(event_id, &record.partition_key());
            }
            Ok(PutOutcome::AlreadyPresent) => {
                tracing::warn!(%event_id, topic = %record.topic, "event already in the standby table; left as it was");
            }
            Err(source) => return Err(standby_error(source)),
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
        let mut context = dead_letter::Context::new(
            reason.as_str(),
            ErrorClass::NonRetriable,
            dead_letter::Source::ProducerFallback,
        );
        context.original_topic = Some(event.topic.clone());
        match self.publish_dead_letter(event_id, &event, &context).await {
            Ok(_) => {
                tracing::error!(%event_id, topic = %event.topic, %reason, dead_letter_topic = %self.settings.dead_letter_topic, "Kafka rejected the event; dead-lettered");
                Ok(Delivery {
                    event_id,
                    outcome: Outcome::DeadLettered { reason },
                })
            }
            Err(source) => Err(FallbackError::DeadLetter {
                event_id,
                dead_letter_topic: self.settings.dead_letter_topic.clone(),
                kafka_error: reason,
                source,
            }),
        }
    }

    /// Writes `event` to the dead-letter topic as is, with its id and `context` (the producer id
    /// filled in), and waits for the ack: `(partition, offset)`. Nothing else is tried when the
    /// topic refuses it; the caller still holds the event.
    pub async fn publish_dead_letter(
        &self,
        event_id: EventId,
        event: &Event,
        context: &dead_letter::Context,
    ) -> Result<(i32, i64), KafkaError> {
        let mut context = context.clone();
        context.producer_id = Some(self.settings.producer_id.clone());
        let mut extra = vec![Header::new(headers::EVENT_ID, event_id.to_string())];
        extra.extend(context.headers());
        let record = Message {
            topic: &self.settings.dead_letter_topic,
            key: event.key.as_deref(),
            value: &event.value,
            headers: &event.headers,
            extra: &extra,
        }
        .record();
        self.kafka.send(record, self.delivery_timeout).await
    }

    /// The settings this producer was built with (its id and dead-letter topic among them).
    pub fn settings(&self) -> &FallbackSettings {
        &self.settings
    }

    // A panic while holding these locks cannot leave a map inconsistent (single inserts and
    // updates), so a poisoned lock is still usable.
    fn lock_keys(&self) -> std::sync::MutexGuard<'_, HashMap<String, KeyEntry>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_topics(&self) -> std::sync::MutexGuard<'_, HashMap<String, TopicState>> {
        self.topics.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The partition key carries a hash of the Kafka key (often a customer or account id, and a
/// short one can be guessed from its hash), so log lines name the event and its topic; the
/// partition key is logged only at debug level, for an operator who asks for it.
fn log_partition_key(event_id: EventId, partition_key: &str) {
    tracing::debug!(%event_id, partition_key, "partition key of the event above");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivered(outcome: Outcome) -> Delivery {
        Delivery {
            event_id: EventId::new(),
            outcome,
        }
    }

    #[test]
    fn metrics_are_due_once_per_interval_and_start_the_next_document_at_zero() {
        let state = MetricsState::new("checkout".into(), Duration::from_secs(3600));
        state.observe(&Ok(delivered(Outcome::Kafka {
            partition: 0,
            offset: 1,
        })));
        state.observe(&Ok(delivered(Outcome::Standby {
            reason: "timed out".into(),
        })));
        assert!(!state.due(), "not before the interval has passed");
        let sent = state.tally(|count| count.swap(0, Ordering::Relaxed));
        assert_eq!(
            sent,
            Tally {
                sent_to_kafka: 1,
                diverted: 1,
                ..Tally::default()
            }
        );
        assert_eq!(
            state.tally(|count| count.load(Ordering::Relaxed)),
            Tally::default()
        );

        let every_time = MetricsState::new("checkout".into(), Duration::ZERO);
        assert!(every_time.due(), "due once the interval has passed");
    }
}
