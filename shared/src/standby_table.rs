//! The standby table in DynamoDB: the writes and reads the producer fallback (and later the
//! republisher and operator tools) make, over the record format in [`crate::record`].

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, StreamSpecification, StreamViewType,
};

use crate::config::{self, Env};
use crate::error::ConfigError;
use crate::record::{StandbyRecord, attr};

/// Name of the variable holding the table name.
pub const TABLE_NAME: &str = "STANDBY_TABLE_NAME";

/// Errors from DynamoDB, as the SDK reports them (it has already retried throttling).
pub type TableError = aws_sdk_dynamodb::Error;

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
        let name = config::required(env, TABLE_NAME, "DynamoDB table that holds standby events")?;
        Ok(Self::new(client, name))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn client(&self) -> &Client {
        &self.client
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
        match result {
            Ok(_) => Ok(PutOutcome::Written),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), PutItemError::ConditionalCheckFailedException(_)) =>
            {
                Ok(PutOutcome::AlreadyPresent)
            }
            Err(e) => Err(e.into()),
        }
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
