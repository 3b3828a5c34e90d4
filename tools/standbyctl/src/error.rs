//! What can go wrong, and the exit code each outcome gives scripts.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done (also when nothing matched) |
//! | 1 | a service call failed (DynamoDB, Kafka, the editor) |
//! | 2 | bad usage: an unknown flag, a bad filter, missing configuration |
//! | 3 | the record asked for by id does not exist |
//! | 4 | partly done: some selected records failed (each is listed) |
//! | 5 | refused: a destructive command without `--yes`, or whose selection changed since `--expect` |
//! | 6 | `cluster`: something needs attention (listed first in the report) |

use std::process::ExitCode;

use sdk::ConfigError;
use sdk::standby_table::TableError;

/// How a command that ran to its end finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    Done,
    Partial,
    Refused,
    /// A health check found something an operator must look at.
    Attention,
}

impl From<Finish> for ExitCode {
    fn from(finish: Finish) -> Self {
        ExitCode::from(match finish {
            Finish::Done => 0,
            Finish::Partial => 4,
            Finish::Refused => 5,
            Finish::Attention => 6,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// A bad argument that clap could not catch (filters that contradict each other, …).
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    NotFound(String),
    /// A destructive command not confirmed as it must be; nothing was done.
    #[error("{0}")]
    Refused(String),
    /// Boxed: the SDK's error is large, and most results here are not errors.
    #[error("DynamoDB: {0}")]
    Table(Box<TableError>),
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The admin client (metadata, configs, the quorum).
    #[error("Kafka admin: {0}")]
    Admin(#[from] rebalancer::admin::AdminError),
    /// Another service call failed (the event types table, the schema registry).
    #[error("{0}")]
    Service(String),
    #[error("{0}")]
    Edit(#[from] crate::patch::PatchError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<TableError> for CtlError {
    fn from(error: TableError) -> Self {
        Self::Table(Box::new(error))
    }
}

impl CtlError {
    /// A DynamoDB error on table `name`; a missing table is a configuration mistake, said as
    /// such with the flag (or variable) that named it.
    pub fn table(name: &str, named_by: &str, error: TableError) -> Self {
        match error {
            TableError::ResourceNotFoundException(_) => Self::Usage(format!(
                "there is no DynamoDB table {name:?} here (check {named_by} and the AWS region)"
            )),
            other => other.into(),
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Self::Usage(_) | Self::Config(_) => 2,
            Self::NotFound(_) => 3,
            Self::Refused(_) => 5,
            Self::Table(_)
            | Self::Kafka(_)
            | Self::Admin(_)
            | Self::Service(_)
            | Self::Edit(_)
            | Self::Io { .. } => 1,
        })
    }
}
