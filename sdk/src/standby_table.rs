//! The standby table in DynamoDB: the writes and reads the producer fallback, the republisher
//! and the operator tools make, over the record format in [`wire::record`] and the topic
//! backlog markers of [`wire::record::marker`].

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, DeleteRequest, KeySchemaElement, KeyType,
    ScalarAttributeType, StreamSpecification, StreamViewType, WriteRequest,
};

use wire::record::{ItemKey, StandbyRecord, attr, marker};

use crate::config::{self, Env};
use crate::error::ConfigError;
use crate::retry;

/// One item as the SDK returns it.
pub type Item = std::collections::HashMap<String, AttributeValue>;

/// Name of the variable holding the table name.
pub const TABLE_NAME: &str = "STANDBY_TABLE_NAME";

/// The table name `STANDBY_TABLE_NAME` gives.
pub fn name_from_env(env: &impl Env) -> Result<String, ConfigError> {
    config::required(env, TABLE_NAME, "DynamoDB table that holds standby events")
}

/// Errors from DynamoDB, as the SDK reports them (it has already retried throttling).
pub type TableError = aws_sdk_dynamodb::Error;

/// The result of a conditional write: `true` when it was made, `false` when its condition did
/// not hold (nothing was written); any other failure is an error.
#[allow(clippy::result_large_err)] // the SDK's error, as every call of this adapter returns it
pub fn condition_held<T, E>(result: Result<T, E>) -> Result<bool, TableError>
where
    TableError: From<E>,
{
    match result.map_err(TableError::from) {
        Ok(_) => Ok(true),
        Err(TableError::ConditionalCheckFailedException(_)) => Ok(false),
        Err(error) => Err(error),
    }
}

/// The primary key of `topic`'s backlog marker.
fn marker_key(topic: &str) -> Item {
    Item::from([
        (
            attr::PARTITION_KEY.to_string(),
            AttributeValue::S(marker::partition_key(topic)),
        ),
        (
            attr::EVENT_ID.to_string(),
            AttributeValue::S(marker::SORT_KEY.into()),
        ),
    ])
}

/// A read of the table that an operator's filter narrows as far as DynamoDB can: one
/// partition (a Query) or the whole table (a Scan), with a filter expression.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReadPlan {
    /// `Some(pk)`: query this one partition; `None`: scan the table.
    pub partition_key: Option<String>,
    pub filter_expression: Option<String>,
    pub names: std::collections::HashMap<String, String>,
    pub values: std::collections::HashMap<String, AttributeValue>,
}

/// Result of a conditional put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Written,
    /// An item with this event id was already there (a retried write); it was left untouched.
    AlreadyPresent,
}

/// The standby table, addressed by name through one SDK client.
#[derive(Debug, Clone)]
pub struct StandbyTable {
    client: Client,
    name: String,
}

impl StandbyTable {
    pub fn new(client: Client, name: impl Into<String>) -> Self {
        Self {
            client,
            name: name.into(),
        }
    }

    /// The table named by `STANDBY_TABLE_NAME`.
    pub fn from_env(env: &impl Env, client: Client) -> Result<Self, ConfigError> {
        Ok(Self::new(client, name_from_env(env)?))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Writes `record` unless an item with its event id exists: an event is never overwritten.
    pub async fn put_new(&self, record: &StandbyRecord) -> Result<PutOutcome, TableError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(record.to_item()))
            .condition_expression("attribute_not_exists(#id)")
            .expression_attribute_names("#id", attr::EVENT_ID)
            .send()
            .await;
        Ok(if condition_held(result)? {
            PutOutcome::Written
        } else {
            PutOutcome::AlreadyPresent
        })
    }

    /// Whether any event with this partition key is still waiting (strongly consistent).
    pub async fn holds_partition(&self, partition_key: &str) -> Result<bool, TableError> {
        let page = self
            .client
            .query()
            .table_name(&self.name)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", attr::PARTITION_KEY)
            .expression_attribute_values(":pk", AttributeValue::S(partition_key.to_string()))
            .projection_expression("#pk")
            .consistent_read(true)
            .limit(1)
            .send()
            .await?;
        Ok(page.count() > 0)
    }

    /// Up to `limit` items of partition key `pk` whose event id sorts after `after` (from the
    /// first when `None`) and at or before `up_to` (no bound when `None`), oldest first, read
    /// strongly consistent. This is the order gate's read: whatever delivered a record (stream,
    /// sweep, operator), the key's earlier events are published first. Pages keep a huge
    /// backlog (a key written to all through a long outage) from being held in memory at once.
    /// Returns the page and whether more items may follow it (DynamoDB also ends a page at 1 MB).
    pub async fn backlog(
        &self,
        pk: &str,
        after: Option<&str>,
        up_to: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Item>, bool), TableError> {
        let page = self.backlog_query(pk, after, up_to, limit).send().await?;
        let more = page.last_evaluated_key.is_some();
        Ok((page.items.unwrap_or_default(), more))
    }

    /// The event ids of the page [`Self::backlog`] would return, without the events: the order
    /// gate's first read, a fraction of the bytes when the batch already carries the events.
    pub async fn backlog_ids(
        &self,
        pk: &str,
        after: Option<&str>,
        up_to: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<String>, bool), TableError> {
        let page = self
            .backlog_query(pk, after, up_to, limit)
            .projection_expression("#id")
            .expression_attribute_names("#id", attr::EVENT_ID)
            .send()
            .await?;
        let more = page.last_evaluated_key.is_some();
        let ids = page
            .items
            .unwrap_or_default()
            .into_iter()
            .filter_map(|mut item| match item.remove(attr::EVENT_ID) {
                Some(AttributeValue::S(id)) => Some(id),
                _ => None,
            })
            .collect();
        Ok((ids, more))
    }

    fn backlog_query(
        &self,
        pk: &str,
        after: Option<&str>,
        up_to: Option<&str>,
        limit: usize,
    ) -> QueryFluentBuilder {
        let mut query = self
            .client
            .query()
            .table_name(&self.name)
            .expression_attribute_names("#pk", attr::PARTITION_KEY)
            .expression_attribute_values(":pk", AttributeValue::S(pk.to_string()))
            .consistent_read(true)
            .limit(limit.clamp(1, i32::MAX as usize) as i32);
        if let Some(after) = after {
            query = query.set_exclusive_start_key(Some(Item::from([
                (
                    attr::PARTITION_KEY.to_string(),
                    AttributeValue::S(pk.to_string()),
                ),
                (
                    attr::EVENT_ID.to_string(),
                    AttributeValue::S(after.to_string()),
                ),
            ])));
        }
        match up_to {
            Some(up_to) => query
                .key_condition_expression("#pk = :pk AND #id <= :up_to")
                .expression_attribute_names("#id", attr::EVENT_ID)
                .expression_attribute_values(":up_to", AttributeValue::S(up_to.to_string())),
            None => query.key_condition_expression("#pk = :pk"),
        }
    }

    /// Every item `plan` selects, read strongly consistent, in the table's order.
    pub async fn read_all(&self, plan: &ReadPlan) -> Result<Vec<Item>, TableError> {
        let names = (!plan.names.is_empty()).then(|| plan.names.clone());
        let values = (!plan.values.is_empty()).then(|| plan.values.clone());
        let mut items = Vec::new();
        let mut start = None;
        loop {
            // The SDK's Query and Scan builders are distinct types, so each branch sends its own.
            let (page, next) = match &plan.partition_key {
                Some(pk) => {
                    let mut names = names.clone().unwrap_or_default();
                    let mut values = values.clone().unwrap_or_default();
                    names.insert("#pk".into(), attr::PARTITION_KEY.into());
                    values.insert(":pk".into(), AttributeValue::S(pk.clone()));
                    let out = self
                        .client
                        .query()
                        .table_name(&self.name)
                        .key_condition_expression("#pk = :pk")
                        .set_filter_expression(plan.filter_expression.clone())
                        .set_expression_attribute_names(Some(names))
                        .set_expression_attribute_values(Some(values))
                        .set_exclusive_start_key(start.take())
                        .consistent_read(true)
                        .send()
                        .await?;
                    (out.items.unwrap_or_default(), out.last_evaluated_key)
                }
                None => {
                    let out = self
                        .client
                        .scan()
                        .table_name(&self.name)
                        .set_filter_expression(plan.filter_expression.clone())
                        .set_expression_attribute_names(names.clone())
                        .set_expression_attribute_values(values.clone())
                        .set_exclusive_start_key(start.take())
                        .consistent_read(true)
                        .send()
                        .await?;
                    (out.items.unwrap_or_default(), out.last_evaluated_key)
                }
            };
            items.extend(page);
            match next {
                Some(key) => start = Some(key),
                None => return Ok(items),
            }
        }
    }

    /// One page of a strongly consistent scan from `start`.
    pub async fn scan_page(
        &self,
        start: Option<Item>,
        limit: i32,
    ) -> Result<(Vec<Item>, Option<Item>), TableError> {
        let page = self
            .client
            .scan()
            .table_name(&self.name)
            .set_exclusive_start_key(start)
            .limit(limit)
            .consistent_read(true)
            .send()
            .await?;
        Ok((page.items.unwrap_or_default(), page.last_evaluated_key))
    }

    /// Raises (or refreshes) `topic`'s backlog marker to `now_ms`. Never moves it back: a
    /// writer whose clock lags leaves a later value in place.
    pub async fn raise_marker(&self, topic: &str, now_ms: u64) -> Result<(), TableError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(marker_key(topic)))
            .update_expression("SET #at = :now")
            .condition_expression("attribute_not_exists(#at) OR #at < :now")
            .expression_attribute_names("#at", marker::RAISED_AT)
            .expression_attribute_values(":now", AttributeValue::N(now_ms.to_string()))
            .send()
            .await;
        // A later value already there stays: the marker never moves back.
        condition_held(result).map(|_| ())
    }

    /// When `topic`'s backlog marker was last raised (ms since the epoch), if it is up
    /// (strongly consistent).
    pub async fn marker_raised_at(&self, topic: &str) -> Result<Option<u64>, TableError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.name)
            .set_key(Some(marker_key(topic)))
            .consistent_read(true)
            .send()
            .await?
            .item;
        // A marker whose timestamp is unreadable still says "backlog": order first.
        Ok(item.map(|item| match item.get(marker::RAISED_AT) {
            Some(AttributeValue::N(n)) => n.parse().unwrap_or(0),
            _ => 0,
        }))
    }

    /// Removes `topic`'s marker if it was last raised before `raised_before_ms`; returns
    /// whether it was removed.
    pub async fn clear_marker(
        &self,
        topic: &str,
        raised_before_ms: u64,
    ) -> Result<bool, TableError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.name)
            .set_key(Some(marker_key(topic)))
            .condition_expression("#at < :before")
            .expression_attribute_names("#at", marker::RAISED_AT)
            .expression_attribute_values(":before", AttributeValue::N(raised_before_ms.to_string()))
            .send()
            .await;
        condition_held(result)
    }

    /// Deletes `keys` with `BatchWriteItem`, 25 at a time, earliest first; on failure says
    /// which is the first key not deleted (every key before it is gone, none after it touched).
    ///
    /// The item key is (partition key, event id) and event ids are never reused (the producer's
    /// put is conditional), so a delete by key only ever removes the event that was published:
    /// the "only if it is still the same event" delete, without the cost of a transaction.
    pub async fn delete_in_order(&self, keys: &[ItemKey]) -> Result<(), DeleteStopped> {
        for (index, chunk) in keys.chunks(BATCH_WRITE_LIMIT).enumerate() {
            if let Err((offset, reason)) = self.delete_chunk(chunk).await {
                return Err(DeleteStopped {
                    first_not_deleted: index * BATCH_WRITE_LIMIT + offset,
                    reason,
                });
            }
        }
        Ok(())
    }

    async fn delete_chunk(&self, chunk: &[ItemKey]) -> Result<(), (usize, String)> {
        let mut pending: Vec<WriteRequest> = chunk.iter().map(delete_request).collect();
        // Unprocessed items mean DynamoDB is throttling the table: back off and resend only
        // those. Request errors were already retried by the SDK.
        let mut delays = retry::unprocessed_items();
        loop {
            let output = self
                .client
                .batch_write_item()
                .request_items(&self.name, pending.clone())
                .send()
                .await
                .map_err(|e| {
                    (
                        first_pending(chunk, &pending),
                        TableError::from(e).to_string(),
                    )
                })?;
            let unprocessed = output
                .unprocessed_items
                .and_then(|mut by_table| by_table.remove(&self.name))
                .unwrap_or_default();
            if unprocessed.is_empty() {
                return Ok(());
            }
            let Some(delay) = delays.next() else {
                return Err((
                    first_pending(chunk, &unprocessed),
                    format!(
                        "{} deletes still unprocessed (throttled)",
                        unprocessed.len()
                    ),
                ));
            };
            pending = unprocessed;
            tokio::time::sleep(delay).await;
        }
    }

    /// Creates the table as `template.yaml` declares it (keys and a NEW_IMAGE stream), for the
    /// local stack and tests. In AWS the template owns the table.
    pub async fn create(&self) -> Result<(), TableError> {
        let key = |name: &str, key_type| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(key_type)
                .build()
                .expect("name and key type are set")
        };
        let string_attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("name and type are set")
        };
        self.client
            .create_table()
            .table_name(&self.name)
            .key_schema(key(attr::PARTITION_KEY, KeyType::Hash))
            .key_schema(key(attr::EVENT_ID, KeyType::Range))
            .attribute_definitions(string_attribute(attr::PARTITION_KEY))
            .attribute_definitions(string_attribute(attr::EVENT_ID))
            .billing_mode(BillingMode::PayPerRequest)
            .stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::NewImage)
                    .build()
                    .expect("stream_enabled is set"),
            )
            .send()
            .await?;
        Ok(())
    }
}

/// DynamoDB's limit of requests per `BatchWriteItem`.
const BATCH_WRITE_LIMIT: usize = 25;

/// Where [`StandbyTable::delete_in_order`] stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteStopped {
    /// Index into the keys given.
    pub first_not_deleted: usize,
    pub reason: String,
}

fn delete_request(key: &ItemKey) -> WriteRequest {
    WriteRequest::builder()
        .delete_request(
            DeleteRequest::builder()
                .key(attr::PARTITION_KEY, AttributeValue::S(key.pk.clone()))
                .key(attr::EVENT_ID, AttributeValue::S(key.event_id.clone()))
                .build()
                .expect("key is set"),
        )
        .build()
}

/// Index in `chunk` of the first key still among `pending`.
fn first_pending(chunk: &[ItemKey], pending: &[WriteRequest]) -> usize {
    chunk
        .iter()
        .position(|key| {
            let wanted = delete_request(key);
            pending
                .iter()
                .any(|p| p.delete_request == wanted.delete_request)
        })
        .unwrap_or(0)
}
