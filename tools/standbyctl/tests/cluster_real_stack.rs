//! `standbyctl cluster` on the real local cluster, as an operator runs it: with a broker stopped
//! (under-replicated partitions shown, the broker unregistered, exit code 6), then with the broker
//! back and after a rebalance has run to its end (clean, exit code 0). Also read: a standby
//! backlog with an event past its TTL, a held key, a dead-letter topic with records, the
//! autoscaler's last scale-out and the rebalancer's handoff, from the tables the functions keep.
//!
//! One test in its own binary: it stops a broker, which no other test may see.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use assert_cmd::Command;
use devstack::Stack;
use devstack::testkit;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rebalancer::admin::{AdminClient, ConfigChange, ConfigOp, ConfigResource, Transport};
use rebalancer::executor::{self, Limits, RunReport};
use republisher::engine::HeldKey;
use sdk::standby_table::StandbyTable;
use serde_json::Value;
use shared::handoff::{self, Handoff};
use shared::state_table::StateTable;

const STOPPED: i32 = 3;

struct Fixture {
    stack: Stack,
    standby: StandbyTable,
    state: StateTable,
    dead_letter_topic: String,
    topic: String,
    cluster_arn: String,
    /// The republisher's name in its metrics: unique, so other runs' data stays out.
    republisher: String,
    /// How far back `cluster` counts events expired by TTL.
    lookback_hours: std::cell::Cell<u64>,
}

impl Fixture {
    fn ctl(&self) -> Command {
        let mut command = common::standbyctl(
            &self.stack,
            self.standby.name(),
            self.state.name(),
            &self.dead_letter_topic,
        );
        command.env("MSK_CLUSTER_ARN", &self.cluster_arn);
        command
    }

    /// `standbyctl cluster` with this fixture's republisher and look-back.
    fn cluster(&self) -> Command {
        let mut command = self.ctl();
        command.args([
            "cluster",
            "--republisher-function",
            &self.republisher,
            "--expired-lookback-hours",
            &self.lookback_hours.get().to_string(),
        ]);
        command
    }

    /// `standbyctl cluster --output json`: its exit code and report.
    fn health(&self) -> (i32, Value) {
        let output = self
            .cluster()
            .args(["--output", "json"])
            .output()
            .expect("standbyctl runs");
        let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        });
        (output.status.code().unwrap_or(-1), report)
    }

    /// The report once `ready` holds for it (the cluster takes a few seconds to notice a broker
    /// that stopped, and to take one back).
    fn health_once(&self, what: &str, ready: impl Fn(&Value) -> bool) -> Result<(i32, Value)> {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let (code, report) = self.health();
            if ready(&report) {
                return Ok((code, report));
            }
            if Instant::now() > deadline {
                bail!("{what}: not seen within 90 s; last report: {report:#}");
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn mentions(report: &Value, list: &str, text: &str) -> bool {
    strings(&report[list])
        .iter()
        .any(|line| line.contains(text))
}

fn limits() -> Limits {
    Limits {
        max_partitions_in_flight: 50,
        max_moves_per_broker: 10,
        throttle_bytes_per_sec: 50 * 1024 * 1024,
        max_bytes_in_flight_per_broker: 1024 * 1024 * 1024,
        poll_interval: Duration::from_millis(200),
        margin: Duration::ZERO,
    }
}

/// Runs the rebalancer until it reports the cluster balanced.
async fn rebalance(bootstrap: &str) -> Result<()> {
    let mut client = AdminClient::connect(bootstrap, &Transport::Plaintext).await?;
    for _ in 0..20 {
        let report = executor::run(
            &mut client,
            &limits(),
            &Default::default(),
            &[],
            false,
            Instant::now() + Duration::from_secs(60),
        )
        .await?;
        match report {
            RunReport::Done { .. } => return Ok(()),
            RunReport::Waiting { reason, .. } => {
                eprintln!("rebalancer waiting: {reason}");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            _ => {}
        }
    }
    bail!("the rebalance did not finish in 20 runs")
}

/// Restarts the stopped broker however the test ends: later suites need the whole cluster.
struct Restart(Option<Stack>);

impl Drop for Restart {
    fn drop(&mut self) {
        if let Some(mut stack) = self.0.take()
            && let Err(error) = stack.start_node(STOPPED)
        {
            eprintln!("could not restart broker {STOPPED}: {error:#}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_health_with_a_broker_stopped_then_after_a_rebalance() -> Result<()> {
    let stack = Stack::attach()?;
    let bootstrap = stack.bootstrap_servers();
    {
        let bootstrap = bootstrap.clone();
        tokio::task::spawn_blocking(move || {
            testkit::wait_until_fully_replicated(&bootstrap, Duration::from_secs(180))
        })
        .await??;
    }
    let aws = testkit::aws_config(&stack.aws_endpoint()).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let standby = StandbyTable::new(dynamodb.clone(), testkit::unique_name("health-standby"));
    standby.create().await?;
    let state = StateTable::new(dynamodb.clone(), testkit::unique_name("health-state"));
    state.create().await?;
    let topic = testkit::unique_name("health");
    let assignment: Vec<Vec<i32>> = (0..3)
        .map(|p| (0..3).map(|r| (p + r) % 3 + 1).collect())
        .collect();
    testkit::create_topic_on(&bootstrap, &topic, &assignment).await?;
    let dead_letter_topic = testkit::unique_name("health-dlt");
    testkit::create_topic(&bootstrap, &dead_letter_topic, 2, 3, &[]).await?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()?;
    for n in 0..2 {
        producer
            .send(
                FutureRecord::to(&dead_letter_topic)
                    .key("k")
                    .payload(&format!("dead {n}")),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
    }
    let f = Fixture {
        stack,
        standby,
        state,
        dead_letter_topic,
        topic,
        cluster_arn: "arn:aws:kafka:us-east-1:123456789012:cluster/health/abc".into(),
        republisher: testkit::unique_name("republisher"),
        lookback_hours: std::cell::Cell::new(24),
    };
    // An event lost to the TTL 20 hours ago, as the republisher counted it in CloudWatch.
    {
        use aws_sdk_cloudwatch::primitives::DateTime;
        use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
        let dimension =
            |name: &str, value: &str| Dimension::builder().name(name).value(value).build();
        aws_sdk_cloudwatch::Client::new(&aws)
            .put_metric_data()
            .namespace(republisher::handler::METRICS.namespace)
            .metric_data(
                MetricDatum::builder()
                    .metric_name("ExpiredByTtl")
                    .dimensions(dimension("FunctionName", &f.republisher))
                    .dimensions(dimension("Trigger", "stream"))
                    .timestamp(DateTime::from(
                        std::time::SystemTime::now() - Duration::from_secs(20 * 3600),
                    ))
                    .value(1.0)
                    .build(),
            )
            .send()
            .await?;
    }

    // What the functions leave in their tables: an event waiting, one past its TTL, a held key,
    // a scale-out a minute ago and its handoff.
    let now_s = wire::clock::now_ms() / 1000;
    let waiting = testkit::standby_record(&f.topic)
        .key("a")
        .age(Duration::from_secs(120))
        .expires_at(now_s + 86_400)
        .build();
    let expired = testkit::standby_record(&f.topic)
        .key("b")
        .age(Duration::from_secs(7200))
        .expires_at(now_s - 60)
        .build();
    f.standby.put_new(&waiting).await?;
    f.standby.put_new(&expired).await?;
    republisher::held::record(
        &f.state,
        f.standby.name(),
        &[HeldKey {
            pk: waiting.partition_key(),
            event_id: waiting.event_id.to_string(),
            reason: "TopicAuthorizationFailed".into(),
        }],
    )
    .await?;
    autoscaler::state::record_scale(
        &f.state,
        &f.cluster_arn,
        &autoscaler::state::ScaleRecord {
            at: now_s - 60,
            operation_arn: "arn:aws:kafka:op/1".into(),
            from: 3,
            to: 6,
            brokers_before: vec![1, 2, 3],
            handed_off: true,
        },
    )
    .await?;
    assert!(autoscaler::state::claim(&f.state, &f.cluster_arn, "K3AEGXETSR30VB").await?);
    let registered_now = f.health().1["brokers"]
        .as_array()
        .context("brokers")?
        .iter()
        .filter_map(|b| b["id"].as_i64())
        .collect::<Vec<_>>();
    handoff::write(
        &f.state,
        &f.cluster_arn,
        &Handoff {
            new_broker_ids: vec![1],
            operation_arn: "arn:aws:kafka:op/1".into(),
            at: now_s - 30,
        },
    )
    .await?;

    // A broker stopped: its partitions under-replicated, itself unregistered, exit code 6.
    let mut control = Stack::attach()?;
    control.stop_node(STOPPED)?;
    let restart = Restart(Some(control));
    let ours = format!("{}-0", f.topic);
    let (code, report) = f.health_once("broker 3 gone", |r| {
        strings(&r["partitions"]["under_replicated"]).contains(&ours)
            && r["brokers"].as_array().is_some_and(|b| {
                b.iter()
                    .any(|b| b["id"] == STOPPED && b["registered"] == false)
            })
    })?;
    assert_eq!(code, 6, "{report:#}");
    let (_, quorum) = f.health_once("the stopped voter falling behind", |r| {
        r["controller"]["voters"].as_array().is_some_and(|v| {
            // Behind for seconds, or never caught up with a leader elected while it was away.
            v.iter().any(|v| {
                v["id"] == STOPPED
                    && v["lag"].as_i64() > Some(0)
                    && v["caught_up_seconds_ago"]
                        .as_i64()
                        .is_none_or(|ago| ago > 2)
            })
        })
    })?;
    assert!(
        mentions(
            &quorum,
            "notes",
            &format!("controller quorum voter {STOPPED}")
        ),
        "{quorum:#}"
    );
    assert!(
        mentions(&report, "attention", "under-replicated"),
        "{report:#}"
    );
    assert!(
        mentions(
            &report,
            "attention",
            &format!("broker {STOPPED} is not registered")
        ),
        "{report:#}"
    );
    assert!(mentions(&report, "attention", "past the TTL"), "{report:#}");
    assert!(mentions(&report, "attention", "1 key held"), "{report:#}");
    assert!(
        mentions(
            &report,
            "attention",
            "1 event expired by TTL in the last 24 h"
        ),
        "{report:#}"
    );
    let under: Vec<String> = strings(&report["partitions"]["under_replicated"]);
    for p in 0..3 {
        assert!(under.contains(&format!("{}-{p}", f.topic)), "{under:?}");
    }
    assert!(
        strings(&report["partitions"]["under_min_isr"])
            .iter()
            .all(|p| !p.starts_with(&f.topic)),
        "two of three replicas are still in sync"
    );
    let stopped = report["brokers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == STOPPED)
        .unwrap();
    assert!(stopped["replicas"].as_u64().unwrap() >= 3, "{stopped}");
    let standby = &report["standby"];
    assert_eq!(standby["events"], 2);
    assert_eq!(standby["past_ttl"], 1);
    assert_eq!(standby["topics"][0]["topic"], f.topic.as_str());
    assert_eq!(
        standby["held_keys"][0]["reason"],
        "TopicAuthorizationFailed"
    );
    assert_eq!(
        report["dead_letter_topics"][0],
        serde_json::json!({"topic": f.dead_letter_topic, "records": 2})
    );
    let autoscaler = &report["autoscaler"];
    assert_eq!(autoscaler["last_scale_out"]["to"], 6);
    assert_eq!(
        autoscaler["latest_claim"]["cluster_version"],
        "K3AEGXETSR30VB"
    );
    assert!(autoscaler["cooldown_left_seconds"].as_u64().unwrap() > 3000);
    assert_eq!(report["rebalancer_handoff"]["new_broker_ids"][0], 1);
    assert!(
        report["controller"]["quorum_leader"].as_i64().is_some(),
        "{report:#}"
    );
    assert!(
        report["controller"]["voters"].as_array().unwrap().len() >= 3,
        "{report:#}"
    );
    // The table form says the same, and sets the same exit code.
    let table = f.cluster().assert().code(6).get_output().stdout.clone();
    let table = String::from_utf8(table)?;
    assert!(table.starts_with("NEEDS ATTENTION"), "{table}");
    assert!(table.contains("under-replicated"), "{table}");
    eprintln!("standbyctl cluster, broker {STOPPED} stopped:\n{table}");

    // The broker back, the table's problems dealt with, a rebalance run to its end: clean.
    drop(restart);
    {
        let bootstrap = bootstrap.clone();
        tokio::task::spawn_blocking(move || {
            testkit::wait_until_fully_replicated(&bootstrap, Duration::from_secs(180))
        })
        .await??;
    }
    f.ctl()
        .args(["standby", "purge", "--all", "--yes"])
        .assert()
        .success();
    republisher::held::release(
        &f.state,
        f.standby.name(),
        &republisher::held::list(&f.state, f.standby.name()).await?[0],
    )
    .await?;
    handoff::clear(&f.state, &f.cluster_arn).await?;
    // The lost event is 20 hours old: outside a look-back of one hour.
    f.lookback_hours.set(1);
    // Throttles as a rebalance between two runs leaves them: shown, worth a note, not an alarm.
    AdminClient::connect(&bootstrap, &Transport::Plaintext)
        .await?
        .alter_configs(&[
            ConfigChange {
                resource: ConfigResource::AllBrokers,
                name: executor::LEADER_THROTTLED_RATE.into(),
                op: ConfigOp::Set("1048576".into()),
            },
            ConfigChange {
                resource: ConfigResource::Topic(f.topic.clone()),
                name: executor::LEADER_THROTTLED_REPLICAS.into(),
                op: ConfigOp::Set("0:1,0:2".into()),
            },
        ])
        .await?;
    let (code, report) = f.health_once("throttles in place", |r| {
        r["throttles"]["topics"].get(&f.topic).is_some()
    })?;
    assert_eq!(
        report["throttles"]["topics"][&f.topic],
        serde_json::json!([[executor::LEADER_THROTTLED_REPLICAS, "0:1,0:2"]])
    );
    let broker_throttles: Vec<&str> = report["throttles"]["brokers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|pair| pair[0].as_str())
        .collect();
    assert!(
        broker_throttles.contains(&executor::LEADER_THROTTLED_RATE),
        "{report:#}"
    );
    assert!(
        mentions(
            &report,
            "notes",
            "throttles are in place with no reassignment"
        ),
        "{report:#}"
    );
    assert_eq!(code, 0, "throttles alone need no attention: {report:#}");
    rebalance(&f.stack.bootstrap_servers()).await?;
    let (code, report) = f.health_once("clean after the rebalance", |r| {
        r["partitions"]["under_replicated"]
            .as_array()
            .is_some_and(Vec::is_empty)
    })?;
    assert_eq!(report["attention"], serde_json::json!([]), "{report:#}");
    assert_eq!(code, 0);
    assert_eq!(
        report["expired_by_ttl"],
        serde_json::json!({"lookback_hours": 1, "events": 0})
    );
    assert_eq!(report["planner"]["moves"], 0, "{report:#}");
    assert_eq!(report["planner"]["bytes_to_move"], 0, "{report:#}");
    assert_eq!(report["planner"]["leader_changes"], 0, "{report:#}");
    assert_eq!(
        report["planner"]["replicas_balanced_across_racks"], true,
        "{report:#}"
    );
    assert_eq!(report["reassignments"], serde_json::json!([]));
    assert_eq!(
        report["throttles"],
        serde_json::json!({"brokers": [], "topics": {}}),
        "the rebalancer removes its throttles when done"
    );
    assert!(
        strings(&report["partitions"]["leader_not_preferred"]).is_empty(),
        "the rebalancer elects preferred leaders when done: {report:#}"
    );
    let brokers: Vec<i64> = report["brokers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["registered"] == true)
        .filter_map(|b| b["id"].as_i64())
        .collect();
    assert_eq!(brokers, registered_now);
    let table = f.cluster().assert().code(0).get_output().stdout.clone();
    eprintln!(
        "standbyctl cluster, after the rebalance:\n{}",
        String::from_utf8(table)?
    );
    Ok(())
}
