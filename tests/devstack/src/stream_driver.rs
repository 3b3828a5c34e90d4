//! A stand-in for Lambda's DynamoDB Streams event source mapping, for the local stack.
//!
//! It reads a table's stream from moto (`DescribeStream`, `GetShardIterator`, `GetRecords`),
//! turns each batch into exactly the JSON document Lambda sends a function, invokes the handler
//! with it and honours the answer the way the event source mapping does:
//! - a `batchItemFailures` entry → the next batch starts at that sequence number;
//! - a function error → the same batch again;
//! - after `max_retries` failed attempts at the same point (`MaximumRetryAttempts`), the rest of
//!   the batch is given up on, and records older than `max_record_age`
//!   (`MaximumRecordAgeInSeconds`) are never delivered; both go to
//!   [`StreamDriver::on_failure`] (the mapping's on-failure destination) and the driver moves on;
//! - otherwise → the next records.
//!
//! moto's stream has one shard. AWS orders a stream per *item* only: items of one partition key
//! can be on different shards. `lanes` > 1 splits the stream by item (a hash of its keys) into
//! that many lanes, each delivered and retried on its own like a shard, so a key's records can
//! arrive in any interleaving across lanes while each item's records keep their order.
//!
//! Tests and `make demo` share it.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_config::SdkConfig;
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};
use serde_json::{Value, json};

/// What the driver did so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverStats {
    pub invocations: usize,
    /// Records handed to the function, re-deliveries included.
    pub records_delivered: usize,
    pub partial_failures: usize,
    pub function_errors: usize,
    /// Records given up on after `max_retries` failed attempts.
    pub discarded: usize,
    /// Records never delivered because they were older than `max_record_age`.
    pub expired: usize,
    /// Time spent reading the stream (`GetRecords`) and in the function.
    pub reading: Duration,
    pub invoking: Duration,
}

struct Shard {
    id: String,
    iterator: Option<String>,
}

/// What one lane has fetched but the function has not yet acknowledged, in stream order.
#[derive(Default)]
struct Lane {
    buffer: VecDeque<Record>,
    /// Failed attempts at the current failure point, and that point's sequence number.
    attempts: usize,
    failed_at: Option<String>,
}

pub struct StreamDriver {
    client: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    shards: Vec<Shard>,
    lanes: Vec<Lane>,
    pub batch_size: usize,
    /// Failed attempts at one point before the rest of the batch is given up on.
    pub max_retries: usize,
    /// Records older than this are given up on without delivery (`None`: no limit).
    pub max_record_age: Option<Duration>,
    pub stats: DriverStats,
    /// What the mapping gave up on, as Lambda would send it to the on-failure destination.
    pub on_failure: Vec<Value>,
}

impl StreamDriver {
    /// A driver for `table`'s stream, reading from its beginning (TRIM_HORIZON).
    pub async fn new(config: &SdkConfig, table: &str) -> Result<Self> {
        let dynamodb = aws_sdk_dynamodb::Client::new(config);
        let description = dynamodb.describe_table().table_name(table).send().await?;
        let stream_arn = description
            .table()
            .and_then(|t| t.latest_stream_arn())
            .with_context(|| format!("table {table} has no stream"))?
            .to_string();
        let client = aws_sdk_dynamodbstreams::Client::new(config);
        let stream = client
            .describe_stream()
            .stream_arn(&stream_arn)
            .send()
            .await?;
        let mut shards = Vec::new();
        for shard in stream
            .stream_description()
            .map(|d| d.shards())
            .unwrap_or_default()
        {
            let id = shard.shard_id().context("shard without id")?.to_string();
            let iterator = client
                .get_shard_iterator()
                .stream_arn(&stream_arn)
                .shard_id(&id)
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await?
                .shard_iterator;
            shards.push(Shard { id, iterator });
        }
        Ok(Self {
            client,
            stream_arn,
            shards,
            lanes: vec![Lane::default()],
            batch_size: 1000,
            max_retries: usize::MAX,
            max_record_age: None,
            stats: DriverStats::default(),
            on_failure: Vec::new(),
        })
    }

    /// Splits the stream into `lanes` independently delivered lanes (see the module doc). Call
    /// before the first step.
    pub fn with_lanes(mut self, lanes: usize) -> Self {
        self.lanes = (0..lanes.max(1)).map(|_| Lane::default()).collect();
        self
    }

    fn lane_of(&self, record: &Record) -> usize {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        format!("{:?}", record.dynamodb().and_then(|d| d.keys())).hash(&mut hasher);
        (hasher.finish() % self.lanes.len() as u64) as usize
    }

    /// Reads what the shards have until every lane holds a full batch or the stream is idle.
    async fn fetch(&mut self) -> Result<()> {
        for index in 0..self.shards.len() {
            while self.lanes.iter().any(|l| l.buffer.len() < self.batch_size) {
                let Some(iterator) = self.shards[index].iterator.clone() else {
                    break;
                };
                let started = Instant::now();
                let page = self
                    .client
                    .get_records()
                    .shard_iterator(iterator)
                    .limit(1000)
                    .send()
                    .await?;
                self.stats.reading += started.elapsed();
                self.shards[index].iterator = page.next_shard_iterator;
                let records = page.records.unwrap_or_default();
                if records.is_empty() {
                    break;
                }
                for record in records {
                    let lane = self.lane_of(&record);
                    self.lanes[lane].buffer.push_back(record);
                }
            }
        }
        Ok(())
    }

    /// Gives up on records older than `max_record_age`, wherever they are in a lane.
    fn expire(&mut self) -> Result<()> {
        let Some(max_age) = self.max_record_age else {
            return Ok(());
        };
        let now = wire::clock::now_ms() as f64 / 1000.0;
        for index in 0..self.lanes.len() {
            let (expired, kept): (Vec<Record>, Vec<Record>) =
                self.lanes[index].buffer.drain(..).partition(|r| {
                    r.dynamodb()
                        .and_then(|d| d.approximate_creation_date_time())
                        .is_some_and(|t| now - t.as_secs_f64() > max_age.as_secs_f64())
                });
            self.lanes[index].buffer = kept.into();
            self.stats.expired += expired.len();
            for record in &expired {
                self.on_failure
                    .push(lambda_record(record, &self.stream_arn)?);
            }
        }
        Ok(())
    }

    /// Counts a failed attempt at `position` of `lane`'s current batch; past `max_retries`
    /// gives up on the batch from there and returns how many records were given up on.
    fn failed_attempt(&mut self, lane: usize, position: usize, batch_len: usize) -> Result<usize> {
        let sequence = self.lanes[lane]
            .buffer
            .get(position)
            .and_then(|r| r.dynamodb().and_then(|d| d.sequence_number()))
            .map(str::to_string);
        let state = &mut self.lanes[lane];
        if state.failed_at == sequence {
            state.attempts += 1;
        } else {
            state.failed_at = sequence;
            state.attempts = 1;
        }
        if state.attempts <= self.max_retries {
            return Ok(0);
        }
        let given_up: Vec<Record> = state.buffer.drain(position..batch_len).collect();
        state.attempts = 0;
        state.failed_at = None;
        self.stats.discarded += given_up.len();
        for record in &given_up {
            self.on_failure
                .push(lambda_record(record, &self.stream_arn)?);
        }
        Ok(given_up.len())
    }

    /// Delivers at most one batch per lane. Returns the number of records delivered.
    pub async fn step<F, Fut, R, E>(&mut self, mut invoke: F) -> Result<usize>
    where
        F: FnMut(Value) -> Fut,
        Fut: Future<Output = Result<R, E>>,
        R: serde::Serialize,
        E: std::fmt::Display,
    {
        self.fetch().await?;
        self.expire()?;
        let mut delivered = 0;
        for index in 0..self.lanes.len() {
            let batch: Vec<Record> = self.lanes[index]
                .buffer
                .iter()
                .take(self.batch_size)
                .cloned()
                .collect();
            if batch.is_empty() {
                continue;
            }
            let event = json!({
                "Records": batch.iter().map(|r| lambda_record(r, &self.stream_arn)).collect::<Result<Vec<_>>>()?
            });
            self.stats.invocations += 1;
            self.stats.records_delivered += batch.len();
            delivered += batch.len();
            let started = Instant::now();
            // As Lambda does, the driver reads the handler's answer as JSON.
            let result = invoke(event).await;
            self.stats.invoking += started.elapsed();
            match result {
                Ok(response) => {
                    // As Lambda does, the driver reads the handler's answer as JSON.
                    let response = serde_json::to_value(response)?;
                    let failed_at = response
                        .pointer("/batchItemFailures/0/itemIdentifier")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    match &failed_at {
                        None => {
                            let lane = &mut self.lanes[index];
                            lane.buffer.drain(..batch.len());
                            lane.attempts = 0;
                            lane.failed_at = None;
                        }
                        Some(sequence) => {
                            self.stats.partial_failures += 1;
                            let done = batch
                                .iter()
                                .position(|r| r.dynamodb().and_then(|d| d.sequence_number()) == Some(sequence))
                                .with_context(|| format!("batchItemFailures names {sequence}, which is not in the batch"))?;
                            self.lanes[index].buffer.drain(..done);
                            self.failed_attempt(index, 0, batch.len() - done)?;
                        }
                    }
                }
                Err(error) => {
                    self.stats.function_errors += 1;
                    eprintln!(
                        "stream driver: lane {index} of {} function error: {error}",
                        self.shards.first().map_or("?", |s| s.id.as_str())
                    );
                    self.failed_attempt(index, 0, batch.len())?;
                }
            }
        }
        Ok(delivered)
    }

    /// Steps until `done()` holds (checked after every step that delivered nothing new), or
    /// fails after `timeout`.
    pub async fn run_until<F, Fut, R, E, D, DFut>(
        &mut self,
        mut invoke: F,
        mut done: D,
        timeout: Duration,
    ) -> Result<()>
    where
        F: FnMut(Value) -> Fut,
        Fut: Future<Output = Result<R, E>>,
        R: serde::Serialize,
        E: std::fmt::Display,
        D: FnMut() -> DFut,
        DFut: Future<Output = Result<bool>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            let delivered = self.step(&mut invoke).await?;
            if delivered == 0 {
                if done().await? {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if Instant::now() > deadline {
                bail!(
                    "stream driver: not done after {timeout:?} ({:?})",
                    self.stats
                );
            }
        }
    }
}

/// One stream record as Lambda puts it in the event.
fn lambda_record(record: &Record, stream_arn: &str) -> Result<Value> {
    let change = record
        .dynamodb()
        .context("stream record without `dynamodb`")?;
    let image = |map: Option<&HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>>| -> Result<Value> {
        Ok(match map {
            Some(map) => serde_json::to_value(serde_dynamo::Item::from(map.clone()))?,
            None => Value::Null,
        })
    };
    let mut dynamodb = json!({
        "ApproximateCreationDateTime": change.approximate_creation_date_time().map(|t| t.as_secs_f64()).unwrap_or(0.0),
        "Keys": image(change.keys())?,
        "SequenceNumber": change.sequence_number(),
        "SizeBytes": change.size_bytes().unwrap_or(0),
        "StreamViewType": change.stream_view_type().map(|v| v.as_str()).unwrap_or("NEW_IMAGE"),
    });
    if change.new_image().is_some() {
        dynamodb["NewImage"] = image(change.new_image())?;
    }
    if change.old_image().is_some() {
        dynamodb["OldImage"] = image(change.old_image())?;
    }
    let mut lambda = json!({
        "eventID": record.event_id(),
        "eventName": record.event_name().map(|n| n.as_str()),
        "eventVersion": record.event_version().unwrap_or("1.1"),
        "eventSource": record.event_source().unwrap_or("aws:dynamodb"),
        "awsRegion": record.aws_region().unwrap_or("us-east-1"),
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    });
    if let Some(identity) = record.user_identity() {
        lambda["userIdentity"] =
            json!({"type": identity.r#type(), "principalId": identity.principal_id()});
    }
    Ok(lambda)
}
