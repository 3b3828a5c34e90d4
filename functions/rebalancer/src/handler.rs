//! The Lambda entry point's logic: read the request, connect, run the executor.

use std::collections::BTreeSet;

use lambda_runtime::{Diagnostic, LambdaEvent};
use sdk::ConfigError;
use sdk::config::Env;
use serde::Deserialize;
use serde_json::Value;

use shared::handoff::{self, HandoffError};
use shared::invocation::Invocation;
use shared::state_table::StateTable;
use shared::telemetry::{Family, Metrics};

use crate::admin::{AdminClient, AdminError};
use crate::executor::{self, ExecutorError, RunReport};
use crate::settings::Settings;

/// An invocation: after a scale-out (with the new broker ids), a dry run, or — with no fields,
/// or as an EventBridge "Scheduled Event" — a resume of whatever is left.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Brokers that must be registered before anything is planned.
    #[serde(default)]
    pub new_broker_ids: Vec<i32>,
    /// Plan and report, change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Topics to leave alone in this run, besides `REBALANCE_EXCLUDED_TOPICS`.
    #[serde(default)]
    pub excluded_topics: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(
        "unrecognised event: expected {{\"new_broker_ids\": [..], \"dry_run\": bool, \"excluded_topics\": [..]}} \
         (all optional) or an EventBridge \"Scheduled Event\": {0}"
    )]
    BadRequest(serde_json::Error),
    #[error(transparent)]
    Connect(#[from] AdminError),
    #[error(transparent)]
    Executor(#[from] ExecutorError),
    #[error("reading the autoscaler's handoff: {0}")]
    Handoff(#[from] HandoffError),
}

impl From<HandlerError> for Diagnostic {
    fn from(error: HandlerError) -> Self {
        let error_type = match &error {
            HandlerError::BadRequest(_) => "BadRequest",
            HandlerError::Connect(_) => "KafkaUnreachable",
            HandlerError::Executor(_) => "RebalanceFailed",
            HandlerError::Handoff(_) => "StateTable",
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: error.to_string(),
        }
    }
}

/// Reads an invocation payload.
pub fn parse_request(event: Value) -> Result<Request, HandlerError> {
    if shared::invocation::is_scheduled(&event) {
        return Ok(Request::default());
    }
    serde_json::from_value(event).map_err(HandlerError::BadRequest)
}

/// Everything built once per execution environment.
pub struct App {
    pub settings: Settings,
    /// Where the autoscaler leaves the ids of brokers it added, when it is configured.
    pub handoffs: Option<Handoffs>,
}

/// Where the autoscaler leaves the ids of brokers it added (`shared::handoff`).
pub struct Handoffs {
    pub state: StateTable,
    pub cluster_arn: String,
}

impl App {
    /// Reads the configuration; builds a DynamoDB client only when a handoff is configured.
    pub async fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let settings = Settings::from_env(env)?;
        let handoffs = match &settings.handoff {
            Some(source) => {
                let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
                Some(Handoffs {
                    state: StateTable::new(
                        aws_sdk_dynamodb::Client::new(&aws),
                        &source.state_table,
                    ),
                    cluster_arn: source.cluster_arn.clone(),
                })
            }
            None => None,
        };
        Ok(Self { settings, handoffs })
    }
}

/// Handles one invocation.
pub async fn handle(app: &App, event: LambdaEvent<Value>) -> Result<RunReport, HandlerError> {
    let invocation = Invocation::from_context(&event.context, "rebalancer");
    let request = parse_request(event.payload)?;
    let settings = &app.settings;
    let mut options = settings.options.clone();
    options
        .excluded_topics
        .extend(request.excluded_topics.iter().cloned());
    let mut expected: BTreeSet<i32> = request.new_broker_ids.iter().copied().collect();
    if let Some(h) = &app.handoffs
        && let Some(handoff) = handoff::read(&h.state, &h.cluster_arn).await?
    {
        expected.extend(handoff.new_broker_ids);
    }
    let expected: Vec<i32> = expected.into_iter().collect();
    let mut client = AdminClient::connect(&settings.bootstrap_servers, &settings.transport).await?;
    let report = executor::run(
        &mut client,
        &settings.limits,
        &options,
        &expected,
        request.dry_run,
        invocation.deadline,
    )
    .await?;
    if let (RunReport::Done { .. }, Some(h)) = (&report, &app.handoffs) {
        handoff::clear(&h.state, &h.cluster_arn).await?;
    }
    log(&report, &expected.iter().copied().collect());
    run_metrics(&invocation.function_name, &report).emit();
    Ok(report)
}

/// What the rebalancer emits, one document per run (a failed run emits none; Lambda counts it
/// in `Errors`): `InProgress` is 1 when a run ends with moves in flight, `Waiting` when it could
/// not start, `Finished` when the cluster is balanced; `ThrottlesInPlace` is 1 when replication
/// throttle rates are set on the brokers as the run ends.
pub static METRICS: Family = Family {
    component: "rebalancer",
    namespace: "MskRebalancer",
    dimensions: &["FunctionName"],
    metrics: &[
        "InProgress",
        "ThrottlesInPlace",
        "Waiting",
        "MovesSubmitted",
        "MovesInFlight",
        "MovesRemaining",
        "LeadersElected",
        "BytesSubmitted",
        "Finished",
    ],
};

/// The document for one run's report.
pub fn run_metrics(function_name: &str, report: &RunReport) -> Metrics {
    let mut metrics = METRICS.metrics(&[function_name]);
    let progress = match report {
        RunReport::DryRun { .. } => return metrics,
        RunReport::InProgress {
            submitted,
            throttles_in_place,
            bytes_submitted,
            in_flight,
            remaining_moves,
        } => Progress {
            in_progress: 1,
            throttled: u64::from(*throttles_in_place),
            submitted: *submitted,
            bytes: *bytes_submitted,
            in_flight: *in_flight,
            remaining: *remaining_moves,
            ..Progress::default()
        },
        RunReport::Done {
            submitted,
            bytes_submitted,
            leaders_elected,
        } => Progress {
            finished: 1,
            submitted: *submitted,
            bytes: *bytes_submitted,
            elected: *leaders_elected,
            ..Progress::default()
        },
        RunReport::Waiting {
            throttles_in_place,
            submitted,
            bytes_submitted,
            ..
        } => Progress {
            waiting: 1,
            throttled: u64::from(*throttles_in_place),
            submitted: *submitted,
            bytes: *bytes_submitted,
            ..Progress::default()
        },
    };
    let Progress {
        in_progress,
        waiting,
        finished,
        throttled,
        submitted,
        bytes,
        in_flight,
        remaining,
        elected,
    } = progress;
    metrics.count("InProgress", in_progress);
    metrics.count("ThrottlesInPlace", throttled);
    metrics.count("Waiting", waiting);
    metrics.count("MovesSubmitted", submitted as u64);
    metrics.count("MovesInFlight", in_flight as u64);
    metrics.count("MovesRemaining", remaining as u64);
    metrics.count("LeadersElected", elected as u64);
    metrics.count("BytesSubmitted", bytes);
    metrics.count("Finished", finished);
    metrics
}

/// One run's figures, as the metrics report them.
#[derive(Default)]
struct Progress {
    in_progress: u64,
    waiting: u64,
    finished: u64,
    throttled: u64,
    submitted: usize,
    bytes: u64,
    in_flight: usize,
    remaining: usize,
    elected: usize,
}

fn log(report: &RunReport, new_brokers: &BTreeSet<i32>) {
    match report {
        RunReport::DryRun {
            summary, estimate, ..
        } => {
            tracing::info!(
                moves = summary.moves,
                min_moves = summary.min_moves,
                bytes_to_move = estimate.bytes_to_move,
                estimated_seconds = estimate.seconds,
                ?new_brokers,
                "dry run"
            )
        }
        RunReport::InProgress {
            submitted,
            bytes_submitted,
            in_flight,
            remaining_moves,
            ..
        } => tracing::info!(
            submitted,
            bytes_submitted,
            in_flight,
            remaining_moves,
            "rebalance in progress"
        ),
        RunReport::Done {
            submitted,
            bytes_submitted,
            leaders_elected,
        } => tracing::info!(
            submitted,
            bytes_submitted,
            leaders_elected,
            "rebalance done"
        ),
        RunReport::Waiting {
            reason,
            throttles_in_place,
            submitted,
            bytes_submitted,
        } => tracing::warn!(
            reason,
            throttles_in_place,
            submitted,
            bytes_submitted,
            "rebalance waiting"
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_run_but_a_dry_one_reports_its_progress() {
        let in_progress = run_metrics(
            "rebalancer",
            &RunReport::InProgress {
                submitted: 4,
                throttles_in_place: true,
                bytes_submitted: 4096,
                in_flight: 6,
                remaining_moves: 10,
            },
        );
        assert_eq!(
            in_progress.names().collect::<Vec<_>>(),
            METRICS.metrics.to_vec(),
            "every metric of the family"
        );
        let document = in_progress.to_emf(0).unwrap();
        assert_eq!(document["InProgress"], 1.0);
        assert_eq!(document["MovesRemaining"], 10.0);
        let done = run_metrics(
            "rebalancer",
            &RunReport::Done {
                submitted: 0,
                bytes_submitted: 0,
                leaders_elected: 3,
            },
        )
        .to_emf(0)
        .unwrap();
        assert_eq!(done["InProgress"], 0.0);
        assert_eq!(done["Finished"], 1.0);
        assert_eq!(done["LeadersElected"], 3.0);
        let waiting = run_metrics(
            "rebalancer",
            &RunReport::Waiting {
                reason: "brokers [4] have not registered".into(),
                throttles_in_place: true,
                submitted: 0,
                bytes_submitted: 0,
            },
        )
        .to_emf(0)
        .unwrap();
        assert_eq!(
            (waiting["Waiting"].clone(), waiting["Finished"].clone()),
            (1.0.into(), 0.0.into())
        );
        assert_eq!(
            waiting["ThrottlesInPlace"], 1.0,
            "throttles left by an earlier run are reported"
        );
    }

    #[test]
    fn requests() {
        assert_eq!(
            parse_request(json!({"new_broker_ids": [4, 5, 6]}))
                .unwrap()
                .new_broker_ids,
            vec![4, 5, 6]
        );
        assert!(parse_request(json!({"dry_run": true})).unwrap().dry_run);
        assert_eq!(parse_request(json!({})).unwrap(), Request::default());
        assert_eq!(
            parse_request(
                json!({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}})
            )
            .unwrap(),
            Request::default()
        );
        let err = parse_request(json!({"new_brokers": [4]})).unwrap_err();
        assert!(err.to_string().contains("new_brokers"), "{err}");
    }
}
