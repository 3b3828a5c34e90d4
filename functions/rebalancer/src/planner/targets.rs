//! How many replicas each broker should hold, and which replicas cross racks to get there: one
//! min-cost [flow] whose cost is, in this order, the sum of squares of the brokers' replica
//! counts (the most even balance reachable), the replica moves, the bytes those moves copy.
//!
//! The network, one unit per replica moved:
//!
//! ```text
//! source ─remove─▶ broker ─copy─▶ rack pool ─▶ broker ─add─▶ sink
//!                    │
//!                    └─copy─▶ its share of a group ─▶ its rack's pool
//!                                                 └─▶ the group ─▶ pool of a rack it is not in
//! ```
//!
//! * `remove` and `add` price the change in the broker's square; a broker gives up only replicas
//!   the planner may move.
//! * A *group* is the movable partitions on one set of brokers, in distinct racks, on fewer
//!   racks than the cluster has ([`RackMode::Spread`] only). Each broker's replicas outside
//!   groups form one list, and its replicas of each group another, smallest first; a copy costs
//!   one move and the bytes of the list's next replica.
//! * A group sends at most as many replicas across racks as it has partitions, each to a rack it
//!   has none in, so every partition keeps as many distinct racks as it had. Its partitions are
//!   interchangeable for the counts, which is what makes the aggregate exact: any split of a
//!   group's crossings among its brokers and destination racks can be given distinct partitions
//!   of the group. For bytes it is not: two brokers of a group may both have priced a crossing at
//!   the group's smallest partition, and only one can send it ([`choose_crossings`]).
//!
//! Each partition crosses racks at most once. With three racks or fewer that loses nothing: a
//! partition in distinct racks that moves two replicas, both landing outside their own racks,
//! can be rewritten with at most one crossing and no more moves (with RF 2 on three racks, for
//! instance, a swap of racks becomes two moves within the racks); with four racks or more the
//! planner may miss plans with fewer moves or a more even balance.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use super::RackMode;
use super::flow::{ArcId, Cost, Network, Pricing};
use super::index::Indexed;

/// A replica to move to another rack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Crossing {
    pub partition: usize,
    pub from: usize,
    pub to_rack: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Targets {
    /// Replicas each broker (by index) ends with.
    pub per_broker: Vec<usize>,
    /// The fewest moves that reach them.
    pub moves: usize,
    pub crossings: Vec<Crossing>,
}

/// Partitions on one set of brokers that may move across racks.
struct Group {
    /// Smallest first.
    partitions: Vec<usize>,
    /// Per broker of the group: the arc carrying its replicas of the group across racks.
    crossing_from: Vec<(usize, ArcId)>,
    /// Per rack the group is not in: the arc carrying the group's replicas into it.
    crossing_to: Vec<(usize, ArcId)>,
}

pub(super) fn targets(indexed: &Indexed, mode: RackMode) -> Targets {
    let brokers = indexed.brokers.len();
    let mut holding = vec![0usize; brokers];
    let mut movable = vec![0u32; brokers];
    // Each broker's movable replicas outside any group, and the groups.
    let mut ungrouped: Vec<Vec<usize>> = vec![Vec::new(); brokers];
    let mut groups: BTreeMap<Vec<usize>, Vec<usize>> = BTreeMap::new();
    for (p, w) in indexed.work.iter().enumerate() {
        for &b in &w.replicas {
            holding[b] += 1;
        }
        if !w.movable {
            continue;
        }
        for &b in &w.replicas {
            movable[b] += 1;
        }
        if mode == RackMode::Spread && crosses(indexed, &w.replicas) {
            let mut set = w.replicas.clone();
            set.sort_unstable();
            groups.entry(set).or_default().push(p);
        } else {
            for &b in &w.replicas {
                ungrouped[b].push(p);
            }
        }
    }
    let by_size = |partitions: &mut Vec<usize>| {
        partitions.sort_by_key(|&p| (indexed.work[p].size, p));
    };
    let copies = |partitions: &[usize]| -> Pricing {
        Pricing::Listed(
            partitions
                .iter()
                .map(|&p| Cost::copy(indexed.work[p].size))
                .collect(),
        )
    };

    let mut network = Network::default();
    let (source, sink) = (network.node(), network.node());
    let broker_node: Vec<usize> = (0..brokers).map(|_| network.node()).collect();
    let pool: Vec<usize> = (0..indexed.racks).map(|_| network.node()).collect();
    let mut removed = Vec::with_capacity(brokers);
    let mut added = Vec::with_capacity(brokers);
    let mut copies_made = Vec::new();
    for b in 0..brokers {
        let held = holding[b] as i64;
        removed.push(network.arc(
            source,
            broker_node[b],
            Pricing::Removing {
                holding: held,
                capacity: movable[b],
            },
        ));
        added.push(network.arc(broker_node[b], sink, Pricing::Adding { holding: held }));
        by_size(&mut ungrouped[b]);
        let rack_pool = pool[indexed.rack_of[b]];
        let arc = network.arc(broker_node[b], rack_pool, copies(&ungrouped[b]));
        copies_made.push((b, std::mem::take(&mut ungrouped[b]), arc));
        network.arc(
            rack_pool,
            broker_node[b],
            Pricing::Free { capacity: u32::MAX },
        );
    }
    // A group's replicas leave each of its brokers smallest first, to a broker of the same rack
    // or across racks; one crossing per partition.
    let mut built: Vec<Group> = Vec::with_capacity(groups.len());
    for (set, mut partitions) in groups {
        by_size(&mut partitions);
        let count = partitions.len() as u32;
        let (crossing_in, crossing_out) = (network.node(), network.node());
        network.arc(crossing_in, crossing_out, Pricing::Free { capacity: count });
        let crossing_from = set
            .iter()
            .map(|&b| {
                let leaving = network.node();
                let arc = network.arc(broker_node[b], leaving, copies(&partitions));
                copies_made.push((b, partitions.clone(), arc));
                network.arc(
                    leaving,
                    pool[indexed.rack_of[b]],
                    Pricing::Free { capacity: u32::MAX },
                );
                (
                    b,
                    network.arc(leaving, crossing_in, Pricing::Free { capacity: count }),
                )
            })
            .collect();
        let crossing_to = (0..indexed.racks)
            .filter(|&r| !set.iter().any(|&b| indexed.rack_of[b] == r))
            .map(|r| {
                let arc = network.arc(crossing_out, pool[r], Pricing::Free { capacity: count });
                (r, arc)
            })
            .collect();
        built.push(Group {
            partitions,
            crossing_from,
            crossing_to,
        });
    }

    network.solve(source, sink);

    let per_broker = (0..brokers)
        .map(|b| holding[b] + network.flow(added[b]) as usize - network.flow(removed[b]) as usize)
        .collect();
    // What leaves each broker: the smallest of each of its lists, as many as the flow took.
    let mut leaving: Vec<HashSet<usize>> = vec![HashSet::new(); brokers];
    let mut moves = 0;
    for (b, partitions, arc) in &copies_made {
        let taken = network.flow(*arc) as usize;
        leaving[*b].extend(&partitions[..taken]);
        moves += taken;
    }
    let mut crossings = Vec::new();
    for group in &built {
        let from = group
            .crossing_from
            .iter()
            .flat_map(|&(b, arc)| std::iter::repeat_n(b, network.flow(arc) as usize));
        let to = group
            .crossing_to
            .iter()
            .flat_map(|&(r, arc)| std::iter::repeat_n(r, network.flow(arc) as usize));
        let demands: Vec<(usize, usize)> = from.zip(to).collect();
        crossings.extend(choose_crossings(
            indexed,
            &group.partitions,
            &demands,
            &leaving,
        ));
    }
    Targets {
        per_broker,
        moves,
        crossings,
    }
}

/// A partition of the group for each `(broker, rack)` crossing the flow sent from it, no
/// partition twice. The flow priced each broker's crossings at its own smallest partitions,
/// which two brokers of the group may both have counted; a matching takes the flow's picks where
/// they do not collide, so one broker's choice does not take the only one another could use, and
/// the group's smallest unused partitions otherwise. There are always enough: the flow sends at
/// most as many crossings from a group as it has partitions.
fn choose_crossings(
    indexed: &Indexed,
    partitions: &[usize],
    demands: &[(usize, usize)],
    leaving: &[HashSet<usize>],
) -> Vec<Crossing> {
    let candidates: Vec<Vec<usize>> = demands
        .iter()
        .map(|&(from, _)| {
            partitions
                .iter()
                .copied()
                .filter(|p| leaving[from].contains(p))
                .collect()
        })
        .collect();
    let mut owner: HashMap<usize, usize> = HashMap::new();
    let mut chosen: Vec<Option<usize>> = vec![None; demands.len()];
    for demand in 0..demands.len() {
        // Breadth-first search for an augmenting path: a free candidate, reached through
        // demands that give up their partition for another of theirs.
        let mut parent: HashMap<usize, (usize, usize)> = HashMap::new();
        let mut queue = VecDeque::from([demand]);
        let mut visited = HashSet::from([demand]);
        let mut end = None;
        'search: while let Some(current) = queue.pop_front() {
            for &p in &candidates[current] {
                match owner.get(&p) {
                    None => {
                        end = Some((current, p));
                        break 'search;
                    }
                    Some(&other) if visited.insert(other) => {
                        parent.insert(other, (current, p));
                        queue.push_back(other);
                    }
                    Some(_) => {}
                }
            }
        }
        let Some((mut at, mut p)) = end else {
            continue;
        };
        loop {
            let previous = chosen[at].replace(p);
            owner.insert(p, at);
            match (previous, parent.get(&at)) {
                (Some(given_up), Some(&(from, _))) => {
                    at = from;
                    p = given_up;
                }
                _ => break,
            }
        }
    }
    let mut unused = partitions
        .iter()
        .copied()
        .filter(|p| !owner.contains_key(p));
    demands
        .iter()
        .zip(chosen)
        .filter_map(|(&(from, to_rack), partition)| {
            let partition = partition.or_else(|| unused.next())?;
            debug_assert!(indexed.work[partition].replicas.contains(&from));
            Some(Crossing {
                partition,
                from,
                to_rack,
            })
        })
        .collect()
}

/// Whether a partition on `replicas` may take a replica to another rack: its replicas are in
/// distinct racks, and some rack has none of them.
fn crosses(indexed: &Indexed, replicas: &[usize]) -> bool {
    let mut racks: Vec<usize> = replicas.iter().map(|&b| indexed.rack_of[b]).collect();
    racks.sort_unstable();
    racks.dedup();
    racks.len() == replicas.len() && racks.len() < indexed.racks
}
