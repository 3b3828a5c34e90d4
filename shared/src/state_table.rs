//! A small key-value table for the functions' own state: the sweep's resume point, held keys,
//! the autoscaler's last scale action, the rebalance handoff, the operators' redrive log. Items
//! are keyed by `pk` (what kind of state, one of [`keys`]) and `sk` (whose), and carry whatever
//! attributes the owner needs.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};

use sdk::ConfigError;
use sdk::config::{self, Env};
use sdk::standby_table::{TableError, condition_held};

pub const STATE_TABLE_NAME: &str = "STATE_TABLE_NAME";

/// Every partition-key family of the state table and who owns it. Each function's IAM policy
/// in `template.yaml` grants `dynamodb:LeadingKeys` for exactly the families listed here with it
/// among their users (`tests/deployment` checks).
pub mod keys {
    /// The autoscaler's claim on an alarm transition (one scale-out per alarm).
    pub const AUTOSCALER_CLAIM: &str = "autoscaler#claim";
    /// The autoscaler's last scale action (cooldown).
    pub const AUTOSCALER_SCALE: &str = "autoscaler#scale";
    /// New broker ids, written by the autoscaler, consumed by the rebalancer.
    pub const REBALANCER_HANDOFF: &str = "rebalancer#handoff";
    /// The republisher's sweep checkpoint and pass state.
    pub const REPUBLISHER_SWEEP: &str = "republisher#sweep";
    /// Keys the republisher holds back, one family per standby table: see [`republisher_held`].
    pub const REPUBLISHER_HELD_PREFIX: &str = "republisher#held#";
    /// `standbyctl dlt redrive`'s log of what went where.
    pub const STANDBYCTL_REDRIVE: &str = "standbyctl#redrive";

    /// The held-keys family of one standby table.
    pub fn republisher_held(standby_table: &str) -> String {
        format!("{REPUBLISHER_HELD_PREFIX}{standby_table}")
    }

    /// A family and the principals that read or write it (template resource names).
    #[derive(Debug, Clone, Copy)]
    pub struct Family {
        /// The partition key, or its prefix when it ends with `*` as in an IAM condition.
        pub leading_key: &'static str,
        /// The component whose code defines the items.
        pub owner: &'static str,
        /// The template resources whose policies grant it.
        pub granted_to: &'static [&'static str],
    }

    pub const FAMILIES: &[Family] = &[
        Family {
            leading_key: AUTOSCALER_CLAIM,
            owner: "autoscaler",
            granted_to: &["AutoscalerRole", "StandbyOperatorPolicy"],
        },
        Family {
            leading_key: AUTOSCALER_SCALE,
            owner: "autoscaler",
            granted_to: &["AutoscalerRole", "StandbyOperatorPolicy"],
        },
        Family {
            leading_key: REBALANCER_HANDOFF,
            owner: "shared::handoff",
            granted_to: &["AutoscalerRole", "RebalancerRole", "StandbyOperatorPolicy"],
        },
        Family {
            leading_key: REPUBLISHER_SWEEP,
            owner: "republisher::sweep",
            granted_to: &["RepublisherRole"],
        },
        Family {
            leading_key: "republisher#held#*",
            owner: "republisher::held",
            granted_to: &["RepublisherRole", "StandbyOperatorPolicy"],
        },
        Family {
            leading_key: STANDBYCTL_REDRIVE,
            owner: "standbyctl::dlt",
            granted_to: &["StandbyOperatorPolicy"],
        },
    ];
}

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
        condition_held(result)
    }

    /// Every item under partition key `pk`, strongly consistent, in sort-key order.
    pub async fn list(&self, pk: &str) -> Result<Vec<Item>, TableError> {
        self.list_prefixed(pk, "").await
    }

    /// Every item under partition key `pk` whose sort key starts with `sk_prefix` (all of them
    /// when it is empty: DynamoDB refuses an empty key-condition value).
    pub async fn list_prefixed(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>, TableError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.name)
                .expression_attribute_values(":pk", AttributeValue::S(pk.to_string()));
            query = if sk_prefix.is_empty() {
                query.key_condition_expression("pk = :pk")
            } else {
                query
                    .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                    .expression_attribute_values(
                        ":prefix",
                        AttributeValue::S(sk_prefix.to_string()),
                    )
            };
            let page = query
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
        condition_held(result)
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
