//! Helpers the integration tests share: AWS clients aimed at moto, unique names, topics, and
//! reading a topic back with an independent consumer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_config::{BehaviorVersion, SdkConfig};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// An AWS SDK configuration for moto: fixed region and dummy credentials, and no SDK retries,
/// so a call moto does not implement fails at once instead of being retried.
pub async fn aws_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            "test", "test", None, None, "devstack",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        // moto is one Python process: under a chaos run's load it can take seconds to accept a
        // connection, or to start a response, longer than the SDK's defaults made for AWS (3.1 s
        // to connect; a response that sends no byte for 5 s is cut as stalled).
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(std::time::Duration::from_secs(30))
                .build(),
        )
        .stalled_stream_protection(
            aws_config::stalled_stream_protection::StalledStreamProtectionConfig::enabled()
                .grace_period(std::time::Duration::from_secs(30))
                .build(),
        )
        .load()
        .await
}

/// A name no other test of this run uses: `prefix-<pid>-<counter>`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates a topic and waits until the brokers report it.
pub async fn create_topic(
    bootstrap: &str,
    name: &str,
    partitions: i32,
    replication: i32,
    configs: &[(&str, &str)],
) -> Result<()> {
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replication));
    create(bootstrap, topic, configs).await
}

/// Creates a topic whose partition `p` has the replicas `assignment[p]` (leader first), for tests
/// that need data on particular brokers whatever else the cluster holds.
pub async fn create_topic_on(bootstrap: &str, name: &str, assignment: &[Vec<i32>]) -> Result<()> {
    let replicas: Vec<&[i32]> = assignment.iter().map(Vec::as_slice).collect();
    let partitions = i32::try_from(assignment.len()).context("too many partitions")?;
    let topic = NewTopic::new(name, partitions, TopicReplication::Variable(&replicas));
    create(bootstrap, topic, &[]).await
}

async fn create(bootstrap: &str, mut topic: NewTopic<'_>, configs: &[(&str, &str)]) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    for (key, value) in configs {
        topic = topic.set(key, value);
    }
    let results = admin
        .create_topics(
            [&topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await?;
    for result in results {
        result.map_err(|(topic, code)| anyhow::anyhow!("creating topic {topic}: {code}"))?;
    }
    Ok(())
}

/// One consumed message, owned, with headers as (name, value) pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Consumed {
    /// The first header called `name`, as UTF-8.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_ref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// The dead-letter context its headers carry, if any.
    pub fn dead_letter_context(&self) -> Option<wire::dead_letter::Context> {
        let headers: Vec<wire::record::Header> = self
            .headers
            .iter()
            .map(|(name, value)| wire::record::Header {
                name: name.clone(),
                value: value.clone(),
            })
            .collect();
        wire::dead_letter::Context::read(&headers)
    }
}

/// Runs `consumer` on a task until the returned sender fires (or is dropped): the graceful
/// shutdown an application triggers with a signal.
pub fn run_consumer(
    consumer: std::sync::Arc<sdk::consumer::Consumer>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), sdk::consumer::ConsumerError>>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        consumer
            .run(async {
                let _ = stopped.await;
            })
            .await
    });
    (stop, running)
}

/// [`consume`] from async code: the consumer's reads block, so they run on a blocking thread.
pub async fn read_topic(
    bootstrap: &str,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> Result<Vec<Consumed>> {
    let (bootstrap, topic) = (bootstrap.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || consume(&bootstrap, &topic, expected, timeout)).await?
}

/// [`consume_all`] from async code, on a blocking thread.
pub async fn read_topic_to_end(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<Consumed>> {
    let (bootstrap, topic) = (bootstrap.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || consume_all(&bootstrap, &topic, timeout)).await?
}

/// Reads `topic` from the beginning of every partition until `expected` messages arrived or
/// `timeout` passed (then it fails, saying how many came). Messages come partition by
/// partition, each partition in offset order.
pub fn consume(
    bootstrap: &str,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> Result<Vec<Consumed>> {
    let (consumer, _) = reader(bootstrap, topic, ("isolation.level", "read_committed"))?;

    let mut by_partition: HashMap<i32, Vec<Consumed>> = HashMap::new();
    let mut count = 0;
    let deadline = Instant::now() + timeout;
    while count < expected {
        if Instant::now() > deadline {
            bail!("read {count} of {expected} messages from {topic} within {timeout:?}");
        }
        let message = match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Err(e)) if transient(&e) => continue,
            Some(message) => message?,
        };
        by_partition
            .entry(message.partition())
            .or_default()
            .push(owned(&message));
        count += 1;
    }
    let mut partitions: Vec<_> = by_partition.into_iter().collect();
    partitions.sort_by_key(|(p, _)| *p);
    Ok(partitions
        .into_iter()
        .flat_map(|(_, messages)| messages)
        .collect())
}

/// Everything in `topic`: reads every partition from the beginning until each has reported its
/// end (partition EOF at the high watermark) twice in a row, a second apart — nothing new arrived.
/// Use it after the writers are done; it does not depend on a message count read beforehand.
pub fn consume_all(bootstrap: &str, topic: &str, timeout: Duration) -> Result<Vec<Consumed>> {
    use std::collections::HashSet;
    let (consumer, partitions) = reader(bootstrap, topic, ("enable.partition.eof", "true"))?;

    let mut messages = Vec::new();
    let mut at_end: HashSet<i32> = HashSet::new();
    let mut quiet_rounds = 0;
    let deadline = Instant::now() + timeout;
    loop {
        if Instant::now() > deadline {
            bail!(
                "{topic}: {} of {partitions} partitions read to the end within {timeout:?}",
                at_end.len()
            );
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) => {
                at_end.insert(partition);
            }
            Some(Err(e)) if transient(&e) => {}
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(message)) => {
                at_end.remove(&message.partition());
                quiet_rounds = 0;
                messages.push(owned(&message));
            }
            None if at_end.len() == partitions as usize => {
                quiet_rounds += 1;
                if quiet_rounds >= 5 {
                    break;
                }
            }
            None => {}
        }
    }
    messages.sort_by_key(|m| (m.partition, m.offset));
    Ok(messages)
}

/// An error librdkafka reports through `poll` while it reconnects by itself (a broker that just
/// came back closed an old connection): the reader goes on, bounded by its deadline.
fn transient(error: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode::{AllBrokersDown, BrokerTransportFailure};
    matches!(
        error.rdkafka_error_code(),
        Some(BrokerTransportFailure | AllBrokersDown)
    )
}

/// A consumer outside any committed group, assigned every partition of `topic` from the
/// beginning, with one extra setting; and the number of partitions.
fn reader(bootstrap: &str, topic: &str, setting: (&str, &str)) -> Result<(BaseConsumer, i32)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique_name("devstack-reader"))
        .set("enable.auto.commit", "false")
        .set(setting.0, setting.1)
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = metadata
        .topics()
        .first()
        .map(|t| t.partitions().len())
        .context("topic missing from metadata")?;
    let partitions = i32::try_from(partitions)?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    Ok((consumer, partitions))
}

fn owned(message: &rdkafka::message::BorrowedMessage<'_>) -> Consumed {
    let headers = sdk::kafka::headers_of(message)
        .into_iter()
        .map(|h| (h.name, h.value))
        .collect();
    Consumed {
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers,
    }
}

/// Number of messages currently in `topic` (sum of high watermarks minus low watermarks).
pub fn message_count(bootstrap: &str, topic: &str) -> Result<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut total = 0;
    for partition in metadata
        .topics()
        .first()
        .context("topic missing")?
        .partitions()
    {
        let (low, high) =
            consumer.fetch_watermarks(topic, partition.id(), Duration::from_secs(10))?;
        total += high - low;
    }
    Ok(total)
}

/// Waits until every partition of every topic has all its replicas in sync, failing after
/// `timeout`. A test that crashes brokers calls it before it ends, so the next test (the
/// rebalancer's refuses to move anything while a partition is under-replicated) finds the
/// cluster as healthy as it was.
pub fn wait_until_fully_replicated(bootstrap: &str, timeout: Duration) -> Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let metadata = consumer.fetch_metadata(None, Duration::from_secs(10))?;
        let lagging: Vec<String> = metadata
            .topics()
            .iter()
            .flat_map(|t| {
                t.partitions()
                    .iter()
                    .filter(|p| p.isr().len() < p.replicas().len() || p.leader() < 0)
                    .map(move |p| format!("{}-{}", t.name(), p.id()))
            })
            .collect();
        if lagging.is_empty() {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!(
                "{} partitions still under-replicated after {timeout:?}, e.g. {:?}",
                lagging.len(),
                &lagging[..3.min(lagging.len())]
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Names of the resources `devstack provision` creates for `make invoke` and `make demo`.
/// Pushes one `CpuUser` and one `CpuSystem` datapoint per broker into CloudWatch (moto), with
/// MSK's dimensions, as the autoscaler reads them.
pub async fn push_broker_cpu(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    cluster_name: &str,
    brokers: &[i32],
    user: f64,
    system: f64,
) -> Result<()> {
    use aws_sdk_cloudwatch::primitives::DateTime;
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
    let dimension =
        |name: &str, value: String| Dimension::builder().name(name).value(value).build();
    for broker in brokers {
        for (metric, value) in [("CpuUser", user), ("CpuSystem", system)] {
            cloudwatch
                .put_metric_data()
                .namespace("AWS/Kafka")
                .metric_data(
                    MetricDatum::builder()
                        .metric_name(metric)
                        .dimensions(dimension("Cluster Name", cluster_name.to_string()))
                        .dimensions(dimension("Broker ID", broker.to_string()))
                        .timestamp(DateTime::from(std::time::SystemTime::now()))
                        .value(value)
                        .build(),
                )
                .send()
                .await?;
        }
    }
    Ok(())
}

pub mod local {
    pub const STANDBY_TABLE: &str = "standby-events";
    pub const STATE_TABLE: &str = "standby-state";
    pub const EVENT_TOPIC: &str = "orders";
    pub const DEAD_LETTER_TOPIC: &str = "standby-events-dlt";
}

/// Creates the local resources the functions are configured for in `tests/local-functions.env`
/// (tables in moto, topics in Kafka); existing ones are kept.
pub async fn provision(bootstrap: &str, aws_endpoint: &str) -> Result<()> {
    let config = aws_config(aws_endpoint).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let existing = dynamodb
        .list_tables()
        .send()
        .await?
        .table_names
        .unwrap_or_default();
    if !existing.iter().any(|t| t == local::STANDBY_TABLE) {
        create_keyed_table(&dynamodb, local::STANDBY_TABLE, "pk", "event_id", true).await?;
    }
    if !existing.iter().any(|t| t == local::STATE_TABLE) {
        create_keyed_table(&dynamodb, local::STATE_TABLE, "pk", "sk", false).await?;
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(10))?;
    for (topic, partitions) in [(local::EVENT_TOPIC, 6), (local::DEAD_LETTER_TOPIC, 1)] {
        if !metadata.topics().iter().any(|t| t.name() == topic) {
            create_topic(bootstrap, topic, partitions, 3, &[]).await?;
        }
    }
    Ok(())
}

/// A pay-per-request table with a string hash and range key, optionally streaming NEW_IMAGE.
/// (The shared crate's `StandbyTable::create` is the one source of the standby table's layout;
/// devstack stays independent of it, so this mirrors it for the local demo tables only.)
async fn create_keyed_table(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
    hash: &str,
    range: &str,
    stream: bool,
) -> Result<()> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        StreamSpecification, StreamViewType,
    };
    let mut request = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest);
    for (attribute, key_type) in [(hash, KeyType::Hash), (range, KeyType::Range)] {
        request = request
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(attribute)
                    .key_type(key_type)
                    .build()?,
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(attribute)
                    .attribute_type(ScalarAttributeType::S)
                    .build()?,
            );
    }
    if stream {
        request = request.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewImage)
                .build()?,
        );
    }
    request.send().await?;
    Ok(())
}

/// A Lambda event as the runtime hands it to a function with a 60-second timeout.
pub fn invocation<T>(payload: T) -> lambda_runtime::LambdaEvent<T> {
    lambda_event(payload, Duration::from_secs(60))
}

/// A Lambda event as the runtime hands it to a handler: `payload`, and a context whose deadline
/// is `remaining` from now. The context names no function, so the handler uses its default name.
pub fn lambda_event<T>(payload: T, remaining: Duration) -> lambda_runtime::LambdaEvent<T> {
    let mut context = lambda_runtime::Context::default();
    context.deadline = wire::clock::now_ms() + remaining.as_millis() as u64;
    lambda_runtime::LambdaEvent::new(payload, context)
}

/// Starts a standby record as a producer's fallback writes it: a fresh event id, written now by
/// `test-producer`, no key, an empty payload framed with schema version 1, no headers, no TTL.
/// Each test sets what it is about.
pub fn standby_record(topic: &str) -> RecordBuilder {
    RecordBuilder {
        record: wire::record::StandbyRecord {
            event_id: wire::record::EventId::new(),
            topic: topic.to_string(),
            key: None,
            value: Vec::new(),
            headers: Vec::new(),
            producer_id: "test-producer".into(),
            created_at_ms: wire::clock::now_ms(),
            expires_at: 0,
        },
        schema_version: 1,
        payload: Vec::new(),
    }
}

/// See [`standby_record`].
#[derive(Debug, Clone)]
pub struct RecordBuilder {
    record: wire::record::StandbyRecord,
    schema_version: u32,
    payload: Vec<u8>,
}

impl RecordBuilder {
    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.record.key = Some(key.into());
        self
    }

    /// The event's payload; the value is the payload behind the schema-version prefix.
    pub fn payload(mut self, payload: impl Into<Vec<u8>>) -> Self {
        self.payload = payload.into();
        self
    }

    pub fn schema_version(mut self, version: u32) -> Self {
        self.schema_version = version;
        self
    }

    /// Adds a header (repeated names are kept, as Kafka keeps them).
    pub fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.record
            .headers
            .push(wire::record::Header::new(name, value));
        self
    }

    pub fn producer(mut self, producer_id: &str) -> Self {
        self.record.producer_id = producer_id.to_string();
        self
    }

    /// Backdates the record: written `age` ago.
    pub fn age(mut self, age: Duration) -> Self {
        self.record.created_at_ms = wire::clock::now_ms().saturating_sub(age.as_millis() as u64);
        self
    }

    /// The TTL attribute, in epoch seconds.
    pub fn expires_at(mut self, epoch_secs: u64) -> Self {
        self.record.expires_at = epoch_secs;
        self
    }

    pub fn build(self) -> wire::record::StandbyRecord {
        wire::record::StandbyRecord {
            value: wire::envelope::Envelope::confluent(self.schema_version, &self.payload).encode(),
            ..self.record
        }
    }
}

/// An EventBridge "Scheduled Event" as a schedule named `rule` sends it.
pub fn scheduled_event(rule: &str) -> serde_json::Value {
    serde_json::json!({
        "version": "0", "id": format!("{rule}-1"), "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "123456789012", "time": "2026-11-30T00:00:00Z",
        "region": "us-east-1", "resources": [format!("arn:aws:events:us-east-1:123456789012:rule/{rule}")],
        "detail": {}
    })
}

/// A function's or the producer SDK's configuration for the local stack: the Kafka connection
/// (`bootstrap`, plaintext) and `vars`, which each test chooses (a later entry overrides an
/// earlier one).
pub fn kafka_env<'a>(
    bootstrap: &'a str,
    vars: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> HashMap<String, String> {
    [
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap),
        ("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
    ]
    .into_iter()
    .chain(vars)
    .map(|(name, value)| (name.to_string(), value.to_string()))
    .collect()
}

/// Every item in the standby table (events and backlog markers), by a consistent scan.
pub async fn standby_items(
    table: &sdk::standby_table::StandbyTable,
) -> Result<Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>> {
    let mut all = Vec::new();
    let mut start = None;
    loop {
        let (items, next) = table.scan_page(start, 1000).await?;
        all.extend(items);
        start = next;
        if start.is_none() {
            return Ok(all);
        }
    }
}

/// The median of timing samples (benchmarks take several rounds and report the middle one).
pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The Glue registry the tests share: moto, like Glue, allows an account only ten registries,
/// so tests make unique schemas in one registry rather than registries of their own.
pub const TEST_REGISTRY: &str = "tests";

/// Creates schema `schema` in Glue registry `registry` (made if missing) with `definition` as its
/// first version, in `format` (`JSON` or `AVRO`); returns the version's id (`SchemaVersionId`).
pub async fn glue_schema(
    aws: &SdkConfig,
    registry: &str,
    schema: &str,
    format: &str,
    definition: &str,
) -> Result<String> {
    use aws_sdk_glue::types::{Compatibility, DataFormat, RegistryId};
    let glue = aws_sdk_glue::Client::new(aws);
    if let Err(error) = glue.create_registry().registry_name(registry).send().await {
        let exists = error
            .as_service_error()
            .is_some_and(|e| e.is_already_exists_exception());
        if !exists {
            return Err(anyhow::Error::from(error).context(format!("creating registry {registry}")));
        }
    }
    let created = glue
        .create_schema()
        .registry_id(RegistryId::builder().registry_name(registry).build())
        .schema_name(schema)
        .data_format(DataFormat::from(format))
        .compatibility(Compatibility::Backward)
        .schema_definition(definition)
        .send()
        .await
        .with_context(|| format!("creating schema {registry}/{schema}"))?;
    created
        .schema_version_id()
        .map(str::to_string)
        .context("CreateSchema returned no SchemaVersionId")
}

/// Registers `definition` as a new version of an existing schema; returns the version's id.
pub async fn glue_schema_version(
    aws: &SdkConfig,
    registry: &str,
    schema: &str,
    definition: &str,
) -> Result<String> {
    let glue = aws_sdk_glue::Client::new(aws);
    let registered = glue
        .register_schema_version()
        .schema_id(
            aws_sdk_glue::types::SchemaId::builder()
                .registry_name(registry)
                .schema_name(schema)
                .build(),
        )
        .schema_definition(definition)
        .send()
        .await
        .with_context(|| format!("registering a version of {registry}/{schema}"))?;
    registered
        .schema_version_id()
        .map(str::to_string)
        .context("RegisterSchemaVersion returned no SchemaVersionId")
}
