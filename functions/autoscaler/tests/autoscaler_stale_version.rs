//! The stale-version path of the handler: another change lands on the cluster between our
//! DescribeClusterV2 and UpdateBrokerCount. The handler must release its claim on the old
//! version, read the cluster again and decide again — never resend the stale version. The
//! control plane here is an in-memory cluster whose version moves once (the real MSK client's
//! mapping of that error is tested against the stand-in in `autoscaler_real_stack.rs`); the
//! claims live in moto's DynamoDB.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Result;
use autoscaler::decision::{ClusterKind, ClusterView, Decision};
use autoscaler::handler::{App, handle};
use autoscaler::ports::{ControlError, ControlPlane, CpuMetrics};
use autoscaler::settings::Settings;
use devstack::Stack;
use devstack::testkit;
use shared::state_table::StateTable;

const ARN: &str = "arn:aws:kafka:us-east-1:123456789012:cluster/stale/abc";

/// A three-AZ cluster whose version is bumped by "someone else" right after our first describe.
struct MovingCluster {
    version: Mutex<u32>,
    describes: Mutex<u32>,
    updates: Mutex<Vec<(String, u32)>>,
}

impl ControlPlane for MovingCluster {
    async fn describe(&self, _: &str) -> Result<ClusterView, ControlError> {
        let mut describes = self.describes.lock().unwrap();
        *describes += 1;
        let mut version = self.version.lock().unwrap();
        let seen = format!("V{version}");
        if *describes == 1 {
            *version += 1;
        }
        Ok(ClusterView {
            arn: ARN.into(),
            name: "stale".into(),
            state: "ACTIVE".into(),
            current_version: seen,
            kind: ClusterKind::Provisioned {
                brokers: 3,
                azs: 3,
                instance_type: "kafka.m7g.large".into(),
            },
            operation_in_flight: false,
        })
    }

    async fn update_broker_count(
        &self,
        _: &str,
        current_version: &str,
        target: u32,
    ) -> Result<String, ControlError> {
        self.updates
            .lock()
            .unwrap()
            .push((current_version.to_string(), target));
        let actual = format!("V{}", self.version.lock().unwrap());
        if current_version != actual {
            return Err(ControlError::StaleVersion(format!(
                "{current_version} is not the cluster's current version {actual}"
            )));
        }
        Ok("arn:aws:kafka:us-east-1:123456789012:cluster-operation/stale/abc/op-1".into())
    }

    async fn operation_state(&self, _: &str) -> Result<String, ControlError> {
        Ok("UPDATE_IN_PROGRESS".into())
    }

    async fn broker_ids(&self, _: &str) -> Result<Vec<i32>, ControlError> {
        Ok(vec![1, 2, 3])
    }
}

struct Hot;

impl CpuMetrics for Hot {
    async fn max_cpu(&self, _: &str, _: &[i32], _: Duration) -> Result<Option<f64>, ControlError> {
        Ok(Some(65.0))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_version_is_read_again_and_decided_again() -> Result<()> {
    let stack = Stack::attach()?;
    let aws = testkit::aws_config(&stack.aws_endpoint()).await;
    let state = StateTable::new(
        aws_sdk_dynamodb::Client::new(&aws),
        testkit::unique_name("autoscaler-stale"),
    );
    state.create().await?;
    let app = App {
        control: MovingCluster {
            version: Mutex::new(1),
            describes: Mutex::new(0),
            updates: Mutex::new(Vec::new()),
        },
        metrics: Hot,
        state: state.clone(),
        settings: Settings::from_env(&HashMap::from([
            ("MSK_CLUSTER_ARN", ARN),
            ("CPU_ALARM_NAME", "msk-broker-cpu-high"),
            ("STATE_TABLE_NAME", state.name()),
            ("MAX_BROKERS", "12"),
        ]))?,
    };
    let alarm: serde_json::Value = serde_json::from_str(include_str!(
        "../../../events/autoscaler/alarm-direct-alarm.json"
    ))?;

    let report = handle(&app, testkit::invocation(alarm.clone())).await?;

    assert_eq!(
        *app.control.updates.lock().unwrap(),
        vec![("V1".to_string(), 6), ("V2".to_string(), 6)],
        "the second UpdateBrokerCount carries the version read again, not the stale one"
    );
    assert_eq!(*app.control.describes.lock().unwrap(), 2);
    assert!(
        matches!(report.decision, Decision::ScaleOut { from: 3, to: 6, .. }),
        "{report:?}"
    );
    assert!(report.operation_arn.is_some());
    assert!(
        autoscaler::state::claim(&state, ARN, "V1").await?,
        "the claim on the stale version was given back"
    );
    assert!(
        !autoscaler::state::claim(&state, ARN, "V2").await?,
        "the claim on the version actually scaled holds"
    );

    // The same alarm again starts nothing more.
    let again = handle(&app, testkit::invocation(alarm)).await?;
    assert!(again.operation_arn.is_none(), "{again:?}");
    assert_eq!(app.control.updates.lock().unwrap().len(), 2);
    Ok(())
}
