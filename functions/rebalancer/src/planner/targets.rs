//! How many replicas each broker should hold, and which replicas cross racks to get there: one
//! min-cost [flow] whose cost is, in this order, the sum of squares of the brokers' replica
//! counts (the most even balance reachable), the replica moves, the bytes those moves copy.
//!
//! The network, one unit per replica moved:
//!
//! ```text
//! source ─remove─▶ broker ─copy─▶ rack pool ─▶ broker ─add─▶ sink
//!                    │
//!                    ├─▶ a group it is in ─copy─▶ pool of a rack the group is not in
//!                    └─copy─▶ its own group (RF 1) ─▶ its rack's pool, or another rack's
//! ```
//!
//! * `remove` and `add` price the change in the broker's square; a broker gives up only replicas
//!   the planner may move.
//! * A copy costs one move and the bytes of the list's next replica: a broker's list is its
//!   movable replicas except those of its own group, smallest first; a group's is its partitions,
//!   smallest first.
//! * A *group* is the movable partitions on one set of brokers, in distinct racks, on fewer
//!   racks than the cluster has ([`RackMode::Spread`] only). It sends at most as many replicas
//!   across racks as it has partitions, each to a rack it has none in, so every partition keeps
//!   as many distinct racks as it had. Its partitions are interchangeable for the counts, which
//!   is what makes the aggregate exact: any split of a group's crossings among its brokers and
//!   destination racks can be given distinct partitions of the group, and each broker's moves
//!   inside its rack distinct replicas besides (it gives up no more than it holds).
//! * Bytes are priced per partition for crossings (whichever broker sends it) and per replica
//!   inside a rack. A group on one broker (partitions of one replica) prices its partitions once
//!   for both, so that broker's price is exact. Otherwise the price is exact unless a broker would
//!   send one replica both ways: its smallest replica may be its group's smallest partition too.
//!   [`choose_crossings`] then sends the partition from another broker of the group where it
//!   can, and otherwise picks the cheaper of the group's next partition and the broker's next
//!   replica. Either way the price is a lower bound on what any plan with the flow's balance and
//!   moves copies (see the [module doc](super)).
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
    /// The flow's price in bytes: no plan the flow describes with its balance and moves copies
    /// less (each list's smallest, as many as the flow took, is a lower bound for any replicas
    /// that many).
    pub bytes_lower_bound: u64,
    pub crossings: Vec<Crossing>,
}

/// Partitions on one set of brokers that may move across racks.
struct Group {
    /// Smallest first.
    partitions: Vec<usize>,
    /// The arc pricing its partitions, smallest first: its crossings, or for a group on one
    /// broker every move of its partitions.
    priced: ArcId,
    senders: Senders,
    /// Per rack the group is not in: the arc carrying the group's replicas into it.
    crossing_to: Vec<(usize, ArcId)>,
}

/// Which brokers send a group's crossings.
enum Senders {
    /// A group on one broker (RF 1): its smallest partitions cross, whatever else the flow took
    /// from its list moves inside the rack.
    One(usize),
    /// Per broker of the group, the arc carrying its replicas of the group across racks.
    Each(Vec<(usize, ArcId)>),
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
        let grouped = mode == RackMode::Spread && crosses(indexed, &w.replicas);
        if grouped {
            let mut set = w.replicas.clone();
            set.sort_unstable();
            groups.entry(set).or_default().push(p);
        }
        // A single replica that may cross is priced by its group's list alone.
        if !(grouped && w.replicas.len() == 1) {
            for &b in &w.replicas {
                replicas_of[b].push(p);
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
    // crossing per partition. A group on one broker (RF 1) prices its partitions once, for moves
    // inside the rack and across alike: that broker's list is then exact.
    let mut built: Vec<Group> = Vec::with_capacity(groups.len());
    for (set, mut partitions) in groups {
        by_size(&mut partitions);
        let count = partitions.len() as u32;
        let outside: Vec<usize> = (0..indexed.racks)
            .filter(|&r| !set.iter().any(|&b| indexed.rack_of[b] == r))
            .collect();
        let free = Pricing::Free { capacity: count };
        let group = if let [only] = set[..] {
            let leaving = network.node();
            let priced = network.arc(broker_node[only], leaving, copies(&partitions));
            network.arc(leaving, pool[indexed.rack_of[only]], free.clone());
            let crossing_to = outside
                .iter()
                .map(|&r| (r, network.arc(leaving, pool[r], free.clone())))
                .collect();
            Group {
                partitions,
                priced,
                senders: Senders::One(only),
                crossing_to,
            }
        } else {
            let crossing_in = network.node();
            let senders = set
                .iter()
                .map(|&b| (b, network.arc(broker_node[b], crossing_in, free.clone())))
                .collect();
            // With one rack to go to (RF 2 on three racks), the group's list leads straight
            // into its pool: a node less per group, in the planner's largest networks.
            let (priced, crossing_to) = if let [only] = outside[..] {
                let arc = network.arc(crossing_in, pool[only], copies(&partitions));
                (arc, vec![(only, arc)])
            } else {
                let crossing_out = network.node();
                let priced = network.arc(crossing_in, crossing_out, copies(&partitions));
                let to = outside
                    .iter()
                    .map(|&r| (r, network.arc(crossing_out, pool[r], free.clone())))
                    .collect();
                (priced, to)
            };
            Group {
                partitions,
                priced,
                senders: Senders::Each(senders),
                crossing_to,
            }
        };
        built.push(group);
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
    let mut bytes_lower_bound = 0;
    let smallest = |partitions: &[usize], taken: usize| -> u64 {
        partitions[..taken]
            .iter()
            .map(|&p| indexed.work[p].size)
            .sum()
    };
    for (b, partitions, arc) in &copies_made {
        let taken = network.flow(*arc) as usize;
        bytes_lower_bound += smallest(partitions, taken);
        leaving[*b].extend(&partitions[..taken]);
        staying[*b] = partitions[taken..]
            .iter()
            .rev()
            .map(|&p| indexed.work[p].size)
            .collect();
        moves += taken;
    }
    // Groups on one broker (RF 1) first: their smallest partitions cross, the rest of what the
    // flow took moves inside the rack, and what they keep can replace a move of that broker's.
    let mut crossings = Vec::new();
    for group in &built {
        let taken = network.flow(group.priced) as usize;
        moves += taken;
        bytes_lower_bound += smallest(&group.partitions, taken);
        let Senders::One(b) = group.senders else {
            continue;
        };
        let to = group
            .crossing_to
            .iter()
            .flat_map(|&(r, arc)| std::iter::repeat_n(r, network.flow(arc) as usize));
        crossings.extend(
            group
                .partitions
                .iter()
                .zip(to)
                .map(|(&partition, to_rack)| Crossing {
                    partition,
                    from: b,
                    to_rack,
                }),
        );
        staying[b].extend(
            group.partitions[taken..]
                .iter()
                .map(|&p| indexed.work[p].size),
        );
        staying[b].sort_unstable_by(|x, y| y.cmp(x));
    }
    for group in &built {
        let Senders::Each(senders) = &group.senders else {
            continue;
        };
        let from = senders
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
        bytes_lower_bound,
        crossings,
    }
}

/// A partition of the group for each `(broker, rack)` crossing the flow sent from it, no
/// partition twice. The flow priced the crossings at the group's smallest partitions, whichever
/// broker sends each, and each broker's moves inside its rack at its own smallest replicas,
/// which may include some of those: a broker cannot send a replica both ways. A matching gives
/// each crossing one of the priced partitions its broker does not also move inside its rack
/// (one broker's choice not taking the only one another could use); otherwise the cheaper of the
/// group's smallest unused partition the broker keeps (its size) and one it moves inside its rack
/// (that move then takes the broker's next replica instead). There are always enough: the flow
/// sends at most as many crossings from a group as it has partitions.
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
    // A crossing's replica no longer stays on its broker.
    for (&(from, _), partition) in demands.iter().zip(&chosen) {
        if let Some(p) = partition {
            forget(&mut staying[from], indexed.work[*p].size);
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
                // One the broker keeps costs its size; one it also moves inside its rack costs
                // that move's replacement, the broker's smallest replica still staying.
                let replacement = staying[from].last().copied().unwrap_or(u64::MAX);
                let cost = |p: usize| {
                    if leaving[from].contains(&p) {
                        replacement
                    } else {
                        indexed.work[p].size
                    }
                };
                let at = (0..unused.len()).min_by_key(|&at| cost(unused[at]))?;
                let p = unused.remove(at);
                if leaving[from].contains(&p) {
                    staying[from].pop();
                } else {
                    forget(&mut staying[from], indexed.work[p].size);
                }
                Some(p)
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

/// Removes one replica of `size` from a broker's staying sizes.
fn forget(staying: &mut Vec<u64>, size: u64) {
    if let Some(at) = staying.iter().position(|&s| s == size) {
        staying.remove(at);
    }
}

/// Whether a partition on `replicas` may take a replica to another rack: its replicas are in
/// distinct racks, and some rack has none of them.
fn crosses(indexed: &Indexed, replicas: &[usize]) -> bool {
    let mut racks: Vec<usize> = replicas.iter().map(|&b| indexed.rack_of[b]).collect();
    racks.sort_unstable();
    racks.dedup();
    racks.len() == replicas.len() && racks.len() < indexed.racks
}
