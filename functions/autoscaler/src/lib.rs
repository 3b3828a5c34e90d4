//! The autoscaler: adds MSK brokers when broker CPU stays high — safely, once, and only when it
//! helps.
//!
//! - [`decision`]: the pure rules (table-tested);
//! - [`trigger`]: alarm invocation, EventBridge alarm state change, re-check schedule;
//! - [`ports`]: the MSK control plane and CloudWatch as traits; [`aws`]: their SDK implementations;
//! - [`state`]: claims and the last scale-out in the state table;
//! - [`handler`]: one invocation; [`settings`]: configuration.

pub mod aws;
pub mod decision;
pub mod handler;
pub mod ports;
pub mod settings;
pub mod state;
pub mod trigger;
