//! A small Kafka admin client over the `kafka-protocol` codec (rdkafka has no reassignment API):
//! Metadata, ListPartitionReassignments, AlterPartitionReassignments, IncrementalAlterConfigs
//! and ElectLeaders, on one connection to any broker (KRaft brokers forward controller requests).
//!
//! Transport: plaintext (local stack), or TLS with SASL/OAUTHBEARER carrying an MSK IAM token
//! (`sdk::msk_iam`). Versions are negotiated with ApiVersions first.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, ApiVersionsRequest, BrokerId, DescribeConfigsRequest,
    ElectLeadersRequest, IncrementalAlterConfigsRequest, ListPartitionReassignmentsRequest,
    MetadataRequest, RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslHandshakeRequest,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cluster::{Broker, ClusterDescription, Partition, TopicPartition};

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
    #[error("{api} failed with Kafka error code {code}{}", message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    Kafka {
        api: &'static str,
        code: i16,
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

/// How to reach the brokers.
#[derive(Debug, Clone)]
pub enum Transport {
    Plaintext,
    /// TLS; with `iam_region`, SASL/OAUTHBEARER with an MSK IAM token for that region.
    Tls {
        iam_region: Option<String>,
    },
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

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
    pub partitions: Vec<PartitionState>,
    pub ongoing: Vec<Ongoing>,
}

impl ClusterState {
    /// The planner's view: partitions being reassigned counted with their final replicas.
    pub fn description(&self) -> ClusterDescription {
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
                        size_bytes: None,
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
        let moving: std::collections::HashSet<(&str, i32)> = self
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

pub struct AdminClient {
    stream: Box<dyn Stream>,
    broker: String,
    correlation_id: i32,
    versions: HashMap<i16, (i16, i16)>,
}

const CLIENT_ID: &str = "standby-rebalancer";
/// Largest response we accept (metadata of a 100k-partition cluster fits easily).
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

impl AdminClient {
    /// Connects to the first reachable bootstrap server and negotiates versions.
    pub async fn connect(bootstrap: &str, transport: &Transport) -> Result<Self, AdminError> {
        let mut last_error = String::from("no servers given");
        for server in bootstrap
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            match Self::connect_one(server, transport).await {
                Ok(client) => return Ok(client),
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(AdminError::Connect {
            servers: bootstrap.to_string(),
            reason: last_error,
        })
    }

    async fn connect_one(server: &str, transport: &Transport) -> Result<Self, AdminError> {
        let io = |source| AdminError::Io {
            broker: server.to_string(),
            source,
        };
        let tcp = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(server))
            .await
            .map_err(|_| {
                io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                ))
            })?
            .map_err(io)?;
        tcp.set_nodelay(true).map_err(io)?;
        let stream: Box<dyn Stream> = match transport {
            Transport::Plaintext => Box::new(tcp),
            Transport::Tls { .. } => Box::new(tls(server, tcp).await.map_err(io)?),
        };
        let mut client = Self {
            stream,
            broker: server.to_string(),
            correlation_id: 0,
            versions: HashMap::new(),
        };
        client.negotiate().await?;
        if let Transport::Tls {
            iam_region: Some(region),
        } = transport
        {
            client.authenticate(region).await?;
        }
        Ok(client)
    }

    async fn negotiate(&mut self) -> Result<(), AdminError> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let response = self.exchange(request, 3, "ApiVersions").await?;
        if response.error_code != 0 {
            return Err(AdminError::Kafka {
                api: "ApiVersions",
                code: response.error_code,
                message: None,
            });
        }
        self.versions = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(())
    }

    /// SASL/OAUTHBEARER with an MSK IAM token (RFC 7628 initial client response).
    async fn authenticate(&mut self, region: &str) -> Result<(), AdminError> {
        let handshake = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str("OAUTHBEARER"));
        let response = self.send(handshake, "SaslHandshake").await?;
        if response.error_code != 0 {
            return Err(AdminError::Authentication(format!(
                "OAUTHBEARER not enabled (error {}); brokers offer {:?}",
                response.error_code, response.mechanisms
            )));
        }
        let source = sdk::msk_iam::MskIamTokenSource::new(region.to_string());
        let token = tokio::task::spawn_blocking(move || source.token())
            .await
            .map_err(|e| AdminError::Authentication(e.to_string()))?
            .map_err(|e| AdminError::Authentication(e.to_string()))?;
        let request = SaslAuthenticateRequest::default()
            .with_auth_bytes(oauthbearer_initial_response(&token.token));
        let response = self.send(request, "SaslAuthenticate").await?;
        if response.error_code != 0 {
            return Err(AdminError::Authentication(
                response
                    .error_message
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| format!("error {}", response.error_code)),
            ));
        }
        Ok(())
    }

    fn version<R: Request>(&self, api: &'static str) -> Result<i16, AdminError> {
        let (broker_min, broker_max) = self.versions.get(&R::KEY).copied().unwrap_or((0, -1));
        let version = broker_max.min(R::VERSIONS.max);
        if version < broker_min.max(R::VERSIONS.min) {
            return Err(AdminError::Unsupported {
                api,
                min: R::VERSIONS.min,
                max: R::VERSIONS.max,
            });
        }
        Ok(version)
    }

    async fn send<R: Request>(
        &mut self,
        request: R,
        api: &'static str,
    ) -> Result<R::Response, AdminError> {
        let version = self.version::<R>(api)?;
        self.exchange(request, version, api).await
    }

    /// One request/response round trip at `version`.
    async fn exchange<R: Request>(
        &mut self,
        request: R,
        version: i16,
        api: &'static str,
    ) -> Result<R::Response, AdminError> {
        let protocol = |e: anyhow::Error| AdminError::Protocol {
            api,
            reason: e.to_string(),
        };
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .map_err(protocol)?;
        request.encode(&mut body, version).map_err(protocol)?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_u32(body.len() as u32);
        frame.extend_from_slice(&body);

        let broker = self.broker.clone();
        let io = |source| AdminError::Io {
            broker: broker.clone(),
            source,
        };
        self.stream.write_all(&frame).await.map_err(io)?;
        self.stream.flush().await.map_err(io)?;
        let length = self.stream.read_u32().await.map_err(io)? as usize;
        if length > MAX_RESPONSE_BYTES {
            return Err(AdminError::Protocol {
                api,
                reason: format!("response of {length} bytes is too large"),
            });
        }
        let mut buffer = vec![0; length];
        self.stream.read_exact(&mut buffer).await.map_err(io)?;
        let mut buffer = Bytes::from(buffer);
        let response_header =
            ResponseHeader::decode(&mut buffer, R::Response::header_version(version))
                .map_err(protocol)?;
        if response_header.correlation_id != self.correlation_id {
            return Err(AdminError::Protocol {
                api,
                reason: format!(
                    "correlation id {} answered {}",
                    self.correlation_id, response_header.correlation_id
                ),
            });
        }
        let response = R::Response::decode(&mut buffer, version).map_err(protocol)?;
        if buffer.has_remaining() {
            tracing::debug!(
                api,
                left = buffer.remaining(),
                "response had trailing bytes"
            );
        }
        Ok(response)
    }

    /// Brokers (with racks), every partition, and the reassignments in progress.
    pub async fn cluster_state(&mut self) -> Result<ClusterState, AdminError> {
        let request = MetadataRequest::default()
            .with_topics(None)
            .with_allow_auto_topic_creation(false);
        let metadata = self.send(request, "Metadata").await?;
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
            if topic.error_code != 0 || topic.is_internal {
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
            partitions,
            ongoing,
        })
    }

    pub async fn list_reassignments(&mut self) -> Result<Vec<Ongoing>, AdminError> {
        let request = ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(None);
        let response = self.send(request, "ListPartitionReassignments").await?;
        check(
            "ListPartitionReassignments",
            response.error_code,
            response.error_message.as_ref(),
        )?;
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

    /// Starts reassignments; returns the partitions Kafka refused, with the reason.
    pub async fn alter_reassignments(
        &mut self,
        targets: &[(String, i32, Vec<i32>)],
    ) -> Result<Vec<(TopicPartition, String)>, AdminError> {
        let mut by_topic: std::collections::BTreeMap<&str, Vec<ReassignablePartition>> =
            Default::default();
        for (topic, partition, replicas) in targets {
            by_topic.entry(topic).or_default().push(
                ReassignablePartition::default()
                    .with_partition_index(*partition)
                    .with_replicas(Some(replicas.iter().map(|b| BrokerId(*b)).collect())),
            );
        }
        let request = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(30_000)
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
        let response = self.send(request, "AlterPartitionReassignments").await?;
        check(
            "AlterPartitionReassignments",
            response.error_code,
            response.error_message.as_ref(),
        )?;
        Ok(response
            .responses
            .iter()
            .flat_map(|t| {
                t.partitions.iter().filter(|p| p.error_code != 0).map(|p| {
                    (
                        TopicPartition {
                            topic: t.name.0.to_string(),
                            partition: p.partition_index,
                        },
                        format!(
                            "error {}{}",
                            p.error_code,
                            p.error_message
                                .as_ref()
                                .map(|m| format!(": {m}"))
                                .unwrap_or_default()
                        ),
                    )
                })
            })
            .collect())
    }

    /// Applies config changes; fails on the first resource Kafka refused.
    pub async fn alter_configs(&mut self, changes: &[ConfigChange]) -> Result<(), AdminError> {
        let mut by_resource: std::collections::BTreeMap<&ConfigResource, Vec<AlterableConfig>> =
            Default::default();
        for change in changes {
            let (op, value) = match &change.op {
                ConfigOp::Set(v) => (0, Some(v.clone())),
                ConfigOp::Delete => (1, None),
                ConfigOp::Append(v) => (2, Some(v.clone())),
            };
            by_resource.entry(&change.resource).or_default().push(
                AlterableConfig::default()
                    .with_name(StrBytes::from_string(change.name.clone()))
                    .with_config_operation(op)
                    .with_value(value.map(StrBytes::from_string)),
            );
        }
        let resources: Vec<AlterConfigsResource> = by_resource
            .into_iter()
            .map(|(resource, configs)| {
                let (kind, name) = match resource {
                    ConfigResource::Topic(t) => (2, t.clone()),
                    ConfigResource::AllBrokers => (4, String::new()),
                };
                AlterConfigsResource::default()
                    .with_resource_type(kind)
                    .with_resource_name(StrBytes::from_string(name))
                    .with_configs(configs)
            })
            .collect();
        for chunk in resources.chunks(500) {
            let request = IncrementalAlterConfigsRequest::default().with_resources(chunk.to_vec());
            let response = self.send(request, "IncrementalAlterConfigs").await?;
            for resource in &response.responses {
                if resource.error_code != 0 {
                    return Err(AdminError::Kafka {
                        api: "IncrementalAlterConfigs",
                        code: resource.error_code,
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
        const DYNAMIC_DEFAULT_BROKER_CONFIG: i8 = 3;
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(StrBytes::from_static_str(""))
                .with_configuration_keys(Some(
                    names
                        .iter()
                        .map(|n| StrBytes::from_string(n.to_string()))
                        .collect(),
                )),
        ]);
        let response = self.send(request, "DescribeConfigs").await?;
        let mut set = Vec::new();
        for result in &response.results {
            check(
                "DescribeConfigs",
                result.error_code,
                result.error_message.as_ref(),
            )?;
            for config in &result.configs {
                if config.config_source == DYNAMIC_DEFAULT_BROKER_CONFIG
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
    ) -> Result<Vec<(TopicPartition, String)>, AdminError> {
        const ELECTION_NOT_NEEDED: i16 = 84;
        let mut by_topic: std::collections::BTreeMap<&str, Vec<i32>> = Default::default();
        for tp in partitions {
            by_topic.entry(&tp.topic).or_default().push(tp.partition);
        }
        let request = ElectLeadersRequest::default()
            .with_election_type(0)
            .with_timeout_ms(30_000)
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
        let response = self.send(request, "ElectLeaders").await?;
        check("ElectLeaders", response.error_code, None)?;
        Ok(response
            .replica_election_results
            .iter()
            .flat_map(|r| {
                r.partition_result
                    .iter()
                    .filter(|p| p.error_code != 0 && p.error_code != ELECTION_NOT_NEEDED)
                    .map(|p| {
                        (
                            TopicPartition {
                                topic: r.topic.0.to_string(),
                                partition: p.partition_id,
                            },
                            format!("error {}", p.error_code),
                        )
                    })
            })
            .collect())
    }
}

fn check(api: &'static str, code: i16, message: Option<&StrBytes>) -> Result<(), AdminError> {
    if code == 0 {
        return Ok(());
    }
    Err(AdminError::Kafka {
        api,
        code,
        message: message.map(|m| m.to_string()),
    })
}

/// RFC 7628 initial client response for OAUTHBEARER: `n,,\x01auth=Bearer <token>\x01\x01`.
pub fn oauthbearer_initial_response(token: &str) -> Bytes {
    Bytes::from(format!("n,,\u{1}auth=Bearer {token}\u{1}\u{1}"))
}

async fn tls(
    server: &str,
    tcp: TcpStream,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let config = tokio_rustls::rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let host = server
        .rsplit_once(':')
        .map_or(server, |(host, _)| host)
        .to_string();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauthbearer_response_follows_rfc_7628() {
        assert_eq!(
            &oauthbearer_initial_response("abc")[..],
            b"n,,\x01auth=Bearer abc\x01\x01"
        );
    }

    #[test]
    fn description_counts_reassigning_partitions_with_their_final_replicas() {
        let state = ClusterState {
            brokers: vec![],
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
