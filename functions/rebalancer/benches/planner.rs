//! Planner benchmark (`make bench`): for 10,000 and 100,000 partitions × RF 3 on 30 brokers in
//! 3 racks, after scale-outs from 27 and from 15 brokers, prints the planning time, the plan's
//! moves against the theoretical minimum, and the moves the named baseline needs — the layout
//! `kafka-reassign-partitions --generate` proposes (Kafka's rack-aware round robin over all 30
//! brokers), computed for the same cluster in the same run.

use std::time::{Duration, Instant};

use devstack::testkit;
use rebalancer::cluster::{Broker, ClusterDescription, Partition};
use rebalancer::kafka_layout::{Seeded, assign, moves_between};
use rebalancer::planner::{Options, plan};

const RACKS: [&str; 3] = ["az-a", "az-b", "az-c"];
const PARTITIONS_PER_TOPIC: usize = 50;

fn brokers(count: usize) -> Vec<Broker> {
    (0..count)
        .map(|i| Broker {
            id: i as i32 + 1,
            rack: Some(RACKS[i % 3].to_string()),
        })
        .collect()
}

/// Topics created on the first `before` brokers (laid out as Kafka does), then the cluster grown
/// to `after` brokers.
fn scaled_out(partitions: usize, before: usize, after: usize) -> ClusterDescription {
    let original = brokers(before);
    let mut random = Seeded::new(7);
    let mut described = Vec::with_capacity(partitions);
    for topic in 0..partitions / PARTITIONS_PER_TOPIC {
        let start = random.below(before);
        let shift = random.below(before);
        for (partition, replicas) in assign(&original, PARTITIONS_PER_TOPIC, 3, start, shift)
            .into_iter()
            .enumerate()
        {
            described.push(Partition {
                topic: format!("topic-{topic:04}"),
                partition: partition as i32,
                replicas,
                size_bytes: Some(((topic * 7919 + partition * 104_729) % 1000) as u64 * 1_048_576),
            });
        }
    }
    ClusterDescription {
        brokers: brokers(after),
        partitions: described,
        reassigning: vec![],
    }
}

/// Moves of `kafka-reassign-partitions --generate` for every topic (random start per topic).
fn generate_moves(cluster: &ClusterDescription) -> usize {
    let mut random = Seeded::new(11);
    let mut moves = 0;
    for chunk in cluster.partitions.chunks(PARTITIONS_PER_TOPIC) {
        let n = cluster.brokers.len();
        let proposed = assign(
            &cluster.brokers,
            chunk.len(),
            3,
            random.below(n),
            random.below(n),
        );
        moves += chunk
            .iter()
            .zip(&proposed)
            .map(|(p, new)| moves_between(&p.replicas, new))
            .sum::<usize>();
    }
    moves
}

fn main() {
    println!("planner on 30 brokers (3 racks), RF 3; time = median of 5 runs");
    println!(
        "{:<12} {:>11} {:>11} {:>9} {:>9} {:>8} {:>16} {:>14}",
        "scale-out",
        "partitions",
        "plan time",
        "M_plan",
        "M_min",
        "ratio",
        "--generate moves",
        "generate/plan"
    );
    for partitions in [10_000, 100_000] {
        for before in [27, 15] {
            let cluster = scaled_out(partitions, before, 30);
            let times: Vec<Duration> = (0..5)
                .map(|_| {
                    let started = Instant::now();
                    std::hint::black_box(plan(&cluster, &Options::default()));
                    started.elapsed()
                })
                .collect();
            let result = plan(&cluster, &Options::default());
            let baseline = generate_moves(&cluster);
            let summary = &result.summary;
            println!(
                "{:<12} {:>11} {:>9.1}ms {:>9} {:>9} {:>8.3} {:>16} {:>13.1}x",
                format!("{before} -> 30"),
                partitions,
                testkit::median(times).as_secs_f64() * 1000.0,
                summary.moves,
                summary.min_moves,
                summary.moves as f64 / summary.min_moves.max(1) as f64,
                baseline,
                baseline as f64 / summary.moves.max(1) as f64
            );
            assert!(summary.replicas_balanced && summary.leaders_balanced);
        }
    }
}
