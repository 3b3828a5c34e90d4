//! The offline commands, for operators who review a plan before anything moves:
//! `rebalancer describe` writes a live cluster's description, `rebalancer plan` prints the plan
//! for a description as `kafka-reassign-partitions` JSON (stdout) and a summary (stderr).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::admin::AdminClient;
use crate::cluster::ClusterDescription;
use crate::planner::{self, BytesMode, Options, RackMode, Summary};

#[derive(Debug, Parser)]
#[command(
    name = "rebalancer",
    about = "Without arguments: the Lambda function. With a command: offline planning."
)]
pub struct Cli {
    /// Without one, the binary is the Lambda function (Lambda starts it without arguments).
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Writes the live cluster's description (brokers, racks, replicas with their sizes from
    /// the brokers' log directories, reassignments) as JSON.
    Describe {
        /// host:port,…
        #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
        bootstrap_servers: String,
        /// PLAINTEXT, SSL, or SASL_SSL (TLS + MSK IAM).
        #[arg(long, env = "KAFKA_SECURITY_PROTOCOL", default_value = "SASL_SSL")]
        security_protocol: String,
        /// Region the MSK IAM token is signed for (SASL_SSL only).
        #[arg(long, env = "AWS_REGION")]
        region: Option<String>,
    },
    /// Plans the rebalance of a described cluster; changes nothing.
    Plan {
        /// A cluster description file (see `describe`), or - for stdin.
        file: PathBuf,
        /// Topics never moved (repeatable); MSK's canary topics always are.
        #[arg(long = "exclude-topic")]
        excluded_topics: Vec<String>,
        /// `spread`: replicas may change racks (each partition keeping distinct racks) so brokers
        /// balance across racks; `keep`: every partition stays in the racks it is in.
        #[arg(
            long = "rack-mode",
            env = "REBALANCE_RACK_MODE",
            default_value = "spread"
        )]
        racks: RackMode,
        /// `fewest`: copy the fewest bytes among the plans with the fewest moves; `even`: then
        /// swap replicas inside each rack until its brokers' bytes are within its largest
        /// movable replica of each other (more moves).
        #[arg(
            long = "bytes-mode",
            env = "REBALANCE_BYTES_MODE",
            default_value = "fewest"
        )]
        bytes: BytesMode,
        /// The replication throttle the copy time is estimated at, bytes/s per broker.
        #[arg(
            long,
            env = "REBALANCE_THROTTLE_BYTES_PER_SEC",
            default_value_t = 50 * 1024 * 1024
        )]
        throttle_bytes_per_sec: u64,
    },
}

pub async fn run(command: Command) -> Result<()> {
    match command {
        Command::Describe {
            bootstrap_servers,
            security_protocol,
            region,
        } => {
            let mut env = std::collections::HashMap::from([
                (sdk::kafka::BOOTSTRAP_SERVERS, bootstrap_servers.as_str()),
                (sdk::kafka::SECURITY_PROTOCOL, security_protocol.as_str()),
            ]);
            if let Some(region) = &region {
                env.insert(sdk::kafka::AWS_REGION, region);
            }
            let kafka = sdk::kafka::KafkaSettings::admin_from_env(&env, "rebalancer")?;
            let transport = crate::settings::transport(&kafka);
            let mut client = AdminClient::connect(&kafka.bootstrap_servers, &transport).await?;
            let state = client.cluster_state().await?;
            let sizes = client.log_dirs().await?.partition_sizes(&state);
            let description = state.sized_description(&sizes);
            println!("{}", serde_json::to_string_pretty(&description)?);
        }
        Command::Plan {
            file,
            excluded_topics,
            racks,
            bytes,
            throttle_bytes_per_sec,
        } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let cluster: ClusterDescription = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a cluster description", file.display()))?;
            let options = Options {
                excluded_topics: excluded_topics.into_iter().collect::<BTreeSet<_>>(),
                racks,
                bytes,
            };
            let plan = planner::plan(&cluster, &options);
            println!(
                "{}",
                serde_json::to_string_pretty(&plan.reassignment_json())?
            );
            eprint!("{}", render_summary(&plan.summary));
            eprintln!(
                "{}",
                render_estimate(
                    &crate::executor::estimate(&plan.targets, throttle_bytes_per_sec),
                    throttle_bytes_per_sec
                )
            );
        }
    }
    Ok(())
}

/// How long the copies take at the throttle rate, as text.
pub fn render_estimate(estimate: &crate::executor::Estimate, rate: u64) -> String {
    let mut out = format!(
        "copying {} bytes takes about {} s at {rate} bytes/s per broker (the busiest broker copies {} bytes)",
        estimate.bytes_to_move, estimate.seconds, estimate.busiest_broker_bytes
    );
    if estimate.unknown_sizes > 0 {
        let _ = write!(
            out,
            "; {} moving partitions have no known size and are not counted",
            estimate.unknown_sizes
        );
    }
    out
}

/// The summary as text: totals, then a row per broker, then the least even topics.
pub fn render_summary(summary: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "moves: {} (minimum {}), leader changes: {}, bytes to move: {} (lower bound at the minimum moves: {})",
        summary.moves,
        summary.min_moves,
        summary.leader_changes,
        summary.bytes_to_move,
        summary.bytes_lower_bound
    );
    let _ = writeln!(
        out,
        "replicas balanced per rack: {}, across racks: {}, bytes even per rack: {}, leaders balanced: {}, partitions left alone: {}",
        summary.replicas_balanced,
        summary.replicas_balanced_across_racks,
        summary.bytes_even,
        summary.leaders_balanced,
        summary.untouchable_partitions
    );
    let _ = writeln!(
        out,
        "{:>8} {:>8} {:>17} {:>17} {:>31}",
        "broker", "rack", "replicas", "leaders", "bytes"
    );
    for b in &summary.brokers {
        let _ = writeln!(
            out,
            "{:>8} {:>8} {:>7} -> {:<7} {:>7} -> {:<7} {:>14} -> {:<14}",
            b.id,
            b.rack,
            b.replicas_before,
            b.replicas_after,
            b.leaders_before,
            b.leaders_after,
            b.bytes_before,
            b.bytes_after
        );
    }
    let (lightest, heaviest) = summary.brokers.iter().fold((u64::MAX, 0), |(lo, hi), b| {
        (lo.min(b.bytes_after), hi.max(b.bytes_after))
    });
    if heaviest > 0 {
        let _ = writeln!(
            out,
            "bytes per broker after: {lightest} to {heaviest} (before: {} to {})",
            summary
                .brokers
                .iter()
                .map(|b| b.bytes_before)
                .min()
                .unwrap_or(0),
            summary
                .brokers
                .iter()
                .map(|b| b.bytes_before)
                .max()
                .unwrap_or(0)
        );
    }
    let mut topics: Vec<_> = summary.topics.iter().collect();
    topics.sort_by_key(|t| std::cmp::Reverse((t.after, t.before)));
    let _ = writeln!(
        out,
        "per-topic spread (most - fewest replicas on a broker of one rack), least even first:"
    );
    for t in topics.iter().take(10) {
        let _ = writeln!(out, "  {:<40} {} -> {}", t.topic, t.before, t.after);
    }
    out
}
