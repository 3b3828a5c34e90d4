//! The autoscaler against the local stack: the real `aws-sdk-kafka` client talking to the MSK
//! control-plane stand-in (whose UpdateBrokerCount starts real Kafka broker nodes), the real
//! `aws-sdk-cloudwatch` client reading datapoints pushed into moto, and its state in moto's
//! DynamoDB.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use autoscaler::aws::{CloudWatch, Msk};
use autoscaler::decision::Decision;
use autoscaler::handler::{App, handle};
use autoscaler::ports::{ControlError, ControlPlane, CpuMetrics};
use autoscaler::settings::Settings;
use devstack::Stack;
use devstack::msk_standin::MskStandIn;
use devstack::testkit;
use serde_json::Value;
use shared::state_table::StateTable;

/// The sample direct alarm invocation, in `state`.
fn alarm(state: &str) -> Value {
    let mut event: Value = serde_json::from_str(include_str!(
        "../../../events/autoscaler/alarm-direct-alarm.json"
    ))
    .expect("the sample alarm event is JSON");
    event["alarmData"]["state"]["value"] = state.into();
    event
}

fn recheck() -> Value {
    testkit::scheduled_event("autoscaler-recheck")
}

#[tokio::test(flavor = "multi_thread")]
async fn scales_out_once_on_alarm_and_hands_the_new_brokers_to_the_rebalancer() -> Result<()> {
    let stack = Stack::attach()?;
    let before = stack.nodes.len() as u32;
    let stack = Arc::new(Mutex::new(stack));
    let cluster = testkit::unique_name("msk");
    let standin = MskStandIn::start(stack.clone(), &cluster, "kafka.m7g.large", 0).await?;
    let endpoint = stack.lock().unwrap().aws_endpoint();
    let aws = testkit::aws_config(&endpoint).await;
    let kafka_api = aws_sdk_kafka::Client::from_conf(
        aws_sdk_kafka::config::Builder::from(&aws)
            .endpoint_url(&standin.endpoint)
            .build(),
    );
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&aws);
    let state = StateTable::new(
        aws_sdk_dynamodb::Client::new(&aws),
        testkit::unique_name("autoscaler-state"),
    );
    state.create().await?;

    let max = (before + 3).to_string();
    let env = HashMap::from([
        ("MSK_CLUSTER_ARN", standin.cluster_arn.as_str()),
        ("CPU_ALARM_NAME", "msk-broker-cpu-high"),
        ("STATE_TABLE_NAME", state.name()),
        ("MAX_BROKERS", max.as_str()),
        ("SCALE_COOLDOWN_SECONDS", "3600"),
    ]);
    let app = App {
        control: Msk::new(kafka_api.clone()),
        metrics: CloudWatch::new(cloudwatch.clone()),
        state: state.clone(),
        settings: Settings::from_env(&env)?,
    };

    // CloudWatch through the real SDK: user + system, the busiest broker wins.
    let brokers: Vec<i32> = (1..=before as i32).collect();
    assert_eq!(
        app.metrics
            .max_cpu(&cluster, &brokers, Duration::from_secs(300))
            .await?,
        None
    );
    testkit::push_broker_cpu(&cloudwatch, &cluster, &brokers, 30.0, 20.0).await?;
    testkit::push_broker_cpu(&cloudwatch, &cluster, &[1], 50.0, 30.0).await?;
    let cpu = app
        .metrics
        .max_cpu(&cluster, &brokers, Duration::from_secs(300))
        .await?
        .unwrap();
    assert!(
        (cpu - 65.0).abs() < 0.01,
        "broker 1 averages (30+50)/2 + (20+30)/2 = 65, got {cpu}"
    );

    // OK and INSUFFICIENT_DATA change nothing.
    for quiet in ["OK", "INSUFFICIENT_DATA"] {
        let report = handle(&app, testkit::invocation(alarm(quiet))).await?;
        assert!(
            matches!(report.decision, Decision::NoAction { .. }),
            "{report:?}"
        );
    }

    // Any other alarm in ALARM (AWS's generic sample alarm event) is refused, with CPU high.
    let other: Value = serde_json::from_str(include_str!(
        "../../../events/autoscaler/alarm-other-alarm.json"
    ))?;
    let refused = handle(&app, testkit::invocation(other)).await?;
    assert!(
        matches!(&refused.decision, Decision::Refuse { reason } if reason.contains("lambda-demo-metric-alarm")),
        "{refused:?}"
    );
    assert_eq!(refused.operation_arn, None);
    assert_eq!(standin.state(), "ACTIVE", "no scale-out started");

    // The same ALARM delivered twice at once: one scale-out, the other sees the claim.
    let (first, second) = tokio::join!(
        handle(&app, testkit::invocation(alarm("ALARM"))),
        handle(&app, testkit::invocation(alarm("ALARM")))
    );
    let reports = [first?, second?];
    let started: Vec<_> = reports
        .iter()
        .filter(|r| r.operation_arn.is_some())
        .collect();
    assert_eq!(started.len(), 1, "{reports:?}");
    assert!(
        matches!(started[0].decision, Decision::ScaleOut { from, to, .. } if from == before && to == before + 3)
    );
    let duplicate = reports.iter().find(|r| r.operation_arn.is_none()).unwrap();
    assert!(
        matches!(&duplicate.decision, Decision::NoAction { reason } if reason.contains("already")),
        "{duplicate:?}"
    );

    // While MSK works, nothing more happens.
    let busy = handle(&app, testkit::invocation(alarm("ALARM"))).await?;
    assert!(
        matches!(&busy.decision, Decision::NoAction { .. }),
        "{busy:?}"
    );

    let deadline = Instant::now() + Duration::from_secs(180);
    while standin.state() != "ACTIVE" {
        if Instant::now() > deadline {
            bail!("the scale-out did not finish");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        stack.lock().unwrap().nodes.len() as u32,
        before + 3,
        "real broker nodes were started"
    );
    let registered = app.control.broker_ids(&standin.cluster_arn).await?;
    assert_eq!(registered.len() as u32, before + 3);

    // The re-check after completion hands the new brokers over, and the cooldown holds.
    testkit::push_broker_cpu(&cloudwatch, &cluster, &registered, 45.0, 20.0).await?;
    let after = handle(&app, testkit::invocation(recheck())).await?;
    let handoff = after
        .handed_off
        .clone()
        .expect("new brokers handed to the rebalancer");
    let expected: Vec<i32> = (before as i32 + 1..=before as i32 + 3).collect();
    assert_eq!(handoff.new_broker_ids, expected);
    assert_eq!(
        shared::handoff::read(&state, &standin.cluster_arn).await?,
        Some(handoff)
    );
    assert!(
        matches!(&after.decision, Decision::NoAction { reason } if reason.contains("cooldown")),
        "{after:?}"
    );
    assert!(
        handle(&app, testkit::invocation(recheck()))
            .await?
            .handed_off
            .is_none(),
        "handed over once"
    );

    // A stale version is reported as such (the handler then re-reads instead of retrying).
    let stale = app
        .control
        .update_broker_count(&standin.cluster_arn, "K1", before + 6)
        .await;
    assert!(
        matches!(stale, Err(ControlError::StaleVersion(_))),
        "{stale:?}"
    );
    let view = app.control.describe(&standin.cluster_arn).await?;
    let uneven = app
        .control
        .update_broker_count(&standin.cluster_arn, &view.current_version, before + 4)
        .await;
    assert!(
        matches!(uneven, Err(ControlError::Call { .. })),
        "not a multiple of the AZs: {uneven:?}"
    );

    // Dry run: decides, changes nothing.
    let dry = App {
        settings: Settings::from_env(&HashMap::from([
            ("MSK_CLUSTER_ARN", standin.cluster_arn.as_str()),
            ("CPU_ALARM_NAME", "msk-broker-cpu-high"),
            ("STATE_TABLE_NAME", "unused"),
            ("MAX_BROKERS", "30"),
            ("SCALE_COOLDOWN_SECONDS", "1"),
            ("DRY_RUN", "true"),
        ]))?,
        ..app
    };
    let report = handle(&dry, testkit::invocation(alarm("ALARM"))).await?;
    assert!(
        report.dry_run && matches!(report.decision, Decision::ScaleOut { .. }),
        "{report:?}"
    );
    assert!(report.operation_arn.is_none());
    assert_eq!(standin.state(), "ACTIVE");
    Ok(())
}
