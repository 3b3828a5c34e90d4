//! The Lambda entry point's logic: recognise the trigger, run the stream batch or the sweep,
//! answer Lambda, emit metrics. `main.rs` only builds an [`App`] and hands events here.

use std::time::Instant;

use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use lambda_runtime::{Diagnostic, LambdaEvent};
use rdkafka::error::KafkaError;
use sdk::ConfigError;
use sdk::config::Env;
use sdk::standby_table::{StandbyTable, TableError};
use serde::Serialize;
use serde_json::Value;
use shared::invocation::Invocation;
use shared::state_table::StateTable;
use shared::telemetry::{Family, Metrics};

use crate::adapters::{DynamoTable, KafkaSink};
use crate::engine::{self, Budget, Outcome, Report, Sink, Table};
use crate::entry::{self, Entry, SkipReason, Work};
use crate::held;
use crate::settings::Settings;
use crate::sweep::{self, SweepReport, SweepSettings};

/// Everything built once per execution environment.
pub struct App<S, T> {
    pub sink: S,
    pub table: T,
    pub standby: StandbyTable,
    pub state: StateTable,
    pub settings: Settings,
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("creating the Kafka producer: {0}")]
    Kafka(#[from] KafkaError),
}

impl App<KafkaSink, DynamoTable> {
    /// Reads the configuration and builds the Kafka producer and DynamoDB clients.
    pub async fn from_env(env: &impl Env) -> Result<Self, InitError> {
        let settings = Settings::from_env(env)?;
        let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self::new(settings, aws_sdk_dynamodb::Client::new(&aws))
    }

    /// Builds the app with a given DynamoDB client (tests point it at the local stack).
    pub fn new(settings: Settings, dynamodb: aws_sdk_dynamodb::Client) -> Result<Self, InitError> {
        let producer = settings.kafka.renewing_producer(&[("linger.ms", "1")])?;
        Ok(Self {
            sink: KafkaSink::new(
                producer,
                settings.dead_letter_topic.clone(),
                settings.topics.clone(),
            ),
            table: DynamoTable::new(StandbyTable::new(dynamodb.clone(), &settings.standby_table)),
            standby: StandbyTable::new(dynamodb.clone(), &settings.standby_table),
            state: StateTable::new(dynamodb, &settings.state_table),
            settings,
        })
    }
}

/// An invocation payload that is neither a stream batch nor the schedule.
#[derive(Debug, thiserror::Error)]
#[error(
    "unrecognised event: expected a DynamoDB stream batch (`Records`) or an EventBridge \
     \"Scheduled Event\" (sweep); got an object with keys {keys:?}"
)]
pub struct UnknownEvent {
    keys: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    UnknownEvent(#[from] UnknownEvent),
    #[error("the sweep could not read or write DynamoDB: {0}")]
    Sweep(#[from] TableError),
    #[error(
        "record at position {position} failed and no earlier record has a sequence number to resume from; retrying the whole batch"
    )]
    NoSequenceNumber { position: usize },
}

impl From<HandlerError> for Diagnostic {
    fn from(error: HandlerError) -> Self {
        let error_type = match &error {
            HandlerError::UnknownEvent(_) => "UnknownEvent",
            HandlerError::Sweep(_) => "SweepFailed",
            HandlerError::NoSequenceNumber { .. } => "NoSequenceNumber",
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: error.to_string(),
        }
    }
}

/// What invoked the republisher.
#[derive(Debug)]
pub enum Trigger {
    /// A batch from the table's stream, as entries in stream order.
    Stream(Vec<Entry>),
    /// The EventBridge schedule.
    Sweep,
}

impl Trigger {
    /// Recognises an invocation payload. A stream batch's records are read one by one: a record
    /// that cannot be read becomes an entry to skip or dead-letter, not a failed batch.
    pub fn parse(event: &Value) -> Result<Self, UnknownEvent> {
        if event.get("Records").is_some() {
            return entry::from_stream_event(event)
                .map(Trigger::Stream)
                .map_err(|_| unknown(event));
        }
        if shared::invocation::is_scheduled(event) {
            return Ok(Trigger::Sweep);
        }
        Err(unknown(event))
    }
}

/// The answer to Lambda: for a stream batch, where to resume (an empty list when all is done);
/// for the sweep, what it did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Response {
    Stream(DynamoDbEventResponse),
    Sweep(SweepReport),
}

/// Handles one invocation.
pub async fn handle<S: Sink, T: Table>(
    app: &App<S, T>,
    event: LambdaEvent<Value>,
) -> Result<Response, HandlerError> {
    let invocation = Invocation::from_context(&event.context, "republisher");
    tracing::debug!(
        remaining_ms = invocation
            .deadline
            .saturating_duration_since(Instant::now())
            .as_millis() as u64,
        "invocation started"
    );
    let budget = Budget {
        deadline: invocation.deadline,
        delivery_timeout: app.settings.kafka.delivery_timeout,
        margin: app.settings.margin,
    };
    match Trigger::parse(&event.payload)? {
        Trigger::Stream(entries) => handle_stream(app, &invocation, &entries, &budget)
            .await
            .map(Response::Stream),
        Trigger::Sweep => handle_sweep(app, &invocation, &budget)
            .await
            .map(Response::Sweep),
    }
}

async fn handle_sweep<S: Sink, T: Table>(
    app: &App<S, T>,
    invocation: &Invocation,
    budget: &Budget,
) -> Result<SweepReport, HandlerError> {
    let settings = SweepSettings {
        min_age: app.settings.sweep_min_age,
        page_size: app.settings.sweep_page_size,
        marker_grace: app.settings.marker_grace,
    };
    let report = sweep::run(
        &app.standby,
        &app.state,
        &app.sink,
        &app.table,
        settings,
        budget,
    )
    .await?;
    tracing::info!(?report, "sweep finished");
    sweep_metrics(&invocation.function_name, &report).emit();
    Ok(report)
}

/// The document for one sweep.
pub fn sweep_metrics(function_name: &str, report: &SweepReport) -> Metrics {
    let mut metrics = METRICS.metrics(&[function_name, "sweep"]);
    metrics.count("Republished", report.republished as u64);
    metrics.count("DeadLettered", report.dead_lettered as u64);
    metrics.count("Failed", report.failed as u64);
    metrics.count("SweepScanned", report.scanned as u64);
    metrics.count("Waiting", report.waiting as u64);
    metrics.count("RepublishedFromBacklog", report.from_backlog as u64);
    metrics.count("HeldKeys", report.held_remaining as u64);
    metrics.count("HeldReleased", report.held_released as u64);
    metrics.millis("OldestRecordAge", report.oldest_age_ms as f64);
    metrics
}

fn unknown(event: &Value) -> UnknownEvent {
    UnknownEvent {
        keys: event
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default(),
    }
}

async fn handle_stream<S: Sink, T: Table>(
    app: &App<S, T>,
    invocation: &Invocation,
    entries: &[Entry],
    budget: &Budget,
) -> Result<DynamoDbEventResponse, HandlerError> {
    let report = engine::process(entries, &app.sink, &app.table, budget).await;
    stream_metrics(
        &invocation.function_name,
        entries,
        &report,
        wire::clock::now_ms(),
    )
    .emit();
    if let Err(error) = held::record(&app.state, app.standby.name(), &report.held).await {
        // The held items stay in the table either way; the sweep finds them once they are old
        // enough, so this costs time, not events.
        tracing::error!(%error, held = report.held.len(), "could not record held keys in the state table");
    }

    let mut response = DynamoDbEventResponse::default();
    if let Some(position) = report.first_failure {
        // Resume from the failed record; a record without a sequence number falls back to the
        // nearest earlier one (re-delivering done records only makes duplicates).
        let sequence = entries[..=position]
            .iter()
            .rev()
            .find_map(|e| e.sequence_number.clone())
            .ok_or(HandlerError::NoSequenceNumber { position })?;
        tracing::warn!(
            position,
            sequence,
            "batch partially failed; Lambda resumes from this record"
        );
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = Some(sequence);
        response.batch_item_failures.push(failure);
    }
    Ok(response)
}

/// What the republisher emits, per stream batch (`Trigger` `stream`) and per sweep (`sweep`).
pub static METRICS: Family = Family {
    component: "republisher",
    namespace: "StandbyEvents",
    dimensions: &["FunctionName", "Trigger"],
    metrics: &[
        "BatchSize",
        "Republished",
        "DeadLettered",
        "Stranded",
        "Failed",
        "HeldKeys",
        "HeldReleased",
        "RepublishedFromBacklog",
        "ExpiredByTtl",
        "OldestRecordAge",
        "PublishLatency",
        "PublishLatencyMax",
        "SweepScanned",
        "Waiting",
    ],
};

/// The document for one stream batch.
pub fn stream_metrics(
    function_name: &str,
    entries: &[Entry],
    report: &Report,
    now_ms: u64,
) -> Metrics {
    let oldest_age_ms = entries
        .iter()
        .filter_map(|e| match &e.work {
            Work::Publish(record) => Some(now_ms.saturating_sub(record.created_at_ms)),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let latencies: Vec<f64> = report
        .outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Republished { latency } => Some(latency.as_secs_f64() * 1000.0),
            _ => None,
        })
        .collect();
    let mut metrics = METRICS.metrics(&[function_name, "stream"]);
    metrics.count("BatchSize", entries.len() as u64);
    metrics.count("Republished", latencies.len() as u64);
    metrics.count(
        "DeadLettered",
        report.count(|o| matches!(o, Outcome::DeadLettered { .. })) as u64,
    );
    metrics.count(
        "Stranded",
        report.count(|o| matches!(o, Outcome::Stranded { .. })) as u64,
    );
    metrics.count(
        "Failed",
        report.count(|o| matches!(o, Outcome::Failed { .. })) as u64,
    );
    metrics.count("HeldKeys", report.held.len() as u64);
    metrics.count("RepublishedFromBacklog", report.from_backlog as u64);
    metrics.count(
        "ExpiredByTtl",
        report.count(|o| *o == Outcome::Skipped(SkipReason::ExpiredByTtl)) as u64,
    );
    metrics.millis("OldestRecordAge", oldest_age_ms as f64);
    if !latencies.is_empty() {
        metrics.millis(
            "PublishLatency",
            latencies.iter().sum::<f64>() / latencies.len() as f64,
        );
        metrics.millis(
            "PublishLatencyMax",
            latencies.iter().copied().fold(0.0, f64::max),
        );
    }
    metrics
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_stream_batch_and_a_sweep_together_emit_every_metric_of_the_family() {
        let report = Report {
            outcomes: vec![Outcome::Republished {
                latency: Duration::from_millis(4),
            }],
            ..Report::default()
        };
        let stream = stream_metrics("republisher", &[], &report, 0);
        let sweep = sweep_metrics("republisher", &SweepReport::default());
        let emitted: BTreeSet<&str> = stream.names().chain(sweep.names()).collect();
        assert_eq!(emitted, METRICS.metrics.iter().copied().collect());
        let document = sweep.to_emf(0).unwrap();
        assert_eq!(document["Trigger"], "sweep");
        assert_eq!(document["FunctionName"], "republisher");
    }
}
