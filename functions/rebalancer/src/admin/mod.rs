//! A small Kafka admin client over the `kafka-protocol` codec (rdkafka has no reassignment API):
//! Metadata, ListPartitionReassignments, AlterPartitionReassignments, IncrementalAlterConfigs,
//! DescribeConfigs, ElectLeaders and DescribeQuorum, on one connection to any broker (KRaft
//! brokers forward controller requests); DescribeLogDirs on a connection to each broker in turn
//! (a broker describes only its own disks). `standbyctl cluster` reads the cluster's health with
//! it.
//!
//! Layout: [`connection`] is the wire (TLS, SASL/OAUTHBEARER with an MSK IAM token, framing,
//! version negotiation); this module holds the typed operations, with the protocol's codes
//! named ([`ResponseError`] for error codes, [`codes`] for the enumerations the requests carry).
//! What the operations read is [`crate::cluster::ClusterState`].

mod codes;
mod connection;

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::error::{ParseResponseErrorCode, ResponseError};
use kafka_protocol::messages::DescribeLogDirsRequest;
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, DescribeConfigsRequest, DescribeQuorumRequest,
    ElectLeadersRequest, IncrementalAlterConfigsRequest, ListPartitionReassignmentsRequest,
    MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

pub use connection::{Transport, oauthbearer_initial_response};

use crate::cluster::{Broker, ClusterState, Ongoing, PartitionState, TopicPartition};
use codes::{AlterConfigOp, ConfigSource, ElectionType, ResourceType};
use connection::Connection;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot reach any bootstrap server ({servers}): {reason}")]
    Connect { servers: String, reason: String },
    #[error("talking to {broker}: {source}")]
    Io {
        broker: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{api}: {reason}")]
    Protocol { api: &'static str, reason: String },
    #[error("{api} failed with {}{}", describe_code(error.code()), message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    Kafka {
        api: &'static str,
        error: ResponseError,
        message: Option<String>,
    },
    #[error("the broker does not support {api} (needs version {min}..{max})")]
    Unsupported {
        api: &'static str,
        min: i16,
        max: i16,
    },
    #[error("SASL authentication failed: {0}")]
    Authentication(String),
}

/// A Kafka error code as operators search for it: the protocol's name and the number.
fn describe_code(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        Some(ResponseError::Unknown(_)) | None => format!("Kafka error code {code}"),
        Some(error) => format!("{error:?} (Kafka error code {code})"),
    }
}

/// Fails with the named error when `code` is not 0.
fn check(api: &'static str, code: i16, message: Option<&StrBytes>) -> Result<(), AdminError> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(error) => Err(AdminError::Kafka {
            api,
            error,
            message: message.map(|m| m.to_string()),
        }),
    }
}

/// A partition Kafka refused to act on, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub partition: TopicPartition,
    pub reason: String,
}

impl Refusal {
    fn new(topic: &str, partition: i32, code: i16, message: Option<&StrBytes>) -> Self {
        Self {
            partition: TopicPartition {
                topic: topic.to_string(),
                partition,
            },
            reason: format!(
                "{}{}",
                describe_code(code),
                message.map(|m| format!(": {m}")).unwrap_or_default()
            ),
        }
    }
}

/// A partition's new replica list, for AlterPartitionReassignments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassignment {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
}

/// A config change for IncrementalAlterConfigs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    pub resource: ConfigResource,
    pub name: String,
    pub op: ConfigOp,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConfigResource {
    Topic(String),
    /// The cluster-wide default of dynamic broker configs. (A single broker's own configs can
    /// only be changed through a connection to that broker.)
    AllBrokers,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOp {
    Set(String),
    Delete,
    /// Adds list entries (comma-separated value) to a list config.
    Append(String),
}

/// The KRaft metadata quorum: who leads it (the active controller), and how far each voter is
/// behind the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quorum {
    pub leader: i32,
    pub voters: Vec<Voter>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    pub id: i32,
    /// Records of the metadata log the leader has and this voter does not.
    pub lag: i64,
    /// Milliseconds since the voter last caught up with the leader, when the leader knows.
    pub caught_up_ms_ago: Option<i64>,
}

/// The metadata log: the one partition DescribeQuorum describes.
const METADATA_TOPIC: &str = "__cluster_metadata";

/// How long the controller may take over a reassignment or election request.
const CONTROLLER_TIMEOUT_MS: i32 = 30_000;
/// IncrementalAlterConfigs resources per request.
const CONFIG_RESOURCES_PER_REQUEST: usize = 500;

/// What the brokers' log directories hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogDirs {
    /// Bytes of each replica, by partition and then broker (summed over the broker's log
    /// directories; a replica being moved between directories counts once).
    pub replicas: HashMap<TopicPartition, BTreeMap<i32, u64>>,
    /// Each broker's disks: (total, usable) bytes, where the broker reports them.
    pub disks: BTreeMap<i32, (u64, u64)>,
}

impl LogDirs {
    /// Each partition's size: its leader's replica, or the largest replica when the leader's is
    /// not reported (the leader holds every committed record; a follower may lag).
    pub fn partition_sizes(&self, state: &ClusterState) -> HashMap<TopicPartition, u64> {
        let leaders: HashMap<(&str, i32), i32> = state
            .partitions
            .iter()
            .map(|p| ((p.topic.as_str(), p.partition), p.leader))
            .collect();
        self.replicas
            .iter()
            .map(|(tp, by_broker)| {
                let leader = leaders.get(&(tp.topic.as_str(), tp.partition));
                let size = leader
                    .and_then(|l| by_broker.get(l))
                    .copied()
                    .unwrap_or_else(|| by_broker.values().copied().max().unwrap_or(0));
                (tp.clone(), size)
            })
            .collect()
    }
}

pub struct AdminClient {
    connection: Connection,
    transport: Transport,
}

impl AdminClient {
    /// Connects to the first reachable bootstrap server and negotiates versions.
    pub async fn connect(bootstrap: &str, transport: &Transport) -> Result<Self, AdminError> {
        Ok(Self {
            connection: Connection::open(bootstrap, transport).await?,
            transport: transport.clone(),
        })
    }

    /// Every broker's log directories, one connection to each broker in turn.
    pub async fn log_dirs(&mut self) -> Result<LogDirs, AdminError> {
        let request = MetadataRequest::default()
            .with_topics(Some(Vec::new()))
            .with_allow_auto_topic_creation(false);
        let metadata = self.connection.send(request, "Metadata").await?;
        let mut log_dirs = LogDirs::default();
        for broker in &metadata.brokers {
            let address = format!("{}:{}", broker.host, broker.port);
            let mut connection = Connection::open(&address, &self.transport).await?;
            let api = "DescribeLogDirs";
            let response = connection
                .send(DescribeLogDirsRequest::default().with_topics(None), api)
                .await?;
            check(api, response.error_code, None)?;
            for dir in &response.results {
                if dir.error_code != 0 {
                    // An offline directory holds nothing readable; its replicas show as
                    // offline in metadata.
                    continue;
                }
                if dir.total_bytes >= 0 {
                    let disk = log_dirs.disks.entry(broker.node_id.0).or_default();
                    disk.0 += dir.total_bytes as u64;
                    disk.1 += dir.usable_bytes.max(0) as u64;
                }
                for topic in &dir.topics {
                    for p in topic.partitions.iter().filter(|p| !p.is_future_key) {
                        let tp = TopicPartition {
                            topic: topic.name.0.to_string(),
                            partition: p.partition_index,
                        };
                        *log_dirs
                            .replicas
                            .entry(tp)
                            .or_default()
                            .entry(broker.node_id.0)
                            .or_default() += p.partition_size.max(0) as u64;
                    }
                }
            }
        }
        Ok(log_dirs)
    }

    /// Brokers (with racks), every partition, and the reassignments in progress.
    pub async fn cluster_state(&mut self) -> Result<ClusterState, AdminError> {
        let request = MetadataRequest::default()
            .with_topics(None)
            .with_allow_auto_topic_creation(false);
        let metadata = self.connection.send(request, "Metadata").await?;
        let mut brokers: Vec<Broker> = metadata
            .brokers
            .iter()
            .map(|b| Broker {
                id: b.node_id.0,
                rack: b.rack.as_ref().map(|r| r.to_string()),
            })
            .collect();
        brokers.sort_by_key(|b| b.id);
        let mut partitions = Vec::new();
        for topic in &metadata.topics {
            let Some(name) = &topic.name else { continue };
            if topic.error_code.is_err() || topic.is_internal {
                continue;
            }
            for p in &topic.partitions {
                partitions.push(PartitionState {
                    topic: name.0.to_string(),
                    partition: p.partition_index,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                    leader: p.leader_id.0,
                });
            }
        }
        partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        let ongoing = self.list_reassignments().await?;
        Ok(ClusterState {
            brokers,
            controller: (metadata.controller_id.0 >= 0).then_some(metadata.controller_id.0),
            partitions,
            ongoing,
        })
    }

    /// The KRaft metadata quorum, or `None` from a cluster without one (ZooKeeper mode, or a
    /// broker too old to forward DescribeQuorum).
    pub async fn metadata_quorum(&mut self) -> Result<Option<Quorum>, AdminError> {
        let api = "DescribeQuorum";
        let request = DescribeQuorumRequest::default().with_topics(vec![
            TopicData::default()
                .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
                .with_partitions(vec![PartitionData::default().with_partition_index(0)]),
        ]);
        let response = match self.connection.send(request, api).await {
            Ok(response) => response,
            Err(AdminError::Unsupported { .. }) => return Ok(None),
            Err(error) => return Err(error),
        };
        check(api, response.error_code, response.error_message.as_ref())?;
        let Some(partition) = response.topics.iter().flat_map(|t| &t.partitions).next() else {
            return Ok(None);
        };
        check(api, partition.error_code, partition.error_message.as_ref())?;
        let now_ms = wire::clock::now_ms() as i64;
        Ok(Some(Quorum {
            leader: partition.leader_id.0,
            voters: partition
                .current_voters
                .iter()
                .map(|v| Voter {
                    id: v.replica_id.0,
                    lag: (partition.high_watermark - v.log_end_offset).max(0),
                    caught_up_ms_ago: (v.last_caught_up_timestamp >= 0)
                        .then(|| (now_ms - v.last_caught_up_timestamp).max(0)),
                })
                .collect(),
        }))
    }

    /// The values of configs `names` of each of `topics` (defaults included, as in effect).
    pub async fn topic_configs(
        &mut self,
        topics: &[String],
        names: &[&str],
    ) -> Result<BTreeMap<String, BTreeMap<String, String>>, AdminError> {
        let api = "DescribeConfigs";
        let mut configs = BTreeMap::new();
        for chunk in topics.chunks(CONFIG_RESOURCES_PER_REQUEST) {
            let request = DescribeConfigsRequest::default().with_resources(
                chunk
                    .iter()
                    .map(|topic| {
                        DescribeConfigsResource::default()
                            .with_resource_type(ResourceType::Topic as i8)
                            .with_resource_name(StrBytes::from_string(topic.clone()))
                            .with_configuration_keys(Some(
                                names
                                    .iter()
                                    .map(|n| StrBytes::from_string(n.to_string()))
                                    .collect(),
                            ))
                    })
                    .collect(),
            );
            let response = self.connection.send(request, api).await?;
            for result in &response.results {
                check(api, result.error_code, result.error_message.as_ref())?;
                let values: BTreeMap<String, String> = result
                    .configs
                    .iter()
                    .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
                    .collect();
                configs.insert(result.resource_name.to_string(), values);
            }
        }
        Ok(configs)
    }

    pub async fn list_reassignments(&mut self) -> Result<Vec<Ongoing>, AdminError> {
        let api = "ListPartitionReassignments";
        let request = ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(CONTROLLER_TIMEOUT_MS)
            .with_topics(None);
        let response = self.connection.send(request, api).await?;
        check(api, response.error_code, response.error_message.as_ref())?;
        Ok(response
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| Ongoing {
                    topic: t.name.0.to_string(),
                    partition: p.partition_index,
                    replicas: p.replicas.iter().map(|b| b.0).collect(),
                    adding: p.adding_replicas.iter().map(|b| b.0).collect(),
                    removing: p.removing_replicas.iter().map(|b| b.0).collect(),
                })
            })
            .collect())
    }

    /// Starts reassignments; returns the partitions Kafka refused.
    pub async fn alter_reassignments(
        &mut self,
        targets: &[Reassignment],
    ) -> Result<Vec<Refusal>, AdminError> {
        let api = "AlterPartitionReassignments";
        let mut by_topic: BTreeMap<&str, Vec<ReassignablePartition>> = BTreeMap::new();
        for target in targets {
            by_topic.entry(&target.topic).or_default().push(
                ReassignablePartition::default()
                    .with_partition_index(target.partition)
                    .with_replicas(Some(target.replicas.iter().map(|b| BrokerId(*b)).collect())),
            );
        }
        let request = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(CONTROLLER_TIMEOUT_MS)
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(topic, partitions)| {
                        ReassignableTopic::default()
                            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        let response = self.connection.send(request, api).await?;
        check(api, response.error_code, response.error_message.as_ref())?;
        Ok(response
            .responses
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .filter(|p| p.error_code.is_err())
                    .map(|p| {
                        Refusal::new(
                            &t.name.0,
                            p.partition_index,
                            p.error_code,
                            p.error_message.as_ref(),
                        )
                    })
            })
            .collect())
    }

    /// Applies config changes; fails on the first resource Kafka refused.
    pub async fn alter_configs(&mut self, changes: &[ConfigChange]) -> Result<(), AdminError> {
        let api = "IncrementalAlterConfigs";
        let mut by_resource: BTreeMap<&ConfigResource, Vec<AlterableConfig>> = BTreeMap::new();
        for change in changes {
            let (op, value) = match &change.op {
                ConfigOp::Set(v) => (AlterConfigOp::Set, Some(v.clone())),
                ConfigOp::Delete => (AlterConfigOp::Delete, None),
                ConfigOp::Append(v) => (AlterConfigOp::Append, Some(v.clone())),
            };
            by_resource.entry(&change.resource).or_default().push(
                AlterableConfig::default()
                    .with_name(StrBytes::from_string(change.name.clone()))
                    .with_config_operation(op as i8)
                    .with_value(value.map(StrBytes::from_string)),
            );
        }
        let resources: Vec<AlterConfigsResource> = by_resource
            .into_iter()
            .map(|(resource, configs)| {
                let (kind, name) = match resource {
                    ConfigResource::Topic(t) => (ResourceType::Topic, t.clone()),
                    // The empty name is the cluster-wide default.
                    ConfigResource::AllBrokers => (ResourceType::Broker, String::new()),
                };
                AlterConfigsResource::default()
                    .with_resource_type(kind as i8)
                    .with_resource_name(StrBytes::from_string(name))
                    .with_configs(configs)
            })
            .collect();
        for chunk in resources.chunks(CONFIG_RESOURCES_PER_REQUEST) {
            let request = IncrementalAlterConfigsRequest::default().with_resources(chunk.to_vec());
            let response = self.connection.send(request, api).await?;
            for resource in &response.responses {
                if let Some(error) = ResponseError::try_from_code(resource.error_code) {
                    return Err(AdminError::Kafka {
                        api,
                        error,
                        message: Some(format!(
                            "{}{}",
                            resource.resource_name,
                            resource
                                .error_message
                                .as_ref()
                                .map(|m| format!(": {m}"))
                                .unwrap_or_default()
                        )),
                    });
                }
            }
        }
        Ok(())
    }

    /// Dynamic cluster-wide broker configs among `names` that are set, with their values.
    pub async fn cluster_broker_configs(
        &mut self,
        names: &[&str],
    ) -> Result<Vec<(String, String)>, AdminError> {
        let api = "DescribeConfigs";
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(ResourceType::Broker as i8)
                .with_resource_name(StrBytes::from_static_str(""))
                .with_configuration_keys(Some(
                    names
                        .iter()
                        .map(|n| StrBytes::from_string(n.to_string()))
                        .collect(),
                )),
        ]);
        let response = self.connection.send(request, api).await?;
        let mut set = Vec::new();
        for result in &response.results {
            check(api, result.error_code, result.error_message.as_ref())?;
            for config in &result.configs {
                if config.config_source == ConfigSource::DynamicDefaultBrokerConfig as i8
                    && let Some(value) = &config.value
                {
                    set.push((config.name.to_string(), value.to_string()));
                }
            }
        }
        Ok(set)
    }

    /// Preferred leader election for `partitions`; returns the partitions whose election failed
    /// for a reason other than "not needed".
    pub async fn elect_preferred_leaders(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<Vec<Refusal>, AdminError> {
        let api = "ElectLeaders";
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for tp in partitions {
            by_topic.entry(&tp.topic).or_default().push(tp.partition);
        }
        let request = ElectLeadersRequest::default()
            .with_election_type(ElectionType::Preferred as i8)
            .with_timeout_ms(CONTROLLER_TIMEOUT_MS)
            .with_topic_partitions(Some(
                by_topic
                    .into_iter()
                    .map(|(topic, partitions)| {
                        TopicPartitions::default()
                            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                            .with_partitions(partitions)
                    })
                    .collect(),
            ));
        let response = self.connection.send(request, api).await?;
        check(api, response.error_code, None)?;
        let not_needed = ResponseError::ElectionNotNeeded.code();
        Ok(response
            .replica_election_results
            .iter()
            .flat_map(|r| {
                r.partition_result
                    .iter()
                    .filter(|p| p.error_code.is_err() && p.error_code != not_needed)
                    .map(|p| {
                        Refusal::new(
                            &r.topic.0,
                            p.partition_id,
                            p.error_code,
                            p.error_message.as_ref(),
                        )
                    })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_errors_are_named() {
        let error = check("ElectLeaders", 84, None).unwrap_err();
        assert_eq!(
            error.to_string(),
            "ElectLeaders failed with ElectionNotNeeded (Kafka error code 84)"
        );
        assert!(check("ElectLeaders", 0, None).is_ok());
        assert_eq!(describe_code(-999), "Kafka error code -999");
    }
}
