//! The registry port: what the SDK asks of a schema registry, independent of which one.

use std::fmt;

use futures::future::BoxFuture;
use thiserror::Error;
use uuid::Uuid;

/// A schema's name in a registry: Glue names schemas within a registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SchemaName {
    pub registry: String,
    pub schema: String,
}

impl SchemaName {
    pub fn new(registry: impl Into<String>, schema: impl Into<String>) -> Self {
        Self {
            registry: registry.into(),
            schema: schema.into(),
        }
    }
}

impl fmt::Display for SchemaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.schema)
    }
}

/// The schema languages the SDK validates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataFormat {
    Json,
    Avro,
}

impl fmt::Display for DataFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Json => "JSON",
            Self::Avro => "AVRO",
        })
    }
}

/// One immutable schema version as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaVersion {
    /// What the value's prefix carries.
    pub id: Uuid,
    pub format: DataFormat,
    pub definition: String,
    /// The version's number within its schema, when the registry says.
    pub number: Option<i64>,
}

/// Why the registry did not give what was asked.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RegistryError {
    #[error("{what} is not in the registry")]
    NotFound { what: String },
    /// Permanent for this request: an invalid or incompatible definition, access denied.
    #[error("the registry refused {what}: {reason}")]
    Refused { what: String, reason: String },
    /// The registry could not be reached or failed; asking again later may work.
    #[error("the registry could not be reached for {what}: {reason}")]
    Unavailable { what: String, reason: String },
    #[error("schema version {id} is in data format {format}, which this SDK does not read")]
    UnsupportedFormat { id: Uuid, format: String },
}

/// The calls the SDK makes. Implementations map their service's errors onto [`RegistryError`]
/// and leave caching to [`super::SchemaCache`].
pub trait Registry: Send + Sync {
    /// The version a value's prefix names (Glue: `GetSchemaVersion` by `SchemaVersionId`).
    fn version(&self, id: Uuid) -> BoxFuture<'_, Result<SchemaVersion, RegistryError>>;

    /// The schema's latest version.
    fn latest<'a>(
        &'a self,
        name: &'a SchemaName,
    ) -> BoxFuture<'a, Result<SchemaVersion, RegistryError>>;

    /// The version of `name` whose definition is exactly `definition` (Glue:
    /// `GetSchemaByDefinition`).
    fn find<'a>(
        &'a self,
        name: &'a SchemaName,
        definition: &'a str,
    ) -> BoxFuture<'a, Result<SchemaVersion, RegistryError>>;

    /// Registers `definition` as a new version of `name` (or returns the existing identical one).
    /// The registry applies the schema's compatibility rule; a refusal is
    /// [`RegistryError::Refused`].
    fn register<'a>(
        &'a self,
        name: &'a SchemaName,
        definition: &'a str,
    ) -> BoxFuture<'a, Result<SchemaVersion, RegistryError>>;
}
