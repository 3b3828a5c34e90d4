//! The rebalancer on the real local cluster: 3 brokers with data, then 3 more brokers in the same
//! racks (ids 4–6, as a scale-out adds them); the rebalancer runs across several invocations, the
//! first forced to stop mid-way, until done (the later ones over TLS). Checked with rdkafka, an
//! independent client: every
//! partition on its target, replicas balanced per rack, leaders balanced, throttles gone, every
//! message still there.
//!
//! The added brokers stay for the rest of the test run (the other suites only need a cluster).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use devstack::Stack;
use devstack::testkit;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient as RdAdmin, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rebalancer::admin::{AdminClient, Transport};
use rebalancer::cluster::ClusterState;
use rebalancer::executor::{self, Limits, RunReport};
use rebalancer::handler::{App, Handoffs, handle};
use rebalancer::planner::{self, Options};
use rebalancer::settings::Settings;
use shared::handoff::{self, Handoff};
use shared::state_table::StateTable;

const NEW_BROKERS: [(i32, &str); 3] = [(4, "az-a"), (5, "az-b"), (6, "az-c")];
const MESSAGES_PER_TOPIC: usize = 300;

fn limits() -> Limits {
    Limits {
        max_partitions_in_flight: 6,
        max_moves_per_broker: 3,
        throttle_bytes_per_sec: 10 * 1024 * 1024,
        max_bytes_in_flight_per_broker: 4 * 1024 * 1024,
        poll_interval: Duration::from_millis(200),
        margin: Duration::ZERO,
    }
}

async fn produce(bootstrap: &str, topic: &str, value_bytes: usize) -> Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .create()?;
    for n in 0..MESSAGES_PER_TOPIC {
        let key = format!("key-{}", n % 17);
        // At least 1 KiB each, so every partition takes several replica fetches (64 KiB on the
        // local stack) and a replication throttle holds its move back.
        let value = format!("{topic}:{n}:{}", "x".repeat(value_bytes));
        producer
            .send(
                FutureRecord::to(topic).key(&key).payload(&value),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
    }
    Ok(())
}

/// (broker → replicas, broker → leaders) from rdkafka's metadata, over every topic.
fn layout(bootstrap: &str) -> Result<(BTreeMap<i32, usize>, BTreeMap<i32, usize>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(10))?;
    let mut replicas: BTreeMap<i32, usize> =
        metadata.brokers().iter().map(|b| (b.id(), 0)).collect();
    let mut leaders = replicas.clone();
    for topic in metadata
        .topics()
        .iter()
        .filter(|t| !t.name().starts_with("__"))
    {
        for partition in topic.partitions() {
            for r in partition.replicas() {
                *replicas.entry(*r).or_default() += 1;
            }
            *leaders.entry(partition.leader()).or_default() += 1;
        }
    }
    Ok((replicas, leaders))
}

/// Replication throttle configs still set, as (resource, config) names.
async fn throttles(bootstrap: &str, topics: &[String], brokers: &[i32]) -> Result<Vec<String>> {
    let admin: RdAdmin<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    // librdkafka describes one broker per request.
    let mut requests: Vec<Vec<ResourceSpecifier>> = brokers
        .iter()
        .map(|b| vec![ResourceSpecifier::Broker(*b)])
        .collect();
    requests.push(topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect());
    let mut found = Vec::new();
    for specifiers in &requests {
        for result in admin
            .describe_configs(specifiers, &AdminOptions::new())
            .await?
        {
            let resource = result?;
            for entry in &resource.entries {
                let dynamic = matches!(
                    entry.source,
                    rdkafka::admin::ConfigSource::DynamicBroker
                        | rdkafka::admin::ConfigSource::DynamicDefaultBroker
                        | rdkafka::admin::ConfigSource::DynamicTopic
                );
                if dynamic && entry.name.contains("replication.throttled") {
                    found.push(format!(
                        "{:?} {}={:?}",
                        resource.specifier, entry.name, entry.value
                    ));
                }
            }
        }
    }
    Ok(found)
}

/// Planner options that leave every topic of `state` but `topics` alone.
fn only(topics: &[String], state: &ClusterState) -> Options {
    Options {
        excluded_topics: state
            .partitions
            .iter()
            .map(|p| p.topic.clone())
            .filter(|t| !topics.contains(t))
            .collect(),
        ..Options::default()
    }
}

fn spread(counts: impl Iterator<Item = usize>) -> usize {
    let counts: Vec<usize> = counts.collect();
    counts.iter().max().unwrap_or(&0) - counts.iter().min().unwrap_or(&0)
}

#[tokio::test(flavor = "multi_thread")]
async fn scale_out_rebalance_across_invocations() -> Result<()> {
    let mut stack = Stack::attach()?;
    let bootstrap = stack.bootstrap_servers();
    // A run of this test that failed mid-way may have left its crawl of a throttle in place.
    AdminClient::connect(&bootstrap, &Transport::Plaintext)
        .await?
        .alter_configs(&executor::throttle_rate_changes(&limits()))
        .await?;
    // Suites share the cluster: one that crashed brokers may still have followers catching up,
    // and the rebalancer (rightly) moves nothing while a partition is under-replicated.
    {
        let bootstrap = bootstrap.clone();
        tokio::task::spawn_blocking(move || {
            testkit::wait_until_fully_replicated(&bootstrap, Duration::from_secs(180))
        })
        .await??;
    }
    let topics: Vec<String> = (0..3)
        .map(|i| testkit::unique_name(&format!("rebalance-{i}")))
        .collect();
    // The data sits on the original brokers, as before a scale-out, even when an earlier suite
    // (the autoscaler's) has already started brokers 4–6 and Kafka would spread new topics there.
    for (i, topic) in topics.iter().enumerate() {
        let assignment: Vec<Vec<i32>> = (0..3 + 3 * i as i32)
            .map(|p| (0..3).map(|r| (p + r) % 3 + 1).collect())
            .collect();
        testkit::create_topic_on(&bootstrap, topic, &assignment).await?;
        // Topics of different sizes: 1, 4 and 16 KiB values.
        produce(&bootstrap, topic, 1024 << (2 * i)).await?;
    }

    for (id, rack) in NEW_BROKERS {
        if stack.node(id).is_err() {
            tokio::task::block_in_place(|| stack.add_broker(id, rack))?;
        }
    }
    let bootstrap = stack.bootstrap_servers();
    let new_ids: Vec<i32> = NEW_BROKERS.iter().map(|(id, _)| *id).collect();
    let options = Options::default();
    let mut client = AdminClient::connect(&bootstrap, &Transport::Plaintext).await?;
    // Until the last invocations, only this test's partitions, which hold several replica
    // fetches of data each: other suites' topics on the shared cluster are mostly empty, the
    // planner moves the smallest partitions first, and an empty partition's move completes at
    // once whatever the throttle (nothing would be left in flight to cut short or throttle).
    let only_ours = only(&topics, &client.cluster_state().await?);

    // A dry run changes nothing and proposes moves onto the new brokers.
    let dry = executor::run(
        &mut client,
        &limits(),
        &only_ours,
        &new_ids,
        true,
        Instant::now() + Duration::from_secs(30),
    )
    .await?;
    let RunReport::DryRun {
        reassignment,
        summary,
        estimate,
    } = dry
    else {
        bail!("expected a dry run, got {dry:?}")
    };
    assert!(
        summary.moves > 0 && summary.moves == summary.min_moves,
        "{summary:?}"
    );
    assert!(
        reassignment
            .partitions
            .iter()
            .any(|p| p.replicas.iter().any(|r| new_ids.contains(r)))
    );
    assert!(
        client.list_reassignments().await?.is_empty(),
        "a dry run moves nothing"
    );
    // Sizes come from the brokers' log directories: every moving partition's is known, and the
    // estimate counts each copy at the throttle rate.
    assert_eq!(estimate.unknown_sizes, 0, "{estimate:?}");
    assert!(
        estimate.bytes_to_move > 0 && estimate.bytes_to_move == summary.bytes_to_move,
        "{estimate:?} {summary:?}"
    );
    assert!(estimate.seconds >= estimate.busiest_broker_bytes / limits().throttle_bytes_per_sec);

    // First invocation: a deadline so short it must stop mid-way, with throttles in place.
    let first = executor::run(
        &mut client,
        &limits(),
        &only_ours,
        &new_ids,
        false,
        Instant::now() + Duration::from_millis(300),
    )
    .await?;
    let RunReport::InProgress { submitted, .. } = first else {
        bail!("expected to stop mid-way, got {first:?}")
    };
    assert!(
        submitted > 0 && submitted <= limits().max_partitions_in_flight + summary.leader_changes
    );
    let all_brokers: Vec<i32> = (1..=6).collect();
    let set = throttles(&bootstrap, &topics, &all_brokers).await?;
    assert!(!set.is_empty(), "throttles are set while moving");

    // Two invocations at once (as an async retry overlapping the schedule would be, without the
    // template's reserved concurrency of 1): A moves partitions at a crawl; B fails while A's
    // moves are in flight (a Kafka ACL denies it Alter on the cluster, so its reassignment is
    // refused). B must leave the throttles in place: they are A's.
    let crawl = Limits {
        throttle_bytes_per_sec: 1,
        ..limits()
    };
    let overlapping = Limits {
        max_partitions_in_flight: 100,
        max_moves_per_broker: 100,
        ..crawl.clone()
    };
    let settled = Instant::now() + Duration::from_secs(60);
    while !client.list_reassignments().await?.is_empty() {
        if Instant::now() > settled {
            bail!("the first invocation's moves did not finish");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A follower that fell behind while the first invocation's throttled moves finished (two
    // cores, six brokers) leaves the ISR for a moment; A would then rightly wait instead of moving.
    {
        let bootstrap = bootstrap.clone();
        tokio::task::spawn_blocking(move || {
            testkit::wait_until_fully_replicated(&bootstrap, Duration::from_secs(120))
        })
        .await??;
    }
    let mut a_client = AdminClient::connect(&bootstrap, &Transport::Plaintext).await?;
    let mut b_client = AdminClient::connect(&bootstrap, &Transport::Plaintext).await?;
    let a = executor::run(
        &mut a_client,
        &crawl,
        &only_ours,
        &[],
        false,
        Instant::now() + Duration::from_secs(8),
    );
    let b = async {
        let moving = Instant::now() + Duration::from_secs(8);
        while client.list_reassignments().await?.is_empty() {
            if Instant::now() > moving {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::task::block_in_place(|| stack.deny_on_cluster("Alter", true))?;
        let report = executor::run(
            &mut b_client,
            &overlapping,
            &only_ours,
            &[],
            false,
            Instant::now() + Duration::from_secs(20),
        )
        .await;
        let throttles_after_b = throttles(&bootstrap, &topics, &all_brokers).await?;
        let in_flight = client.list_reassignments().await?.len();
        tokio::task::block_in_place(|| stack.deny_on_cluster("Alter", false))?;
        Ok::<_, anyhow::Error>(Some((report, in_flight, throttles_after_b)))
    };
    let (a, b) = tokio::join!(a, b);
    let Some((b_report, in_flight, throttles_after_b)) = b? else {
        let under_replicated = client.cluster_state().await?.under_replicated();
        bail!(
            "invocation A started no reassignment: {a:?}; under-replicated: {under_replicated:?}"
        );
    };
    assert!(b_report.is_err(), "B was denied: {b_report:?}");
    assert!(
        !throttles_after_b.is_empty(),
        "B removed the throttles under A's moving partitions"
    );
    assert!(
        in_flight > 0,
        "A's moves were still in flight after B failed"
    );
    assert!(matches!(a?, RunReport::InProgress { .. }));
    // The operator raises the crawl back to the normal rate; the next runs finish the job.
    client
        .alter_configs(&executor::throttle_rate_changes(&limits()))
        .await?;

    // Later invocations (as the schedule would make) continue from the cluster's state, over
    // the TLS listener as in AWS (the CA from KAFKA_SSL_CA_LOCATION). Trusting another CA, the
    // connection is refused with the reason.
    let tls_bootstrap = stack.tls_bootstrap_servers();
    let trusting = |ca: std::path::PathBuf| Transport::Tls {
        iam_region: None,
        ca_location: Some(ca),
    };
    let Err(refused) = AdminClient::connect(&tls_bootstrap, &trusting(stack.tls().wrong_ca)).await
    else {
        bail!("a broker certificate from an untrusted CA was accepted");
    };
    assert!(
        refused.to_string().contains("invalid peer certificate"),
        "{refused}"
    );
    let mut invocations = 1;
    let done = loop {
        invocations += 1;
        let mut client = AdminClient::connect(&tls_bootstrap, &trusting(stack.tls().ca)).await?;
        let report = executor::run(
            &mut client,
            &limits(),
            &options,
            &[],
            false,
            Instant::now() + Duration::from_secs(20),
        )
        .await?;
        match report {
            RunReport::Done { .. } => break report,
            RunReport::InProgress { .. } | RunReport::Waiting { .. } if invocations < 30 => {
                continue;
            }
            other => bail!("not done after {invocations} invocations: {other:?}"),
        }
    };

    // Every partition is on its target: planning again proposes nothing.
    let state = client.cluster_state().await?;
    assert!(state.ongoing.is_empty());
    let again = planner::plan(&state.description(), &options);
    assert!(again.targets.is_empty(), "left to do: {:?}", again.targets);

    // Balanced per rack, and leaders (actual, after the election) balanced. The controller
    // answers the election once it is decided; brokers' metadata follows a moment later.
    let settle_by = Instant::now() + Duration::from_secs(15);
    let (replicas, leaders) = loop {
        let (replicas, leaders) = layout(&bootstrap)?;
        if spread(leaders.values().copied()) <= 1 || Instant::now() > settle_by {
            break (replicas, leaders);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let rack_of: HashMap<i32, &str> = state
        .brokers
        .iter()
        .map(|b| (b.id, b.rack.as_deref().unwrap_or("")))
        .collect();
    for rack in ["az-a", "az-b", "az-c"] {
        let in_rack = replicas
            .iter()
            .filter(|(b, _)| rack_of[*b] == rack)
            .map(|(_, c)| *c);
        assert!(spread(in_rack) <= 1, "rack {rack}: {replicas:?}");
    }
    assert!(
        spread(leaders.values().copied()) <= 1,
        "leaders: {leaders:?} after {done:?}"
    );
    assert!(
        new_ids.iter().all(|b| replicas[b] > 0 && leaders[b] > 0),
        "{replicas:?} {leaders:?}"
    );

    let left = throttles(&bootstrap, &topics, &all_brokers).await?;
    assert!(left.is_empty(), "throttles left behind: {left:?}");

    for topic in &topics {
        let (reader_bootstrap, reader_topic) = (bootstrap.clone(), topic.clone());
        let messages = tokio::task::spawn_blocking(move || {
            testkit::consume(
                &reader_bootstrap,
                &reader_topic,
                MESSAGES_PER_TOPIC,
                Duration::from_secs(60),
            )
        })
        .await?
        .with_context(|| format!("reading {topic} after the rebalance"))?;
        let mut values: Vec<String> = messages
            .iter()
            .map(|m| String::from_utf8(m.value.clone().unwrap_or_default()).unwrap())
            .map(|v| v.trim_end_matches('x').trim_end_matches(':').to_string())
            .collect();
        values.sort();
        let mut expected: Vec<String> = (0..MESSAGES_PER_TOPIC)
            .map(|n| format!("{topic}:{n}"))
            .collect();
        expected.sort();
        assert_eq!(
            values, expected,
            "every message of {topic} survives the moves"
        );
    }
    eprintln!("rebalanced in {invocations} invocations");

    bytes_moved_are_what_the_new_replicas_hold(&bootstrap).await?;
    // Followers of the partitions just moved may still be rejoining the ISR.
    {
        let bootstrap = bootstrap.clone();
        tokio::task::spawn_blocking(move || {
            testkit::wait_until_fully_replicated(&bootstrap, Duration::from_secs(120))
        })
        .await??;
    }

    // The autoscaler's handoff: the Lambda handler waits for brokers that have not registered,
    // and clears the handoff once the cluster is balanced.
    let aws = testkit::aws_config(&stack.aws_endpoint()).await;
    let state = StateTable::new(
        aws_sdk_dynamodb::Client::new(&aws),
        testkit::unique_name("rebalancer-state"),
    );
    state.create().await?;
    let cluster_arn = "arn:aws:kafka:us-east-1:123456789012:cluster/local/1";
    let settings = Settings::from_env(&testkit::kafka_env(
        &bootstrap,
        [("REBALANCE_POLL_MS", "200"), ("REBALANCE_MARGIN_MS", "100")],
    ))?;
    let app = App {
        settings,
        handoffs: Some(Handoffs {
            state: state.clone(),
            cluster_arn: cluster_arn.to_string(),
        }),
    };
    let invoke = || async {
        let event = testkit::scheduled_event("rebalancer-resume");
        let report = handle(&app, testkit::lambda_event(event, Duration::from_secs(20))).await?;
        anyhow::Ok(serde_json::to_value(report)?)
    };
    let pending = Handoff {
        new_broker_ids: vec![4, 5, 6, 99],
        operation_arn: "op".into(),
        at: 0,
    };
    handoff::write(&state, cluster_arn, &pending).await?;
    let waiting = invoke().await?;
    assert_eq!(waiting["status"], "waiting", "{waiting}");
    assert!(
        waiting["reason"].as_str().unwrap().contains("99"),
        "{waiting}"
    );
    handoff::write(
        &state,
        cluster_arn,
        &Handoff {
            new_broker_ids: new_ids.clone(),
            ..pending
        },
    )
    .await?;
    let done = invoke().await?;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(
        handoff::read(&state, cluster_arn).await?,
        None,
        "handoff cleared once balanced"
    );
    Ok(())
}

/// A clean scale-out of topics of three sizes, alone (every other topic excluded): the bytes the
/// runs report submitting equal, byte for byte, what the new replicas hold afterwards by the
/// brokers' log directories, and the dry run estimated exactly that.
async fn bytes_moved_are_what_the_new_replicas_hold(bootstrap: &str) -> Result<()> {
    let topics: Vec<String> = (0..3)
        .map(|i| testkit::unique_name(&format!("bytes-{i}")))
        .collect();
    for (i, topic) in topics.iter().enumerate() {
        let assignment: Vec<Vec<i32>> = (0..3)
            .map(|p| (0..3).map(|r| (p + r) % 3 + 1).collect())
            .collect();
        testkit::create_topic_on(bootstrap, topic, &assignment).await?;
        // Values of 1, 4 and 16 KiB.
        produce(bootstrap, topic, 1024 << (2 * i)).await?;
    }
    let mut client = AdminClient::connect(bootstrap, &Transport::Plaintext).await?;
    let before = client.cluster_state().await?;
    let only_these = only(&topics, &before);
    let deadline = || Instant::now() + Duration::from_secs(30);
    let dry = executor::run(&mut client, &limits(), &only_these, &[], true, deadline()).await?;
    let RunReport::DryRun { estimate, .. } = dry else {
        bail!("expected a dry run, got {dry:?}")
    };
    assert_eq!(estimate.unknown_sizes, 0, "{estimate:?}");
    let mut bytes_submitted = 0;
    for run in 1..=20 {
        match executor::run(&mut client, &limits(), &only_these, &[], false, deadline()).await? {
            RunReport::Done {
                bytes_submitted: bytes,
                ..
            } => {
                bytes_submitted += bytes;
                break;
            }
            RunReport::InProgress {
                bytes_submitted: bytes,
                ..
            } => bytes_submitted += bytes,
            // A run that moved partitions may end waiting for a follower to catch up; what it
            // submitted still counts.
            RunReport::Waiting {
                bytes_submitted: bytes,
                ..
            } => {
                bytes_submitted += bytes;
                tokio::time::sleep(Duration::from_secs(1)).await
            }
            other => bail!("run {run}: {other:?}"),
        }
    }
    let after = client.cluster_state().await?;
    let log_dirs = client.log_dirs().await?;
    let mut on_disk = 0;
    for p in after
        .partitions
        .iter()
        .filter(|p| topics.contains(&p.topic))
    {
        let previous = &before
            .partitions
            .iter()
            .find(|b| b.topic == p.topic && b.partition == p.partition)
            .context("partition existed before")?
            .replicas;
        let tp = rebalancer::cluster::TopicPartition {
            topic: p.topic.clone(),
            partition: p.partition,
        };
        for added in p.replicas.iter().filter(|b| !previous.contains(b)) {
            on_disk += log_dirs.replicas[&tp][added];
        }
    }
    assert!(
        on_disk > 0,
        "the scale-out moved replicas of the new topics"
    );
    assert_eq!(
        bytes_submitted, on_disk,
        "bytes reported as moved vs bytes the new replicas hold"
    );
    assert_eq!(estimate.bytes_to_move, on_disk, "the dry run's estimate");
    eprintln!(
        "moved {on_disk} bytes; the dry run estimated {} bytes, {} s at {} B/s",
        estimate.bytes_to_move,
        estimate.seconds,
        limits().throttle_bytes_per_sec
    );
    Ok(())
}
