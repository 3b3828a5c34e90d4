//! The producer SDK on the real local stack: schemas in Glue (moto), events in Kafka.
//!
//! Needs the stack: `make stack-up`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use apache_avro::types::Value as AvroValue;
use aws_config::SdkConfig;
use devstack::testkit::{self, Consumed};
use devstack::{PrivateMoto, Stack};
use sdk::fallback::{FallbackProducer, FallbackSettings, Outcome};
use sdk::kafka::KafkaSettings;
use sdk::producer::{
    OutgoingEvent, Producer, ProducerSettings, Route, SendError, StartError, TopicSchema,
    VersionChoice,
};
use sdk::schema::{GlueRegistry, Payload, SchemaCache, SchemaName};
use sdk::standby_table::StandbyTable;
use serde_json::json;
use uuid::Uuid;
use wire::dead_letter::{ErrorClass, Source};
use wire::envelope::{Compression, Envelope, SchemaId};
use wire::headers;

const ORDER_JSON: &str = r#"{"type":"object","required":["order_id","total"],
  "properties":{"order_id":{"type":"string"},"total":{"type":"number","minimum":0}}}"#;
const ORDER_AVRO: &str = r#"{"type":"record","name":"Order","fields":[
  {"name":"order_id","type":"string"},{"name":"total","type":"double"}]}"#;

struct Rig {
    stack: Stack,
    producer: Producer,
    cache: Arc<SchemaCache>,
    json_topic: String,
    avro_topic: String,
    dead_letter_topic: String,
    json_version: Uuid,
    avro_version: Uuid,
}

/// Topics, schemas in the tests' registry on `registry_aws`, and a producer configured for both
/// topics, routed to the local cluster.
async fn rig(registry_aws: &SdkConfig, compression: Compression) -> Result<Rig> {
    let stack = Stack::attach()?;
    let bootstrap = stack.bootstrap_servers();
    let json_topic = testkit::unique_name("orders-json");
    let avro_topic = testkit::unique_name("orders-avro");
    let dead_letter_topic = testkit::unique_name("producer-dlt");
    for topic in [&json_topic, &avro_topic, &dead_letter_topic] {
        testkit::create_topic(&bootstrap, topic, 3, 3, &[]).await?;
    }
    let registry = testkit::TEST_REGISTRY;
    let json_version =
        testkit::glue_schema(registry_aws, registry, &json_topic, "JSON", ORDER_JSON)
            .await?
            .parse()?;
    let avro_version =
        testkit::glue_schema(registry_aws, registry, &avro_topic, "AVRO", ORDER_AVRO)
            .await?
            .parse()?;

    let cache = Arc::new(SchemaCache::new(Arc::new(GlueRegistry::new(
        aws_sdk_glue::Client::new(registry_aws),
    ))));
    let route = Route::new("", fallback(&stack, &bootstrap, &dead_letter_topic).await?);
    let settings = ProducerSettings {
        topics: vec![
            TopicSchema {
                topic: json_topic.clone(),
                schema: SchemaName::new(registry, &json_topic),
                version: VersionChoice::Latest,
            },
            TopicSchema {
                topic: avro_topic.clone(),
                schema: SchemaName::new(registry, &avro_topic),
                version: VersionChoice::Definition(ORDER_AVRO.into()),
            },
        ],
        compression,
        ..ProducerSettings::new(registry)
    };
    let producer = Producer::start(cache.clone(), vec![route], settings).await?;
    Ok(Rig {
        stack,
        producer,
        cache,
        json_topic,
        avro_topic,
        dead_letter_topic,
        json_version,
        avro_version,
    })
}

async fn fallback(
    stack: &Stack,
    bootstrap: &str,
    dead_letter_topic: &str,
) -> Result<FallbackProducer> {
    let aws = testkit::aws_config(&stack.aws_endpoint()).await;
    let table = StandbyTable::new(
        aws_sdk_dynamodb::Client::new(&aws),
        testkit::unique_name("standby"),
    );
    table.create().await?;
    let env = testkit::kafka_env(bootstrap, []);
    let kafka = KafkaSettings::from_env(&env, "producer-test", Duration::from_secs(5))?;
    let settings = FallbackSettings {
        producer_id: "producer-test".into(),
        dead_letter_topic: dead_letter_topic.into(),
        retention: Duration::from_secs(3600),
        recheck_max_delay: sdk::fallback::DEFAULT_RECHECK_MAX_DELAY,
        signal_interval: sdk::fallback::DEFAULT_SIGNAL_INTERVAL,
    };
    Ok(FallbackProducer::from_settings(&kafka, table, settings)?)
}

fn order(id: &str, total: f64) -> Payload {
    Payload::Json(json!({"order_id": id, "total": total}))
}

fn avro_order(id: &str, total: f64) -> Payload {
    Payload::Avro(AvroValue::Record(vec![
        ("order_id".into(), AvroValue::String(id.into())),
        ("total".into(), AvroValue::Double(total)),
    ]))
}

async fn read(stack: &Stack, topic: &str) -> Result<Vec<Consumed>> {
    testkit::read_topic_to_end(&stack.bootstrap_servers(), topic, Duration::from_secs(30)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn valid_events_reach_their_topic_framed_with_their_schema_version() -> Result<()> {
    let aws = testkit::aws_config(&Stack::attach()?.aws_endpoint()).await;
    for compression in [Compression::None, Compression::Zlib] {
        let rig = rig(&aws, compression).await?;
        let json_event =
            OutgoingEvent::new(&rig.json_topic, Some(b"c-1".to_vec()), order("o-1", 10.5))
                .header("trace", "t1");
        let avro_event = OutgoingEvent::new(
            &rig.avro_topic,
            Some(b"c-1".to_vec()),
            avro_order("o-2", 3.0),
        );
        for event in [&json_event, &avro_event] {
            let delivery = rig.producer.send(event).await?;
            assert!(
                matches!(delivery.outcome, Outcome::Kafka { .. }),
                "{delivery:?}"
            );
            assert_eq!(delivery.event_id, event.id);
        }
        for (topic, event, version) in [
            (&rig.json_topic, &json_event, rig.json_version),
            (&rig.avro_topic, &avro_event, rig.avro_version),
        ] {
            let messages = read(&rig.stack, topic).await?;
            let [message] = messages.as_slice() else {
                bail!("expected one message in {topic}, found {}", messages.len())
            };
            let value = message.value.as_deref().context("a value")?;
            let envelope = Envelope::parse(value)?;
            assert_eq!(envelope.schema, SchemaId::Glue(version));
            assert_eq!(envelope.compression, compression);
            let schema = rig.cache.by_id(version).await?;
            assert_eq!(schema.decode(&envelope.decoded_payload()?)?, event.payload);
            assert_eq!(
                message.header(headers::EVENT_ID),
                Some(event.id.to_string())
            );
        }
        let messages = read(&rig.stack, &rig.json_topic).await?;
        assert_eq!(messages[0].header("trace").as_deref(), Some("t1"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_event_goes_to_the_dead_letter_topic_with_its_error_and_nowhere_else()
-> Result<()> {
    let aws = testkit::aws_config(&Stack::attach()?.aws_endpoint()).await;
    let rig = rig(&aws, Compression::None).await?;
    let invalid = OutgoingEvent::new(
        &rig.json_topic,
        Some(b"c-9".to_vec()),
        Payload::Json(json!({"order_id": "o-9", "total": -4})),
    );
    let err = rig.producer.send(&invalid).await.unwrap_err();
    let SendError::Invalid {
        error, dead_letter, ..
    } = &err
    else {
        bail!("expected Invalid, got {err}")
    };
    assert_eq!(error.path, "/total");
    assert!(dead_letter.is_ok(), "{dead_letter:?}");
    assert!(!err.is_transient());

    // An Avro value of the wrong type: its JSON rendering is kept, labelled as such.
    let wrong_type = OutgoingEvent::new(
        &rig.avro_topic,
        None,
        Payload::Avro(AvroValue::Record(vec![
            ("order_id".into(), AvroValue::Long(1)),
            ("total".into(), AvroValue::Double(1.0)),
        ])),
    );
    assert!(matches!(
        rig.producer.send(&wrong_type).await,
        Err(SendError::Invalid { .. })
    ));

    let dead = read(&rig.stack, &rig.dead_letter_topic).await?;
    assert_eq!(dead.len(), 2);
    let context = dead[0]
        .dead_letter_context()
        .context("a dead-letter context")?;
    let json_dead = if context.original_topic.as_deref() == Some(&rig.json_topic) {
        &dead[0]
    } else {
        &dead[1]
    };
    let context = json_dead.dead_letter_context().context("context")?;
    assert_eq!(context.class, ErrorClass::Invalid);
    assert_eq!(context.source, Some(Source::ProducerValidation));
    assert_eq!(context.error_path.as_deref(), Some("/total"));
    assert_eq!(context.producer_id.as_deref(), Some("producer-test"));
    assert!(!context.reason.contains("-4"), "{}", context.reason);
    assert_eq!(
        json_dead.header(headers::EVENT_ID),
        Some(invalid.id.to_string())
    );
    let envelope = Envelope::parse(json_dead.value.as_deref().context("value")?)?;
    assert_eq!(envelope.schema, SchemaId::Glue(rig.json_version));

    // Neither reached its topic; a valid event afterwards does.
    rig.producer
        .send(&OutgoingEvent::new(
            &rig.json_topic,
            None,
            order("o-10", 1.0),
        ))
        .await?;
    assert_eq!(read(&rig.stack, &rig.json_topic).await?.len(), 1);
    assert!(read(&rig.stack, &rig.avro_topic).await?.is_empty());
    Ok(())
}

/// The registry is a moto server of this test's own, SIGKILLed once the producer has started:
/// the configured topics' schemas are cached, so their events keep flowing and none is lost;
/// an event of a topic whose schema was never fetched comes back to the caller, unpublished.
#[tokio::test(flavor = "multi_thread")]
async fn a_registry_outage_loses_nothing_with_cached_schemas() -> Result<()> {
    let mut registry_moto = tokio::task::block_in_place(PrivateMoto::start)?;
    let registry_aws = testkit::aws_config(&registry_moto.endpoint()).await;
    let rig = rig(&registry_aws, Compression::None).await?;
    let other_topic = testkit::unique_name("orders-unconfigured");
    testkit::create_topic(&rig.stack.bootstrap_servers(), &other_topic, 1, 3, &[]).await?;
    let requests_at_start = rig.cache.registry_requests();

    registry_moto.kill()?;
    let events: Vec<OutgoingEvent> = (0..50)
        .map(|n| {
            OutgoingEvent::new(
                &rig.json_topic,
                Some(format!("c-{}", n % 5).into_bytes()),
                order(&format!("o-{n}"), n as f64),
            )
        })
        .collect();
    for event in &events {
        let delivery = rig.producer.send(event).await?;
        assert!(matches!(delivery.outcome, Outcome::Kafka { .. }));
    }
    assert_eq!(
        rig.cache.registry_requests(),
        requests_at_start,
        "all cached"
    );

    let unknown = OutgoingEvent::new(&other_topic, None, order("o-x", 1.0));
    let err = rig.producer.send(&unknown).await.unwrap_err();
    assert!(
        matches!(err, SendError::SchemaUnavailable { .. }) && err.is_transient(),
        "{err}"
    );

    let arrived = read(&rig.stack, &rig.json_topic).await?;
    let mut ids: Vec<String> = arrived
        .iter()
        .filter_map(|m| m.header(headers::EVENT_ID))
        .collect();
    ids.sort();
    let mut sent: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
    sent.sort();
    assert_eq!(ids, sent, "every event arrived once");
    assert!(read(&rig.stack, &other_topic).await?.is_empty());
    Ok(())
}

/// What our producer put on the topics, decoded by an independent implementation: Python's
/// fastavro and jsonschema behind a Glue header parser written from AWS's description
/// (`tests/interop/glue_decode.py`), for both compressions.
#[tokio::test(flavor = "multi_thread")]
async fn events_framed_by_the_producer_are_decoded_by_an_independent_implementation() -> Result<()>
{
    let aws = testkit::aws_config(&Stack::attach()?.aws_endpoint()).await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut lines = String::new();
    let mut expected = Vec::new();
    for compression in [Compression::None, Compression::Zlib] {
        let rig = rig(&aws, compression).await?;
        rig.producer
            .send(&OutgoingEvent::new(
                &rig.json_topic,
                None,
                order("o-1", 2.5),
            ))
            .await?;
        rig.producer
            .send(&OutgoingEvent::new(
                &rig.avro_topic,
                None,
                avro_order("o-2", 7.25),
            ))
            .await?;
        for (topic, format, definition, version, payload) in [
            (
                &rig.json_topic,
                "JSON",
                ORDER_JSON,
                rig.json_version,
                json!({"order_id": "o-1", "total": 2.5}),
            ),
            (
                &rig.avro_topic,
                "AVRO",
                ORDER_AVRO,
                rig.avro_version,
                json!({"order_id": "o-2", "total": 7.25}),
            ),
        ] {
            let messages = read(&rig.stack, topic).await?;
            let value = messages[0].value.as_deref().context("a value")?;
            lines.push_str(
                &json!({"format": format, "definition": definition, "value": hex(value)})
                    .to_string(),
            );
            lines.push('\n');
            expected.push(json!({
                "schema_version_id": version.to_string(),
                "compressed": compression == Compression::Zlib,
                "payload": payload,
            }));
        }
    }
    let mut child = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/interop/glue_decode.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context(
            "running tests/interop/glue_decode.py with the venv's Python (make setup-stack)",
        )?;
    std::io::Write::write_all(&mut child.stdin.take().context("stdin")?, lines.as_bytes())?;
    let output = child.wait_with_output()?;
    anyhow::ensure!(
        output.status.success(),
        "the independent decoder refused our bytes: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let decoded: Vec<serde_json::Value> = String::from_utf8(output.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(decoded, expected);
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Twenty lookups of a schema version not yet cached, at once, against Glue (moto): one
/// request reaches the registry, and every lookup gets the compiled schema.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_misses_of_one_schema_make_one_registry_request() -> Result<()> {
    let aws = testkit::aws_config(&Stack::attach()?.aws_endpoint()).await;
    let schema = testkit::unique_name("concurrent");
    let version: Uuid =
        testkit::glue_schema(&aws, testkit::TEST_REGISTRY, &schema, "JSON", ORDER_JSON)
            .await?
            .parse()?;
    let cache = Arc::new(SchemaCache::new(Arc::new(GlueRegistry::new(
        aws_sdk_glue::Client::new(&aws),
    ))));
    let lookups = (0..20).map(|_| {
        let cache = cache.clone();
        tokio::spawn(async move { cache.by_id(version).await.map(|s| s.id()) })
    });
    for id in futures::future::join_all(lookups).await {
        assert_eq!(id??, version);
    }
    assert_eq!(cache.registry_requests(), 1);
    Ok(())
}

/// A fallback producer for one cluster of the routing table: its own connection settings,
/// standby table and dead-letter topic.
async fn cluster(
    stack: &Stack,
    env: std::collections::HashMap<&str, String>,
    dead_letter_topic: &str,
) -> Result<(FallbackProducer, StandbyTable)> {
    let aws = testkit::aws_config(&stack.aws_endpoint()).await;
    let table = StandbyTable::new(
        aws_sdk_dynamodb::Client::new(&aws),
        testkit::unique_name("standby-route"),
    );
    table.create().await?;
    let env: std::collections::HashMap<&str, &str> =
        env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let kafka = KafkaSettings::from_env(&env, "producer-route-test", Duration::from_secs(3))?;
    let settings = FallbackSettings {
        producer_id: "producer-route-test".into(),
        dead_letter_topic: dead_letter_topic.into(),
        retention: Duration::from_secs(3600),
        recheck_max_delay: sdk::fallback::DEFAULT_RECHECK_MAX_DELAY,
        signal_interval: sdk::fallback::DEFAULT_SIGNAL_INTERVAL,
    };
    Ok((
        FallbackProducer::from_settings(&kafka, table.clone(), settings)?,
        table,
    ))
}

/// One producer handle, three domains on three "clusters": `orders.` on the plaintext
/// listener, `payments.` over TLS (another connection, as another MSK cluster would be), and
/// `inventory.` on a cluster that is down. Each event goes to its own domain's cluster, standby
/// table and dead-letter topic; a topic of no domain is refused.
#[tokio::test(flavor = "multi_thread")]
async fn one_producer_routes_each_domain_to_its_own_cluster() -> Result<()> {
    let stack = Stack::attach()?;
    let bootstrap = stack.bootstrap_servers();
    let aws = testkit::aws_config(&stack.aws_endpoint()).await;
    let run = testkit::unique_name("routes");
    let (orders, payments, inventory) = (
        format!("orders.{run}"),
        format!("payments.{run}"),
        format!("inventory.{run}"),
    );
    let (orders_dlt, payments_dlt) = (format!("orders-dlt.{run}"), format!("payments-dlt.{run}"));
    for topic in [&orders, &payments, &inventory, &orders_dlt, &payments_dlt] {
        testkit::create_topic(&bootstrap, topic, 1, 3, &[]).await?;
    }
    for topic in [&orders, &payments, &inventory] {
        testkit::glue_schema(&aws, testkit::TEST_REGISTRY, topic, "JSON", ORDER_JSON).await?;
    }
    let plaintext = std::collections::HashMap::from([
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.clone()),
        ("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT".to_string()),
    ]);
    let tls = std::collections::HashMap::from([
        ("KAFKA_BOOTSTRAP_SERVERS", stack.tls_bootstrap_servers()),
        ("KAFKA_SECURITY_PROTOCOL", "SSL".to_string()),
        (
            "KAFKA_SSL_CA_LOCATION",
            stack.tls().ca.display().to_string(),
        ),
    ]);
    let down = std::collections::HashMap::from([
        (
            "KAFKA_BOOTSTRAP_SERVERS",
            format!("127.0.0.1:{}", devstack::process::free_port()?),
        ),
        ("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT".to_string()),
    ]);
    let (orders_cluster, orders_table) = cluster(&stack, plaintext, &orders_dlt).await?;
    let (payments_cluster, payments_table) = cluster(&stack, tls, &payments_dlt).await?;
    let (inventory_cluster, inventory_table) = cluster(&stack, down, &orders_dlt).await?;
    let cache = Arc::new(SchemaCache::new(Arc::new(GlueRegistry::new(
        aws_sdk_glue::Client::new(&aws),
    ))));
    let producer = Producer::start(
        cache,
        vec![
            Route::new("orders.", orders_cluster),
            Route::new("payments.", payments_cluster),
            Route::new("inventory.", inventory_cluster),
        ],
        ProducerSettings::new(testkit::TEST_REGISTRY),
    )
    .await?;

    let sent_order = OutgoingEvent::new(&orders, Some(b"c-1".to_vec()), order("o-1", 1.0));
    let sent_payment = OutgoingEvent::new(&payments, Some(b"c-1".to_vec()), order("p-1", 2.0));
    let sent_stock = OutgoingEvent::new(&inventory, Some(b"sku-1".to_vec()), order("i-1", 3.0));
    for event in [&sent_order, &sent_payment] {
        let delivery = producer.send(event).await?;
        assert!(
            matches!(delivery.outcome, Outcome::Kafka { .. }),
            "{delivery:?}"
        );
    }
    let delivery = producer.send(&sent_stock).await?;
    assert!(
        matches!(delivery.outcome, Outcome::Standby { .. }),
        "{delivery:?}"
    );
    let invalid_payment = OutgoingEvent::new(
        &payments,
        None,
        Payload::Json(json!({"order_id": "p-2", "total": -1})),
    );
    assert!(matches!(
        producer.send(&invalid_payment).await,
        Err(SendError::Invalid {
            dead_letter: Ok(_),
            ..
        })
    ));
    let nowhere = OutgoingEvent::new(format!("misc.{run}"), None, order("m", 1.0));
    assert!(matches!(
        producer.send(&nowhere).await,
        Err(SendError::NoRoute { .. })
    ));

    for (topic, event) in [(&orders, &sent_order), (&payments, &sent_payment)] {
        let arrived = read(&stack, topic).await?;
        assert_eq!(arrived.len(), 1, "{topic}");
        assert_eq!(
            arrived[0].header(headers::EVENT_ID),
            Some(event.id.to_string())
        );
    }
    assert!(read(&stack, &inventory).await?.is_empty());
    let waiting =
        |items: Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>| {
            items
                .into_iter()
                .filter_map(|item| wire::record::StandbyRecord::from_item(item).ok())
                .map(|r| r.event_id.to_string())
                .collect::<Vec<_>>()
        };
    assert_eq!(
        waiting(testkit::standby_items(&inventory_table).await?),
        [sent_stock.id.to_string()],
        "the down cluster's event waits in that cluster's table"
    );
    assert!(waiting(testkit::standby_items(&orders_table).await?).is_empty());
    assert!(waiting(testkit::standby_items(&payments_table).await?).is_empty());
    let dead = read(&stack, &payments_dlt).await?;
    assert_eq!(
        dead.len(),
        1,
        "the invalid payment is in the payments domain's dead-letter topic"
    );
    assert_eq!(
        dead[0].header(headers::EVENT_ID),
        Some(invalid_payment.id.to_string())
    );
    assert!(read(&stack, &orders_dlt).await?.is_empty());
    Ok(())
}

/// A producer pinned to the definition it was built with: without auto-registration a
/// definition the registry does not have stops the producer at start-up; with it, the
/// definition is registered (Glue checks compatibility in AWS; moto does not) and events carry
/// the new version.
#[tokio::test(flavor = "multi_thread")]
async fn a_pinned_definition_is_registered_only_when_asked() -> Result<()> {
    let stack = Stack::attach()?;
    let bootstrap = stack.bootstrap_servers();
    let aws = testkit::aws_config(&stack.aws_endpoint()).await;
    let topic = testkit::unique_name("orders-pinned");
    let dead_letter_topic = testkit::unique_name("orders-pinned-dlt");
    testkit::create_topic(&bootstrap, &topic, 1, 3, &[]).await?;
    testkit::create_topic(&bootstrap, &dead_letter_topic, 1, 3, &[]).await?;
    let first: Uuid =
        testkit::glue_schema(&aws, testkit::TEST_REGISTRY, &topic, "JSON", ORDER_JSON)
            .await?
            .parse()?;
    let v2 = r#"{"type":"object","required":["order_id","total"],
  "properties":{"order_id":{"type":"string"},"total":{"type":"number","minimum":0},"note":{"type":"string"}}}"#;
    let settings = |auto_register| ProducerSettings {
        topics: vec![TopicSchema {
            topic: topic.clone(),
            schema: SchemaName::new(testkit::TEST_REGISTRY, &topic),
            version: VersionChoice::Definition(v2.into()),
        }],
        auto_register,
        ..ProducerSettings::new(testkit::TEST_REGISTRY)
    };
    let cache = || {
        Arc::new(SchemaCache::new(Arc::new(GlueRegistry::new(
            aws_sdk_glue::Client::new(&aws),
        ))))
    };

    let refused = Producer::start(
        cache(),
        vec![Route::new(
            "",
            fallback(&stack, &bootstrap, &dead_letter_topic).await?,
        )],
        settings(false),
    )
    .await;
    assert!(
        matches!(&refused, Err(StartError::Schema { .. })),
        "{:?}",
        refused.as_ref().err()
    );

    let producer = Producer::start(
        cache(),
        vec![Route::new(
            "",
            fallback(&stack, &bootstrap, &dead_letter_topic).await?,
        )],
        settings(true),
    )
    .await?;
    producer
        .send(&OutgoingEvent::new(&topic, None, order("o-1", 1.0)))
        .await?;
    let arrived = read(&stack, &topic).await?;
    let envelope = Envelope::parse(arrived[0].value.as_deref().context("value")?)?;
    let SchemaId::Glue(registered) = envelope.schema else {
        bail!("Glue framing expected")
    };
    assert_ne!(
        registered, first,
        "framed with the newly registered version"
    );
    let latest = cache()
        .latest(&SchemaName::new(testkit::TEST_REGISTRY, &topic))
        .await?;
    assert_eq!(
        latest.id(),
        registered,
        "and it is the schema's latest version"
    );
    Ok(())
}
