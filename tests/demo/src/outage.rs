//! The outage-and-recovery story, as steps the demo and the chaos test share: produce through
//! the producer fallback while the brokers go down and come back, drain the standby table with the
//! republisher (driven by the stream as Lambda would), and check what reached Kafka.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use devstack::Stack;
use devstack::testkit::{self, Consumed};
use futures::StreamExt;
use sdk::config;
use sdk::fallback::{Event, FallbackProducer, FallbackSettings, Outcome};
use sdk::kafka::KafkaSettings;
use sdk::standby_table::StandbyTable;
use serde::Deserialize;
use shared::state_table::StateTable;
use wire::envelope::Envelope;
use wire::headers;
use wire::record::{EventId, Header};

/// Fresh topics and tables for one run of the story, the republisher configured for them as the
/// Lambda would be, and a producer writing through the fallback.
pub struct Rig {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub topic: String,
    pub dead_letter_topic: String,
    pub standby: StandbyTable,
    pub state: StateTable,
    pub republisher: republisher::settings::Settings,
    pub producer: Arc<FallbackProducer>,
    /// The environment a producer process of this rig is configured from (the stack's
    /// endpoints, the tables, the topics), as a service's deployment would set it.
    pub producer_env: Vec<(String, String)>,
}

impl Rig {
    /// Names start with `prefix`; `recheck_max_delay` is the fallback's (see `FallbackSettings`);
    /// `extra_env` adds to or overrides the republisher's and the producers' environment.
    pub async fn new(
        stack: &Stack,
        aws: &aws_config::SdkConfig,
        prefix: &str,
        recheck_max_delay: Duration,
        extra_env: &[(&str, &str)],
    ) -> Result<Self> {
        let bootstrap = stack.bootstrap_servers();
        let dynamodb = aws_sdk_dynamodb::Client::new(aws);
        let topic = testkit::unique_name(&format!("{prefix}-orders"));
        let dead_letter_topic = testkit::unique_name(&format!("{prefix}-dlt"));
        testkit::create_topic(&bootstrap, &topic, 12, 3, &[]).await?;
        testkit::create_topic(&bootstrap, &dead_letter_topic, 1, 3, &[]).await?;
        let standby = StandbyTable::new(
            dynamodb.clone(),
            testkit::unique_name(&format!("{prefix}-standby")),
        );
        standby.create().await?;
        let state = StateTable::new(
            dynamodb.clone(),
            testkit::unique_name(&format!("{prefix}-state")),
        );
        state.create().await?;

        // Every topic of the rig (and a test's own, such as the chaos test's refused topic)
        // starts with the prefix.
        let event_topics = format!("{prefix}-*");
        let env = devstack::testkit::kafka_env(
            &bootstrap,
            [
                ("KAFKA_DELIVERY_TIMEOUT_MS", "2000"),
                ("STANDBY_TABLE_NAME", standby.name()),
                ("STATE_TABLE_NAME", state.name()),
                ("STANDBY_DEAD_LETTER_TOPIC", dead_letter_topic.as_str()),
                ("EVENT_TOPICS", event_topics.as_str()),
                ("REPUBLISH_MARGIN_MS", "500"),
                // Markers may go as soon as a pass finds their topic empty (the demo's producers
                // refresh them every second; one clock).
                ("SWEEP_MARKER_GRACE_SECONDS", "2"),
            ]
            .into_iter()
            .chain(extra_env.iter().copied()),
        );
        let recheck_ms = recheck_max_delay.as_millis().to_string();
        let stack_env = stack.env_file();
        let mut producer_env: Vec<(String, String)> = stack_env
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        producer_env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        producer_env.push(("STANDBY_RECHECK_MAX_MS".into(), recheck_ms));
        let producer_id = format!("{prefix}-producer");
        let kafka = KafkaSettings::from_env(&env, &producer_id, Duration::from_secs(2))?;
        let producer = Arc::new(FallbackProducer::from_settings(
            &kafka,
            standby.clone(),
            FallbackSettings {
                producer_id,
                dead_letter_topic: dead_letter_topic.clone(),
                retention: Duration::from_secs(3600),
                recheck_max_delay,
                signal_interval: config::millis(
                    &env,
                    sdk::fallback::SIGNAL_INTERVAL_MS,
                    sdk::fallback::DEFAULT_SIGNAL_INTERVAL,
                )?,
            },
        )?);
        Ok(Self {
            producer_env,
            republisher: republisher::settings::Settings::from_env(&env)?,
            dynamodb,
            topic,
            dead_letter_topic,
            standby,
            state,
            producer,
        })
    }
}

/// How many events, over how many keys, and when the brokers go away.
#[derive(Debug, Clone)]
pub struct Plan {
    pub events: usize,
    pub keys: usize,
    /// Keys are produced by this many concurrent workers (a key's events one after another).
    pub workers: usize,
    /// The brokers stop once this fraction of the events has been sent…
    pub outage_at: f64,
    /// …and start again this long after.
    pub outage_for: Duration,
    /// A crash (one node SIGKILLed, the others frozen: see `Stack::stop_kafka`) rather than
    /// SIGTERM.
    pub crash: bool,
}

/// One event as the producer sent it.
#[derive(Debug, Clone)]
pub struct Sent {
    pub event_id: EventId,
    pub topic: String,
    pub key: usize,
    pub seq: usize,
    pub outcome: Outcome,
}

/// What producing did.
#[derive(Debug, Clone, Default)]
pub struct Produced {
    pub sent: Vec<Sent>,
    /// When every broker was back after the outage.
    pub recovered_at: Option<Instant>,
    /// Events the fallback could not take at all (returned to the caller as errors).
    pub errors: Vec<String>,
    /// Sends retried with their event id because the producer process died unanswered.
    pub retried_after_restart: usize,
    pub elapsed: Duration,
}

impl Produced {
    pub fn count(&self, matches: impl Fn(&Outcome) -> bool) -> usize {
        self.sent.iter().filter(|s| matches(&s.outcome)).count()
    }
}

/// The payload of demo event `seq` of `key`: framed JSON, as producers send it.
pub fn payload(key: usize, seq: usize) -> Vec<u8> {
    let body = format!(
        "{{\"key\":{key},\"seq\":{seq},\"amount\":{}}}",
        (key * 31 + seq * 7) % 1000
    );
    Envelope::confluent(1, body.as_bytes()).encode()
}

#[derive(Deserialize)]
struct Body {
    key: usize,
    seq: usize,
}

/// Produces about `plan.events` events (a whole number per key) to `topic`, taking the brokers
/// down and up on the way. `progress` is told how many events were sent so far.
pub async fn produce(
    stack: &mut Stack,
    producer: Arc<FallbackProducer>,
    topic: &str,
    plan: &Plan,
    progress: impl Fn(usize, &str) + Send + Sync,
) -> Result<Produced> {
    let started = Instant::now();
    let sent_count = Arc::new(AtomicUsize::new(0));
    let per_key = (plan.events / plan.keys).max(1);
    let total = per_key * plan.keys;
    let workers = plan.workers.max(1);

    let production = futures::stream::iter(0..workers)
        .map(|worker| {
            let producer = producer.clone();
            let sent_count = sent_count.clone();
            let topic = topic.to_string();
            let keys: Vec<usize> = (worker..plan.keys).step_by(workers).collect();
            tokio::spawn(async move {
                let mut sent = Vec::new();
                let mut errors = Vec::new();
                // Round-robin over this worker's keys: each key's events in order.
                for seq in 0..per_key {
                    for &key in &keys {
                        let event = Event {
                            topic: topic.clone(),
                            key: Some(format!("customer-{key}").into_bytes()),
                            value: payload(key, seq),
                            headers: vec![Header::new("source", "demo")],
                        };
                        match producer.send(event).await {
                            Ok(delivery) => sent.push(Sent {
                                event_id: delivery.event_id,
                                topic: topic.clone(),
                                key,
                                seq,
                                outcome: delivery.outcome,
                            }),
                            Err(e) => errors.push(e.to_string()),
                        }
                        sent_count.fetch_add(1, Ordering::Relaxed);
                    }
                }
                (sent, errors)
            })
        })
        .buffer_unordered(workers)
        .collect::<Vec<_>>();

    let outage_after = (total as f64 * plan.outage_at) as usize;
    let control = async {
        while sent_count.load(Ordering::Relaxed) < outage_after {
            progress(sent_count.load(Ordering::Relaxed), "producing");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let outage = tokio::task::block_in_place(|| stack.kafka_outage(plan.crash))?;
        let until = Instant::now() + plan.outage_for;
        while Instant::now() < until {
            progress(sent_count.load(Ordering::Relaxed), "brokers down");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        progress(sent_count.load(Ordering::Relaxed), "brokers restarting");
        tokio::task::block_in_place(|| outage.end())?;
        anyhow::Ok(Instant::now())
    };
    let (results, recovered_at) = tokio::join!(production, control);

    let mut produced = Produced {
        recovered_at: Some(recovered_at?),
        ..Produced::default()
    };
    for result in results {
        let (sent, errors) = result?;
        produced.sent.extend(sent);
        produced.errors.extend(errors);
    }
    produced.elapsed = started.elapsed();
    progress(produced.sent.len() + produced.errors.len(), "produced");
    Ok(produced)
}

/// What reached Kafka, checked against what was produced.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    pub produced: usize,
    pub delivered_unique: usize,
    pub duplicates: usize,
    /// Duplicates whose bytes differ from the first copy (must be zero).
    pub differing_duplicates: usize,
    pub dead_lettered: usize,
    pub lost: Vec<String>,
    pub order_violations: usize,
    /// Delivered event ids that no producer sent (must be zero).
    pub unknown_ids: usize,
    /// Each order violation, described (where each copy landed, how each event was sent).
    pub violations: Vec<String>,
}

impl Verdict {
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty()
            && self.order_violations == 0
            && self.differing_duplicates == 0
            && self.unknown_ids == 0
    }
}

/// Reads `topic` back with an independent consumer and compares it with `produced`.
pub async fn verify(bootstrap: &str, topic: &str, produced: &Produced) -> Result<Verdict> {
    let messages: Vec<Consumed> =
        testkit::read_topic_to_end(bootstrap, topic, Duration::from_secs(300)).await?;
    let mut first: HashMap<String, &Consumed> = HashMap::new();
    let sent: Vec<&Sent> = produced.sent.iter().filter(|s| s.topic == topic).collect();
    let mut verdict = Verdict {
        produced: sent.len(),
        ..Verdict::default()
    };
    // Per key, the sequence numbers in the order their first copy appears.
    let mut order: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut arrivals: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for message in &messages {
        let id = message
            .header(headers::EVENT_ID)
            .context("message without an event-id header")?;
        if let Some(original) = first.get(&id) {
            verdict.duplicates += 1;
            // Identical means the key, the value and every header — but the one that says the
            // copy came through the standby table.
            let headers = |m: &Consumed| {
                m.headers
                    .iter()
                    .filter(|(name, _)| name != headers::REPUBLISHED)
                    .cloned()
                    .collect::<Vec<_>>()
            };
            if (&original.key, &original.value, headers(original))
                != (&message.key, &message.value, headers(message))
            {
                verdict.differing_duplicates += 1;
            }
            continue;
        }
        first.insert(id, message);
        let value = message.value.as_deref().unwrap_or_default();
        let body: Body = serde_json::from_slice(Envelope::parse(value)?.payload)?;
        order.entry(body.key).or_default().push(body.seq);
        let how = if message.header(headers::REPUBLISHED).is_some() {
            "republished"
        } else {
            "direct"
        };
        arrivals.entry(body.key).or_default().push(format!(
            "#{}@{}:{} {how}",
            body.seq, message.partition, message.offset
        ));
    }
    verdict.delivered_unique = first.len();
    verdict.order_violations = order
        .values()
        .map(|seqs| seqs.windows(2).filter(|w| w[0] > w[1]).count())
        .sum();
    let outcome_of: HashMap<(usize, usize), &Sent> =
        sent.iter().map(|s| ((s.key, s.seq), *s)).collect();
    for (key, seqs) in &order {
        for (i, pair) in seqs.windows(2).enumerate() {
            if pair[0] > pair[1] {
                let describe = |seq: usize| {
                    outcome_of.get(&(*key, seq)).map_or("?".to_string(), |s| {
                        format!("{} {:?}", s.event_id, s.outcome)
                    })
                };
                verdict.violations.push(format!(
                    "customer-{key}: {} then {} (sent: #{} {}; #{} {})",
                    arrivals[key][i],
                    arrivals[key][i + 1],
                    pair[0],
                    describe(pair[0]),
                    pair[1],
                    describe(pair[1]),
                ));
            }
        }
    }
    let produced_ids: HashSet<String> = sent.iter().map(|s| s.event_id.to_string()).collect();
    verdict.unknown_ids = first
        .keys()
        .filter(|id| !produced_ids.contains(*id))
        .count();
    let delivered: HashSet<&String> = first.keys().collect();
    for sent in sent {
        match &sent.outcome {
            Outcome::DeadLettered { .. } => verdict.dead_lettered += 1,
            _ if !delivered.contains(&sent.event_id.to_string()) => {
                verdict.lost.push(format!(
                    "{} (customer-{} #{}, sent: {:?})",
                    sent.event_id, sent.key, sent.seq, sent.outcome
                ));
            }
            _ => {}
        }
    }
    Ok(verdict)
}

/// Waits until `condition` holds, failing after `timeout`.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut condition: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    while !condition().await? {
        if Instant::now() > deadline {
            bail!("{what}: not within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// What draining did.
#[derive(Debug, Clone)]
pub struct Drained {
    pub finished_at: Instant,
    pub invocations: usize,
    pub records_delivered: usize,
    pub partial_failures: usize,
    pub function_errors: usize,
    /// Records the mapping gave up on (retry or record-age limit); the sweep and the order gate
    /// deliver their events.
    pub given_up: usize,
    /// Time spent reading the stream, and in the handler.
    pub reading: Duration,
    pub invoking: Duration,
    pub elapsed: Duration,
}

/// How the stand-in event source mapping delivers (see `devstack::stream_driver`).
#[derive(Debug, Clone, Copy)]
pub struct Mapping {
    pub batch_size: usize,
    pub lanes: usize,
    pub max_record_age: Option<Duration>,
    pub max_retries: usize,
}

impl Mapping {
    /// Batches of `batch_size`, one lane, no limits.
    pub fn batches_of(batch_size: usize) -> Self {
        Self {
            batch_size,
            lanes: 1,
            max_record_age: None,
            max_retries: usize::MAX,
        }
    }
}

/// Delivers the standby table's stream to `invoke` (the republisher's handler, or a wrapper
/// around it) as `mapping` says — as the event source mapping does while producers keep
/// writing — until `producers_done()` and no event is left in the table. `progress` gets the
/// records delivered so far.
pub async fn drain<F, Fut, R, E>(
    aws: &aws_config::SdkConfig,
    standby: &sdk::standby_table::StandbyTable,
    mapping: Mapping,
    mut invoke: F,
    producers_done: impl Fn() -> bool,
    timeout: Duration,
    progress: impl Fn(usize),
) -> Result<Drained>
where
    F: FnMut(serde_json::Value) -> Fut,
    Fut: std::future::Future<Output = Result<R, E>>,
    R: serde::Serialize,
    E: std::fmt::Display,
{
    let started = Instant::now();
    let mut driver = devstack::stream_driver::StreamDriver::new(aws, standby.name())
        .await?
        .with_lanes(mapping.lanes);
    driver.batch_size = mapping.batch_size;
    driver.max_record_age = mapping.max_record_age;
    driver.max_retries = mapping.max_retries;
    let deadline = started + timeout;
    loop {
        let delivered = driver.step(&mut invoke).await?;
        progress(driver.stats.records_delivered);
        if delivered == 0 {
            if producers_done() && !events_waiting(standby).await? {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if Instant::now() > deadline {
            bail!(
                "the standby table was not drained within {timeout:?} ({:?})",
                driver.stats
            );
        }
    }
    Ok(Drained {
        finished_at: Instant::now(),
        invocations: driver.stats.invocations,
        records_delivered: driver.stats.records_delivered,
        partial_failures: driver.stats.partial_failures,
        function_errors: driver.stats.function_errors,
        given_up: driver.stats.discarded + driver.stats.expired,
        reading: driver.stats.reading,
        invoking: driver.stats.invoking,
        elapsed: started.elapsed(),
    })
}

/// Whether any event (not a topic's backlog marker) is in the standby table.
pub async fn events_waiting(standby: &sdk::standby_table::StandbyTable) -> Result<bool> {
    let mut start = None;
    loop {
        let (items, next) = standby.scan_page(start, 1000).await?;
        let event = items.iter().any(|item| {
            !matches!(item.get("pk"), Some(aws_sdk_dynamodb::types::AttributeValue::S(pk))
                if wire::record::marker::marker_topic(pk).is_some())
        });
        if event {
            return Ok(true);
        }
        start = next;
        if start.is_none() {
            return Ok(false);
        }
    }
}

/// One scheduled sweep, as EventBridge and Lambda run it (60 s to run).
pub async fn sweep<S, T>(app: &republisher::App<S, T>) -> Result<republisher::sweep::SweepReport>
where
    S: republisher::engine::Sink,
    T: republisher::engine::Table,
{
    let event =
        devstack::testkit::invocation(devstack::testkit::scheduled_event("republisher-sweep"));
    match republisher::handle(app, event).await? {
        republisher::Response::Sweep(report) => Ok(report),
        other => bail!("a scheduled event answered as a stream batch: {other:?}"),
    }
}

/// Runs sweeps until the table is empty, markers included (they go once they are older than the
/// grace), failing after `timeout`. Returns how many held keys the sweeps released.
pub async fn sweep_until_empty<S, T>(
    app: &republisher::App<S, T>,
    timeout: Duration,
) -> Result<usize>
where
    S: republisher::engine::Sink,
    T: republisher::engine::Table,
{
    let deadline = Instant::now() + timeout;
    let mut released = 0;
    loop {
        released += sweep(app).await?.held_released;
        if table_is_empty(&app.standby).await? {
            return Ok(released);
        }
        if Instant::now() > deadline {
            bail!("the standby table still holds items after sweeping for {timeout:?}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Whether the standby table holds no item at all (a one-item consistent scan).
pub async fn table_is_empty(standby: &sdk::standby_table::StandbyTable) -> Result<bool> {
    let (items, next) = standby.scan_page(None, 1).await?;
    Ok(items.is_empty() && next.is_none())
}

/// Calls of one kind and the time they took, summed over concurrent calls.
#[derive(Debug, Default)]
pub struct Meter {
    calls: AtomicUsize,
    micros: std::sync::atomic::AtomicU64,
}

impl Meter {
    async fn time<R>(&self, call: impl std::future::Future<Output = R>) -> R {
        let started = Instant::now();
        let result = call.await;
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        result
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }

    pub fn total(&self) -> Duration {
        Duration::from_micros(self.micros.load(Ordering::Relaxed))
    }

    /// "N× at M ms each".
    pub fn describe(&self) -> String {
        let each = self.total().as_secs_f64() * 1000.0 / self.calls().max(1) as f64;
        format!("{}× at {each:.1} ms each", self.calls())
    }
}

/// The republisher's ports with every call timed, to show where a drain's time goes.
pub struct Timed<X> {
    pub inner: X,
    pub first: Meter,
    pub second: Meter,
}

impl<X> Timed<X> {
    pub fn new(inner: X) -> Self {
        Self {
            inner,
            first: Meter::default(),
            second: Meter::default(),
        }
    }
}

/// `first`: publishes; `second`: dead letters.
impl<S: republisher::engine::Sink + Send> republisher::engine::Sink for Timed<S> {
    async fn republish(
        &self,
        record: &wire::record::StandbyRecord,
    ) -> Result<(), rdkafka::error::KafkaError> {
        self.first.time(self.inner.republish(record)).await
    }

    async fn dead_letter(
        &self,
        letter: republisher::dead_letter::DeadLetter,
    ) -> Result<(), rdkafka::error::KafkaError> {
        self.second.time(self.inner.dead_letter(letter)).await
    }

    async fn topic_is_missing(&self, topic: &str) -> bool {
        self.inner.topic_is_missing(topic).await
    }

    fn refuses(&self, topic: &str) -> Option<String> {
        self.inner.refuses(topic)
    }
}

/// `first`: the order gate's backlog reads; `second`: deletes.
impl<T: republisher::engine::Table + Send> republisher::engine::Table for Timed<T> {
    async fn delete(
        &self,
        keys: &[republisher::entry::ItemKey],
    ) -> Result<(), republisher::engine::DeleteFailure> {
        self.second.time(self.inner.delete(keys)).await
    }

    async fn backlog(
        &self,
        pk: &str,
        after: Option<&str>,
        up_to: &str,
        limit: usize,
    ) -> Result<(Vec<republisher::entry::Entry>, bool), String> {
        self.first
            .time(self.inner.backlog(pk, after, up_to, limit))
            .await
    }

    async fn backlog_ids(
        &self,
        pk: &str,
        after: Option<&str>,
        up_to: &str,
        limit: usize,
    ) -> Result<(Vec<String>, bool), String> {
        self.first
            .time(self.inner.backlog_ids(pk, after, up_to, limit))
            .await
    }
}
