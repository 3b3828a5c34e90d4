//! The consumer SDK on the real local stack: schemas in Glue (moto), records in Kafka, a
//! consumer process SIGKILLed mid-handler.
//!
//! Needs the stack: `make stack-up`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use devstack::Stack;
use devstack::testkit::{self, Consumed};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sdk::consumer::dedupe::MemoryDedupe;
use sdk::consumer::retry::{HandlerError, RetryPolicy};
use sdk::consumer::{ConsumedEvent, Consumer, ConsumerSettings, ConsumerStats};
use sdk::kafka::{KafkaSettings, Message};
use sdk::schema::{GlueRegistry, Payload, SchemaCache};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;
use wire::dead_letter::{ErrorClass, Source};
use wire::envelope::{self, Compression, SchemaId};
use wire::headers;
use wire::record::{EventId, Header};

const ORDER_JSON: &str = r#"{"type":"object","required":["order_id","total"],
  "properties":{"order_id":{"type":"string"},"total":{"type":"number","minimum":0}}}"#;

/// What a consumer under test needs; serializable so a child process can run one too.
#[derive(Clone, Serialize, Deserialize)]
struct Setup {
    bootstrap: String,
    aws_endpoint: String,
    topic: String,
    dead_letter_topic: String,
    group: String,
    version: Uuid,
    /// One producer per setup: building one per record costs a connection each time.
    #[serde(skip)]
    producer: Arc<std::sync::OnceLock<rdkafka::producer::FutureProducer<sdk::kafka::KafkaContext>>>,
}

impl Setup {
    /// Topics (main, `retries` retry topics, dead-letter) and a schema in a fresh registry.
    async fn new(retries: usize) -> Result<Self> {
        let stack = Stack::attach()?;
        let bootstrap = stack.bootstrap_servers();
        let topic = testkit::unique_name("consumed");
        let dead_letter_topic = testkit::unique_name("consumer-dlt");
        testkit::create_topic(&bootstrap, &topic, 3, 3, &[]).await?;
        testkit::create_topic(&bootstrap, &dead_letter_topic, 1, 3, &[]).await?;
        for level in 1..=retries {
            let name = sdk::consumer::retry::retry_topic(&topic, level);
            testkit::create_topic(&bootstrap, &name, 3, 3, &[]).await?;
        }
        let aws = testkit::aws_config(&stack.aws_endpoint()).await;
        let version =
            testkit::glue_schema(&aws, testkit::TEST_REGISTRY, &topic, "JSON", ORDER_JSON)
                .await?
                .parse()?;
        Ok(Self {
            bootstrap,
            aws_endpoint: stack.aws_endpoint(),
            topic,
            dead_letter_topic,
            group: testkit::unique_name("group"),
            version,
            producer: Arc::default(),
        })
    }

    async fn consumer(
        &self,
        policy: RetryPolicy,
        handler: impl sdk::consumer::Handler,
    ) -> Result<Consumer> {
        self.consumer_with(policy, 2000, handler).await
    }

    async fn consumer_with(
        &self,
        policy: RetryPolicy,
        partition_buffer: usize,
        handler: impl sdk::consumer::Handler,
    ) -> Result<Consumer> {
        let aws = testkit::aws_config(&self.aws_endpoint).await;
        let schemas = Arc::new(SchemaCache::new(Arc::new(GlueRegistry::new(
            aws_sdk_glue::Client::new(&aws),
        ))));
        let kafka = KafkaSettings::from_env(
            &testkit::kafka_env(&self.bootstrap, []),
            "consumer-test",
            Duration::from_secs(5),
        )?;
        let settings = ConsumerSettings {
            retry: policy,
            partition_buffer,
            session_timeout: Duration::from_secs(6),
            metrics_interval: Duration::from_secs(1),
            ..ConsumerSettings::new(
                &self.group,
                vec![self.topic.clone()],
                &self.dead_letter_topic,
            )
        };
        Ok(Consumer::new(
            kafka,
            settings,
            schemas,
            Arc::new(MemoryDedupe::default()),
            handler,
        ))
    }

    /// A framed order, as the producer SDK writes it.
    fn order(&self, id: &str, total: f64) -> Vec<u8> {
        let payload = json!({"order_id": id, "total": total}).to_string();
        envelope::frame(
            SchemaId::Glue(self.version),
            Compression::None,
            payload.as_bytes(),
        )
    }

    async fn produce(&self, key: &str, value: &[u8], event_id: Option<EventId>) -> Result<()> {
        let producer = match self.producer.get() {
            Some(producer) => producer,
            None => {
                let kafka = KafkaSettings::from_env(
                    &testkit::kafka_env(&self.bootstrap, []),
                    "consumer-test-producer",
                    Duration::from_secs(5),
                )?;
                let _ = self.producer.set(kafka.producer()?);
                self.producer.get().context("the producer was just set")?
            }
        };
        let extra: Vec<Header> = event_id
            .map(|id| Header::new(headers::EVENT_ID, id.to_string()))
            .into_iter()
            .collect();
        let message = Message {
            topic: &self.topic,
            key: Some(key.as_bytes()),
            value,
            headers: &[Header::new("trace", "t")],
            extra: &extra,
        };
        producer
            .send(message.record(), Duration::from_secs(5))
            .await
            .map_err(|(e, _)| e)?;
        Ok(())
    }

    /// The group's committed offset of `partition` of the main topic.
    fn committed(&self, partition: i32) -> Result<Option<i64>> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", &self.group)
            .create()?;
        let mut list = TopicPartitionList::new();
        list.add_partition(&self.topic, partition);
        let committed = consumer.committed_offsets(list, Duration::from_secs(10))?;
        Ok(
            match committed
                .find_partition(&self.topic, partition)
                .map(|p| p.offset())
            {
                Some(Offset::Offset(offset)) => Some(offset),
                _ => None,
            },
        )
    }
}

/// No retry topics: attempts in place, then the dead-letter topic.
fn blocking_only() -> RetryPolicy {
    RetryPolicy {
        delays: vec![],
        ..RetryPolicy::default()
    }
}

/// Each call of the handler: which event, which attempt, when.
#[derive(Debug, Clone)]
struct Call {
    event_id: Option<EventId>,
    order_id: String,
    attempt: u32,
    at: Instant,
    partition: i32,
    offset: i64,
}

type Calls = Arc<Mutex<Vec<Call>>>;

fn call_of(event: &ConsumedEvent) -> Call {
    let Payload::Json(body) = &event.payload else {
        panic!("a JSON schema gives JSON payloads")
    };
    Call {
        event_id: event.event_id,
        order_id: body["order_id"].as_str().unwrap_or_default().to_string(),
        attempt: event.attempt,
        at: Instant::now(),
        partition: event.partition,
        offset: event.offset,
    }
}

/// Runs `consumer` until `done` says so (or a minute passes), then shuts it down gracefully.
async fn run_until(
    consumer: Consumer,
    mut done: impl FnMut(&ConsumerStats) -> bool,
) -> Result<ConsumerStats> {
    let consumer = Arc::new(consumer);
    let (stop, running) = testkit::run_consumer(consumer.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(&consumer.stats()) {
        if Instant::now() > deadline {
            let _ = stop.send(());
            running.await??;
            bail!("not done after 60 s: {:?}", consumer.stats());
        }
        if running.is_finished() {
            running.await??;
            bail!("the consumer stopped by itself");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(());
    running.await??;
    Ok(consumer.stats())
}

async fn read(bootstrap: &str, topic: &str) -> Result<Vec<Consumed>> {
    testkit::read_topic_to_end(bootstrap, topic, Duration::from_secs(30)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn valid_events_are_handled_once_and_invalid_ones_dead_lettered() -> Result<()> {
    let setup = Setup::new(0).await?;
    let duplicate = EventId::new();
    setup
        .produce("k1", &setup.order("o-1", 1.0), Some(duplicate))
        .await?;
    setup
        .produce("k2", &setup.order("o-2", 2.0), Some(EventId::new()))
        .await?;
    // The same event again (a republished duplicate): same id.
    setup
        .produce("k1", &setup.order("o-1", 1.0), Some(duplicate))
        .await?;
    // Not framed; framed with a version the registry does not have; valid framing, payload
    // against the schema.
    setup.produce("k3", br#"{"order_id":"x"}"#, None).await?;
    let unknown = envelope::frame(
        SchemaId::Glue(Uuid::from_u128(42)),
        Compression::None,
        br#"{"order_id":"y","total":1}"#,
    );
    setup.produce("k3", &unknown, None).await?;
    let against = envelope::frame(
        SchemaId::Glue(setup.version),
        Compression::None,
        br#"{"order_id":"z","total":-1}"#,
    );
    setup.produce("k3", &against, Some(EventId::new())).await?;
    // Confluent-framed (no Confluent registry to resolve it): invalid too.
    let confluent = envelope::Envelope::confluent(7, br#"{"order_id":"c","total":1}"#).encode();
    setup.produce("k3", &confluent, None).await?;
    // zlib-compressed by its producer: inflated and handled.
    let compressed = envelope::frame(
        SchemaId::Glue(setup.version),
        Compression::Zlib,
        json!({"order_id": "o-3", "total": 3})
            .to_string()
            .as_bytes(),
    );
    setup
        .produce("k4", &compressed, Some(EventId::new()))
        .await?;

    let calls: Calls = Arc::default();
    let recorded = calls.clone();
    let consumer = setup
        .consumer(blocking_only(), move |event: Arc<ConsumedEvent>| {
            let recorded = recorded.clone();
            async move {
                recorded.lock().unwrap().push(call_of(&event));
                Ok(())
            }
        })
        .await?;
    let stats = run_until(consumer, |s| s.handled + s.duplicates + s.invalid >= 8).await?;
    assert_eq!((stats.handled, stats.duplicates, stats.invalid), (3, 1, 4));
    let mut handled: Vec<String> = calls
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.order_id.clone())
        .collect();
    handled.sort();
    assert_eq!(handled, ["o-1", "o-2", "o-3"]);

    let dead = read(&setup.bootstrap, &setup.dead_letter_topic).await?;
    assert_eq!(dead.len(), 4);
    for message in &dead {
        let context = message
            .dead_letter_context()
            .context("a dead-letter context")?;
        assert_eq!(context.class, ErrorClass::Invalid);
        assert_eq!(context.source, Some(Source::Consumer));
        assert_eq!(
            context.original_topic.as_deref(),
            Some(setup.topic.as_str())
        );
        assert!(context.original_offset.is_some() && context.original_partition.is_some());
        assert_eq!(
            message.key.as_deref(),
            Some(&b"k3"[..]),
            "the record as it was"
        );
    }
    let paths: Vec<Option<String>> = dead
        .iter()
        .map(|m| m.dead_letter_context().and_then(|c| c.error_path))
        .collect();
    assert!(paths.contains(&Some("/total".into())), "{paths:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handler_failing_twice_goes_through_the_retry_topics_with_their_delays_and_is_handled_once()
-> Result<()> {
    let setup = Setup::new(2).await?;
    let flaky = EventId::new();
    let refused = EventId::new();
    setup
        .produce("k1", &setup.order("flaky", 1.0), Some(flaky))
        .await?;
    setup
        .produce("k2", &setup.order("refused", 1.0), Some(refused))
        .await?;
    let delays = [Duration::from_secs(1), Duration::from_secs(2)];
    let policy = RetryPolicy {
        blocking_attempts: 1,
        delays: delays.to_vec(),
        ..RetryPolicy::default()
    };
    let calls: Calls = Arc::default();
    let recorded = calls.clone();
    let consumer = setup
        .consumer(policy, move |event: Arc<ConsumedEvent>| {
            let recorded = recorded.clone();
            async move {
                let call = call_of(&event);
                recorded.lock().unwrap().push(call.clone());
                match (call.order_id.as_str(), call.attempt) {
                    ("flaky", 1 | 2) => Err(HandlerError::Retriable("busy".into())),
                    ("refused", _) => Err(HandlerError::NonRetriable("no such account".into())),
                    _ => Ok(()),
                }
            }
        })
        .await?;
    let stats = run_until(consumer, |s| s.handled >= 1 && s.dead_lettered >= 1).await?;
    assert_eq!(stats.handled, 1);
    assert_eq!(stats.forwarded_to_retry, 2);
    assert_eq!(stats.dead_lettered, 1);

    let calls = calls.lock().unwrap().clone();
    let flaky_calls: Vec<&Call> = calls.iter().filter(|c| c.event_id == Some(flaky)).collect();
    let attempts: Vec<u32> = flaky_calls.iter().map(|c| c.attempt).collect();
    assert_eq!(attempts, [1, 2, 3], "handled once, on its third attempt");
    // Due times travel in a header in whole milliseconds since the epoch.
    let resolution = Duration::from_millis(2);
    for (pair, delay) in flaky_calls.windows(2).zip(delays) {
        let waited = pair[1].at - pair[0].at;
        assert!(
            waited + resolution >= delay,
            "retried after {waited:?}, configured {delay:?}"
        );
    }
    let refused_calls = calls.iter().filter(|c| c.event_id == Some(refused)).count();
    assert_eq!(refused_calls, 1, "a non-retriable failure is not retried");

    let dead = read(&setup.bootstrap, &setup.dead_letter_topic).await?;
    let [dead] = dead.as_slice() else {
        bail!("expected one dead-lettered record, found {}", dead.len())
    };
    let context = dead.dead_letter_context().context("context")?;
    assert_eq!(context.class, ErrorClass::HandlerFailed);
    assert_eq!(context.attempt, Some(1));
    assert!(context.reason.contains("no such account"));
    assert_eq!(dead.header(headers::EVENT_ID), Some(refused.to_string()));

    // The retry topics hold the flaky record with the context of its failures.
    let first_retry = read(
        &setup.bootstrap,
        &sdk::consumer::retry::retry_topic(&setup.topic, 1),
    )
    .await?;
    let context = first_retry[0]
        .dead_letter_context()
        .context("retry context")?;
    assert_eq!(context.attempt, Some(1));
    assert_eq!(
        context.original_topic.as_deref(),
        Some(setup.topic.as_str())
    );
    assert_eq!(context.original_offset, Some(flaky_calls[0].offset));
    assert!(context.first_failure_at_ms.is_some() && context.due_at_ms.is_some());

    // Offsets were committed past both records.
    let committed: i64 = (0..3)
        .map(|p| setup.committed(p).map(|o| o.unwrap_or(0)))
        .sum::<Result<i64>>()?;
    assert_eq!(committed, 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn per_key_order_holds_through_blocking_retries() -> Result<()> {
    let setup = Setup::new(0).await?;
    for n in 0..5 {
        setup
            .produce(
                "one-key",
                &setup.order(&format!("e{n}"), 1.0),
                Some(EventId::new()),
            )
            .await?;
    }
    let policy = RetryPolicy {
        blocking_attempts: 4,
        blocking_backoff: Duration::from_millis(50),
        delays: vec![],
        ..RetryPolicy::default()
    };
    let calls: Calls = Arc::default();
    let recorded = calls.clone();
    let consumer = setup
        .consumer(policy, move |event: Arc<ConsumedEvent>| {
            let recorded = recorded.clone();
            async move {
                let call = call_of(&event);
                recorded.lock().unwrap().push(call.clone());
                if call.order_id == "e0" && call.attempt < 3 {
                    return Err(HandlerError::Retriable("busy".into()));
                }
                Ok(())
            }
        })
        .await?;
    let stats = run_until(consumer, |s| s.handled >= 5).await?;
    assert_eq!(stats.retried_in_place, 2);
    let succeeded: Vec<String> = {
        let calls = calls.lock().unwrap();
        let mut order = Vec::new();
        for call in calls.iter() {
            if !(call.order_id == "e0" && call.attempt < 3) {
                order.push(call.order_id.clone());
            }
        }
        order
    };
    assert_eq!(succeeded, ["e0", "e1", "e2", "e3", "e4"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_finishes_the_record_in_hand_and_commits_it() -> Result<()> {
    let setup = Setup::new(0).await?;
    setup
        .produce("k", &setup.order("slow", 1.0), Some(EventId::new()))
        .await?;
    let started = Arc::new(tokio::sync::Notify::new());
    let signal = started.clone();
    let consumer = setup
        .consumer(blocking_only(), move |_event: Arc<ConsumedEvent>| {
            let signal = signal.clone();
            async move {
                signal.notify_one();
                tokio::time::sleep(Duration::from_secs(2)).await;
                Ok(())
            }
        })
        .await?;
    let consumer = Arc::new(consumer);
    let (stop, running) = testkit::run_consumer(consumer.clone());
    tokio::time::timeout(Duration::from_secs(60), started.notified()).await?;
    let _ = stop.send(());
    running.await??;
    assert_eq!(
        consumer.stats().handled,
        1,
        "the record in hand was finished"
    );
    let committed: i64 = (0..3)
        .map(|p| setup.committed(p).map(|o| o.unwrap_or(0)))
        .sum::<Result<i64>>()?;
    assert_eq!(committed, 1, "and its offset committed on the way out");
    Ok(())
}

/// The consumer of [`a_consumer_killed_mid_handler_gets_the_record_again_after_restart`], run
/// as a child process of that test (this test binary, filtered to this test). Its handler
/// writes a line when it starts an event, then never finishes.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "the child process of a_consumer_killed_mid_handler_gets_the_record_again_after_restart"]
async fn child_consumer_that_hangs_in_its_handler() -> Result<()> {
    let setup: Setup = serde_json::from_str(&std::env::var("CONSUMER_TEST_SETUP")?)?;
    let marker = std::env::var("CONSUMER_TEST_MARKER")?;
    let consumer = setup
        .consumer(blocking_only(), move |event: Arc<ConsumedEvent>| {
            let marker = marker.clone();
            async move {
                let line = format!("started {} at {}\n", event.partition, event.offset);
                let _ = std::fs::write(&marker, line);
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(())
            }
        })
        .await?;
    consumer.run(futures::future::pending()).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_killed_mid_handler_gets_the_record_again_after_restart() -> Result<()> {
    let setup = Setup::new(0).await?;
    let id = EventId::new();
    setup
        .produce("k", &setup.order("killed", 1.0), Some(id))
        .await?;
    let marker = tempfile::NamedTempFile::new()?;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "child_consumer_that_hangs_in_its_handler",
            "--ignored",
            "--nocapture",
        ])
        .env("CONSUMER_TEST_SETUP", serde_json::to_string(&setup)?)
        .env("CONSUMER_TEST_MARKER", marker.path())
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(marker.path())?.is_empty() {
        if Instant::now() > deadline || child.try_wait()?.is_some() {
            let _ = child.kill();
            bail!("the child consumer never started the event");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // SIGKILL mid-handler: nothing is committed for the record.
    child.kill()?;
    child.wait()?;
    let committed: i64 = (0..3)
        .map(|p| setup.committed(p).map(|o| o.unwrap_or(0)))
        .sum::<Result<i64>>()?;
    assert_eq!(committed, 0, "nothing committed by the killed consumer");

    // Restarted (same group): the record comes again, is handled, and is committed after.
    let calls: Calls = Arc::default();
    let recorded = calls.clone();
    let consumer = setup
        .consumer(blocking_only(), move |event: Arc<ConsumedEvent>| {
            let recorded = recorded.clone();
            async move {
                recorded.lock().unwrap().push(call_of(&event));
                Ok(())
            }
        })
        .await?;
    run_until(consumer, |s| s.handled >= 1).await?;
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].event_id, Some(id));
    let committed = setup.committed(calls[0].partition)?;
    assert_eq!(committed, Some(calls[0].offset + 1));
    Ok(())
}

/// One partition's handler is slow; its records pile up past a tiny queue, so the consumer
/// pauses that partition and holds what it already read. The other partitions' events are
/// handled meanwhile, and the slow key's events still arrive once each, in order.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_partition_is_paused_without_holding_up_the_others_or_losing_order() -> Result<()> {
    let setup = Setup::new(0).await?;
    for n in 0..8 {
        setup
            .produce(
                "slow",
                &setup.order(&format!("slow-{n}"), 1.0),
                Some(EventId::new()),
            )
            .await?;
    }
    // Keys that land on other partitions than "slow" (3 partitions, murmur2 partitioning).
    let mut fast_keys = Vec::new();
    for k in 0..60 {
        let key = format!("fast-{k}");
        setup
            .produce(&key, &setup.order(&key, 1.0), Some(EventId::new()))
            .await?;
        fast_keys.push(key);
    }
    let calls: Calls = Arc::default();
    let recorded = calls.clone();
    let consumer = setup
        .consumer_with(blocking_only(), 2, move |event: Arc<ConsumedEvent>| {
            let recorded = recorded.clone();
            async move {
                let call = call_of(&event);
                if call.order_id.starts_with("slow") {
                    tokio::time::sleep(Duration::from_millis(400)).await;
                }
                recorded.lock().unwrap().push(call);
                Ok(())
            }
        })
        .await?;
    run_until(consumer, |s| s.handled >= 68).await?;
    let calls = calls.lock().unwrap().clone();

    let slow_partition = calls
        .iter()
        .find(|c| c.order_id.starts_with("slow"))
        .map(|c| c.partition)
        .context("slow events")?;
    let slow: Vec<&str> = calls
        .iter()
        .filter(|c| c.order_id.starts_with("slow"))
        .map(|c| c.order_id.as_str())
        .collect();
    assert_eq!(
        slow,
        (0..8).map(|n| format!("slow-{n}")).collect::<Vec<_>>(),
        "once each, in order"
    );
    let last_slow = calls
        .iter()
        .filter(|c| c.order_id.starts_with("slow"))
        .map(|c| c.at)
        .max()
        .context("slow")?;
    let fast_elsewhere: Vec<&Call> = calls
        .iter()
        .filter(|c| !c.order_id.starts_with("slow") && c.partition != slow_partition)
        .collect();
    assert!(!fast_elsewhere.is_empty());
    assert!(
        fast_elsewhere.iter().all(|c| c.at < last_slow),
        "the other partitions did not wait for the slow one"
    );
    Ok(())
}
