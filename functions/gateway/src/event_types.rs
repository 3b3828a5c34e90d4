//! Event types: what a partner publishes to, instead of a topic. This module owns the event
//! types table (one item per type, keyed by `name`): the record, its checks, the store, and the
//! function's cache of it. `standbyctl event-types` manages the table through [`EventTypeStore`].

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use sdk::schema::{CompiledSchema, DataFormat, Registry, SchemaName};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::body::Invalid;

/// Names partners use in URLs: letters, digits, `.`, `_`, `-`; at most 128.
pub fn legal_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// One event type, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventType {
    pub name: String,
    /// Where its events go; never shown to callers.
    pub topic: String,
    pub schema_registry: String,
    pub schema_name: String,
    /// JSON pointer to the field whose value is the Kafka key (events of one entity keep their
    /// order); no pointer, no key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_key: Option<String>,
    /// Who may publish: client ids, or `scope:<name>` for callers holding that scope.
    pub writers: BTreeSet<String>,
    pub enabled: bool,
}

/// What a caller proved about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub client_id: String,
    pub scopes: BTreeSet<String>,
}

/// The writers entry that grants a scope.
pub const SCOPE_PREFIX: &str = "scope:";

impl EventType {
    pub fn schema(&self) -> SchemaName {
        SchemaName::new(&self.schema_registry, &self.schema_name)
    }

    /// Whether `caller` may publish events of this type (a disabled type admits nobody).
    pub fn admits(&self, caller: &Caller) -> bool {
        self.enabled
            && self.writers.iter().any(|writer| {
                writer
                    .strip_prefix(SCOPE_PREFIX)
                    .map_or(*writer == caller.client_id, |scope| {
                        caller.scopes.contains(scope)
                    })
            })
    }

    /// The Kafka key of an event: the value at the partition-key pointer (a string as its
    /// UTF-8 bytes, a number or boolean as its JSON text).
    pub fn key_of(&self, data: &Value) -> Result<Option<Vec<u8>>, Invalid> {
        let Some(pointer) = &self.partition_key else {
            return Ok(None);
        };
        match data.pointer(pointer) {
            Some(Value::String(key)) => Ok(Some(key.as_bytes().to_vec())),
            Some(value @ (Value::Number(_) | Value::Bool(_))) => {
                Ok(Some(value.to_string().into_bytes()))
            }
            Some(_) => Err(Invalid::at(
                pointer.as_str(),
                "the partition key must be a string, a number or a boolean",
            )),
            None => Err(Invalid::at(
                pointer.as_str(),
                "the partition key is missing",
            )),
        }
    }

    /// Checks before the type is stored; the message names the field.
    pub fn check(&self) -> Result<(), String> {
        if !legal_name(&self.name) {
            return Err(format!(
                "name {:?}: 1 to 128 of A-Z a-z 0-9 . _ -",
                self.name
            ));
        }
        if !shared::topics::legal_name(&self.topic) {
            return Err(format!("topic {:?} is not a Kafka topic name", self.topic));
        }
        if self.schema_registry.is_empty() || self.schema_name.is_empty() {
            return Err("schema: registry and name are required".into());
        }
        if let Some(pointer) = &self.partition_key
            && !pointer.starts_with('/')
        {
            return Err(format!(
                "partition_key {pointer:?}: a JSON pointer starts with `/`"
            ));
        }
        if self.writers.is_empty() || self.writers.iter().any(|w| w.trim().is_empty()) {
            return Err("writers: at least one, none blank".into());
        }
        Ok(())
    }
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("the event types table {table}: {reason}")]
    Table { table: String, reason: String },
    #[error("event type item {name:?} in {table} is not an event type: {reason}")]
    Malformed {
        table: String,
        name: String,
        reason: String,
    },
}

/// The event types table.
#[derive(Clone)]
pub struct EventTypeStore {
    client: Client,
    table: String,
}

impl EventTypeStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn error(&self, reason: impl std::fmt::Display) -> StoreError {
        StoreError::Table {
            table: self.table.clone(),
            reason: reason.to_string(),
        }
    }

    fn decode(
        &self,
        item: HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
    ) -> Result<EventType, StoreError> {
        let name = item
            .get("name")
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default();
        serde_dynamo::from_item(item).map_err(|e| StoreError::Malformed {
            table: self.table.clone(),
            name,
            reason: e.to_string(),
        })
    }

    pub async fn get(&self, name: &str) -> Result<Option<EventType>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(
                "name",
                aws_sdk_dynamodb::types::AttributeValue::S(name.into()),
            )
            .send()
            .await
            .map_err(|e| self.error(aws_sdk_dynamodb::error::DisplayErrorContext(e)))?;
        output.item.map(|item| self.decode(item)).transpose()
    }

    /// Every event type, by name.
    pub async fn list(&self) -> Result<Vec<EventType>, StoreError> {
        let mut types = Vec::new();
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            let item =
                item.map_err(|e| self.error(aws_sdk_dynamodb::error::DisplayErrorContext(e)))?;
            types.push(self.decode(item)?);
        }
        types.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(types)
    }

    /// Stores `event_type` after [`EventType::check`], replacing one of the same name.
    pub async fn put(&self, event_type: &EventType) -> Result<(), StoreError> {
        event_type.check().map_err(|reason| StoreError::Malformed {
            table: self.table.clone(),
            name: event_type.name.clone(),
            reason,
        })?;
        let item = serde_dynamo::to_item(event_type).map_err(|e| self.error(e))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| self.error(aws_sdk_dynamodb::error::DisplayErrorContext(e)))?;
        Ok(())
    }

    /// Removes the type; whether it existed.
    pub async fn remove(&self, name: &str) -> Result<bool, StoreError> {
        let output = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(
                "name",
                aws_sdk_dynamodb::types::AttributeValue::S(name.into()),
            )
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| self.error(aws_sdk_dynamodb::error::DisplayErrorContext(e)))?;
        Ok(output.attributes.is_some())
    }

    /// Creates the table as the template declares it (local stacks and tests).
    pub async fn create(&self) -> Result<(), StoreError> {
        crate::tables::create_keyed(&self.client, &self.table, "name")
            .await
            .map_err(|reason| self.error(reason))
    }
}

/// An enabled event type with its schema's latest version, compiled.
#[derive(Debug)]
pub struct Resolved {
    pub event_type: EventType,
    pub schema: Arc<CompiledSchema>,
    pub version_number: Option<i64>,
    /// The schema version's definition, as callers are shown it.
    pub definition: String,
}

/// A schema's latest version when it was last read, compiled.
#[derive(Debug)]
struct LatestSchema {
    schema: Arc<CompiledSchema>,
    version_number: Option<i64>,
    definition: String,
}

/// Why an event type's schema could not be had; the caller answers 503.
#[derive(Debug, Error)]
#[error("event type {name}: its schema {schema}: {reason}")]
pub struct ResolveError {
    name: String,
    schema: SchemaName,
    reason: String,
}

/// Most names remembered; past this, names without a type are forgotten first (probes for
/// names that do not exist must not grow the cache without bound, nor flush the real types).
const MAX_CACHED: usize = 10_000;

/// Something read at `loaded`.
struct Cached<T> {
    loaded: Instant,
    value: T,
}

/// Event types as the function sees them: a type read from the table at most once per `ttl`,
/// a schema's latest version at most once per `ttl`, so a changed type (writers, enabled,
/// schema version) takes effect within `ttl`. Types and schemas are cached apart: who may
/// publish is decided on the type alone, before its schema is looked at, so a caller who may
/// not publish a type learns nothing from how its schema fares.
pub struct EventTypes {
    store: EventTypeStore,
    registry: Arc<dyn Registry>,
    ttl: Duration,
    types: Mutex<HashMap<String, Cached<Option<EventType>>>>,
    schemas: tokio::sync::Mutex<HashMap<SchemaName, Cached<Arc<LatestSchema>>>>,
    listing: tokio::sync::Mutex<Option<Cached<Vec<EventType>>>>,
}

impl EventTypes {
    pub fn new(store: EventTypeStore, registry: Arc<dyn Registry>, ttl: Duration) -> Self {
        Self {
            store,
            registry,
            ttl,
            types: Mutex::new(HashMap::new()),
            schemas: tokio::sync::Mutex::new(HashMap::new()),
            listing: tokio::sync::Mutex::new(None),
        }
    }

    fn cached(&self, name: &str) -> Option<Option<EventType>> {
        let types = self.types.lock().unwrap_or_else(|e| e.into_inner());
        types
            .get(name)
            .filter(|entry| entry.loaded.elapsed() < self.ttl)
            .map(|entry| entry.value.clone())
    }

    fn remember(&self, name: &str, event_type: Option<EventType>) {
        let mut types = self.types.lock().unwrap_or_else(|e| e.into_inner());
        if types.len() >= MAX_CACHED {
            types.retain(|_, entry| entry.value.is_some());
        }
        if types.len() >= MAX_CACHED {
            types.clear();
        }
        types.insert(
            name.to_string(),
            Cached {
                loaded: Instant::now(),
                value: event_type,
            },
        );
    }

    /// The enabled type named `name`, or `None` (no such type, or disabled).
    pub async fn get(&self, name: &str) -> Result<Option<EventType>, StoreError> {
        if !legal_name(name) {
            return Ok(None);
        }
        if let Some(cached) = self.cached(name) {
            return Ok(cached);
        }
        let event_type = self.store.get(name).await?.filter(|t| t.enabled);
        self.remember(name, event_type.clone());
        Ok(event_type)
    }

    /// Every enabled type (for listing what a caller may publish).
    pub async fn all(&self) -> Result<Vec<EventType>, StoreError> {
        let mut listing = self.listing.lock().await;
        if let Some(cached) = listing.as_ref()
            && cached.loaded.elapsed() < self.ttl
        {
            return Ok(cached.value.clone());
        }
        let types: Vec<EventType> = self
            .store
            .list()
            .await?
            .into_iter()
            .filter(|t| t.enabled)
            .collect();
        *listing = Some(Cached {
            loaded: Instant::now(),
            value: types.clone(),
        });
        Ok(types)
    }

    /// `event_type` with its schema's latest version (read at most once per `ttl`).
    pub async fn resolve(&self, event_type: EventType) -> Result<Resolved, ResolveError> {
        let name = event_type.schema();
        let mut schemas = self.schemas.lock().await;
        let latest = match schemas.get(&name) {
            Some(cached) if cached.loaded.elapsed() < self.ttl => cached.value.clone(),
            _ => {
                let latest = self.latest(&name).await.map_err(|reason| ResolveError {
                    name: event_type.name.clone(),
                    schema: name.clone(),
                    reason,
                })?;
                schemas.insert(
                    name,
                    Cached {
                        loaded: Instant::now(),
                        value: latest.clone(),
                    },
                );
                latest
            }
        };
        Ok(Resolved {
            event_type,
            schema: latest.schema.clone(),
            version_number: latest.version_number,
            definition: latest.definition.clone(),
        })
    }

    async fn latest(&self, name: &SchemaName) -> Result<Arc<LatestSchema>, String> {
        let version = self
            .registry
            .latest(name)
            .await
            .map_err(|e| e.to_string())?;
        if version.format != DataFormat::Json {
            return Err("the gateway publishes JSON; this schema is not a JSON schema".into());
        }
        let compiled = CompiledSchema::compile(&version).map_err(|e| e.to_string())?;
        Ok(Arc::new(LatestSchema {
            schema: Arc::new(compiled),
            version_number: version.number,
            definition: version.definition,
        }))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn orders() -> EventType {
        EventType {
            name: "order-created".into(),
            topic: "orders".into(),
            schema_registry: "partners".into(),
            schema_name: "order-created".into(),
            partition_key: Some("/order/id".into()),
            writers: BTreeSet::from(["acme".to_string(), "scope:orders.write".to_string()]),
            enabled: true,
        }
    }

    fn caller(client_id: &str, scopes: &[&str]) -> Caller {
        Caller {
            client_id: client_id.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn writers_are_client_ids_or_scopes() {
        let orders = orders();
        assert!(orders.admits(&caller("acme", &[])));
        assert!(orders.admits(&caller("other", &["orders.write"])));
        assert!(!orders.admits(&caller("other", &["orders.read"])));
        // A client id that looks like a scope entry is just a client id.
        assert!(!orders.admits(&caller("scope:orders.write", &[])));
        let disabled = EventType {
            enabled: false,
            ..orders
        };
        assert!(!disabled.admits(&caller("acme", &[])));
    }

    #[test]
    fn the_key_is_the_value_at_the_pointer() {
        let orders = orders();
        assert_eq!(
            orders.key_of(&json!({"order": {"id": "o-1"}})).unwrap(),
            Some(b"o-1".to_vec())
        );
        assert_eq!(
            orders.key_of(&json!({"order": {"id": 42}})).unwrap(),
            Some(b"42".to_vec())
        );
        let missing = orders.key_of(&json!({"order": {}})).unwrap_err();
        assert_eq!(missing.path, "/order/id");
        let object = orders.key_of(&json!({"order": {"id": {}}})).unwrap_err();
        assert!(object.message.contains("string"), "{object}");
        let keyless = EventType {
            partition_key: None,
            ..orders
        };
        assert_eq!(keyless.key_of(&json!({})).unwrap(), None);
    }

    #[test]
    fn checks_name_the_field() {
        assert_eq!(orders().check(), Ok(()));
        let bad = |change: fn(&mut EventType), field: &str| {
            let mut event_type = orders();
            change(&mut event_type);
            let error = event_type.check().unwrap_err();
            assert!(error.starts_with(field), "{error}");
        };
        bad(|t| t.name = "a/b".into(), "name");
        bad(|t| t.topic = "a topic".into(), "topic");
        bad(|t| t.schema_name = String::new(), "schema");
        bad(
            |t| t.partition_key = Some("order/id".into()),
            "partition_key",
        );
        bad(|t| t.writers.clear(), "writers");
    }

    #[test]
    fn the_stored_item_is_the_documented_one() {
        let item: HashMap<String, aws_sdk_dynamodb::types::AttributeValue> =
            serde_dynamo::to_item(orders()).unwrap();
        let mut names: Vec<_> = item.keys().cloned().collect();
        names.sort();
        assert_eq!(
            names,
            [
                "enabled",
                "name",
                "partition_key",
                "schema_name",
                "schema_registry",
                "topic",
                "writers"
            ]
        );
    }
}
