//! The autoscaler's two outside dependencies as small traits, so the handler's flow is tested
//! against the real services (the MSK stand-in, moto's CloudWatch) and the decision without them.

use std::future::Future;
use std::time::Duration;

use crate::decision::ClusterView;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The version sent with UpdateBrokerCount is no longer the cluster's: re-read and decide again.
    #[error("stale cluster version: {0}")]
    StaleVersion(String),
    #[error("MSK {call}: {message}")]
    Call { call: &'static str, message: String },
}

/// The MSK control plane.
pub trait ControlPlane: Sync {
    /// DescribeClusterV2 plus whether ListClusterOperationsV2 shows an operation still running.
    fn describe(
        &self,
        cluster_arn: &str,
    ) -> impl Future<Output = Result<ClusterView, ControlError>> + Send;
    /// UpdateBrokerCount; returns the operation ARN.
    fn update_broker_count(
        &self,
        cluster_arn: &str,
        current_version: &str,
        target: u32,
    ) -> impl Future<Output = Result<String, ControlError>> + Send;
    /// DescribeClusterOperationV2's state (`UPDATE_IN_PROGRESS`, `UPDATE_COMPLETE`, …).
    fn operation_state(
        &self,
        operation_arn: &str,
    ) -> impl Future<Output = Result<String, ControlError>> + Send;
    /// Broker ids from ListNodes.
    fn broker_ids(
        &self,
        cluster_arn: &str,
    ) -> impl Future<Output = Result<Vec<i32>, ControlError>> + Send;
}

/// Broker CPU from CloudWatch.
pub trait CpuMetrics: Sync {
    /// The highest, over brokers, of `CpuUser + CpuSystem` averaged over the last `window`;
    /// `None` when no broker has data.
    fn max_cpu(
        &self,
        cluster_name: &str,
        broker_ids: &[i32],
        window: Duration,
    ) -> impl Future<Output = Result<Option<f64>, ControlError>> + Send;
}
