//! The producer SDK: validate every event against its topic's schema, frame it with the schema
//! version (Glue framing), and publish it through the fallback producer of the cluster its
//! topic is routed to.
//!
//! What happens to an event, in order:
//! 1. **Route.** The longest topic prefix in the routing table names the cluster (one
//!    [`FallbackProducer`] each: bootstrap servers, standby table, dead-letter topic). The
//!    platform shards domains across MSK clusters; one `Producer` serves them all.
//! 2. **Schema.** The topic's schema version: resolved and compiled at start-up for the topics
//!    configured ([`TopicSchema`]), on first use for any other (its schema named after the topic
//!    in the default registry). If the registry cannot be reached for a schema not yet cached,
//!    the event is **returned to the caller** ([`SendError::SchemaUnavailable`]): it was not
//!    validated, so it goes neither to Kafka nor to the standby table, and the caller retries
//!    it later under the same id. Cached schemas keep working through a registry outage.
//! 3. **Validate and frame.** An invalid event goes to the route's dead-letter topic with the
//!    error's path and message in `dlt-*` headers, and the send fails with
//!    [`SendError::Invalid`]: never to the topic, never to the standby table.
//! 4. **Publish** through the fallback producer: Kafka, or the standby table when the cluster
//!    cannot take it (see [`crate::fallback`]).

use std::collections::HashMap;
use std::sync::Arc;

use thiserror::Error;
use wire::dead_letter::{self, ErrorClass, PayloadFormat, Source};
use wire::envelope::{self, Compression, SchemaId};
use wire::record::{EventId, Header};

use crate::error::FallbackError;
use crate::fallback::{Delivery, Event, FallbackProducer};
use crate::schema::cache::SchemaError;
use crate::schema::{CompiledSchema, Invalid, Payload, SchemaCache, SchemaName};

/// Which schema version a topic's events are validated and framed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSchema {
    pub topic: String,
    pub schema: SchemaName,
    pub version: VersionChoice,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionChoice {
    /// The schema's latest version when the producer starts.
    Latest,
    /// The version with exactly this definition (the schema the application was built with,
    /// as AWS's Glue SerDe does); registered if missing when auto-registration is on.
    Definition(String),
}

/// One cluster of the routing table: the topics starting with `prefix` go through `producer`.
pub struct Route {
    pub prefix: String,
    pub producer: FallbackProducer,
}

impl Route {
    pub fn new(prefix: impl Into<String>, producer: FallbackProducer) -> Self {
        Self {
            prefix: prefix.into(),
            producer,
        }
    }
}

/// The index of the route with the longest prefix of `topic` (an empty prefix matches all).
pub fn route_for<'a>(topic: &str, prefixes: impl IntoIterator<Item = &'a str>) -> Option<usize> {
    prefixes
        .into_iter()
        .enumerate()
        .filter(|(_, prefix)| topic.starts_with(prefix))
        .max_by_key(|(_, prefix)| prefix.len())
        .map(|(i, _)| i)
}

/// How the producer behaves; see the module doc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerSettings {
    /// Schemas resolved and compiled at start-up.
    pub topics: Vec<TopicSchema>,
    /// Registry of the schema named after a topic that is not in `topics`.
    pub default_registry: String,
    /// Whether a [`VersionChoice::Definition`] missing from the registry is registered. Off by
    /// default: in production, schemas are registered by review, not by the first producer.
    pub auto_register: bool,
    /// Payload compression (Glue's zlib, byte 1 of the prefix).
    pub compression: Compression,
}

impl ProducerSettings {
    pub fn new(default_registry: impl Into<String>) -> Self {
        Self {
            topics: Vec::new(),
            default_registry: default_registry.into(),
            auto_register: false,
            compression: Compression::None,
        }
    }
}

/// An event as the application hands it over. Its id is minted when it is created and kept
/// across retries of the same event, so a retry can only ever make a duplicate consumers drop.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingEvent {
    pub id: EventId,
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Payload,
    pub headers: Vec<Header>,
}

impl OutgoingEvent {
    pub fn new(topic: impl Into<String>, key: Option<Vec<u8>>, payload: Payload) -> Self {
        Self {
            id: EventId::new(),
            topic: topic.into(),
            key,
            payload,
            headers: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push(Header::new(name, value));
        self
    }
}

/// Why an event was not published. The caller keeps the event in every case.
#[derive(Debug, Error)]
pub enum SendError {
    #[error("event {event_id}: no route for topic {topic}")]
    NoRoute { event_id: EventId, topic: String },
    #[error("event {event_id}: the schema of topic {topic} is not available: {source}")]
    SchemaUnavailable {
        event_id: EventId,
        topic: String,
        #[source]
        source: SchemaError,
    },
    /// The event does not match its schema; `dead_letter` says whether the dead-letter topic
    /// has it (`Ok((partition, offset))`) or why not.
    #[error("event {event_id} for {topic} is invalid: {error}")]
    Invalid {
        event_id: EventId,
        topic: String,
        error: Invalid,
        dead_letter: Result<(i32, i64), String>,
    },
    #[error(transparent)]
    Fallback(#[from] FallbackError),
}

impl SendError {
    /// Whether sending the same event again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::SchemaUnavailable { source, .. } => source.is_transient(),
            Self::Fallback(error) => error.is_transient(),
            _ => false,
        }
    }
}

/// Why the producer could not start.
#[derive(Debug, Error)]
pub enum StartError {
    #[error("the schema of topic {topic} ({schema}): {source}")]
    Schema {
        topic: String,
        schema: SchemaName,
        #[source]
        source: SchemaError,
    },
    #[error("no route for the configured topic {topic}")]
    NoRoute { topic: String },
    #[error("the routing table is empty")]
    NoRoutes,
}

/// The producer an application builds once and shares.
pub struct Producer {
    schemas: Arc<SchemaCache>,
    routes: Vec<Route>,
    configured: HashMap<String, TopicSchema>,
    settings: ProducerSettings,
}

impl Producer {
    /// Resolves and compiles every configured topic's schema, failing if one cannot be had: a
    /// producer that starts can validate every configured topic even if the registry goes away.
    pub async fn start(
        schemas: Arc<SchemaCache>,
        routes: Vec<Route>,
        settings: ProducerSettings,
    ) -> Result<Self, StartError> {
        if routes.is_empty() {
            return Err(StartError::NoRoutes);
        }
        let producer = Self {
            schemas,
            configured: settings
                .topics
                .iter()
                .map(|t| (t.topic.clone(), t.clone()))
                .collect(),
            routes,
            settings,
        };
        for topic in &producer.settings.topics {
            if producer.route(&topic.topic).is_none() {
                return Err(StartError::NoRoute {
                    topic: topic.topic.clone(),
                });
            }
            producer
                .schema_of(&topic.topic)
                .await
                .map_err(|source| StartError::Schema {
                    topic: topic.topic.clone(),
                    schema: topic.schema.clone(),
                    source,
                })?;
        }
        Ok(producer)
    }

    /// Validates, frames and publishes `event`; see the module doc for where it can go.
    pub async fn send(&self, event: &OutgoingEvent) -> Result<Delivery, SendError> {
        let route = self.route(&event.topic).ok_or_else(|| SendError::NoRoute {
            event_id: event.id,
            topic: event.topic.clone(),
        })?;
        let schema =
            self.schema_of(&event.topic)
                .await
                .map_err(|source| SendError::SchemaUnavailable {
                    event_id: event.id,
                    topic: event.topic.clone(),
                    source,
                })?;
        let framing = SchemaId::Glue(schema.id());
        match schema.encode(&event.payload) {
            Ok(payload) => {
                let value = envelope::frame(framing, self.settings.compression, &payload);
                let framed = Event {
                    topic: event.topic.clone(),
                    key: event.key.clone(),
                    value,
                    headers: event.headers.clone(),
                };
                Ok(route.producer.send_with_id(framed, event.id).await?)
            }
            Err(error) => Err(self.dead_letter_invalid(route, event, &schema, error).await),
        }
    }

    async fn dead_letter_invalid(
        &self,
        route: &Route,
        event: &OutgoingEvent,
        schema: &CompiledSchema,
        error: Invalid,
    ) -> SendError {
        let mut context = dead_letter::Context::new(
            &error.message,
            ErrorClass::Invalid,
            Source::ProducerValidation,
        );
        context.original_topic = Some(event.topic.clone());
        context.error_path = Some(error.path.clone());
        let payload = match &event.payload {
            Payload::Json(value) => serde_json::to_vec(value).unwrap_or_default(),
            Payload::Avro(value) => {
                context.payload_format = Some(PayloadFormat::AvroValueJson);
                serde_json::Value::try_from(value.clone())
                    .map(|json| json.to_string().into_bytes())
                    .unwrap_or_default()
            }
        };
        let invalid = Event {
            topic: event.topic.clone(),
            key: event.key.clone(),
            value: envelope::frame(SchemaId::Glue(schema.id()), Compression::None, &payload),
            headers: event.headers.clone(),
        };
        let dead_letter = route
            .producer
            .publish_dead_letter(event.id, &invalid, &context)
            .await
            .map_err(|e| e.to_string());
        // The message and path never quote the payload's values.
        tracing::error!(event_id = %event.id, topic = %event.topic, path = %error.path, message = %error.message, dead_lettered = dead_letter.is_ok(), "event is invalid for its schema");
        SendError::Invalid {
            event_id: event.id,
            topic: event.topic.clone(),
            error,
            dead_letter,
        }
    }

    fn route(&self, topic: &str) -> Option<&Route> {
        route_for(topic, self.routes.iter().map(|r| r.prefix.as_str())).map(|i| &self.routes[i])
    }

    async fn schema_of(&self, topic: &str) -> Result<Arc<CompiledSchema>, SchemaError> {
        match self.configured.get(topic) {
            Some(TopicSchema {
                schema,
                version: VersionChoice::Latest,
                ..
            }) => self.schemas.latest(schema).await,
            Some(TopicSchema {
                schema,
                version: VersionChoice::Definition(definition),
                ..
            }) => {
                self.schemas
                    .by_definition(schema, definition, self.settings.auto_register)
                    .await
            }
            None => {
                self.schemas
                    .latest(&SchemaName::new(&self.settings.default_registry, topic))
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_matching_prefix_wins() {
        let prefixes = ["", "orders.", "orders.eu.", "payments."];
        assert_eq!(route_for("orders.eu.created", prefixes), Some(2));
        assert_eq!(route_for("orders.us.created", prefixes), Some(1));
        assert_eq!(route_for("payments.settled", prefixes), Some(3));
        assert_eq!(route_for("inventory", prefixes), Some(0));
        assert_eq!(route_for("inventory", ["orders."]), None);
    }
}
