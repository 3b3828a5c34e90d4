//! The event gateway: partners publish events over HTTPS without seeing Kafka.
//!
//! A partner names an *event type* (`POST /event-types/{name}/events`); the gateway checks who
//! is calling (a JWT), whether they may publish that type, and every event of the batch against
//! the type's schema, then publishes through the producer fallback (Kafka, or the standby table
//! when the cluster cannot take it), so an accepted event is never lost.
//!
//! - [`handler`]: the HTTP handler: routes, authentication and authorization, answers, metrics.
//! - [`batch`]: a batch's steps once read: validate every event, give each its id, publish.
//! - [`auth`]: the bearer JWT, verified against the issuer's JWKS.
//! - [`event_types`]: the event types table, the record, and the function's cache of it.
//! - [`body`]: the three body formats (JSON array, CloudEvents structured and batched), limits.
//! - [`ids`]: the callers' own event ids, kept across retries (the ids table).
//! - [`publish`]: a batch published key by key.
//! - [`response`]: per-event results, problem documents, the batch's status.
//! - [`settings`]: the environment it reads; [`tables`]: creating its tables locally.

pub mod auth;
pub mod batch;
pub mod body;
pub mod event_types;
pub mod handler;
pub mod ids;
pub mod publish;
pub mod response;
pub mod settings;
pub mod tables;
