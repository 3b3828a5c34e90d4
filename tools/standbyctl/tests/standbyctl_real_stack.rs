//! The `standbyctl` binary run as an operator would, against the local stack: items in moto's
//! DynamoDB, records in the real Kafka brokers. Each test has its own tables and topics.

mod common;

use std::time::Duration;

use anyhow::Result;
use assert_cmd::Command;
use aws_sdk_dynamodb::types::AttributeValue;
use devstack::Stack;
use devstack::testkit::{self, Consumed};
use sdk::standby_table::StandbyTable;
use serde_json::Value;
use shared::state_table::StateTable;
use wire::dead_letter;
use wire::envelope::Envelope;
use wire::headers;
use wire::record::{EventId, StandbyRecord};

struct Fixture {
    stack: Stack,
    /// For writing items no producer would (the standby adapter refuses to).
    dynamodb: aws_sdk_dynamodb::Client,
    standby: StandbyTable,
    state: StateTable,
    dead_letter_topic: String,
}

async fn fixture() -> Result<Fixture> {
    let stack = Stack::attach()?;
    let aws = testkit::aws_config(&stack.aws_endpoint()).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let standby = StandbyTable::new(dynamodb.clone(), testkit::unique_name("ctl-standby"));
    standby.create().await?;
    let state = StateTable::new(dynamodb.clone(), testkit::unique_name("ctl-state"));
    state.create().await?;
    let dead_letter_topic = testkit::unique_name("ctl-dlt");
    testkit::create_topic(&stack.bootstrap_servers(), &dead_letter_topic, 2, 3, &[]).await?;
    Ok(Fixture {
        stack,
        dynamodb,
        standby,
        state,
        dead_letter_topic,
    })
}

impl Fixture {
    /// The binary with the same environment the functions get.
    fn ctl(&self) -> Command {
        let mut command = common::standbyctl(
            &self.stack,
            self.standby.name(),
            self.state.name(),
            &self.dead_letter_topic,
        );
        command
            .env("KAFKA_DELIVERY_TIMEOUT_MS", "5000")
            .env("EVENT_TOPICS", "orders,payments,ctl-*");
        command
    }

    /// Runs `args` with `--output json`, expecting `code`; returns the parsed output.
    fn json(&self, args: &[&str], code: i32) -> Value {
        let output = self
            .ctl()
            .args(args)
            .args(["--output", "json"])
            .assert()
            .code(code)
            .get_output()
            .stdout
            .clone();
        serde_json::from_slice(&output).unwrap_or_else(|e| {
            panic!(
                "{args:?}: not JSON ({e}): {}",
                String::from_utf8_lossy(&output)
            )
        })
    }

    fn consume(&self, topic: &str) -> Vec<Consumed> {
        testkit::consume_all(
            &self.stack.bootstrap_servers(),
            topic,
            Duration::from_secs(60),
        )
        .unwrap()
    }
}

fn record(topic: &str, key: &str, payload: &str, age: Duration) -> StandbyRecord {
    testkit::standby_record(topic)
        .key(key)
        .payload(payload)
        .schema_version(2)
        .header("trace", format!("{key}-{payload}"))
        .producer("checkout-7")
        .age(age)
        .expires_at(wire::clock::now_ms() / 1000 + 86_400)
        .build()
}

async fn put_malformed(f: &Fixture) -> Result<String> {
    let mut item = record("orders", "broken", "{}", Duration::ZERO).to_item();
    item.remove("value");
    let event_id = match &item["event_id"] {
        AttributeValue::S(id) => id.clone(),
        _ => unreachable!(),
    };
    f.dynamodb
        .put_item()
        .table_name(f.standby.name())
        .set_item(Some(item))
        .send()
        .await?;
    Ok(event_id)
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "multi_thread")]
async fn inspect_and_purge_the_standby_table() -> Result<()> {
    let f = fixture().await?;
    let orders: Vec<_> = (0..3)
        .map(|n| record("orders", "k1", &format!("{{\"n\":{n}}}"), HOUR * (3 - n)))
        .collect();
    let payments = [
        record("payments", "p1", "{\"p\":1}", Duration::from_secs(30)),
        record("payments", "p2", "{\"p\":2}", Duration::from_secs(20)),
    ];
    for r in orders.iter().chain(&payments) {
        f.standby.put_new(r).await?;
    }
    let malformed = put_malformed(&f).await?;

    // count: per topic, malformed apart, oldest age.
    let count = f.json(&["standby", "count"], 0);
    assert_eq!(count["total"], 6);
    assert_eq!(count["malformed"], 1);
    assert_eq!(count["topics"][0]["topic"], "orders");
    assert_eq!(count["topics"][0]["items"], 3);
    assert_eq!(count["topics"][1]["items"], 2);
    let oldest = count["oldest_age_seconds"].as_u64().unwrap();
    assert!((3 * 3600..3 * 3600 + 60).contains(&oldest), "{oldest}");

    // ls: filters, oldest first, the limit keeps the total.
    let old = f.json(&["standby", "ls", "--older-than", "90m"], 0);
    let ids: Vec<&str> = old["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            orders[0].event_id.to_string(),
            orders[1].event_id.to_string()
        ]
    );
    let one_key = f.json(&["standby", "ls", "--topic", "payments", "--key", "p2"], 0);
    assert_eq!(one_key["total"], 1);
    assert_eq!(one_key["items"][0]["key"]["data"], "p2");
    let limited = f.json(&["standby", "ls", "--limit", "2"], 0);
    assert_eq!(limited["total"], 6);
    assert_eq!(limited["items"].as_array().unwrap().len(), 2);
    let broken = f.json(&["standby", "ls", "--malformed"], 0);
    assert!(
        broken["items"][0]["malformed"]
            .as_str()
            .unwrap()
            .contains("value"),
        "{broken}"
    );
    let human = f.ctl().args(["standby", "ls"]).assert().success();
    let text = String::from_utf8_lossy(&human.get_output().stdout).into_owned();
    assert!(text.contains("6 item(s), oldest 3h00m"), "{text}");
    assert!(text.contains("malformed: "), "{text}");

    // show: decoded, in both forms.
    let shown = f.json(&["standby", "show", &orders[2].event_id.to_string()], 0);
    assert_eq!(shown["kind"], "record");
    assert_eq!(shown["value"]["schema_version"], "2");
    assert_eq!(shown["value"]["payload"]["data"], "{\"n\":2}");
    assert_eq!(shown["headers"][0]["name"], "trace");
    let text = f
        .ctl()
        .args(["standby", "show", &orders[2].event_id.to_string(), "--hex"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(
        String::from_utf8_lossy(&text).contains(&format!("0x{}", hex::encode("{\"n\":2}"))),
        "--hex shows the payload as hex"
    );
    assert_eq!(
        f.json(&["standby", "show", &malformed], 0)["kind"],
        "malformed"
    );
    f.ctl()
        .args(["standby", "show", &EventId::new().to_string()])
        .assert()
        .code(3)
        .stderr(predicates::str::contains("no item with event id"));
    f.ctl()
        .args(["standby", "show", "123"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("not an event id"));

    // Bad filters: exit 2 naming the flag.
    f.ctl()
        .args(["standby", "ls", "--older-than", "soon"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--older-than"));
    f.ctl()
        .args([
            "standby",
            "count",
            "--older-than",
            "2h",
            "--newer-than",
            "1h",
        ])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("select nothing"));
    f.ctl()
        .args(["standby", "count", "--table", "no-such-table"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "no DynamoDB table \"no-such-table\"",
        ));

    // purge: the whole table only when asked by name; refuses without --yes (exit 5, nothing
    // deleted), or when the selection is not the count the listing showed; then deletes just
    // the selection.
    f.ctl()
        .args(["standby", "purge", "--yes"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--all"));
    let refused = f.json(&["standby", "purge", "--topic", "payments"], 5);
    assert_eq!(refused["refused"], true);
    assert_eq!(refused["items"].as_array().unwrap().len(), 2);
    let changed = f.json(
        &[
            "standby", "purge", "--topic", "payments", "--expect", "1", "--yes",
        ],
        5,
    );
    assert_eq!(changed["deleted"], 0, "{changed}");
    assert_eq!(f.json(&["standby", "count"], 0)["total"], 6);
    let purged = f.json(
        &[
            "standby", "purge", "--topic", "payments", "--expect", "2", "--yes",
        ],
        0,
    );
    assert_eq!(purged["deleted"], 2);
    let purged = f.json(&["standby", "purge", "--malformed", "--yes"], 0);
    assert_eq!(purged["deleted"], 1);
    let left = f.json(&["standby", "count"], 0);
    assert_eq!(left["total"], 3);
    assert_eq!(left["topics"][0]["topic"], "orders");
    // The whole table, asked for by name and pinned to what the listing showed.
    let purged = f.json(&["standby", "purge", "--all", "--expect", "3", "--yes"], 0);
    assert_eq!(purged["deleted"], 3, "{purged}");
    assert_eq!(f.json(&["standby", "count"], 0)["total"], 0);
    Ok(())
}

/// `standby replay` publishes with the republisher's rights, so it applies the same topic
/// allow-list: an event for a topic off `EVENT_TOPICS` is dead-lettered, never published.
#[tokio::test(flavor = "multi_thread")]
async fn replay_refuses_topics_off_the_allow_list() -> Result<()> {
    let f = fixture().await?;
    let topic = testkit::unique_name("ctl-off-list");
    testkit::create_topic(&f.stack.bootstrap_servers(), &topic, 1, 3, &[]).await?;
    f.standby
        .put_new(&record(&topic, "k", "{}", Duration::from_secs(1)))
        .await?;
    let replay = f.json(
        &["standby", "replay", "--event-topics", "orders,payments"],
        0,
    );
    assert_eq!(replay["dead_lettered"], 1, "{replay}");
    assert_eq!(replay["republished"], 0, "{replay}");
    assert!(f.consume(&topic).is_empty(), "nothing reached {topic}");
    let letters = f.consume(&f.dead_letter_topic);
    assert_eq!(
        letters[0].header(dead_letter::MALFORMED_KIND).as_deref(),
        Some("topic_not_allowed")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_republishes_with_the_republishers_rules() -> Result<()> {
    let f = fixture().await?;
    let topic = testkit::unique_name("ctl-orders");
    testkit::create_topic(&f.stack.bootstrap_servers(), &topic, 3, 3, &[]).await?;
    let events: Vec<_> = (0..20)
        .map(|n| {
            record(
                &topic,
                &format!("key-{}", n % 4),
                &format!("{{\"n\":{n}}}"),
                Duration::from_secs(100 - n),
            )
        })
        .collect();
    for r in &events {
        f.standby.put_new(r).await?;
    }
    put_malformed(&f).await?;

    // Kafka rejects an event for good and the dead-letter topic is missing too: the event stays
    // in the table (stranded), the run says so and exits 4.
    let orphan = record(
        &testkit::unique_name("ctl-nowhere"),
        "o",
        "{}",
        Duration::ZERO,
    );
    f.standby.put_new(&orphan).await?;
    let orphan_id = orphan.event_id.to_string();
    let stranded = f.json(
        &[
            "standby",
            "replay",
            "--event-id",
            &orphan_id,
            "--dead-letter-topic",
            "ctl-no-such-dlt",
        ],
        4,
    );
    assert_eq!(stranded["left_in_table"], 1, "{stranded}");
    assert_eq!(stranded["troubles"][0]["outcome"], "stranded");
    assert_eq!(stranded["troubles"][0]["event_id"], orphan_id.as_str());
    assert_eq!(
        f.json(&["standby", "count", "--event-id", &orphan_id], 0)["total"],
        1
    );
    f.json(&["standby", "purge", "--event-id", &orphan_id, "--yes"], 0);

    // Dry run: lists, sends and deletes nothing.
    let dry = f.json(&["standby", "replay", "--topic", &topic, "--dry-run"], 0);
    assert_eq!(dry["selected"], 20);
    assert_eq!(dry["items"].as_array().unwrap().len(), 20);
    assert_eq!(f.json(&["standby", "count"], 0)["total"], 21);

    let replayed = f.json(&["standby", "replay", "--topic", &topic], 0);
    assert_eq!(replayed["republished"], 20, "{replayed}");
    assert_eq!(replayed["left_in_table"], 0);

    // Original key, bytes and headers, plus the republisher's own; per-key order kept.
    let consumed = f.consume(&topic);
    assert_eq!(consumed.len(), 20);
    for key in 0..4 {
        let sent: Vec<&StandbyRecord> = events
            .iter()
            .filter(|r| r.key.as_deref() == Some(format!("key-{key}").as_bytes()))
            .collect();
        let got: Vec<&Consumed> = consumed
            .iter()
            .filter(|m| m.key.as_deref() == Some(format!("key-{key}").as_bytes()))
            .collect();
        assert_eq!(got.len(), sent.len());
        for (message, record) in got.iter().zip(&sent) {
            assert_eq!(message.value.as_deref(), Some(record.value.as_slice()));
            assert_eq!(
                message.header("trace"),
                Some(format!(
                    "key-{key}-{}",
                    String::from_utf8_lossy(&record.value[5..])
                ))
            );
            assert_eq!(
                message.header(headers::EVENT_ID),
                Some(record.event_id.to_string())
            );
            assert_eq!(
                message.header(headers::REPUBLISHED).as_deref(),
                Some("true")
            );
        }
    }

    // The malformed item goes where it can be repaired, with its reason, and leaves the table.
    let poison = f.json(&["standby", "replay", "--malformed"], 0);
    assert_eq!(poison["dead_lettered"], 1, "{poison}");
    let letters = f.consume(&f.dead_letter_topic);
    assert_eq!(letters.len(), 1);
    assert_eq!(
        letters[0].header(dead_letter::ERROR_CLASS).as_deref(),
        Some("malformed")
    );
    assert!(
        letters[0]
            .header(dead_letter::REASON)
            .unwrap()
            .contains("value")
    );
    assert_eq!(f.json(&["standby", "count"], 0)["total"], 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn repair_and_redrive_the_dead_letter_topic() -> Result<()> {
    let f = fixture().await?;
    let bootstrap = f.stack.bootstrap_servers();
    // Events for a topic nobody created yet: Kafka rejects them for good, the republisher's
    // rules dead-letter them. One malformed item joins them.
    let topic = testkit::unique_name("ctl-late-topic");
    let first = record(
        &topic,
        "a",
        r#"{"amount":-1,"debug":true}"#,
        Duration::from_secs(5),
    );
    let second = record(&topic, "b", r#"{"amount":5}"#, Duration::from_secs(4));
    f.standby.put_new(&first).await?;
    f.standby.put_new(&second).await?;
    put_malformed(&f).await?;
    let replay = f.json(&["standby", "replay"], 0);
    assert_eq!(replay["dead_lettered"], 3, "{replay}");

    let listed = f.json(&["dlt", "ls"], 0);
    assert_eq!(listed["total"], 3);
    let rows = listed["records"].as_array().unwrap();
    let id_of = |event_id: &EventId| {
        rows.iter()
            .find(|r| r["event_id"] == event_id.to_string())
            .map(|r| r["id"].as_str().unwrap().to_string())
            .unwrap()
    };
    let (first_id, second_id) = (id_of(&first.event_id), id_of(&second.event_id));
    let rejected = f.json(&["dlt", "ls", "--error-class", "non_retriable"], 0);
    assert_eq!(rejected["total"], 2);
    assert_eq!(rejected["records"][0]["original_topic"], topic.as_str());
    let shown = f.json(&["dlt", "show", &first_id], 0);
    assert_eq!(shown["value"]["schema_version"], "2");
    assert!(
        shown["headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["name"] == dead_letter::REASON),
        "{shown}"
    );
    f.ctl().args(["dlt", "show", "0:999999"]).assert().code(3);
    f.ctl()
        .args(["dlt", "show", "zero"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("PARTITION:OFFSET"));

    // No selection, or a filter that does not compile: usage errors, nothing sent.
    f.ctl()
        .args(["dlt", "redrive"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--all"));
    f.ctl()
        .args(["dlt", "redrive", &first_id, "--jq", ".amount = "])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("does not compile"));

    // Only to the topics the republisher may write: a record whose original topic is off the
    // list is refused, whatever its headers say.
    let off_list = f.json(
        &[
            "dlt",
            "redrive",
            &first_id,
            "--event-topics",
            "orders,payments",
        ],
        4,
    );
    assert_eq!(off_list["records"][0]["outcome"], "refused", "{off_list}");
    assert!(
        off_list["records"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("EVENT_TOPICS"),
        "{off_list}"
    );

    // Redriven before the topic exists: that record fails (exit 4) and nothing is recorded.
    let early = f.json(&["dlt", "redrive", &first_id], 4);
    assert_eq!(early["records"][0]["outcome"], "failed", "{early}");
    assert!(
        early["records"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("UnknownTopic"),
        "{early}"
    );

    // The operator creates the topic, previews the repair, then redrives.
    testkit::create_topic(&bootstrap, &topic, 2, 3, &[]).await?;
    let jq = ".amount = 42 | del(.debug)";
    let preview = f.json(&["dlt", "redrive", &first_id, "--jq", jq, "--dry-run"], 0);
    assert_eq!(preview["records"][0]["outcome"], "would_send");
    assert_eq!(preview["records"][0]["edited"], true);
    let sent = f.json(&["dlt", "redrive", &first_id, "--jq", jq], 0);
    assert_eq!(sent["sent"], 1, "{sent}");
    let destination = &sent["records"][0]["to"];
    assert_eq!(destination["topic"], topic.as_str());

    let arrived = f.consume(&topic);
    assert_eq!(arrived.len(), 1, "the dry run sent nothing");
    let message = &arrived[0];
    assert_eq!(
        message.value.as_deref(),
        Some(
            Envelope::confluent(2, br#"{"amount":42}"#)
                .encode()
                .as_slice()
        ),
        "patched payload, same schema prefix"
    );
    assert_eq!(message.key.as_deref(), Some(&b"a"[..]));
    assert_eq!(message.offset, destination["offset"].as_i64().unwrap());
    assert_eq!(
        message.header("trace").as_deref(),
        Some(r#"a-{"amount":-1,"debug":true}"#)
    );
    assert_eq!(
        message.header(headers::EVENT_ID),
        Some(first.event_id.to_string())
    );
    assert_eq!(
        message.header(headers::REDRIVEN_FROM),
        Some(format!(
            "{}/{}",
            f.dead_letter_topic,
            first_id.replace(':', "/")
        ))
    );
    assert!(
        message
            .headers
            .iter()
            .all(|(name, _)| !dead_letter::is_context_header(name)),
        "{:?}",
        message.headers
    );

    // Recorded: listed with its destination, and not sent twice by mistake.
    let listed = f.json(&["dlt", "ls", "--event-id", &first.event_id.to_string()], 0);
    assert_eq!(
        listed["records"][0]["redriven_to"]["offset"],
        destination["offset"]
    );
    let again = f.json(&["dlt", "redrive", &first_id], 0);
    assert_eq!(again["records"][0]["outcome"], "already_redriven");
    assert_eq!(f.consume(&topic).len(), 1);

    // --edit through $EDITOR, and --all: the malformed item is refused (exit 4), the rest sent.
    let editor = r#"sh -c 'sed -i "s/5/6/" "$1"' editor"#;
    let edited = f
        .ctl()
        .env("EDITOR", editor)
        .args(["dlt", "redrive", &second_id, "--edit", "--output", "json"])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let edited: Value = serde_json::from_slice(&edited)?;
    assert_eq!(edited["records"][0]["edited"], true);
    f.ctl()
        .args(["dlt", "redrive", "--all"])
        .assert()
        .code(5)
        .stderr(predicates::str::contains("--yes"));
    let everything = f.json(&["dlt", "redrive", "--all", "--yes"], 4);
    let outcomes: Vec<&str> = everything["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == "already_redriven")
            .count(),
        2
    );
    assert_eq!(outcomes.iter().filter(|o| **o == "refused").count(), 1);
    let arrived = f.consume(&topic);
    assert_eq!(arrived.len(), 2);
    assert!(arrived.iter().any(|m| {
        m.value.as_deref()
            == Some(
                Envelope::confluent(2, br#"{"amount":6}"#)
                    .encode()
                    .as_slice(),
            )
    }));
    Ok(())
}

/// A consumer application's dead-letter topic, written by the consumer SDK, read and redriven
/// by the same commands as the platform's: the headers are the same contract. The value is
/// Glue-framed and zlib-compressed, so `show` inflates it and a repair re-frames it the same way.
#[tokio::test(flavor = "multi_thread")]
async fn dlt_works_on_a_consumers_dead_letter_topic() -> Result<()> {
    use sdk::consumer::dedupe::MemoryDedupe;
    use sdk::consumer::retry::{HandlerError, RetryPolicy};
    use sdk::consumer::{ConsumedEvent, Consumer, ConsumerSettings};
    use sdk::kafka::{KafkaSettings, Message};
    use sdk::schema::{GlueRegistry, SchemaCache};
    use std::sync::Arc;
    use wire::envelope::{Compression, SchemaId};
    use wire::record::Header;

    let f = fixture().await?;
    let bootstrap = f.stack.bootstrap_servers();
    let topic = testkit::unique_name("ctl-consumed");
    testkit::create_topic(&bootstrap, &topic, 1, 3, &[]).await?;
    let aws = testkit::aws_config(&f.stack.aws_endpoint()).await;
    let definition = r#"{"type":"object","required":["amount"]}"#;
    let version: uuid::Uuid =
        testkit::glue_schema(&aws, testkit::TEST_REGISTRY, &topic, "JSON", definition)
            .await?
            .parse()?;
    let framed = |payload: &str| {
        wire::envelope::frame(
            SchemaId::Glue(version),
            Compression::Zlib,
            payload.as_bytes(),
        )
    };
    let kafka = KafkaSettings::from_env(
        &testkit::kafka_env(&bootstrap, []),
        "ctl-consumer",
        Duration::from_secs(5),
    )?;
    let event_id = EventId::new();
    kafka
        .producer()?
        .send(
            Message {
                topic: &topic,
                key: Some(b"acct-1"),
                value: &framed(r#"{"amount":-3}"#),
                headers: &[Header::new("trace", "t-1")],
                extra: &[Header::new(headers::EVENT_ID, event_id.to_string())],
            }
            .record(),
            Duration::from_secs(5),
        )
        .await
        .map_err(|(e, _)| e)?;

    // The application's handler refuses the event for good: the SDK dead-letters it.
    let consumer = Arc::new(Consumer::new(
        kafka,
        ConsumerSettings {
            retry: RetryPolicy {
                delays: vec![],
                ..RetryPolicy::default()
            },
            ..ConsumerSettings::new(
                testkit::unique_name("ctl-group"),
                vec![topic.clone()],
                &f.dead_letter_topic,
            )
        },
        Arc::new(SchemaCache::new(Arc::new(GlueRegistry::new(
            aws_sdk_glue::Client::new(&aws),
        )))),
        Arc::new(MemoryDedupe::default()),
        |_: Arc<ConsumedEvent>| async { Err(HandlerError::NonRetriable("negative amount".into())) },
    ));
    let (stop, running) = testkit::run_consumer(consumer.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while consumer.stats().dead_lettered == 0 {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "nothing dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(());
    running.await??;

    let listed = f.json(&["dlt", "ls"], 0);
    assert_eq!(listed["total"], 1, "{listed}");
    let row = &listed["records"][0];
    assert_eq!(row["original_topic"], topic.as_str());
    assert_eq!(row["event_id"], event_id.to_string());
    let id = row["id"].as_str().unwrap().to_string();
    let shown = f.json(&["dlt", "show", &id], 0);
    assert_eq!(shown["value"]["schema_version"], version.to_string());
    assert!(
        shown["value"]["payload"].to_string().contains("amount"),
        "inflated: {shown}"
    );

    // A repair that breaks the schema is refused: nothing invalid goes back to a topic.
    let broken = f.json(&["dlt", "redrive", &id, "--jq", "del(.amount)"], 4);
    assert_eq!(broken["records"][0]["outcome"], "refused", "{broken}");
    assert!(
        broken["records"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("invalid for schema version"),
        "{broken}"
    );
    let sent = f.json(&["dlt", "redrive", &id, "--jq", ".amount = 3"], 0);
    assert_eq!(sent["sent"], 1, "{sent}");
    let arrived = f.consume(&topic);
    let redriven = arrived.last().unwrap();
    assert_eq!(
        redriven.value.as_deref(),
        Some(framed(r#"{"amount":3}"#).as_slice()),
        "repaired, re-framed with the same schema version and compression"
    );
    assert_eq!(redriven.header("trace").as_deref(), Some("t-1"));
    assert_eq!(
        redriven.header(headers::EVENT_ID),
        Some(event_id.to_string())
    );
    assert!(
        redriven
            .headers
            .iter()
            .all(|(name, _)| !dead_letter::is_context_header(name)),
        "the consumer's dead-letter context is taken off"
    );
    Ok(())
}

/// `event-types put` checks what it stores (fields, topic, schema in the registry) and `rm`
/// asks first; the gateway reads what `put` wrote.
#[tokio::test(flavor = "multi_thread")]
async fn event_types_are_checked_before_they_are_stored() -> Result<()> {
    let f = fixture().await?;
    let aws = testkit::aws_config(&f.stack.aws_endpoint()).await;
    let store = gateway::event_types::EventTypeStore::new(
        aws_sdk_dynamodb::Client::new(&aws),
        testkit::unique_name("ctl-event-types"),
    );
    store.create().await?;
    let json_schema = testkit::unique_name("ctl-order-created");
    testkit::glue_schema(
        &aws,
        testkit::TEST_REGISTRY,
        &json_schema,
        "JSON",
        r#"{"type":"object"}"#,
    )
    .await?;
    let avro_schema = testkit::unique_name("ctl-order-avro");
    testkit::glue_schema(
        &aws,
        testkit::TEST_REGISTRY,
        &avro_schema,
        "AVRO",
        r#"{"type":"record","name":"O","fields":[{"name":"id","type":"string"}]}"#,
    )
    .await?;
    let schema = format!("{}/{json_schema}", testkit::TEST_REGISTRY);
    let avro = format!("{}/{avro_schema}", testkit::TEST_REGISTRY);
    let missing = format!("{}/no-such-schema", testkit::TEST_REGISTRY);
    let put = |topic: &str, pointer: &str, schema: &str| {
        [
            "event-types",
            "put",
            "--table",
            store.table(),
            "order-created",
            "--topic",
            topic,
            "--partition-key",
            pointer,
            "--schema",
            schema,
            "--writer",
            "acme",
            "--writer",
            "scope:orders.write",
        ]
        .map(str::to_string)
    };
    for (args, says) in [
        (put("audit", "/order_id", &schema), "not in EVENT_TOPICS"),
        (put("orders", "order_id", &schema), "partition_key"),
        (put("orders", "/order_id", &missing), "not in the registry"),
        (put("orders", "/order_id", &avro), "not a JSON schema"),
        (put("orders", "/order_id", "no-slash"), "REGISTRY/NAME"),
    ] {
        f.ctl()
            .args(args)
            .assert()
            .code(2)
            .stderr(predicates::str::contains(says));
    }
    assert!(store.list().await?.is_empty(), "nothing refused was stored");

    let args = put("orders", "/order_id", &schema);
    let stored = f.json(&args.iter().map(String::as_str).collect::<Vec<_>>(), 0);
    assert_eq!(stored["event_type"]["topic"], "orders");
    let listed = f.json(&["event-types", "ls", "--table", store.table()], 0);
    assert_eq!(listed["event_types"][0]["name"], "order-created");
    assert_eq!(
        listed["event_types"][0]["writers"],
        serde_json::json!(["acme", "scope:orders.write"])
    );
    let read = store.get("order-created").await?.expect("stored");
    assert!(read.enabled && read.partition_key.as_deref() == Some("/order_id"));

    let asked = f.json(
        &[
            "event-types",
            "rm",
            "--table",
            store.table(),
            "order-created",
        ],
        5,
    );
    assert_eq!(asked["refused"], true);
    f.json(
        &[
            "event-types",
            "rm",
            "--table",
            store.table(),
            "order-created",
            "--yes",
        ],
        0,
    );
    assert!(store.get("order-created").await?.is_none());
    f.ctl()
        .args([
            "event-types",
            "rm",
            "--table",
            store.table(),
            "order-created",
        ])
        .assert()
        .code(3);
    Ok(())
}
