//! What `standbyctl cluster` concludes from what it read (pure): the platform's health as one
//! report, and what in it needs an operator's attention (the exit code) as opposed to what is
//! worth knowing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use rebalancer::admin::Quorum;
use rebalancer::cluster::{ClusterState, PartitionState};
use rebalancer::planner::Summary;
use serde::Serialize;
use shared::handoff::Handoff;

use crate::render::{self, Report};
use crate::standby::CountReport;

/// Partitions named in a table before "and N more" (JSON lists them all).
const SHOWN: usize = 10;

/// How long after a scale-out's handoff its new brokers may still be unregistered before that
/// needs attention (MSK takes minutes to bring a broker up after the operation ends).
const BROKER_START_GRACE: Duration = Duration::from_secs(30 * 60);

/// A metadata quorum voter that has not caught up with the leader for this long is noted (the
/// leader writes to the metadata log every 500 ms, so a live voter catches up continually).
const VOTER_BEHIND_MS: i64 = 2_000;

/// Everything read from the cluster, the tables and the topics.
#[derive(Debug, Clone)]
pub struct Observed {
    pub state: ClusterState,
    pub quorum: Option<Quorum>,
    /// `min.insync.replicas` of each topic.
    pub min_isr: BTreeMap<String, usize>,
    /// Replication throttles: dynamic cluster-wide broker configs that are set, then per topic
    /// the throttled-replica configs that are set.
    pub broker_throttles: Vec<(String, String)>,
    pub topic_throttles: BTreeMap<String, Vec<(String, String)>>,
    /// The rebalancer's plan for the cluster as it is.
    pub plan: Summary,
    pub standby: Option<StandbyObserved>,
    pub dead_letter_topics: Vec<DeadLetterSize>,
    pub autoscaler: Option<AutoscalerObserved>,
    pub handoff: Option<Handoff>,
    /// Events expired by TTL lately, when CloudWatch could be read.
    pub expired: Option<ExpiredByTtl>,
    /// Parts that could not be read, and why.
    pub unreadable: Vec<String>,
}

/// Events DynamoDB's TTL removed unpublished (lost), as the republisher counted them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ExpiredByTtl {
    pub lookback_hours: u64,
    pub events: u64,
}

#[derive(Debug, Clone)]
pub struct StandbyObserved {
    pub table: String,
    pub count: CountReport,
    /// Held keys, when the state table is known.
    pub held: Option<Vec<republisher::held::Held>>,
}

#[derive(Debug, Clone)]
pub struct AutoscalerObserved {
    pub last_scale: Option<autoscaler::state::ScaleRecord>,
    pub cooldown: Duration,
    /// The newest claim on a scale-out of this cluster (one per cluster version scaled).
    pub latest_claim: Option<Claim>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetterSize {
    pub topic: String,
    /// Records between each partition's low and high watermark; `None` when the topic is not
    /// on the cluster.
    pub records: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// What needs an operator now; `standbyctl cluster` exits 6 when this is not empty.
    pub attention: Vec<String>,
    /// Worth knowing, no action needed by itself.
    pub notes: Vec<String>,
    pub controller: Controller,
    pub brokers: Vec<BrokerRow>,
    pub racks: Vec<RackRow>,
    pub partitions: Partitions,
    pub reassignments: Vec<ReassignmentRow>,
    pub throttles: Throttles,
    pub planner: PlannerView,
    pub standby: Option<StandbyHealth>,
    pub dead_letter_topics: Vec<DeadLetterSize>,
    pub autoscaler: Option<AutoscalerHealth>,
    pub rebalancer_handoff: Option<Handoff>,
    pub expired_by_ttl: Option<ExpiredByTtl>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Controller {
    /// The controller brokers name in metadata (on KRaft, a broker forwarding to the quorum).
    pub reported_by_brokers: Option<i32>,
    /// The active controller: the KRaft metadata quorum's leader.
    pub quorum_leader: Option<i32>,
    pub voters: Vec<VoterRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VoterRow {
    pub id: i32,
    pub lag: i64,
    pub caught_up_seconds_ago: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokerRow {
    pub id: i32,
    pub rack: Option<String>,
    /// In the cluster's metadata (a stopped or fenced broker is not).
    pub registered: bool,
    pub replicas: usize,
    pub leaders: usize,
    pub preferred_leaders: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RackRow {
    pub rack: String,
    pub brokers: usize,
    /// Most minus fewest replicas on a registered broker of the rack.
    pub replica_spread: usize,
    pub leader_spread: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Partitions {
    pub total: usize,
    pub offline: Vec<String>,
    /// Fewer in-sync replicas than replicas, moves in flight aside.
    pub under_replicated: Vec<String>,
    pub under_min_isr: Vec<String>,
    pub leader_not_preferred: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReassignmentRow {
    pub partition: String,
    pub replicas: Vec<i32>,
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Throttles {
    pub brokers: Vec<(String, String)>,
    pub topics: BTreeMap<String, Vec<(String, String)>>,
}

impl Throttles {
    fn is_empty(&self) -> bool {
        self.brokers.is_empty() && self.topics.is_empty()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannerView {
    /// Replica moves the rebalancer would make now.
    pub moves: usize,
    /// Bytes those moves would copy (partitions of known size).
    pub bytes_to_move: u64,
    pub leader_changes: usize,
    /// After the moves: every rack's brokers within one replica of each other.
    pub replicas_balanced: bool,
    /// After the moves: every broker within one replica of every other.
    pub replicas_balanced_across_racks: bool,
    /// After the moves: every rack's brokers hold bytes within its largest movable partition of
    /// each other.
    pub bytes_even: bool,
    pub leaders_balanced: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct StandbyHealth {
    pub table: String,
    pub events: usize,
    pub malformed: usize,
    pub oldest_age_seconds: Option<u64>,
    /// Events whose TTL has passed: DynamoDB deletes them unpublished.
    pub past_ttl: usize,
    pub topics: Vec<crate::standby::TopicCount>,
    /// `None`: the state table was not given, so held keys are unknown.
    pub held_keys: Option<Vec<HeldRow>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HeldRow {
    pub partition_key: String,
    pub held_seconds_ago: u64,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AutoscalerHealth {
    pub last_scale_out: Option<autoscaler::state::ScaleRecord>,
    pub seconds_since_scale_out: Option<u64>,
    pub cooldown_left_seconds: u64,
    pub latest_claim: Option<ClaimView>,
}

/// The autoscaler's claim on scaling one version of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The cluster version (MSK's `currentVersion`) the scale-out was claimed for.
    pub version: String,
    /// Seconds since the epoch.
    pub at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimView {
    pub cluster_version: String,
    pub seconds_ago: u64,
}

fn name(topic: &str, partition: i32) -> String {
    format!("{topic}-{partition}")
}

fn partition_name(p: &PartitionState) -> String {
    name(&p.topic, p.partition)
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `names` as a short list: the first few, then how many more.
fn listed(names: &[String]) -> String {
    let mut text = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        let _ = write!(text, " and {} more", names.len() - SHOWN);
    }
    text
}

/// The report, from what was read at `now_ms`.
pub fn assess(observed: &Observed, now_ms: u64) -> Health {
    let state = &observed.state;
    // Replicas a reassignment is adding: catching up by design, not a loss of redundancy.
    let adding: BTreeMap<(&str, i32), &[i32]> = state
        .ongoing
        .iter()
        .map(|o| ((o.topic.as_str(), o.partition), o.adding.as_slice()))
        .collect();

    let mut partitions = Partitions {
        total: state.partitions.len(),
        ..Default::default()
    };
    let mut min_isr_above_rf: BTreeSet<&str> = BTreeSet::new();
    for p in &state.partitions {
        let min_isr = observed.min_isr.get(&p.topic).copied().unwrap_or(1);
        if p.leader < 0 {
            partitions.offline.push(partition_name(p));
        } else if p.replicas.first() != Some(&p.leader) {
            partitions.leader_not_preferred.push(partition_name(p));
        }
        let being_added = adding
            .get(&(p.topic.as_str(), p.partition))
            .copied()
            .unwrap_or_default();
        let out_of_sync = p
            .replicas
            .iter()
            .any(|r| !p.isr.contains(r) && !being_added.contains(r));
        if out_of_sync {
            partitions.under_replicated.push(partition_name(p));
        }
        if min_isr > p.replicas.len() {
            min_isr_above_rf.insert(&p.topic);
        } else if p.isr.len() < min_isr {
            partitions.under_min_isr.push(partition_name(p));
        }
    }

    let mut rows: BTreeMap<i32, BrokerRow> = state
        .brokers
        .iter()
        .map(|b| {
            (
                b.id,
                BrokerRow {
                    id: b.id,
                    rack: b.rack.clone(),
                    registered: true,
                    replicas: 0,
                    leaders: 0,
                    preferred_leaders: 0,
                },
            )
        })
        .collect();
    let absent = |id: i32| BrokerRow {
        id,
        rack: None,
        registered: false,
        replicas: 0,
        leaders: 0,
        preferred_leaders: 0,
    };
    for p in &state.partitions {
        for (position, &id) in p.replicas.iter().enumerate() {
            let row = rows.entry(id).or_insert_with(|| absent(id));
            row.replicas += 1;
            if position == 0 {
                row.preferred_leaders += 1;
            }
        }
        if p.leader >= 0 {
            rows.entry(p.leader)
                .or_insert_with(|| absent(p.leader))
                .leaders += 1;
        }
    }
    // Brokers the autoscaler added are expected even before they hold anything.
    for id in observed.handoff.iter().flat_map(|h| &h.new_broker_ids) {
        rows.entry(*id).or_insert_with(|| absent(*id));
    }
    let brokers: Vec<BrokerRow> = rows.into_values().collect();
    let unregistered: Vec<&BrokerRow> = brokers.iter().filter(|b| !b.registered).collect();

    let mut by_rack: BTreeMap<String, Vec<&BrokerRow>> = BTreeMap::new();
    for b in brokers.iter().filter(|b| b.registered) {
        by_rack
            .entry(b.rack.clone().unwrap_or_else(|| "(none)".into()))
            .or_default()
            .push(b);
    }
    let spread = |values: Vec<usize>| {
        values.iter().max().copied().unwrap_or(0) - values.iter().min().copied().unwrap_or(0)
    };
    let racks = by_rack
        .into_iter()
        .map(|(rack, members)| RackRow {
            rack,
            brokers: members.len(),
            replica_spread: spread(members.iter().map(|b| b.replicas).collect()),
            leader_spread: spread(members.iter().map(|b| b.leaders).collect()),
        })
        .collect();

    let standby = observed.standby.as_ref().map(|s| StandbyHealth {
        table: s.table.clone(),
        events: s.count.total - s.count.malformed,
        malformed: s.count.malformed,
        oldest_age_seconds: s.count.oldest_age_seconds,
        past_ttl: s.count.topics.iter().map(|t| t.past_ttl).sum(),
        topics: s.count.topics.clone(),
        held_keys: s.held.as_ref().map(|held| {
            held.iter()
                .map(|h| HeldRow {
                    partition_key: h.pk.clone(),
                    held_seconds_ago: now_ms.saturating_sub(h.held_at) / 1000,
                    reason: h.reason.clone(),
                })
                .collect()
        }),
    });

    let autoscaler = observed.autoscaler.as_ref().map(|a| {
        let since = a
            .last_scale
            .as_ref()
            .map(|s| (now_ms / 1000).saturating_sub(s.at));
        AutoscalerHealth {
            last_scale_out: a.last_scale.clone(),
            seconds_since_scale_out: since,
            cooldown_left_seconds: since
                .map(|s| a.cooldown.as_secs().saturating_sub(s))
                .unwrap_or(0),
            latest_claim: a.latest_claim.as_ref().map(|c| ClaimView {
                cluster_version: c.version.clone(),
                seconds_ago: (now_ms / 1000).saturating_sub(c.at),
            }),
        }
    });

    let throttles = Throttles {
        brokers: observed.broker_throttles.clone(),
        topics: observed.topic_throttles.clone(),
    };

    let mut attention: Vec<String> = observed
        .unreadable
        .iter()
        .map(|what| format!("could not read {what}"))
        .collect();
    let mut notes = Vec::new();
    if let Some(expired) = observed.expired.filter(|e| e.events > 0) {
        attention.push(format!(
            "{} expired by TTL in the last {} h: DynamoDB deleted them unpublished, they are lost (the republisher's log names each event id)",
            plural(expired.events as usize, "event", "events"),
            expired.lookback_hours
        ));
    }
    if !partitions.offline.is_empty() {
        attention.push(format!(
            "{} offline (no leader): {}",
            plural(partitions.offline.len(), "partition", "partitions"),
            listed(&partitions.offline)
        ));
    }
    if !partitions.under_min_isr.is_empty() {
        attention.push(format!(
            "{} under min ISR (acks=all writes fail): {}",
            plural(partitions.under_min_isr.len(), "partition", "partitions"),
            listed(&partitions.under_min_isr)
        ));
    }
    if !partitions.under_replicated.is_empty() {
        attention.push(format!(
            "{} under-replicated: {}",
            plural(partitions.under_replicated.len(), "partition", "partitions"),
            listed(&partitions.under_replicated)
        ));
    }
    for topic in &min_isr_above_rf {
        attention.push(format!(
            "topic {topic} has min.insync.replicas above its replication factor: every acks=all write to it fails"
        ));
    }
    // Brokers a scale-out just added take a while to register; until then they are expected.
    let handoff_age_secs = observed
        .handoff
        .as_ref()
        .map(|h| (now_ms / 1000).saturating_sub(h.at));
    for b in &unregistered {
        let starting = b.replicas == 0
            && handoff_age_secs.is_some_and(|age| age < BROKER_START_GRACE.as_secs())
            && observed
                .handoff
                .as_ref()
                .is_some_and(|h| h.new_broker_ids.contains(&b.id));
        let line = format!(
            "broker {} is not registered (it holds {} and {})",
            b.id,
            plural(b.replicas, "replica", "replicas"),
            plural(b.leaders, "leadership", "leaderships")
        );
        if starting {
            notes.push(format!("{line}: the scale-out added it moments ago"));
        } else {
            attention.push(line);
        }
    }
    if let Some(s) = &standby {
        if s.past_ttl > 0 {
            attention.push(format!(
                "{} in {} past the TTL: DynamoDB deletes such items unpublished; replay them now (standbyctl standby replay)",
                plural(s.past_ttl, "event", "events"),
                s.table
            ));
        }
        if let Some(held) = s.held_keys.as_ref().filter(|h| !h.is_empty()) {
            attention.push(format!(
                "{} held in {}: a record is stranded or its topic refuses the republisher",
                plural(held.len(), "key", "keys"),
                s.table
            ));
        }
        if s.events > 0 {
            notes.push(format!(
                "{} waiting in {}, the oldest {} old",
                plural(s.events, "event", "events"),
                s.table,
                render::age(Duration::from_secs(s.oldest_age_seconds.unwrap_or(0)))
            ));
        }
        if s.malformed > 0 {
            attention.push(format!(
                "{} in {} cannot be republished (standbyctl standby ls --malformed)",
                plural(s.malformed, "malformed item", "malformed items"),
                s.table
            ));
        }
    }
    for voter in observed.quorum.iter().flat_map(|q| &q.voters) {
        match voter.caught_up_ms_ago {
            Some(ago) if ago >= VOTER_BEHIND_MS => notes.push(format!(
                "controller quorum voter {} last caught up {} ago ({} behind)",
                voter.id,
                render::age(Duration::from_millis(ago as u64)),
                plural(voter.lag as usize, "record", "records")
            )),
            // A leader elected while the voter was away has never seen it caught up.
            None if voter.lag > 0 => notes.push(format!(
                "controller quorum voter {} has not caught up with the current leader ({} behind)",
                voter.id,
                plural(voter.lag as usize, "record", "records")
            )),
            _ => {}
        }
    }
    if !state.ongoing.is_empty() {
        notes.push(format!(
            "{} being reassigned",
            plural(state.ongoing.len(), "partition", "partitions")
        ));
    }
    if !throttles.is_empty() {
        notes.push(if state.ongoing.is_empty() {
            "replication throttles are in place with no reassignment in flight: a rebalance in progress between runs, or one that stopped (the rebalancer removes them when done)".to_string()
        } else {
            "replication throttles are in place for the reassignments".to_string()
        });
    }
    if observed.plan.moves > 0 || observed.plan.leader_changes > 0 {
        notes.push(format!(
            "{} and {} would balance the cluster",
            plural(observed.plan.moves, "replica move", "replica moves"),
            plural(
                observed.plan.leader_changes,
                "leader change",
                "leader changes"
            )
        ));
    }
    if !partitions.leader_not_preferred.is_empty() {
        notes.push(format!(
            "{} led by a broker other than the preferred one",
            plural(
                partitions.leader_not_preferred.len(),
                "partition",
                "partitions"
            )
        ));
    }
    for dlt in &observed.dead_letter_topics {
        match dlt.records {
            None => attention.push(format!(
                "dead-letter topic {} does not exist on the cluster",
                dlt.topic
            )),
            Some(n) if n > 0 => notes.push(format!(
                "{} in dead-letter topic {} (standbyctl dlt ls)",
                plural(n as usize, "record", "records"),
                dlt.topic
            )),
            Some(_) => {}
        }
    }
    if let Some(a) = &autoscaler
        && a.cooldown_left_seconds > 0
    {
        notes.push(format!(
            "the autoscaler is cooling down for {} more",
            render::age(Duration::from_secs(a.cooldown_left_seconds))
        ));
    }
    if let Some(h) = &observed.handoff {
        notes.push(format!(
            "the rebalancer has yet to move partitions onto brokers {:?}",
            h.new_broker_ids
        ));
    }

    Health {
        attention,
        notes,
        controller: Controller {
            reported_by_brokers: state.controller,
            quorum_leader: observed.quorum.as_ref().map(|q| q.leader),
            voters: observed
                .quorum
                .iter()
                .flat_map(|q| &q.voters)
                .map(|v| VoterRow {
                    id: v.id,
                    lag: v.lag,
                    caught_up_seconds_ago: v.caught_up_ms_ago.map(|ms| ms / 1000),
                })
                .collect(),
        },
        brokers,
        racks,
        partitions,
        reassignments: state
            .ongoing
            .iter()
            .map(|o| ReassignmentRow {
                partition: name(&o.topic, o.partition),
                replicas: o.replicas.clone(),
                adding: o.adding.clone(),
                removing: o.removing.clone(),
            })
            .collect(),
        throttles,
        planner: PlannerView {
            moves: observed.plan.moves,
            bytes_to_move: observed.plan.bytes_to_move,
            leader_changes: observed.plan.leader_changes,
            replicas_balanced: observed.plan.replicas_balanced,
            replicas_balanced_across_racks: observed.plan.replicas_balanced_across_racks,
            bytes_even: observed.plan.bytes_even,
            leaders_balanced: observed.plan.leaders_balanced,
        },
        standby,
        dead_letter_topics: observed.dead_letter_topics.clone(),
        autoscaler,
        rebalancer_handoff: observed.handoff.clone(),
        expired_by_ttl: observed.expired,
    }
}

fn ids(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

impl Report for Health {
    fn human(&self) -> String {
        let mut out = String::new();
        if self.attention.is_empty() {
            out.push_str("OK: nothing needs attention\n");
        } else {
            out.push_str("NEEDS ATTENTION\n");
            for line in &self.attention {
                let _ = writeln!(out, "  ! {line}");
            }
        }
        for line in &self.notes {
            let _ = writeln!(out, "  - {line}");
        }

        let controller = &self.controller;
        let _ = write!(
            out,
            "\nController: {}",
            controller
                .quorum_leader
                .or(controller.reported_by_brokers)
                .map_or_else(|| "unknown".into(), |id| id.to_string())
        );
        if !controller.voters.is_empty() {
            let voters: Vec<String> = controller
                .voters
                .iter()
                .map(|v| match (v.lag, v.caught_up_seconds_ago) {
                    (0, _) => format!("{} in sync", v.id),
                    (lag, Some(ago)) => {
                        format!("{} {lag} records behind, caught up {ago} s ago", v.id)
                    }
                    (lag, None) => format!("{} {lag} records behind", v.id),
                })
                .collect();
            let _ = write!(out, " (quorum voters: {})", voters.join("; "));
        }
        out.push('\n');

        let mut brokers = render::table(&[
            "BROKER",
            "RACK",
            "REGISTERED",
            "REPLICAS",
            "LEADERS",
            "PREFERRED",
        ]);
        for b in &self.brokers {
            brokers.add_row(vec![
                b.id.to_string(),
                b.rack.clone().unwrap_or_else(|| "-".into()),
                if b.registered { "yes" } else { "NO" }.into(),
                b.replicas.to_string(),
                b.leaders.to_string(),
                b.preferred_leaders.to_string(),
            ]);
        }
        let _ = writeln!(out, "{brokers}");
        let racks: Vec<String> = self
            .racks
            .iter()
            .map(|r| {
                format!(
                    "{} ({}): replicas ±{}, leaders ±{}",
                    r.rack,
                    plural(r.brokers, "broker", "brokers"),
                    r.replica_spread,
                    r.leader_spread
                )
            })
            .collect();
        let _ = writeln!(out, "Spread per rack: {}", racks.join("; "));

        let p = &self.partitions;
        let _ = writeln!(
            out,
            "\nPartitions: {} · offline {} · under-replicated {} · under min ISR {} · leader not preferred {}",
            p.total,
            p.offline.len(),
            p.under_replicated.len(),
            p.under_min_isr.len(),
            p.leader_not_preferred.len()
        );
        for (label, list) in [
            ("offline", &p.offline),
            ("under min ISR", &p.under_min_isr),
            ("under-replicated", &p.under_replicated),
            ("leader not preferred", &p.leader_not_preferred),
        ] {
            if !list.is_empty() {
                let _ = writeln!(out, "  {label}: {}", listed(list));
            }
        }
        let _ = writeln!(out, "Reassignments in flight: {}", self.reassignments.len());
        for r in self.reassignments.iter().take(SHOWN) {
            let _ = writeln!(
                out,
                "  {} → [{}] (adding [{}], removing [{}])",
                r.partition,
                ids(&r.replicas),
                ids(&r.adding),
                ids(&r.removing)
            );
        }
        if self.throttles.is_empty() {
            out.push_str("Throttles: none\n");
        } else {
            out.push_str("Throttles:\n");
            for (name, value) in &self.throttles.brokers {
                let _ = writeln!(out, "  brokers {name}={value}");
            }
            for (topic, configs) in &self.throttles.topics {
                for (name, value) in configs {
                    let _ = writeln!(out, "  {topic} {name}={value}");
                }
            }
        }
        let yes_no = |value: bool| if value { "yes" } else { "no" };
        let _ = writeln!(
            out,
            "Planner: {} ({} bytes) and {} would balance (replicas balanced per rack: {}, across racks: {}; bytes even per rack: {}; leaders balanced: {})",
            plural(self.planner.moves, "move", "moves"),
            self.planner.bytes_to_move,
            plural(
                self.planner.leader_changes,
                "leader change",
                "leader changes"
            ),
            yes_no(self.planner.replicas_balanced),
            yes_no(self.planner.replicas_balanced_across_racks),
            yes_no(self.planner.bytes_even),
            yes_no(self.planner.leaders_balanced),
        );

        match self.expired_by_ttl {
            Some(e) => {
                let _ = write!(
                    out,
                    "\nExpired by TTL in the last {} h (CloudWatch): {}",
                    e.lookback_hours, e.events
                );
            }
            None => out.push_str("\nExpired by TTL: not read"),
        }
        match &self.standby {
            None => out.push_str("\nStandby table: not read (--standby-table, or see above)\n"),
            Some(s) => {
                let _ = writeln!(
                    out,
                    "\nStandby table {}: {} waiting{}, {} past TTL, {} malformed",
                    s.table,
                    plural(s.events, "event", "events"),
                    s.oldest_age_seconds
                        .map(|a| format!(
                            ", the oldest {} old",
                            render::age(Duration::from_secs(a))
                        ))
                        .unwrap_or_default(),
                    s.past_ttl,
                    s.malformed
                );
                if !s.topics.is_empty() {
                    let mut topics = render::table(&["TOPIC", "EVENTS", "OLDEST", "PAST TTL"]);
                    for t in &s.topics {
                        topics.add_row(vec![
                            t.topic.clone(),
                            t.items.to_string(),
                            render::age(Duration::from_secs(t.oldest_age_seconds)),
                            t.past_ttl.to_string(),
                        ]);
                    }
                    let _ = writeln!(out, "{topics}");
                }
                match &s.held_keys {
                    None => out.push_str("Held keys: unknown (--state-table)\n"),
                    Some(held) if held.is_empty() => out.push_str("Held keys: none\n"),
                    Some(held) => {
                        let mut table = render::table(&["HELD KEY", "SINCE", "REASON"]);
                        for h in held {
                            table.add_row(vec![
                                h.partition_key.clone(),
                                format!(
                                    "{} ago",
                                    render::age(Duration::from_secs(h.held_seconds_ago))
                                ),
                                h.reason.clone().unwrap_or_default(),
                            ]);
                        }
                        let _ = writeln!(out, "{table}");
                    }
                }
            }
        }
        if self.dead_letter_topics.is_empty() {
            out.push_str("Dead-letter topics: none given (--dead-letter-topic)\n");
        } else {
            let sizes: Vec<String> = self
                .dead_letter_topics
                .iter()
                .map(|d| match d.records {
                    Some(n) => format!("{} {}", d.topic, plural(n as usize, "record", "records")),
                    None => format!("{} MISSING", d.topic),
                })
                .collect();
            let _ = writeln!(out, "Dead-letter topics: {}", sizes.join("; "));
        }
        match &self.autoscaler {
            None => out.push_str("Autoscaler: not given (--state-table and --cluster-arn)\n"),
            Some(a) => {
                let last = match (&a.last_scale_out, a.seconds_since_scale_out) {
                    (Some(s), Some(ago)) => format!(
                        "last scale-out {} → {} brokers, {} ago{}",
                        s.from,
                        s.to,
                        render::age(Duration::from_secs(ago)),
                        if s.handed_off {
                            ""
                        } else {
                            " (not yet handed to the rebalancer)"
                        }
                    ),
                    _ => "no scale-out recorded".into(),
                };
                let claim = a.latest_claim.as_ref().map_or_else(
                    || "no claim".to_string(),
                    |c| {
                        format!(
                            "latest claim on cluster version {}, {} ago",
                            c.cluster_version,
                            render::age(Duration::from_secs(c.seconds_ago))
                        )
                    },
                );
                let _ = writeln!(
                    out,
                    "Autoscaler: {last}; cooldown left {}; {claim}",
                    render::age(Duration::from_secs(a.cooldown_left_seconds))
                );
            }
        }
        if self.autoscaler.is_some() {
            let _ = writeln!(
                out,
                "Rebalancer handoff: {}",
                self.rebalancer_handoff.as_ref().map_or_else(
                    || "none".into(),
                    |h| format!("brokers [{}] to fill", ids(&h.new_broker_ids))
                )
            );
        }
        out.trim_end().to_string()
    }
}

#[cfg(test)]
mod tests {
    use rebalancer::cluster::{Broker, Ongoing};

    use super::*;

    fn partition(
        topic: &str,
        n: i32,
        replicas: &[i32],
        isr: &[i32],
        leader: i32,
    ) -> PartitionState {
        PartitionState {
            topic: topic.into(),
            partition: n,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
        }
    }

    fn observed(brokers: &[i32], partitions: Vec<PartitionState>) -> Observed {
        let state = ClusterState {
            brokers: brokers
                .iter()
                .map(|&id| Broker {
                    id,
                    rack: Some(format!("az-{}", id % 3)),
                })
                .collect(),
            partitions,
            ongoing: vec![],
            controller: Some(1),
        };
        let plan = rebalancer::planner::plan(&state.description(), &Default::default()).summary;
        Observed {
            state,
            quorum: None,
            min_isr: BTreeMap::from([("t".to_string(), 2)]),
            broker_throttles: vec![],
            topic_throttles: BTreeMap::new(),
            plan,
            standby: None,
            dead_letter_topics: vec![],
            autoscaler: None,
            handoff: None,
            expired: Some(ExpiredByTtl {
                lookback_hours: 24,
                events: 0,
            }),
            unreadable: vec![],
        }
    }

    #[test]
    fn a_healthy_cluster_needs_nothing() {
        let health = assess(
            &observed(
                &[1, 2, 3],
                vec![
                    partition("t", 0, &[1, 2, 3], &[1, 2, 3], 1),
                    partition("t", 1, &[2, 3, 1], &[2, 3, 1], 2),
                    partition("t", 2, &[3, 1, 2], &[3, 1, 2], 3),
                ],
            ),
            0,
        );
        assert!(health.attention.is_empty(), "{:?}", health.attention);
        assert!(health.notes.is_empty(), "{:?}", health.notes);
        assert!(
            health
                .brokers
                .iter()
                .all(|b| b.registered && b.replicas == 3)
        );
    }

    #[test]
    fn a_stopped_broker_leaves_partitions_under_replicated_and_itself_unregistered() {
        let health = assess(
            &observed(
                &[1, 2],
                vec![
                    partition("t", 0, &[1, 2, 3], &[1, 2], 1),
                    partition("t", 1, &[3, 1, 2], &[1, 2], 1),
                    partition("t", 2, &[3, 1], &[1], 1),
                    partition("u", 0, &[3], &[], -1),
                ],
            ),
            0,
        );
        assert_eq!(
            health.partitions.under_replicated,
            ["t-0", "t-1", "t-2", "u-0"]
        );
        assert_eq!(
            health.partitions.under_min_isr,
            ["t-2", "u-0"],
            "t: min ISR 2"
        );
        assert_eq!(health.partitions.offline, ["u-0"]);
        assert_eq!(health.partitions.leader_not_preferred, ["t-1", "t-2"]);
        let stopped = health.brokers.iter().find(|b| b.id == 3).unwrap();
        assert!(!stopped.registered);
        assert_eq!((stopped.replicas, stopped.preferred_leaders), (4, 3));
        let attention = health.attention.join("\n");
        for expected in [
            "offline",
            "under min ISR",
            "under-replicated",
            "broker 3 is not registered",
        ] {
            assert!(attention.contains(expected), "{expected}: {attention}");
        }
        let table = health.human();
        assert!(table.starts_with("NEEDS ATTENTION"), "{table}");
    }

    #[test]
    fn a_partition_being_moved_is_not_under_replicated_and_throttles_are_a_note() {
        let mut observed = observed(
            &[1, 2, 3, 4],
            vec![partition("t", 0, &[1, 2, 4], &[1, 2], 1)],
        );
        observed.state.ongoing.push(Ongoing {
            topic: "t".into(),
            partition: 0,
            replicas: vec![1, 2, 3, 4],
            adding: vec![4],
            removing: vec![3],
        });
        observed.broker_throttles =
            vec![("leader.replication.throttled.rate".into(), "1000".into())];
        let health = assess(&observed, 0);
        assert!(health.attention.is_empty(), "{:?}", health.attention);
        assert!(
            health
                .notes
                .iter()
                .any(|n| n.contains("throttles are in place for"))
        );
        assert!(
            health
                .notes
                .iter()
                .any(|n| n.contains("1 partition being reassigned"))
        );
    }

    #[test]
    fn a_missing_dead_letter_topic_needs_attention_and_a_full_one_is_a_note() {
        let mut observed = observed(&[1], vec![partition("t", 0, &[1], &[1], 1)]);
        observed.min_isr.clear();
        observed.dead_letter_topics = vec![
            DeadLetterSize {
                topic: "gone".into(),
                records: None,
            },
            DeadLetterSize {
                topic: "dlt".into(),
                records: Some(3),
            },
        ];
        let health = assess(&observed, 0);
        assert_eq!(
            health.attention,
            ["dead-letter topic gone does not exist on the cluster"]
        );
        assert_eq!(
            health.notes,
            ["3 records in dead-letter topic dlt (standbyctl dlt ls)"]
        );
    }

    #[test]
    fn an_original_replica_out_of_sync_during_a_move_is_under_replicated() {
        let mut observed = observed(
            &[1, 2, 3, 4],
            vec![partition("t", 0, &[1, 2, 3, 4], &[1, 2], 1)],
        );
        observed.state.ongoing.push(Ongoing {
            topic: "t".into(),
            partition: 0,
            replicas: vec![1, 2, 3, 4],
            adding: vec![4],
            removing: vec![3],
        });
        let health = assess(&observed, 0);
        assert_eq!(
            health.partitions.under_replicated,
            ["t-0"],
            "replica 3 is not being added and is out of sync"
        );
    }

    #[test]
    fn min_isr_above_the_replication_factor_needs_attention() {
        let mut observed = observed(&[1, 2], vec![partition("t", 0, &[1, 2], &[1, 2], 1)]);
        observed.min_isr.insert("t".into(), 3);
        let health = assess(&observed, 0);
        assert!(health.partitions.under_min_isr.is_empty());
        assert_eq!(
            health.attention,
            [
                "topic t has min.insync.replicas above its replication factor: every acks=all write to it fails"
            ]
        );
    }

    #[test]
    fn a_broker_a_scale_out_just_added_is_expected_for_a_while() {
        let handoff = |at: u64| Handoff {
            new_broker_ids: vec![4],
            operation_arn: "op".into(),
            at,
        };
        let mut fresh = observed(&[1], vec![partition("t", 0, &[1], &[1], 1)]);
        fresh.min_isr.clear();
        fresh.handoff = Some(handoff(1_000));
        let health = assess(&fresh, 1_060_000);
        assert!(health.attention.is_empty(), "{:?}", health.attention);
        assert!(
            health
                .notes
                .iter()
                .any(|n| n.contains("broker 4 is not registered"))
        );
        let health = assess(&fresh, (1_000 + 3_600) * 1000);
        assert!(
            health
                .attention
                .iter()
                .any(|a| a.contains("broker 4 is not registered")),
            "an hour later it needs attention"
        );
    }

    #[test]
    fn lost_events_and_unreadable_parts_need_attention() {
        let mut observed = observed(&[1], vec![partition("t", 0, &[1], &[1], 1)]);
        observed.min_isr.clear();
        observed.expired = Some(ExpiredByTtl {
            lookback_hours: 24,
            events: 3,
        });
        observed.unreadable = vec!["the standby table s: throttled".into()];
        let health = assess(&observed, 0);
        assert_eq!(health.attention.len(), 2, "{:?}", health.attention);
        assert!(health.attention[0].starts_with("could not read the standby table s"));
        assert!(health.attention[1].starts_with("3 events expired by TTL in the last 24 h"));
    }

    #[test]
    fn a_voter_the_current_leader_never_saw_caught_up_is_noted() {
        let mut observed = observed(&[1], vec![partition("t", 0, &[1], &[1], 1)]);
        observed.min_isr.clear();
        observed.quorum = Some(Quorum {
            leader: 1,
            voters: vec![
                rebalancer::admin::Voter {
                    id: 1,
                    lag: 0,
                    caught_up_ms_ago: Some(0),
                },
                rebalancer::admin::Voter {
                    id: 3,
                    lag: 256,
                    caught_up_ms_ago: None,
                },
            ],
        });
        let health = assess(&observed, 0);
        assert_eq!(
            health.notes,
            [
                "controller quorum voter 3 has not caught up with the current leader (256 records behind)"
            ]
        );
        assert_eq!(health.controller.quorum_leader, Some(1));
    }

    #[test]
    fn the_cooldown_counts_down_from_the_last_scale_out() {
        let mut observed = observed(&[1], vec![partition("t", 0, &[1], &[1], 1)]);
        observed.min_isr.clear();
        observed.autoscaler = Some(AutoscalerObserved {
            last_scale: Some(autoscaler::state::ScaleRecord {
                at: 1_000,
                operation_arn: "op".into(),
                from: 3,
                to: 6,
                brokers_before: vec![1, 2, 3],
                handed_off: true,
            }),
            cooldown: Duration::from_secs(3600),
            latest_claim: Some(Claim {
                version: "K3AEGXETSR30VB".into(),
                at: 1_000,
            }),
        });
        let health = assess(&observed, 1_600_000);
        let autoscaler = health.autoscaler.unwrap();
        assert_eq!(autoscaler.seconds_since_scale_out, Some(600));
        assert_eq!(autoscaler.cooldown_left_seconds, 3000);
        assert_eq!(
            autoscaler.latest_claim,
            Some(ClaimView {
                cluster_version: "K3AEGXETSR30VB".into(),
                seconds_ago: 600
            })
        );
        assert!(health.attention.is_empty());
    }
}
