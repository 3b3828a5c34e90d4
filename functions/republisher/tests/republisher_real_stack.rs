//! The republisher against the real local stack: items in moto's DynamoDB, its stream delivered
//! by the stream driver as Lambda would, events read back from the Kafka brokers.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Result;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use devstack::Stack;
use devstack::stream_driver::StreamDriver;
use devstack::testkit::{self, Consumed};
use futures::StreamExt;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use republisher::adapters::{DynamoTable, KafkaSink};
use republisher::dead_letter::DeadLetter;
use republisher::engine::Sink;
use republisher::settings::Settings;
use republisher::{App, handle};
use sdk::standby_table::StandbyTable;
use serde_json::{Value, json};
use shared::state_table::StateTable;
use tokio::sync::RwLock;
use wire::dead_letter;
use wire::headers;
use wire::record::{EventId, Header, StandbyRecord};

/// A topic on the allow-list that no test creates.
const MISSING_TOPIC: &str = "no-such-topic-anywhere";

/// The outage test takes it for writing; the others for reading.
static CLUSTER: RwLock<()> = RwLock::const_new(());

struct Fixture {
    stack: Stack,
    aws: SdkConfig,
    standby: StandbyTable,
    topic: String,
    dead_letter_topic: String,
}

type RealApp = App<KafkaSink, DynamoTable>;

/// Fresh topics and tables, and an app configured for them as the Lambda would be.
async fn fixture(
    delivery_timeout_ms: &str,
    extra_env: &[(&str, &str)],
) -> Result<(Fixture, RealApp)> {
    let stack = Stack::attach()?;
    let bootstrap = stack.bootstrap_servers();
    let topic = testkit::unique_name("payments");
    let dead_letter_topic = testkit::unique_name("republisher-dlt");
    testkit::create_topic(&bootstrap, &topic, 6, 3, &[("max.message.bytes", "65536")]).await?;
    testkit::create_topic(&bootstrap, &dead_letter_topic, 1, 3, &[]).await?;

    // The tests' own topic, the one that is never created, and those denied by an ACL; not
    // the `forbidden-…` topics of the confused-deputy test.
    let event_topics = format!("{topic},{MISSING_TOPIC},denied-*");
    let aws = testkit::aws_config(&stack.aws_endpoint()).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let standby_name = testkit::unique_name("standby");
    let state_name = testkit::unique_name("state");
    let standby = StandbyTable::new(dynamodb.clone(), &standby_name);
    standby.create().await?;
    StateTable::new(dynamodb.clone(), &state_name)
        .create()
        .await?;

    let env = testkit::kafka_env(
        &bootstrap,
        [
            ("KAFKA_DELIVERY_TIMEOUT_MS", delivery_timeout_ms),
            ("STANDBY_TABLE_NAME", standby_name.as_str()),
            ("STATE_TABLE_NAME", state_name.as_str()),
            ("STANDBY_DEAD_LETTER_TOPIC", dead_letter_topic.as_str()),
            ("EVENT_TOPICS", event_topics.as_str()),
            ("REPUBLISH_MARGIN_MS", "500"),
        ]
        .into_iter()
        .chain(extra_env.iter().copied()),
    );
    let app = App::new(Settings::from_env(&env)?, dynamodb)?;
    Ok((
        Fixture {
            stack,
            aws,
            standby,
            topic,
            dead_letter_topic,
        },
        app,
    ))
}

/// A record as the producer fallback writes it; `age` backdates it.
fn record(topic: &str, key: Option<&str>, n: usize, age: Duration) -> StandbyRecord {
    let record = testkit::standby_record(topic)
        .payload(format!("{{\"n\":{n}}}"))
        .schema_version(4)
        .header("trace", format!("t{n}"))
        .header("trace", "again")
        .producer("writer")
        .age(age);
    match key {
        Some(key) => record.key(key).build(),
        None => record.build(),
    }
}

/// Writes records keeping each key's write order (keys in parallel), as producers do.
async fn write(standby: &StandbyTable, records: &[StandbyRecord]) -> Result<()> {
    let mut by_key: HashMap<String, Vec<&StandbyRecord>> = HashMap::new();
    for record in records {
        by_key
            .entry(record.partition_key())
            .or_default()
            .push(record);
    }
    let results: Vec<Result<()>> = futures::stream::iter(by_key.into_values())
        .map(|group| async move {
            for record in group {
                standby.put_new(record).await?;
            }
            Ok(())
        })
        .buffer_unordered(16)
        .collect()
        .await;
    results.into_iter().collect()
}

async fn table_len(standby: &StandbyTable) -> Result<usize> {
    Ok(testkit::standby_items(standby).await?.len())
}

/// One invocation as Lambda makes it (60 s to run), its answer read as JSON.
async fn invoke<S: Sink>(app: &App<S, DynamoTable>, payload: Value) -> Result<Value> {
    let response = handle(app, testkit::invocation(payload)).await?;
    Ok(serde_json::to_value(response)?)
}

/// Drives the stream into the handler until the table is empty.
async fn drain<S: Sink>(
    fixture: &Fixture,
    app: &App<S, DynamoTable>,
    driver: &mut StreamDriver,
) -> Result<()> {
    driver
        .run_until(
            |event| invoke(app, event),
            || async { Ok(table_len(&fixture.standby).await? == 0) },
            Duration::from_secs(240),
        )
        .await
}

async fn consume(fixture: &Fixture, topic: &str, expected: usize) -> Result<Vec<Consumed>> {
    let bootstrap = fixture.stack.bootstrap_servers();
    testkit::read_topic(&bootstrap, topic, expected, Duration::from_secs(120)).await
}

/// Everything in `topic`, read to the end of every partition.
async fn consume_all(fixture: &Fixture, topic: &str) -> Result<Vec<Consumed>> {
    let bootstrap = fixture.stack.bootstrap_servers();
    testkit::read_topic_to_end(&bootstrap, topic, Duration::from_secs(120)).await
}

/// Each key's event ids in Kafka order, first occurrences only (consumers dedupe on event id).
fn per_key_order(messages: &[Consumed]) -> HashMap<Vec<u8>, Vec<String>> {
    let mut seen = HashSet::new();
    let mut order: HashMap<Vec<u8>, Vec<String>> = HashMap::new();
    for message in messages {
        let id = message.header(headers::EVENT_ID).expect("event-id header");
        if seen.insert(id.clone()) {
            order
                .entry(message.key.clone().unwrap_or_default())
                .or_default()
                .push(id);
        }
    }
    order
}

fn expected_order(records: &[StandbyRecord]) -> HashMap<Vec<u8>, Vec<String>> {
    let mut order: HashMap<Vec<u8>, Vec<String>> = HashMap::new();
    for record in records {
        order
            .entry(record.key.clone().unwrap_or_default())
            .or_default()
            .push(record.event_id.to_string());
    }
    order
}

/// Every message sharing an event id is byte-identical (duplicates are harmless).
fn assert_duplicates_are_identical(messages: &[Consumed]) {
    let mut by_id: HashMap<String, &Consumed> = HashMap::new();
    for message in messages {
        let id = message.header(headers::EVENT_ID).unwrap();
        if let Some(first) = by_id.get(&id) {
            assert_eq!(
                (&first.key, &first.value),
                (&message.key, &message.value),
                "duplicate {id} differs"
            );
        } else {
            by_id.insert(id, message);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn drains_10000_records_over_500_keys_in_write_order() -> Result<()> {
    let _shared = CLUSTER.read().await;
    let (fixture, app) = fixture("10000", &[]).await?;
    let keys: Vec<String> = (0..500).map(|k| format!("account-{k}")).collect();
    let records: Vec<StandbyRecord> = (0..10_000)
        .map(|n| record(&fixture.topic, Some(&keys[n % 500]), n, Duration::ZERO))
        .collect();
    write(&fixture.standby, &records).await?;

    let mut driver = StreamDriver::new(&fixture.aws, fixture.standby.name()).await?;
    drain(&fixture, &app, &mut driver).await?;
    assert_eq!(table_len(&fixture.standby).await?, 0);
    assert_eq!(driver.stats.partial_failures, 0);

    let messages = consume(&fixture, &fixture.topic, 10_000).await?;
    assert_eq!(per_key_order(&messages), expected_order(&records));
    let sent: HashMap<String, &StandbyRecord> = records
        .iter()
        .map(|r| (r.event_id.to_string(), r))
        .collect();
    for message in &messages {
        let original = sent[&message.header(headers::EVENT_ID).unwrap()];
        assert_eq!(
            message.value.as_ref(),
            Some(&original.value),
            "bytes unchanged"
        );
        assert_eq!(
            message.header(headers::REPUBLISHED).as_deref(),
            Some("true")
        );
        let trace: Vec<_> = message
            .headers
            .iter()
            .filter(|(n, _)| n == "trace")
            .collect();
        assert_eq!(trace.len(), 2, "original headers, duplicates included");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_down_fails_the_batch_deletes_nothing_then_drains_when_back() -> Result<()> {
    let _exclusive = CLUSTER.write().await;
    let (mut fixture, app) = fixture("3000", &[]).await?;
    let records: Vec<StandbyRecord> = (0..200)
        .map(|n| {
            record(
                &fixture.topic,
                Some(&format!("k{}", n % 20)),
                n,
                Duration::ZERO,
            )
        })
        .collect();
    write(&fixture.standby, &records).await?;
    let mut driver = StreamDriver::new(&fixture.aws, fixture.standby.name()).await?;

    let outage = tokio::task::block_in_place(|| fixture.stack.kafka_outage(true))?;
    let seen = Mutex::new(Vec::new());
    let (app_ref, seen_ref) = (&app, &seen);
    driver
        .step(|event| async move {
            let response = invoke(app_ref, event).await;
            if let Ok(value) = &response {
                seen_ref.lock().unwrap().push(value.clone());
            }
            response
        })
        .await?;
    let responses = seen.into_inner().unwrap();
    let failures = responses[0]["batchItemFailures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{responses:?}");
    assert_eq!(
        table_len(&fixture.standby).await?,
        200,
        "nothing deleted while Kafka is down"
    );
    tokio::task::block_in_place(|| outage.end())?;

    drain(&fixture, &app, &mut driver).await?;
    // To the end, not to a count: a publish retried after the outage may have landed twice, and
    // 200 messages can then be read before the last of the 200 events.
    let messages = consume_all(&fixture, &fixture.topic).await?;
    assert_eq!(per_key_order(&messages), expected_order(&records));
    assert_duplicates_are_identical(&messages);
    Ok(())
}

/// Fails chosen event ids once with a retriable error, otherwise publishes for real.
struct FailOnce<S> {
    inner: S,
    pending: Mutex<HashSet<String>>,
}

impl<S: Sink + Send> Sink for FailOnce<S> {
    async fn republish(&self, record: &StandbyRecord) -> Result<(), KafkaError> {
        let fail = self
            .pending
            .lock()
            .unwrap()
            .remove(&record.event_id.to_string());
        if fail {
            return Err(KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageTimedOut,
            ));
        }
        self.inner.republish(record).await
    }

    async fn dead_letter(&self, letter: DeadLetter) -> Result<(), KafkaError> {
        self.inner.dead_letter(letter).await
    }

    async fn topic_is_missing(&self, topic: &str) -> bool {
        self.inner.topic_is_missing(topic).await
    }

    fn refuses(&self, topic: &str) -> Option<String> {
        self.inner.refuses(topic)
    }
}

fn failing_once(
    app: App<KafkaSink, DynamoTable>,
    ids: &[&StandbyRecord],
) -> App<FailOnce<KafkaSink>, DynamoTable> {
    App {
        sink: FailOnce {
            inner: app.sink,
            pending: Mutex::new(ids.iter().map(|r| r.event_id.to_string()).collect()),
        },
        table: app.table,
        standby: app.standby,
        state: app.state,
        settings: app.settings,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_mid_batch_keeps_per_key_order_and_retries_only_duplicate_by_event_id()
-> Result<()> {
    let _shared = CLUSTER.read().await;
    let (fixture, app) = fixture("10000", &[]).await?;
    let records: Vec<StandbyRecord> = (0..300)
        .map(|n| {
            record(
                &fixture.topic,
                Some(&format!("k{}", n % 7)),
                n,
                Duration::ZERO,
            )
        })
        .collect();
    write(&fixture.standby, &records).await?;
    let app = failing_once(app, &[&records[150]]);
    let mut driver = StreamDriver::new(&fixture.aws, fixture.standby.name()).await?;
    drain(&fixture, &app, &mut driver).await?;
    assert_eq!(driver.stats.partial_failures, 1, "{:?}", driver.stats);

    let messages = consume_all(&fixture, &fixture.topic).await?;
    assert_eq!(per_key_order(&messages), expected_order(&records));
    assert_duplicates_are_identical(&messages);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn poison_records_are_dead_lettered_with_context_and_the_rest_proceed() -> Result<()> {
    let _shared = CLUSTER.read().await;
    let (fixture, app) = fixture("5000", &[]).await?;
    let good: Vec<StandbyRecord> = (0..20)
        .map(|n| {
            record(
                &fixture.topic,
                Some(&format!("g{}", n % 3)),
                n,
                Duration::ZERO,
            )
        })
        .collect();
    let missing_topic = record(MISSING_TOPIC, Some("x"), 100, Duration::ZERO);
    let mut too_large = record(&fixture.topic, Some("big"), 101, Duration::ZERO);
    too_large.value.extend(std::iter::repeat_n(b'x', 100_000));

    write(&fixture.standby, &good[..10]).await?;
    // Malformed items, written raw as a buggy producer (or a hand edit) might.
    let base = record(&fixture.topic, Some("bad"), 0, Duration::ZERO);
    let mut malformed = Vec::new();
    for (kind, edit) in [
        (
            "missing_attribute",
            Box::new(|item: &mut HashMap<String, AttributeValue>| {
                item.remove("value");
            }) as Box<dyn Fn(&mut HashMap<String, AttributeValue>)>,
        ),
        (
            "unknown_format_version",
            Box::new(|item| {
                item.insert("format_version".into(), AttributeValue::N("99".into()));
            }),
        ),
        (
            "invalid_attribute",
            Box::new(|item| {
                item.insert("headers".into(), AttributeValue::S("not a list".into()));
            }),
        ),
    ] {
        let mut item = StandbyRecord {
            event_id: EventId::new(),
            ..base.clone()
        }
        .to_item();
        edit(&mut item);
        put_raw(&fixture, item).await?;
        malformed.push(kind);
    }
    write(
        &fixture.standby,
        &[missing_topic.clone(), too_large.clone()],
    )
    .await?;
    write(&fixture.standby, &good[10..]).await?;

    let mut driver = StreamDriver::new(&fixture.aws, fixture.standby.name()).await?;
    drain(&fixture, &app, &mut driver).await?;
    assert_eq!(driver.stats.partial_failures, 0);

    let delivered = consume(&fixture, &fixture.topic, 20).await?;
    assert_eq!(per_key_order(&delivered), expected_order(&good));
    let letters = consume(&fixture, &fixture.dead_letter_topic, 5).await?;
    let classes: Vec<(String, String)> = letters
        .iter()
        .map(|l| {
            (
                l.header(dead_letter::ERROR_CLASS).unwrap(),
                l.header(dead_letter::MALFORMED_KIND).unwrap_or_default(),
            )
        })
        .collect();
    for kind in malformed {
        assert!(
            classes.contains(&("malformed".into(), kind.into())),
            "{kind} missing from {classes:?}"
        );
    }
    for letter in &letters {
        assert!(
            letter
                .header(dead_letter::REASON)
                .is_some_and(|r| !r.is_empty())
        );
        assert!(letter.header(dead_letter::STREAM_SEQUENCE).is_some());
        assert_eq!(
            letter.header(dead_letter::SOURCE).as_deref(),
            Some("republisher")
        );
    }
    let rejected: Vec<&Consumed> = letters
        .iter()
        .filter(|l| l.header(dead_letter::ERROR_CLASS).as_deref() == Some("non_retriable"))
        .collect();
    assert_eq!(rejected.len(), 2);
    for original in [&missing_topic, &too_large] {
        let letter = rejected
            .iter()
            .find(|l| l.header(headers::EVENT_ID) == Some(original.event_id.to_string()))
            .expect("rejected record dead-lettered");
        assert_eq!(
            letter.value.as_ref(),
            Some(&original.value),
            "original bytes kept for redrive"
        );
        assert_eq!(
            letter.header(dead_letter::ORIGINAL_TOPIC),
            Some(original.topic.clone())
        );
    }
    Ok(())
}

/// The whole drain over the cluster's TLS listener, as the Lambda connects to MSK (TLS, the
/// CA from `KAFKA_SSL_CA_LOCATION`).
#[tokio::test(flavor = "multi_thread")]
async fn drains_over_tls() -> Result<()> {
    let _shared = CLUSTER.read().await;
    let stack = Stack::attach()?;
    let (bootstrap, ca) = (
        stack.tls_bootstrap_servers(),
        stack.tls().ca.display().to_string(),
    );
    let (fixture, app) = fixture(
        "5000",
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.as_str()),
            ("KAFKA_SECURITY_PROTOCOL", "SSL"),
            ("KAFKA_SSL_CA_LOCATION", ca.as_str()),
        ],
    )
    .await?;
    let records = records_for(&fixture.topic, &["t1", "t2"], 10, Duration::ZERO);
    write(&fixture.standby, &records).await?;
    let mut driver = StreamDriver::new(&fixture.aws, fixture.standby.name()).await?;
    drain(&fixture, &app, &mut driver).await?;
    assert_eq!(driver.stats.partial_failures, 0);
    let messages = consume_all(&fixture, &fixture.topic).await?;
    assert_eq!(per_key_order(&messages), expected_order(&records));
    Ok(())
}

/// Writes `item` as it is, as a producer with PutItem rights may.
async fn put_raw(fixture: &Fixture, item: HashMap<String, AttributeValue>) -> Result<()> {
    aws_sdk_dynamodb::Client::new(&fixture.aws)
        .put_item()
        .table_name(fixture.standby.name())
        .set_item(Some(item))
        .send()
        .await?;
    Ok(())
}

/// A producer may write any item into the table; the republisher publishes with its own rights.
/// Items that would make it write where the producer may not, or forge the id consumers dedupe
/// on, are dead-lettered with the reason and never published.
#[tokio::test(flavor = "multi_thread")]
async fn items_that_would_make_the_republisher_a_confused_deputy_are_dead_lettered() -> Result<()> {
    let _shared = CLUSTER.read().await;
    let (fixture, app) = fixture("5000", &[]).await?;
    // A real topic the republisher could write to, were it not for the allow-list, and another
    // allowed topic (the fixture allows `denied-*`) that some producer group may not write.
    let forbidden = testkit::unique_name("forbidden");
    let others = testkit::unique_name("denied");
    for topic in [&forbidden, &others] {
        testkit::create_topic(&fixture.stack.bootstrap_servers(), topic, 1, 3, &[]).await?;
    }

    // 1. Another allowed topic's event under this topic's partition key (what a producer
    //    limited by `dynamodb:LeadingKeys` to its own topics could write): only the partition
    //    key check stops it.
    let smuggled = record(&others, Some("k"), 0, Duration::ZERO);
    let mut item = smuggled.to_item();
    let allowed_pk = record(&fixture.topic, Some("k"), 0, Duration::ZERO).partition_key();
    item.insert("pk".into(), AttributeValue::S(allowed_pk));
    put_raw(&fixture, item).await?;
    // 2. A consistent item for a topic off the allow-list.
    let off_list = record(&forbidden, Some("k"), 1, Duration::ZERO);
    put_raw(&fixture, off_list.to_item()).await?;
    // 3. An allowed topic, but the producer chose the event id header consumers dedupe on.
    let mut forged_id = record(&fixture.topic, Some("k"), 2, Duration::ZERO);
    forged_id
        .headers
        .push(Header::new(headers::EVENT_ID, EventId::new().to_string()));
    put_raw(&fixture, forged_id.to_item()).await?;
    // And an honest event of the key, which still flows.
    let honest = record(&fixture.topic, Some("k"), 3, Duration::ZERO);
    write(&fixture.standby, std::slice::from_ref(&honest)).await?;

    let mut driver = StreamDriver::new(&fixture.aws, fixture.standby.name()).await?;
    drain(&fixture, &app, &mut driver).await?;

    for topic in [&forbidden, &others] {
        let messages = consume_all(&fixture, topic).await?;
        assert!(messages.is_empty(), "{topic}: {messages:?}");
    }
    let delivered = consume_all(&fixture, &fixture.topic).await?;
    let ids: Vec<Option<String>> = delivered
        .iter()
        .map(|m| m.header(headers::EVENT_ID))
        .collect();
    assert_eq!(ids, vec![Some(honest.event_id.to_string())]);

    let letters = consume(&fixture, &fixture.dead_letter_topic, 3).await?;
    let kind_of = |id: EventId| {
        letters
            .iter()
            .find(|l| l.header(headers::EVENT_ID) == Some(id.to_string()))
            .and_then(|l| l.header(dead_letter::MALFORMED_KIND))
    };
    assert_eq!(
        kind_of(smuggled.event_id).as_deref(),
        Some("partition_key_mismatch")
    );
    assert_eq!(
        kind_of(off_list.event_id).as_deref(),
        Some("topic_not_allowed")
    );
    assert_eq!(
        kind_of(forged_id.event_id).as_deref(),
        Some("reserved_header")
    );
    let off_list_letter = letters
        .iter()
        .find(|l| l.header(headers::EVENT_ID) == Some(off_list.event_id.to_string()))
        .unwrap();
    assert_eq!(
        off_list_letter.value.as_ref(),
        Some(&off_list.value),
        "kept whole for a redrive"
    );
    assert!(testkit::standby_items(&fixture.standby).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sweep_republishes_what_the_stream_never_delivered_and_resumes() -> Result<()> {
    let _shared = CLUSTER.read().await;
    let (fixture, app) = fixture(
        "5000",
        &[("SWEEP_PAGE_SIZE", "10"), ("SWEEP_MIN_AGE_SECONDS", "3600")],
    )
    .await?;
    let standby = &fixture.standby;
    let old: Vec<StandbyRecord> = (0..35)
        .map(|n| {
            record(
                &fixture.topic,
                Some(&format!("s{}", n % 4)),
                n,
                Duration::from_secs(7200),
            )
        })
        .collect();
    let young = record(&fixture.topic, Some("fresh"), 99, Duration::ZERO);
    write(standby, &old).await?;
    write(standby, std::slice::from_ref(&young)).await?;
    let scheduled = sweep_event();

    // The sweep scans 10 raw items a page, in the table's scan order.
    let scan_order: Vec<StandbyRecord> = standby
        .scan_page(None, 1000)
        .await?
        .0
        .into_iter()
        .map(StandbyRecord::from_item)
        .collect::<Result<_, _>>()?;
    let page_one: Vec<String> = scan_order[..10]
        .iter()
        .map(|r| r.event_id.to_string())
        .collect();

    // First sweep: a record on page two fails, so the sweep stops there, keeping its place
    // after page one.
    let flaky = failing_once(app, &[&scan_order[12]]);
    let first: Value = invoke(&flaky, scheduled.clone()).await?;
    assert_eq!(first["pass_completed"], json!(false), "{first}");
    assert_eq!(first["failed"], json!(1), "{first}");

    // Second sweep: resumes at page two and finishes the pass.
    let second: Value = invoke(&flaky, scheduled.clone()).await?;
    assert_eq!(second["pass_completed"], json!(true), "{second}");
    assert_eq!(
        table_len(standby).await?,
        1,
        "only the young record is left, for the stream"
    );
    // A new pass sees the young record waiting, and leaves it to the stream.
    let third: Value = invoke(&flaky, scheduled.clone()).await?;
    assert_eq!(third["waiting"], json!(1), "{third}");
    assert_eq!(third["republished"], json!(0), "{third}");

    let messages = consume_all(&fixture, &fixture.topic).await?;
    assert_eq!(per_key_order(&messages), expected_order(&old));
    assert_duplicates_are_identical(&messages);
    for id in &page_one {
        let copies = messages
            .iter()
            .filter(|m| m.header(headers::EVENT_ID).as_ref() == Some(id))
            .count();
        assert!(
            copies <= 1,
            "page one was not swept again: {id} seen {copies} times"
        );
    }
    Ok(())
}

fn sweep_event() -> Value {
    testkit::scheduled_event("republisher-sweep")
}

/// Records `n` events per key, keys written in parallel, each key in order.
fn records_for(topic: &str, keys: &[&str], per_key: usize, age: Duration) -> Vec<StandbyRecord> {
    (0..per_key)
        .flat_map(|n| keys.iter().map(move |k| (n, *k)))
        .map(|(n, k)| record(topic, Some(k), n, age))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn records_of_one_key_on_different_shards_reach_kafka_in_event_order() -> Result<()> {
    let _shared = CLUSTER.read().await;
    let (fixture, app) = fixture("10000", &[]).await?;
    let keys = ["a", "b", "c", "d", "e", "f", "g"];
    let records = records_for(&fixture.topic, &keys, 40, Duration::ZERO);
    write(&fixture.standby, &records).await?;
    // Four lanes, each item's records in one of them: a key's records arrive interleaved
    // across lanes, as items of one partition key can across a real stream's shards.
    let mut driver = StreamDriver::new(&fixture.aws, fixture.standby.name())
        .await?
        .with_lanes(4);
    driver.batch_size = 25;
    drain(&fixture, &app, &mut driver).await?;

    let messages = consume_all(&fixture, &fixture.topic).await?;
    assert_eq!(per_key_order(&messages), expected_order(&records));
    assert_duplicates_are_identical(&messages);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn what_the_mapping_gave_up_on_is_published_before_later_events_of_its_key() -> Result<()> {
    let _shared = CLUSTER.read().await;
    let (fixture, app) = fixture("10000", &[]).await?;
    let keys = ["a", "b", "c"];
    let early = records_for(&fixture.topic, &keys, 5, Duration::ZERO);
    write(&fixture.standby, &early).await?;
    // The mapping's record-age limit passes while nothing is delivered (a long outage)…
    tokio::time::sleep(Duration::from_secs(3)).await;
    let late = records_for(&fixture.topic, &keys, 5, Duration::ZERO);
    write(&fixture.standby, &late).await?;
    let mut driver = StreamDriver::new(&fixture.aws, fixture.standby.name()).await?;
    driver.max_record_age = Some(Duration::from_secs(2));
    // …so it gives up on the early records and delivers only the late ones.
    drain(&fixture, &app, &mut driver).await?;
    assert_eq!(driver.stats.expired, early.len(), "{:?}", driver.stats);
    assert_eq!(driver.on_failure.len(), early.len());

    let messages = consume_all(&fixture, &fixture.topic).await?;
    let all: Vec<StandbyRecord> = early.iter().chain(&late).cloned().collect();
    assert_eq!(per_key_order(&messages), expected_order(&all));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_topic_that_refuses_writes_holds_only_its_keys_until_the_sweep_releases_them()
-> Result<()> {
    let _shared = CLUSTER.read().await;
    let (fixture, app) = fixture("5000", &[]).await?;
    let denied = testkit::unique_name("denied");
    testkit::create_topic(&fixture.stack.bootstrap_servers(), &denied, 3, 3, &[]).await?;
    let held = records_for(&denied, &["h1", "h2"], 5, Duration::ZERO);
    let flowing = records_for(&fixture.topic, &["f1", "f2"], 5, Duration::ZERO);
    let mut all = held.clone();
    all.extend(flowing.iter().cloned());
    write(&fixture.standby, &all).await?;

    fixture.stack.deny_writes(&denied, true)?;
    let result = async {
        let mut driver = StreamDriver::new(&fixture.aws, fixture.standby.name()).await?;
        while driver.step(|event| invoke(&app, event)).await? > 0 {}
        assert_eq!(
            driver.stats.partial_failures, 0,
            "the shard is not blocked: {:?}",
            driver.stats
        );
        assert_eq!(
            per_key_order(&consume(&fixture, &fixture.topic, flowing.len()).await?),
            expected_order(&flowing),
            "other keys flow"
        );
        assert_eq!(
            table_len(&fixture.standby).await?,
            held.len(),
            "the held keys' events wait in the table"
        );
        anyhow::Ok(())
    }
    .await;
    fixture.stack.deny_writes(&denied, false)?;
    result?;

    // Once the topic takes writes again, the sweep releases the held keys, in order. The brokers
    // apply an ACL change asynchronously, so a sweep right after may still be refused: the keys
    // then stay held for the next one, as they would in AWS.
    let mut released = 0;
    let until = Instant::now() + Duration::from_secs(60);
    while released < 2 && Instant::now() < until {
        let report: Value = invoke(&app, sweep_event()).await?;
        released += report["held_released"].as_u64().unwrap_or(0);
        if released < 2 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    assert_eq!(released, 2);
    assert_eq!(table_len(&fixture.standby).await?, 0);
    let messages = consume(&fixture, &denied, held.len()).await?;
    assert_eq!(per_key_order(&messages), expected_order(&held));
    let again: Value = invoke(&app, sweep_event()).await?;
    assert_eq!(
        again["held_released"],
        json!(0),
        "released keys are forgotten: {again}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_insert_and_a_modify_of_one_item_in_one_batch_make_one_event() -> Result<()> {
    let _shared = CLUSTER.read().await;
    let (fixture, app) = fixture("5000", &[]).await?;
    let mut records = records_for(&fixture.topic, &["a"], 3, Duration::ZERO);
    records.push(record(&fixture.topic, None, 9, Duration::ZERO));
    write(&fixture.standby, &records).await?;
    // Someone touches items before the stream is read (an operator's edit, a retried write of
    // another attribute): their INSERT and MODIFY are in the same batch. A keyed item and a
    // null-key one (no order gate) must each be published and deleted once: a key twice in one
    // BatchWriteItem is refused by DynamoDB on every retry.
    for touched in [&records[1], &records[3]] {
        aws_sdk_dynamodb::Client::new(&fixture.aws)
            .update_item()
            .table_name(fixture.standby.name())
            .key("pk", AttributeValue::S(touched.partition_key()))
            .key("event_id", AttributeValue::S(touched.event_id.to_string()))
            .update_expression("SET touched = :t")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .send()
            .await?;
    }
    let mut driver = StreamDriver::new(&fixture.aws, fixture.standby.name()).await?;
    drain(&fixture, &app, &mut driver).await?;
    assert_eq!(driver.stats.partial_failures, 0, "{:?}", driver.stats);
    let messages = consume_all(&fixture, &fixture.topic).await?;
    assert_eq!(messages.len(), 4, "each event once");
    assert_eq!(per_key_order(&messages), expected_order(&records));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sweep_publishes_a_keys_earlier_events_before_an_old_one_it_selected() -> Result<()> {
    let _shared = CLUSTER.read().await;
    let (fixture, app) = fixture(
        "5000",
        &[("SWEEP_PAGE_SIZE", "2"), ("SWEEP_MIN_AGE_SECONDS", "3600")],
    )
    .await?;
    // The key's first event is recent by its producer's clock, its second one old by another
    // producer's (or past the cut-off of an earlier sweep): only the second is selected.
    let first = record(&fixture.topic, Some("k"), 0, Duration::ZERO);
    let second = record(&fixture.topic, Some("k"), 1, Duration::from_secs(7200));
    let records = vec![first, second];
    write(&fixture.standby, &records).await?;
    let report: Value = invoke(&app, sweep_event()).await?;
    assert_eq!(report["from_backlog"], json!(1), "{report}");
    let messages = consume_all(&fixture, &fixture.topic).await?;
    assert_eq!(per_key_order(&messages), expected_order(&records));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_topic_is_taken_as_missing_only_when_fresh_metadata_says_so() -> Result<()> {
    let _shared = CLUSTER.read().await;
    let (fixture, app) = fixture("5000", &[]).await?;
    assert!(!app.sink.topic_is_missing(&fixture.topic).await);
    assert!(
        app.sink
            .topic_is_missing(&testkit::unique_name("never-created"))
            .await
    );
    Ok(())
}

/// The producer SDK end to end through the standby path: its route points at a cluster that is
/// down (a broker address nothing listens on), so every validated, framed event waits in the
/// standby table; the republisher then publishes each one byte for byte, and what arrives still
/// decodes and validates with the schema version its prefix names.
#[tokio::test(flavor = "multi_thread")]
async fn validated_events_of_a_producer_whose_cluster_is_down_are_republished_unchanged()
-> Result<()> {
    use sdk::fallback::{FallbackProducer, FallbackSettings, Outcome};
    use sdk::kafka::KafkaSettings;
    use sdk::producer::{OutgoingEvent, Producer, ProducerSettings, Route};
    use sdk::schema::{GlueRegistry, Payload, SchemaCache};
    use std::sync::Arc;
    use wire::envelope::{Envelope, SchemaId};

    let _shared = CLUSTER.read().await;
    let (fixture, app) = fixture("5000", &[]).await?;
    let registry = testkit::TEST_REGISTRY;
    let definition = r#"{"type":"object","required":["n"],"properties":{"n":{"type":"integer"}}}"#;
    let version: uuid::Uuid =
        testkit::glue_schema(&fixture.aws, registry, &fixture.topic, "JSON", definition)
            .await?
            .parse()?;

    let down = format!("127.0.0.1:{}", devstack::process::free_port()?);
    let kafka = KafkaSettings::from_env(
        &testkit::kafka_env(&down, []),
        "sdk-cluster-down",
        Duration::from_secs(2),
    )?;
    let fallback = FallbackProducer::from_settings(
        &kafka,
        fixture.standby.clone(),
        FallbackSettings {
            producer_id: "sdk-cluster-down".into(),
            dead_letter_topic: fixture.dead_letter_topic.clone(),
            retention: Duration::from_secs(3600),
            recheck_max_delay: sdk::fallback::DEFAULT_RECHECK_MAX_DELAY,
            signal_interval: sdk::fallback::DEFAULT_SIGNAL_INTERVAL,
        },
    )?;
    let cache = Arc::new(SchemaCache::new(Arc::new(GlueRegistry::new(
        aws_sdk_glue::Client::new(&fixture.aws),
    ))));
    let producer = Producer::start(
        cache.clone(),
        vec![Route::new("", fallback)],
        ProducerSettings::new(registry),
    )
    .await?;

    // Four keys in parallel, each key's events one after the other.
    let sends = (0..4).map(|k| {
        let producer = &producer;
        let topic = &fixture.topic;
        async move {
            let mut sent = Vec::new();
            for n in 0..5 {
                let event = OutgoingEvent::new(
                    topic,
                    Some(format!("key-{k}").into_bytes()),
                    Payload::Json(json!({"n": k * 10 + n})),
                );
                let delivery = producer.send(&event).await?;
                anyhow::ensure!(
                    matches!(delivery.outcome, Outcome::Standby { .. }),
                    "{delivery:?}"
                );
                sent.push(event);
            }
            anyhow::Ok(sent)
        }
    });
    let sent: Vec<OutgoingEvent> = futures::future::try_join_all(sends)
        .await?
        .into_iter()
        .flatten()
        .collect();
    let stored: HashMap<String, Vec<u8>> = testkit::standby_items(&fixture.standby)
        .await?
        .into_iter()
        .filter_map(|item| StandbyRecord::from_item(item).ok())
        .map(|r| (r.event_id.to_string(), r.value))
        .collect();
    assert_eq!(stored.len(), sent.len());

    // The producer's backlog marker stays for the sweep to clear: wait for the events only.
    let mut driver = StreamDriver::new(&fixture.aws, fixture.standby.name()).await?;
    driver
        .run_until(
            |event| invoke(&app, event),
            || async {
                let items = testkit::standby_items(&fixture.standby).await?;
                Ok(items.iter().all(|item| {
                    matches!(item.get("pk"), Some(AttributeValue::S(pk))
                        if wire::record::marker::marker_topic(pk).is_some())
                }))
            },
            Duration::from_secs(120),
        )
        .await?;
    let messages = consume(&fixture, &fixture.topic, sent.len()).await?;
    let schema = cache.by_id(version).await?;
    for event in &sent {
        let id = event.id.to_string();
        let message = messages
            .iter()
            .find(|m| m.header(headers::EVENT_ID).as_ref() == Some(&id))
            .ok_or_else(|| anyhow::anyhow!("event {id} did not arrive"))?;
        let value = message.value.as_deref().unwrap_or_default();
        assert_eq!(value, stored[&id].as_slice(), "bytes unchanged");
        let envelope = Envelope::parse(value)?;
        assert_eq!(envelope.schema, SchemaId::Glue(version));
        assert_eq!(schema.decode(&envelope.decoded_payload()?)?, event.payload);
    }
    let mut expected: HashMap<Vec<u8>, Vec<String>> = HashMap::new();
    for event in &sent {
        expected
            .entry(event.key.clone().unwrap_or_default())
            .or_default()
            .push(event.id.to_string());
    }
    assert_eq!(per_key_order(&messages), expected, "each key in send order");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gate_reads_the_same_pages_of_ids_as_of_events() -> Result<()> {
    let _shared = CLUSTER.read().await;
    let (fixture, _app) = fixture("10000", &[]).await?;
    let records = records_for(&fixture.topic, &["a", "b"], 7, Duration::ZERO);
    write(&fixture.standby, &records).await?;
    let pk = records[0].partition_key();
    let mut ids: Vec<String> = records
        .iter()
        .filter(|r| r.partition_key() == pk)
        .map(|r| r.event_id.to_string())
        .collect();
    ids.sort();

    for up_to in [None, Some(ids[4].as_str())] {
        let (mut after, mut seen) = (None::<String>, Vec::new());
        loop {
            let (events, more) = fixture
                .standby
                .backlog(&pk, after.as_deref(), up_to, 3)
                .await?;
            let (page, more_ids) = fixture
                .standby
                .backlog_ids(&pk, after.as_deref(), up_to, 3)
                .await?;
            let event_ids: Vec<String> = events
                .iter()
                .map(|item| match item.get(wire::record::attr::EVENT_ID) {
                    Some(AttributeValue::S(id)) => id.clone(),
                    other => panic!("an item without an event id: {other:?}"),
                })
                .collect();
            assert_eq!(page, event_ids, "same page, after {after:?}");
            assert_eq!(more, more_ids);
            seen.extend(page);
            match (more, seen.last()) {
                (true, Some(last)) => after = Some(last.clone()),
                _ => break,
            }
        }
        let expected = match up_to {
            Some(_) => &ids[..=4],
            None => &ids[..],
        };
        assert_eq!(seen, expected, "up to {up_to:?}");
    }
    Ok(())
}
