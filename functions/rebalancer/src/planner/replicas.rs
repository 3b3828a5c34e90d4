//! The replica moves that reach the [targets](super::targets): first the crossings between
//! racks the targets chose, then, inside each rack, moves from brokers above their target to
//! brokers below it (why those always exist, and are the fewest, is in the [module
//! doc](super)).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use super::index::{IndexedBroker, Work};
use super::summary::replica_counts;
use super::targets::Crossing;

/// Moves each crossing's replica to the broker of its new rack furthest below its target,
/// counting every departure first: a rack that both sends and receives would otherwise fill a
/// broker that is about to be at its target, and that replica would have to move again.
pub(super) fn cross_racks(
    work: &mut [Work],
    crossings: &[Crossing],
    target: &[usize],
    rack_of: &[usize],
    brokers: &[IndexedBroker],
) {
    let mut count = replica_counts(work, brokers.len());
    for crossing in crossings {
        count[crossing.from] -= 1;
    }
    for crossing in crossings {
        let replicas = &work[crossing.partition].replicas;
        let Some(destination) = (0..brokers.len())
            .filter(|&b| rack_of[b] == crossing.to_rack && !replicas.contains(&b))
            .max_by_key(|&b| {
                (
                    target[b] as isize - count[b] as isize,
                    Reverse(brokers[b].id),
                )
            })
        else {
            continue;
        };
        if work[crossing.partition].relocate(crossing.from, destination) {
            count[destination] += 1;
        }
    }
}

/// Moves replicas inside the rack whose brokers are `members` (indices into `brokers`) until
/// each holds `target[b]`, or as close as the movable replicas allow (the summary measures what
/// it reached).
pub(super) fn balance_rack(
    work: &mut [Work],
    members: &[usize],
    target: &[usize],
    brokers: &[IndexedBroker],
) {
    if members.is_empty() {
        return;
    }
    let is_member: HashSet<usize> = members.iter().copied().collect();
    let mut count: HashMap<usize, usize> = members.iter().map(|&b| (b, 0)).collect();
    // Movable replicas per broker and topic (largest first, so the smallest is popped first),
    // and per (topic, broker) counts in this rack.
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
    let size: Vec<u64> = work.iter().map(|w| w.size).collect();
    for topics in holdings.values_mut() {
        for partitions in topics.values_mut() {
            partitions.sort_by_key(|&p| Reverse((size[p], p)));
        }
    }

    let mut over: Vec<usize> = members
        .iter()
        .copied()
        .filter(|b| count[b] > target[*b])
        .collect();
    over.sort_by_key(|&b| (Reverse(count[&b] - target[b]), brokers[b].id));
    let mut under: Vec<usize> = members
        .iter()
        .copied()
        .filter(|b| count[b] < target[*b])
        .collect();
    under.sort_by_key(|&b| brokers[b].id);

    for source in over {
        let Some(mut topics) = holdings.remove(&source) else {
            continue;
        };
        // The smallest replica goes first, so the rack's moves copy the fewest bytes; among
        // equal sizes, the topic whose move evens things out most: the source's count of it minus
        // the lowest count among destinations with room. Keys only ever fall (the source sheds
        // its smallest, destinations fill or leave), so stale heap entries are re-keyed when
        // popped.
        let gain = |topic: usize,
                    count: &HashMap<usize, usize>,
                    topic_count: &HashMap<(usize, usize), u32>| {
            let fewest = under
                .iter()
                .filter(|b| count[b] < target[**b])
                .map(|&b| topic_count.get(&(topic, b)).copied().unwrap_or(0))
                .min()
                .unwrap_or(0);
            i64::from(topic_count[&(topic, source)]) - i64::from(fewest)
        };
        let smallest = |partitions: &[usize]| Reverse(partitions.last().map_or(0, |&p| size[p]));
        let mut heap: BinaryHeap<(Reverse<u64>, i64, Reverse<usize>)> = topics
            .iter()
            .map(|(&t, partitions)| {
                (
                    smallest(partitions),
                    gain(t, &count, &topic_count),
                    Reverse(t),
                )
            })
            .collect();
        while count[&source] > target[source] {
            let Some((size, key, Reverse(topic))) = heap.pop() else {
                break;
            };
            let candidates = topics.get_mut(&topic).expect("topic held");
            let current = (smallest(candidates), gain(topic, &count, &topic_count));
            if (size, key) != current {
                heap.push((current.0, current.1, Reverse(topic)));
                continue;
            }
            let chosen = candidates.iter().enumerate().rev().find_map(|(i, &p)| {
                under
                    .iter()
                    .copied()
                    .filter(|b| count[b] < target[*b] && !work[p].replicas.contains(b))
                    .min_by_key(|&b| {
                        let have = topic_count.get(&(topic, b)).copied().unwrap_or(0);
                        (have, count[&b] as isize - target[b] as isize, brokers[b].id)
                    })
                    .map(|destination| (i, p, destination))
            });
            let Some((i, p, destination)) = chosen else {
                continue;
            };
            candidates.remove(i);
            if !work[p].relocate(source, destination) {
                continue;
            }
            *count.get_mut(&source).expect("member") -= 1;
            *count.get_mut(&destination).expect("member") += 1;
            *topic_count.get_mut(&(topic, source)).expect("counted") -= 1;
            *topic_count.entry((topic, destination)).or_default() += 1;
            if !candidates.is_empty() {
                heap.push((
                    smallest(candidates),
                    gain(topic, &count, &topic_count),
                    Reverse(topic),
                ));
            }
        }
    }
}
