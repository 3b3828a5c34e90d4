//! The wire contract: the bytes that cross a process boundary, with exactly one owner each.
//!
//! - [`record`]: the standby record, the one definition of the DynamoDB item a producer writes
//!   and the republisher reads (attributes, partition key, backlog markers).
//! - [`envelope`]: the schema-version prefix inside every value.
//! - [`headers`]: the Kafka header names consumers rely on; [`dead_letter`]: the context a
//!   dead-lettered event carries, written and read in one place.
//! - [`error`]: why bytes are not a valid record; [`clock`]: epoch milliseconds, as records
//!   carry time.
//!
//! Producers in other languages implement this crate's formats from the docs; nothing here talks
//! to a service.

pub mod clock;
pub mod dead_letter;
pub mod envelope;
pub mod error;
pub mod headers;
pub mod record;

pub use error::RecordError;
pub use record::{EventId, Header, StandbyRecord};
