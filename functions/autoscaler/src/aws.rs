//! The ports over the AWS SDK: `aws-sdk-kafka` for the MSK control plane and
//! `aws-sdk-cloudwatch` for broker CPU (MSK publishes `CpuUser` and `CpuSystem` per broker in
//! the `AWS/Kafka` namespace, dimensions `Cluster Name` and `Broker ID`).

use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use aws_sdk_kafka::operation::update_broker_count::UpdateBrokerCountError;
use aws_sdk_kafka::types::ClusterType;

use crate::decision::{ClusterKind, ClusterView};
use crate::ports::{ControlError, ControlPlane, CpuMetrics};

/// Operation states that mean "still running".
const RUNNING: [&str; 2] = ["PENDING", "UPDATE_IN_PROGRESS"];

pub struct Msk {
    client: aws_sdk_kafka::Client,
}

impl Msk {
    pub fn new(client: aws_sdk_kafka::Client) -> Self {
        Self { client }
    }
}

fn call_error(call: &'static str, error: impl std::fmt::Display) -> ControlError {
    ControlError::Call {
        call,
        message: error.to_string(),
    }
}

impl ControlPlane for Msk {
    async fn describe(&self, cluster_arn: &str) -> Result<ClusterView, ControlError> {
        let described = self
            .client
            .describe_cluster_v2()
            .cluster_arn(cluster_arn)
            .send()
            .await
            .map_err(|e| call_error("DescribeClusterV2", aws_sdk_kafka::Error::from(e)))?;
        let info = described
            .cluster_info
            .ok_or_else(|| call_error("DescribeClusterV2", "no clusterInfo in the response"))?;
        let operations = self
            .client
            .list_cluster_operations_v2()
            .cluster_arn(cluster_arn)
            .max_results(20)
            .send()
            .await
            .map_err(|e| call_error("ListClusterOperationsV2", aws_sdk_kafka::Error::from(e)))?;
        let operation_in_flight = operations
            .cluster_operation_info_list()
            .iter()
            .any(|o| o.operation_state().is_some_and(|s| RUNNING.contains(&s)));
        let kind = match (info.cluster_type(), info.provisioned()) {
            (Some(ClusterType::Serverless), _) | (_, None) => ClusterKind::Serverless,
            (_, Some(provisioned)) => {
                let group = provisioned.broker_node_group_info();
                ClusterKind::Provisioned {
                    brokers: provisioned.number_of_broker_nodes().unwrap_or(0).max(0) as u32,
                    azs: group.map_or(0, |g| g.client_subnets().len() as u32),
                    instance_type: group
                        .and_then(|g| g.instance_type())
                        .unwrap_or_default()
                        .to_string(),
                }
            }
        };
        Ok(ClusterView {
            arn: cluster_arn.to_string(),
            name: info.cluster_name().unwrap_or_default().to_string(),
            state: info
                .state()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            current_version: info.current_version().unwrap_or_default().to_string(),
            kind,
            operation_in_flight: operation_in_flight || info.active_operation_arn().is_some(),
        })
    }

    async fn update_broker_count(
        &self,
        cluster_arn: &str,
        current_version: &str,
        target: u32,
    ) -> Result<String, ControlError> {
        let result = self
            .client
            .update_broker_count()
            .cluster_arn(cluster_arn)
            .current_version(current_version)
            .target_number_of_broker_nodes(target as i32)
            .send()
            .await;
        match result {
            Ok(output) => output.cluster_operation_arn.ok_or_else(|| {
                call_error(
                    "UpdateBrokerCount",
                    "no clusterOperationArn in the response",
                )
            }),
            Err(e) => match e.into_service_error() {
                UpdateBrokerCountError::BadRequestException(bad)
                    if bad
                        .message()
                        .is_some_and(|m| m.to_ascii_lowercase().contains("version")) =>
                {
                    Err(ControlError::StaleVersion(
                        bad.message().unwrap_or_default().to_string(),
                    ))
                }
                other => Err(call_error(
                    "UpdateBrokerCount",
                    aws_sdk_kafka::Error::from(other),
                )),
            },
        }
    }

    async fn operation_state(&self, operation_arn: &str) -> Result<String, ControlError> {
        let output = self
            .client
            .describe_cluster_operation_v2()
            .cluster_operation_arn(operation_arn)
            .send()
            .await
            .map_err(|e| call_error("DescribeClusterOperationV2", aws_sdk_kafka::Error::from(e)))?;
        Ok(output
            .cluster_operation_info()
            .and_then(|o| o.operation_state())
            .unwrap_or("UNKNOWN")
            .to_string())
    }

    async fn broker_ids(&self, cluster_arn: &str) -> Result<Vec<i32>, ControlError> {
        let mut ids = Vec::new();
        let mut pages = self
            .client
            .list_nodes()
            .cluster_arn(cluster_arn)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| call_error("ListNodes", aws_sdk_kafka::Error::from(e)))?;
            for node in page.node_info_list() {
                if let Some(id) = node.broker_node_info().and_then(|b| b.broker_id()) {
                    ids.push(id as i32);
                }
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }
}

pub struct CloudWatch {
    client: aws_sdk_cloudwatch::Client,
}

impl CloudWatch {
    pub fn new(client: aws_sdk_cloudwatch::Client) -> Self {
        Self { client }
    }
}

fn query(id: String, metric: &str, cluster: &str, broker: i32) -> MetricDataQuery {
    MetricDataQuery::builder()
        .id(id)
        .return_data(true)
        .metric_stat(
            MetricStat::builder()
                .metric(
                    Metric::builder()
                        .namespace("AWS/Kafka")
                        .metric_name(metric)
                        .dimensions(
                            Dimension::builder()
                                .name("Cluster Name")
                                .value(cluster)
                                .build(),
                        )
                        .dimensions(
                            Dimension::builder()
                                .name("Broker ID")
                                .value(broker.to_string())
                                .build(),
                        )
                        .build(),
                )
                .period(60)
                .stat("Average")
                .build(),
        )
        .build()
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

impl CpuMetrics for CloudWatch {
    async fn max_cpu(
        &self,
        cluster_name: &str,
        broker_ids: &[i32],
        window: Duration,
    ) -> Result<Option<f64>, ControlError> {
        let now = SystemTime::now();
        let mut request = self
            .client
            .get_metric_data()
            .start_time(DateTime::from(now - window))
            // A minute past now: the end is exclusive and sent with whole seconds, so ending at
            // `now` would drop the newest datapoint.
            .end_time(DateTime::from(now + Duration::from_secs(60)));
        for broker in broker_ids {
            request = request
                .metric_data_queries(query(
                    format!("user{broker}"),
                    "CpuUser",
                    cluster_name,
                    *broker,
                ))
                .metric_data_queries(query(
                    format!("system{broker}"),
                    "CpuSystem",
                    cluster_name,
                    *broker,
                ));
        }
        let output = request
            .send()
            .await
            .map_err(|e| call_error("GetMetricData", aws_sdk_cloudwatch::Error::from(e)))?;
        let values = |id: String| {
            output
                .metric_data_results()
                .iter()
                .find(|r| r.id() == Some(id.as_str()))
                .map(|r| r.values().to_vec())
                .unwrap_or_default()
        };
        Ok(broker_ids
            .iter()
            .filter_map(|b| {
                let user = mean(&values(format!("user{b}")))?;
                let system = mean(&values(format!("system{b}"))).unwrap_or(0.0);
                Some(user + system)
            })
            .reduce(f64::max))
    }
}
