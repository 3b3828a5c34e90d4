//! Gateway benchmark on the local stack (`make stack-up` first; `make bench` runs it).
//!
//! Events per second through the gateway's handler (in process: HTTP parsing and the Lambda
//! runtime are API Gateway's and Lambda's, not ours), for batches of 1 and of 100 events of about
//! 1 KB, against the named baseline measured in the same run: the producer SDK publishing the
//! same events to the same topic with the same schema (batches of 100 sent concurrently, one
//! event per key, as the gateway sends them). Then the gateway's own cost per event: the handler
//! on batches whose last event is invalid, so it authenticates, authorizes, parses and validates
//! everything and publishes nothing.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use devstack::Stack;
use devstack::issuer::Issuer;
use devstack::testkit;
use gateway::event_types::{EventType, EventTypeStore};
use gateway::handler::{App, handle};
use gateway::ids::IdAssigner;
use lambda_http::{Body, Request};
use sdk::fallback::{FallbackProducer, FallbackSettings};
use sdk::kafka::KafkaSettings;
use sdk::producer::{OutgoingEvent, Producer, ProducerSettings, Route, TopicSchema, VersionChoice};
use sdk::schema::{GlueRegistry, Payload, SchemaCache, SchemaName};
use sdk::standby_table::StandbyTable;
use serde_json::{Value, json};

const EVENTS: usize = 2_000;
const KEYS: usize = 100;
const SCHEMA: &str = r#"{"type":"object","required":["order_id","customer","lines","total"],
 "properties":{"order_id":{"type":"string"},"customer":{"type":"string"},
  "total":{"type":"number","minimum":0},
  "lines":{"type":"array","items":{"type":"object","required":["sku","qty","price"],
   "properties":{"sku":{"type":"string"},"qty":{"type":"integer","minimum":1},"price":{"type":"number"}}}}}}"#;

/// About 1 KB of JSON; one key per `n % KEYS`.
fn order(n: usize) -> Value {
    json!({
        "order_id": format!("o-{:04}", n % KEYS), "customer": "customer-42", "total": 123.5,
        "lines": (0..16).map(|i| json!({"sku": format!("sku-{i:05}-blue-xl"), "qty": 1 + i % 3, "price": 9.99})).collect::<Vec<_>>(),
    })
}

fn rate(events: usize, elapsed: Duration) -> f64 {
    events as f64 / elapsed.as_secs_f64()
}

fn request(event_type: &str, token: &str, events: &[Value]) -> Request {
    lambda_http::http::Request::builder()
        .method("POST")
        .uri(format!("/event-types/{event_type}/events"))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::from(serde_json::to_vec(events).unwrap_or_default()))
        .unwrap_or_default()
}

/// Runs `batches` through the handler one request at a time; the time taken.
async fn through_handler(
    app: &App,
    event_type: &str,
    token: &str,
    batches: &[Vec<Value>],
    expected: u16,
) -> Result<Duration> {
    let started = Instant::now();
    for batch in batches {
        let response = handle(app, request(event_type, token, batch)).await?;
        ensure!(
            response.status().as_u16() == expected,
            "status {}: {:?}",
            response.status(),
            response.body()
        );
    }
    Ok(started.elapsed())
}

#[tokio::main]
async fn main() -> Result<()> {
    let stack = Stack::attach()?;
    let aws = testkit::aws_config(&stack.aws_endpoint()).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let bootstrap = stack.bootstrap_servers();
    let topic = testkit::unique_name("bench-gateway");
    let dead_letter_topic = testkit::unique_name("bench-gateway-dlt");
    testkit::create_topic(&bootstrap, &topic, 6, 3, &[]).await?;
    testkit::create_topic(&bootstrap, &dead_letter_topic, 1, 3, &[]).await?;
    let standby = StandbyTable::new(dynamodb.clone(), testkit::unique_name("bench-gw-standby"));
    standby.create().await?;
    let types = EventTypeStore::new(dynamodb.clone(), testkit::unique_name("bench-event-types"));
    types.create().await?;
    let ids = IdAssigner::new(
        dynamodb.clone(),
        testkit::unique_name("bench-gateway-ids"),
        Duration::from_secs(3600),
    );
    ids.create().await?;
    let schema_name = testkit::unique_name("bench-order");
    testkit::glue_schema(&aws, testkit::TEST_REGISTRY, &schema_name, "JSON", SCHEMA).await?;
    let event_type = "order-created";
    types
        .put(&EventType {
            name: event_type.into(),
            topic: topic.clone(),
            schema_registry: testkit::TEST_REGISTRY.into(),
            schema_name: schema_name.clone(),
            partition_key: Some("/order_id".into()),
            writers: BTreeSet::from(["acme".to_string()]),
            enabled: true,
        })
        .await?;
    let issuer = Issuer::start("partner-events").await?;
    let token = issuer.token("acme", &[])?;

    let env: HashMap<String, String> = testkit::kafka_env(
        &bootstrap,
        [
            ("KAFKA_DELIVERY_TIMEOUT_MS", "10000"),
            ("STANDBY_TABLE_NAME", standby.name()),
            ("STANDBY_DEAD_LETTER_TOPIC", dead_letter_topic.as_str()),
            ("STANDBY_PRODUCER_ID", "bench-gateway"),
            ("EVENT_TOPICS", topic.as_str()),
            ("EVENT_TYPES_TABLE", types.table()),
            ("GATEWAY_IDS_TABLE", ids.table()),
            ("JWT_ISSUER", issuer.url.as_str()),
            ("JWT_AUDIENCE", "partner-events"),
        ],
    );
    let app = App::new(&env, &aws)?;

    // The baseline: the producer SDK, same topic, schema, events and delivery settings.
    let kafka = KafkaSettings::from_env(&env, "bench-sdk", Duration::from_secs(10))?;
    let fallback = FallbackProducer::from_settings(
        &kafka,
        standby.clone(),
        FallbackSettings {
            producer_id: "bench-sdk".into(),
            dead_letter_topic: dead_letter_topic.clone(),
            retention: Duration::from_secs(3600),
            recheck_max_delay: sdk::fallback::DEFAULT_RECHECK_MAX_DELAY,
            signal_interval: sdk::fallback::DEFAULT_SIGNAL_INTERVAL,
        },
    )?;
    let cache = Arc::new(SchemaCache::new(Arc::new(GlueRegistry::new(
        aws_sdk_glue::Client::new(&aws),
    ))));
    let producer = Producer::start(
        cache,
        vec![Route::new("", fallback)],
        ProducerSettings {
            topics: vec![TopicSchema {
                topic: topic.clone(),
                schema: SchemaName::new(testkit::TEST_REGISTRY, &schema_name),
                version: VersionChoice::Latest,
            }],
            ..ProducerSettings::new(testkit::TEST_REGISTRY)
        },
    )
    .await?;

    let events: Vec<Value> = (0..EVENTS).map(order).collect();
    let outgoing: Vec<OutgoingEvent> = events
        .iter()
        .map(|e| {
            OutgoingEvent::new(
                &topic,
                e["order_id"].as_str().map(|k| k.as_bytes().to_vec()),
                Payload::Json(e.clone()),
            )
        })
        .collect();
    // Warm up both paths: connections, metadata, the schema, the issuer's keys.
    producer.send(&outgoing[0]).await?;
    through_handler(&app, event_type, &token, &[events[..1].to_vec()], 200).await?;

    let started = Instant::now();
    for event in &outgoing {
        producer.send(event).await?;
    }
    let sdk_single = started.elapsed();
    let started = Instant::now();
    for chunk in outgoing.chunks(100) {
        for result in futures::future::join_all(chunk.iter().map(|e| producer.send(e))).await {
            result?;
        }
    }
    let sdk_batched = started.elapsed();

    let singles: Vec<Vec<Value>> = events.iter().map(|e| vec![e.clone()]).collect();
    let hundreds: Vec<Vec<Value>> = events.chunks(100).map(<[Value]>::to_vec).collect();
    let with_ids: Vec<Vec<Value>> = hundreds
        .iter()
        .enumerate()
        .map(|(b, batch)| {
            batch
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let mut e = e.clone();
                    e["metadata"] = json!({"eid": format!("bench-{b}-{i}")});
                    e
                })
                .collect()
        })
        .collect();
    let gateway_single = through_handler(&app, event_type, &token, &singles, 200).await?;
    let gateway_batched = through_handler(&app, event_type, &token, &hundreds, 200).await?;
    let gateway_ids = through_handler(&app, event_type, &token, &with_ids, 200).await?;

    // The gateway's own work: the last event of each batch is invalid, so all of it is
    // authenticated, parsed and validated, and nothing is published.
    let invalid = |batch: &Vec<Value>| {
        let mut batch = batch.clone();
        if let Some(last) = batch.last_mut() {
            last["total"] = json!(-1);
        }
        batch
    };
    let refused_singles: Vec<Vec<Value>> = singles.iter().map(invalid).collect();
    let refused_hundreds: Vec<Vec<Value>> = hundreds.iter().map(invalid).collect();
    let own_single = through_handler(&app, event_type, &token, &refused_singles, 422).await?;
    let own_batched = through_handler(&app, event_type, &token, &refused_hundreds, 422).await?;

    println!(
        "gateway benchmark: {EVENTS} events of ~1 KB per row, {KEYS} keys, local 3-broker cluster (acks=all)"
    );
    println!("{:<58} {:>10} {:>8}", "path", "events/s", "ratio");
    let row = |name: &str, elapsed: Duration, baseline: Duration| {
        println!(
            "{name:<58} {:>10.0} {:>8.2}",
            rate(EVENTS, elapsed),
            baseline.as_secs_f64() / elapsed.as_secs_f64()
        );
    };
    row(
        "baseline: producer SDK, one event at a time",
        sdk_single,
        sdk_single,
    );
    row("gateway handler, batches of 1", gateway_single, sdk_single);
    row(
        "baseline: producer SDK, 100 at a time (concurrent)",
        sdk_batched,
        sdk_batched,
    );
    row(
        "gateway handler, batches of 100",
        gateway_batched,
        sdk_batched,
    );
    row(
        "gateway handler, batches of 100 with callers' ids",
        gateway_ids,
        sdk_batched,
    );
    println!(
        "gateway's own work per event (authenticate, authorize, parse, validate): {:.1} µs in batches of 1, {:.1} µs in batches of 100",
        own_single.as_secs_f64() * 1e6 / EVENTS as f64,
        own_batched.as_secs_f64() * 1e6 / EVENTS as f64,
    );
    Ok(())
}
