//! A stand-in for Lambda's DynamoDB Streams event source mapping, for the local stack.
//!
//! It reads a table's stream from moto (`DescribeStream`, `GetShardIterator`, `GetRecords`),
//! turns each batch into exactly the JSON document Lambda sends a function, invokes the handler
//! with it and honours the answer the way the event source mapping does:
//! - a `batchItemFailures` entry → the next batch starts at that sequence number;
//! - a function error → the same batch again, up to `max_retries`, then the batch is discarded
//!   (counted in [`DriverStats::discarded`]; in AWS it would go to the on-failure destination);
//! - otherwise → the next records.
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
    /// Records given up on after `max_retries` function errors.
    pub discarded: usize,
}

struct Shard {
    id: String,
    iterator: Option<String>,
    /// Fetched but not yet acknowledged by the function, in stream order.
    buffer: VecDeque<Record>,
    attempts: usize,
}

pub struct StreamDriver {
    client: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    shards: Vec<Shard>,
    pub batch_size: usize,
    pub max_retries: usize,
    pub stats: DriverStats,
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
            shards.push(Shard {
                id,
                iterator,
                buffer: VecDeque::new(),
                attempts: 0,
            });
        }
        Ok(Self {
            client,
            stream_arn,
            shards,
            batch_size: 1000,
            max_retries: 10,
            stats: DriverStats::default(),
        })
    }

    /// Tops up each shard's buffer to a full batch from the stream.
    async fn fetch(&mut self) -> Result<()> {
        for shard in &mut self.shards {
            while shard.buffer.len() < self.batch_size {
                let Some(iterator) = shard.iterator.clone() else {
                    break;
                };
                let page = self
                    .client
                    .get_records()
                    .shard_iterator(iterator)
                    .limit((self.batch_size - shard.buffer.len()).min(1000) as i32)
                    .send()
                    .await?;
                shard.iterator = page.next_shard_iterator;
                let records = page.records.unwrap_or_default();
                if records.is_empty() {
                    break;
                }
                shard.buffer.extend(records);
            }
        }
        Ok(())
    }

    /// Delivers at most one batch per shard. Returns the number of records delivered.
    pub async fn step<F, Fut, E>(&mut self, mut invoke: F) -> Result<usize>
    where
        F: FnMut(Value) -> Fut,
        Fut: Future<Output = Result<Value, E>>,
        E: std::fmt::Display,
    {
        self.fetch().await?;
        let mut delivered = 0;
        for index in 0..self.shards.len() {
            let batch: Vec<Record> = {
                let shard = &self.shards[index];
                shard.buffer.iter().take(self.batch_size).cloned().collect()
            };
            if batch.is_empty() {
                continue;
            }
            let event = json!({
                "Records": batch.iter().map(|r| lambda_record(r, &self.stream_arn)).collect::<Result<Vec<_>>>()?
            });
            self.stats.invocations += 1;
            self.stats.records_delivered += batch.len();
            delivered += batch.len();
            let shard = &mut self.shards[index];
            match invoke(event).await {
                Ok(response) => {
                    shard.attempts = 0;
                    let failed_at = response
                        .pointer("/batchItemFailures/0/itemIdentifier")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    let done = match &failed_at {
                        None => batch.len(),
                        Some(sequence) => {
                            self.stats.partial_failures += 1;
                            batch
                                .iter()
                                .position(|r| r.dynamodb().and_then(|d| d.sequence_number()) == Some(sequence))
                                .with_context(|| format!("batchItemFailures names {sequence}, which is not in the batch"))?
                        }
                    };
                    shard.buffer.drain(..done);
                }
                Err(error) => {
                    self.stats.function_errors += 1;
                    shard.attempts += 1;
                    eprintln!(
                        "stream driver: shard {} function error (attempt {}): {error}",
                        shard.id, shard.attempts
                    );
                    if shard.attempts > self.max_retries {
                        self.stats.discarded += batch.len();
                        shard.buffer.drain(..batch.len());
                        shard.attempts = 0;
                    }
                }
            }
        }
        Ok(delivered)
    }

    /// Steps until `done()` holds (checked after every step that delivered nothing new), or
    /// fails after `timeout`.
    pub async fn run_until<F, Fut, E, D, DFut>(
        &mut self,
        mut invoke: F,
        mut done: D,
        timeout: Duration,
    ) -> Result<()>
    where
        F: FnMut(Value) -> Fut,
        Fut: Future<Output = Result<Value, E>>,
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
