//! Drain benchmark on the local stack (`make stack-up` first; `make bench` runs it).
//!
//! Drains a 1,000-record stream batch with the republisher's handler, and the same kind of batch
//! with the named baseline — a sequential loop that publishes one record, waits for its ack, then
//! deletes its item — in the same run, against the same brokers and moto. Prints records/s for
//! both and the ratio, for a batch spread over many keys and for a batch of a single key (the
//! worst case: one key's events are published one after another to keep their order).
//!
//! The handler also runs without the order gate's reads (its `Table` answers each key's backlog
//! from the batch itself, as the republisher did before the gate), so the gate's cost — one
//! strongly consistent Query per key per batch — is measured in the same run.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use devstack::Stack;
use devstack::stream_driver::StreamDriver;
use devstack::testkit;
use rdkafka::producer::FutureRecord;
use republisher::adapters::DynamoTable;
use republisher::engine::{DeleteFailure, Table};
use republisher::entry::{self, Entry, ItemKey};
use republisher::settings::Settings;
use republisher::{App, handle};
use sdk::kafka::Message;
use sdk::standby_table::StandbyTable;
use serde_json::Value;
use shared::state_table::StateTable;
use wire::headers;
use wire::record::{Header, StandbyRecord};

const BATCH: usize = 1000;
const ROUNDS: usize = 3;

struct Setup {
    aws: aws_config::SdkConfig,
    topic: String,
    env: HashMap<String, String>,
}

fn records(topic: &str, keys: usize) -> Vec<StandbyRecord> {
    (0..BATCH)
        .map(|n| {
            testkit::standby_record(topic)
                .key(format!("key-{}", n % keys))
                .payload([b'x'; 512])
                .header("trace", "bench")
                .producer("bench")
                .build()
        })
        .collect()
}

async fn fresh_table(setup: &Setup, records: &[StandbyRecord]) -> Result<(StandbyTable, String)> {
    let dynamodb = aws_sdk_dynamodb::Client::new(&setup.aws);
    let table = StandbyTable::new(dynamodb.clone(), testkit::unique_name("bench-standby"));
    table.create().await?;
    let state = testkit::unique_name("bench-state");
    StateTable::new(dynamodb, &state).create().await?;
    for record in records {
        table.put_new(record).await?;
    }
    Ok((table, state))
}

/// A `Table` that trusts the batch: a key's backlog is what the batch holds of it (no read).
struct TrustTheBatch {
    inner: DynamoTable,
    batch: Vec<Entry>,
}

impl Table for TrustTheBatch {
    async fn delete(&self, keys: &[ItemKey]) -> Result<(), DeleteFailure> {
        self.inner.delete(keys).await
    }

    async fn backlog(
        &self,
        pk: &str,
        after: Option<&str>,
        up_to: &str,
        limit: usize,
    ) -> Result<(Vec<Entry>, bool), String> {
        let matching: Vec<Entry> = self
            .batch
            .iter()
            .filter(|e| {
                e.key.as_ref().is_some_and(|k| {
                    k.pk == pk
                        && k.event_id.as_str() <= up_to
                        && after.is_none_or(|a| k.event_id.as_str() > a)
                })
            })
            .cloned()
            .collect();
        let more = matching.len() > limit;
        Ok((matching.into_iter().take(limit).collect(), more))
    }

    async fn backlog_ids(
        &self,
        pk: &str,
        after: Option<&str>,
        up_to: &str,
        limit: usize,
    ) -> Result<(Vec<String>, bool), String> {
        let (page, more) = self.backlog(pk, after, up_to, limit).await?;
        Ok((
            page.iter().map(|e| e.event_id().to_string()).collect(),
            more,
        ))
    }
}

/// The republisher: one Lambda invocation with the whole batch (stream reading not timed).
async fn republisher_round(setup: &Setup, keys: usize, gate: bool) -> Result<Duration> {
    let records = records(&setup.topic, keys);
    let (table, state) = fresh_table(setup, &records).await?;
    let mut env = setup.env.clone();
    env.insert("STANDBY_TABLE_NAME".into(), table.name().into());
    env.insert("STATE_TABLE_NAME".into(), state);
    let app = App::new(
        Settings::from_env(&env)?,
        aws_sdk_dynamodb::Client::new(&setup.aws),
    )?;
    warm_up(&app, &setup.topic).await?;
    if gate {
        drain_once(&app, &setup.aws, &table).await
    } else {
        let batch = entry::from_items(records.iter().map(StandbyRecord::to_item).collect());
        let app = App {
            table: TrustTheBatch {
                inner: app.table,
                batch,
            },
            sink: app.sink,
            standby: app.standby,
            state: app.state,
            settings: app.settings,
        };
        drain_once(&app, &setup.aws, &table).await
    }
}

async fn drain_once<T: Table>(
    app: &App<republisher::adapters::KafkaSink, T>,
    aws: &aws_config::SdkConfig,
    table: &StandbyTable,
) -> Result<Duration> {
    let app = &app;

    let mut driver = StreamDriver::new(aws, table.name()).await?;
    driver.batch_size = BATCH;
    let elapsed = std::sync::Mutex::new(Duration::ZERO);
    let (app, elapsed_ref) = (&app, &elapsed);
    driver
        .step(|event: Value| async move {
            let started = Instant::now();
            let response = handle(app, testkit::invocation(event)).await;
            *elapsed_ref.lock().unwrap() = started.elapsed();
            response
        })
        .await?;
    let elapsed = elapsed.into_inner().unwrap();
    let (left, _) = table.scan_page(None, 1000).await?;
    anyhow::ensure!(left.is_empty(), "republisher left {} items", left.len());
    Ok(elapsed)
}

/// Connects the producer before timing, as a warm Lambda execution environment would be.
async fn warm_up<S: republisher::engine::Sink, T>(app: &App<S, T>, topic: &str) -> Result<()> {
    let record = records(topic, 1).remove(0);
    app.sink.republish(&record).await?;
    Ok(())
}

/// The named baseline: publish one record, wait for the ack, delete it; then the next.
async fn sequential_round(setup: &Setup, keys: usize) -> Result<Duration> {
    let records = records(&setup.topic, keys);
    let (table, state) = fresh_table(setup, &records).await?;
    let mut env = setup.env.clone();
    env.insert("STANDBY_TABLE_NAME".into(), table.name().into());
    env.insert("STATE_TABLE_NAME".into(), state);
    let settings = Settings::from_env(&env)?;
    let producer = settings.kafka.producer()?;
    producer
        .send(
            FutureRecord::<[u8], [u8]>::to(&setup.topic).payload(b"warm-up"),
            Duration::from_secs(5),
        )
        .await
        .map_err(|(e, _)| e)?;

    let started = Instant::now();
    for record in &records {
        let id_header = [Header::new(headers::EVENT_ID, record.event_id.to_string())];
        let message = Message {
            topic: &record.topic,
            key: record.key.as_deref(),
            value: &record.value,
            headers: &record.headers,
            extra: &id_header,
        };
        producer
            .send(message.record(), Duration::from_secs(5))
            .await
            .map_err(|(e, _)| e)?;
        table
            .delete_in_order(&[ItemKey {
                pk: record.partition_key(),
                event_id: record.event_id.to_string(),
            }])
            .await
            .map_err(|stopped| anyhow::anyhow!(stopped.reason))?;
    }
    Ok(started.elapsed())
}

fn per_second(duration: Duration) -> f64 {
    BATCH as f64 / duration.as_secs_f64()
}

#[tokio::main]
async fn main() -> Result<()> {
    let stack = Stack::attach()?;
    let aws = testkit::aws_config(&stack.aws_endpoint()).await;
    let topic = testkit::unique_name("bench");
    testkit::create_topic(&stack.bootstrap_servers(), &topic, 6, 3, &[]).await?;
    let env = testkit::kafka_env(
        &stack.bootstrap_servers(),
        [
            ("STANDBY_DEAD_LETTER_TOPIC", "bench-dlt"),
            ("EVENT_TOPICS", topic.as_str()),
        ],
    );
    let setup = Setup { aws, topic, env };

    // The handler prints its EMF metric lines on stdout; the table comes after them.
    let mut rows = Vec::new();
    for (label, keys) in [("200 keys x 5 records", 200), ("1 key x 1000 records", 1)] {
        let (mut ours, mut ungated, mut baseline) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            ours.push(republisher_round(&setup, keys, true).await?);
            ungated.push(republisher_round(&setup, keys, false).await?);
            baseline.push(sequential_round(&setup, keys).await?);
        }
        let (ours, ungated, baseline) = (
            testkit::median(ours),
            testkit::median(ungated),
            testkit::median(baseline),
        );
        rows.push(format!(
            "{label:<22} {:>15.0} {:>17.0} {:>26.0} {:>7.1}x {:>9.2}x",
            per_second(ours),
            per_second(ungated),
            per_second(baseline),
            baseline.as_secs_f64() / ours.as_secs_f64(),
            ours.as_secs_f64() / ungated.as_secs_f64()
        ));
    }
    println!(
        "\ndrain of a {BATCH}-record batch, median of {ROUNDS} rounds (3 Kafka brokers, acks=all, moto)"
    );
    println!(
        "{:<22} {:>15} {:>17} {:>26} {:>8} {:>10}",
        "batch",
        "republisher r/s",
        "without gate r/s",
        "baseline (sequential) r/s",
        "ratio",
        "gate cost"
    );
    for row in rows {
        println!("{row}");
    }
    Ok(())
}
