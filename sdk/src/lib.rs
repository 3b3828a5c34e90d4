//! What a producer application links to publish events that are never lost: the fallback
//! producer and everything it stands on. Nothing here is specific to the platform's functions
//! (they link this crate too); linking it pulls in none of `shared`.
//!
//! - [`fallback`]: the producer that writes an event to the standby table when Kafka cannot take
//!   it, and keeps each key's order across instances; start from `examples/producer.rs`.
//! - [`standby_table`]: the one adapter for the standby table (every read and write of it).
//! - [`kafka`] and [`msk_iam`]: Kafka client configuration from the environment, TLS and MSK IAM,
//!   and a producer that replaces itself after a fatal error.
//! - [`classify`]: which Kafka errors mean "wait" and which mean "this event will never go".
//! - [`config`], [`error`], [`retry`]: environment parsing, error types, back-off policies.
//!
//! The formats (record, envelope, headers) are the wire contract's: see the `wire` crate.

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
