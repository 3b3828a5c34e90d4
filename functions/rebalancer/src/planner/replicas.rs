//! Replica balance inside one rack: per-broker targets, then the moves that reach them (the
//! argument that they are the fewest possible is in the [module doc](super)).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use super::index::{IndexedBroker, Work};

/// What balancing one rack did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RackOutcome {
    /// `M_min` for the rack: the moves its targets need (the plan makes exactly these).
    pub min_moves: usize,
    /// Every broker of the rack ended within one replica of every other.
    pub balanced: bool,
}

/// Balances the rack whose brokers are `members` (indices into `brokers`).
pub(super) fn balance_rack(
    work: &mut [Work],
    members: &[usize],
    brokers: &[IndexedBroker],
) -> RackOutcome {
    if members.is_empty() {
        return RackOutcome {
            min_moves: 0,
            balanced: true,
        };
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
    over.sort_by_key(|&b| (Reverse(count[&b] - target[&b]), brokers[b].id));
    let mut under: Vec<usize> = members
        .iter()
        .copied()
        .filter(|b| count[b] < target[b])
        .collect();
    under.sort_by_key(|&b| brokers[b].id);

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
                        (
                            have,
                            count[&b] as isize - target[&b] as isize,
                            brokers[b].id,
                        )
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
    RackOutcome {
        min_moves,
        balanced: highest - lowest <= 1,
    }
}

/// Per-broker targets in one rack: `⌊R/N⌋` or `⌈R/N⌉`, the larger going to the brokers that hold
/// the most today. A broker whose unmovable replicas (partitions being reassigned) exceed its
/// share keeps exactly those, and the others share the rest the same way, so the targets are
/// always reachable and a plan's output is its own plan.
fn rack_targets(
    members: &[usize],
    count: &HashMap<usize, usize>,
    fixed: &HashMap<usize, usize>,
    brokers: &[IndexedBroker],
) -> HashMap<usize, usize> {
    let mut target: HashMap<usize, usize> = HashMap::new();
    let mut rest: Vec<usize> = members.to_vec();
    let mut remaining: usize = members.iter().map(|b| count[b]).sum();
    while !rest.is_empty() {
        let (base, extra) = (remaining / rest.len(), remaining % rest.len());
        rest.sort_by_key(|&b| (Reverse(count[&b]), brokers[b].id));
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
