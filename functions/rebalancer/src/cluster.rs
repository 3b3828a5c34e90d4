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
