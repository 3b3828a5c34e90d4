//! The gateway as partners reach it: real HTTP requests to cargo-lambda's function URL front
//! end, the gateway binary on the Lambda runtime API behind it, tokens signed by a test issuer
//! whose JWKS is served over HTTP, event types and ids in moto's DynamoDB, schemas in moto's
//! Glue, events in the local Kafka cluster.
//!
//! Needs the stack: `make stack-up`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use devstack::issuer::Issuer;
use devstack::lambda::{self, Emulator, ProcessGroup};
use devstack::stream_driver::StreamDriver;
use devstack::testkit::{self, Consumed};
use devstack::{PrivateMoto, Stack, process};
use gateway::event_types::{EventType, EventTypeStore};
use gateway::ids::IdAssigner;
use sdk::consumer::dedupe::MemoryDedupe;
use sdk::consumer::retry::RetryPolicy;
use sdk::consumer::{ConsumedEvent, Consumer, ConsumerSettings, ConsumerStats};
use sdk::kafka::KafkaSettings;
use sdk::schema::{GlueRegistry, SchemaCache};
use sdk::standby_table::StandbyTable;
use serde_json::{Value, json};
use tokio::sync::RwLock;
use wire::envelope::{Envelope, SchemaId};
use wire::headers::{self, cloud_events};

const ORDER_SCHEMA: &str = r#"{"type":"object","required":["order_id","total"],
  "properties":{"order_id":{"type":"string"},"total":{"type":"number","minimum":0},
  "lines":{"type":"array","items":{"type":"object","required":["sku"],"properties":{"sku":{"type":"string"}}}}}}"#;
const AUDIENCE: &str = "partner-events";
/// An app client of a Cognito-like issuer, whose access tokens carry it as `client_id` and
/// have no `aud`.
const APP_CLIENT: &str = "cognito-app-client";

struct Rig {
    stack: Stack,
    aws: SdkConfig,
    issuer: Issuer,
    types: EventTypeStore,
    standby: StandbyTable,
    /// The event type partners publish to; its topic.
    event_type: String,
    topic: String,
    dead_letter_topic: String,
    schema_version: uuid::Uuid,
    emulator: Emulator,
    _function: ProcessGroup,
    http: reqwest::Client,
}

/// What came back.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

/// The test that stops the brokers takes it for writing; the others for reading.
static CLUSTER: RwLock<()> = RwLock::const_new(());

/// How a rig differs from the plain one.
#[derive(Default)]
struct Options<'a> {
    /// The gateway's brokers are a closed port, as for a gateway cut off from the cluster.
    kafka_unreachable: bool,
    topic_configs: &'a [(&'a str, &'a str)],
    env: &'a [(&'a str, &'a str)],
    /// DynamoDB and Glue at this endpoint (a private moto) instead of the shared one.
    aws_endpoint: Option<String>,
}

/// A gateway on the local stack with one event type (`acme` and holders of `orders.write` may
/// publish; the partition key is `/order_id`).
async fn rig(options: Options<'_>) -> Result<Rig> {
    let stack = Stack::attach()?;
    let aws_endpoint = options
        .aws_endpoint
        .clone()
        .unwrap_or_else(|| stack.aws_endpoint());
    let aws = testkit::aws_config(&aws_endpoint).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let topic = testkit::unique_name("gateway-orders");
    let dead_letter_topic = testkit::unique_name("gateway-dlt");
    testkit::create_topic(
        &stack.bootstrap_servers(),
        &topic,
        3,
        3,
        options.topic_configs,
    )
    .await?;
    testkit::create_topic(&stack.bootstrap_servers(), &dead_letter_topic, 1, 3, &[]).await?;
    let standby = StandbyTable::new(dynamodb.clone(), testkit::unique_name("gw-standby"));
    standby.create().await?;
    let types = EventTypeStore::new(dynamodb.clone(), testkit::unique_name("event-types"));
    types.create().await?;
    let ids = IdAssigner::new(
        dynamodb.clone(),
        testkit::unique_name("gateway-ids"),
        Duration::from_secs(3600),
    );
    ids.create().await?;

    let schema_name = testkit::unique_name("order-created");
    let schema_version = testkit::glue_schema(
        &aws,
        testkit::TEST_REGISTRY,
        &schema_name,
        "JSON",
        ORDER_SCHEMA,
    )
    .await?
    .parse()?;
    let event_type = testkit::unique_name("order-created");
    types
        .put(&EventType {
            name: event_type.clone(),
            topic: topic.clone(),
            schema_registry: testkit::TEST_REGISTRY.into(),
            schema_name,
            partition_key: Some("/order_id".into()),
            writers: BTreeSet::from(["acme".to_string(), "scope:orders.write".to_string()]),
            enabled: true,
        })
        .await?;

    let issuer = Issuer::start(AUDIENCE).await?;
    let bootstrap = if options.kafka_unreachable {
        format!("127.0.0.1:{}", process::free_port()?)
    } else {
        stack.bootstrap_servers()
    };
    let mut env = lambda::local_function_env(&stack)?;
    for (name, value) in [
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.as_str()),
        ("AWS_ENDPOINT_URL", aws_endpoint.as_str()),
        ("KAFKA_DELIVERY_TIMEOUT_MS", "2000"),
        ("STANDBY_TABLE_NAME", standby.name()),
        ("STANDBY_DEAD_LETTER_TOPIC", dead_letter_topic.as_str()),
        ("STANDBY_PRODUCER_ID", "gateway-test"),
        ("EVENT_TOPICS", topic.as_str()),
        ("EVENT_TYPES_TABLE", types.table()),
        ("GATEWAY_IDS_TABLE", ids.table()),
        ("JWT_ISSUER", issuer.url.as_str()),
        ("JWT_AUDIENCE", &format!("{AUDIENCE},{APP_CLIENT}")),
        ("EVENT_TYPES_CACHE_SECONDS", "1"),
        ("GATEWAY_MAX_BODY_BYTES", "65536"),
        ("GATEWAY_MAX_EVENTS", "50"),
        ("GATEWAY_MAX_EVENT_BYTES", "4096"),
    ]
    .into_iter()
    .chain(options.env.iter().copied())
    {
        env.insert(name.into(), value.into());
    }
    let logs = stack.dir.join("gateway-tests");
    std::fs::create_dir_all(&logs)?;
    let emulator =
        Emulator::start(&env, true, &logs.join(format!("{event_type}-emulator.log"))).await?;
    let function = emulator.run_function(
        std::path::Path::new(env!("CARGO_BIN_EXE_gateway")),
        &env,
        &logs.join(format!("{event_type}.log")),
    )?;
    Ok(Rig {
        stack,
        aws,
        issuer,
        types,
        standby,
        event_type,
        topic,
        dead_letter_topic,
        schema_version,
        emulator,
        _function: function,
        http: gateway::auth::http_client(Duration::from_secs(60))?,
    })
}

impl Rig {
    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        token: Option<&str>,
    ) -> Result<Answer> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.emulator.function_url()))
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.context("calling the gateway")?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// `POST /event-types/{type}/events` with `body` as `content_type`.
    async fn publish(
        &self,
        event_type: &str,
        content_type: &str,
        body: &Value,
        token: Option<&str>,
    ) -> Result<Answer> {
        self.request(
            reqwest::Method::POST,
            &format!("/event-types/{event_type}/events"),
            Some(content_type),
            serde_json::to_vec(body)?,
            token,
        )
        .await
    }

    fn acme(&self) -> Result<String> {
        self.issuer.token("acme", &[])
    }

    async fn topic_messages(&self) -> Result<Vec<Consumed>> {
        testkit::read_topic_to_end(
            &self.stack.bootstrap_servers(),
            &self.topic,
            Duration::from_secs(20),
        )
        .await
    }
}

fn order(order_id: &str, n: u32) -> Value {
    json!({"order_id": order_id, "total": n, "lines": [{"sku": format!("sku-{n}")}]})
}

fn eids(answer: &Answer) -> Vec<String> {
    answer.body.as_array().map_or_else(Vec::new, |results| {
        results
            .iter()
            .map(|r| r["eid"].as_str().unwrap_or_default().to_string())
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn only_authenticated_writers_of_a_type_may_publish_it() -> Result<()> {
    let _shared = CLUSTER.read().await;
    let rig = rig(Options::default()).await?;
    let events = json!([order("o-1", 1)]);
    let publish = |token: Option<String>| {
        let rig = &rig;
        let events = &events;
        async move {
            rig.publish(
                &rig.event_type,
                "application/json",
                events,
                token.as_deref(),
            )
            .await
        }
    };

    // 401: no token, not a JWT, a forged signature under the issuer's key id, expired, another
    // audience or issuer, an algorithm the gateway does not accept.
    let key = rig.issuer.key();
    let forged = rig.issuer.unpublished_key(&key.kid)?;
    let claims = rig.issuer.claims("acme", &[], Duration::from_secs(600));
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = claims.clone();
        change(&mut claims);
        key.sign(&claims)
    };
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: Some(key.kid.clone()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        },
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"guessable")?,
    )?;
    let refused = [
        ("no token", None),
        ("not a JWT", Some("not-a-jwt".to_string())),
        ("forged signature", Some(forged.sign(&claims)?)),
        (
            "expired",
            Some(with(&|c| {
                c["exp"] = json!(devstack::issuer::now_secs() - 120)
            })?),
        ),
        (
            "wrong audience",
            Some(with(&|c| c["aud"] = json!("other-api"))?),
        ),
        (
            "wrong issuer",
            Some(with(&|c| c["iss"] = json!("https://evil.example"))?),
        ),
        (
            "not yet valid",
            Some(with(&|c| {
                c["nbf"] = json!(devstack::issuer::now_secs() + 600)
            })?),
        ),
        ("HS256", Some(hs256)),
    ];
    for (case, token) in refused {
        let answer = publish(token).await?;
        assert_eq!(answer.status, 401, "{case}: {answer:?}");
        let challenge = if case == "no token" {
            "Bearer"
        } else {
            "Bearer error=\"invalid_token\""
        };
        assert_eq!(answer.headers["www-authenticate"], challenge, "{case}");
    }

    // 403 for a caller that is not a writer: the same body whether the type exists or not.
    let stranger = rig.issuer.token("stranger", &["orders.read"])?;
    let not_writer = rig
        .publish(
            &rig.event_type,
            "application/json",
            &events,
            Some(&stranger),
        )
        .await?;
    let no_such_type = rig
        .publish("no-such-type", "application/json", &events, Some(&stranger))
        .await?;
    assert_eq!(not_writer.status, 403, "{not_writer:?}");
    assert_eq!(no_such_type.status, 403, "{no_such_type:?}");
    assert_eq!(not_writer.body, no_such_type.body);
    assert!(testkit::message_count(&rig.stack.bootstrap_servers(), &rig.topic)? == 0);

    // Writers by client id and by scope.
    let by_id = publish(Some(rig.acme()?)).await?;
    assert_eq!(by_id.status, 200, "{by_id:?}");
    let by_scope = publish(Some(rig.issuer.token("partner-b", &["orders.write"])?)).await?;
    assert_eq!(by_scope.status, 200, "{by_scope:?}");
    // A Cognito access token: no `aud`; its app client is an accepted audience.
    let mut cognito = rig
        .issuer
        .claims(APP_CLIENT, &["orders.write"], Duration::from_secs(600));
    cognito.as_object_mut().context("claims")?.remove("aud");
    let answer = publish(Some(key.sign(&cognito)?)).await?;
    assert_eq!(answer.status, 200, "{answer:?}");
    cognito["client_id"] = json!("another-app-client");
    let answer = publish(Some(key.sign(&cognito)?)).await?;
    assert_eq!(
        answer.status, 401,
        "another app client is another audience: {answer:?}"
    );

    // The list shows what the caller may publish, and nothing about topics.
    let listed = rig
        .request(
            reqwest::Method::GET,
            "/event-types",
            None,
            Vec::new(),
            Some(&rig.acme()?),
        )
        .await?;
    assert_eq!(listed.status, 200, "{listed:?}");
    let mine = listed
        .body
        .as_array()
        .context("a list")?
        .iter()
        .find(|t| t["name"] == rig.event_type.as_str())
        .context("the type acme may publish is listed")?;
    assert_eq!(mine["schema"]["version_id"], rig.schema_version.to_string());
    assert_eq!(
        mine["schema"]["definition"]["required"],
        json!(["order_id", "total"])
    );
    let text = listed.body.to_string();
    assert!(
        !text.contains(&rig.topic) && !text.contains("topic"),
        "{text}"
    );
    let theirs = rig
        .request(
            reqwest::Method::GET,
            "/event-types",
            None,
            Vec::new(),
            Some(&stranger),
        )
        .await?;
    assert!(
        !theirs.body.to_string().contains(&rig.event_type),
        "{theirs:?}"
    );

    // A disabled type admits nobody, with the same answer as any other refusal.
    let mut disabled = rig.types.get(&rig.event_type).await?.context("the type")?;
    disabled.enabled = false;
    rig.types.put(&disabled).await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let answer = publish(Some(rig.acme()?)).await?;
    assert_eq!(answer.status, 403, "{answer:?}");
    assert_eq!(answer.body, no_such_type.body);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn one_invalid_event_refuses_the_batch_and_names_what_is_wrong() -> Result<()> {
    let _shared = CLUSTER.read().await;
    let rig = rig(Options::default()).await?;
    let events = json!([
        order("o-1", 1),
        {"order_id": "o-2", "total": -3},
        {"order_id": "o-3", "total": 1, "lines": [{"sku": 7}]},
        {"total": 4},
        order("o-5", 5),
    ]);
    let answer = rig
        .publish(
            &rig.event_type,
            "application/json",
            &events,
            Some(&rig.acme()?),
        )
        .await?;
    assert_eq!(answer.status, 422, "{answer:?}");
    let results = answer.body.as_array().context("per-event results")?;
    let summary: Vec<(&str, &str)> = results
        .iter()
        .map(|r| {
            (
                r["publishing_status"].as_str().unwrap_or_default(),
                r["path"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("aborted", "-"),
            ("failed", "/total"),
            ("failed", "/lines/0/sku"),
            ("failed", "/order_id"),
            ("aborted", "-"),
        ]
    );
    assert!(
        !answer.body.to_string().contains("-3"),
        "values are not quoted back: {answer:?}"
    );
    // In CloudEvents the paths point into the event as sent: its data is under /data.
    let cloud = |id: &str, data: Value| {
        json!({"specversion": "1.0", "id": id, "source": "/partners/acme",
            "type": rig.event_type, "data": data})
    };
    let batch = json!([
        cloud("c-1", order("o-1", 1)),
        cloud("c-2", json!({"total": 1}))
    ]);
    let answer = rig
        .publish(
            &rig.event_type,
            "application/cloudevents-batch+json",
            &batch,
            Some(&rig.acme()?),
        )
        .await?;
    assert_eq!(answer.status, 422, "{answer:?}");
    assert_eq!(answer.body[1]["path"], "/data/order_id");
    assert_eq!(
        testkit::message_count(&rig.stack.bootstrap_servers(), &rig.topic)?,
        0,
        "nothing of the batch was published"
    );
    assert_eq!(
        testkit::message_count(&rig.stack.bootstrap_servers(), &rig.dead_letter_topic)?,
        0,
        "the caller has the events: nothing is dead-lettered"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_valid_batch_is_published_framed_in_order_under_stable_ids() -> Result<()> {
    let _shared = CLUSTER.read().await;
    let rig = rig(Options::default()).await?;
    let token = rig.acme()?;
    // Two orders' events interleaved, each with the partner's own id; then CloudEvents.
    let events: Vec<Value> = (0..6)
        .map(|n| {
            let mut event = order(if n % 2 == 0 { "o-even" } else { "o-odd" }, n);
            event["metadata"] = json!({"eid": format!("partner-{n}")});
            event
        })
        .collect();
    let first = rig
        .publish(
            &rig.event_type,
            "application/json",
            &json!(events),
            Some(&token),
        )
        .await?;
    assert_eq!(first.status, 200, "{first:?}");
    let cloud = json!({"specversion": "1.0", "id": "ce-1", "source": "/partners/acme",
        "type": rig.event_type, "time": "2026-11-30T12:00:00Z", "data": order("o-ce", 9)});
    let single = rig
        .publish(
            &rig.event_type,
            "application/cloudevents+json",
            &cloud,
            Some(&token),
        )
        .await?;
    assert_eq!(single.status, 200, "{single:?}");
    let batch = json!([cloud, {"specversion": "1.0", "id": "ce-2", "source": "/partners/acme",
        "type": rig.event_type, "data": order("o-ce", 10)}]);
    let cloud_batch = rig
        .publish(
            &rig.event_type,
            "application/cloudevents-batch+json",
            &batch,
            Some(&token),
        )
        .await?;
    assert_eq!(cloud_batch.status, 200, "{cloud_batch:?}");
    // The partner retries the first request (it did not see the answer): the same ids.
    let retried = rig
        .publish(
            &rig.event_type,
            "application/json",
            &json!(events),
            Some(&token),
        )
        .await?;
    assert_eq!(retried.status, 200, "{retried:?}");
    assert_eq!(
        eids(&retried),
        eids(&first),
        "a retry publishes under the same ids"
    );
    assert_eq!(
        eids(&cloud_batch)[0],
        eids(&single)[0],
        "a CloudEvent's id is the same id in any request"
    );
    // An id given again with another event is refused, not published for consumers to drop.
    let mut changed = events[0].clone();
    changed["total"] = json!(1000);
    let reused = rig
        .publish(
            &rig.event_type,
            "application/json",
            &json!([changed, order("o-new", 1)]),
            Some(&token),
        )
        .await?;
    assert_eq!(reused.status, 422, "{reused:?}");
    assert_eq!(reused.body[0]["step"], "enriching");
    assert_eq!(reused.body[0]["path"], "/metadata/eid");
    assert_eq!(reused.body[1]["publishing_status"], "aborted");
    // New events of one key, with and without ids: event ids in batch order (the order the
    // standby table would publish them in).
    let mixed: Vec<Value> = (0..4)
        .map(|n| {
            let mut event = order("o-mixed", 20 + n);
            if n % 2 == 0 {
                event["metadata"] = json!({"eid": format!("mixed-{n}")});
            }
            event
        })
        .collect();
    let mixed = rig
        .publish(
            &rig.event_type,
            "application/json",
            &json!(mixed),
            Some(&token),
        )
        .await?;
    assert_eq!(mixed.status, 200, "{mixed:?}");
    let mixed_ids: Vec<uuid::Uuid> = eids(&mixed)
        .iter()
        .map(|id| id.parse())
        .collect::<Result<_, _>>()?;
    assert!(mixed_ids.windows(2).all(|w| w[0] < w[1]), "{mixed_ids:?}");

    let messages = rig.topic_messages().await?;
    assert_eq!(messages.len(), 6 + 1 + 2 + 6 + 4);
    for message in &messages {
        let envelope = Envelope::parse(message.value.as_deref().unwrap_or_default())?;
        assert_eq!(envelope.schema, SchemaId::Glue(rig.schema_version));
        let data: Value = serde_json::from_slice(&envelope.decoded_payload()?)?;
        assert!(
            data.get("metadata").is_none(),
            "metadata is the gateway's, not the event's"
        );
        assert_eq!(
            message.header(headers::GATEWAY_CLIENT_ID).as_deref(),
            Some("acme")
        );
        assert_eq!(
            message.key.as_deref(),
            data["order_id"].as_str().map(str::as_bytes),
            "the partition key is the event's order id"
        );
    }
    // The consumer SDK (validation, dedupe by event id) hands each event over once.
    let handled = consume_with_the_sdk(&rig, messages.len()).await?;
    assert_eq!(handled.handled, 6 + 2 + 4, "{handled:?}");
    assert_eq!(
        handled.duplicates,
        6 + 1,
        "the retried request and the repeated CloudEvent"
    );
    assert_eq!(handled.invalid, 0, "{handled:?}");
    // Read by event id, each key's events are in order.
    let mut seen = BTreeSet::new();
    let unique: Vec<&Consumed> = messages
        .iter()
        .filter(|m| seen.insert(m.header(headers::EVENT_ID).unwrap_or_default()))
        .collect();
    assert_eq!(unique.len(), 6 + 2 + 4);
    let first_ids: BTreeSet<String> = eids(&first).into_iter().collect();
    let mut by_key: HashMap<Vec<u8>, Vec<String>> = HashMap::new();
    for message in &unique {
        let id = message.header(headers::EVENT_ID).unwrap_or_default();
        if first_ids.contains(&id) {
            by_key
                .entry(message.key.clone().unwrap_or_default())
                .or_default()
                .push(
                    message
                        .header(headers::GATEWAY_CALLER_EVENT_ID)
                        .unwrap_or_default(),
                );
        }
    }
    assert_eq!(
        by_key[&b"o-even".to_vec()],
        ["partner-0", "partner-2", "partner-4"]
    );
    assert_eq!(
        by_key[&b"o-odd".to_vec()],
        ["partner-1", "partner-3", "partner-5"]
    );
    let cloud_message = unique
        .iter()
        .find(|m| m.header(cloud_events::ID).as_deref() == Some("ce-1"))
        .context("the CloudEvent arrived")?;
    assert_eq!(
        cloud_message.header(cloud_events::SOURCE).as_deref(),
        Some("/partners/acme")
    );
    assert_eq!(
        cloud_message.header(cloud_events::TYPE).as_deref(),
        Some(rig.event_type.as_str())
    );
    assert_eq!(
        cloud_message.header(cloud_events::TIME).as_deref(),
        Some("2026-11-30T12:00:00Z")
    );
    Ok(())
}

/// Reads the rig's topic with the consumer SDK (schema validation, in-memory dedupe by event
/// id) until it has seen `records`; what it counted.
async fn consume_with_the_sdk(rig: &Rig, records: usize) -> Result<ConsumerStats> {
    let schemas = Arc::new(SchemaCache::new(Arc::new(GlueRegistry::new(
        aws_sdk_glue::Client::new(&rig.aws),
    ))));
    let kafka = KafkaSettings::from_env(
        &testkit::kafka_env(&rig.stack.bootstrap_servers(), []),
        "gateway-test-consumer",
        Duration::from_secs(5),
    )?;
    let settings = ConsumerSettings {
        session_timeout: Duration::from_secs(6),
        // The handler never fails: no retry topics.
        retry: RetryPolicy {
            delays: vec![],
            ..RetryPolicy::default()
        },
        ..ConsumerSettings::new(
            testkit::unique_name("gateway-readers"),
            vec![rig.topic.clone()],
            &rig.dead_letter_topic,
        )
    };
    let consumer = Arc::new(Consumer::new(
        kafka,
        settings,
        schemas,
        Arc::new(MemoryDedupe::default()),
        |_event: Arc<ConsumedEvent>| async { Ok(()) },
    ));
    let (stop, running) = testkit::run_consumer(consumer.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let stats = consumer.stats();
        let seen = stats.handled + stats.duplicates + stats.invalid;
        if seen as usize >= records || std::time::Instant::now() > deadline {
            let _ = stop.send(());
            running.await??;
            return Ok(consumer.stats());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_the_gateway_cannot_take_are_refused_whole() -> Result<()> {
    let _shared = CLUSTER.read().await;
    let rig = rig(Options::default()).await?;
    let token = rig.acme()?;
    let post = |content_type: Option<&'static str>, body: Vec<u8>| {
        let rig = &rig;
        let token = &token;
        async move {
            rig.request(
                reqwest::Method::POST,
                &format!("/event-types/{}/events", rig.event_type),
                content_type,
                body,
                Some(token),
            )
            .await
        }
    };
    let json = Some("application/json");
    let too_large = post(json, format!("[{}]", " ".repeat(70_000)).into_bytes()).await?;
    assert_eq!(too_large.status, 413, "{too_large:?}");
    let too_many = post(json, serde_json::to_vec(&vec![order("o", 1); 51])?).await?;
    assert_eq!(too_many.status, 413, "{too_many:?}");
    let malformed = post(json, b"[{\"order_id\": \"o-1\",\n \"total\": }]".to_vec()).await?;
    assert_eq!(malformed.status, 400, "{malformed:?}");
    assert!(
        malformed.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("line 2 column"),
        "{malformed:?}"
    );
    let xml = post(Some("application/xml"), b"<order/>".to_vec()).await?;
    assert_eq!(xml.status, 415, "{xml:?}");
    let untyped = post(None, b"[]".to_vec()).await?;
    assert_eq!(untyped.status, 415, "{untyped:?}");
    let big_event = post(
        json,
        serde_json::to_vec(&json!([{"order_id": "o", "total": 1, "note": "x".repeat(5000)}]))?,
    )
    .await?;
    assert_eq!(big_event.status, 422, "{big_event:?}");
    assert!(
        big_event.body[0]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("limit is 4096")
    );
    assert_eq!(
        testkit::message_count(&rig.stack.bootstrap_servers(), &rig.topic)?,
        0
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn with_kafka_stopped_events_wait_in_the_standby_table_and_arrive_later() -> Result<()> {
    let _exclusive = CLUSTER.write().await;
    let rig = rig(Options::default()).await?;
    let token = rig.acme()?;
    let before = rig
        .publish(
            &rig.event_type,
            "application/json",
            &json!([order("o-0", 100)]),
            Some(&token),
        )
        .await?;
    assert_eq!(before.status, 200, "{before:?}");
    assert_eq!(before.body[0]["delivery"], "kafka");

    // Every broker down: one SIGKILLed, the others frozen.
    let mut cluster = Stack::attach()?;
    let outage = tokio::task::block_in_place(|| cluster.kafka_outage(true))?;
    let events: Vec<Value> = (0..4).map(|n| order(&format!("o-{}", n % 2), n)).collect();
    let answer = rig
        .publish(
            &rig.event_type,
            "application/json",
            &json!(events),
            Some(&token),
        )
        .await;
    tokio::task::block_in_place(|| outage.end())?;
    let answer = answer?;
    assert_eq!(
        answer.status, 200,
        "safely in the standby table: {answer:?}"
    );
    for result in answer.body.as_array().context("results")? {
        assert_eq!(result["delivery"], "standby", "{result}");
    }
    let stored = testkit::standby_items(&rig.standby).await?;
    assert!(stored.len() >= 4, "{} items", stored.len());

    // The republisher delivers them, as the stream would invoke it.
    let state = shared::state_table::StateTable::new(
        aws_sdk_dynamodb::Client::new(&rig.aws),
        testkit::unique_name("gw-state"),
    );
    state.create().await?;
    let env = testkit::kafka_env(
        &rig.stack.bootstrap_servers(),
        [
            ("STANDBY_TABLE_NAME", rig.standby.name()),
            ("STATE_TABLE_NAME", state.name()),
            ("STANDBY_DEAD_LETTER_TOPIC", rig.dead_letter_topic.as_str()),
            ("EVENT_TOPICS", rig.topic.as_str()),
            ("REPUBLISH_MARGIN_MS", "500"),
        ],
    );
    let republisher = republisher::App::new(
        republisher::settings::Settings::from_env(&env)?,
        aws_sdk_dynamodb::Client::new(&rig.aws),
    )?;
    let mut driver = StreamDriver::new(&rig.aws, rig.standby.name()).await?;
    driver
        .run_until(
            |event| async {
                let response =
                    republisher::handle(&republisher, testkit::invocation(event)).await?;
                anyhow::Ok(serde_json::to_value(response)?)
            },
            || async {
                let items = testkit::standby_items(&rig.standby).await?;
                Ok(items.iter().all(|item| {
                    matches!(item.get("pk"), Some(AttributeValue::S(pk))
                        if wire::record::marker::marker_topic(pk).is_some())
                }))
            },
            Duration::from_secs(120),
        )
        .await?;
    let messages: Vec<Consumed> = rig
        .topic_messages()
        .await?
        .into_iter()
        .filter(|m| m.header(headers::REPUBLISHED).is_some())
        .collect();
    let arrived: Vec<String> = messages
        .iter()
        .map(|m| m.header(headers::EVENT_ID).unwrap_or_default())
        .collect();
    let mut expected = eids(&answer);
    expected.sort();
    let mut got = arrived.clone();
    got.sort();
    assert_eq!(got, expected, "every accepted event arrived, once");
    for message in &messages {
        assert_eq!(
            message.header(headers::GATEWAY_CLIENT_ID).as_deref(),
            Some("acme")
        );
        assert_eq!(
            message.header(headers::REPUBLISHED).as_deref(),
            Some("true")
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_signing_key_is_fetched_once_and_made_up_key_ids_fetch_nothing() -> Result<()> {
    const REFETCH_AFTER: Duration = Duration::from_secs(3);
    let _shared = CLUSTER.read().await;
    let rig = rig(Options {
        env: &[("JWKS_MIN_REFETCH_SECONDS", "3")],
        ..Options::default()
    })
    .await?;
    let events = json!([order("o-1", 1)]);
    let first = rig
        .publish(
            &rig.event_type,
            "application/json",
            &events,
            Some(&rig.acme()?),
        )
        .await?;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(rig.issuer.fetches(), 1);

    // The issuer rotates its key some time after the gateway fetched the set.
    tokio::time::sleep(REFETCH_AFTER).await;
    rig.issuer.rotate("key-2")?;
    let rotated = rig
        .publish(
            &rig.event_type,
            "application/json",
            &events,
            Some(&rig.acme()?),
        )
        .await?;
    assert_eq!(
        rotated.status, 200,
        "a token signed with the new key: {rotated:?}"
    );
    assert_eq!(rig.issuer.fetches(), 2, "one fetch for the new key id");

    let since_fetch = std::time::Instant::now();
    for n in 0..5 {
        let forged = rig.issuer.unpublished_key(&format!("made-up-{n}"))?;
        let claims = rig.issuer.claims("acme", &[], Duration::from_secs(600));
        let answer = rig
            .publish(
                &rig.event_type,
                "application/json",
                &events,
                Some(&forged.sign(&claims)?),
            )
            .await?;
        assert_eq!(answer.status, 401, "{answer:?}");
    }
    // No more than one fetch per interval, however many made-up key ids arrive (on a slow
    // machine the five requests may span an interval).
    let intervals = since_fetch.elapsed().as_secs() / REFETCH_AFTER.as_secs();
    assert!(
        rig.issuer.fetches() <= 2 + intervals as usize,
        "{} fetches in {intervals} intervals",
        rig.issuer.fetches()
    );
    Ok(())
}

/// An event the cluster refuses for good (larger than its topic takes) fails alone: it is
/// dead-lettered for operators, its key's later event is not sent, other keys are published,
/// and the answer is 207 without `Retry-After` (sending it again would fail again).
#[tokio::test(flavor = "multi_thread")]
async fn an_event_the_cluster_refuses_fails_alone_and_stops_only_its_key() -> Result<()> {
    let _shared = CLUSTER.read().await;
    let rig = rig(Options {
        topic_configs: &[("max.message.bytes", "2048")],
        ..Options::default()
    })
    .await?;
    let mut big = order("o-big", 1);
    big["note"] = json!("x".repeat(3000));
    let events = json!([big, order("o-big", 2), order("o-fine", 3)]);
    let answer = rig
        .publish(
            &rig.event_type,
            "application/json",
            &events,
            Some(&rig.acme()?),
        )
        .await?;
    assert_eq!(answer.status, 207, "{answer:?}");
    assert!(answer.headers.get("retry-after").is_none(), "{answer:?}");
    let statuses: Vec<&str> = answer
        .body
        .as_array()
        .context("results")?
        .iter()
        .map(|r| r["publishing_status"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(statuses, ["failed", "aborted", "submitted"]);
    let published = rig.topic_messages().await?;
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].key.as_deref(), Some(&b"o-fine"[..]));
    let dead_lettered = testkit::read_topic_to_end(
        &rig.stack.bootstrap_servers(),
        &rig.dead_letter_topic,
        Duration::from_secs(20),
    )
    .await?;
    assert_eq!(
        dead_lettered.len(),
        1,
        "the refused event is kept for operators"
    );
    assert_eq!(
        dead_lettered[0].header(headers::EVENT_ID),
        answer.body[0]["eid"].as_str().map(str::to_string)
    );
    Ok(())
}

/// The cluster and the standby table both gone (Kafka unreachable, DynamoDB's server
/// SIGKILLed): no event can be kept, so none is claimed; 503 with `Retry-After`.
#[tokio::test(flavor = "multi_thread")]
async fn with_nowhere_to_keep_events_the_answer_is_retry_later() -> Result<()> {
    let _shared = CLUSTER.read().await;
    let mut moto = PrivateMoto::start()?;
    let rig = rig(Options {
        kafka_unreachable: true,
        aws_endpoint: Some(moto.endpoint()),
        // The event type stays cached through the outage: only the publishing step fails.
        env: &[("EVENT_TYPES_CACHE_SECONDS", "600")],
        ..Options::default()
    })
    .await?;
    let token = rig.acme()?;
    let first = rig
        .publish(
            &rig.event_type,
            "application/json",
            &json!([order("o-1", 1)]),
            Some(&token),
        )
        .await?;
    assert_eq!(first.status, 200, "kept in the standby table: {first:?}");
    assert_eq!(first.body[0]["delivery"], "standby");

    moto.kill()?;
    let answer = rig
        .publish(
            &rig.event_type,
            "application/json",
            &json!([order("o-2", 2), order("o-3", 3)]),
            Some(&token),
        )
        .await?;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(answer.headers["retry-after"], "5");
    for result in answer.body.as_array().context("results")? {
        assert_eq!(result["publishing_status"], "failed", "{result}");
        assert!(
            result["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("retry"),
            "{result}"
        );
    }
    Ok(())
}
