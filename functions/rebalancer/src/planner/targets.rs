//! How many replicas each broker should hold, and which replicas cross racks to get there: one
//! min-cost [flow] whose cost is, in this order, the sum of squares of the brokers' replica
//! counts (the most even balance reachable), the replica moves, the bytes those moves copy.
//!
//! The network, one unit per replica moved:
//!
//! ```text
//! source ─remove─▶ broker ─copy─▶ rack pool ─▶ broker ─add─▶ sink
//!                    │
//!                    └─▶ a group it is in ─copy─▶ pool of a rack the group is not in
//! ```
//!
//! * `remove` and `add` price the change in the broker's square; a broker gives up only replicas
//!   the planner may move.
//! * A copy costs one move and the bytes of the list's next replica: a broker's list is its
//!   movable replicas, smallest first; a group's is its partitions, smallest first.
//! * A *group* is the movable partitions on one set of brokers, in distinct racks, on fewer
//!   racks than the cluster has ([`RackMode::Spread`] only). It sends at most as many replicas
//!   across racks as it has partitions, each to a rack it has none in, so every partition keeps
//!   as many distinct racks as it had. Its partitions are interchangeable for the counts, which
//!   is what makes the aggregate exact: any split of a group's crossings among its brokers and
//!   destination racks can be given distinct partitions of the group, and each broker's moves
//!   inside its rack distinct replicas besides (it gives up no more than it holds).
//! * Bytes are priced per partition for crossings (whichever broker sends it) and per replica
//!   inside a rack. The price is exact unless a broker would send one replica both ways: its
//!   smallest replica may be its group's smallest partition too. [`choose_crossings`] then sends
//!   the partition from another broker of the group where it can, and otherwise picks the cheaper
//!   of the group's next partition and the broker's next replica.
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
    /// The arc carrying its crossings, priced at its partitions smallest first.
    crossed: ArcId,
    /// Per broker of the group: the arc carrying its replicas of the group across racks.
    crossing_from: Vec<(usize, ArcId)>,
    /// Per rack the group is not in: the arc carrying the group's replicas into it.
    crossing_to: Vec<(usize, ArcId)>,
}

pub(super) fn targets(indexed: &Indexed, mode: RackMode) -> Targets {
    let brokers = indexed.brokers.len();
    let mut holding = vec![0usize; brokers];
    let mut movable = vec![0u32; brokers];
    // Each broker's movable replicas, and the groups.
    let mut replicas_of: Vec<Vec<usize>> = vec![Vec::new(); brokers];
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
        for &b in &w.replicas {
            replicas_of[b].push(p);
        }
        if mode == RackMode::Spread && crosses(indexed, &w.replicas) {
            let mut set = w.replicas.clone();
            set.sort_unstable();
            groups.entry(set).or_default().push(p);
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
        by_size(&mut replicas_of[b]);
        let rack_pool = pool[indexed.rack_of[b]];
        let arc = network.arc(broker_node[b], rack_pool, copies(&replicas_of[b]));
        copies_made.push((b, std::mem::take(&mut replicas_of[b]), arc));
        network.arc(
            rack_pool,
            broker_node[b],
            Pricing::Free { capacity: u32::MAX },
        );
    }
    // A group's partitions cross racks smallest first, whichever of its brokers sends each; one
    // crossing per partition.
    let mut built: Vec<Group> = Vec::with_capacity(groups.len());
    for (set, mut partitions) in groups {
        by_size(&mut partitions);
        let count = partitions.len() as u32;
        let crossing_in = network.node();
        let crossing_from = set
            .iter()
            .map(|&b| {
                let arc = network.arc(
                    broker_node[b],
                    crossing_in,
                    Pricing::Free { capacity: count },
                );
                (b, arc)
            })
            .collect();
        let outside: Vec<usize> = (0..indexed.racks)
            .filter(|&r| !set.iter().any(|&b| indexed.rack_of[b] == r))
            .collect();
        // With one rack to go to (RF 2 on three racks), the group's list leads straight into its
        // pool: a node less per group, in the planner's largest networks.
        let (crossed, crossing_to) = if let [only] = outside[..] {
            let arc = network.arc(crossing_in, pool[only], copies(&partitions));
            (arc, vec![(only, arc)])
        } else {
            let crossing_out = network.node();
            let crossed = network.arc(crossing_in, crossing_out, copies(&partitions));
            let to = outside
                .iter()
                .map(|&r| {
                    let arc = network.arc(crossing_out, pool[r], Pricing::Free { capacity: count });
                    (r, arc)
                })
                .collect();
            (crossed, to)
        };
        built.push(Group {
            partitions,
            crossed,
            crossing_from,
            crossing_to,
        });
    }

    network.solve(source, sink);

    let per_broker = (0..brokers)
        .map(|b| holding[b] + network.flow(added[b]) as usize - network.flow(removed[b]) as usize)
        .collect();
    // What leaves each broker within its rack: its smallest replicas, as many as the flow took;
    // and the sizes of the others, largest first.
    let mut leaving: Vec<HashSet<usize>> = vec![HashSet::new(); brokers];
    let mut staying: Vec<Vec<u64>> = vec![Vec::new(); brokers];
    let mut moves = 0;
    for (b, partitions, arc) in &copies_made {
        let taken = network.flow(*arc) as usize;
        leaving[*b].extend(&partitions[..taken]);
        staying[*b] = partitions[taken..]
            .iter()
            .rev()
            .map(|&p| indexed.work[p].size)
            .collect();
        moves += taken;
    }
    let mut crossings = Vec::new();
    for group in &built {
        moves += network.flow(group.crossed) as usize;
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
            &mut staying,
        ));
    }
    Targets {
        per_broker,
        moves,
        crossings,
    }
}

/// A partition of the group for each `(broker, rack)` crossing the flow sent from it, no
/// partition twice. The flow priced the crossings at the group's smallest partitions, whichever
/// broker sends each, and each broker's moves inside its rack at its own smallest replicas,
/// which may include some of those: a broker cannot send a replica both ways. A matching gives
/// each crossing one of the priced partitions its broker does not also move inside its rack
/// (one broker's choice not taking the only one another could use), and otherwise the group's
/// smallest unused partition, one its broker keeps if there is one. There are always enough: the
/// flow sends at most as many crossings from a group as it has partitions.
fn choose_crossings(
    indexed: &Indexed,
    partitions: &[usize],
    demands: &[(usize, usize)],
    leaving: &[HashSet<usize>],
    staying: &mut [Vec<u64>],
) -> Vec<Crossing> {
    let priced = &partitions[..demands.len().min(partitions.len())];
    let candidates: Vec<Vec<usize>> = demands
        .iter()
        .map(|&(from, _)| {
            priced
                .iter()
                .copied()
                .filter(|p| !leaving[from].contains(p))
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
    let mut unused: Vec<usize> = partitions
        .iter()
        .copied()
        .filter(|p| !owner.contains_key(p))
        .collect();
    demands
        .iter()
        .zip(chosen)
        .filter_map(|(&(from, to_rack), partition)| {
            let partition = partition.or_else(|| {
                // A partition the broker keeps costs its size; one it also moves inside its rack
                // costs that move's replacement, the broker's smallest replica still staying.
                let kept = unused.iter().position(|p| !leaving[from].contains(p));
                let moved = unused.iter().position(|p| leaving[from].contains(p));
                let cost = |at: usize| {
                    if leaving[from].contains(&unused[at]) {
                        staying[from].last().copied().unwrap_or(u64::MAX)
                    } else {
                        indexed.work[unused[at]].size
                    }
                };
                let at = [kept, moved]
                    .into_iter()
                    .flatten()
                    .min_by_key(|&at| cost(at))?;
                if leaving[from].contains(&unused[at]) {
                    staying[from].pop();
                }
                Some(unused.remove(at))
            })?;
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
