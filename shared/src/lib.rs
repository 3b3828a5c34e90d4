//! What the standby-event functions and the producers that feed them share.
//!
//! - [`record`]: the standby record, the one definition of the DynamoDB item's bytes;
//!   [`envelope`]: the schema-version prefix inside every value.
//! - [`fallback`]: the producer-side publisher that writes to the standby table when Kafka is
//!   unavailable, and [`standby_table`], its DynamoDB adapter.
//! - [`classify`]: which Kafka errors are retriable, used by every component that produces.
//! - [`kafka`] and [`msk_iam`]: Kafka client configuration from the environment, TLS and MSK IAM.
//! - [`state_table`]: the functions' own small state (sweep checkpoint, scale cooldown), and
//!   [`handoff`]: new broker ids passed from the autoscaler to the rebalancer through it.
//! - [`config`], [`error`], [`retry`], [`telemetry`], [`headers`]: environment parsing, error types,
//!   back-off policies, JSON logs and EMF metrics, and the header names consumers rely on.

pub mod classify;
pub mod config;
pub mod deadline;
pub mod envelope;
pub mod error;
pub mod fallback;
pub mod handoff;
pub mod headers;
pub mod kafka;
pub mod msk_iam;
pub mod record;
pub mod retry;
pub mod standby_table;
pub mod state_table;
pub mod telemetry;

pub use error::{ConfigError, FallbackError, RecordError};
pub use record::{EventId, Header, StandbyRecord};
