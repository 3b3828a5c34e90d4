//! The cluster description in the planner's terms: brokers sorted by id and numbered, racks and
//! topics numbered, and the partitions that count (excluded topics left out) in topic and
//! partition order, each marked movable or not.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::cluster::{ClusterDescription, TopicPartition};

use super::{ALWAYS_EXCLUDED, Options};

/// A broker as the planner sees it; its position in [`Indexed::brokers`] is its index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct IndexedBroker {
    pub id: i32,
    /// Empty when the broker has no rack.
    pub rack: String,
}

/// A partition during planning; brokers are indices into [`Indexed::brokers`].
#[derive(Debug, Clone)]
pub(super) struct Work {
    pub topic: usize,
    pub replicas: Vec<usize>,
    /// May be reordered and have replicas moved: not being reassigned, and every replica on a
    /// known broker, each once.
    pub movable: bool,
    /// The leader's log size; 0 when unknown.
    pub size: u64,
}

impl Work {
    /// Moves the replica on broker `from` to broker `to`, keeping its place in the list (and so
    /// leadership order); false when `from` holds none.
    pub fn relocate(&mut self, from: usize, to: usize) -> bool {
        match self.replicas.iter().position(|&b| b == from) {
            Some(slot) => {
                self.replicas[slot] = to;
                true
            }
            None => false,
        }
    }
}

#[derive(Debug)]
pub(super) struct Indexed<'a> {
    /// Sorted by id, one per id.
    pub brokers: Vec<IndexedBroker>,
    /// Each broker's rack, as an index below `racks`.
    pub rack_of: Vec<usize>,
    pub racks: usize,
    /// Counted topics, sorted; a [`Work::topic`] indexes this.
    pub topic_names: Vec<&'a str>,
    /// `work[i]` is `cluster.partitions[source[i]]`.
    pub source: Vec<usize>,
    pub work: Vec<Work>,
    /// Partitions that are not movable.
    pub untouchable: usize,
}

impl<'a> Indexed<'a> {
    pub fn new(cluster: &'a ClusterDescription, options: &Options) -> Self {
        let mut brokers: Vec<IndexedBroker> = cluster
            .brokers
            .iter()
            .map(|b| IndexedBroker {
                id: b.id,
                rack: b.rack.clone().unwrap_or_default(),
            })
            .collect();
        brokers.sort();
        brokers.dedup_by_key(|b| b.id);
        let index: HashMap<i32, usize> =
            brokers.iter().enumerate().map(|(i, b)| (b.id, i)).collect();
        let racks: BTreeSet<&str> = brokers.iter().map(|b| b.rack.as_str()).collect();
        let rack_of: Vec<usize> = brokers
            .iter()
            .map(|b| {
                racks
                    .iter()
                    .position(|r| *r == b.rack)
                    .expect("rack listed")
            })
            .collect();
        let rack_count = racks.len();

        let excluded = |topic: &str| {
            ALWAYS_EXCLUDED.contains(&topic) || options.excluded_topics.contains(topic)
        };
        let in_flight: HashSet<&TopicPartition> = cluster.reassigning.iter().collect();
        let mut topic_names: Vec<&str> = cluster
            .partitions
            .iter()
            .map(|p| p.topic.as_str())
            .filter(|t| !excluded(t))
            .collect();
        topic_names.sort_unstable();
        topic_names.dedup();
        let topic_index: HashMap<&str, usize> = topic_names
            .iter()
            .enumerate()
            .map(|(i, t)| (*t, i))
            .collect();

        let mut source: Vec<usize> = (0..cluster.partitions.len())
            .filter(|&i| !excluded(&cluster.partitions[i].topic))
            .collect();
        source.sort_by(|&a, &b| {
            let (pa, pb) = (&cluster.partitions[a], &cluster.partitions[b]);
            (&pa.topic, pa.partition).cmp(&(&pb.topic, pb.partition))
        });
        let mut untouchable = 0;
        let work: Vec<Work> = source
            .iter()
            .map(|&i| {
                let p = &cluster.partitions[i];
                let known: Vec<usize> = p
                    .replicas
                    .iter()
                    .filter_map(|id| index.get(id).copied())
                    .collect();
                let distinct = known.iter().collect::<HashSet<_>>().len() == known.len();
                let reassigning = in_flight.contains(&TopicPartition {
                    topic: p.topic.clone(),
                    partition: p.partition,
                });
                let movable = !reassigning && distinct && known.len() == p.replicas.len();
                if !movable {
                    untouchable += 1;
                }
                Work {
                    topic: topic_index[p.topic.as_str()],
                    replicas: known,
                    movable,
                    size: p.size_bytes.unwrap_or(0),
                }
            })
            .collect();

        Self {
            brokers,
            rack_of,
            racks: rack_count,
            topic_names,
            source,
            work,
            untouchable,
        }
    }

    /// The brokers of `rack`, by index.
    pub fn members_of(&self, rack: usize) -> Vec<usize> {
        (0..self.brokers.len())
            .filter(|&b| self.rack_of[b] == rack)
            .collect()
    }
}
