//! What the platform's functions share and producer applications do not link: their own state,
//! logs and metrics, and invocation deadlines.
//!
//! - [`state_table`]: the functions' small state table (sweep checkpoint, held keys, scale
//!   cooldown, rebalance handoff), with every key family declared in one place
//!   ([`state_table::keys`]).
//! - [`handoff`]: new broker ids passed from the autoscaler to the rebalancer through it.
//! - [`telemetry`]: JSON logs and CloudWatch EMF metrics.
//! - [`topics`]: the topics the functions may publish events to (`EVENT_TOPICS`).
//! - [`deadline`]: the time an invocation may still use; [`invocation`]: schedule detection and
//!   the function's name, decided once.
//!
//! The wire formats are the `wire` crate's; Kafka, the standby table and the producer are the
//! `sdk` crate's.

pub mod deadline;
pub mod handoff;
pub mod invocation;
pub mod state_table;
pub mod telemetry;
pub mod topics;
