//! What applications link to publish and consume the platform's events: producers validate,
//! frame and publish events that are never lost; consumers validate, deduplicate, retry and
//! commit safely. Nothing here is specific to the platform's functions (they link this crate
//! too); linking it pulls in none of `shared`.
//!
//! - [`producer`]: validate against the topic's schema, frame with the schema version, route to
//!   the topic's cluster; start from `examples/producer.rs`.
//! - [`consumer`]: a handler per event, validated by the schema version its prefix names, with
//!   dedupe, retry topics and a dead-letter topic; start from `examples/consumer.rs`.
//! - [`schema`]: the schema registry port, its AWS Glue adapter, compiled schemas and their cache.
//! - [`fallback`]: the producer that writes an event to the standby table when Kafka cannot take
//!   it, and keeps each key's order across instances.
//! - [`standby_table`]: the one adapter for the standby table (every read and write of it).
//! - [`kafka`] and [`msk_iam`]: Kafka client configuration from the environment, TLS and MSK IAM,
//!   and a producer that replaces itself after a fatal error.
//! - [`classify`]: which Kafka errors mean "wait" and which mean "this event will never go".
//! - [`metrics`]: CloudWatch EMF lines (the functions emit through it too).
//! - [`config`], [`error`], [`retry`]: environment parsing, error types, back-off policies.
//!
//! The formats (record, envelope, headers, dead-letter context) are the wire contract's: see the
//! `wire` crate.

pub mod classify;
pub mod config;
pub mod consumer;
pub mod error;
pub mod fallback;
pub mod kafka;
pub mod metrics;
pub mod msk_iam;
pub mod producer;
pub mod retry;
pub mod schema;
pub mod standby_table;

pub use error::{ConfigError, FallbackError, SetupError};
