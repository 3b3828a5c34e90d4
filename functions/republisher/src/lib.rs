//! The republisher: drains the standby table into Kafka.
//!
//! Triggered by the table's DynamoDB Stream (batches of up to 1,000 records) and by an
//! EventBridge schedule (the sweep). Layout:
//! - [`entry`]: a Lambda event or a scanned page → ordered [`entry::Entry`]s (pure);
//! - [`engine`]: the rules — per-key chains, ack before delete, first failure reported,
//!   poison dead-lettered — over the [`engine::Sink`] and [`engine::Table`] ports;
//! - [`dead_letter`]: the message a poison record becomes (pure);
//! - [`adapters`]: the ports over rdkafka and DynamoDB;
//! - [`sweep`]: the scheduled scan with its resume point, held keys, backlog markers;
//! - [`held`]: keys held back (their topic refuses us, or a record is stranded);
//! - [`handler`]: trigger dispatch, the Lambda response, metrics; [`settings`]: configuration.

pub mod adapters;
pub mod dead_letter;
pub mod engine;
pub mod entry;
pub mod handler;
pub mod held;
pub mod settings;
pub mod sweep;

pub use handler::{App, HandlerError, Response, Trigger, handle};
