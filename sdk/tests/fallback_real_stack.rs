//! The producer fallback against the real local stack (Kafka brokers + moto), started by
//! `make test` / `make stack-up`. Tests that stop the brokers hold the cluster exclusively.

use std::collections::HashMap;
use std::time::Duration;
use wire::envelope::SchemaId;

use anyhow::Result;
use aws_sdk_dynamodb::types::AttributeValue;
use devstack::Stack;
use devstack::testkit::{self, Consumed};
use rdkafka::producer::Producer;
use sdk::FallbackError;
use sdk::fallback::{Event, FallbackProducer, FallbackSettings, Outcome, Tally};
use sdk::kafka::{KafkaSettings, Message};
use sdk::standby_table::StandbyTable;
use tokio::sync::RwLock;
use wire::dead_letter;
use wire::headers;
use wire::record::{EventId, Header, ItemKey, StandbyRecord, marker};

/// Outage tests take it for writing; the others for reading.
static CLUSTER: RwLock<()> = RwLock::const_new(());

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(3);
/// The signal interval of the instances in the cross-instance tests.
const SIGNAL_INTERVAL: Duration = Duration::from_millis(300);

struct Fixture {
    stack: Stack,
    producer: FallbackProducer,
    table: StandbyTable,
    topic: String,
    dead_letter_topic: String,
}

async fn fixture(topic_configs: &[(&str, &str)]) -> Result<Fixture> {
    let stack = Stack::attach()?;
    let bootstrap = stack.bootstrap_servers();
    let topic = testkit::unique_name("orders");
    let dead_letter_topic = testkit::unique_name("orders-dlt");
    testkit::create_topic(&bootstrap, &topic, 3, 3, topic_configs).await?;
    testkit::create_topic(&bootstrap, &dead_letter_topic, 1, 3, &[]).await?;

    let aws = testkit::aws_config(&stack.aws_endpoint()).await;
    let table = StandbyTable::new(
        aws_sdk_dynamodb::Client::new(&aws),
        testkit::unique_name("standby"),
    );
    table.create().await?;

    let env = testkit::kafka_env(&bootstrap, []);
    let kafka = KafkaSettings::from_env(&env, "fallback-test", DELIVERY_TIMEOUT)?;
    let settings = FallbackSettings {
        producer_id: "test-producer".into(),
        dead_letter_topic: dead_letter_topic.clone(),
        retention: Duration::from_secs(3600),
        recheck_max_delay: sdk::fallback::DEFAULT_RECHECK_MAX_DELAY,
        signal_interval: sdk::fallback::DEFAULT_SIGNAL_INTERVAL,
    };
    // Metrics documents an hour apart: the tests read the counts before any is written.
    let producer = FallbackProducer::from_settings(&kafka, table.clone(), settings)?
        .with_metrics("fallback-tests", Duration::from_secs(3600));
    Ok(Fixture {
        stack,
        producer,
        table,
        topic,
        dead_letter_topic,
    })
}

const SCHEMA_VERSION: uuid::Uuid = uuid::Uuid::from_u128(0x0123_4567_89ab_4cde_8f01_2345_6789_abcd);

fn event(topic: &str, key: &str, n: usize) -> Event {
    Event {
        topic: topic.into(),
        key: Some(key.as_bytes().to_vec()),
        value: wire::envelope::Envelope::glue(SCHEMA_VERSION, format!("{{\"n\":{n}}}").as_bytes())
            .encode(),
        headers: vec![
            Header::new("trace", format!("t{n}")),
            Header::new("trace", "dup"),
        ],
    }
}

/// Every item in the table, decoded, in (partition key, event id) order.
async fn table_records(table: &StandbyTable) -> Result<Vec<StandbyRecord>> {
    let mut records = Vec::new();
    for item in testkit::standby_items(table).await? {
        let is_marker = matches!(item.get("pk"), Some(AttributeValue::S(pk)) if marker::marker_topic(pk).is_some());
        if !is_marker {
            records.push(StandbyRecord::from_item(item)?);
        }
    }
    records.sort_by_key(|r| (r.partition_key(), r.event_id));
    Ok(records)
}

/// Stands in for the republisher: publishes the table's items in order, then deletes them.
async fn drain_by_hand(fixture: &Fixture) -> Result<()> {
    let kafka = KafkaSettings::from_env(
        &HashMap::from([
            (
                "KAFKA_BOOTSTRAP_SERVERS",
                fixture.stack.bootstrap_servers().as_str(),
            ),
            ("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
        ]),
        "drain",
        Duration::from_secs(10),
    )?;
    let producer = kafka.producer()?;
    for record in table_records(&fixture.table).await? {
        let id_header = [Header::new(headers::EVENT_ID, record.event_id.to_string())];
        let message = Message {
            topic: &record.topic,
            key: record.key.as_deref(),
            value: &record.value,
            headers: &[],
            extra: &id_header,
        };
        // Right after an outage a broker may still be catching up: the drain (the test's
        // stand-in for the republisher) tries again, under the same event id.
        let mut attempts = 0;
        while let Err((error, _)) = producer
            .send(message.record(), Duration::from_secs(10))
            .await
        {
            attempts += 1;
            anyhow::ensure!(attempts < 3, "draining {}: {error}", record.event_id);
        }
        fixture
            .table
            .delete_in_order(&[ItemKey {
                pk: record.partition_key(),
                event_id: record.event_id.to_string(),
            }])
            .await
            .map_err(|stopped| anyhow::anyhow!(stopped.reason))?;
    }
    Ok(())
}

/// The values of `key`'s events in the order each event first appears (consumers drop later
/// copies by event id: a send that timed out against a hung broker may still land).
fn values_of_key(messages: &[Consumed], key: &str) -> Vec<Vec<u8>> {
    let mut seen = std::collections::HashSet::new();
    messages
        .iter()
        .filter(|m| m.key.as_deref() == Some(key.as_bytes()))
        .filter(|m| seen.insert(m.header(headers::EVENT_ID)))
        .map(|m| m.value.clone().unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn with_kafka_up_events_go_to_kafka_and_never_to_standby() -> Result<()> {
    let _shared = CLUSTER.read().await;
    let fixture = fixture(&[]).await?;
    let mut sent = Vec::new();
    for n in 0..50 {
        let event = event(&fixture.topic, &format!("key-{}", n % 5), n);
        let delivery = fixture.producer.send(event.clone()).await?;
        assert!(
            matches!(delivery.outcome, Outcome::Kafka { .. }),
            "{delivery:?}"
        );
        sent.push((delivery.event_id, event));
    }
    assert!(table_records(&fixture.table).await?.is_empty());

    let consumed = testkit::read_topic(
        &fixture.stack.bootstrap_servers(),
        &fixture.topic,
        50,
        Duration::from_secs(30),
    )
    .await?;
    for (event_id, event) in &sent {
        let message = consumed
            .iter()
            .find(|m| m.header(headers::EVENT_ID) == Some(event_id.to_string()))
            .expect("every event id is in Kafka");
        assert_eq!(message.key, event.key);
        assert_eq!(message.value.as_ref(), Some(&event.value));
        let trace: Vec<_> = message
            .headers
            .iter()
            .filter(|(name, _)| name == "trace")
            .collect();
        assert_eq!(trace.len(), 2, "duplicate header names are kept");
    }

    // The platform's own headers are refused before anything is sent, Kafka up or not.
    for name in [headers::EVENT_ID, "standby-republished", "dlt-reason"] {
        let mut forged = event(&fixture.topic, "key-0", 99);
        forged.headers.push(Header::new(name, "forged"));
        let error = fixture.producer.send(forged).await.unwrap_err();
        assert!(
            matches!(&error, FallbackError::ReservedHeader { name: n, .. } if n == name),
            "{error}"
        );
    }
    let after = testkit::read_topic_to_end(
        &fixture.stack.bootstrap_servers(),
        &fixture.topic,
        Duration::from_secs(30),
    )
    .await?;
    assert_eq!(after.len(), 50, "nothing more was sent");
    // What its metrics document will say (within the minute: none written yet).
    assert_eq!(
        fixture.producer.tally(),
        Tally {
            sent_to_kafka: 50,
            failed: 3,
            ..Tally::default()
        }
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_too_large_for_its_topic_is_dead_lettered_with_context() -> Result<()> {
    let _shared = CLUSTER.read().await;
    let fixture = fixture(&[("max.message.bytes", "1024")]).await?;
    let mut big = event(&fixture.topic, "big", 0);
    big.value.extend(std::iter::repeat_n(b'x', 4096));

    let delivery = fixture.producer.send(big.clone()).await?;
    let Outcome::DeadLettered { reason } = &delivery.outcome else {
        panic!("expected dead-lettering, got {delivery:?}");
    };
    assert!(reason.contains("too large"), "{reason}");
    assert!(table_records(&fixture.table).await?.is_empty());

    let consumed = testkit::read_topic(
        &fixture.stack.bootstrap_servers(),
        &fixture.dead_letter_topic,
        1,
        Duration::from_secs(30),
    )
    .await?;
    let message = &consumed[0];
    assert_eq!(message.value.as_ref(), Some(&big.value));
    assert_eq!(message.key, big.key);
    assert_eq!(
        message.header(headers::EVENT_ID),
        Some(delivery.event_id.to_string())
    );
    assert_eq!(
        message.header(dead_letter::ORIGINAL_TOPIC),
        Some(fixture.topic.clone())
    );
    assert_eq!(
        message.header(dead_letter::ERROR_CLASS).as_deref(),
        Some("non_retriable")
    );
    assert_eq!(
        message.header(dead_letter::SOURCE).as_deref(),
        Some("producer-fallback")
    );
    assert_eq!(
        message.header(dead_letter::PRODUCER_ID).as_deref(),
        Some("test-producer")
    );
    assert!(
        message
            .header(dead_letter::REASON)
            .unwrap()
            .contains("too large")
    );
    assert_eq!(
        message.header("trace").as_deref(),
        Some("t0"),
        "original headers come first"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn outage_writes_byte_exact_standby_items_and_keeps_per_key_order() -> Result<()> {
    let _exclusive = CLUSTER.write().await;
    let mut fixture = fixture(&[]).await?;
    let key = "customer-7";

    // Before the outage: straight to Kafka.
    let first = fixture.producer.send(event(&fixture.topic, key, 0)).await?;
    assert!(matches!(first.outcome, Outcome::Kafka { .. }), "{first:?}");

    let outage = tokio::task::block_in_place(|| fixture.stack.kafka_outage(true))?;
    let during: Vec<Event> = vec![
        event(&fixture.topic, key, 1),
        event(&fixture.topic, key, 2),
        Event {
            key: None,
            ..event(&fixture.topic, "", 3)
        },
        Event {
            key: Some(vec![]),
            ..event(&fixture.topic, "", 4)
        },
    ];
    let mut ids = Vec::new();
    let mut reasons = Vec::new();
    for event in &during {
        let delivery = fixture.producer.send(event.clone()).await?;
        let Outcome::Standby { reason } = delivery.outcome else {
            panic!("expected standby during the outage, got {delivery:?}");
        };
        ids.push(delivery.event_id);
        reasons.push(reason);
    }
    // The key's first event timed out; its second never tried Kafka, it queued behind the first.
    assert!(reasons[0].contains("timed out"), "{reasons:?}");
    assert!(
        reasons[1].contains("still in the standby table"),
        "{reasons:?}"
    );
    assert!(
        reasons[2].contains("timed out") && reasons[3].contains("timed out"),
        "{reasons:?}"
    );

    // The items decode to exactly what was sent.
    let stored = table_records(&fixture.table).await?;
    assert_eq!(stored.len(), during.len());
    for (event, id) in during.iter().zip(&ids) {
        let record = stored
            .iter()
            .find(|r| r.event_id == *id)
            .expect("item for every event");
        assert_eq!(record.topic, event.topic);
        assert_eq!(record.key, event.key);
        assert_eq!(record.value, event.value);
        assert_eq!(record.headers, event.headers);
        assert_eq!(record.producer_id, "test-producer");
        assert_eq!(record.schema_id(), Some(SchemaId::Glue(SCHEMA_VERSION)));
    }

    tokio::task::block_in_place(|| outage.end())?;

    // Kafka is back, but key-7 still has events waiting: the next one must queue behind them.
    let after = fixture.producer.send(event(&fixture.topic, key, 5)).await?;
    let Outcome::Standby { reason } = &after.outcome else {
        panic!("a diverted key must stay in standby while its events wait, got {after:?}");
    };
    assert!(reason.contains("still in the standby table"), "{reason}");
    assert_eq!(
        fixture.producer.diverted_keys(),
        2,
        "customer-7 and the empty key"
    );
    assert_eq!(
        fixture.producer.tally(),
        Tally {
            sent_to_kafka: 1,
            diverted: 5,
            ..Tally::default()
        },
        "the producers-diverting alarm's count"
    );

    // Once the table holds nothing of the key, the producer returns to Kafka for it.
    drain_by_hand(&fixture).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let back = fixture.producer.send(event(&fixture.topic, key, 6)).await?;
    assert!(matches!(back.outcome, Outcome::Kafka { .. }), "{back:?}");

    let consumed = testkit::read_topic_to_end(
        &fixture.stack.bootstrap_servers(),
        &fixture.topic,
        Duration::from_secs(60),
    )
    .await?;
    let order: Vec<Vec<u8>> = [0, 1, 2, 5, 6]
        .iter()
        .map(|n| event(&fixture.topic, key, *n).value)
        .collect();
    assert_eq!(
        values_of_key(&consumed, key),
        order,
        "per-key order across the outage"
    );
    Ok(())
}

/// Another producer instance on the same table: its own memory, its own Kafka client. With
/// `kafka_reachable == false` its brokers are a closed port, so its sends time out and divert,
/// as for an instance cut off from the cluster (or one that saw the outage first).
fn instance(fixture: &Fixture, name: &str, kafka_reachable: bool) -> Result<FallbackProducer> {
    let bootstrap = if kafka_reachable {
        fixture.stack.bootstrap_servers()
    } else {
        "127.0.0.1:1".to_string()
    };
    let env = testkit::kafka_env(&bootstrap, []);
    let kafka = KafkaSettings::from_env(&env, name, Duration::from_millis(1500))?;
    Ok(FallbackProducer::from_settings(
        &kafka,
        fixture.table.clone(),
        FallbackSettings {
            producer_id: name.into(),
            dead_letter_topic: fixture.dead_letter_topic.clone(),
            retention: Duration::from_secs(3600),
            recheck_max_delay: sdk::fallback::DEFAULT_RECHECK_MAX_DELAY,
            signal_interval: SIGNAL_INTERVAL,
        },
    )?)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_diverted_by_one_instance_queues_on_every_other_instance() -> Result<()> {
    let _shared = CLUSTER.read().await;
    let fixture = fixture(&[]).await?;
    let busy = instance(&fixture, "busy", true)?;
    let cut_off = instance(&fixture, "cut-off", false)?;

    // `busy` has just seen the key clear (it sent straight to Kafka) and caches that.
    let first = busy.send(event(&fixture.topic, "k", 0)).await?;
    assert!(matches!(first.outcome, Outcome::Kafka { .. }), "{first:?}");
    // Another instance cannot reach the brokers: the key's next event waits in the table.
    let second = cut_off.send(event(&fixture.topic, "k", 1)).await?;
    assert!(
        matches!(second.outcome, Outcome::Standby { .. }),
        "{second:?}"
    );

    // One signal interval later, the busy instance and a freshly started one (a restart
    // mid-outage) both queue the key's later events behind it, though Kafka is fine for them.
    tokio::time::sleep(SIGNAL_INTERVAL).await;
    let third = busy.send(event(&fixture.topic, "k", 2)).await?;
    assert!(
        matches!(third.outcome, Outcome::Standby { .. }),
        "went around the waiting event: {third:?}"
    );
    let restarted = instance(&fixture, "restarted", true)?;
    let fourth = restarted.send(event(&fixture.topic, "k", 3)).await?;
    assert!(
        matches!(fourth.outcome, Outcome::Standby { .. }),
        "{fourth:?}"
    );
    // Keys with nothing waiting still go straight to Kafka, after one Query each.
    let other = restarted.send(event(&fixture.topic, "other", 0)).await?;
    assert!(matches!(other.outcome, Outcome::Kafka { .. }), "{other:?}");

    let waiting: Vec<EventId> = table_records(&fixture.table)
        .await?
        .iter()
        .map(|r| r.event_id)
        .collect();
    assert_eq!(
        waiting,
        vec![second.event_id, third.event_id, fourth.event_id],
        "the key's events wait in the table in the order they were sent"
    );
    let stats = restarted.signal_stats();
    assert_eq!(stats.key_checks, 2, "one Query per key: {stats:?}");
    Ok(())
}

/// Log lines written on this thread, as the function's formatter writes them.
#[derive(Clone, Default)]
struct CapturedLogs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_string)
            .collect()
    }
}

// One thread, so the thread-local subscriber sees every line the producer logs.
#[tokio::test(flavor = "current_thread")]
async fn diverting_logs_the_event_id_and_keeps_the_partition_key_to_debug() -> Result<()> {
    let _shared = CLUSTER.read().await;
    let fixture = fixture(&[]).await?;
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .without_time()
        .with_writer(move || writer.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    // Other tests of this binary run on other threads with no subscriber. One that was first to
    // reach a log call while this subscriber was being installed can leave that call cached as
    // "no one listens" (tracing's interest cache races with scoped subscribers; the captured
    // lines then come out empty, as CI once saw). Recomputing the cache now that the
    // registration is over closes that window.
    tracing::callsite::rebuild_interest_cache();

    let customer = "customer-4711";
    let cut_off = instance(&fixture, "cut-off", false)?;
    let diverted = cut_off.send(event(&fixture.topic, customer, 0)).await?;
    assert!(
        matches!(diverted.outcome, Outcome::Standby { .. }),
        "{diverted:?}"
    );
    let partition_key =
        wire::record::partition_key(&fixture.topic, Some(customer.as_bytes()), diverted.event_id);

    let lines = logs.lines();
    let (debug, operators): (Vec<&String>, Vec<&String>) = lines
        .iter()
        .filter(|line| line.contains("sdk::"))
        .partition(|line| {
            line.trim_start().starts_with("DEBUG") || line.trim_start().starts_with("TRACE")
        });
    assert!(
        operators
            .iter()
            .any(|line| line.contains(&diverted.event_id.to_string())),
        "an info/warn line names the diverted event: {operators:#?}"
    );
    for line in &operators {
        assert!(
            !line.contains(&partition_key) && !line.contains(customer),
            "a line above debug level shows the partition key or the key: {line}"
        );
    }
    assert!(
        debug.iter().any(|line| line.contains(&partition_key)),
        "the partition key is available at debug level: {debug:#?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_caller_retrying_with_its_event_id_makes_no_second_event() -> Result<()> {
    let _shared = CLUSTER.read().await;
    let fixture = fixture(&[]).await?;
    // Kafka reachable: both attempts reach Kafka under the one id consumers dedupe on.
    let id = EventId::new();
    for _ in 0..2 {
        let delivery = fixture
            .producer
            .send_with_id(event(&fixture.topic, "k", 0), id)
            .await?;
        assert_eq!(delivery.event_id, id);
    }
    let consumed = testkit::read_topic(
        &fixture.stack.bootstrap_servers(),
        &fixture.topic,
        2,
        Duration::from_secs(30),
    )
    .await?;
    assert!(
        consumed
            .iter()
            .all(|m| m.header(headers::EVENT_ID) == Some(id.to_string()))
    );

    // Kafka unreachable: the retry finds its first attempt in the table and leaves it alone.
    let cut_off = instance(&fixture, "cut-off", false)?;
    let id = EventId::new();
    for _ in 0..2 {
        let delivery = cut_off
            .send_with_id(event(&fixture.topic, "j", 0), id)
            .await?;
        assert!(matches!(delivery.outcome, Outcome::Standby { .. }));
    }
    let waiting = table_records(&fixture.table).await?;
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].event_id, id);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_producer_in_librdkafkas_fatal_state_is_replaced() -> Result<()> {
    let _shared = CLUSTER.read().await;
    let fixture = fixture(&[]).await?;
    let before = fixture.producer.send(event(&fixture.topic, "k", 0)).await?;
    assert!(matches!(before.outcome, Outcome::Kafka { .. }));

    // librdkafka's own fault injection: the idempotent producer enters its fatal state, after
    // which that instance refuses every produce.
    let broken = fixture.producer.kafka().current();
    let reason = std::ffi::CString::new("injected by the test")?;
    // SAFETY: the client pointer is valid while `broken` is alive; librdkafka copies `reason`.
    let code = unsafe {
        rdkafka::bindings::rd_kafka_test_fatal_error(
            rdkafka::client::Client::native_ptr(broken.client()),
            rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
            reason.as_ptr(),
        )
    };
    assert_eq!(
        code,
        rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
    );
    drop(broken);

    // The send that meets the fatal state keeps its event (it waits in the table, to be
    // republished); the next one goes through a new producer.
    let during = fixture.producer.send(event(&fixture.topic, "j", 0)).await?;
    assert!(
        matches!(during.outcome, Outcome::Standby { .. }),
        "{during:?}"
    );
    assert_eq!(fixture.producer.kafka().renewals(), 1);
    let after = fixture
        .producer
        .send(event(&fixture.topic, "other", 0))
        .await?;
    assert!(matches!(after.outcome, Outcome::Kafka { .. }), "{after:?}");
    Ok(())
}

/// The producer configured for the cluster's TLS listener, trusting `ca`.
fn tls_producer(fixture: &Fixture, ca: &std::path::Path) -> Result<FallbackProducer> {
    let bootstrap = fixture.stack.tls_bootstrap_servers();
    let ca = ca.display().to_string();
    let env = HashMap::from([
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.as_str()),
        ("KAFKA_SECURITY_PROTOCOL", "SSL"),
        ("KAFKA_SSL_CA_LOCATION", ca.as_str()),
    ]);
    let kafka = KafkaSettings::from_env(&env, "fallback-tls-test", DELIVERY_TIMEOUT)?;
    let settings = FallbackSettings {
        producer_id: "tls-producer".into(),
        dead_letter_topic: fixture.dead_letter_topic.clone(),
        retention: Duration::from_secs(3600),
        recheck_max_delay: sdk::fallback::DEFAULT_RECHECK_MAX_DELAY,
        signal_interval: sdk::fallback::DEFAULT_SIGNAL_INTERVAL,
    };
    Ok(FallbackProducer::from_settings(
        &kafka,
        fixture.table.clone(),
        settings,
    )?)
}

/// Over the TLS listener (`KAFKA_SECURITY_PROTOCOL=SSL`, `KAFKA_SSL_CA_LOCATION`): events go to
/// Kafka. Trusting another CA, the handshake fails and the event waits in the standby table
/// with the reason saying so.
#[tokio::test(flavor = "multi_thread")]
async fn over_tls_events_go_to_kafka_and_a_wrong_ca_is_named() -> Result<()> {
    let _shared = CLUSTER.read().await;
    let fixture = fixture(&[]).await?;
    let tls = fixture.stack.tls();

    let producer = tls_producer(&fixture, &tls.ca)?;
    for n in 0..5 {
        let delivery = producer.send(event(&fixture.topic, "tls", n)).await?;
        assert!(
            matches!(delivery.outcome, Outcome::Kafka { .. }),
            "{delivery:?}"
        );
    }
    let consumed = testkit::read_topic(
        &fixture.stack.bootstrap_servers(),
        &fixture.topic,
        5,
        Duration::from_secs(30),
    )
    .await?;
    assert_eq!(values_of_key(&consumed, "tls").len(), 5);

    let untrusting = tls_producer(&fixture, &tls.wrong_ca)?;
    let delivery = untrusting
        .send(event(&fixture.topic, "wrong-ca", 0))
        .await?;
    let Outcome::Standby { reason } = &delivery.outcome else {
        panic!("a broker certificate from an untrusted CA must not be accepted: {delivery:?}");
    };
    assert!(reason.contains("certificate verify failed"), "{reason}");
    Ok(())
}
