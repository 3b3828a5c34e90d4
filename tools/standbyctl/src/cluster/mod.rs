//! `standbyctl cluster`: the platform's health from the terminal, read from the real cluster over
//! the rebalancer's own admin client (metadata, reassignments, configs, the KRaft quorum) and
//! from the tables the functions keep (the standby backlog, held keys, the autoscaler's state,
//! the rebalancer's handoff).
//!
//! [`gather`] does the reading; [`health::assess`] concludes, purely, what needs attention. Only
//! the cluster itself must answer: a table, CloudWatch or a topic that cannot be read is reported
//! as needing attention, and the rest of the report is still printed.

pub mod health;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rebalancer::admin::AdminClient;
use rebalancer::executor::{
    FOLLOWER_THROTTLED_RATE, FOLLOWER_THROTTLED_REPLICAS, LEADER_THROTTLED_RATE,
    LEADER_THROTTLED_REPLICAS,
};
use rebalancer::planner::{self, BytesMode, Options, RackMode};
use sdk::kafka::KafkaSettings;
use sdk::standby_table::StandbyTable;
use shared::state_table::{StateTable, keys};

use crate::error::CtlError;
use crate::selection::StandbyFilter;
use aws_sdk_dynamodb::types::AttributeValue;
use health::{AutoscalerObserved, Claim, DeadLetterSize, ExpiredByTtl, StandbyObserved};
pub use health::{Health, Observed, assess};

const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";

/// How long one watermark request may take.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(15);

/// What to read besides the cluster; each part left out is reported as not given.
#[derive(Debug, Clone)]
pub struct Sources {
    pub kafka: KafkaSettings,
    pub excluded_topics: BTreeSet<String>,
    pub rack_mode: RackMode,
    pub bytes_mode: BytesMode,
    pub standby_table: Option<String>,
    pub state_table: Option<String>,
    pub cluster_arn: Option<String>,
    pub dead_letter_topics: Vec<String>,
    pub scale_cooldown: Duration,
    /// How far back events expired by TTL are counted.
    pub expired_lookback: Duration,
    /// The republisher's function name, as its metrics name it.
    pub republisher_function: String,
}

/// Reads everything the report needs.
pub async fn gather(sources: &Sources) -> Result<Observed, CtlError> {
    let transport = rebalancer::settings::transport(&sources.kafka);
    let mut admin = AdminClient::connect(&sources.kafka.bootstrap_servers, &transport).await?;
    let state = admin.cluster_state().await?;
    let mut unreadable = Vec::new();
    // Optional, like every part but the cluster's metadata: MSK may refuse it.
    let quorum = match admin.metadata_quorum().await {
        Ok(quorum) => quorum,
        Err(error) => {
            unreadable.push(format!("the controller quorum: {error}"));
            None
        }
    };
    let topics: Vec<String> = state
        .partitions
        .iter()
        .map(|p| p.topic.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let configs = admin
        .topic_configs(
            &topics,
            &[
                MIN_INSYNC_REPLICAS,
                LEADER_THROTTLED_REPLICAS,
                FOLLOWER_THROTTLED_REPLICAS,
            ],
        )
        .await?;
    let min_isr = configs
        .iter()
        .filter_map(|(topic, values)| {
            Some((
                topic.clone(),
                values.get(MIN_INSYNC_REPLICAS)?.parse().ok()?,
            ))
        })
        .collect();
    let topic_throttles = configs
        .iter()
        .filter_map(|(topic, values)| {
            let set: Vec<(String, String)> =
                [LEADER_THROTTLED_REPLICAS, FOLLOWER_THROTTLED_REPLICAS]
                    .iter()
                    .filter_map(|name| {
                        let value = values.get(*name).filter(|v| !v.is_empty())?;
                        Some((name.to_string(), value.clone()))
                    })
                    .collect();
            (!set.is_empty()).then(|| (topic.clone(), set))
        })
        .collect();
    let broker_throttles = admin
        .cluster_broker_configs(&[LEADER_THROTTLED_RATE, FOLLOWER_THROTTLED_RATE])
        .await?;
    // Sizes as the rebalancer reads them, for the bytes its plan would copy.
    let description = match admin.log_dirs().await {
        Ok(log_dirs) => state.sized_description(&log_dirs.partition_sizes(&state)),
        Err(error) => {
            unreadable.push(format!("partition sizes (DescribeLogDirs): {error}"));
            state.description()
        }
    };
    let plan = planner::plan(
        &description,
        &Options {
            excluded_topics: sources.excluded_topics.clone(),
            racks: sources.rack_mode,
            bytes: sources.bytes_mode,
        },
    )
    .summary;

    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let expired = match expired_by_ttl(
        &aws_sdk_cloudwatch::Client::new(&aws),
        &sources.republisher_function,
        sources.expired_lookback,
    )
    .await
    {
        Ok(events) => Some(ExpiredByTtl {
            lookback_hours: sources.expired_lookback.as_secs() / 3600,
            events,
        }),
        Err(error) => {
            unreadable.push(format!("CloudWatch (events expired by TTL): {error}"));
            None
        }
    };
    let state_table = sources
        .state_table
        .as_ref()
        .map(|name| StateTable::new(dynamodb.clone(), name));
    let standby = match &sources.standby_table {
        None => None,
        Some(name) => {
            let table = StandbyTable::new(dynamodb.clone(), name);
            match crate::standby::count(&table, &StandbyFilter::default()).await {
                Err(error) => {
                    unreadable.push(format!("the standby table {name}: {error}"));
                    None
                }
                Ok(count) => {
                    let held = match &state_table {
                        None => None,
                        Some(state) => match republisher::held::list(state, name).await {
                            Ok(held) => Some(held),
                            Err(error) => {
                                unreadable.push(format!(
                                    "held keys in the state table {}: {error}",
                                    state.name()
                                ));
                                None
                            }
                        },
                    };
                    Some(StandbyObserved {
                        table: name.clone(),
                        count,
                        held,
                    })
                }
            }
        }
    };
    let (autoscaler, handoff) = match (&state_table, &sources.cluster_arn) {
        (Some(state), Some(arn)) => {
            match read_autoscaler(state, arn, sources.scale_cooldown).await {
                Ok(read) => read,
                Err(error) => {
                    unreadable.push(format!("the autoscaler's state and handoff: {error}"));
                    (None, None)
                }
            }
        }
        _ => (None, None),
    };

    let dead_letter_topics =
        match dead_letter_sizes(&sources.kafka, &state, &sources.dead_letter_topics).await {
            Ok(sizes) => sizes,
            Err(error) => {
                unreadable.push(format!("dead-letter topics' sizes: {error}"));
                Vec::new()
            }
        };
    Ok(Observed {
        state,
        quorum,
        min_isr,
        broker_throttles,
        topic_throttles,
        plan,
        standby,
        dead_letter_topics,
        autoscaler,
        handoff,
        expired,
        unreadable,
    })
}

async fn read_autoscaler(
    state: &StateTable,
    arn: &str,
    cooldown: Duration,
) -> Result<(Option<AutoscalerObserved>, Option<shared::handoff::Handoff>), CtlError> {
    let last_scale = autoscaler::state::last_scale(state, arn)
        .await
        .map_err(|e| CtlError::Service(format!("the autoscaler's state: {e}")))?;
    let prefix = format!("{arn}#");
    let latest_claim = state
        .list_prefixed(keys::AUTOSCALER_CLAIM, &prefix)
        .await
        .map_err(|e| state_table_error(state, e))?
        .iter()
        .filter_map(|item| {
            let version = match item.get("sk") {
                Some(AttributeValue::S(sk)) => sk.strip_prefix(&prefix)?.to_string(),
                _ => return None,
            };
            let at = match item.get("at") {
                Some(AttributeValue::N(n)) => n.parse().ok()?,
                _ => return None,
            };
            Some(Claim { version, at })
        })
        .max_by_key(|c| c.at);
    let handoff = shared::handoff::read(state, arn)
        .await
        .map_err(|e| CtlError::Service(format!("the rebalancer's handoff: {e}")))?;
    Ok((
        Some(AutoscalerObserved {
            last_scale,
            cooldown,
            latest_claim,
        }),
        handoff,
    ))
}

/// Events DynamoDB's TTL removed unpublished within `lookback`, as the republisher counted them
/// (its `ExpiredByTtl` metric): the items are gone from the table, so only the count is left.
async fn expired_by_ttl(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    republisher: &str,
    lookback: Duration,
) -> Result<u64, String> {
    use aws_sdk_cloudwatch::primitives::DateTime;
    use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};

    let family = &republisher::handler::METRICS;
    let now = std::time::SystemTime::now();
    let dimension = |name: &str, value: &str| Dimension::builder().name(name).value(value).build();
    let output = cloudwatch
        .get_metric_data()
        .start_time(DateTime::from(now - lookback))
        .end_time(DateTime::from(now + Duration::from_secs(60)))
        .metric_data_queries(
            MetricDataQuery::builder()
                .id("expired")
                .return_data(true)
                .metric_stat(
                    MetricStat::builder()
                        .metric(
                            Metric::builder()
                                .namespace(family.namespace)
                                .metric_name("ExpiredByTtl")
                                .dimensions(dimension("FunctionName", republisher))
                                .dimensions(dimension("Trigger", "stream"))
                                .build(),
                        )
                        // One period over the whole look-back: one value, whatever its length
                        // (minute data is kept only 15 days).
                        .period(lookback.as_secs().div_ceil(60).max(1) as i32 * 60)
                        .stat("Sum")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .map_err(|e| aws_sdk_cloudwatch::Error::from(e).to_string())?;
    Ok(output
        .metric_data_results()
        .iter()
        .flat_map(|r| r.values())
        .sum::<f64>() as u64)
}

fn state_table_error(state: &StateTable, error: sdk::standby_table::TableError) -> CtlError {
    CtlError::table(state.name(), "--state-table / STATE_TABLE_NAME", error)
}

/// Records in each dead-letter topic: the sum over its partitions of high minus low watermark.
async fn dead_letter_sizes(
    kafka: &KafkaSettings,
    state: &rebalancer::cluster::ClusterState,
    topics: &[String],
) -> Result<Vec<DeadLetterSize>, CtlError> {
    if topics.is_empty() {
        return Ok(Vec::new());
    }
    let mut partitions: BTreeMap<String, Vec<i32>> =
        topics.iter().map(|t| (t.clone(), Vec::new())).collect();
    for p in &state.partitions {
        if let Some(list) = partitions.get_mut(&p.topic) {
            list.push(p.partition);
        }
    }
    let kafka = kafka.clone();
    // librdkafka's watermark calls block: off the async workers.
    tokio::task::spawn_blocking(move || {
        let consumer = crate::dlt::reader::consumer(&kafka)?;
        let mut sizes = Vec::new();
        for (topic, partitions) in partitions {
            if partitions.is_empty() {
                sizes.push(DeadLetterSize {
                    topic,
                    records: None,
                });
                continue;
            }
            let mut records = 0;
            for partition in partitions {
                let (low, high) = consumer.fetch_watermarks(&topic, partition, KAFKA_TIMEOUT)?;
                records += (high - low).max(0);
            }
            sizes.push(DeadLetterSize {
                topic,
                records: Some(records),
            });
        }
        Ok(sizes)
    })
    .await
    .map_err(|e| CtlError::Service(format!("reading watermarks: {e}")))?
}
