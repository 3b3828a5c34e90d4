//! A small key-value table for the functions' own state: the sweep's resume point, the
//! autoscaler's last scale action. Items are keyed by `pk` (what kind of state) and `sk` (whose),
//! and carry whatever attributes the owner needs.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};

use crate::config::{self, Env};
use crate::error::ConfigError;
use crate::standby_table::TableError;

pub const STATE_TABLE_NAME: &str = "STATE_TABLE_NAME";

pub type Item = HashMap<String, AttributeValue>;

#[derive(Debug, Clone)]
pub struct StateTable {
    client: Client,
    name: String,
}

impl StateTable {
    pub fn new(client: Client, name: impl Into<String>) -> Self {
        Self {
            client,
            name: name.into(),
        }
    }

    /// The table named by `STATE_TABLE_NAME`.
    pub fn from_env(env: &impl Env, client: Client) -> Result<Self, ConfigError> {
        let name = config::required(
            env,
            STATE_TABLE_NAME,
            "DynamoDB table for the functions' own state",
        )?;
        Ok(Self::new(client, name))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn key(pk: &str, sk: &str) -> Item {
        HashMap::from([
            ("pk".to_string(), AttributeValue::S(pk.to_string())),
            ("sk".to_string(), AttributeValue::S(sk.to_string())),
        ])
    }

    /// The item's attributes (keys included), read strongly consistently.
    pub async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, TableError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.name)
            .set_key(Some(Self::key(pk, sk)))
            .consistent_read(true)
            .send()
            .await?;
        Ok(output.item)
    }

    /// Replaces the item with `attributes` plus its keys.
    pub async fn put(&self, pk: &str, sk: &str, attributes: Item) -> Result<(), TableError> {
        let mut item = attributes;
        item.extend(Self::key(pk, sk));
        self.client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item))
            .send()
            .await?;
        Ok(())
    }

    /// Writes the item only if none exists with these keys; `false` when one did (nothing
    /// written). The way to claim something exactly once across retried invocations.
    pub async fn put_new(&self, pk: &str, sk: &str, attributes: Item) -> Result<bool, TableError> {
        let mut item = attributes;
        item.extend(Self::key(pk, sk));
        let result = self
            .client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(aws_sdk_dynamodb::error::SdkError::ServiceError(e))
                if e.err().is_conditional_check_failed_exception() =>
            {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Every item under partition key `pk`, strongly consistent, in sort-key order.
    pub async fn list(&self, pk: &str) -> Result<Vec<Item>, TableError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.name)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(pk.to_string()))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await?;
            items.extend(page.items.unwrap_or_default());
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(items);
            }
        }
    }

    /// Deletes the item only if its `attribute` still equals `expected`; `false` when it did not
    /// (or the item is gone), and nothing was deleted.
    pub async fn delete_if(
        &self,
        pk: &str,
        sk: &str,
        attribute: &str,
        expected: AttributeValue,
    ) -> Result<bool, TableError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.name)
            .set_key(Some(Self::key(pk, sk)))
            .condition_expression("#a = :expected")
            .expression_attribute_names("#a", attribute)
            .expression_attribute_values(":expected", expected)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(aws_sdk_dynamodb::error::SdkError::ServiceError(e))
                if e.err().is_conditional_check_failed_exception() =>
            {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Sets one attribute of the item (creating the item if needed).
    pub async fn set(
        &self,
        pk: &str,
        sk: &str,
        attribute: &str,
        value: AttributeValue,
    ) -> Result<(), TableError> {
        self.client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(Self::key(pk, sk)))
            .update_expression("SET #a = :v")
            .expression_attribute_names("#a", attribute)
            .expression_attribute_values(":v", value)
            .send()
            .await?;
        Ok(())
    }

    pub async fn delete(&self, pk: &str, sk: &str) -> Result<(), TableError> {
        self.client
            .delete_item()
            .table_name(&self.name)
            .set_key(Some(Self::key(pk, sk)))
            .send()
            .await?;
        Ok(())
    }

    /// Creates the table as `template.yaml` declares it, for the local stack and tests.
    pub async fn create(&self) -> Result<(), TableError> {
        let mut request = self
            .client
            .create_table()
            .table_name(&self.name)
            .billing_mode(BillingMode::PayPerRequest);
        for (name, key_type) in [("pk", KeyType::Hash), ("sk", KeyType::Range)] {
            request = request
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name(name)
                        .key_type(key_type)
                        .build()
                        .expect("name and key type are set"),
                )
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(name)
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .expect("name and type are set"),
                );
        }
        request.send().await?;
        Ok(())
    }
}
