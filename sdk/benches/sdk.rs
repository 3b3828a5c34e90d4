//! SDK benchmark on the local stack (`make stack-up` first; `make bench` runs it).
//!
//! 1. **Validation against the produce round trip.** Encoding (validate + serialize) and
//!    decoding (parse + validate) a ~1 KB event with a compiled JSON schema and a compiled Avro
//!    schema, per event, against the named baseline measured in the same run: one produce to
//!    the local brokers, `acks=all`, waited for (median of sequential sends).
//! 2. **Consumer throughput against plain consume loops.** The same topic read to its end by two
//!    named baselines — an rdkafka `StreamConsumer` loop that only receives (1), and one that
//!    also parses each JSON payload and stores its offset, the least an application does (2) —
//!    and by the SDK's consumer with validation and dedupe on and a handler that does nothing.
//!    Prints events/s for each and the SDK's ratios (the issue's target: 0.8).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use apache_avro::types::Value as AvroValue;
use devstack::Stack;
use devstack::testkit;
use futures::StreamExt;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use sdk::consumer::dedupe::MemoryDedupe;
use sdk::consumer::retry::RetryPolicy;
use sdk::consumer::{ConsumedEvent, Consumer, ConsumerSettings};
use sdk::kafka::{KafkaSettings, Message};
use sdk::schema::{CompiledSchema, DataFormat, GlueRegistry, Payload, SchemaCache, SchemaVersion};
use serde_json::json;
use uuid::Uuid;
use wire::envelope::{self, Compression, SchemaId};
use wire::headers;
use wire::record::{EventId, Header};

const VALIDATIONS: usize = 20_000;
const ROUND_TRIPS: usize = 300;
const EVENTS: usize = 50_000;

const JSON_SCHEMA: &str = r#"{"type":"object","required":["order_id","customer","lines","total"],
 "properties":{"order_id":{"type":"string"},"customer":{"type":"string"},
  "total":{"type":"number","minimum":0},
  "lines":{"type":"array","items":{"type":"object","required":["sku","qty","price"],
   "properties":{"sku":{"type":"string"},"qty":{"type":"integer","minimum":1},"price":{"type":"number"}}}}}}"#;
const AVRO_SCHEMA: &str = r#"{"type":"record","name":"Order","fields":[
 {"name":"order_id","type":"string"},{"name":"customer","type":"string"},{"name":"total","type":"double"},
 {"name":"lines","type":{"type":"array","items":{"type":"record","name":"Line","fields":[
  {"name":"sku","type":"string"},{"name":"qty","type":"int"},{"name":"price","type":"double"}]}}}]}"#;

/// An order of `lines` lines (16 make about 1 KB of JSON).
fn json_order(lines: usize) -> serde_json::Value {
    json!({
        "order_id": "o-0001", "customer": "customer-42", "total": 123.5,
        "lines": (0..lines).map(|i| json!({"sku": format!("sku-{i:05}-blue-xl"), "qty": 1 + i % 3, "price": 9.99})).collect::<Vec<_>>(),
    })
}

fn avro_order(lines: usize) -> AvroValue {
    let line = |i: usize| {
        AvroValue::Record(vec![
            (
                "sku".into(),
                AvroValue::String(format!("sku-{i:05}-blue-xl")),
            ),
            ("qty".into(), AvroValue::Int(1 + (i % 3) as i32)),
            ("price".into(), AvroValue::Double(9.99)),
        ])
    };
    AvroValue::Record(vec![
        ("order_id".into(), AvroValue::String("o-0001".into())),
        ("customer".into(), AvroValue::String("customer-42".into())),
        ("total".into(), AvroValue::Double(123.5)),
        (
            "lines".into(),
            AvroValue::Array((0..lines).map(line).collect()),
        ),
    ])
}

fn per_event(elapsed: Duration, n: usize) -> Duration {
    elapsed / n as u32
}

fn validation(
    format: DataFormat,
    definition: &str,
    payload: Payload,
) -> Result<(usize, Duration, Duration)> {
    let schema = CompiledSchema::compile(&SchemaVersion {
        id: Uuid::nil(),
        format,
        definition: definition.into(),
        number: None,
    })?;
    let bytes = schema.encode(&payload)?;
    let started = Instant::now();
    for _ in 0..VALIDATIONS {
        std::hint::black_box(schema.encode(std::hint::black_box(&payload))?);
    }
    let encode = per_event(started.elapsed(), VALIDATIONS);
    let started = Instant::now();
    for _ in 0..VALIDATIONS {
        std::hint::black_box(schema.decode(std::hint::black_box(&bytes))?);
    }
    let decode = per_event(started.elapsed(), VALIDATIONS);
    Ok((bytes.len(), encode, decode))
}

#[tokio::main]
async fn main() -> Result<()> {
    sdk::metrics::emit_metrics_to_stdout(false);
    let stack = Stack::attach()?;
    let bootstrap = stack.bootstrap_servers();
    let kafka = KafkaSettings::from_env(
        &testkit::kafka_env(&bootstrap, []),
        "bench",
        Duration::from_secs(10),
    )?;

    // 1. Validation against the produce round trip.
    let (json_bytes, json_encode, json_decode) =
        validation(DataFormat::Json, JSON_SCHEMA, Payload::Json(json_order(16)))?;
    let (avro_bytes, avro_encode, avro_decode) =
        validation(DataFormat::Avro, AVRO_SCHEMA, Payload::Avro(avro_order(22)))?;
    let topic = testkit::unique_name("bench-sdk");
    testkit::create_topic(&bootstrap, &topic, 6, 3, &[]).await?;
    let producer = kafka.producer()?;
    let value = vec![b'x'; 1024];
    let mut round_trips = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let started = Instant::now();
        let message = Message {
            topic: &topic,
            key: Some(b"k"),
            value: &value,
            headers: &[],
            extra: &[],
        };
        producer
            .send(message.record(), Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)?;
        round_trips.push(started.elapsed());
    }
    let round_trip = testkit::median(round_trips);
    println!(
        "validation per event, against one produce round trip (median of {ROUND_TRIPS}, acks=all): {round_trip:?}"
    );
    for (name, bytes, encode, decode) in [
        ("JSON Schema", json_bytes, json_encode, json_decode),
        ("Avro", avro_bytes, avro_encode, avro_decode),
    ] {
        println!(
            "  {name:<11} {bytes:>5} B   encode {encode:>9.2?} ({:.4} of a round trip)   decode {decode:>9.2?} ({:.4})",
            encode.as_secs_f64() / round_trip.as_secs_f64(),
            decode.as_secs_f64() / round_trip.as_secs_f64(),
        );
    }

    // 2. Consumer throughput against a plain consume loop.
    let aws = testkit::aws_config(&stack.aws_endpoint()).await;
    let consumed = testkit::unique_name("bench-consumed");
    let dead_letter = testkit::unique_name("bench-consumer-dlt");
    testkit::create_topic(&bootstrap, &consumed, 6, 3, &[]).await?;
    testkit::create_topic(&bootstrap, &dead_letter, 1, 3, &[]).await?;
    let version: Uuid =
        testkit::glue_schema(&aws, testkit::TEST_REGISTRY, &consumed, "JSON", JSON_SCHEMA)
            .await?
            .parse()?;
    let framed = envelope::frame(
        SchemaId::Glue(version),
        Compression::None,
        json_order(16).to_string().as_bytes(),
    );
    let sends = (0..EVENTS).map(|n| {
        let producer = &producer;
        let framed = &framed;
        let consumed = &consumed;
        async move {
            let key = format!("key-{}", n % 500);
            let id = [Header::new(headers::EVENT_ID, EventId::new().to_string())];
            let message = Message {
                topic: consumed,
                key: Some(key.as_bytes()),
                value: framed,
                headers: &[],
                extra: &id,
            };
            producer
                .send(message.record(), Duration::from_secs(30))
                .await
                .map_err(|(e, _)| e)
        }
    });
    futures::stream::iter(sends)
        .buffer_unordered(2000)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;

    let baseline = {
        let consumer: StreamConsumer = kafka
            .client_config()
            .set("group.id", testkit::unique_name("bench-plain"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()?;
        consumer.subscribe(&[&consumed])?;
        let first = consumer.recv().await?;
        std::hint::black_box(rdkafka::Message::payload(&first));
        let started = Instant::now();
        for _ in 1..EVENTS {
            let message = consumer.recv().await?;
            std::hint::black_box(rdkafka::Message::payload(&message));
        }
        started.elapsed()
    };

    // The second baseline: what an application without the SDK minimally does per event:
    // parse the JSON behind the prefix and store the offset for commit.
    let parsing = {
        let consumer: StreamConsumer = kafka
            .client_config()
            .set("group.id", testkit::unique_name("bench-parsing"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.offset.store", "false")
            .create()?;
        consumer.subscribe(&[&consumed])?;
        let handle = |message: &rdkafka::message::BorrowedMessage<'_>| -> Result<()> {
            let value = rdkafka::Message::payload(message).unwrap_or_default();
            let body: serde_json::Value = serde_json::from_slice(&value[18..])?;
            std::hint::black_box(body);
            consumer.store_offset_from_message(message)?;
            Ok(())
        };
        handle(&consumer.recv().await?)?;
        let started = Instant::now();
        for _ in 1..EVENTS {
            handle(&consumer.recv().await?)?;
        }
        started.elapsed()
    };

    let sdk = {
        let schemas = Arc::new(SchemaCache::new(Arc::new(GlueRegistry::new(
            aws_sdk_glue::Client::new(&aws),
        ))));
        let consumer = Arc::new(Consumer::new(
            kafka.clone(),
            ConsumerSettings {
                retry: RetryPolicy {
                    delays: vec![],
                    ..RetryPolicy::default()
                },
                metrics_interval: Duration::from_secs(3600),
                ..ConsumerSettings::new(
                    testkit::unique_name("bench-sdk"),
                    vec![consumed.clone()],
                    &dead_letter,
                )
            },
            schemas,
            Arc::new(MemoryDedupe::default()),
            |event: Arc<ConsumedEvent>| async move {
                std::hint::black_box(event);
                Ok(())
            },
        ));
        let (stop, running) = testkit::run_consumer(consumer.clone());
        // Timed from the first handled event, as the baseline is from its first message: both
        // leave out joining the group.
        while consumer.stats().handled == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let started = Instant::now();
        while (consumer.stats().handled as usize) < EVENTS {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let elapsed = started.elapsed();
        let _ = stop.send(());
        running.await??;
        elapsed
    };
    let rate = |elapsed: Duration| (EVENTS - 1) as f64 / elapsed.as_secs_f64();
    println!(
        "consumer throughput, {EVENTS} events of {} B over 6 partitions:",
        framed.len()
    );
    println!(
        "  plain loop, receive only (baseline 1):                   {:>9.0} events/s",
        rate(baseline)
    );
    println!(
        "  plain loop, parse the JSON and store offsets (baseline 2): {:>9.0} events/s",
        rate(parsing)
    );
    println!(
        "  SDK consumer, validation + dedupe + offsets:              {:>9.0} events/s ({:.2} of baseline 1, {:.2} of baseline 2)",
        rate(sdk),
        rate(sdk) / rate(baseline),
        rate(sdk) / rate(parsing)
    );
    Ok(())
}
