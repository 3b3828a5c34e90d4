//! The consumer SDK: an application gives it a handler; it reads the topics, validates each
//! event against the schema version its prefix names, drops duplicates, retries failures and
//! commits an offset only once its record is handled or safely forwarded.
//!
//! - **Order and parallelism.** One task per partition handles that partition's records one at
//!   a time, in offset order; partitions run in parallel. A partition whose task falls
//!   `partition_buffer` records behind is paused (its records wait in Kafka) until its queue
//!   has room again, so one slow partition never stops the others.
//! - **Validation.** The prefix's Glue schema version is fetched once and compiled
//!   ([`crate::schema::SchemaCache`]). An event that is not framed, names an unknown version or
//!   does not match it goes to the dead-letter topic at once (`dlt-error-class: invalid`, with
//!   `dlt-error-path`). A registry that cannot be reached is not the event's fault: the
//!   partition waits and asks again.
//! - **Duplicates** are dropped by `event-id` ([`dedupe`]).
//! - **Failures** follow the [`retry::RetryPolicy`]: attempts in place, then retry topics
//!   (`{topic}-retry-{n}`, each record waiting there until its due time, which blocks only its
//!   own partition), then the dead-letter topic. Every forwarded record keeps its key, value
//!   and headers and gains the `dlt-*` context: original topic, partition and offset, the error,
//!   the attempt count, the first failure's time (and, in a retry topic, the due time), so
//!   `standbyctl dlt` reads and redrives a consumer's dead-letter topic as it does the
//!   platform's.
//! - **Commits.** An offset is stored only after its record was handled, dropped as a
//!   duplicate, or acknowledged by the topic it was forwarded to (stored in steps of up to 100
//!   records of a busy partition); librdkafka commits stored offsets every second and on
//!   shutdown. A process killed mid-handler therefore gets the record again after it restarts
//!   (at-least-once; the handler should be idempotent or rely on the dedupe store).
//! - **Shutdown.** When the `shutdown` future passed to [`Consumer::run`] completes, no new
//!   record is started, records being handled finish, stored offsets are committed, and `run`
//!   returns. Records not yet started are read again by the next owner of their partition.
//! - **Metrics.** Every `metrics_interval`, one EMF line: `Handled`, `Duplicates`,
//!   `RetriedInPlace`, `ForwardedToRetry`, `DeadLettered`, `Invalid` (counts since the last
//!   line) and `Lag` (records between the assigned partitions' committed offsets and their high
//!   watermarks), with the dimension `ConsumerGroup`.

pub mod dedupe;
mod ownership;
pub mod retry;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use rdkafka::{Message as _, Offset, TopicPartitionList};
use thiserror::Error;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;
use wire::dead_letter::{self, ErrorClass, Source};
use wire::envelope::{Envelope, SchemaId};
use wire::headers;
use wire::record::{EventId, Header};

use crate::kafka::{KafkaContext, KafkaSettings, Message, headers_of};
use crate::metrics::{Family, Metrics};
use crate::schema::{Invalid, Payload, SchemaCache};
use dedupe::DedupeStore;
use ownership::{Ownership, OwnershipContext, PartitionKey};
use retry::{HandlerError, NextStep, RetryPolicy};

/// What a consumer emits every `metrics_interval`, under `metrics_namespace` (this family's
/// namespace unless configured otherwise).
pub static METRICS: Family = Family {
    component: "consumer",
    namespace: "StandbyEvents/Consumer",
    dimensions: &["ConsumerGroup"],
    metrics: &[
        "Handled",
        "Duplicates",
        "RetriedInPlace",
        "ForwardedToRetry",
        "DeadLettered",
        "Invalid",
        "Lag",
    ],
};

/// How the consumer behaves; see the module doc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSettings {
    pub group_id: String,
    /// The topics to handle; their retry topics are read as well.
    pub topics: Vec<String>,
    pub dead_letter_topic: String,
    pub retry: RetryPolicy,
    /// Records read ahead per partition before the partition is paused.
    pub partition_buffer: usize,
    pub metrics_interval: Duration,
    pub metrics_namespace: String,
    /// Where a group without a committed offset starts: `earliest` (default) or `latest`.
    pub auto_offset_reset: String,
    /// How long the group waits for a member that stopped answering (a killed process) before
    /// giving its partitions to another; librdkafka's default is 45 s.
    pub session_timeout: Duration,
}

impl ConsumerSettings {
    pub fn new(
        group_id: impl Into<String>,
        topics: Vec<String>,
        dead_letter_topic: impl Into<String>,
    ) -> Self {
        Self {
            group_id: group_id.into(),
            topics,
            dead_letter_topic: dead_letter_topic.into(),
            retry: RetryPolicy::default(),
            partition_buffer: 2000,
            metrics_interval: Duration::from_secs(60),
            metrics_namespace: METRICS.namespace.into(),
            auto_offset_reset: "earliest".into(),
            session_timeout: Duration::from_secs(45),
        }
    }
}

/// A validated event as the handler gets it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumedEvent {
    /// The topic it was published to (also when it is read again from a retry topic).
    pub topic: String,
    /// Where this copy was read (a retry topic's partition and offset when retried).
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    /// `None` for a message written by something other than this platform.
    pub event_id: Option<EventId>,
    pub schema_version: Uuid,
    pub payload: Payload,
    /// The event's own headers (the platform's `dlt-*` context taken off).
    pub headers: Vec<Header>,
    /// 1 on the first attempt; counts attempts in place and in retry topics.
    pub attempt: u32,
}

/// What handles events. Implemented for async closures taking an `Arc<ConsumedEvent>` (shared,
/// so a retry costs no copy of the payload).
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, event: Arc<ConsumedEvent>) -> BoxFuture<'static, Result<(), HandlerError>>;
}

impl<F, Fut> Handler for F
where
    F: Fn(Arc<ConsumedEvent>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    fn handle(&self, event: Arc<ConsumedEvent>) -> BoxFuture<'static, Result<(), HandlerError>> {
        Box::pin(self(event))
    }
}

/// Counts since the consumer was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsumerStats {
    pub handled: u64,
    pub duplicates: u64,
    pub retried_in_place: u64,
    pub forwarded_to_retry: u64,
    pub dead_lettered: u64,
    pub invalid: u64,
}

#[derive(Default)]
struct Counters {
    handled: AtomicU64,
    duplicates: AtomicU64,
    retried_in_place: AtomicU64,
    forwarded_to_retry: AtomicU64,
    dead_lettered: AtomicU64,
    invalid: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ConsumerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ConsumerStats {
            handled: get(&self.handled),
            duplicates: get(&self.duplicates),
            retried_in_place: get(&self.retried_in_place),
            forwarded_to_retry: get(&self.forwarded_to_retry),
            dead_lettered: get(&self.dead_lettered),
            invalid: get(&self.invalid),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

#[derive(Debug, Error)]
pub enum ConsumerError {
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("topics missing from the cluster (create them first): {0:?}")]
    MissingTopics(Vec<String>),
}

/// The consumer an application builds once and runs.
pub struct Consumer {
    kafka: KafkaSettings,
    settings: ConsumerSettings,
    schemas: Arc<SchemaCache>,
    dedupe: Arc<dyn DedupeStore>,
    handler: Arc<dyn Handler>,
    counters: Arc<Counters>,
}

/// A record read from Kafka, owned so it can wait in a partition's queue.
#[derive(Debug, Clone)]
struct Record {
    topic: String,
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<Header>,
}

/// What one partition task needs, shared by all of them.
struct Shared {
    consumer: Arc<GroupConsumer>,
    ownership: Arc<Ownership>,
    producer: FutureProducer<KafkaContext>,
    delivery_timeout: Duration,
    settings: ConsumerSettings,
    schemas: Arc<SchemaCache>,
    dedupe: Arc<dyn DedupeStore>,
    handler: Arc<dyn Handler>,
    counters: Arc<Counters>,
    /// Signalled by a partition task each time it takes a record from its queue, so records
    /// held back for a full queue move on as soon as there is room.
    room: tokio::sync::Notify,
}

/// The poll loop's handle on one partition's task.
struct Worker {
    generation: u64,
    sender: mpsc::Sender<Record>,
    task: tokio::task::JoinHandle<()>,
}

/// Which partition a task handles, for which generation of ownership, and the task it replaces
/// (which must finish its record in hand first).
struct PartitionTask {
    key: PartitionKey,
    generation: u64,
    previous: Option<tokio::task::JoinHandle<()>>,
}

/// What a partition task holds its partition by: the consumer still running, and the group
/// still giving it the partition. Every wait ends early when either goes.
struct Lease {
    stopping: watch::Receiver<bool>,
    revokes: watch::Receiver<u64>,
    ownership: Arc<Ownership>,
    key: PartitionKey,
    generation: u64,
}

impl Lease {
    /// The group still gives this task the partition (stopping or not).
    fn held_by_group(&self) -> bool {
        self.ownership.generation(&self.key) == self.generation
    }

    fn held(&self) -> bool {
        !*self.stopping.borrow() && self.ownership.generation(&self.key) == self.generation
    }

    /// Sleeps `pause`, or returns `Stopped` as soon as the lease is lost.
    async fn pause(&mut self, pause: Duration) -> Done {
        let sleep = tokio::time::sleep(pause);
        tokio::pin!(sleep);
        loop {
            if !self.held() {
                return Done::Stopped;
            }
            tokio::select! {
                () = &mut sleep => return Done::Finished,
                _ = self.stopping.changed() => {}
                _ = self.revokes.changed() => {}
            }
        }
    }
}

/// Whether a record was dealt with (its offset may be stored), or the task must let it go
/// (the consumer is stopping, or the partition was revoked): then nothing is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Done {
    Finished,
    Stopped,
}

type GroupConsumer = StreamConsumer<OwnershipContext>;

/// How long the poll loop waits for room in a partition's queue before pausing the partition.
const BACK_PRESSURE: Duration = Duration::from_millis(100);

impl Consumer {
    pub fn new(
        kafka: KafkaSettings,
        settings: ConsumerSettings,
        schemas: Arc<SchemaCache>,
        dedupe: Arc<dyn DedupeStore>,
        handler: impl Handler,
    ) -> Self {
        Self {
            kafka,
            settings,
            schemas,
            dedupe,
            handler: Arc::new(handler),
            counters: Arc::new(Counters::default()),
        }
    }

    pub fn stats(&self) -> ConsumerStats {
        self.counters.snapshot()
    }

    /// Consumes until `shutdown` completes; see the module doc.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<(), ConsumerError> {
        let ownership = Arc::new(Ownership::default());
        let context = OwnershipContext {
            inner: self.kafka.context(),
            ownership: ownership.clone(),
        };
        let consumer: Arc<GroupConsumer> = Arc::new(
            self.kafka
                .client_config()
                .set("group.id", &self.settings.group_id)
                .set("enable.auto.commit", "true")
                .set("auto.commit.interval.ms", "1000")
                .set("enable.auto.offset.store", "false")
                .set("auto.offset.reset", &self.settings.auto_offset_reset)
                .set(
                    "session.timeout.ms",
                    self.settings.session_timeout.as_millis().to_string(),
                )
                .create_with_context(context)?,
        );
        let mut subscribed = self.settings.topics.clone();
        for topic in &self.settings.topics {
            subscribed.extend(self.settings.retry.retry_topics(topic));
        }
        let mut needed = subscribed.clone();
        needed.push(self.settings.dead_letter_topic.clone());
        let missing = missing_topics(consumer.clone(), needed).await?;
        if !missing.is_empty() {
            return Err(ConsumerError::MissingTopics(missing));
        }
        consumer.subscribe(&subscribed.iter().map(String::as_str).collect::<Vec<_>>())?;

        let shared = Arc::new(Shared {
            consumer: consumer.clone(),
            ownership,
            producer: self.kafka.producer()?,
            delivery_timeout: self.kafka.delivery_timeout,
            settings: self.settings.clone(),
            schemas: self.schemas.clone(),
            dedupe: self.dedupe.clone(),
            handler: self.handler.clone(),
            counters: self.counters.clone(),
            room: tokio::sync::Notify::new(),
        });
        let (stop, stopping) = watch::channel(false);
        let mut workers: HashMap<PartitionKey, Worker> = HashMap::new();
        let mut overflow: HashMap<PartitionKey, VecDeque<Record>> = HashMap::new();
        let mut report =
            tokio::time::interval(self.settings.metrics_interval.max(Duration::from_secs(1)));
        let mut reported = ConsumerStats::default();
        let mut reporting: Option<tokio::task::JoinHandle<()>> = None;
        tokio::pin!(shutdown);

        loop {
            tokio::select! {
                () = &mut shutdown => break,
                message = consumer.recv() => match message {
                    Ok(message) => {
                        let record = Record {
                            topic: message.topic().to_string(),
                            partition: message.partition(),
                            offset: message.offset(),
                            key: message.key().map(<[u8]>::to_vec),
                            value: message.payload().map(<[u8]>::to_vec),
                            headers: headers_of(&message),
                        };
                        let key = (record.topic.clone(), record.partition);
                        let generation = shared.ownership.generation(&key);
                        // The partition was revoked and has come back: its old task stops
                        // after its record in hand (the new one waits for it), and what was
                        // held for it is dropped (fetched again from the committed offset).
                        let stale = workers.get(&key).is_some_and(|w| w.generation != generation);
                        let previous = if stale {
                            if overflow.remove(&key).is_some() {
                                set_paused(&consumer, &key, false);
                            }
                            workers.remove(&key).map(|worker| worker.task)
                        } else {
                            None
                        };
                        if let Some(queue) = overflow.get_mut(&key) {
                            queue.push_back(record);
                            continue;
                        }
                        let worker = workers.entry(key.clone()).or_insert_with(|| {
                            let (sender, receiver) = mpsc::channel(self.settings.partition_buffer.max(1));
                            let task = tokio::spawn(partition_task(
                                shared.clone(),
                                receiver,
                                stopping.clone(),
                                PartitionTask { key: key.clone(), generation, previous },
                            ));
                            Worker { generation, sender, task }
                        });
                        let sender = &worker.sender;
                        // A task that is briefly behind gets the record as soon as it has
                        // room (ordinary back-pressure). One that stays full (a record waiting
                        // for its due time, a slow handler) has its partition paused instead,
                        // so the others go on; pausing makes librdkafka fetch that partition
                        // again later, so it is the exception, not the rule.
                        let record = match sender.try_send(record) {
                            Ok(()) => continue,
                            Err(mpsc::error::TrySendError::Full(record)
                                | mpsc::error::TrySendError::Closed(record)) => record,
                        };
                        match tokio::time::timeout(BACK_PRESSURE, sender.reserve()).await {
                            Ok(Ok(room)) => room.send(record),
                            _ => {
                                overflow.entry(key.clone()).or_default().push_back(record);
                                set_paused(&consumer, &key, true);
                            }
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "consumer error; polling on");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                () = shared.room.notified(), if !overflow.is_empty() => {
                    overflow.retain(|key, queue| {
                        let Some(Worker { sender, generation, .. }) = workers.get(key) else {
                            return true;
                        };
                        if *generation != shared.ownership.generation(key) {
                            // Revoked: its next owner reads these records again.
                            set_paused(&consumer, key, false);
                            return false;
                        }
                        while let Some(record) = queue.pop_front() {
                            if let Err(error) = sender.try_send(record) {
                                let record = match error {
                                    mpsc::error::TrySendError::Full(record)
                                    | mpsc::error::TrySendError::Closed(record) => record,
                                };
                                queue.push_front(record);
                                return true;
                            }
                        }
                        set_paused(&consumer, key, false);
                        false
                    });
                }
                _ = report.tick() => {
                    // In a task of its own: reading the watermarks for the lag may wait on
                    // the brokers, and the poll loop must not. One at a time.
                    if reporting.as_ref().is_none_or(|task| task.is_finished()) {
                        let now = self.counters.snapshot();
                        reporting = Some(tokio::spawn(emit_metrics(
                            self.settings.clone(),
                            reported,
                            now,
                            consumer.clone(),
                        )));
                        reported = now;
                    }
                }
            }
        }

        // Finish what is in hand, then commit what was stored.
        let _ = stop.send(true);
        for (_, worker) in workers {
            drop(worker.sender);
            let _ = worker.task.await;
        }
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(())
            | Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => {
                tracing::warn!(%error, "final commit failed; uncommitted records will be read again")
            }
        }
        Ok(())
    }
}

async fn missing_topics(
    consumer: Arc<GroupConsumer>,
    needed: Vec<String>,
) -> Result<Vec<String>, ConsumerError> {
    let metadata =
        tokio::task::spawn_blocking(move || consumer.fetch_metadata(None, Duration::from_secs(10)))
            .await
            .map_err(|_| KafkaError::Canceled)??;
    let present: Vec<&str> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| t.name())
        .collect();
    Ok(needed
        .into_iter()
        .filter(|t| !present.contains(&t.as_str()))
        .collect())
}

fn set_paused(consumer: &GroupConsumer, (topic, partition): &PartitionKey, paused: bool) {
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, *partition);
    let result = if paused {
        consumer.pause(&list)
    } else {
        consumer.resume(&list)
    };
    if let Err(error) = result {
        tracing::debug!(%error, topic, partition, paused, "pause/resume failed (partition revoked?)");
    }
}

/// Handles one partition's records in order until its queue closes, the consumer stops, or the
/// group takes the partition away.
async fn partition_task(
    shared: Arc<Shared>,
    mut records: mpsc::Receiver<Record>,
    stopping: watch::Receiver<bool>,
    task: PartitionTask,
) {
    if let Some(previous) = task.previous {
        let _ = previous.await;
    }
    let mut lease = Lease {
        stopping,
        revokes: shared.ownership.revokes(),
        ownership: shared.ownership.clone(),
        key: task.key.clone(),
        generation: task.generation,
    };
    // The last record dealt with whose offset is not stored yet. Offsets of one partition only
    // grow, so storing the latest covers the ones before; it is stored when the queue runs dry,
    // every STORE_EVERY records, and when the task ends. A crash can therefore redeliver up to
    // that many records already handled (at-least-once; duplicates carry the same event id).
    let mut unstored: Option<i64> = None;
    let mut since_stored = 0;
    while let Some(record) = records.recv().await {
        shared.room.notify_one();
        if !lease.held() {
            break;
        }
        if process(&shared, &record, &mut lease).await == Done::Stopped {
            break;
        }
        unstored = Some(record.offset);
        since_stored += 1;
        if records.is_empty() || since_stored >= STORE_EVERY {
            store(&shared, &task.key, unstored.take(), lease.held_by_group());
            since_stored = 0;
        }
    }
    store(&shared, &task.key, unstored, lease.held_by_group());
}

/// Records handled between two offset stores of a busy partition.
const STORE_EVERY: usize = 100;

fn store(shared: &Shared, (topic, partition): &PartitionKey, offset: Option<i64>, owned: bool) {
    let Some(offset) = offset else {
        return;
    };
    if !owned {
        // Revoked: the new owner starts from the last committed offset and handles the records
        // after it again (at-least-once).
        return;
    }
    if let Err(error) = shared.consumer.store_offset(topic, *partition, offset) {
        tracing::debug!(%error, %topic, partition, "offset not stored");
    }
}

/// Why a record could not become a [`ConsumedEvent`].
enum DecodeFailure {
    Invalid(Invalid),
    /// The registry could not be reached: not the event's fault, ask again.
    SchemaUnavailable(String),
}

async fn decode(
    shared: &Shared,
    record: &Record,
    original_topic: &str,
) -> Result<ConsumedEvent, DecodeFailure> {
    let invalid = |message: String| {
        DecodeFailure::Invalid(Invalid {
            path: String::new(),
            message,
        })
    };
    let value = record
        .value
        .as_deref()
        .ok_or_else(|| invalid("the record has no value".into()))?;
    let envelope = Envelope::parse(value).map_err(|e| invalid(e.to_string()))?;
    let schema_version = match envelope.schema {
        SchemaId::Glue(id) => id,
        SchemaId::Confluent(id) => {
            return Err(invalid(format!(
                "Confluent-framed (schema id {id}); this consumer resolves Glue schema versions"
            )));
        }
    };
    let schema = match shared.schemas.by_id(schema_version).await {
        Ok(schema) => schema,
        Err(error) if error.is_events_fault() => return Err(invalid(error.to_string())),
        // Unreachable, or refusing us (an IAM policy missing `glue:GetSchemaVersion`): not
        // the event's fault, so nothing is dead-lettered for it.
        Err(error) => return Err(DecodeFailure::SchemaUnavailable(error.to_string())),
    };
    let payload = envelope
        .decoded_payload()
        .map_err(|e| invalid(e.to_string()))?;
    let payload = schema.decode(&payload).map_err(DecodeFailure::Invalid)?;
    let event_id = record
        .headers
        .iter()
        .rev()
        .find(|h| h.name == headers::EVENT_ID)
        .and_then(|h| std::str::from_utf8(h.value.as_deref()?).ok()?.parse().ok());
    Ok(ConsumedEvent {
        topic: original_topic.to_string(),
        partition: record.partition,
        offset: record.offset,
        key: record.key.clone(),
        event_id,
        schema_version,
        payload,
        headers: own_headers(&record.headers),
        attempt: 1,
    })
}

fn own_headers(headers: &[Header]) -> Vec<Header> {
    headers
        .iter()
        .filter(|h| !dead_letter::is_context_header(&h.name))
        .cloned()
        .collect()
}

/// Handles `record` to the end: handled, dropped as a duplicate, or forwarded.
async fn process(shared: &Shared, record: &Record, lease: &mut Lease) -> Done {
    let (origin, level) = retry::origin_of(&record.topic, &shared.settings.topics)
        .unwrap_or((record.topic.as_str(), 0));
    let earlier = if level > 0 {
        dead_letter::Context::read(&record.headers)
    } else {
        None
    };
    let original_topic = earlier
        .as_ref()
        .and_then(|c| c.original_topic.clone())
        .unwrap_or_else(|| origin.to_string());
    if let Some(due) = earlier.as_ref().and_then(|c| c.due_at_ms) {
        // The header is data: a due time further away than the longest configured delay is
        // not believed.
        let longest = shared.settings.retry.delays.iter().max().copied();
        let wait = Duration::from_millis(due.saturating_sub(wire::clock::now_ms()))
            .min(longest.unwrap_or_default());
        if lease.pause(wait).await == Done::Stopped {
            return Done::Stopped;
        }
    }
    let context = |reason: &str, class: ErrorClass, attempts: u32, first_failure: u64| {
        let mut context = dead_letter::Context::new(reason, class, Source::Consumer);
        context.original_topic = Some(original_topic.clone());
        context.original_partition = Some(
            earlier
                .as_ref()
                .and_then(|c| c.original_partition)
                .unwrap_or(record.partition),
        );
        context.original_offset = Some(
            earlier
                .as_ref()
                .and_then(|c| c.original_offset)
                .unwrap_or(record.offset),
        );
        context.attempt = Some(attempts);
        context.first_failure_at_ms = Some(first_failure);
        context
    };

    let mut registry_waits =
        crate::retry::persistent(Duration::from_millis(200), Duration::from_secs(30));
    let event = loop {
        match decode(shared, record, &original_topic).await {
            Ok(event) => break event,
            Err(DecodeFailure::Invalid(invalid)) => {
                bump(&shared.counters.invalid);
                let mut context = context(
                    &invalid.message,
                    ErrorClass::Invalid,
                    0,
                    wire::clock::now_ms(),
                );
                context.error_path = Some(invalid.path);
                return forward(
                    shared,
                    record,
                    &shared.settings.dead_letter_topic,
                    &context,
                    lease,
                )
                .await;
            }
            Err(DecodeFailure::SchemaUnavailable(reason)) => {
                let pause = registry_waits.next().unwrap_or(Duration::from_secs(30));
                tracing::error!(topic = %record.topic, partition = record.partition, %reason, "schema registry unavailable; the partition waits");
                if lease.pause(pause).await == Done::Stopped {
                    return Done::Stopped;
                }
            }
        }
    };
    if let Some(id) = event.event_id
        && shared.dedupe.seen(id).await
    {
        bump(&shared.counters.duplicates);
        return Done::Finished;
    }

    let attempts_before = earlier.as_ref().and_then(|c| c.attempt).unwrap_or(0);
    let mut first_failure = earlier.as_ref().and_then(|c| c.first_failure_at_ms);
    let event_id = event.event_id;
    let mut event = Arc::new(event);
    let mut here = 0;
    loop {
        here += 1;
        // The handler has usually dropped its reference by now: no copy.
        Arc::make_mut(&mut event).attempt = attempts_before + here;
        if !lease.held() {
            return Done::Stopped;
        }
        let error = match shared.handler.handle(event.clone()).await {
            Ok(()) => {
                if let Some(id) = event_id {
                    shared.dedupe.record(id).await;
                }
                bump(&shared.counters.handled);
                return Done::Finished;
            }
            Err(error) => error,
        };
        let first = *first_failure.get_or_insert_with(wire::clock::now_ms);
        let attempts = attempts_before + here;
        match shared.settings.retry.after_failure(&error, here, level) {
            NextStep::TryAgainAfter(pause) => {
                bump(&shared.counters.retried_in_place);
                if lease.pause(pause).await == Done::Stopped {
                    return Done::Stopped;
                }
            }
            step => {
                let mut context = context(
                    &error.to_string(),
                    ErrorClass::HandlerFailed,
                    attempts,
                    first,
                );
                let (target, counter) = match step {
                    NextStep::Forward { level, delay } => {
                        context.due_at_ms = Some(wire::clock::now_ms() + delay.as_millis() as u64);
                        (
                            retry::retry_topic(&original_topic, level),
                            &shared.counters.forwarded_to_retry,
                        )
                    }
                    _ => (
                        shared.settings.dead_letter_topic.clone(),
                        &shared.counters.dead_lettered,
                    ),
                };
                let done = forward(shared, record, &target, &context, lease).await;
                if done == Done::Finished {
                    bump(counter);
                }
                return done;
            }
        }
    }
}

/// Writes `record` (key, value and own headers unchanged) to `topic` with `context`, retrying
/// until the topic acknowledges it: the offset may only move on once the record is safe there.
async fn forward(
    shared: &Shared,
    record: &Record,
    topic: &str,
    context: &dead_letter::Context,
    lease: &mut Lease,
) -> Done {
    let own = own_headers(&record.headers);
    let extra = context.headers();
    let mut pauses = crate::retry::persistent(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        // Revoked meanwhile: the new owner handles the record, and a copy forwarded here would
        // be a second one.
        if !lease.held() {
            return Done::Stopped;
        }
        let message = Message {
            topic,
            key: record.key.as_deref(),
            value: record.value.as_deref().unwrap_or_default(),
            headers: &own,
            extra: &extra,
        };
        match shared
            .producer
            .send(message.record(), shared.delivery_timeout)
            .await
        {
            Ok(_) => {
                tracing::info!(from = %record.topic, partition = record.partition, offset = record.offset, to = topic, class = context.class.as_str(), "record forwarded");
                return Done::Finished;
            }
            Err((error, _)) => {
                tracing::warn!(%error, to = topic, "forwarding failed; the partition waits and tries again");
                let pause = pauses.next().unwrap_or(Duration::from_secs(10));
                if lease.pause(pause).await == Done::Stopped {
                    return Done::Stopped;
                }
            }
        }
    }
}

async fn emit_metrics(
    settings: ConsumerSettings,
    before: ConsumerStats,
    now: ConsumerStats,
    consumer: Arc<GroupConsumer>,
) {
    let lag = tokio::task::spawn_blocking(move || total_lag(&consumer))
        .await
        .ok()
        .flatten();
    interval_metrics(&settings, before, now, lag).emit();
}

/// The document for one metrics interval: counts between `before` and `now`, and the lag.
pub fn interval_metrics(
    settings: &ConsumerSettings,
    before: ConsumerStats,
    now: ConsumerStats,
    lag: Option<u64>,
) -> Metrics {
    let mut metrics = METRICS.metrics_in(&settings.metrics_namespace, &[&settings.group_id]);
    metrics.count("Handled", now.handled - before.handled);
    metrics.count("Duplicates", now.duplicates - before.duplicates);
    metrics.count(
        "RetriedInPlace",
        now.retried_in_place - before.retried_in_place,
    );
    metrics.count(
        "ForwardedToRetry",
        now.forwarded_to_retry - before.forwarded_to_retry,
    );
    metrics.count("DeadLettered", now.dead_lettered - before.dead_lettered);
    metrics.count("Invalid", now.invalid - before.invalid);
    if let Some(lag) = lag {
        metrics.count("Lag", lag);
    }
    metrics
}

/// Records between each assigned partition's committed offset and its high watermark, summed:
/// what is read but not yet handled counts as lag too.
fn total_lag(consumer: &GroupConsumer) -> Option<u64> {
    let committed = consumer.committed(Duration::from_secs(5)).ok()?;
    let mut lag = 0u64;
    for element in committed.elements() {
        let Ok((low, high)) =
            consumer.fetch_watermarks(element.topic(), element.partition(), Duration::from_secs(5))
        else {
            continue;
        };
        let from = match element.offset() {
            Offset::Offset(offset) => offset,
            // Nothing committed yet: everything still in the partition is behind.
            _ => low,
        };
        lag += (high - from).max(0) as u64;
    }
    Some(lag)
}

#[cfg(test)]
mod metrics_tests {
    use super::*;

    #[test]
    fn an_interval_with_lag_emits_every_metric_of_the_family() {
        let settings = ConsumerSettings::new("billing", vec!["orders".into()], "dlt");
        let now = ConsumerStats {
            handled: 5,
            ..Default::default()
        };
        let metrics = interval_metrics(&settings, ConsumerStats::default(), now, Some(7));
        assert_eq!(metrics.names().collect::<Vec<_>>(), METRICS.metrics);
        let document = metrics.to_emf(0).unwrap();
        assert_eq!(
            document["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "StandbyEvents/Consumer"
        );
        assert_eq!(document["ConsumerGroup"], "billing");
        assert_eq!(document["Handled"], 5.0);
    }
}
