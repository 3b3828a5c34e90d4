//! The cluster description the planner works on, also the offline file format
//! (`rebalancer describe` writes it, `rebalancer plan` reads it):
//!
//! ```json
//! {
//!   "brokers": [{"id": 1, "rack": "az-a"}, {"id": 4, "rack": "az-a"}],
//!   "partitions": [{"topic": "orders", "partition": 0, "replicas": [1, 2, 3], "size_bytes": 1048576}],
//!   "reassigning": [{"topic": "payments", "partition": 7}]
//! }
//! ```
//!
//! `replicas` is ordered, the first being the preferred leader; `size_bytes` and `reassigning`
//! are optional. `reassigning` lists partitions already being moved: they are left alone.
//!
//! Also the live view the admin client reads ([`ClusterState`]: replicas with ISR and leaders,
//! reassignments in progress), which becomes a description for the planner.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Broker {
    pub id: i32,
    /// The broker's `broker.rack` (the AZ on MSK); brokers without one share a rack.
    #[serde(default)]
    pub rack: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterDescription {
    pub brokers: Vec<Broker>,
    pub partitions: Vec<Partition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reassigning: Vec<TopicPartition>,
}

/// One partition's new replica list, as `kafka-reassign-partitions` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReassignmentEntry {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub log_dirs: Vec<String>,
}

/// The `--reassignment-json-file` document of `kafka-reassign-partitions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReassignmentJson {
    pub version: u32,
    pub partitions: Vec<ReassignmentEntry>,
}

impl ReassignmentJson {
    pub fn new(targets: impl IntoIterator<Item = (String, i32, Vec<i32>)>) -> Self {
        Self {
            version: 1,
            partitions: targets
                .into_iter()
                .map(|(topic, partition, replicas)| ReassignmentEntry {
                    log_dirs: vec!["any".to_string(); replicas.len()],
                    topic,
                    partition,
                    replicas,
                })
                .collect(),
        }
    }
}

/// A partition as the cluster reports it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub leader: i32,
}

/// A reassignment in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ongoing {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

/// Brokers and partitions (with ISR and leaders) and the reassignments in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterState {
    pub brokers: Vec<Broker>,
    /// The controller brokers name in metadata (on KRaft, a broker standing in for the quorum;
    /// `AdminClient::metadata_quorum` names the active controller).
    pub controller: Option<i32>,
    pub partitions: Vec<PartitionState>,
    pub ongoing: Vec<Ongoing>,
}

impl ClusterState {
    /// The planner's view: partitions being reassigned counted with their final replicas.
    pub fn description(&self) -> ClusterDescription {
        self.sized_description(&HashMap::new())
    }

    /// As [`Self::description`], with the partition sizes known (`size_bytes`).
    pub fn sized_description(&self, sizes: &HashMap<TopicPartition, u64>) -> ClusterDescription {
        let ongoing: HashMap<(&str, i32), &Ongoing> = self
            .ongoing
            .iter()
            .map(|o| ((o.topic.as_str(), o.partition), o))
            .collect();
        ClusterDescription {
            brokers: self.brokers.clone(),
            partitions: self
                .partitions
                .iter()
                .map(|p| {
                    let replicas = match ongoing.get(&(p.topic.as_str(), p.partition)) {
                        Some(o) => o
                            .replicas
                            .iter()
                            .copied()
                            .filter(|r| !o.removing.contains(r))
                            .collect(),
                        None => p.replicas.clone(),
                    };
                    Partition {
                        topic: p.topic.clone(),
                        partition: p.partition,
                        replicas,
                        size_bytes: sizes
                            .get(&TopicPartition {
                                topic: p.topic.clone(),
                                partition: p.partition,
                            })
                            .copied(),
                    }
                })
                .collect(),
            reassigning: self
                .ongoing
                .iter()
                .map(|o| TopicPartition {
                    topic: o.topic.clone(),
                    partition: o.partition,
                })
                .collect(),
        }
    }

    /// Partitions whose in-sync replicas are fewer than their replicas, leaving aside those
    /// being reassigned (their new replicas are catching up by design).
    pub fn under_replicated(&self) -> Vec<TopicPartition> {
        let moving: HashSet<(&str, i32)> = self
            .ongoing
            .iter()
            .map(|o| (o.topic.as_str(), o.partition))
            .collect();
        self.partitions
            .iter()
            .filter(|p| {
                p.isr.len() < p.replicas.len() && !moving.contains(&(p.topic.as_str(), p.partition))
            })
            .map(|p| TopicPartition {
                topic: p.topic.clone(),
                partition: p.partition,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_counts_reassigning_partitions_with_their_final_replicas() {
        let state = ClusterState {
            brokers: vec![],
            controller: None,
            partitions: vec![PartitionState {
                topic: "t".into(),
                partition: 0,
                replicas: vec![1, 2, 4],
                isr: vec![1, 2],
                leader: 1,
            }],
            ongoing: vec![Ongoing {
                topic: "t".into(),
                partition: 0,
                replicas: vec![1, 2, 4],
                adding: vec![4],
                removing: vec![2],
            }],
        };
        let description = state.description();
        assert_eq!(description.partitions[0].replicas, vec![1, 4]);
        assert_eq!(description.reassigning.len(), 1);
        assert!(
            state.under_replicated().is_empty(),
            "catching-up replicas of a move are expected"
        );
    }
}
