//! The layout `kafka-reassign-partitions --generate` proposes: Kafka's rack-aware round-robin
//! assignment (`AdminUtils.assignReplicasToBrokers`) applied to every topic from scratch. Used
//! as the baseline the planner is measured against, and to build realistic starting clusters
//! (topics created on the original brokers are laid out this way).
//!
//! Kafka starts each topic at a random broker index and replica shift; here they come from a
//! seeded generator so runs are reproducible.

use std::collections::{BTreeMap, HashSet};

use crate::cluster::Broker;

/// Kafka's rack-alternated broker order: one broker of each rack (racks by name, brokers by id)
/// in turn.
fn rack_alternated(brokers: &[Broker]) -> Vec<(i32, String)> {
    let mut by_rack: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for broker in brokers {
        by_rack
            .entry(broker.rack.clone().unwrap_or_default())
            .or_default()
            .push(broker.id);
    }
    for ids in by_rack.values_mut() {
        ids.sort_unstable();
    }
    let mut arranged = Vec::with_capacity(brokers.len());
    let mut position = 0;
    while arranged.len() < brokers.len() {
        for (rack, ids) in &by_rack {
            if let Some(id) = ids.get(position) {
                arranged.push((*id, rack.clone()));
            }
        }
        position += 1;
    }
    arranged
}

/// Replica lists for partitions `0..partitions` of one topic, as Kafka assigns them with the
/// given start index and replica shift.
pub fn assign(
    brokers: &[Broker],
    partitions: usize,
    replication: usize,
    start: usize,
    shift: usize,
) -> Vec<Vec<i32>> {
    let arranged = rack_alternated(brokers);
    let n = arranged.len();
    let racks = arranged
        .iter()
        .map(|(_, r)| r.as_str())
        .collect::<HashSet<_>>()
        .len();
    let mut next_shift = shift;
    (0..partitions)
        .map(|p| {
            if p > 0 && p % n == 0 {
                next_shift += 1;
            }
            let first = (p + start) % n;
            let mut replicas = vec![arranged[first].0];
            let mut used_racks = HashSet::from([arranged[first].1.as_str()]);
            let mut used_brokers = HashSet::from([arranged[first].0]);
            let mut k = 0;
            while replicas.len() < replication.min(n) {
                let offset = 1 + (next_shift * racks + k) % (n - 1);
                let (id, rack) = &arranged[(first + offset) % n];
                let rack_ok = !used_racks.contains(rack.as_str()) || used_racks.len() == racks;
                let broker_ok = !used_brokers.contains(id) || used_brokers.len() == n;
                if rack_ok && broker_ok {
                    replicas.push(*id);
                    used_racks.insert(rack.as_str());
                    used_brokers.insert(*id);
                }
                k += 1;
            }
            replicas
        })
        .collect()
}

/// A small deterministic generator for start indices (Kafka uses `Random`).
pub struct Seeded(u64);

impl Seeded {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// Replica moves to go from `current` to `proposed` (replicas added to a partition).
pub fn moves_between(current: &[i32], proposed: &[i32]) -> usize {
    proposed.iter().filter(|b| !current.contains(b)).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(racks: &[&str]) -> Vec<Broker> {
        racks
            .iter()
            .enumerate()
            .map(|(i, r)| Broker {
                id: i as i32 + 1,
                rack: Some((*r).into()),
            })
            .collect()
    }

    #[test]
    fn replicas_land_in_distinct_racks() {
        let six = brokers(&["a", "b", "c", "a", "b", "c"]);
        for replicas in assign(&six, 12, 3, 2, 1) {
            let racks: HashSet<_> = replicas
                .iter()
                .map(|id| six[*id as usize - 1].rack.clone())
                .collect();
            assert_eq!(racks.len(), 3, "{replicas:?}");
        }
    }

    #[test]
    fn leaders_rotate_over_the_rack_alternated_list() {
        let three = brokers(&["a", "b", "c"]);
        let layout = assign(&three, 3, 3, 0, 0);
        assert_eq!(layout, vec![vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2]]);
    }
}
