//! The command line, declared with clap. Every flag that names a resource can also come from the
//! same environment variable the Lambda functions read, so one env file serves both.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use shared::topics::TopicAllowList;

const EXIT_CODES: &str = "\
Exit codes: 0 done (also when nothing matched) · 1 a service call failed · 2 bad usage or \
configuration · 3 no record with that id · 4 partly done (failures listed) · 5 refused without --yes \
· 6 cluster: something needs attention";

/// Inspect, replay and purge the standby event store; repair and redrive the dead-letter topic.
#[derive(Debug, Parser)]
#[command(name = "standbyctl", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// How results are printed: tables for people, JSON for scripts.
    #[arg(long, short, value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The standby table: events written while Kafka was unreachable.
    #[command(subcommand)]
    Standby(StandbyCommand),
    /// The dead-letter topic: records Kafka rejected for good, and malformed standby items.
    #[command(subcommand)]
    Dlt(DltCommand),
    /// The event gateway's event types: what partners may publish, and where it goes.
    #[command(subcommand, name = "event-types")]
    EventTypes(EventTypesCommand),
    /// The platform's health: brokers, controller, partitions offline / under-replicated / under
    /// min ISR, leaders, reassignments, throttles, the rebalancer's plan, the standby backlog,
    /// held keys, dead-letter topics, the autoscaler and the rebalancer's handoff. Exits 6 when
    /// something needs attention.
    Cluster(ClusterArgs),
}

#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// The standby table: its backlog per topic, events past their TTL.
    #[arg(long, env = "STANDBY_TABLE_NAME", value_name = "NAME")]
    pub standby_table: Option<String>,
    /// The functions' state table: held keys, the autoscaler's state, the rebalancer's handoff.
    #[arg(long, env = "STATE_TABLE_NAME", value_name = "NAME")]
    pub state_table: Option<String>,
    /// The MSK cluster the autoscaler's state and the handoff are kept for.
    #[arg(long, env = "MSK_CLUSTER_ARN", value_name = "ARN")]
    pub cluster_arn: Option<String>,
    /// Dead-letter topics to size (repeatable, or comma-separated).
    #[arg(
        long = "dead-letter-topic",
        env = "STANDBY_DEAD_LETTER_TOPIC",
        value_name = "TOPIC",
        value_delimiter = ','
    )]
    pub dead_letter_topics: Vec<String>,
    /// Topics the rebalancer leaves alone (repeatable, or comma-separated).
    #[arg(
        long = "exclude-topic",
        env = "REBALANCE_EXCLUDED_TOPICS",
        value_name = "TOPIC",
        value_delimiter = ','
    )]
    pub excluded_topics: Vec<String>,
    /// The rebalancer's rack mode (`spread` or `keep`), for the moves its planner would make.
    #[arg(long, env = "REBALANCE_RACK_MODE", default_value = "spread")]
    pub rack_mode: rebalancer::planner::RackMode,
    /// The rebalancer's bytes mode (`fewest` or `even`), for the moves its planner would make.
    #[arg(long, env = "REBALANCE_BYTES_MODE", default_value = "fewest")]
    pub bytes_mode: rebalancer::planner::BytesMode,
    /// How far back to count events DynamoDB's TTL removed unpublished (the republisher's
    /// `ExpiredByTtl` metric in CloudWatch).
    #[arg(long, value_name = "HOURS", default_value_t = 24)]
    pub expired_lookback_hours: u64,
    /// The republisher's function name, as its metrics name it.
    #[arg(long, value_name = "NAME", default_value = "republisher")]
    pub republisher_function: String,
    /// The autoscaler's cooldown after a scale-out.
    #[arg(
        long,
        env = "SCALE_COOLDOWN_SECONDS",
        value_name = "SECONDS",
        default_value_t = 3600
    )]
    pub scale_cooldown_seconds: u64,
}

#[derive(Debug, Args)]
pub struct EventTypesTableArg {
    /// The event types table.
    #[arg(long = "table", env = "EVENT_TYPES_TABLE", value_name = "NAME")]
    pub name: String,
}

#[derive(Debug, Subcommand)]
pub enum EventTypesCommand {
    /// List every event type: topic, schema, partition key, writers, enabled.
    Ls {
        #[command(flatten)]
        table: EventTypesTableArg,
    },
    /// Add an event type, or replace the one of that name. Checked first: the name, the topic
    /// (on EVENT_TOPICS), the JSON pointer, the writers, and that the schema is in the registry
    /// as a JSON schema.
    Put {
        #[command(flatten)]
        table: EventTypesTableArg,
        /// The name partners publish to (1-128 of A-Z a-z 0-9 . _ -).
        #[arg(value_name = "NAME")]
        event_type: String,
        /// The topic its events go to (never shown to partners).
        #[arg(long)]
        topic: String,
        /// The schema, as REGISTRY/NAME in the Glue schema registry; events are validated
        /// against its latest version.
        #[arg(long, value_name = "REGISTRY/NAME")]
        schema: String,
        /// JSON pointer to the field that is the Kafka key (e.g. /order_id); without it events
        /// have no key and no order among them.
        #[arg(long, value_name = "POINTER")]
        partition_key: Option<String>,
        /// Who may publish: a client id, or scope:NAME for callers holding that scope
        /// (repeatable, at least one).
        #[arg(long = "writer", value_name = "CLIENT_ID|scope:NAME", required = true)]
        writers: Vec<String>,
        /// Store it disabled: nobody may publish it.
        #[arg(long)]
        disabled: bool,
        #[command(flatten)]
        topics: EventTopicsArg,
    },
    /// Remove an event type; partners publishing to it get 403 within the gateway's cache time.
    Rm {
        #[command(flatten)]
        table: EventTypesTableArg,
        #[arg(value_name = "NAME")]
        event_type: String,
        /// Remove without asking.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Args)]
pub struct StandbyTableArg {
    /// The standby table.
    #[arg(long = "table", env = "STANDBY_TABLE_NAME", value_name = "NAME")]
    pub name: String,
}

#[derive(Debug, Subcommand)]
pub enum StandbyCommand {
    /// List waiting items, oldest first, with the total and the oldest age.
    Ls {
        #[command(flatten)]
        table: StandbyTableArg,
        #[command(flatten)]
        filter: StandbyFilterArgs,
        /// Show at most this many rows (the totals still count every match).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Count waiting items per topic, with the oldest age.
    Count {
        #[command(flatten)]
        table: StandbyTableArg,
        #[command(flatten)]
        filter: StandbyFilterArgs,
    },
    /// Print one item decoded: headers, schema version, value.
    Show {
        #[command(flatten)]
        table: StandbyTableArg,
        /// The item's event id (its sort key).
        event_id: String,
        /// Print the value as hex even when it is printable text.
        #[arg(long)]
        hex: bool,
    },
    /// Republish selected items now, with the republisher's rules: original topic, key, headers
    /// and bytes, per-key order, delete after the broker's ack, poison to the dead-letter topic.
    Replay {
        #[command(flatten)]
        table: StandbyTableArg,
        #[command(flatten)]
        filter: StandbyFilterArgs,
        /// Where records Kafka rejects for good (and malformed items) go.
        #[arg(long, env = "STANDBY_DEAD_LETTER_TOPIC", value_name = "TOPIC")]
        dead_letter_topic: String,
        #[command(flatten)]
        topics: EventTopicsArg,
        /// List what would be republished; publish and delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete selected items. Without --yes, prints what it would delete and exits 5.
    Purge {
        #[command(flatten)]
        table: StandbyTableArg,
        #[command(flatten)]
        filter: StandbyFilterArgs,
        /// Select the whole table (required when no filter is given).
        #[arg(long)]
        all: bool,
        /// Delete only if the selection still has exactly N items, as the listing showed
        /// (exit 5 otherwise: the table changed since).
        #[arg(long, value_name = "N")]
        expect: Option<usize>,
        /// Really delete.
        #[arg(long)]
        yes: bool,
    },
}

/// Which standby items a command takes. Filters combine with AND.
#[derive(Debug, Clone, Default, Args)]
pub struct StandbyFilterArgs {
    /// Only events for this Kafka topic.
    #[arg(long)]
    pub topic: Option<String>,
    /// Only events with this Kafka key (UTF-8); needs --topic.
    #[arg(long, requires = "topic")]
    pub key: Option<String>,
    /// Only events created at least this long ago (e.g. 90s, 15m, 2h, 3d).
    #[arg(long, value_parser = parse_age, value_name = "AGE")]
    pub older_than: Option<Duration>,
    /// Only events created less than this long ago.
    #[arg(long, value_parser = parse_age, value_name = "AGE")]
    pub newer_than: Option<Duration>,
    /// Only these events (repeatable).
    #[arg(long = "event-id", value_name = "ID")]
    pub event_ids: Vec<String>,
    /// Only items that are not valid standby records.
    #[arg(long)]
    pub malformed: bool,
}

/// The topics events may be sent to, as the republisher has them.
#[derive(Debug, Clone, Args)]
pub struct EventTopicsArg {
    /// Topic names or prefixes ending in `*`, comma-separated (the template's EventTopics);
    /// events for any other topic are refused.
    #[arg(
        long = "event-topics",
        env = "EVENT_TOPICS",
        value_name = "LIST",
        value_parser = parse_topics
    )]
    pub list: TopicAllowList,
}

#[derive(Debug, Args)]
pub struct DltTopicArg {
    /// The dead-letter topic.
    #[arg(
        long = "topic",
        env = "STANDBY_DEAD_LETTER_TOPIC",
        value_name = "TOPIC"
    )]
    pub name: String,
}

#[derive(Debug, Subcommand)]
pub enum DltCommand {
    /// List dead-letter records with their error context.
    Ls {
        #[command(flatten)]
        topic: DltTopicArg,
        #[command(flatten)]
        filter: DltFilterArgs,
        /// Show at most this many rows (the total still counts every match).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Where redrives are recorded; adds a column saying where each record went.
        #[arg(long, env = "STATE_TABLE_NAME", value_name = "NAME")]
        state_table: Option<String>,
    },
    /// Print one record: every header, the value decoded.
    Show {
        #[command(flatten)]
        topic: DltTopicArg,
        /// PARTITION:OFFSET, as `dlt ls` prints it.
        id: String,
        /// Print the value as hex even when it is printable text.
        #[arg(long)]
        hex: bool,
    },
    /// Publish selected records back to their original topic, optionally repaired first, and
    /// record where each went.
    Redrive {
        #[command(flatten)]
        topic: DltTopicArg,
        /// Records by PARTITION:OFFSET.
        ids: Vec<String>,
        #[command(flatten)]
        filter: DltFilterArgs,
        /// Take every record that passes the filters (there is no implicit "all"); needs --yes
        /// unless --dry-run.
        #[arg(long)]
        all: bool,
        /// Confirm a redrive of --all.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        topics: EventTopicsArg,
        /// A jq filter applied to JSON payloads before sending, e.g. '.amount = 42 | del(.debug)'.
        #[arg(long, value_name = "FILTER", conflicts_with = "edit")]
        jq: Option<String>,
        /// Open each payload in $EDITOR (pretty JSON when it is JSON) before sending.
        #[arg(long)]
        edit: bool,
        /// Show what would be sent; send and record nothing.
        #[arg(long)]
        dry_run: bool,
        /// Send records that were redriven before too.
        #[arg(long)]
        again: bool,
        /// Where redrives are recorded (and looked up, so a record is not sent twice by mistake).
        #[arg(long, env = "STATE_TABLE_NAME", value_name = "NAME")]
        state_table: Option<String>,
    },
}

/// Which dead-letter records a command takes. Filters combine with AND.
#[derive(Debug, Clone, Default, Args)]
pub struct DltFilterArgs {
    /// Only records dead-lettered from this topic.
    #[arg(long)]
    pub original_topic: Option<String>,
    /// Only records of this error class (`non_retriable`, `malformed`).
    #[arg(long)]
    pub error_class: Option<String>,
    /// Only records of these events (repeatable).
    #[arg(long = "event-id", value_name = "ID")]
    pub event_ids: Vec<String>,
}

fn parse_topics(text: &str) -> Result<TopicAllowList, String> {
    TopicAllowList::parse(text).ok_or_else(|| {
        "expected topic names or prefixes ending in `*`, comma-separated (not a bare `*`)".into()
    })
}

/// An age such as `90s`, `15m`, `2h 30m` or `3d`.
fn parse_age(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{e}: expected an age such as 90s, 15m, 2h or 3d"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn ages_are_human() {
        assert_eq!(parse_age("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_age("2h 30m"), Ok(Duration::from_secs(9000)));
        assert!(parse_age("soon").unwrap_err().contains("90s"));
    }

    #[test]
    fn a_key_needs_its_topic() {
        let error = Cli::try_parse_from([
            "standbyctl",
            "standby",
            "count",
            "--table",
            "t",
            "--key",
            "k",
        ])
        .unwrap_err();
        assert!(error.to_string().contains("--topic"), "{error}");
    }
}
