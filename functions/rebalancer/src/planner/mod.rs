//! The planner: target replica lists that balance the cluster with the fewest replica moves,
//! copying the fewest bytes among those (or, in [`BytesMode::Even`], with more moves that even
//! out bytes per broker). Pure and deterministic; the executor and the offline `plan` command
//! both call [`plan`].
//!
//! **Targets** ([`targets`]). One min-cost flow decides how many replicas each broker ends with
//! and which replicas cross racks. Its cost is compared in order: the sum over brokers of
//! replicas², then moves, then bytes. The sum of squares is lowest exactly when every broker is
//! within one replica of every other, so wherever the racks allow that, the plan reaches it;
//! where they do not (every partition already in every rack, brokers per rack uneven), it
//! reaches the most even balance they allow. Either way with the fewest moves that reach it:
//! the flow's optimum is exact over the plans it describes, which are all plans in which
//! * a partition whose replicas are in distinct racks keeps them in distinct racks, as many as
//!   before, and crosses racks at most once ([`RackMode::Spread`]); with three racks or fewer
//!   (every MSK cluster) that last condition loses nothing (see [`targets`]);
//! * any other partition keeps its rack multiset, and in [`RackMode::Keep`] every partition
//!   does.
//!
//! The property tests check balance and moves against an exhaustive search on small clusters
//! (up to 5 brokers and 5 partitions in up to 3 racks).
//!
//! **Bytes.** Among those plans, the flow prices each broker's moves inside its rack at its
//! smallest movable replicas, and each group's crossings at its smallest partitions. That price
//! is exact except where a broker's smallest replica is also its group's smallest partition and
//! the flow has it both cross and move inside the rack, which no plan can (see [`targets`]).
//! Measured against exhaustive search on 20,000 small clusters placed as MSK places them (an
//! ignored test), the plan copies the fewest bytes possible in all but one; the tests that always
//! run check that it copies no fewer than the optimum and no more than the same planner blind to
//! sizes.
//!
//! The flow's price is also a lower bound, reported as `bytes_lower_bound`. With three racks or
//! fewer and every partition movable, every placement the rack mode allows that reaches the
//! flow's balance in its moves is a flow of the same network (see [`targets`]), priced at its
//! lists' smallest entries, so at no more than it copies; the flow's own price is the least of
//! those. A plan of that many moves whose bytes equal it copies the fewest possible; the
//! property tests check the bound against exhaustive search.
//!
//! **Even bytes** ([`bytes`], [`BytesMode::Even`] only). After the moves, swaps inside each
//! rack until its brokers' bytes are within its largest movable replica of each other: counts
//! and racks unchanged, up to two moves more per swap. Where that bound is guaranteed, and why,
//! is in [`bytes`].
//!
//! **Moves** ([`replicas`]). The flow's crossings first, each to the broker of its new rack
//! furthest below its target (counting every departure first, so none lands on a broker that
//! will not need it); then, inside each rack, from brokers above their target to brokers below
//! it, each source giving up its smallest replica first. When every partition is movable such a
//! move always exists: a broker below its target has a target at most one above any rack-mate's
//! (otherwise one more move inside the rack would have lowered the sum of squares, and the flow
//! would have made it), so a broker above its target holds more replicas than one below its
//! own, and a broker holds a partition at most once, so the first holds a partition the second
//! lacks. Every move lowers the excess by one, so the plan makes as many moves as the flow.
//! Replicas the planner may not touch (partitions being reassigned or on brokers missing from
//! the description; excluded topics' replicas are not counted at all) can keep a broker off its
//! target; the summary then shows it, and `min_moves` is the flow's count, which did not know
//! which partitions those replicas share with whom.
//!
//! **Per-topic spread.** Among replicas of equal size, each move takes a replica of the topic
//! where the source broker holds the most more than the emptiest destination, to the
//! destination holding least of that topic: greedy on the per-topic imbalance, which never
//! changes the number of moves.
//!
//! **Leaders.** Preferred leaders (first replicas) are balanced by reordering replica lists only —
//! no data moves — to `⌊P/B⌋` or `⌈P/B⌉` per broker across the cluster, along augmenting paths
//! (leadership handed along a chain of partitions) where no direct hand-over exists; when even
//! that cannot reach the bounds, the summary reports it. A preferred leader election applies
//! the new order.
//!
//! Planning its own output yields no moves and no reorders.
//!
//! Layout: [`index`] turns the cluster description into dense indices (brokers, racks, topics,
//! the partitions that count); [`targets`] builds and solves the [`flow`]; [`replicas`] makes
//! the moves; [`bytes`] evens bytes when asked; [`leaders`] reorders replica lists; [`summary`]
//! measures before and after and lists the targets. This module holds the public types and
//! [`plan`], which runs them in that order.

mod bytes;
mod flow;
mod index;
mod leaders;
mod replicas;
mod summary;
mod targets;

use std::collections::BTreeSet;

use serde::Serialize;

use crate::cluster::{ClusterDescription, ReassignmentJson};

/// MSK's own canary topics: never moved, never counted.
pub const ALWAYS_EXCLUDED: [&str; 2] = ["__amazon_msk_canary", "__amazon_msk_canary_state"];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Topics neither moved nor counted, besides [`ALWAYS_EXCLUDED`].
    pub excluded_topics: BTreeSet<String>,
    pub racks: RackMode,
    pub bytes: BytesMode,
}

/// Where a partition's replicas may go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RackMode {
    /// Into any rack, as long as the partition's replicas stay in distinct racks (as many as
    /// before): balances brokers across racks.
    #[default]
    Spread,
    /// Only within the racks the partition is in today, each keeping its count: for clusters
    /// whose partitions are pinned to zones on purpose.
    Keep,
}

impl std::str::FromStr for RackMode {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "spread" => Ok(RackMode::Spread),
            "keep" => Ok(RackMode::Keep),
            other => Err(format!(
                "rack mode {other:?}: expected \"spread\" or \"keep\""
            )),
        }
    }
}

/// What the plan does about bytes besides counting replicas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BytesMode {
    /// Copy the fewest bytes among the plans with the fewest moves; bytes per broker are
    /// reported, not bounded (with the fewest moves, no bound holds in general).
    #[default]
    Fewest,
    /// Then swap replicas inside each rack until its brokers' bytes are within its largest
    /// movable replica of each other: more moves, for even disks.
    Even,
}

impl std::str::FromStr for BytesMode {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "fewest" => Ok(BytesMode::Fewest),
            "even" => Ok(BytesMode::Even),
            other => Err(format!(
                "bytes mode {other:?}: expected \"fewest\" or \"even\""
            )),
        }
    }
}

/// One partition whose replica list changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    pub topic: String,
    pub partition: i32,
    pub previous: Vec<i32>,
    pub replicas: Vec<i32>,
    /// Replicas that must be copied to a new broker (zero for a pure reorder).
    pub moves: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokerSummary {
    pub id: i32,
    pub rack: String,
    pub replicas_before: usize,
    pub replicas_after: usize,
    pub leaders_before: usize,
    pub leaders_after: usize,
    /// Bytes of the replicas it holds (leaders' sizes; partitions of unknown size count 0).
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// A topic's spread: the largest, over racks, of (most − fewest) replicas of the topic on one
/// broker of the rack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicSpread {
    pub topic: String,
    pub before: u32,
    pub after: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Replica moves of the plan.
    pub moves: usize,
    /// The fewest moves that reach the most even balance the rack mode allows (computed exactly;
    /// see the module doc).
    pub min_moves: usize,
    /// Partitions whose preferred leader changes.
    pub leader_changes: usize,
    /// Bytes to copy, for partitions whose size is known.
    pub bytes_to_move: u64,
    /// The flow's price in bytes. With three racks or fewer and every partition movable, no
    /// placement the rack mode allows reaches this balance in `min_moves` moves copying fewer
    /// (see the module doc): a plan of `min_moves` moves that copies exactly this copies the
    /// fewest.
    pub bytes_lower_bound: u64,
    /// Every rack's brokers end within one replica of each other.
    pub replicas_balanced: bool,
    /// Every broker ends within one replica of every other, whatever its rack.
    pub replicas_balanced_across_racks: bool,
    /// Every rack's brokers end holding bytes within the rack's largest movable replica of each
    /// other (what [`BytesMode::Even`] reaches; reported in either mode).
    pub bytes_even: bool,
    /// Every broker ends within one preferred leadership of every other.
    pub leaders_balanced: bool,
    /// Partitions left as they are: being reassigned, or on brokers missing from the description.
    pub untouchable_partitions: usize,
    pub brokers: Vec<BrokerSummary>,
    pub topics: Vec<TopicSpread>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Sorted by topic and partition.
    pub targets: Vec<Target>,
    pub summary: Summary,
}

impl Plan {
    /// The plan as `kafka-reassign-partitions --execute` takes it.
    pub fn reassignment_json(&self) -> ReassignmentJson {
        ReassignmentJson::new(
            self.targets
                .iter()
                .map(|t| (t.topic.clone(), t.partition, t.replicas.clone())),
        )
    }
}

/// Plans the rebalance of `cluster`.
pub fn plan(cluster: &ClusterDescription, options: &Options) -> Plan {
    let mut indexed = index::Indexed::new(cluster, options);
    let before = summary::Snapshot::of(&indexed);

    let targets = targets::targets(&indexed, options.racks);
    replicas::cross_racks(
        &mut indexed.work,
        &targets.crossings,
        &targets.per_broker,
        &indexed.rack_of,
        &indexed.brokers,
    );
    for rack in 0..indexed.racks {
        let members = indexed.members_of(rack);
        replicas::balance_rack(
            &mut indexed.work,
            &members,
            &targets.per_broker,
            &indexed.brokers,
        );
        if options.bytes == BytesMode::Even {
            bytes::even_rack(&mut indexed.work, &members, indexed.brokers.len());
        }
    }
    let leaders_balanced = leaders::balance(&mut indexed.work, indexed.brokers.len());

    let after = summary::Snapshot::of(&indexed);
    let changes = summary::targets(cluster, &indexed);
    let balance = after.replica_balance(&indexed);
    Plan {
        summary: Summary {
            moves: changes.moves,
            min_moves: targets.moves,
            leader_changes: changes.leader_changes,
            bytes_to_move: changes.bytes_to_move,
            bytes_lower_bound: targets.bytes_lower_bound,
            replicas_balanced: balance.in_every_rack,
            replicas_balanced_across_racks: balance.across_racks,
            bytes_even: after.bytes_even(&indexed),
            leaders_balanced,
            untouchable_partitions: indexed.untouchable,
            brokers: summary::brokers(&indexed, &before, &after),
            topics: summary::topics(&indexed, &before, &after),
        },
        targets: changes.targets,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::cluster::{Broker, Partition, TopicPartition};

    fn cluster(racks: &[(i32, &str)], partitions: &[(&str, i32, &[i32])]) -> ClusterDescription {
        ClusterDescription {
            brokers: racks
                .iter()
                .map(|(id, rack)| Broker {
                    id: *id,
                    rack: Some((*rack).into()),
                })
                .collect(),
            partitions: partitions
                .iter()
                .map(|(topic, partition, replicas)| Partition {
                    topic: (*topic).into(),
                    partition: *partition,
                    replicas: replicas.to_vec(),
                    size_bytes: Some(100),
                })
                .collect(),
            reassigning: vec![],
        }
    }

    fn apply(cluster: &ClusterDescription, plan: &Plan) -> ClusterDescription {
        let mut next = cluster.clone();
        for target in &plan.targets {
            let p = next
                .partitions
                .iter_mut()
                .find(|p| p.topic == target.topic && p.partition == target.partition)
                .unwrap();
            p.replicas = target.replicas.clone();
        }
        next
    }

    const SIX: [(i32, &str); 6] = [(1, "a"), (2, "b"), (3, "c"), (4, "a"), (5, "b"), (6, "c")];

    #[test]
    fn scale_out_from_three_to_six_brokers() {
        let partitions: Vec<(String, i32, Vec<i32>)> = (0..12)
            .map(|p| {
                (
                    "orders".to_string(),
                    p,
                    vec![1 + p % 3, 1 + (p + 1) % 3, 1 + (p + 2) % 3],
                )
            })
            .collect();
        let refs: Vec<(&str, i32, &[i32])> = partitions
            .iter()
            .map(|(t, p, r)| (t.as_str(), *p, r.as_slice()))
            .collect();
        let before = cluster(&SIX, &refs);
        let plan = plan(&before, &Options::default());
        assert_eq!(plan.summary.moves, plan.summary.min_moves);
        assert_eq!(
            plan.summary.min_moves, 18,
            "half of each rack's 12 replicas move"
        );
        for b in &plan.summary.brokers {
            assert_eq!(b.replicas_after, 6, "{b:?}");
            assert_eq!(b.leaders_after, 2, "{b:?}");
        }
        assert!(plan.summary.replicas_balanced && plan.summary.leaders_balanced);
        let rack = |id: i32| SIX.iter().find(|b| b.0 == id).unwrap().1;
        for target in &plan.targets {
            let racks = |r: &[i32]| r.iter().map(|b| rack(*b)).collect::<BTreeSet<_>>();
            assert_eq!(
                racks(&target.previous),
                racks(&target.replicas),
                "moves stay in their rack"
            );
        }
        let again = super::plan(&apply(&before, &plan), &Options::default());
        assert!(again.targets.is_empty(), "{:?}", again.targets);
    }

    /// Nine brokers in three racks; RF-2 topics created while only racks a and b had brokers,
    /// RF-1 topics on rack b alone: rack c holds nothing.
    fn created_on_two_racks() -> ClusterDescription {
        let racks: Vec<(i32, &str)> = (1..=9)
            .map(|id| (id, ["a", "b", "c"][(id as usize - 1) % 3]))
            .collect();
        let mut partitions: Vec<(String, i32, Vec<i32>)> = Vec::new();
        for p in 0..12 {
            let pair = [(1, 2), (4, 5), (7, 8)][p as usize % 3];
            partitions.push(("pairs".into(), p, vec![pair.0, pair.1]));
            partitions.push(("singles".into(), p, vec![[2, 5, 8][p as usize % 3]]));
        }
        let refs: Vec<(&str, i32, &[i32])> = partitions
            .iter()
            .map(|(t, p, r)| (t.as_str(), *p, r.as_slice()))
            .collect();
        cluster(&racks, &refs)
    }

    #[test]
    fn brokers_balance_across_racks_with_the_fewest_moves() {
        let before = created_on_two_racks();
        let plan = plan(&before, &Options::default());
        let after: Vec<usize> = plan
            .summary
            .brokers
            .iter()
            .map(|b| b.replicas_after)
            .collect();
        assert_eq!(after, vec![4; 9], "36 replicas on 9 brokers");
        // Each rack-b broker holds 8 and must give 4 to rack c: 12 moves, none fewer possible.
        assert_eq!((plan.summary.moves, plan.summary.min_moves), (12, 12));
        assert!(plan.summary.replicas_balanced_across_racks);
        let rack = |id: i32| ["a", "b", "c"][(id as usize - 1) % 3];
        for target in &plan.targets {
            let racks: BTreeSet<&str> = target.replicas.iter().map(|&b| rack(b)).collect();
            assert_eq!(racks.len(), target.replicas.len(), "{target:?}");
        }
        let again = super::plan(&apply(&before, &plan), &Options::default());
        assert!(again.targets.is_empty(), "{:?}", again.targets);
    }

    #[test]
    fn even_bytes_swaps_what_the_fewest_moves_leave_skewed() {
        let mut before = cluster(
            &[(1, "a"), (2, "a")],
            &[
                ("big", 0, &[1]),
                ("big", 1, &[1]),
                ("small", 0, &[2]),
                ("small", 1, &[2]),
            ],
        );
        for p in &mut before.partitions {
            p.size_bytes = Some(if p.topic == "big" { 1000 } else { 10 });
        }
        let fewest = plan(&before, &Options::default());
        assert!(fewest.targets.is_empty(), "counts are already even");
        assert!(!fewest.summary.bytes_even);

        let options = Options {
            bytes: BytesMode::Even,
            ..Options::default()
        };
        let even = plan(&before, &options);
        assert_eq!(even.summary.moves, 2, "one swap");
        assert_eq!(even.summary.bytes_to_move, 1010);
        let bytes: Vec<u64> = even.summary.brokers.iter().map(|b| b.bytes_after).collect();
        assert_eq!(bytes, [1010, 1010]);
        assert!(even.summary.bytes_even && even.summary.replicas_balanced);
        let again = plan(&apply(&before, &even), &options);
        assert!(again.targets.is_empty(), "{:?}", again.targets);
    }

    /// Two brokers of one partition would each send their group's smallest partition across
    /// racks if crossings were priced per broker; priced per partition, the plan takes the
    /// second crossing from another group, and proves its bytes the fewest.
    #[test]
    fn a_group_pays_for_each_partition_it_sends_across_racks_once() {
        let mut before = cluster(
            &[(1, "a"), (2, "b"), (3, "c"), (4, "b"), (5, "c")],
            &[
                ("huge", 0, &[2, 1]),
                ("small", 0, &[4, 1]),
                ("small", 1, &[1, 2]),
            ],
        );
        for (p, size) in before.partitions.iter_mut().zip([8_388_792, 2_195, 1_375]) {
            p.size_bytes = Some(size);
        }
        let plan = plan(&before, &Options::default());
        assert_eq!(plan.summary.moves, 2);
        assert!(plan.summary.replicas_balanced_across_racks);
        assert_eq!(
            plan.summary.bytes_to_move,
            2_195 + 1_375,
            "{:?}",
            plan.targets
        );
        assert_eq!(plan.summary.bytes_lower_bound, plan.summary.bytes_to_move);
    }

    #[test]
    fn keep_mode_leaves_every_partition_in_its_racks() {
        let before = created_on_two_racks();
        let options = Options {
            racks: RackMode::Keep,
            ..Options::default()
        };
        let plan = plan(&before, &options);
        assert!(plan.targets.is_empty(), "already balanced within each rack");
        assert!(plan.summary.replicas_balanced && !plan.summary.replicas_balanced_across_racks);
        let rack_c: Vec<usize> = plan
            .summary
            .brokers
            .iter()
            .filter(|b| b.rack == "c")
            .map(|b| b.replicas_after)
            .collect();
        assert_eq!(rack_c, vec![0, 0, 0]);
    }

    #[test]
    fn ceiling_targets_go_to_the_fullest_brokers() {
        // Rack a: broker 1 holds 3, broker 4 holds 2, broker 7 holds 0 → targets 2, 2, 1.
        let brokers = [(1, "a"), (4, "a"), (7, "a")];
        let before = cluster(
            &brokers,
            &[
                ("t", 0, &[1]),
                ("t", 1, &[1]),
                ("t", 2, &[1]),
                ("t", 3, &[4]),
                ("t", 4, &[4]),
            ],
        );
        let plan = plan(&before, &Options::default());
        assert_eq!(plan.summary.min_moves, 1);
        assert_eq!(plan.summary.moves, 1);
        let after: Vec<usize> = plan
            .summary
            .brokers
            .iter()
            .map(|b| b.replicas_after)
            .collect();
        assert_eq!(after, vec![2, 2, 1]);
    }

    #[test]
    fn two_replicas_in_one_rack_still_meet_the_minimum() {
        let brokers = [(1, "a"), (2, "a"), (3, "a"), (4, "a")];
        let before = cluster(
            &brokers,
            &[
                ("t", 0, &[1, 2]),
                ("t", 1, &[1, 2]),
                ("t", 2, &[1, 2]),
                ("t", 3, &[1, 2]),
            ],
        );
        let plan = plan(&before, &Options::default());
        assert_eq!(plan.summary.moves, plan.summary.min_moves);
        assert_eq!(plan.summary.min_moves, 4);
        for target in &plan.targets {
            let distinct: BTreeSet<_> = target.replicas.iter().collect();
            assert_eq!(distinct.len(), target.replicas.len());
        }
        assert!(plan.summary.brokers.iter().all(|b| b.replicas_after == 2));
    }

    #[test]
    fn excluded_and_reassigning_partitions_are_left_alone() {
        let mut before = cluster(
            &[(1, "a"), (2, "a")],
            &[
                ("__amazon_msk_canary", 0, &[1]),
                ("t", 0, &[1]),
                ("t", 1, &[1]),
                ("busy", 0, &[1]),
            ],
        );
        before.reassigning.push(TopicPartition {
            topic: "busy".into(),
            partition: 0,
        });
        let plan = plan(&before, &Options::default());
        assert!(plan.targets.iter().all(|t| t.topic == "t"));
        assert_eq!(plan.summary.untouchable_partitions, 1);
        assert!(
            !plan
                .summary
                .topics
                .iter()
                .any(|t| t.topic.starts_with("__amazon"))
        );
        // Three counted replicas on broker 1 (busy's included): targets 2 and 1, one move.
        assert_eq!(plan.summary.moves, 1);
    }

    #[test]
    fn leaders_balance_by_reordering_only() {
        let before = cluster(
            &[(1, "a"), (2, "b"), (3, "c")],
            &[
                ("t", 0, &[1, 2, 3]),
                ("t", 1, &[1, 3, 2]),
                ("t", 2, &[1, 2, 3]),
            ],
        );
        let plan = plan(&before, &Options::default());
        assert_eq!(plan.summary.moves, 0);
        assert_eq!(plan.summary.leader_changes, 2);
        assert!(plan.summary.brokers.iter().all(|b| b.leaders_after == 1));
    }

    #[test]
    fn leadership_travels_along_a_chain_when_no_direct_hand_over_exists() {
        // Broker 1 leads two partitions it shares only with 2; 2 leads one shared with 3;
        // 3 leads nothing. Only 1 → 2 → 3 balances them.
        let before = cluster(
            &[(1, "a"), (2, "b"), (3, "c")],
            &[("t", 0, &[1, 2]), ("t", 1, &[1, 2]), ("t", 2, &[2, 3])],
        );
        let plan = plan(&before, &Options::default());
        assert!(plan.summary.leaders_balanced, "{:?}", plan.summary.brokers);
        assert!(plan.summary.brokers.iter().all(|b| b.leaders_after == 1));
    }

    #[test]
    fn moves_prefer_keeping_topics_spread() {
        // Rack a: broker 1 holds 4 of "big" and 2 of "small"; brokers 4 and 7 are new.
        let brokers = [(1, "a"), (4, "a"), (7, "a")];
        let before = cluster(
            &brokers,
            &[
                ("big", 0, &[1]),
                ("big", 1, &[1]),
                ("big", 2, &[1]),
                ("big", 3, &[1]),
                ("small", 0, &[1]),
                ("small", 1, &[1]),
            ],
        );
        let plan = plan(&before, &Options::default());
        assert_eq!(plan.summary.moves, 4);
        let spread: HashMap<&str, u32> = plan
            .summary
            .topics
            .iter()
            .map(|t| (t.topic.as_str(), t.after))
            .collect();
        assert!(spread["big"] <= 1 && spread["small"] <= 1, "{spread:?}");
    }

    #[test]
    fn reassignment_json_is_what_the_kafka_tool_reads() {
        let before = cluster(&[(1, "a"), (2, "a")], &[("t", 0, &[1]), ("t", 1, &[1])]);
        let json =
            serde_json::to_value(plan(&before, &Options::default()).reassignment_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"version": 1, "partitions": [
                {"topic": "t", "partition": 0, "replicas": [2], "log_dirs": ["any"]}
            ]})
        );
    }
}
