//! `standbyctl cluster`: the platform's health from the terminal, read from the real cluster over
//! the rebalancer's own admin client (metadata, reassignments, configs, the KRaft quorum) and
//! from the tables the functions keep (the standby backlog, held keys, the autoscaler's state,
//! the rebalancer's handoff).
//!
//! [`gather`] does the reading; [`health::assess`] concludes, purely, what needs attention.

pub mod health;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rebalancer::admin::AdminClient;
use rebalancer::executor::{
    FOLLOWER_THROTTLED_RATE, FOLLOWER_THROTTLED_REPLICAS, LEADER_THROTTLED_RATE,
    LEADER_THROTTLED_REPLICAS,
};
use rebalancer::planner::{self, Options};
use sdk::kafka::{KafkaContext, KafkaSettings};
use sdk::standby_table::StandbyTable;
use shared::state_table::{StateTable, keys};

use crate::error::CtlError;
use crate::selection::StandbyFilter;
use health::{AutoscalerObserved, DeadLetterSize, StandbyObserved};
pub use health::{Health, Observed, assess};

const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";

/// How long one watermark request may take.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(15);

/// What to read besides the cluster; each part left out is reported as not given.
#[derive(Debug, Clone)]
pub struct Sources {
    pub kafka: KafkaSettings,
    pub excluded_topics: BTreeSet<String>,
    pub standby_table: Option<String>,
    pub state_table: Option<String>,
    pub cluster_arn: Option<String>,
    pub dead_letter_topics: Vec<String>,
    pub scale_cooldown: Duration,
}

/// Reads everything the report needs.
pub async fn gather(sources: &Sources) -> Result<Observed, CtlError> {
    let transport = rebalancer::settings::transport(&sources.kafka);
    let mut admin = AdminClient::connect(&sources.kafka.bootstrap_servers, &transport).await?;
    let state = admin.cluster_state().await?;
    let controller_id = admin.controller_id().await?;
    let quorum = admin.metadata_quorum().await?;
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
    let plan = planner::plan(
        &state.description(),
        &Options {
            excluded_topics: sources.excluded_topics.clone(),
        },
    )
    .summary;

    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let state_table = sources
        .state_table
        .as_ref()
        .map(|name| StateTable::new(dynamodb.clone(), name));
    let standby = match &sources.standby_table {
        None => None,
        Some(name) => {
            let table = StandbyTable::new(dynamodb.clone(), name);
            let count = crate::standby::count(&table, &StandbyFilter::default()).await?;
            let held = match &state_table {
                Some(state) => Some(
                    republisher::held::list(state, name)
                        .await
                        .map_err(|e| state_table_error(state, e))?,
                ),
                None => None,
            };
            Some(StandbyObserved {
                table: name.clone(),
                count,
                held,
            })
        }
    };
    let (autoscaler, handoff) = match (&state_table, &sources.cluster_arn) {
        (Some(state), Some(arn)) => {
            let last_scale = autoscaler::state::last_scale(state, arn)
                .await
                .map_err(|e| CtlError::Service(format!("the autoscaler's state: {e}")))?;
            let claims = state
                .list_prefixed(keys::AUTOSCALER_CLAIM, &format!("{arn}#"))
                .await
                .map_err(|e| state_table_error(state, e))?
                .len();
            let handoff = shared::handoff::read(state, arn)
                .await
                .map_err(|e| CtlError::Service(format!("the rebalancer's handoff: {e}")))?;
            (
                Some(AutoscalerObserved {
                    last_scale,
                    cooldown: sources.scale_cooldown,
                    claims,
                }),
                handoff,
            )
        }
        _ => (None, None),
    };

    let dead_letter_topics =
        dead_letter_sizes(&sources.kafka, &state, &sources.dead_letter_topics).await?;
    Ok(Observed {
        state,
        controller_id,
        quorum,
        min_isr,
        broker_throttles,
        topic_throttles,
        plan,
        standby,
        dead_letter_topics,
        autoscaler,
        handoff,
    })
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
        let consumer: BaseConsumer<KafkaContext> = kafka
            .client_config()
            .set("group.id", "standbyctl")
            .set("enable.auto.commit", "false")
            .create_with_context(kafka.context())?;
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
