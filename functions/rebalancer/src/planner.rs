//! The planner: target replica lists that balance the cluster with the fewest replica moves.
//! Pure and deterministic; the executor and the offline `plan` command both call [`plan`].
//!
//! **Replicas.** Moves stay inside a rack (an AZ), so every partition keeps the racks it had and
//! existing rack violations are never made worse. In each rack of `N` brokers holding `R`
//! replicas, every broker's target is `⌊R/N⌋` or `⌈R/N⌉`, the `R mod N` larger targets going to
//! the brokers that hold the most today. Each move takes a replica from a broker above its target
//! to one below it that does not hold the same partition. Such a replica always exists: a broker
//! above target holds at least `⌊R/N⌋ + 1` replicas, one below holds at most `⌊R/N⌋`, and a
//! broker holds a partition at most once, so the first holds a partition the second lacks. Every
//! move lowers the total excess by one, so the plan makes exactly
//! `M_min = Σ_racks Σ_brokers max(0, current − target)` moves — also when a partition has several
//! replicas in one rack (the single-move argument does not need one replica per rack). Only
//! replicas the planner may not touch (partitions being reassigned, excluded topics' replicas
//! are not counted at all) can leave a broker above target; the summary then says so.
//!
//! **Per-topic spread.** Among the many plans with `M_min` moves, each move takes a replica of
//! the topic where the source broker holds the most more than the emptiest destination, to the
//! destination holding least of that topic: greedy on the per-topic imbalance, which never
//! changes the number of moves.
//!
//! **Leaders.** Preferred leaders (first replicas) are balanced by reordering replica lists only —
//! no data moves — to `⌊P/B⌋` or `⌈P/B⌉` per broker across the cluster, along augmenting paths
//! (leadership handed along a chain of partitions) where no direct hand-over exists; when even
//! that cannot reach the bounds, the summary reports it. A preferred leader election applies
//! the new order.
//!
//! Planning its own output yields no moves and no reorders.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};

use serde::Serialize;

use crate::cluster::{ClusterDescription, ReassignmentJson, TopicPartition};

/// MSK's own canary topics: never moved, never counted.
pub const ALWAYS_EXCLUDED: [&str; 2] = ["__amazon_msk_canary", "__amazon_msk_canary_state"];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Topics neither moved nor counted, besides [`ALWAYS_EXCLUDED`].
    pub excluded_topics: BTreeSet<String>,
}

/// One partition whose replica list changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    pub topic: String,
    pub partition: i32,
    pub previous: Vec<i32>,
    pub replicas: Vec<i32>,
    /// Replicas that must be copied to a new broker (zero for a pure reorder).
    pub moves: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokerSummary {
    pub id: i32,
    pub rack: String,
    pub replicas_before: usize,
    pub replicas_after: usize,
    pub leaders_before: usize,
    pub leaders_after: usize,
}

/// A topic's spread: the largest, over racks, of (most − fewest) replicas of the topic on one
/// broker of the rack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicSpread {
    pub topic: String,
    pub before: u32,
    pub after: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Replica moves of the plan.
    pub moves: usize,
    /// The theoretical minimum for the same balance targets.
    pub min_moves: usize,
    /// Partitions whose preferred leader changes.
    pub leader_changes: usize,
    /// Bytes to copy, for partitions whose size is known.
    pub bytes_to_move: u64,
    /// Every rack's brokers end within one replica of each other.
    pub replicas_balanced: bool,
    /// Every broker ends within one preferred leadership of every other.
    pub leaders_balanced: bool,
    /// Partitions left as they are: being reassigned, or on brokers missing from the description.
    pub untouchable_partitions: usize,
    pub brokers: Vec<BrokerSummary>,
    pub topics: Vec<TopicSpread>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Sorted by topic and partition.
    pub targets: Vec<Target>,
    pub summary: Summary,
}

impl Plan {
    /// The plan as `kafka-reassign-partitions --execute` takes it.
    pub fn reassignment_json(&self) -> ReassignmentJson {
        ReassignmentJson::new(
            self.targets
                .iter()
                .map(|t| (t.topic.clone(), t.partition, t.replicas.clone())),
        )
    }
}

/// A partition during planning; brokers are indices into the sorted broker list.
struct Work {
    topic: usize,
    replicas: Vec<usize>,
    /// May be reordered and have replicas moved.
    movable: bool,
}

/// Plans the rebalance of `cluster`.
pub fn plan(cluster: &ClusterDescription, options: &Options) -> Plan {
    let mut brokers: Vec<(i32, String)> = cluster
        .brokers
        .iter()
        .map(|b| (b.id, b.rack.clone().unwrap_or_default()))
        .collect();
    brokers.sort();
    brokers.dedup_by_key(|b| b.0);
    let index: HashMap<i32, usize> = brokers.iter().enumerate().map(|(i, b)| (b.0, i)).collect();
    let racks: BTreeSet<&str> = brokers.iter().map(|b| b.1.as_str()).collect();
    let rack_of: Vec<usize> = brokers
        .iter()
        .map(|b| racks.iter().position(|r| *r == b.1).expect("rack listed"))
        .collect();

    let excluded =
        |topic: &str| ALWAYS_EXCLUDED.contains(&topic) || options.excluded_topics.contains(topic);
    let in_flight: HashSet<&TopicPartition> = cluster.reassigning.iter().collect();
    let mut topic_names: Vec<&str> = cluster
        .partitions
        .iter()
        .map(|p| p.topic.as_str())
        .filter(|t| !excluded(t))
        .collect();
    topic_names.sort_unstable();
    topic_names.dedup();
    let topic_index: HashMap<&str, usize> = topic_names
        .iter()
        .enumerate()
        .map(|(i, t)| (*t, i))
        .collect();

    // Counted partitions in (topic, partition) order; `source[i]` is its index in `cluster`.
    let mut source: Vec<usize> = (0..cluster.partitions.len())
        .filter(|&i| !excluded(&cluster.partitions[i].topic))
        .collect();
    source.sort_by(|&a, &b| {
        let (pa, pb) = (&cluster.partitions[a], &cluster.partitions[b]);
        (&pa.topic, pa.partition).cmp(&(&pb.topic, pb.partition))
    });
    let mut untouchable = 0;
    let mut work: Vec<Work> = source
        .iter()
        .map(|&i| {
            let p = &cluster.partitions[i];
            let known: Vec<usize> = p
                .replicas
                .iter()
                .filter_map(|id| index.get(id).copied())
                .collect();
            let distinct = known.iter().collect::<HashSet<_>>().len() == known.len();
            let reassigning = in_flight.contains(&TopicPartition {
                topic: p.topic.clone(),
                partition: p.partition,
            });
            let movable = !reassigning && distinct && known.len() == p.replicas.len();
            if !movable {
                untouchable += 1;
            }
            Work {
                topic: topic_index[p.topic.as_str()],
                replicas: known,
                movable,
            }
        })
        .collect();

    let replicas_before = replica_counts(&work, brokers.len());
    let leaders_before = leader_counts(&work, brokers.len());
    let spread_before = topic_spreads(&work, &rack_of, racks.len(), topic_names.len());

    let mut min_moves = 0;
    let mut replicas_balanced = true;
    for rack in 0..racks.len() {
        let members: Vec<usize> = (0..brokers.len()).filter(|&b| rack_of[b] == rack).collect();
        let (needed, balanced) = balance_rack(&mut work, &members, &brokers);
        min_moves += needed;
        replicas_balanced &= balanced;
    }
    let leaders_balanced = balance_leaders(&mut work, brokers.len());

    let replicas_after = replica_counts(&work, brokers.len());
    let leaders_after = leader_counts(&work, brokers.len());
    let spread_after = topic_spreads(&work, &rack_of, racks.len(), topic_names.len());

    let mut targets = Vec::new();
    let (mut moves, mut leader_changes, mut bytes_to_move) = (0, 0, 0);
    for (w, &i) in work.iter().zip(&source) {
        let original = &cluster.partitions[i];
        let replicas: Vec<i32> = w.replicas.iter().map(|&b| brokers[b].0).collect();
        if !w.movable || replicas == original.replicas {
            continue;
        }
        let added = replicas
            .iter()
            .filter(|r| !original.replicas.contains(r))
            .count();
        moves += added;
        if replicas.first() != original.replicas.first() {
            leader_changes += 1;
        }
        bytes_to_move += original.size_bytes.unwrap_or(0) * added as u64;
        targets.push(Target {
            topic: original.topic.clone(),
            partition: original.partition,
            previous: original.replicas.clone(),
            replicas,
            moves: added,
            size_bytes: original.size_bytes,
        });
    }

    Plan {
        targets,
        summary: Summary {
            moves,
            min_moves,
            leader_changes,
            bytes_to_move,
            replicas_balanced,
            leaders_balanced,
            untouchable_partitions: untouchable,
            brokers: brokers
                .iter()
                .enumerate()
                .map(|(b, (id, rack))| BrokerSummary {
                    id: *id,
                    rack: rack.clone(),
                    replicas_before: replicas_before[b],
                    replicas_after: replicas_after[b],
                    leaders_before: leaders_before[b],
                    leaders_after: leaders_after[b],
                })
                .collect(),
            topics: topic_names
                .iter()
                .enumerate()
                .map(|(t, name)| TopicSpread {
                    topic: (*name).to_string(),
                    before: spread_before[t],
                    after: spread_after[t],
                })
                .collect(),
        },
    }
}

fn replica_counts(work: &[Work], brokers: usize) -> Vec<usize> {
    let mut counts = vec![0; brokers];
    for w in work {
        for &b in &w.replicas {
            counts[b] += 1;
        }
    }
    counts
}

fn leader_counts(work: &[Work], brokers: usize) -> Vec<usize> {
    let mut counts = vec![0; brokers];
    for w in work {
        if let Some(&leader) = w.replicas.first() {
            counts[leader] += 1;
        }
    }
    counts
}

fn topic_spreads(work: &[Work], rack_of: &[usize], racks: usize, topics: usize) -> Vec<u32> {
    let brokers = rack_of.len();
    let mut per_topic: Vec<HashMap<usize, u32>> = vec![HashMap::new(); topics];
    for w in work {
        for &b in &w.replicas {
            *per_topic[w.topic].entry(b).or_default() += 1;
        }
    }
    per_topic
        .iter()
        .map(|counts| {
            (0..racks)
                .map(|rack| {
                    let in_rack = (0..brokers).filter(|&b| rack_of[b] == rack);
                    let values: Vec<u32> = in_rack
                        .map(|b| counts.get(&b).copied().unwrap_or(0))
                        .collect();
                    if values.iter().all(|v| *v == 0) {
                        return 0;
                    }
                    values.iter().max().unwrap_or(&0) - values.iter().min().unwrap_or(&0)
                })
                .max()
                .unwrap_or(0)
        })
        .collect()
}

/// Balances one rack; returns (M_min for the rack, whether every broker reached its target).
fn balance_rack(work: &mut [Work], members: &[usize], brokers: &[(i32, String)]) -> (usize, bool) {
    if members.is_empty() {
        return (0, true);
    }
    let is_member: HashSet<usize> = members.iter().copied().collect();
    let mut count: HashMap<usize, usize> = members.iter().map(|&b| (b, 0)).collect();
    // Movable replicas per broker and topic, and per (topic, broker) counts in this rack.
    let mut holdings: HashMap<usize, BTreeMap<usize, Vec<usize>>> = HashMap::new();
    let mut topic_count: HashMap<(usize, usize), u32> = HashMap::new();
    for (p, w) in work.iter().enumerate() {
        for &b in w.replicas.iter().filter(|b| is_member.contains(b)) {
            *count.get_mut(&b).expect("member") += 1;
            *topic_count.entry((w.topic, b)).or_default() += 1;
            if w.movable {
                holdings
                    .entry(b)
                    .or_default()
                    .entry(w.topic)
                    .or_default()
                    .push(p);
            }
        }
    }

    let fixed: HashMap<usize, usize> = members
        .iter()
        .map(|&b| {
            let movable: usize = holdings
                .get(&b)
                .map_or(0, |t| t.values().map(Vec::len).sum());
            (b, count[&b] - movable)
        })
        .collect();
    let target = rack_targets(members, &count, &fixed, brokers);
    let min_moves: usize = members
        .iter()
        .map(|b| count[b].saturating_sub(target[b]))
        .sum();

    let mut over: Vec<usize> = members
        .iter()
        .copied()
        .filter(|b| count[b] > target[b])
        .collect();
    over.sort_by_key(|&b| (Reverse(count[&b] - target[&b]), brokers[b].0));
    let mut under: Vec<usize> = members
        .iter()
        .copied()
        .filter(|b| count[b] < target[b])
        .collect();
    under.sort_by_key(|&b| brokers[b].0);

    for source in over {
        let Some(mut topics) = holdings.remove(&source) else {
            continue;
        };
        // The topic whose move evens things out most goes first: the source's count of it minus
        // the lowest count among destinations with room. Keys only ever fall (the source sheds,
        // destinations fill or leave), so stale heap entries are re-keyed when popped.
        let gain = |topic: usize,
                    count: &HashMap<usize, usize>,
                    topic_count: &HashMap<(usize, usize), u32>| {
            let fewest = under
                .iter()
                .filter(|b| count[b] < target[b])
                .map(|&b| topic_count.get(&(topic, b)).copied().unwrap_or(0))
                .min()
                .unwrap_or(0);
            i64::from(topic_count[&(topic, source)]) - i64::from(fewest)
        };
        let mut heap: BinaryHeap<(i64, Reverse<usize>)> = topics
            .keys()
            .map(|&t| (gain(t, &count, &topic_count), Reverse(t)))
            .collect();
        while count[&source] > target[&source] {
            let Some((key, Reverse(topic))) = heap.pop() else {
                break;
            };
            let current = gain(topic, &count, &topic_count);
            if key != current {
                heap.push((current, Reverse(topic)));
                continue;
            }
            let candidates = topics.get_mut(&topic).expect("topic held");
            let chosen = candidates.iter().enumerate().rev().find_map(|(i, &p)| {
                under
                    .iter()
                    .copied()
                    .filter(|b| count[b] < target[b] && !work[p].replicas.contains(b))
                    .min_by_key(|&b| {
                        let have = topic_count.get(&(topic, b)).copied().unwrap_or(0);
                        (have, count[&b] as isize - target[&b] as isize, brokers[b].0)
                    })
                    .map(|destination| (i, p, destination))
            });
            let Some((i, p, destination)) = chosen else {
                continue;
            };
            candidates.remove(i);
            let slot = work[p]
                .replicas
                .iter()
                .position(|&b| b == source)
                .expect("source holds p");
            work[p].replicas[slot] = destination;
            *count.get_mut(&source).expect("member") -= 1;
            *count.get_mut(&destination).expect("member") += 1;
            *topic_count.get_mut(&(topic, source)).expect("counted") -= 1;
            *topic_count.entry((topic, destination)).or_default() += 1;
            if !candidates.is_empty() {
                heap.push((gain(topic, &count, &topic_count), Reverse(topic)));
            }
        }
    }
    let (lowest, highest) = members.iter().fold((usize::MAX, 0), |(lo, hi), b| {
        (lo.min(count[b]), hi.max(count[b]))
    });
    (min_moves, highest - lowest <= 1)
}

/// Per-broker targets in one rack: `⌊R/N⌋` or `⌈R/N⌉`, the larger going to the brokers that hold
/// the most today. A broker whose unmovable replicas (partitions being reassigned) exceed its
/// share keeps exactly those, and the others share the rest the same way, so the targets are
/// always reachable and a plan's output is its own plan.
fn rack_targets(
    members: &[usize],
    count: &HashMap<usize, usize>,
    fixed: &HashMap<usize, usize>,
    brokers: &[(i32, String)],
) -> HashMap<usize, usize> {
    let mut target: HashMap<usize, usize> = HashMap::new();
    let mut rest: Vec<usize> = members.to_vec();
    let mut remaining: usize = members.iter().map(|b| count[b]).sum();
    while !rest.is_empty() {
        let (base, extra) = (remaining / rest.len(), remaining % rest.len());
        rest.sort_by_key(|&b| (Reverse(count[&b]), brokers[b].0));
        let pinned: Vec<usize> = rest
            .iter()
            .enumerate()
            .filter(|&(rank, b)| fixed[b] > base + usize::from(rank < extra))
            .map(|(_, &b)| b)
            .collect();
        if pinned.is_empty() {
            for (rank, &b) in rest.iter().enumerate() {
                target.insert(b, base + usize::from(rank < extra));
            }
            break;
        }
        for b in pinned {
            target.insert(b, fixed[&b]);
            remaining -= fixed[&b];
            rest.retain(|&r| r != b);
        }
    }
    target
}

/// Balances preferred leaders by reordering movable partitions; true when every broker ends
/// within one leadership of every other.
fn balance_leaders(work: &mut [Work], brokers: usize) -> bool {
    if brokers == 0 {
        return true;
    }
    let mut leaders = leader_counts(work, brokers);
    let total: usize = leaders.iter().sum();
    let (low, high) = (total / brokers, total.div_ceil(brokers));
    let mut led: Vec<Vec<usize>> = vec![Vec::new(); brokers];
    let mut holds: Vec<Vec<usize>> = vec![Vec::new(); brokers];
    for (p, w) in work
        .iter()
        .enumerate()
        .filter(|(_, w)| w.movable && !w.replicas.is_empty())
    {
        led[w.replicas[0]].push(p);
        for &b in &w.replicas {
            holds[b].push(p);
        }
    }

    // Hand leadership along `path` (partition, new leader), last hop first.
    let hand_over = |work: &mut [Work], led: &mut [Vec<usize>], path: Vec<(usize, usize)>| {
        for (p, to) in path.into_iter().rev() {
            let replicas = &mut work[p].replicas;
            let at = replicas
                .iter()
                .position(|&b| b == to)
                .expect("new leader is a replica");
            let broker = replicas.remove(at);
            replicas.insert(0, broker);
            led[to].push(p);
        }
    };

    // Each hand-over lowers the total distance to the bounds and neither phase undoes the
    // other's work, but the second can open paths the first lacked: repeat until nothing moves.
    loop {
        let mut changed = false;
        // Brokers above the upper bound give leadership away along a path ending at a broker below it.
        for start in 0..brokers {
            while leaders[start] > high {
                let path = find_path(
                    start,
                    brokers,
                    |x, visit| {
                        for &p in &led[x] {
                            if work[p].replicas[0] != x {
                                continue; // stale: leadership moved on
                            }
                            for &y in &work[p].replicas[1..] {
                                if visit(y, p) {
                                    return true;
                                }
                            }
                        }
                        false
                    },
                    |y| leaders[y] < high,
                );
                let Some((end, path)) = path else { break };
                leaders[start] -= 1;
                leaders[end] += 1;
                changed = true;
                hand_over(work, &mut led, path);
            }
        }
        // Brokers below the lower bound take leadership along a path starting at a broker above it.
        for start in 0..brokers {
            while leaders[start] < low {
                let path = find_path(
                    start,
                    brokers,
                    |x, visit| {
                        for &p in &holds[x] {
                            let leader = work[p].replicas[0];
                            if leader != x && visit(leader, p) {
                                return true;
                            }
                        }
                        false
                    },
                    |y| leaders[y] > low,
                );
                let Some((end, path)) = path else { break };
                leaders[start] += 1;
                leaders[end] -= 1;
                changed = true;
                // The path runs start ← … ← end: each partition's leadership moves to the broker
                // nearer to `start`, which is the broker the hop was taken from.
                let forward: Vec<(usize, usize)> = path_targets(start, &path);
                hand_over(work, &mut led, forward);
            }
        }
        if !changed {
            break;
        }
    }
    leaders.iter().all(|&l| l >= low && l <= high)
}

/// Breadth-first search from `start`. `expand(x, visit)` calls `visit(y, p)` for every broker
/// `y` reachable from `x` through partition `p`; the search stops at the first `y` for which
/// `is_end(y)` holds. Returns that broker and the hops `(partition, broker reached)` in order.
fn find_path(
    start: usize,
    brokers: usize,
    mut expand: impl FnMut(usize, &mut dyn FnMut(usize, usize) -> bool) -> bool,
    is_end: impl Fn(usize) -> bool,
) -> Option<(usize, Vec<(usize, usize)>)> {
    let mut parent: Vec<Option<(usize, usize)>> = vec![None; brokers];
    let mut seen = vec![false; brokers];
    seen[start] = true;
    let mut queue = VecDeque::from([start]);
    let mut end = None;
    while let Some(x) = queue.pop_front() {
        let found = expand(x, &mut |y, p| {
            if seen[y] {
                return false;
            }
            seen[y] = true;
            parent[y] = Some((x, p));
            if is_end(y) {
                end = Some(y);
                return true;
            }
            queue.push_back(y);
            false
        });
        if found {
            break;
        }
    }
    let end = end?;
    let mut hops = Vec::new();
    let mut at = end;
    while let Some((from, p)) = parent[at] {
        hops.push((p, at));
        at = from;
    }
    hops.reverse();
    Some((end, hops))
}

/// For a path found from `start` through "holders" (each hop reaching the partition's leader),
/// the (partition, new leader) pairs: each partition goes to the broker the hop came from.
fn path_targets(start: usize, hops: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let mut from = start;
    hops.iter()
        .map(|&(p, reached)| {
            let pair = (p, from);
            from = reached;
            pair
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Broker, Partition};

    fn cluster(racks: &[(i32, &str)], partitions: &[(&str, i32, &[i32])]) -> ClusterDescription {
        ClusterDescription {
            brokers: racks
                .iter()
                .map(|(id, rack)| Broker {
                    id: *id,
                    rack: Some((*rack).into()),
                })
                .collect(),
            partitions: partitions
                .iter()
                .map(|(topic, partition, replicas)| Partition {
                    topic: (*topic).into(),
                    partition: *partition,
                    replicas: replicas.to_vec(),
                    size_bytes: Some(100),
                })
                .collect(),
            reassigning: vec![],
        }
    }

    fn apply(cluster: &ClusterDescription, plan: &Plan) -> ClusterDescription {
        let mut next = cluster.clone();
        for target in &plan.targets {
            let p = next
                .partitions
                .iter_mut()
                .find(|p| p.topic == target.topic && p.partition == target.partition)
                .unwrap();
            p.replicas = target.replicas.clone();
        }
        next
    }

    const SIX: [(i32, &str); 6] = [(1, "a"), (2, "b"), (3, "c"), (4, "a"), (5, "b"), (6, "c")];

    #[test]
    fn scale_out_from_three_to_six_brokers() {
        let partitions: Vec<(String, i32, Vec<i32>)> = (0..12)
            .map(|p| {
                (
                    "orders".to_string(),
                    p,
                    vec![1 + p % 3, 1 + (p + 1) % 3, 1 + (p + 2) % 3],
                )
            })
            .collect();
        let refs: Vec<(&str, i32, &[i32])> = partitions
            .iter()
            .map(|(t, p, r)| (t.as_str(), *p, r.as_slice()))
            .collect();
        let before = cluster(&SIX, &refs);
        let plan = plan(&before, &Options::default());
        assert_eq!(plan.summary.moves, plan.summary.min_moves);
        assert_eq!(
            plan.summary.min_moves, 18,
            "half of each rack's 12 replicas move"
        );
        for b in &plan.summary.brokers {
            assert_eq!(b.replicas_after, 6, "{b:?}");
            assert_eq!(b.leaders_after, 2, "{b:?}");
        }
        assert!(plan.summary.replicas_balanced && plan.summary.leaders_balanced);
        let rack = |id: i32| SIX.iter().find(|b| b.0 == id).unwrap().1;
        for target in &plan.targets {
            let racks = |r: &[i32]| r.iter().map(|b| rack(*b)).collect::<BTreeSet<_>>();
            assert_eq!(
                racks(&target.previous),
                racks(&target.replicas),
                "moves stay in their rack"
            );
        }
        let again = super::plan(&apply(&before, &plan), &Options::default());
        assert!(again.targets.is_empty(), "{:?}", again.targets);
    }

    #[test]
    fn ceiling_targets_go_to_the_fullest_brokers() {
        // Rack a: broker 1 holds 3, broker 4 holds 2, broker 7 holds 0 → targets 2, 2, 1.
        let brokers = [(1, "a"), (4, "a"), (7, "a")];
        let before = cluster(
            &brokers,
            &[
                ("t", 0, &[1]),
                ("t", 1, &[1]),
                ("t", 2, &[1]),
                ("t", 3, &[4]),
                ("t", 4, &[4]),
            ],
        );
        let plan = plan(&before, &Options::default());
        assert_eq!(plan.summary.min_moves, 1);
        assert_eq!(plan.summary.moves, 1);
        let after: Vec<usize> = plan
            .summary
            .brokers
            .iter()
            .map(|b| b.replicas_after)
            .collect();
        assert_eq!(after, vec![2, 2, 1]);
    }

    #[test]
    fn two_replicas_in_one_rack_still_meet_the_minimum() {
        let brokers = [(1, "a"), (2, "a"), (3, "a"), (4, "a")];
        let before = cluster(
            &brokers,
            &[
                ("t", 0, &[1, 2]),
                ("t", 1, &[1, 2]),
                ("t", 2, &[1, 2]),
                ("t", 3, &[1, 2]),
            ],
        );
        let plan = plan(&before, &Options::default());
        assert_eq!(plan.summary.moves, plan.summary.min_moves);
        assert_eq!(plan.summary.min_moves, 4);
        for target in &plan.targets {
            let distinct: BTreeSet<_> = target.replicas.iter().collect();
            assert_eq!(distinct.len(), target.replicas.len());
        }
        assert!(plan.summary.brokers.iter().all(|b| b.replicas_after == 2));
    }

    #[test]
    fn excluded_and_reassigning_partitions_are_left_alone() {
        let mut before = cluster(
            &[(1, "a"), (2, "a")],
            &[
                ("__amazon_msk_canary", 0, &[1]),
                ("t", 0, &[1]),
                ("t", 1, &[1]),
                ("busy", 0, &[1]),
            ],
        );
        before.reassigning.push(TopicPartition {
            topic: "busy".into(),
            partition: 0,
        });
        let plan = plan(&before, &Options::default());
        assert!(plan.targets.iter().all(|t| t.topic == "t"));
        assert_eq!(plan.summary.untouchable_partitions, 1);
        assert!(
            !plan
                .summary
                .topics
                .iter()
                .any(|t| t.topic.starts_with("__amazon"))
        );
        // Three counted replicas on broker 1 (busy's included): targets 2 and 1, one move.
        assert_eq!(plan.summary.moves, 1);
    }

    #[test]
    fn leaders_balance_by_reordering_only() {
        let before = cluster(
            &[(1, "a"), (2, "b"), (3, "c")],
            &[
                ("t", 0, &[1, 2, 3]),
                ("t", 1, &[1, 3, 2]),
                ("t", 2, &[1, 2, 3]),
            ],
        );
        let plan = plan(&before, &Options::default());
        assert_eq!(plan.summary.moves, 0);
        assert_eq!(plan.summary.leader_changes, 2);
        assert!(plan.summary.brokers.iter().all(|b| b.leaders_after == 1));
    }

    #[test]
    fn leadership_travels_along_a_chain_when_no_direct_hand_over_exists() {
        // Broker 1 leads two partitions it shares only with 2; 2 leads one shared with 3;
        // 3 leads nothing. Only 1 → 2 → 3 balances them.
        let before = cluster(
            &[(1, "a"), (2, "b"), (3, "c")],
            &[("t", 0, &[1, 2]), ("t", 1, &[1, 2]), ("t", 2, &[2, 3])],
        );
        let plan = plan(&before, &Options::default());
        assert!(plan.summary.leaders_balanced, "{:?}", plan.summary.brokers);
        assert!(plan.summary.brokers.iter().all(|b| b.leaders_after == 1));
    }

    #[test]
    fn moves_prefer_keeping_topics_spread() {
        // Rack a: broker 1 holds 4 of "big" and 2 of "small"; brokers 4 and 7 are new.
        let brokers = [(1, "a"), (4, "a"), (7, "a")];
        let before = cluster(
            &brokers,
            &[
                ("big", 0, &[1]),
                ("big", 1, &[1]),
                ("big", 2, &[1]),
                ("big", 3, &[1]),
                ("small", 0, &[1]),
                ("small", 1, &[1]),
            ],
        );
        let plan = plan(&before, &Options::default());
        assert_eq!(plan.summary.moves, 4);
        let spread: HashMap<&str, u32> = plan
            .summary
            .topics
            .iter()
            .map(|t| (t.topic.as_str(), t.after))
            .collect();
        assert!(spread["big"] <= 1 && spread["small"] <= 1, "{spread:?}");
    }

    #[test]
    fn reassignment_json_is_what_the_kafka_tool_reads() {
        let before = cluster(&[(1, "a"), (2, "a")], &[("t", 0, &[1]), ("t", 1, &[1])]);
        let json =
            serde_json::to_value(plan(&before, &Options::default()).reassignment_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"version": 1, "partitions": [
                {"topic": "t", "partition": 1, "replicas": [2], "log_dirs": ["any"]}
            ]})
        );
    }
}
