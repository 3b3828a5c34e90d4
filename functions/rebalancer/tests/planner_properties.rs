//! Property tests of the planner over random clusters: 1–200 brokers in uneven racks, RF 1–3,
//! replicas placed rack-aware (as on MSK) or anywhere (two replicas in one rack), partitions
//! already being reassigned, excluded topics, and a few clusters of up to 100,000 partitions.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use rebalancer::cluster::{Broker, ClusterDescription, Partition, TopicPartition};
use rebalancer::planner::{Options, Plan, plan};

/// A random cluster: `brokers` brokers over `racks` racks (uneven), `partitions` partitions of
/// up to 12 topics, each with `rf` replicas.
fn cluster_strategy(
    max_brokers: usize,
    max_partitions: usize,
) -> impl Strategy<Value = ClusterDescription> {
    (
        1..=max_brokers,
        1usize..=3,
        1usize..=3,
        0..=max_partitions,
        any::<u64>(),
        any::<bool>(),
        0u8..=10,
    )
        .prop_map(
            |(brokers, racks, rf, partitions, seed, rack_aware, in_flight_pct)| {
                build_cluster(
                    brokers,
                    racks.min(brokers),
                    rf.min(brokers),
                    partitions,
                    seed,
                    rack_aware,
                    in_flight_pct,
                )
            },
        )
}

/// Deterministic pseudo-random numbers (the cluster must be reproducible from the seed).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn build_cluster(
    brokers: usize,
    racks: usize,
    rf: usize,
    partitions: usize,
    seed: u64,
    rack_aware: bool,
    in_flight_pct: u8,
) -> ClusterDescription {
    let mut rng = SplitMix(seed);
    // Every rack gets at least one broker; the rest land unevenly.
    let rack_of: Vec<usize> = (0..brokers)
        .map(|b| if b < racks { b } else { rng.below(racks) })
        .collect();
    let description_brokers: Vec<Broker> = (0..brokers)
        .map(|b| Broker {
            id: b as i32 + 1,
            rack: Some(format!("az-{}", rack_of[b])),
        })
        .collect();
    // Old brokers hold the data; the newest third is empty, as after a scale-out.
    let old = (brokers - brokers / 3).max(rf);
    let mut description_partitions = Vec::new();
    let mut reassigning = Vec::new();
    for p in 0..partitions {
        let topic = format!("topic-{}", p % 12);
        let mut replicas: Vec<i32> = Vec::new();
        let mut used_racks = HashSet::new();
        while replicas.len() < rf {
            let b = rng.below(old);
            let spread_ok =
                !rack_aware || used_racks.len() >= racks || !used_racks.contains(&rack_of[b]);
            if !replicas.contains(&(b as i32 + 1)) && spread_ok {
                used_racks.insert(rack_of[b]);
                replicas.push(b as i32 + 1);
            }
        }
        if rng.below(100) < in_flight_pct as usize {
            reassigning.push(TopicPartition {
                topic: topic.clone(),
                partition: (p / 12) as i32,
            });
        }
        description_partitions.push(Partition {
            topic,
            partition: (p / 12) as i32,
            replicas,
            size_bytes: Some(1 << 20),
        });
    }
    ClusterDescription {
        brokers: description_brokers,
        partitions: description_partitions,
        reassigning,
    }
}

fn apply(cluster: &ClusterDescription, plan: &Plan) -> ClusterDescription {
    let targets: HashMap<(&str, i32), &Vec<i32>> = plan
        .targets
        .iter()
        .map(|t| ((t.topic.as_str(), t.partition), &t.replicas))
        .collect();
    let mut next = cluster.clone();
    for p in &mut next.partitions {
        if let Some(replicas) = targets.get(&(p.topic.as_str(), p.partition)) {
            p.replicas = (*replicas).clone();
        }
    }
    next
}

fn check(cluster: &ClusterDescription, options: &Options) -> Result<Plan, TestCaseError> {
    let result = plan(cluster, options);
    let rack: HashMap<i32, &str> = cluster
        .brokers
        .iter()
        .map(|b| (b.id, b.rack.as_deref().unwrap_or("")))
        .collect();
    let untouchable: HashSet<(&str, i32)> = cluster
        .reassigning
        .iter()
        .map(|tp| (tp.topic.as_str(), tp.partition))
        .collect();

    for target in &result.targets {
        let distinct: BTreeSet<_> = target.replicas.iter().collect();
        prop_assert_eq!(
            distinct.len(),
            target.replicas.len(),
            "two replicas on one broker: {:?}",
            target
        );
        let racks = |replicas: &[i32]| {
            let mut racks: Vec<&str> = replicas.iter().map(|b| rack[b]).collect();
            racks.sort_unstable();
            racks
        };
        prop_assert_eq!(
            racks(&target.previous),
            racks(&target.replicas),
            "a replica left its rack: {:?}",
            target
        );
        prop_assert!(
            !untouchable.contains(&(target.topic.as_str(), target.partition)),
            "moved a reassigning partition"
        );
        prop_assert!(!target.topic.starts_with("__amazon_msk_canary"));
    }

    let after = apply(cluster, &result);
    let mut per_broker: BTreeMap<i32, usize> = cluster.brokers.iter().map(|b| (b.id, 0)).collect();
    let mut leaders: BTreeMap<i32, usize> = per_broker.clone();
    let counted = |topic: &str| {
        !topic.starts_with("__amazon_msk_canary") && !options.excluded_topics.contains(topic)
    };
    for p in after.partitions.iter().filter(|p| counted(&p.topic)) {
        for b in &p.replicas {
            *per_broker.get_mut(b).unwrap() += 1;
        }
        *leaders.get_mut(&p.replicas[0]).unwrap() += 1;
    }
    if cluster.reassigning.is_empty() {
        prop_assert!(result.summary.replicas_balanced);
        prop_assert_eq!(
            result.summary.moves,
            result.summary.min_moves,
            "not the minimum number of moves"
        );
    } else {
        prop_assert!(result.summary.moves <= result.summary.min_moves);
    }
    if result.summary.replicas_balanced {
        let mut by_rack: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (id, count) in &per_broker {
            by_rack.entry(rack[id]).or_default().push(*count);
        }
        for (name, counts) in by_rack {
            let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
            prop_assert!(max - min <= 1, "rack {} unbalanced: {:?}", name, counts);
        }
    }
    if result.summary.leaders_balanced {
        let (min, max) = (
            leaders.values().min().unwrap(),
            leaders.values().max().unwrap(),
        );
        prop_assert!(max - min <= 1, "leaders unbalanced: {:?}", leaders);
    }

    let again = plan(&after, options);
    prop_assert!(
        again.targets.is_empty(),
        "re-planning the plan's output changes {} partitions",
        again.targets.len()
    );
    Ok(result)
}

/// Whether some choice of preferred leaders (each movable partition led by one of its replicas,
/// the others fixed) puts every broker within one leadership of every other. Exhaustive: only for
/// tiny clusters.
fn leader_balance_feasible(cluster: &ClusterDescription) -> bool {
    let ids: Vec<i32> = cluster.brokers.iter().map(|b| b.id).collect();
    let fixed: HashSet<(&str, i32)> = cluster
        .reassigning
        .iter()
        .map(|t| (t.topic.as_str(), t.partition))
        .collect();
    let choices: Vec<Vec<i32>> = cluster
        .partitions
        .iter()
        .map(|p| {
            if fixed.contains(&(p.topic.as_str(), p.partition)) {
                vec![p.replicas[0]]
            } else {
                p.replicas.clone()
            }
        })
        .collect();
    let total = choices.len();
    let (low, high) = (total / ids.len(), total.div_ceil(ids.len()));
    fn search(
        choices: &[Vec<i32>],
        counts: &mut HashMap<i32, usize>,
        high: usize,
        low: usize,
        ids: &[i32],
    ) -> bool {
        match choices.split_first() {
            None => ids
                .iter()
                .all(|id| (low..=high).contains(&counts.get(id).copied().unwrap_or(0))),
            Some((first, rest)) => first.iter().any(|&b| {
                let c = counts.entry(b).or_default();
                if *c >= high {
                    return false;
                }
                *c += 1;
                let ok = search(rest, counts, high, low, ids);
                *counts.get_mut(&b).unwrap() -= 1;
                ok
            }),
        }
    }
    search(&choices, &mut HashMap::new(), high, low, &ids)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn guarantees_hold_on_random_clusters(cluster in cluster_strategy(200, 3000)) {
        check(&cluster, &Options::default())?;
    }

    #[test]
    fn leaders_are_balanced_whenever_that_is_feasible(cluster in cluster_strategy(4, 8)) {
        let result = check(&cluster, &Options::default())?;
        // After the replica moves, balance is a question of leader choice only.
        let moved = apply(&cluster, &result);
        prop_assert_eq!(result.summary.leaders_balanced, leader_balance_feasible(&moved));
    }

    #[test]
    fn excluded_topics_are_not_touched(cluster in cluster_strategy(30, 500)) {
        let options = Options { excluded_topics: BTreeSet::from(["topic-3".to_string()]) };
        let result = check(&cluster, &options)?;
        prop_assert!(result.targets.iter().all(|t| t.topic != "topic-3"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4))]

    #[test]
    fn guarantees_hold_on_large_clusters(cluster in cluster_strategy(200, 100_000)) {
        check(&cluster, &Options::default())?;
    }
}
