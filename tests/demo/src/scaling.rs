//! The scaling story: high broker CPU in CloudWatch, the alarm fires, the autoscaler calls
//! UpdateBrokerCount on the MSK stand-in (which starts three more real brokers), hands the new
//! broker ids over, and the rebalancer moves partitions onto them.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use autoscaler::aws::{CloudWatch, Msk};
use autoscaler::decision::Decision;
use autoscaler::ports::ControlPlane;
use devstack::{MSK_CLUSTER_NAME, Stack, testkit};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rebalancer::handler::Handoffs;
use serde_json::Value;
use shared::state_table::StateTable;

/// Replicas and preferred leaders (first replicas) of one broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerLoad {
    pub id: i32,
    pub rack: String,
    pub replicas: usize,
    pub leaders: usize,
}

/// Replicas and actual leaders per broker, over every non-internal topic, read with rdkafka.
pub fn layout(bootstrap: &str) -> Result<Vec<BrokerLoad>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(10))?;
    let racks: HashMap<i32, String> = {
        // rdkafka's metadata has no racks; the stack knows them.
        let stack = Stack::attach()?;
        stack.nodes.iter().map(|n| (n.id, n.rack.clone())).collect()
    };
    let mut loads: BTreeMap<i32, BrokerLoad> = metadata
        .brokers()
        .iter()
        .map(|b| {
            (
                b.id(),
                BrokerLoad {
                    id: b.id(),
                    rack: racks.get(&b.id()).cloned().unwrap_or_default(),
                    replicas: 0,
                    leaders: 0,
                },
            )
        })
        .collect();
    for topic in metadata
        .topics()
        .iter()
        .filter(|t| !t.name().starts_with("__"))
    {
        for partition in topic.partitions() {
            for replica in partition.replicas() {
                if let Some(load) = loads.get_mut(replica) {
                    load.replicas += 1;
                }
            }
            if let Some(load) = loads.get_mut(&partition.leader()) {
                load.leaders += 1;
            }
        }
    }
    Ok(loads.into_values().collect())
}

/// What the scaling story did.
#[derive(Debug, Clone)]
pub struct Scaled {
    pub before: Vec<BrokerLoad>,
    pub after: Vec<BrokerLoad>,
    pub decision: Value,
    pub new_brokers: Vec<i32>,
    pub rebalance_invocations: usize,
    pub elapsed: Duration,
}

/// The sample direct alarm invocation, as CloudWatch sends it to the autoscaler.
fn alarm() -> Result<Value> {
    Ok(serde_json::from_str(include_str!(
        "../../../events/autoscaler/alarm-direct-alarm.json"
    ))?)
}

/// Runs the story against the stack's background MSK stand-in. `progress` gets a line of news.
pub async fn scale_out_and_rebalance(progress: impl Fn(&str)) -> Result<Scaled> {
    let started = Instant::now();
    let stack = Stack::attach()?;
    let msk = stack
        .msk
        .clone()
        .context("the stack has no MSK stand-in: run `make stack-up`")?;
    let aws = testkit::aws_config(&stack.aws_endpoint()).await;
    let kafka_api = aws_sdk_kafka::Client::from_conf(
        aws_sdk_kafka::config::Builder::from(&aws)
            .endpoint_url(msk.endpoint())
            .build(),
    );
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&aws);
    let state = StateTable::new(
        aws_sdk_dynamodb::Client::new(&aws),
        testkit::unique_name("demo-state"),
    );
    state.create().await?;

    let before = layout(&stack.bootstrap_servers())?;
    let brokers: Vec<i32> = before.iter().map(|b| b.id).collect();
    let max = (brokers.len() + 3).to_string();
    let env = HashMap::from([
        ("MSK_CLUSTER_ARN", msk.cluster_arn.as_str()),
        ("CPU_ALARM_NAME", "msk-broker-cpu-high"),
        ("STATE_TABLE_NAME", state.name()),
        ("MAX_BROKERS", max.as_str()),
        ("SCALE_COOLDOWN_SECONDS", "3600"),
    ]);
    let app = autoscaler::handler::App {
        control: Msk::new(kafka_api),
        metrics: CloudWatch::new(cloudwatch.clone()),
        state: state.clone(),
        settings: autoscaler::settings::Settings::from_env(&env)?,
    };

    progress("broker CPU at 65% (CpuUser 45 + CpuSystem 20) for every broker");
    testkit::push_broker_cpu(&cloudwatch, MSK_CLUSTER_NAME, &brokers, 45.0, 20.0).await?;
    progress("alarm fires: invoking the autoscaler");
    let report = autoscaler::handler::handle(&app, testkit::invocation(alarm()?)).await?;
    if !matches!(report.decision, Decision::ScaleOut { .. }) || report.operation_arn.is_none() {
        bail!("the autoscaler did not scale out: {report:?}");
    }
    let decision = serde_json::to_value(&report)?;

    progress("MSK is adding brokers (the stand-in starts real Kafka nodes)");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let view = app.control.describe(&msk.cluster_arn).await?;
        if view.state == "ACTIVE" && !view.operation_in_flight {
            break;
        }
        if Instant::now() > deadline {
            bail!("the scale-out did not finish");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    progress("re-check: the scale-out finished; handing the new brokers to the rebalancer");
    let follow_up = autoscaler::handler::handle(
        &app,
        testkit::invocation(testkit::scheduled_event("autoscaler-recheck")),
    )
    .await?;
    let new_brokers = follow_up
        .handed_off
        .map(|h| h.new_broker_ids)
        .unwrap_or_default();

    let stack = Stack::attach()?;
    let settings = rebalancer::settings::Settings::from_env(&testkit::kafka_env(
        &stack.bootstrap_servers(),
        [
            ("REBALANCE_MAX_PARTITIONS_IN_FLIGHT", "20"),
            ("REBALANCE_MAX_MOVES_PER_BROKER", "6"),
            ("REBALANCE_POLL_MS", "500"),
            ("REBALANCE_MARGIN_MS", "500"),
        ],
    ))?;
    let rebalancer = rebalancer::handler::App {
        settings,
        handoffs: Some(Handoffs {
            state: state.clone(),
            cluster_arn: msk.cluster_arn.clone(),
        }),
    };
    let mut invocations = 0;
    loop {
        invocations += 1;
        let event = testkit::lambda_event(
            testkit::scheduled_event("rebalancer-resume"),
            Duration::from_secs(30),
        );
        let report = serde_json::to_value(rebalancer::handler::handle(&rebalancer, event).await?)?;
        let status = report["status"].as_str().unwrap_or_default().to_string();
        progress(&format!("rebalancer invocation {invocations}: {status}"));
        match status.as_str() {
            "done" => break,
            _ if invocations >= 60 => {
                bail!("rebalance not done after {invocations} invocations: {report}")
            }
            "waiting" => tokio::time::sleep(Duration::from_secs(1)).await,
            _ => {}
        }
    }
    let after = layout(&stack.bootstrap_servers())?;
    Ok(Scaled {
        before,
        after,
        decision,
        new_brokers,
        rebalance_invocations: invocations,
        elapsed: started.elapsed(),
    })
}
