//! The AWS Glue Schema Registry adapter of the [`Registry`] port, through `aws-sdk-glue`.
//!
//! Locally the stack's moto answers the same calls; it does not check compatibility, which Glue
//! does in AWS when a version is registered (the schema's compatibility mode, e.g. `BACKWARD`).
//! Registration is asynchronous in Glue: a new version is `PENDING` until the check ends in
//! `AVAILABLE` or `FAILURE`, so [`GlueRegistry::register`] polls until it knows
//! ([`registration_step`]).

use std::time::Duration;

use aws_sdk_glue::Client;
use aws_sdk_glue::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_glue::types::{self, SchemaVersionStatus};
use futures::FutureExt;
use futures::future::BoxFuture;
use uuid::Uuid;

use super::registry::{DataFormat, Registry, RegistryError, SchemaName, SchemaVersion};

/// How often, and how many times, a `PENDING` registration is read again.
const REGISTRATION_POLL: Duration = Duration::from_millis(250);
const REGISTRATION_POLLS: u32 = 40;

/// The Glue Schema Registry, through one SDK client (build it once, from the shared AWS config).
#[derive(Debug, Clone)]
pub struct GlueRegistry {
    client: Client,
}

impl GlueRegistry {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    async fn get(
        &self,
        id: Uuid,
    ) -> Result<(SchemaVersion, Option<SchemaVersionStatus>), RegistryError> {
        let what = format!("schema version {id}");
        let out = self
            .client
            .get_schema_version()
            .schema_version_id(id.to_string())
            .send()
            .await
            .map_err(|e| classify(e, &what))?;
        let version = schema_version(
            &what,
            out.schema_version_id(),
            out.data_format(),
            out.schema_definition(),
            out.version_number(),
        )?;
        Ok((version, out.status().cloned()))
    }
}

/// What a registration's status means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationStep {
    /// The version may be used.
    Ready,
    /// The compatibility check is still running: read the status again.
    Wait,
    /// The registry refused the version (in Glue: incompatible with the schema's mode).
    Refused,
}

/// The step for a version's status. A status the SDK does not know is treated as a refusal:
/// publishing with a version the registry has not made available would let consumers meet an id
/// they cannot resolve.
pub fn registration_step(status: Option<&SchemaVersionStatus>) -> RegistrationStep {
    match status {
        Some(SchemaVersionStatus::Available) => RegistrationStep::Ready,
        Some(SchemaVersionStatus::Pending) => RegistrationStep::Wait,
        _ => RegistrationStep::Refused,
    }
}

impl Registry for GlueRegistry {
    fn version(&self, id: Uuid) -> BoxFuture<'_, Result<SchemaVersion, RegistryError>> {
        async move {
            let (version, status) = self.get(id).await?;
            match registration_step(status.as_ref()) {
                RegistrationStep::Ready => Ok(version),
                // Still in Glue's compatibility check: it may be AVAILABLE in a moment.
                RegistrationStep::Wait => Err(RegistryError::Unavailable {
                    what: format!("schema version {id}"),
                    reason: "PENDING Glue's compatibility check".into(),
                }),
                RegistrationStep::Refused => Err(RegistryError::NotFound {
                    what: format!("an available schema version {id} (status {status:?})"),
                }),
            }
        }
        .boxed()
    }

    fn latest<'a>(
        &'a self,
        name: &'a SchemaName,
    ) -> BoxFuture<'a, Result<SchemaVersion, RegistryError>> {
        async move {
            let what = format!("the latest version of {name}");
            let out = self
                .client
                .get_schema_version()
                .schema_id(schema_id(name))
                .schema_version_number(
                    types::SchemaVersionNumber::builder()
                        .latest_version(true)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| classify(e, &what))?;
            // Events framed with a version that is not AVAILABLE would name one consumers cannot
            // resolve: wait for a PENDING one, refuse a FAILED one.
            match registration_step(out.status()) {
                RegistrationStep::Ready => {}
                RegistrationStep::Wait => {
                    return Err(RegistryError::Unavailable {
                        what,
                        reason: "the latest version is PENDING Glue's compatibility check".into(),
                    });
                }
                RegistrationStep::Refused => {
                    return Err(RegistryError::NotFound {
                        what: format!("{what} in status AVAILABLE (it is {:?})", out.status()),
                    });
                }
            }
            schema_version(
                &what,
                out.schema_version_id(),
                out.data_format(),
                out.schema_definition(),
                out.version_number(),
            )
        }
        .boxed()
    }

    fn find<'a>(
        &'a self,
        name: &'a SchemaName,
        definition: &'a str,
    ) -> BoxFuture<'a, Result<SchemaVersion, RegistryError>> {
        async move {
            let what = format!("a version of {name} with the given definition");
            let out = self
                .client
                .get_schema_by_definition()
                .schema_id(schema_id(name))
                .schema_definition(definition)
                .send()
                .await
                .map_err(|e| classify(e, &what))?;
            if registration_step(out.status()) != RegistrationStep::Ready {
                return Err(RegistryError::NotFound { what });
            }
            schema_version(
                &what,
                out.schema_version_id(),
                out.data_format(),
                Some(definition),
                None,
            )
        }
        .boxed()
    }

    fn register<'a>(
        &'a self,
        name: &'a SchemaName,
        definition: &'a str,
    ) -> BoxFuture<'a, Result<SchemaVersion, RegistryError>> {
        async move {
            let what = format!("a new version of {name}");
            let out = self
                .client
                .register_schema_version()
                .schema_id(schema_id(name))
                .schema_definition(definition)
                .send()
                .await
                .map_err(|e| classify(e, &what))?;
            let id = parse_id(&what, out.schema_version_id())?;
            for _ in 0..REGISTRATION_POLLS {
                let (version, status) = self.get(id).await?;
                match registration_step(status.as_ref()) {
                    RegistrationStep::Ready => return Ok(version),
                    RegistrationStep::Wait => tokio::time::sleep(REGISTRATION_POLL).await,
                    RegistrationStep::Refused => {
                        return Err(RegistryError::Refused {
                            what,
                            reason: format!(
                                "version {id} ended {status:?}: incompatible with the \
                                 schema's compatibility mode"
                            ),
                        });
                    }
                }
            }
            Err(RegistryError::Unavailable {
                what,
                reason: format!("version {id} was still PENDING after {REGISTRATION_POLLS} reads"),
            })
        }
        .boxed()
    }
}

fn schema_id(name: &SchemaName) -> types::SchemaId {
    types::SchemaId::builder()
        .registry_name(&name.registry)
        .schema_name(&name.schema)
        .build()
}

fn parse_id(what: &str, id: Option<&str>) -> Result<Uuid, RegistryError> {
    id.and_then(|id| id.parse().ok())
        .ok_or_else(|| RegistryError::Unavailable {
            what: what.to_string(),
            reason: format!("the answer has no valid SchemaVersionId ({id:?})"),
        })
}

fn schema_version(
    what: &str,
    id: Option<&str>,
    format: Option<&types::DataFormat>,
    definition: Option<&str>,
    number: Option<i64>,
) -> Result<SchemaVersion, RegistryError> {
    let id = parse_id(what, id)?;
    let format = match format {
        Some(types::DataFormat::Json) => DataFormat::Json,
        Some(types::DataFormat::Avro) => DataFormat::Avro,
        other => {
            return Err(RegistryError::UnsupportedFormat {
                id,
                format: other.map_or_else(|| "(none)".into(), |f| f.as_str().to_string()),
            });
        }
    };
    Ok(SchemaVersion {
        id,
        format,
        definition: definition.unwrap_or_default().to_string(),
        number,
    })
}

/// Glue's error codes onto the port's three kinds: what is not there, what will never be
/// accepted, and what may work later (everything that is not a service's answer: timeouts,
/// connection failures, throttling, internal errors).
fn classify<E, R>(error: SdkError<E, R>, what: &str) -> RegistryError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let service_code = match &error {
        SdkError::ServiceError(e) => e.err().code().map(str::to_string),
        _ => None,
    };
    let reason = match &error {
        SdkError::ServiceError(e) => e.err().message().unwrap_or("no message").to_string(),
        other => aws_sdk_glue::error::DisplayErrorContext(other)
            .to_string()
            .chars()
            .take(300)
            .collect(),
    };
    let what = what.to_string();
    match service_code.as_deref() {
        Some("EntityNotFoundException") => RegistryError::NotFound { what },
        Some(
            "InvalidInputException"
            | "AccessDeniedException"
            | "ResourceNumberLimitExceededException"
            | "AlreadyExistsException",
        ) => RegistryError::Refused { what, reason },
        _ => RegistryError::Unavailable { what, reason },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_available_version_is_used() {
        assert_eq!(
            registration_step(Some(&SchemaVersionStatus::Available)),
            RegistrationStep::Ready
        );
        assert_eq!(
            registration_step(Some(&SchemaVersionStatus::Pending)),
            RegistrationStep::Wait
        );
        for refused in [
            Some(SchemaVersionStatus::Failure),
            Some(SchemaVersionStatus::Deleting),
            Some(SchemaVersionStatus::from("SOMETHING_NEW")),
            None,
        ] {
            assert_eq!(
                registration_step(refused.as_ref()),
                RegistrationStep::Refused,
                "{refused:?}"
            );
        }
    }
}
