//! Schemas: where they come from, how they are compiled, and the cache every producer and
//! consumer validates through.
//!
//! - [`registry`]: the port, a small trait with the four calls the SDK makes; one adapter today,
//!   [`glue`] (AWS Glue Schema Registry). A Confluent-compatible registry would be a second
//!   adapter of the same trait.
//! - [`compiled`]: a schema version compiled once (JSON Schema or Avro) into a validator that
//!   encodes and decodes payloads and names the failing path of an invalid one.
//! - [`cache`]: compiled schemas by version id and by name, filled once per version; concurrent
//!   misses share one registry request.

pub mod cache;
pub mod compiled;
pub mod glue;
pub mod registry;

pub use cache::SchemaCache;
pub use compiled::{CompiledSchema, Invalid, Payload};
pub use glue::GlueRegistry;
pub use registry::{DataFormat, Registry, RegistryError, SchemaName, SchemaVersion};
