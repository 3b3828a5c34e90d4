//! `event-types ls|put|rm`: the gateway's event types, through the gateway's own store (one
//! owner of the table and its checks).

use std::collections::BTreeSet;

use gateway::event_types::{EventType, EventTypeStore, StoreError};
use sdk::schema::{DataFormat, Registry, SchemaName};
use serde::Serialize;
use shared::topics::TopicAllowList;

use crate::error::{CtlError, Finish};
use crate::render::{self, Report};

impl From<StoreError> for CtlError {
    fn from(error: StoreError) -> Self {
        match error {
            // A type the store refuses to write is the caller's input at fault.
            StoreError::Malformed { reason, .. } => Self::Usage(reason),
            StoreError::Table { .. } => Self::Service(error.to_string()),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Listing {
    pub event_types: Vec<EventType>,
}

impl Report for Listing {
    fn human(&self) -> String {
        let mut table = render::table(&[
            "name",
            "enabled",
            "topic",
            "schema",
            "partition key",
            "writers",
        ]);
        for t in &self.event_types {
            table.add_row(vec![
                t.name.clone(),
                t.enabled.to_string(),
                t.topic.clone(),
                format!("{}/{}", t.schema_registry, t.schema_name),
                t.partition_key.clone().unwrap_or_else(|| "-".into()),
                t.writers.iter().cloned().collect::<Vec<_>>().join(" "),
            ]);
        }
        format!("{table}\n{} event types", self.event_types.len())
    }
}

pub async fn ls(store: &EventTypeStore) -> Result<Listing, CtlError> {
    Ok(Listing {
        event_types: store.list().await?,
    })
}

/// What `put` was asked to store.
pub struct NewType {
    pub name: String,
    pub topic: String,
    pub schema: String,
    pub partition_key: Option<String>,
    pub writers: Vec<String>,
    pub enabled: bool,
}

#[derive(Debug, Serialize)]
pub struct Stored {
    pub event_type: EventType,
    pub schema_version: String,
}

impl Report for Stored {
    fn human(&self) -> String {
        format!(
            "stored event type {} (schema version {}, {})",
            self.event_type.name,
            self.schema_version,
            if self.event_type.enabled {
                "enabled"
            } else {
                "disabled"
            }
        )
    }
}

/// Checks `new` (its fields, its topic against `topics`, its schema in `registry`) and stores it.
pub async fn put(
    store: &EventTypeStore,
    registry: &dyn Registry,
    topics: &TopicAllowList,
    new: NewType,
) -> Result<Stored, CtlError> {
    let (schema_registry, schema_name) = new
        .schema
        .split_once('/')
        .filter(|(registry, name)| !registry.is_empty() && !name.is_empty())
        .ok_or_else(|| {
            CtlError::Usage(format!("--schema {:?}: expected REGISTRY/NAME", new.schema))
        })?;
    let event_type = EventType {
        name: new.name,
        topic: new.topic,
        schema_registry: schema_registry.to_string(),
        schema_name: schema_name.to_string(),
        partition_key: new.partition_key,
        writers: new.writers.into_iter().collect::<BTreeSet<_>>(),
        enabled: new.enabled,
    };
    event_type.check().map_err(CtlError::Usage)?;
    if !topics.permits(&event_type.topic) {
        return Err(CtlError::Usage(format!(
            "--topic: {}; the gateway may not publish there",
            topics.refusal(&event_type.topic)
        )));
    }
    let schema = SchemaName::new(schema_registry, schema_name);
    let version = registry
        .latest(&schema)
        .await
        .map_err(|e| CtlError::Usage(format!("--schema {schema}: {e}")))?;
    if version.format != DataFormat::Json {
        return Err(CtlError::Usage(format!(
            "--schema {schema}: the gateway takes JSON events; this is not a JSON schema"
        )));
    }
    store.put(&event_type).await?;
    Ok(Stored {
        event_type,
        schema_version: version.id.to_string(),
    })
}

#[derive(Debug, Serialize)]
pub struct Removed {
    pub name: String,
    pub removed: bool,
    pub refused: bool,
}

impl Report for Removed {
    fn human(&self) -> String {
        if self.refused {
            format!(
                "not removed: run again with --yes to remove event type {}",
                self.name
            )
        } else {
            format!("removed event type {}", self.name)
        }
    }
}

impl Removed {
    pub fn finish(&self) -> Finish {
        if self.refused {
            Finish::Refused
        } else {
            Finish::Done
        }
    }
}

pub async fn rm(store: &EventTypeStore, name: &str, yes: bool) -> Result<Removed, CtlError> {
    if store.get(name).await?.is_none() {
        return Err(CtlError::NotFound(format!("no event type {name:?}")));
    }
    if !yes {
        return Ok(Removed {
            name: name.to_string(),
            removed: false,
            refused: true,
        });
    }
    let removed = store.remove(name).await?;
    Ok(Removed {
        name: name.to_string(),
        removed,
        refused: false,
    })
}
