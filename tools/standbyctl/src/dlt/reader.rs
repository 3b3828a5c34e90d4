//! Reading the dead-letter topic: every partition up to the high watermark seen at the start
//! (a snapshot), or one record fetched by position. librdkafka's `poll` blocks, so reads run on
//! a blocking thread, never on the async workers.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use sdk::kafka::{KafkaContext, KafkaSettings};

use super::{DltId, DltRecord};
use crate::error::CtlError;

/// How long a metadata, watermark or fetch call may take.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(15);

/// A consumer that joins no group and commits nothing (it assigns partitions itself).
pub fn consumer(settings: &KafkaSettings) -> Result<BaseConsumer<KafkaContext>, CtlError> {
    Ok(settings
        .client_config()
        .set("group.id", "standbyctl")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create_with_context(settings.context())?)
}

/// Such a consumer, and `topic`'s partition count.
fn open(
    settings: &KafkaSettings,
    topic: &str,
) -> Result<(BaseConsumer<KafkaContext>, i32), CtlError> {
    let consumer = consumer(settings)?;
    let metadata = consumer.fetch_metadata(Some(topic), KAFKA_TIMEOUT)?;
    match metadata.topics().first() {
        Some(t) if t.error().is_none() => Ok((consumer, t.partitions().len() as i32)),
        _ => Err(CtlError::Usage(format!(
            "there is no topic {topic:?} on these brokers (check --topic / STANDBY_DEAD_LETTER_TOPIC)"
        ))),
    }
}

fn timed_out() -> CtlError {
    CtlError::Kafka(rdkafka::error::KafkaError::MessageConsumption(
        rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
    ))
}

fn owned(message: &BorrowedMessage<'_>) -> DltRecord {
    DltRecord {
        id: DltId {
            partition: message.partition(),
            offset: message.offset(),
        },
        timestamp_ms: message.timestamp().to_millis(),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        headers: sdk::kafka::headers_of(message),
    }
}

/// Every record now in `topic`, by partition and offset.
fn read_all_blocking(settings: &KafkaSettings, topic: &str) -> Result<Vec<DltRecord>, CtlError> {
    let (consumer, partitions) = open(settings, topic)?;
    let mut assignment = TopicPartitionList::new();
    let mut remaining: HashMap<i32, i64> = HashMap::new();
    for partition in 0..partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, KAFKA_TIMEOUT)?;
        if high > low {
            assignment.add_partition_offset(topic, partition, Offset::Offset(low))?;
            remaining.insert(partition, high);
        }
    }
    let mut records = Vec::new();
    if remaining.is_empty() {
        return Ok(records);
    }
    consumer.assign(&assignment)?;
    while !remaining.is_empty() {
        match consumer.poll(KAFKA_TIMEOUT) {
            None => return Err(timed_out()),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) => {
                remaining.remove(&partition);
            }
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(message)) => {
                let Some(&high) = remaining.get(&message.partition()) else {
                    continue;
                };
                if message.offset() < high {
                    records.push(owned(&message));
                }
                if message.offset() + 1 >= high {
                    remaining.remove(&message.partition());
                }
            }
        }
    }
    records.sort_by_key(|r| r.id);
    Ok(records)
}

/// The record at `id`, fetched directly (not by reading the topic).
fn read_one_blocking(
    settings: &KafkaSettings,
    topic: &str,
    id: DltId,
) -> Result<DltRecord, CtlError> {
    let missing = || CtlError::NotFound(format!("no record {id} in {topic}"));
    let (consumer, partitions) = open(settings, topic)?;
    if !(0..partitions).contains(&id.partition) {
        return Err(missing());
    }
    let (low, high) = consumer.fetch_watermarks(topic, id.partition, KAFKA_TIMEOUT)?;
    if !(low..high).contains(&id.offset) {
        return Err(missing());
    }
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, id.partition, Offset::Offset(id.offset))?;
    consumer.assign(&assignment)?;
    loop {
        match consumer.poll(KAFKA_TIMEOUT) {
            None => return Err(timed_out()),
            // Past the offset without seeing it: compacted away.
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return Err(missing()),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(message)) if message.offset() == id.offset => return Ok(owned(&message)),
            Some(Ok(message)) if message.offset() > id.offset => return Err(missing()),
            Some(Ok(_)) => {}
        }
    }
}

/// Every record of `topic`. librdkafka's `poll` blocks, so the read runs on a blocking thread,
/// not on the async workers.
pub(super) async fn read_all(
    settings: &KafkaSettings,
    topic: &str,
) -> Result<Vec<DltRecord>, CtlError> {
    let (settings, topic) = (settings.clone(), topic.to_string());
    off_the_workers(move || read_all_blocking(&settings, &topic)).await
}

/// The record at `id` (see [`read_all`] for why on a blocking thread).
pub(super) async fn read_one(
    settings: &KafkaSettings,
    topic: &str,
    id: DltId,
) -> Result<DltRecord, CtlError> {
    let (settings, topic) = (settings.clone(), topic.to_string());
    off_the_workers(move || read_one_blocking(&settings, &topic, id)).await
}

async fn off_the_workers<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, CtlError> + Send + 'static,
) -> Result<T, CtlError> {
    tokio::task::spawn_blocking(read)
        .await
        .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
}
