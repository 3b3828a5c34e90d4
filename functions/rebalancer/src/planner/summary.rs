//! What a plan changes, measured: per-broker replica and leader counts and per-topic spread
//! before and after, and the targets (partitions whose replica list changes) with their moves
//! and bytes.

use std::collections::HashMap;

use crate::cluster::ClusterDescription;

use super::index::{Indexed, Work};
use super::{BrokerSummary, Target, TopicSpread};

/// Counts taken at one point of planning.
pub(super) struct Snapshot {
    /// Replicas per broker index.
    replicas: Vec<usize>,
    /// Preferred leaderships per broker index.
    leaders: Vec<usize>,
    /// Spread per topic index (see [`TopicSpread`]).
    spreads: Vec<u32>,
    /// Bytes held per broker index.
    bytes: Vec<u64>,
}

/// Whether replica counts are within one of each other.
pub(super) struct Balance {
    pub in_every_rack: bool,
    pub across_racks: bool,
}

impl Snapshot {
    pub fn of(indexed: &Indexed) -> Self {
        let brokers = indexed.brokers.len();
        let mut bytes = vec![0u64; brokers];
        for w in &indexed.work {
            for &b in &w.replicas {
                bytes[b] += w.size;
            }
        }
        Self {
            replicas: replica_counts(&indexed.work, brokers),
            leaders: leader_counts(&indexed.work, brokers),
            spreads: topic_spreads(indexed),
            bytes,
        }
    }

    pub fn replica_balance(&self, indexed: &Indexed) -> Balance {
        let within_one = |(low, high): (usize, usize)| high <= low.saturating_add(1);
        Balance {
            in_every_rack: (0..indexed.racks)
                .all(|rack| within_one(range_in_rack(&self.replicas, indexed, rack))),
            across_racks: within_one(range(self.replicas.iter().copied())),
        }
    }

    /// Whether every rack's brokers hold bytes within the rack's largest movable replica of each
    /// other (the bound [`BytesMode::Even`](super::BytesMode::Even) reaches).
    pub fn bytes_even(&self, indexed: &Indexed) -> bool {
        let mut largest = vec![0u64; indexed.racks];
        for w in indexed.work.iter().filter(|w| w.movable) {
            for &b in &w.replicas {
                let rack = indexed.rack_of[b];
                largest[rack] = largest[rack].max(w.size);
            }
        }
        (0..indexed.racks).all(|rack| {
            let (low, high) = range_in_rack(&self.bytes, indexed, rack);
            high.saturating_sub(low) <= largest[rack]
        })
    }
}

/// The lowest and highest of `values`.
fn range<T: Ord + Copy + Default>(values: impl Iterator<Item = T>) -> (T, T) {
    values
        .fold(None, |seen: Option<(T, T)>, v| {
            Some(seen.map_or((v, v), |(low, high)| (low.min(v), high.max(v))))
        })
        .unwrap_or_default()
}

/// The lowest and highest of a per-broker figure among `rack`'s brokers.
fn range_in_rack<T: Ord + Copy + Default>(
    per_broker: &[T],
    indexed: &Indexed,
    rack: usize,
) -> (T, T) {
    range(
        (0..per_broker.len())
            .filter(|&b| indexed.rack_of[b] == rack)
            .map(|b| per_broker[b]),
    )
}

/// The partitions whose replica list changes, and the totals over them.
pub(super) struct Changes {
    pub targets: Vec<Target>,
    pub moves: usize,
    pub leader_changes: usize,
    pub bytes_to_move: u64,
}

/// Compares each movable partition's planned replicas with `cluster`'s.
pub(super) fn targets(cluster: &ClusterDescription, indexed: &Indexed) -> Changes {
    let mut changes = Changes {
        targets: Vec::new(),
        moves: 0,
        leader_changes: 0,
        bytes_to_move: 0,
    };
    for (w, &i) in indexed.work.iter().zip(&indexed.source) {
        let original = &cluster.partitions[i];
        let replicas: Vec<i32> = w.replicas.iter().map(|&b| indexed.brokers[b].id).collect();
        if !w.movable || replicas == original.replicas {
            continue;
        }
        let added = replicas
            .iter()
            .filter(|r| !original.replicas.contains(r))
            .count();
        changes.moves += added;
        if replicas.first() != original.replicas.first() {
            changes.leader_changes += 1;
        }
        changes.bytes_to_move += original.size_bytes.unwrap_or(0) * added as u64;
        changes.targets.push(Target {
            topic: original.topic.clone(),
            partition: original.partition,
            previous: original.replicas.clone(),
            replicas,
            moves: added,
            size_bytes: original.size_bytes,
        });
    }
    changes
}

pub(super) fn brokers(
    indexed: &Indexed,
    before: &Snapshot,
    after: &Snapshot,
) -> Vec<BrokerSummary> {
    indexed
        .brokers
        .iter()
        .enumerate()
        .map(|(b, broker)| BrokerSummary {
            id: broker.id,
            rack: broker.rack.clone(),
            replicas_before: before.replicas[b],
            replicas_after: after.replicas[b],
            leaders_before: before.leaders[b],
            leaders_after: after.leaders[b],
            bytes_before: before.bytes[b],
            bytes_after: after.bytes[b],
        })
        .collect()
}

pub(super) fn topics(indexed: &Indexed, before: &Snapshot, after: &Snapshot) -> Vec<TopicSpread> {
    indexed
        .topic_names
        .iter()
        .enumerate()
        .map(|(t, name)| TopicSpread {
            topic: (*name).to_string(),
            before: before.spreads[t],
            after: after.spreads[t],
        })
        .collect()
}

pub(super) fn replica_counts(work: &[Work], brokers: usize) -> Vec<usize> {
    let mut counts = vec![0; brokers];
    for w in work {
        for &b in &w.replicas {
            counts[b] += 1;
        }
    }
    counts
}

pub(super) fn leader_counts(work: &[Work], brokers: usize) -> Vec<usize> {
    let mut counts = vec![0; brokers];
    for w in work {
        if let Some(&leader) = w.replicas.first() {
            counts[leader] += 1;
        }
    }
    counts
}

fn topic_spreads(indexed: &Indexed) -> Vec<u32> {
    let rack_of = &indexed.rack_of;
    let brokers = rack_of.len();
    let mut per_topic: Vec<HashMap<usize, u32>> = vec![HashMap::new(); indexed.topic_names.len()];
    for w in &indexed.work {
        for &b in &w.replicas {
            *per_topic[w.topic].entry(b).or_default() += 1;
        }
    }
    per_topic
        .iter()
        .map(|counts| {
            (0..indexed.racks)
                .map(|rack| {
                    let in_rack = (0..brokers).filter(|&b| rack_of[b] == rack);
                    let values: Vec<u32> = in_rack
                        .map(|b| counts.get(&b).copied().unwrap_or(0))
                        .collect();
                    if values.iter().all(|v| *v == 0) {
                        return 0;
                    }
                    values.iter().max().unwrap_or(&0) - values.iter().min().unwrap_or(&0)
                })
                .max()
                .unwrap_or(0)
        })
        .collect()
}
