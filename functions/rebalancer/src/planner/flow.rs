//! A small min-cost flow with convex arc costs and lexicographic costs, solved primal-dual: a
//! shortest-path search (Dijkstra on reduced costs) sets the potentials, then units go along
//! every path that is as cheap (a blocking flow over the arcs at zero reduced cost) before the
//! next search. [`targets`](super::targets) builds its network.
//!
//! Why hand-written: the network is tiny (brokers, racks, groups of partitions) but its costs are
//! convex per unit (each unit's cost depends on how many went before) and compared
//! lexicographically (balance, then moves, then bytes). The flow crates on crates.io take one
//! scalar cost per arc, which would mean one arc per unit and a weighted scalar that overflows on
//! byte counts.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::{Add, Neg, Sub};

/// A cost, compared field by field in order: the first field outweighs any amount of the next.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Cost {
    /// Change in Σ (replicas per broker)².
    pub imbalance: i64,
    /// Replicas copied.
    pub moves: i64,
    /// Bytes those copies read.
    pub bytes: i64,
}

impl Cost {
    pub const ZERO: Cost = Cost {
        imbalance: 0,
        moves: 0,
        bytes: 0,
    };

    /// One replica copied, of `bytes`.
    pub fn copy(bytes: u64) -> Cost {
        Cost {
            imbalance: 0,
            moves: 1,
            // Far below any sum that could overflow; no partition is 2^61 bytes.
            bytes: i64::try_from(bytes).unwrap_or(i64::MAX / 4),
        }
    }
}

impl Add for Cost {
    type Output = Cost;
    fn add(self, other: Cost) -> Cost {
        Cost {
            imbalance: self.imbalance + other.imbalance,
            moves: self.moves + other.moves,
            bytes: self.bytes.saturating_add(other.bytes),
        }
    }
}

impl Neg for Cost {
    type Output = Cost;
    fn neg(self) -> Cost {
        Cost {
            imbalance: -self.imbalance,
            moves: -self.moves,
            bytes: -self.bytes,
        }
    }
}

impl Sub for Cost {
    type Output = Cost;
    fn sub(self, other: Cost) -> Cost {
        self + -other
    }
}

/// How an arc's units are priced. Every kind is convex: a unit never costs less than the one
/// before it, which is what lets the solver see only an arc's next unit.
#[derive(Debug, Clone)]
pub(super) enum Pricing {
    /// Up to `capacity` units at no cost.
    Free { capacity: u32 },
    /// Unit `k` costs `units[k]` (sorted ascending); as many units as listed.
    Listed(Vec<Cost>),
    /// A replica added to a broker holding `holding`: the rise in the sum of squares.
    Adding { holding: i64 },
    /// A replica taken from a broker holding `holding`, at most `capacity` of them.
    Removing { holding: i64, capacity: u32 },
}

impl Pricing {
    fn capacity(&self) -> u32 {
        match self {
            Pricing::Free { capacity } | Pricing::Removing { capacity, .. } => *capacity,
            Pricing::Listed(units) => u32::try_from(units.len()).unwrap_or(u32::MAX),
            Pricing::Adding { .. } => u32::MAX,
        }
    }

    /// The cost of unit `k` (from zero).
    fn unit(&self, k: u32) -> Cost {
        let k = i64::from(k);
        match self {
            Pricing::Free { .. } => Cost::ZERO,
            Pricing::Listed(units) => units[k as usize],
            Pricing::Adding { holding } => Cost {
                imbalance: 2 * (holding + k) + 1,
                ..Cost::ZERO
            },
            Pricing::Removing { holding, .. } => Cost {
                imbalance: -(2 * (holding - k) - 1),
                ..Cost::ZERO
            },
        }
    }
}

#[derive(Debug, Clone)]
struct Arc {
    from: usize,
    to: usize,
    flow: u32,
    pricing: Pricing,
}

/// A network under construction and, after [`Network::solve`], its flows.
#[derive(Debug, Default)]
pub(super) struct Network {
    nodes: usize,
    arcs: Vec<Arc>,
}

/// An arc's handle, to read its flow after solving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ArcId(usize);

/// What a search from the source found: reduced distances, and the step each node was reached by.
struct Paths {
    distance: Vec<Cost>,
    parent: Vec<Option<Step>>,
}

/// A residual step: an arc used forward or backward.
#[derive(Debug, Clone, Copy)]
struct Step {
    arc: usize,
    forward: bool,
}

impl Network {
    pub fn node(&mut self) -> usize {
        self.nodes += 1;
        self.nodes - 1
    }

    pub fn arc(&mut self, from: usize, to: usize, pricing: Pricing) -> ArcId {
        self.arcs.push(Arc {
            from,
            to,
            flow: 0,
            pricing,
        });
        ArcId(self.arcs.len() - 1)
    }

    pub fn flow(&self, arc: ArcId) -> u32 {
        self.arcs[arc.0].flow
    }

    /// Sends units from `source` to `sink` while a path of negative cost remains, each time along
    /// the cheapest: the result is a cheapest flow of any size. Needs no cycle of negative cost
    /// at the start: in the networks built here the only arcs that cost less than nothing leave
    /// the source, which nothing enters.
    pub fn solve(&mut self, source: usize, sink: usize) {
        let mut outgoing: Vec<Vec<usize>> = vec![Vec::new(); self.nodes];
        let mut incoming: Vec<Vec<usize>> = vec![Vec::new(); self.nodes];
        for (i, arc) in self.arcs.iter().enumerate() {
            outgoing[arc.from].push(i);
            incoming[arc.to].push(i);
        }
        let mut potential = self.initial_potentials(source);
        loop {
            let Some(Paths { distance, parent }) =
                self.cheapest_paths(source, sink, &potential, &outgoing, &incoming)
            else {
                return;
            };
            let to_sink = distance[sink];
            if to_sink + potential[sink] - potential[source] >= Cost::ZERO {
                return;
            }
            let mut node = sink;
            while node != source {
                let step = parent[node].expect("on the path");
                self.push(step);
                node = self.tail(step);
            }
            // Raising every potential by min(distance, distance to the sink) keeps every
            // residual arc's reduced cost non-negative, also for nodes the search did not settle.
            for (p, d) in potential.iter_mut().zip(&distance) {
                *p = *p + (*d).min(to_sink);
            }
            self.push_along_cheapest(source, sink, &potential, &outgoing, &incoming);
        }
    }

    /// Sends one unit through `step`.
    fn push(&mut self, step: Step) {
        let arc = &mut self.arcs[step.arc];
        if step.forward {
            arc.flow += 1;
        } else {
            arc.flow -= 1;
        }
    }

    /// The node `step` leaves.
    fn tail(&self, step: Step) -> usize {
        let arc = &self.arcs[step.arc];
        if step.forward { arc.from } else { arc.to }
    }

    /// The node `step` enters.
    fn head(&self, step: Step) -> usize {
        let arc = &self.arcs[step.arc];
        if step.forward { arc.to } else { arc.from }
    }

    /// Whether `step` can take a unit at zero reduced cost: it lies on a cheapest path.
    fn admissible(&self, step: Step, potential: &[Cost]) -> bool {
        self.residual(step).is_some_and(|cost| {
            cost + potential[self.tail(step)] - potential[self.head(step)] == Cost::ZERO
        })
    }

    /// After a search has set the potentials, every path of arcs at zero reduced cost is a
    /// cheapest path as well, so units are sent along all of them before the next search:
    /// phase by phase, each over the arcs that lead one hop further from the source (Dinic's
    /// blocking flow), until the sink is out of reach at zero reduced cost. Every residual arc
    /// keeps a non-negative reduced cost (an arc's next unit never costs less than the last),
    /// so the flow stays a cheapest one of its size; one search then serves many units (a
    /// plan of 40,000 moves would otherwise be 40,000 searches).
    fn push_along_cheapest(
        &mut self,
        source: usize,
        sink: usize,
        potential: &[Cost],
        outgoing: &[Vec<usize>],
        incoming: &[Vec<usize>],
    ) {
        let step_at = |node: usize, i: usize| match outgoing[node].get(i) {
            Some(&arc) => Step { arc, forward: true },
            None => Step {
                arc: incoming[node][i - outgoing[node].len()],
                forward: false,
            },
        };
        let steps_of = |node: usize| outgoing[node].len() + incoming[node].len();
        loop {
            let mut level = self.levels(source, potential, &step_at, &steps_of);
            if level[sink].is_none() {
                return;
            }
            let mut cursor = vec![0usize; self.nodes];
            let mut path: Vec<Step> = Vec::new();
            let mut node = source;
            loop {
                if node == sink {
                    for &step in &path {
                        self.push(step);
                    }
                    path.clear();
                    node = source;
                    continue;
                }
                let mut advanced = false;
                while cursor[node] < steps_of(node) {
                    let step = step_at(node, cursor[node]);
                    let next = self.head(step);
                    if level[next] == level[node].map(|l| l + 1) && self.admissible(step, potential)
                    {
                        path.push(step);
                        node = next;
                        advanced = true;
                        break;
                    }
                    cursor[node] += 1;
                }
                if advanced {
                    continue;
                }
                // A dead end for this phase: nothing leads on from here.
                level[node] = None;
                let Some(step) = path.pop() else {
                    break;
                };
                node = self.tail(step);
                cursor[node] += 1;
            }
        }
    }

    /// Hops from `source` over admissible arcs (breadth first), `None` where out of reach.
    fn levels(
        &self,
        source: usize,
        potential: &[Cost],
        step_at: &impl Fn(usize, usize) -> Step,
        steps_of: &impl Fn(usize) -> usize,
    ) -> Vec<Option<u32>> {
        let mut level = vec![None; self.nodes];
        level[source] = Some(0);
        let mut queue = std::collections::VecDeque::from([source]);
        while let Some(node) = queue.pop_front() {
            let next_level = level[node].map(|l: u32| l + 1);
            for i in 0..steps_of(node) {
                let step = step_at(node, i);
                let next = self.head(step);
                if level[next].is_none() && self.admissible(step, potential) {
                    level[next] = next_level;
                    queue.push_back(next);
                }
            }
        }
        level
    }

    fn residual(&self, step: Step) -> Option<Cost> {
        let arc = &self.arcs[step.arc];
        if step.forward {
            (arc.flow < arc.pricing.capacity()).then(|| arc.pricing.unit(arc.flow))
        } else {
            (arc.flow > 0).then(|| -arc.pricing.unit(arc.flow - 1))
        }
    }

    /// Distances from `source` over the arcs as built (Bellman–Ford: the arcs out of the source
    /// may cost less than nothing).
    fn initial_potentials(&self, source: usize) -> Vec<Cost> {
        let mut distance: Vec<Option<Cost>> = vec![None; self.nodes];
        distance[source] = Some(Cost::ZERO);
        for _ in 0..self.nodes {
            let mut changed = false;
            for (i, arc) in self.arcs.iter().enumerate() {
                let (Some(d), Some(c)) = (
                    distance[arc.from],
                    self.residual(Step {
                        arc: i,
                        forward: true,
                    }),
                ) else {
                    continue;
                };
                if distance[arc.to].is_none_or(|current| d + c < current) {
                    distance[arc.to] = Some(d + c);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let unreachable = distance.iter().flatten().copied().max().unwrap_or_default();
        distance
            .into_iter()
            .map(|d| d.unwrap_or(unreachable))
            .collect()
    }

    /// Dijkstra on reduced costs, stopped once the sink is settled; nodes left unsettled get the
    /// sink's distance (see [`Network::solve`]).
    fn cheapest_paths(
        &self,
        source: usize,
        sink: usize,
        potential: &[Cost],
        outgoing: &[Vec<usize>],
        incoming: &[Vec<usize>],
    ) -> Option<Paths> {
        let mut distance: Vec<Option<Cost>> = vec![None; self.nodes];
        let mut parent: Vec<Option<Step>> = vec![None; self.nodes];
        let mut settled = vec![false; self.nodes];
        let mut heap = BinaryHeap::new();
        distance[source] = Some(Cost::ZERO);
        heap.push(Reverse((Cost::ZERO, source)));
        while let Some(Reverse((d, node))) = heap.pop() {
            if settled[node] {
                continue;
            }
            settled[node] = true;
            if node == sink {
                break;
            }
            let steps = outgoing[node]
                .iter()
                .map(|&arc| Step { arc, forward: true })
                .chain(incoming[node].iter().map(|&arc| Step {
                    arc,
                    forward: false,
                }));
            for step in steps {
                let Some(cost) = self.residual(step) else {
                    continue;
                };
                let arc = &self.arcs[step.arc];
                let next = if step.forward { arc.to } else { arc.from };
                if settled[next] {
                    continue;
                }
                let candidate = d + cost + potential[node] - potential[next];
                if distance[next].is_none_or(|current| candidate < current) {
                    distance[next] = Some(candidate);
                    parent[next] = Some(step);
                    heap.push(Reverse((candidate, next)));
                }
            }
        }
        let to_sink = distance[sink]?;
        let distance = distance
            .into_iter()
            .zip(&settled)
            .map(|(d, &s)| if s { d.unwrap_or(to_sink) } else { to_sink })
            .collect();
        Some(Paths { distance, parent })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two brokers holding 5 and 1: the cheapest flow moves two replicas (25 + 1 → 9 + 9).
    #[test]
    fn evens_two_brokers_with_the_fewest_moves() {
        let mut network = Network::default();
        let (source, sink) = (network.node(), network.node());
        let (a, b, pool) = (network.node(), network.node(), network.node());
        network.arc(
            source,
            a,
            Pricing::Removing {
                holding: 5,
                capacity: 5,
            },
        );
        network.arc(
            source,
            b,
            Pricing::Removing {
                holding: 1,
                capacity: 1,
            },
        );
        let a_in = network.arc(a, sink, Pricing::Adding { holding: 5 });
        let b_in = network.arc(b, sink, Pricing::Adding { holding: 1 });
        let out_a = network.arc(a, pool, Pricing::Listed(vec![Cost::copy(1); 5]));
        network.arc(b, pool, Pricing::Listed(vec![Cost::copy(1); 1]));
        network.arc(pool, a, Pricing::Free { capacity: 9 });
        network.arc(pool, b, Pricing::Free { capacity: 9 });
        network.solve(source, sink);
        assert_eq!(network.flow(out_a), 2);
        assert_eq!(network.flow(b_in), 2);
        assert_eq!(network.flow(a_in), 0);
    }
}
