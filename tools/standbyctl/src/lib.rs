//! `standbyctl`: the operator's view of the standby event store and the dead-letter topic.
//!
//! Layout:
//! - [`cli`]: the command line (clap);
//! - [`selection`]: standby filters → DynamoDB reads, and the final match (pure);
//! - [`standby`]: `standby ls|count|show|replay|purge` — replay runs the republisher's engine;
//! - [`dlt`]: `dlt ls|show|redrive` — a snapshot read of the topic, redrives recorded;
//! - [`event_types`]: `event-types ls|put|rm` — the event gateway's event types;
//! - [`cluster`]: `cluster` — the platform's health, read over the rebalancer's admin client;
//! - [`patch`]: payload repair with a jq filter or `$EDITOR`, keeping the schema prefix;
//! - [`render`]: tables and JSON; [`error`]: failures and exit codes.
//!
//! Configuration is the functions' own: `KAFKA_*` (see `sdk::kafka`), `STANDBY_TABLE_NAME`,
//! `STANDBY_DEAD_LETTER_TOPIC`, `STATE_TABLE_NAME`, `EVENT_TYPES_TABLE`, and the AWS SDK's usual
//! variables.

pub mod cli;
pub mod cluster;
pub mod dlt;
pub mod error;
pub mod event_types;
pub mod patch;
pub mod render;
pub mod selection;
pub mod standby;

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use republisher::adapters::{DynamoTable, KafkaSink};
use sdk::config::ProcessEnv;
use sdk::kafka::KafkaSettings;
use sdk::schema::{GlueRegistry, SchemaCache};
use sdk::standby_table::StandbyTable;
use shared::state_table::StateTable;

use crate::cli::{
    Cli, ClusterArgs, Command, DltCommand, EventTypesCommand, Output, StandbyCommand,
};
use crate::dlt::{DltFilter, Redrive, RedriveLog, Repair};
use crate::error::{CtlError, Finish};
use crate::patch::Jq;
use crate::selection::StandbyFilter;

/// The delivery timeout when `KAFKA_DELIVERY_TIMEOUT_MS` is not set.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

fn kafka() -> Result<KafkaSettings, CtlError> {
    Ok(KafkaSettings::from_env(
        &ProcessEnv,
        "standbyctl",
        DELIVERY_TIMEOUT,
    )?)
}

async fn dynamodb() -> aws_sdk_dynamodb::Client {
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    aws_sdk_dynamodb::Client::new(&aws)
}

/// Runs one command, printing its report; the error (if any) is for the caller to print.
pub async fn run(cli: Cli) -> Result<Finish, CtlError> {
    let output = cli.output;
    match cli.command {
        Command::Standby(command) => standby_command(command, output).await,
        Command::Dlt(command) => dlt_command(command, output).await,
        Command::EventTypes(command) => event_types_command(command, output).await,
        Command::Cluster(args) => cluster_command(args, output).await,
    }
}

async fn cluster_command(args: ClusterArgs, output: Output) -> Result<Finish, CtlError> {
    let sources = cluster::Sources {
        kafka: KafkaSettings::admin_from_env(&ProcessEnv, "standbyctl")?,
        excluded_topics: args.excluded_topics.into_iter().collect(),
        rack_mode: args.rack_mode,
        bytes_mode: args.bytes_mode,
        standby_table: args.standby_table,
        state_table: args.state_table,
        cluster_arn: args.cluster_arn,
        dead_letter_topics: args.dead_letter_topics,
        scale_cooldown: Duration::from_secs(args.scale_cooldown_seconds),
        expired_lookback: Duration::from_secs(args.expired_lookback_hours.max(1) * 3600),
        republisher_function: args.republisher_function,
    };
    let health = cluster::assess(&cluster::gather(&sources).await?, render::now_ms());
    render::print(output, &health);
    Ok(if health.attention.is_empty() {
        Finish::Done
    } else {
        Finish::Attention
    })
}

async fn event_types_command(
    command: EventTypesCommand,
    output: Output,
) -> Result<Finish, CtlError> {
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let store = |name: String| {
        gateway::event_types::EventTypeStore::new(aws_sdk_dynamodb::Client::new(&aws), name)
    };
    match command {
        EventTypesCommand::Ls { table } => {
            render::print(output, &event_types::ls(&store(table.name)).await?);
            Ok(Finish::Done)
        }
        EventTypesCommand::Put {
            table,
            event_type: name,
            topic,
            schema,
            partition_key,
            writers,
            disabled,
            topics,
        } => {
            let registry = GlueRegistry::new(aws_sdk_glue::Client::new(&aws));
            let new = event_types::NewType {
                name,
                topic,
                schema,
                partition_key,
                writers,
                enabled: !disabled,
            };
            let stored = event_types::put(&store(table.name), &registry, &topics.list, new).await?;
            render::print(output, &stored);
            Ok(Finish::Done)
        }
        EventTypesCommand::Rm {
            table,
            event_type: name,
            yes,
        } => {
            let removed = event_types::rm(&store(table.name), &name, yes).await?;
            render::print(output, &removed);
            Ok(removed.finish())
        }
    }
}

async fn standby_command(command: StandbyCommand, output: Output) -> Result<Finish, CtlError> {
    match command {
        StandbyCommand::Ls {
            table,
            filter,
            limit,
        } => {
            let table = StandbyTable::new(dynamodb().await, table.name);
            let report = standby::ls(&table, &StandbyFilter::try_from(filter)?, limit).await?;
            render::print(output, &report);
            Ok(Finish::Done)
        }
        StandbyCommand::Count { table, filter } => {
            let table = StandbyTable::new(dynamodb().await, table.name);
            let report = standby::count(&table, &StandbyFilter::try_from(filter)?).await?;
            render::print(output, &report);
            Ok(Finish::Done)
        }
        StandbyCommand::Show {
            table,
            event_id,
            hex,
        } => {
            let table = StandbyTable::new(dynamodb().await, table.name);
            let report = standby::show(&table, &event_id, hex).await?;
            render::print(output, &report);
            Ok(Finish::Done)
        }
        StandbyCommand::Replay {
            table,
            filter,
            dead_letter_topic,
            topics,
            dry_run,
        } => {
            let filter = StandbyFilter::try_from(filter)?;
            let standby = StandbyTable::new(dynamodb().await, &table.name);
            let now = render::now_ms();
            let entries = standby::select(&standby, &filter, now).await?;
            if dry_run {
                let report = standby::ReplayReport {
                    dry_run: true,
                    selected: entries.len(),
                    items: entries
                        .iter()
                        .map(|e| standby::ItemRow::of(e, now))
                        .collect(),
                    ..Default::default()
                };
                render::print(output, &report);
                return Ok(Finish::Done);
            }
            let kafka = kafka()?;
            let producer = kafka.renewing_producer(&[])?;
            let sink = KafkaSink::new(producer, dead_letter_topic, topics.list);
            let deleter = DynamoTable::new(standby);
            let progress =
                standby::progress_bar(output == Output::Table && std::io::stderr().is_terminal());
            let report =
                standby::replay(entries, &sink, &deleter, kafka.delivery_timeout, &progress).await;
            render::print(output, &report);
            Ok(report.finish())
        }
        StandbyCommand::Purge {
            table,
            filter,
            all,
            expect,
            yes,
        } => {
            let filter = StandbyFilter::try_from(filter)?;
            if filter.is_empty() && !all {
                return Err(CtlError::Usage(
                    "select items to purge with filters (--topic, --key, --older-than, --newer-than, --event-id, --malformed), or --all for the whole table".into(),
                ));
            }
            let table = StandbyTable::new(dynamodb().await, table.name);
            let report = standby::purge(&table, &filter, expect, yes).await?;
            render::print(output, &report);
            Ok(report.finish())
        }
    }
}

/// The redrive log, when a state table is configured.
async fn redrive_log(state_table: Option<String>, topic: &str) -> Option<RedriveLog> {
    let name = state_table?;
    Some(RedriveLog::new(
        StateTable::new(dynamodb().await, name),
        topic,
    ))
}

async fn dlt_command(command: DltCommand, output: Output) -> Result<Finish, CtlError> {
    match command {
        DltCommand::Ls {
            topic,
            filter,
            limit,
            state_table,
        } => {
            let filter = DltFilter::new(&[], filter)?;
            let log = redrive_log(state_table, &topic.name).await;
            let report = dlt::ls(&kafka()?, &topic.name, &filter, limit, log.as_ref()).await?;
            render::print(output, &report);
            Ok(Finish::Done)
        }
        DltCommand::Show { topic, id, hex } => {
            let report = dlt::show(&kafka()?, &topic.name, id.parse()?, hex).await?;
            render::print(output, &report);
            Ok(Finish::Done)
        }
        DltCommand::Redrive {
            topic,
            ids,
            filter,
            all,
            yes,
            topics,
            jq,
            edit,
            dry_run,
            again,
            state_table,
        } => {
            let filter = DltFilter::new(&ids, filter)?;
            if filter.is_empty() && !all {
                return Err(CtlError::Usage(
                    "select records to redrive: PARTITION:OFFSET ids, --original-topic, --error-class or --event-id (or --all for every record)".into(),
                ));
            }
            if all && !yes && !dry_run {
                return Err(CtlError::Refused(
                    "--all sends every selected record back to the topic its headers name: look first with --dry-run, then add --yes".into(),
                ));
            }
            let repair = match (jq, edit) {
                (Some(code), _) => {
                    Repair::Jq(Jq::compile(&code).map_err(|e| CtlError::Usage(e.to_string()))?)
                }
                (None, true) => Repair::Editor(std::env::var("EDITOR").map_err(|_| {
                    CtlError::Usage("--edit needs $EDITOR (e.g. EDITOR=vim)".into())
                })?),
                (None, false) => Repair::AsIs,
            };
            let log = redrive_log(state_table, &topic.name).await;
            let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            let schemas =
                SchemaCache::new(Arc::new(GlueRegistry::new(aws_sdk_glue::Client::new(&aws))));
            let report = Redrive {
                settings: &kafka()?,
                topic: &topic.name,
                filter: &filter,
                repair: &repair,
                topics: &topics.list,
                dry_run,
                again,
                log: log.as_ref(),
                schemas: &schemas,
            }
            .run()
            .await?;
            render::print(output, &report);
            Ok(report.finish())
        }
    }
}
