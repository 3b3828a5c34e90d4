//! Logs and metrics fit for CloudWatch.
//!
//! Logs: one JSON object per line through `tracing` (CloudWatch Logs Insights can query the
//! fields), level from `RUST_LOG`, else `AWS_LAMBDA_LOG_LEVEL`, else `info`. Log fields carry
//! event ids, topics and reasons, never payloads.
//!
//! Metrics: CloudWatch Embedded Metric Format, written by [`sdk::metrics`] (the consumer SDK
//! emits through it too) and re-exported here.

pub use sdk::metrics::{Family, Metrics, Unit, emit_metrics_to_stdout};
use tracing_subscriber::EnvFilter;

/// Installs the JSON log subscriber. Safe to call more than once (later calls do nothing).
pub fn init_logging() {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| std::env::var("AWS_LAMBDA_LOG_LEVEL").ok())
        .map(|level| level.to_ascii_lowercase())
        .unwrap_or_else(|| "info".into());
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(EnvFilter::new(filter))
        .with_current_span(false)
        .with_ansi(false)
        .with_target(true)
        .try_init();
}
