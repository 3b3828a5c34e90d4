//! One invocation: follow up the last scale-out (hand the new brokers to the rebalancer once MSK
//! finished), read the cluster and its CPU, decide, and — unless in dry-run mode — claim the
//! cluster version and call UpdateBrokerCount. A stale version means someone changed the cluster
//! meanwhile: read it again and decide again, never retry blindly.

use std::time::SystemTime;

use lambda_runtime::{Diagnostic, LambdaEvent};
use sdk::ConfigError;
use sdk::config::Env;
use serde::Serialize;
use serde_json::Value;
use shared::handoff::{self, Handoff, HandoffError};
use shared::invocation::Invocation;
use shared::state_table::StateTable;

use crate::aws::{CloudWatch, Msk};
use shared::telemetry::{Family, Metrics, Unit};

use crate::decision::{self, ClusterKind, Decision, Situation, decide};
use crate::ports::{ControlError, ControlPlane, CpuMetrics};
use crate::settings::Settings;
use crate::state::{self, ScaleRecord, StateError};
use crate::trigger::{self, TriggerError};

/// How many times a stale cluster version is re-read before giving up for this invocation.
const MAX_DECISIONS: usize = 3;

/// Everything built once per execution environment.
pub struct App<C, M> {
    pub control: C,
    pub metrics: M,
    pub state: StateTable,
    pub settings: Settings,
}

impl App<Msk, CloudWatch> {
    /// Reads the configuration and builds the MSK, CloudWatch and DynamoDB clients.
    pub async fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let settings = Settings::from_env(env)?;
        let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Ok(Self {
            control: Msk::new(aws_sdk_kafka::Client::new(&aws)),
            metrics: CloudWatch::new(aws_sdk_cloudwatch::Client::new(&aws)),
            state: StateTable::new(aws_sdk_dynamodb::Client::new(&aws), &settings.state_table),
            settings,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Trigger(#[from] TriggerError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Handoff(#[from] HandoffError),
}

impl From<HandlerError> for Diagnostic {
    fn from(error: HandlerError) -> Self {
        let error_type = match &error {
            HandlerError::Trigger(_) => "UnrecognisedEvent",
            HandlerError::Control(_) => "MskControlPlane",
            HandlerError::State(_) | HandlerError::Handoff(_) => "StateTable",
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: error.to_string(),
        }
    }
}

/// What the invocation did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub decision: Decision,
    pub dry_run: bool,
    pub cpu: Option<f64>,
    /// The scale-out started by this invocation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_arn: Option<String>,
    /// New brokers handed to the rebalancer by this invocation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handed_off: Option<Handoff>,
}

/// Handles one invocation.
pub async fn handle<C: ControlPlane, M: CpuMetrics>(
    app: &App<C, M>,
    event: LambdaEvent<Value>,
) -> Result<Report, HandlerError> {
    let invocation = Invocation::from_context(&event.context, "autoscaler");
    let signal = trigger::parse(&event.payload)?;
    if let Some(refusal) = decision::foreign_alarm(&signal, &app.settings.alarm_name) {
        let report = Report {
            decision: refusal,
            dry_run: app.settings.dry_run,
            cpu: None,
            operation_arn: None,
            handed_off: None,
        };
        return Ok(finish(&invocation, report));
    }
    let arn = &app.settings.cluster_arn;
    let handed_off = follow_up(app).await?;

    for _ in 0..MAX_DECISIONS {
        let cluster = app.control.describe(arn).await?;
        let broker_ids = match &cluster.kind {
            ClusterKind::Provisioned { .. } => app.control.broker_ids(arn).await?,
            ClusterKind::Serverless => Vec::new(),
        };
        let cpu = app
            .metrics
            .max_cpu(&cluster.name, &broker_ids, app.settings.cpu_window)
            .await?;
        let last = state::last_scale(&app.state, arn).await?;
        let situation = Situation {
            signal: signal.clone(),
            cluster: cluster.clone(),
            cpu,
            last_scale_at: last.as_ref().map(ScaleRecord::at_time),
            now: SystemTime::now(),
        };
        let decision = decide(&situation, &app.settings.policy);
        let mut report = Report {
            decision: decision.clone(),
            dry_run: app.settings.dry_run,
            cpu,
            operation_arn: None,
            handed_off: handed_off.clone(),
        };
        let Decision::ScaleOut { from, to, reason } = decision else {
            return Ok(finish(&invocation, report));
        };
        if app.settings.dry_run {
            return Ok(finish(&invocation, report));
        }
        if !state::claim(&app.state, arn, &cluster.current_version).await? {
            report.decision = Decision::NoAction {
                reason: format!(
                    "a scale-out from cluster version {} was already started (duplicate or retried event)",
                    cluster.current_version
                ),
            };
            return Ok(finish(&invocation, report));
        }
        match app
            .control
            .update_broker_count(arn, &cluster.current_version, to)
            .await
        {
            Ok(operation_arn) => {
                tracing::warn!(from, to, %reason, operation_arn, "scaling out the MSK cluster");
                let record = ScaleRecord {
                    at: wire::clock::now_secs(),
                    operation_arn: operation_arn.clone(),
                    from,
                    to,
                    brokers_before: broker_ids,
                    handed_off: false,
                };
                state::record_scale(&app.state, arn, &record).await?;
                report.operation_arn = Some(operation_arn);
                return Ok(finish(&invocation, report));
            }
            Err(ControlError::StaleVersion(message)) => {
                tracing::info!(version = %cluster.current_version, message, "cluster version changed meanwhile; deciding again");
                state::release(&app.state, arn, &cluster.current_version).await?;
            }
            Err(other) => {
                state::release(&app.state, arn, &cluster.current_version).await?;
                return Err(other.into());
            }
        }
    }
    Ok(finish(
        &invocation,
        Report {
            decision: Decision::NoAction {
                reason: format!(
                    "the cluster version kept changing over {MAX_DECISIONS} attempts; the next trigger decides again"
                ),
            },
            dry_run: app.settings.dry_run,
            cpu: None,
            operation_arn: None,
            handed_off,
        },
    ))
}

/// If the last scale-out has finished, hands its new brokers to the rebalancer (once).
async fn follow_up<C: ControlPlane, M: CpuMetrics>(
    app: &App<C, M>,
) -> Result<Option<Handoff>, HandlerError> {
    let arn = &app.settings.cluster_arn;
    let Some(mut record) = state::last_scale(&app.state, arn).await? else {
        return Ok(None);
    };
    if record.handed_off {
        return Ok(None);
    }
    let operation_state = app.control.operation_state(&record.operation_arn).await?;
    let handoff = match operation_state.as_str() {
        "UPDATE_COMPLETE" => {
            let now = app.control.broker_ids(arn).await?;
            let new_broker_ids: Vec<i32> = now
                .into_iter()
                .filter(|b| !record.brokers_before.contains(b))
                .collect();
            let handoff = Handoff {
                new_broker_ids,
                operation_arn: record.operation_arn.clone(),
                at: wire::clock::now_secs(),
            };
            handoff::write(&app.state, arn, &handoff).await?;
            tracing::info!(new_broker_ids = ?handoff.new_broker_ids, "scale-out complete; new brokers handed to the rebalancer");
            Some(handoff)
        }
        "UPDATE_FAILED" => {
            tracing::error!(operation_arn = %record.operation_arn, "the scale-out operation failed; nothing to rebalance");
            None
        }
        _ => return Ok(None),
    };
    record.handed_off = true;
    state::record_scale(&app.state, arn, &record).await?;
    Ok(handoff)
}

/// What the autoscaler emits, one document per invocation.
pub static METRICS: Family = Family {
    component: "autoscaler",
    namespace: "MskAutoscaler",
    dimensions: &["FunctionName"],
    metrics: &[
        "BrokerCpuMax",
        "ScaleOut",
        "TargetBrokers",
        "RecommendLargerBrokerType",
    ],
};

fn finish(invocation: &Invocation, report: Report) -> Report {
    match &report.decision {
        Decision::ScaleOut { .. } => {}
        Decision::RecommendLargerBrokers { reason, .. } => {
            tracing::warn!(reason, "recommendation: move to a larger broker type")
        }
        Decision::Refuse { reason } => tracing::warn!(reason, "refusing to scale"),
        Decision::NoAction { reason } => tracing::info!(reason, "no scale-out"),
    }
    run_metrics(&invocation.function_name, &report).emit();
    report
}

/// The document for one invocation.
pub fn run_metrics(function_name: &str, report: &Report) -> Metrics {
    let mut metrics = METRICS.metrics(&[function_name]);
    if let Some(cpu) = report.cpu {
        metrics.record("BrokerCpuMax", Unit::Percent, cpu);
    }
    match &report.decision {
        Decision::ScaleOut { to, .. } => {
            metrics.count("ScaleOut", u64::from(!report.dry_run));
            metrics.count("TargetBrokers", u64::from(*to));
        }
        Decision::RecommendLargerBrokers { .. } => metrics.count("RecommendLargerBrokerType", 1),
        Decision::Refuse { .. } | Decision::NoAction { .. } => {}
    }
    metrics
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn report(decision: Decision) -> Report {
        Report {
            decision,
            dry_run: false,
            cpu: Some(72.5),
            operation_arn: None,
            handed_off: None,
        }
    }

    #[test]
    fn a_scale_out_and_a_recommendation_together_emit_every_metric_of_the_family() {
        let scale_out = run_metrics(
            "autoscaler",
            &report(Decision::ScaleOut {
                from: 3,
                to: 6,
                reason: "hot".into(),
            }),
        );
        let recommend = run_metrics(
            "autoscaler",
            &report(Decision::RecommendLargerBrokers {
                cpu: 90.0,
                reason: "too hot".into(),
            }),
        );
        let emitted: BTreeSet<&str> = scale_out.names().chain(recommend.names()).collect();
        assert_eq!(emitted, METRICS.metrics.iter().copied().collect());
        assert_eq!(scale_out.to_emf(0).unwrap()["TargetBrokers"], 6.0);
    }
}
