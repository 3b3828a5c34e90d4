//! Planner benchmark (`make bench`). Four tables, every baseline computed for the same cluster
//! in the same run:
//!
//! 1. **Scale-out**: 10,000 and 100,000 partitions × RF 3 on 30 brokers in 3 racks, after
//!    scale-outs from 27 and from 15 brokers, partition sizes heavy-tailed (log-uniform from
//!    1 MiB to 32 GiB: most small, a few huge). Prints the planning time, the plan's moves
//!    against the exact minimum, and the bytes the plan copies against its own lower bound (no
//!    plan with those moves copies less) and two baselines: the layout
//!    `kafka-reassign-partitions --generate` proposes (Kafka's rack-aware round robin over all
//!    30 brokers) and the same planner blind to sizes (same moves, replicas picked without
//!    regard to size).
//! 2. **Cross-rack skew**: 9 brokers in 3 racks holding RF 1 and RF 2 topics created while
//!    only some brokers existed, planned keeping every partition's racks (`keep`, the previous
//!    behaviour) and balancing across racks (`spread`): replicas per broker afterwards, moves,
//!    bytes.
//! 3. **RF 2 at scale**: 100,000 partitions on 150 brokers after a scale-out from 120, in both
//!    rack modes: the planner's largest network.
//! 4. **Even bytes**: the scale-out cluster and one whose counts are already even (topics made
//!    on all 30 brokers), planned copying the fewest bytes (`fewest`, the default) and evening
//!    bytes per broker (`even`): moves, bytes copied, and the spread of bytes per broker
//!    afterwards against the largest partition (the bound `even` reaches).

use std::time::{Duration, Instant};

use devstack::testkit;
use rebalancer::cluster::{Broker, ClusterDescription, Partition};
use rebalancer::kafka_layout::{Seeded, assign, moves_between};
use rebalancer::planner::{BytesMode, Options, Plan, RackMode, plan};

const RACKS: [&str; 3] = ["az-a", "az-b", "az-c"];
const PARTITIONS_PER_TOPIC: usize = 50;
const MIB: u64 = 1 << 20;

fn brokers(count: usize) -> Vec<Broker> {
    (0..count)
        .map(|i| Broker {
            id: i as i32 + 1,
            rack: Some(RACKS[i % 3].to_string()),
        })
        .collect()
}

/// Log-uniform from 1 MiB to 32 GiB.
fn heavy_tailed(random: &mut Seeded) -> u64 {
    (MIB << random.below(16)) + random.below(1 << 20) as u64
}

/// Topics created on `on` (laid out as Kafka does), in a cluster of `all` brokers.
fn topics(
    on: &[Broker],
    topics: usize,
    rf: usize,
    prefix: &str,
    random: &mut Seeded,
) -> Vec<Partition> {
    let mut described = Vec::new();
    for topic in 0..topics {
        let (start, shift) = (random.below(on.len()), random.below(on.len()));
        for (partition, replicas) in assign(on, PARTITIONS_PER_TOPIC, rf, start, shift)
            .into_iter()
            .enumerate()
        {
            described.push(Partition {
                topic: format!("{prefix}-{topic:04}"),
                partition: partition as i32,
                replicas,
                size_bytes: Some(heavy_tailed(random)),
            });
        }
    }
    described
}

fn scaled_out(partitions: usize, before: usize, after: usize) -> ClusterDescription {
    let mut random = Seeded::new(7);
    ClusterDescription {
        brokers: brokers(after),
        partitions: topics(
            &brokers(before),
            partitions / PARTITIONS_PER_TOPIC,
            3,
            "topic",
            &mut random,
        ),
        reassigning: vec![],
    }
}

/// Moves and bytes of `kafka-reassign-partitions --generate` for every topic (random start per
/// topic).
fn generate_baseline(cluster: &ClusterDescription) -> (usize, u64) {
    let mut random = Seeded::new(11);
    let (mut moves, mut bytes) = (0, 0);
    for chunk in cluster.partitions.chunks(PARTITIONS_PER_TOPIC) {
        let n = cluster.brokers.len();
        let rf = chunk[0].replicas.len();
        let proposed = assign(
            &cluster.brokers,
            chunk.len(),
            rf,
            random.below(n),
            random.below(n),
        );
        for (p, new) in chunk.iter().zip(&proposed) {
            let moved = moves_between(&p.replicas, new);
            moves += moved;
            bytes += moved as u64 * p.size_bytes.unwrap_or(0);
        }
    }
    (moves, bytes)
}

/// The bytes `plan` copies at `cluster`'s sizes (a size-blind plan reports none).
fn bytes_copied(cluster: &ClusterDescription, plan: &Plan) -> u64 {
    let size: std::collections::HashMap<(&str, i32), u64> = cluster
        .partitions
        .iter()
        .map(|p| ((p.topic.as_str(), p.partition), p.size_bytes.unwrap_or(0)))
        .collect();
    plan.targets
        .iter()
        .map(|t| t.moves as u64 * size[&(t.topic.as_str(), t.partition)])
        .sum()
}

/// The median time of `runs` plans of `cluster`, and the plan.
fn timed(runs: usize, cluster: &ClusterDescription, options: &Options) -> (Duration, Plan) {
    let times: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(plan(cluster, options));
            started.elapsed()
        })
        .collect();
    (testkit::median(times), plan(cluster, options))
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

fn scale_out_table() {
    println!(
        "scale-out on 30 brokers (3 racks), RF 3, heavy-tailed sizes; time = median of 5 runs"
    );
    println!(
        "{:<10} {:>10} {:>9} {:>8} {:>8} {:>9} {:>11} {:>11} {:>11} {:>11} {:>9} {:>10}",
        "scale-out",
        "partitions",
        "time",
        "M_plan",
        "M_min",
        "M_gen",
        "bound GiB",
        "plan GiB",
        "blind GiB",
        "gen GiB",
        "blind/plan",
        "gen/plan"
    );
    for partitions in [10_000, 100_000] {
        for before in [27, 15] {
            let cluster = scaled_out(partitions, before, 30);
            let (time, result) = timed(5, &cluster, &Options::default());
            let mut blind_cluster = cluster.clone();
            for p in &mut blind_cluster.partitions {
                p.size_bytes = None;
            }
            let blind = plan(&blind_cluster, &Options::default());
            let (generate_moves, generate_bytes) = generate_baseline(&cluster);
            let summary = &result.summary;
            let (planned, blind_bytes) = (summary.bytes_to_move, bytes_copied(&cluster, &blind));
            println!(
                "{:<10} {:>10} {:>7.1}ms {:>8} {:>8} {:>9} {:>11.1} {:>11.1} {:>11.1} {:>11.1} {:>9.2}x {:>9.2}x",
                format!("{before} -> 30"),
                partitions,
                time.as_secs_f64() * 1000.0,
                summary.moves,
                summary.min_moves,
                generate_moves,
                gib(summary.bytes_lower_bound),
                gib(planned),
                gib(blind_bytes),
                gib(generate_bytes),
                blind_bytes as f64 / planned.max(1) as f64,
                generate_bytes as f64 / planned.max(1) as f64,
            );
            assert!(summary.replicas_balanced_across_racks && summary.leaders_balanced);
            assert_eq!(blind.summary.moves, summary.moves);
        }
    }
}

/// Nine brokers; RF 2 topics created while only the `az-a` and `az-b` brokers existed, RF 1
/// topics while only `az-b`'s did.
fn skewed() -> ClusterDescription {
    let all = brokers(9);
    let in_racks = |racks: &[&str]| -> Vec<Broker> {
        all.iter()
            .filter(|b| racks.contains(&b.rack.as_deref().unwrap_or("")))
            .cloned()
            .collect()
    };
    let mut random = Seeded::new(3);
    let mut partitions = topics(&in_racks(&["az-a", "az-b"]), 20, 2, "pair", &mut random);
    partitions.extend(topics(&in_racks(&["az-b"]), 10, 1, "single", &mut random));
    partitions.extend(topics(&all, 10, 3, "triple", &mut random));
    ClusterDescription {
        brokers: all,
        partitions,
        reassigning: vec![],
    }
}

fn skew_table() {
    let cluster = skewed();
    println!();
    println!(
        "cross-rack skew: 9 brokers (3 racks), {} partitions of RF 1, 2 and 3",
        cluster.partitions.len()
    );
    println!(
        "{:<8} {:>9} {:>7} {:>9} {:>10} {:>26}",
        "racks", "time", "moves", "GiB", "balanced", "replicas per broker after"
    );
    for (name, mode) in [("keep", RackMode::Keep), ("spread", RackMode::Spread)] {
        let options = Options {
            racks: mode,
            ..Options::default()
        };
        let (time, result) = timed(5, &cluster, &options);
        let counts: Vec<String> = result
            .summary
            .brokers
            .iter()
            .map(|b| b.replicas_after.to_string())
            .collect();
        println!(
            "{:<8} {:>7.1}ms {:>7} {:>9.1} {:>10} {:>26}",
            name,
            time.as_secs_f64() * 1000.0,
            result.summary.moves,
            gib(result.summary.bytes_to_move),
            result.summary.replicas_balanced_across_racks,
            counts.join(" ")
        );
    }
    let before: Vec<String> = plan(&cluster, &Options::default())
        .summary
        .brokers
        .iter()
        .map(|b| b.replicas_before.to_string())
        .collect();
    println!("{:<8} {:>47}", "before", before.join(" "));
}

/// RF 2 on 150 brokers after a scale-out from 120, planned in both modes: in `spread` every
/// pair of brokers in distinct racks is a group of the flow, the planner's largest network.
fn rf2_table() {
    println!();
    println!("RF 2 at scale: 100,000 partitions, 120 -> 150 brokers (3 racks); one run each");
    println!(
        "{:<8} {:>9} {:>8} {:>8} {:>9} {:>9} {:>10}",
        "racks", "time", "M_plan", "M_min", "bound GiB", "GiB", "balanced"
    );
    let mut random = Seeded::new(5);
    let cluster = ClusterDescription {
        brokers: brokers(150),
        partitions: topics(&brokers(120), 2000, 2, "pair", &mut random),
        reassigning: vec![],
    };
    for (name, mode) in [("keep", RackMode::Keep), ("spread", RackMode::Spread)] {
        let options = Options {
            racks: mode,
            ..Options::default()
        };
        let (time, result) = timed(1, &cluster, &options);
        println!(
            "{:<8} {:>7.1}ms {:>8} {:>8} {:>9.1} {:>9.1} {:>10}",
            name,
            time.as_secs_f64() * 1000.0,
            result.summary.moves,
            result.summary.min_moves,
            gib(result.summary.bytes_lower_bound),
            gib(result.summary.bytes_to_move),
            result.summary.replicas_balanced_across_racks
        );
    }
}

fn bytes_table() {
    println!();
    println!(
        "bytes per broker: 30 brokers (3 racks), RF 3, heavy-tailed sizes; time = median of 3"
    );
    println!(
        "{:<12} {:>10} {:<7} {:>9} {:>8} {:>10} {:>13} {:>13} {:>12} {:>6}",
        "cluster",
        "partitions",
        "bytes",
        "time",
        "moves",
        "GiB moved",
        "spread before",
        "spread after",
        "largest GiB",
        "even"
    );
    for partitions in [10_000, 100_000] {
        for before in [15, 30] {
            let cluster = scaled_out(partitions, before, 30);
            let largest = cluster
                .partitions
                .iter()
                .filter_map(|p| p.size_bytes)
                .max()
                .unwrap_or(0);
            for (name, bytes) in [("fewest", BytesMode::Fewest), ("even", BytesMode::Even)] {
                let options = Options {
                    bytes,
                    ..Options::default()
                };
                let (time, result) = timed(3, &cluster, &options);
                let summary = &result.summary;
                // The most minus the fewest bytes on one broker.
                let spread = |held: &dyn Fn(&rebalancer::planner::BrokerSummary) -> u64| {
                    let values = summary.brokers.iter().map(held);
                    values.clone().max().unwrap_or(0) - values.min().unwrap_or(0)
                };
                println!(
                    "{:<12} {:>10} {:<7} {:>7.1}ms {:>8} {:>10.1} {:>13.1} {:>13.1} {:>12.1} {:>6}",
                    format!("{before} -> 30"),
                    partitions,
                    name,
                    time.as_secs_f64() * 1000.0,
                    summary.moves,
                    gib(summary.bytes_to_move),
                    gib(spread(&|b| b.bytes_before)),
                    gib(spread(&|b| b.bytes_after)),
                    gib(largest),
                    summary.bytes_even,
                );
                assert!(summary.replicas_balanced_across_racks);
            }
        }
    }
}

fn main() {
    scale_out_table();
    skew_table();
    rf2_table();
    bytes_table();
}
