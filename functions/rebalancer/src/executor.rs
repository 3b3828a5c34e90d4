//! Carries a plan out on the cluster, a batch at a time, resumably.
//!
//! Every invocation starts from what the cluster says (metadata and the reassignments in
//! progress), plans again, and moves on: submit a batch, wait for it while the invocation has
//! time, submit the next. A run that runs out of time simply returns "in progress"; the next
//! invocation continues from the cluster's state. When nothing is left to move and nothing is
//! moving, it removes the replication throttles and runs a preferred leader election.
//!
//! Batches respect three limits: partitions being reassigned at once (ours and anyone else's),
//! replica moves touching one broker at once (counting both the broker receiving and the broker
//! giving up a replica), and the bytes those moves copy per broker (a partition larger than the
//! limit moves alone). Smaller partitions go first, so a run's early batches finish quickly and
//! the big copies do not hold the small ones back. Partition sizes are read once per run from
//! the brokers' log directories (DescribeLogDirs); without them (an older broker, a refused
//! request) batches are limited by count only. Reorders (leader balance only) move no data and
//! are not limited.
//! Before a batch starts, replication throttles are set (as `kafka-reassign-partitions
//! --throttle` does): a rate for every broker, and per topic the moving partitions' current
//! replicas (leader side) and new replicas (follower side). They are removed at the end and
//! after any failure.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::admin::{AdminClient, AdminError, ConfigChange, ConfigOp, ConfigResource, Reassignment};
use crate::cluster::{ClusterState, ReassignmentJson, TopicPartition};
use crate::planner::{self, Options, Plan, Summary, Target};

pub const LEADER_THROTTLED_RATE: &str = "leader.replication.throttled.rate";
pub const FOLLOWER_THROTTLED_RATE: &str = "follower.replication.throttled.rate";
pub const LEADER_THROTTLED_REPLICAS: &str = "leader.replication.throttled.replicas";
pub const FOLLOWER_THROTTLED_REPLICAS: &str = "follower.replication.throttled.replicas";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Partitions being reassigned at once, cluster-wide.
    pub max_partitions_in_flight: usize,
    /// Replica moves touching one broker at once.
    pub max_moves_per_broker: usize,
    /// Replication throttle per broker while moving, bytes/s.
    pub throttle_bytes_per_sec: u64,
    /// Bytes being copied to or from one broker at once (partition sizes, when known).
    pub max_bytes_in_flight_per_broker: u64,
    /// How often to check on a batch.
    pub poll_interval: Duration,
    /// Time kept free before the deadline.
    pub margin: Duration,
}

/// What one invocation did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RunReport {
    /// Nothing changed: the plan as `kafka-reassign-partitions` JSON, its summary, and how long
    /// its copies take at the throttle rate.
    DryRun {
        reassignment: ReassignmentJson,
        summary: Summary,
        estimate: Estimate,
    },
    /// Out of time with work left; the next invocation continues.
    InProgress {
        submitted: usize,
        /// Replication throttle rates are set on the brokers as the run ends.
        throttles_in_place: bool,
        /// Bytes the moves this run submitted copy (partitions of known size).
        bytes_submitted: u64,
        in_flight: usize,
        remaining_moves: usize,
    },
    /// Balanced: throttles removed, preferred leaders elected.
    Done {
        submitted: usize,
        bytes_submitted: u64,
        leaders_elected: usize,
    },
    /// Not started: partitions are under-replicated, or new brokers have not registered yet.
    /// (Also after moves this run submitted, when a partition fell out of sync meanwhile: the
    /// moves it submitted are counted.)
    Waiting {
        reason: String,
        /// Replication throttle rates are set (left by an earlier run whose moves are done or
        /// still going).
        throttles_in_place: bool,
        submitted: usize,
        bytes_submitted: u64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("{failed} partitions could not be reassigned, e.g. {example}")]
    Refused { failed: usize, example: String },
}

/// Runs until done, or until the deadline leaves no room for another poll.
pub async fn run(
    client: &mut AdminClient,
    limits: &Limits,
    options: &Options,
    expected_brokers: &[i32],
    dry_run: bool,
    deadline: Instant,
) -> Result<RunReport, ExecutorError> {
    let result = run_inner(client, limits, options, expected_brokers, dry_run, deadline).await;
    if result.is_err() && !dry_run {
        release_throttles_after_failure(client).await;
    }
    result
}

/// After a failed run, removes the replication throttles only if no reassignment is in flight:
/// removing them under moving partitions lets the copies run at full speed over the brokers'
/// client traffic, and the reassignments may be another invocation's. A later run removes them
/// once nothing moves.
async fn release_throttles_after_failure(client: &mut AdminClient) {
    let state = match client.cluster_state().await {
        Ok(state) => state,
        Err(error) => {
            tracing::error!(%error, "after a failure, could not read the cluster to decide about throttles; they stay");
            return;
        }
    };
    if !state.ongoing.is_empty() {
        tracing::warn!(
            in_flight = state.ongoing.len(),
            "after a failure, the replication throttles stay: reassignments are still moving"
        );
        return;
    }
    if let Err(error) = remove_throttles(client, &state).await {
        tracing::error!(%error, "could not remove replication throttles after a failure");
    }
}

async fn run_inner(
    client: &mut AdminClient,
    limits: &Limits,
    options: &Options,
    expected_brokers: &[i32],
    dry_run: bool,
    deadline: Instant,
) -> Result<RunReport, ExecutorError> {
    let mut submitted = 0;
    let mut bytes_submitted = 0;
    let mut sizes: Option<HashMap<TopicPartition, u64>> = None;
    loop {
        let state = client.cluster_state().await?;
        let sizes = match &mut sizes {
            Some(sizes) => &*sizes,
            None => sizes.insert(partition_sizes(client, &state).await),
        };
        let registered: HashSet<i32> = state.brokers.iter().map(|b| b.id).collect();
        let missing: Vec<i32> = expected_brokers
            .iter()
            .copied()
            .filter(|b| !registered.contains(b))
            .collect();
        if !missing.is_empty() {
            return Ok(RunReport::Waiting {
                reason: format!("brokers {missing:?} have not registered with the cluster yet"),
                throttles_in_place: throttles_in_place(client).await?,
                submitted,
                bytes_submitted,
            });
        }
        let plan = planner::plan(&state.sized_description(sizes), options);
        if dry_run {
            return Ok(RunReport::DryRun {
                reassignment: plan.reassignment_json(),
                estimate: estimate(&plan.targets, limits.throttle_bytes_per_sec),
                summary: plan.summary,
            });
        }
        let under_replicated = state.under_replicated();
        if !under_replicated.is_empty() {
            let examples: Vec<String> = under_replicated
                .iter()
                .take(5)
                .map(|tp| format!("{}-{}", tp.topic, tp.partition))
                .collect();
            return Ok(RunReport::Waiting {
                reason: format!(
                    "{} partitions are under-replicated (e.g. {}); not moving anything until they recover",
                    under_replicated.len(),
                    examples.join(", ")
                ),
                throttles_in_place: throttles_in_place(client).await?,
                submitted,
                bytes_submitted,
            });
        }
        if plan.targets.is_empty() && state.ongoing.is_empty() {
            // The rate is set whenever a batch moves data: only then is there anything to remove
            // (removing unconditionally would write every topic's config on every idle run).
            if throttles_in_place(client).await? {
                remove_throttles(client, &state).await?;
            }
            let leaders_elected = elect_leaders(client, &state).await?;
            tracing::info!(submitted, leaders_elected, "rebalance complete");
            return Ok(RunReport::Done {
                submitted,
                bytes_submitted,
                leaders_elected,
            });
        }

        let batch = next_batch(&plan, &state, limits, sizes);
        if !batch.is_empty() {
            set_throttles(client, &batch, limits).await?;
            let targets: Vec<Reassignment> = batch
                .iter()
                .map(|t| Reassignment {
                    topic: t.topic.clone(),
                    partition: t.partition,
                    replicas: t.replicas.clone(),
                })
                .collect();
            let refused = client.alter_reassignments(&targets).await?;
            if let Some(first) = refused.first() {
                return Err(ExecutorError::Refused {
                    failed: refused.len(),
                    example: format!(
                        "{}-{}: {}",
                        first.partition.topic, first.partition.partition, first.reason
                    ),
                });
            }
            submitted += batch.len();
            bytes_submitted += batch
                .iter()
                .map(|t| t.size_bytes.unwrap_or(0) * t.moves as u64)
                .sum::<u64>();
            tracing::info!(
                partitions = batch.len(),
                moves = batch.iter().map(|t| t.moves).sum::<usize>(),
                "reassignment batch submitted"
            );
        }

        // Wait for progress while there is time for it.
        loop {
            if Instant::now() + limits.poll_interval + limits.margin > deadline {
                let state = client.cluster_state().await?;
                let remaining = planner::plan(&state.sized_description(sizes), options);
                return Ok(RunReport::InProgress {
                    submitted,
                    throttles_in_place: throttles_in_place(client).await?,
                    bytes_submitted,
                    in_flight: state.ongoing.len(),
                    remaining_moves: remaining.summary.moves,
                });
            }
            tokio::time::sleep(limits.poll_interval).await;
            let ongoing = client.list_reassignments().await?;
            if ongoing.len() < limits.max_partitions_in_flight / 2 + 1 || ongoing.is_empty() {
                break;
            }
        }
    }
}

/// Whether replication throttle rates are set on the brokers (the cluster-wide default, where
/// the executor sets them).
async fn throttles_in_place(client: &mut AdminClient) -> Result<bool, AdminError> {
    Ok(!client
        .cluster_broker_configs(&[LEADER_THROTTLED_RATE, FOLLOWER_THROTTLED_RATE])
        .await?
        .is_empty())
}

/// Every partition's size from the brokers' log directories; none when they cannot be read
/// (batches are then limited by count only, and the plan reports no bytes).
async fn partition_sizes(
    client: &mut AdminClient,
    state: &ClusterState,
) -> HashMap<TopicPartition, u64> {
    match client.log_dirs().await {
        Ok(log_dirs) => log_dirs.partition_sizes(state),
        Err(error) => {
            tracing::warn!(%error, "could not read partition sizes; batches are limited by count only");
            HashMap::new()
        }
    }
}

/// How long a plan's copies take: each broker copies in (as a new replica) and out (as the
/// leader) at most the throttle rate, so the busiest broker sets the pace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Estimate {
    pub bytes_to_move: u64,
    /// The most bytes one broker sends or receives.
    pub busiest_broker_bytes: u64,
    /// At the throttle rate, with every broker copying at once.
    pub seconds: u64,
    /// Targets whose size is unknown (not counted above).
    pub unknown_sizes: usize,
}

/// The estimate for `targets` at `rate` bytes per second per broker.
pub fn estimate(targets: &[Target], rate: u64) -> Estimate {
    let mut per_broker: HashMap<i32, u64> = HashMap::new();
    let mut bytes_to_move = 0;
    let mut unknown_sizes = 0;
    for target in targets.iter().filter(|t| t.moves > 0) {
        let Some(size) = target.size_bytes else {
            unknown_sizes += 1;
            continue;
        };
        let added: Vec<i32> = target
            .replicas
            .iter()
            .filter(|b| !target.previous.contains(b))
            .copied()
            .collect();
        bytes_to_move += size * added.len() as u64;
        for b in &added {
            *per_broker.entry(*b).or_default() += size;
        }
        if let Some(leader) = target.previous.first() {
            *per_broker.entry(*leader).or_default() += size * added.len() as u64;
        }
    }
    let busiest_broker_bytes = per_broker.values().copied().max().unwrap_or(0);
    Estimate {
        bytes_to_move,
        busiest_broker_bytes,
        seconds: busiest_broker_bytes.div_ceil(rate.max(1)),
        unknown_sizes,
    }
}

/// The brokers a move copies to or from: those added and those removed.
fn touched(target: &Target) -> Vec<i32> {
    target
        .replicas
        .iter()
        .filter(|b| !target.previous.contains(b))
        .chain(
            target
                .previous
                .iter()
                .filter(|b| !target.replicas.contains(b)),
        )
        .copied()
        .collect()
}

/// The next targets to submit, smallest first, within the limits given what is already moving.
pub fn next_batch<'a>(
    plan: &'a Plan,
    state: &ClusterState,
    limits: &Limits,
    sizes: &HashMap<TopicPartition, u64>,
) -> Vec<&'a Target> {
    let mut in_flight = state.ongoing.len();
    let mut per_broker: HashMap<i32, usize> = HashMap::new();
    let mut bytes: HashMap<i32, u64> = HashMap::new();
    for ongoing in &state.ongoing {
        let size = sizes
            .get(&TopicPartition {
                topic: ongoing.topic.clone(),
                partition: ongoing.partition,
            })
            .copied()
            .unwrap_or(0);
        for broker in ongoing.adding.iter().chain(&ongoing.removing) {
            *per_broker.entry(*broker).or_default() += 1;
            *bytes.entry(*broker).or_default() += size;
        }
    }
    let mut order: Vec<&Target> = plan.targets.iter().collect();
    // Stable: among partitions of one size, plan order.
    order.sort_by_key(|t| (t.moves > 0, t.size_bytes.unwrap_or(0)));
    let mut batch = Vec::new();
    for target in order {
        if target.moves == 0 {
            batch.push(target);
            continue;
        }
        if in_flight >= limits.max_partitions_in_flight {
            continue;
        }
        let touched = touched(target);
        if touched
            .iter()
            .any(|b| per_broker.get(b).copied().unwrap_or(0) >= limits.max_moves_per_broker)
        {
            continue;
        }
        let size = target.size_bytes.unwrap_or(0);
        // A broker copying nothing yet takes any one partition, however large.
        if touched.iter().any(|b| {
            let busy = bytes.get(b).copied().unwrap_or(0);
            busy > 0 && busy + size > limits.max_bytes_in_flight_per_broker
        }) {
            continue;
        }
        for b in touched {
            *per_broker.entry(b).or_default() += 1;
            *bytes.entry(b).or_default() += size;
        }
        in_flight += 1;
        batch.push(target);
    }
    batch
}

/// The throttle rate for every broker (the cluster-wide default), as `limits` says.
pub fn throttle_rate_changes(limits: &Limits) -> Vec<ConfigChange> {
    let rate = limits.throttle_bytes_per_sec.to_string();
    [LEADER_THROTTLED_RATE, FOLLOWER_THROTTLED_RATE]
        .map(|name| ConfigChange {
            resource: ConfigResource::AllBrokers,
            name: name.into(),
            op: ConfigOp::Set(rate.clone()),
        })
        .to_vec()
}

/// Throttle changes for a batch: the rate for every broker (the cluster-wide default), and the moving replicas per topic.
pub fn throttle_changes(batch: &[&Target], limits: &Limits) -> Vec<ConfigChange> {
    let mut changes = throttle_rate_changes(limits);
    let mut leader_side: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut follower_side: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for target in batch.iter().filter(|t| t.moves > 0) {
        for b in &target.previous {
            leader_side
                .entry(&target.topic)
                .or_default()
                .push(format!("{}:{b}", target.partition));
        }
        for b in target
            .replicas
            .iter()
            .filter(|b| !target.previous.contains(b))
        {
            follower_side
                .entry(&target.topic)
                .or_default()
                .push(format!("{}:{b}", target.partition));
        }
    }
    for (name, sides) in [
        (LEADER_THROTTLED_REPLICAS, leader_side),
        (FOLLOWER_THROTTLED_REPLICAS, follower_side),
    ] {
        for (topic, replicas) in sides {
            changes.push(ConfigChange {
                resource: ConfigResource::Topic(topic.to_string()),
                name: name.into(),
                // Appended, so partitions of earlier batches still moving stay throttled.
                op: ConfigOp::Append(replicas.join(",")),
            });
        }
    }
    changes
}

async fn set_throttles(
    client: &mut AdminClient,
    batch: &[&Target],
    limits: &Limits,
) -> Result<(), AdminError> {
    if batch.iter().all(|t| t.moves == 0) {
        return Ok(());
    }
    client.alter_configs(&throttle_changes(batch, limits)).await
}

/// Deletes every replication throttle: the cluster-wide rates and the replica lists on all
/// topics (deleting a config that is not set is a no-op). Called only when nothing is moving,
/// or after a failure.
async fn remove_throttles(
    client: &mut AdminClient,
    state: &ClusterState,
) -> Result<(), AdminError> {
    let mut changes: Vec<ConfigChange> = [LEADER_THROTTLED_RATE, FOLLOWER_THROTTLED_RATE]
        .map(|name| ConfigChange {
            resource: ConfigResource::AllBrokers,
            name: name.into(),
            op: ConfigOp::Delete,
        })
        .to_vec();
    let topics: std::collections::BTreeSet<&str> =
        state.partitions.iter().map(|p| p.topic.as_str()).collect();
    for topic in topics {
        for name in [LEADER_THROTTLED_REPLICAS, FOLLOWER_THROTTLED_REPLICAS] {
            changes.push(ConfigChange {
                resource: ConfigResource::Topic(topic.to_string()),
                name: name.into(),
                op: ConfigOp::Delete,
            });
        }
    }
    client.alter_configs(&changes).await
}

/// Preferred leader election for partitions not led by their first replica.
async fn elect_leaders(
    client: &mut AdminClient,
    state: &ClusterState,
) -> Result<usize, AdminError> {
    let partitions: Vec<TopicPartition> = state
        .partitions
        .iter()
        .filter(|p| p.replicas.first() != Some(&p.leader))
        .map(|p| TopicPartition {
            topic: p.topic.clone(),
            partition: p.partition,
        })
        .collect();
    if partitions.is_empty() {
        return Ok(0);
    }
    let failed = client.elect_preferred_leaders(&partitions).await?;
    for refusal in &failed {
        tracing::warn!(
            topic = %refusal.partition.topic,
            partition = refusal.partition.partition,
            reason = refusal.reason,
            "preferred leader election failed"
        );
    }
    Ok(partitions.len() - failed.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Broker;
    use crate::cluster::{Ongoing, PartitionState};

    fn limits() -> Limits {
        Limits {
            max_partitions_in_flight: 3,
            max_moves_per_broker: 2,
            throttle_bytes_per_sec: 1000,
            max_bytes_in_flight_per_broker: 1000,
            poll_interval: Duration::from_millis(10),
            margin: Duration::ZERO,
        }
    }

    fn target(partition: i32, previous: &[i32], replicas: &[i32]) -> Target {
        Target {
            topic: "t".into(),
            partition,
            previous: previous.to_vec(),
            replicas: replicas.to_vec(),
            moves: replicas.iter().filter(|r| !previous.contains(r)).count(),
            size_bytes: None,
        }
    }

    fn plan(targets: Vec<Target>) -> Plan {
        let summary = planner::plan(&Default::default(), &Options::default()).summary;
        Plan { targets, summary }
    }

    fn state(ongoing: Vec<Ongoing>) -> ClusterState {
        ClusterState {
            brokers: (1..=6).map(|id| Broker { id, rack: None }).collect(),
            controller: Some(1),
            partitions: vec![PartitionState {
                topic: "t".into(),
                partition: 0,
                replicas: vec![1],
                isr: vec![1],
                leader: 1,
            }],
            ongoing,
        }
    }

    #[test]
    fn batches_respect_both_limits_and_never_hold_back_reorders() {
        let plan = plan(vec![
            target(0, &[1], &[4]),
            target(1, &[1], &[4]),
            target(2, &[1], &[5]),
            target(3, &[2, 3], &[3, 2]),
            target(4, &[2], &[6]),
            target(5, &[3], &[6]),
        ]);
        let batch = next_batch(&plan, &state(vec![]), &limits(), &HashMap::new());
        let partitions: Vec<i32> = batch.iter().map(|t| t.partition).collect();
        // 3 is a reorder (first: it copies nothing); 0 and 1 use broker 1 twice (its limit), so
        // 2 waits; 4 fills the third slot.
        assert_eq!(partitions, vec![3, 0, 1, 4]);
    }

    #[test]
    fn moves_already_in_flight_count_against_the_limits() {
        let plan = plan(vec![target(0, &[1], &[4]), target(1, &[2], &[5])]);
        let busy = state(vec![
            Ongoing {
                topic: "x".into(),
                partition: 0,
                replicas: vec![4, 1],
                adding: vec![4],
                removing: vec![1],
            };
            2
        ]);
        let partitions: Vec<i32> = next_batch(&plan, &busy, &limits(), &HashMap::new())
            .iter()
            .map(|t| t.partition)
            .collect();
        assert_eq!(partitions, vec![1], "broker 4 and 1 are at their limit");
    }

    fn sized(partition: i32, previous: &[i32], replicas: &[i32], size: u64) -> Target {
        Target {
            size_bytes: Some(size),
            ..target(partition, previous, replicas)
        }
    }

    #[test]
    fn small_partitions_go_first_and_bytes_per_broker_stay_under_the_limit() {
        let limits = Limits {
            max_partitions_in_flight: 10,
            max_moves_per_broker: 10,
            max_bytes_in_flight_per_broker: 1000,
            ..limits()
        };
        let plan = plan(vec![
            sized(0, &[1], &[4], 900),
            sized(1, &[1], &[4], 300),
            sized(2, &[1], &[4], 600),
            sized(3, &[2], &[5], 5000),
            sized(4, &[2], &[5], 10),
        ]);
        let partitions: Vec<i32> = next_batch(&plan, &state(vec![]), &limits, &HashMap::new())
            .iter()
            .map(|t| t.partition)
            .collect();
        // Brokers 1 and 4: 300 + 600 fit, 900 more would not. Brokers 2 and 5: 10 first, and
        // 5000 waits while they copy anything (it would move alone on idle brokers).
        assert_eq!(partitions, vec![4, 1, 2]);
        let alone = plan_alone(sized(3, &[2], &[5], 5000));
        assert_eq!(
            next_batch(&alone, &state(vec![]), &limits, &HashMap::new()).len(),
            1,
            "a partition larger than the limit moves when its brokers copy nothing else"
        );
    }

    fn plan_alone(target: Target) -> Plan {
        plan(vec![target])
    }

    #[test]
    fn bytes_already_moving_count_against_the_limit() {
        let limits = Limits {
            max_partitions_in_flight: 10,
            max_moves_per_broker: 10,
            max_bytes_in_flight_per_broker: 1000,
            ..limits()
        };
        let moving = Ongoing {
            topic: "x".into(),
            partition: 0,
            replicas: vec![4, 1],
            adding: vec![4],
            removing: vec![1],
        };
        let sizes = HashMap::from([(
            TopicPartition {
                topic: "x".into(),
                partition: 0,
            },
            800,
        )]);
        let plan = plan(vec![sized(0, &[1], &[4], 300), sized(1, &[2], &[5], 300)]);
        let partitions: Vec<i32> = next_batch(&plan, &state(vec![moving]), &limits, &sizes)
            .iter()
            .map(|t| t.partition)
            .collect();
        assert_eq!(
            partitions,
            vec![1],
            "brokers 1 and 4 already copy 800 bytes"
        );
    }

    #[test]
    fn the_estimate_is_the_busiest_brokers_bytes_at_the_throttle() {
        let targets = vec![
            sized(0, &[1, 2], &[4, 2], 1000),
            sized(1, &[1, 3], &[5, 3], 500),
            target(2, &[2], &[6]),
            sized(3, &[2, 1], &[1, 2], 9999),
        ];
        let estimate = estimate(&targets, 100);
        assert_eq!(estimate.bytes_to_move, 1500);
        assert_eq!(
            estimate.busiest_broker_bytes, 1500,
            "broker 1 leads both copies"
        );
        assert_eq!(estimate.seconds, 15);
        assert_eq!(estimate.unknown_sizes, 1);
    }

    #[test]
    fn throttles_name_the_moving_replicas() {
        let moving = target(7, &[1, 2], &[4, 2]);
        let changes = throttle_changes(&[&moving], &limits());
        assert!(changes.contains(&ConfigChange {
            resource: ConfigResource::Topic("t".into()),
            name: LEADER_THROTTLED_REPLICAS.into(),
            op: ConfigOp::Append("7:1,7:2".into()),
        }));
        assert!(changes.contains(&ConfigChange {
            resource: ConfigResource::Topic("t".into()),
            name: FOLLOWER_THROTTLED_REPLICAS.into(),
            op: ConfigOp::Append("7:4".into()),
        }));
        assert!(changes.contains(&ConfigChange {
            resource: ConfigResource::AllBrokers,
            name: LEADER_THROTTLED_RATE.into(),
            op: ConfigOp::Set("1000".into()),
        }));
    }
}
