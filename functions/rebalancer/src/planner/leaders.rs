//! Preferred-leader balance by reordering replica lists (no data moves): leadership is handed
//! over directly where a replica can take it, or along a chain of partitions (an augmenting path)
//! where none can.

use std::collections::VecDeque;

use super::index::Work;
use super::summary::leader_counts;

/// One step of a path: through `partition`, reaching `broker`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hop {
    partition: usize,
    broker: usize,
}

/// A path found by [`find_path`]: the broker it ends at and the hops from the start to it.
struct Path {
    end: usize,
    hops: Vec<Hop>,
}

/// A partition's leadership going to `new_leader`, one of its replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Handover {
    partition: usize,
    new_leader: usize,
}

/// Balances preferred leaders by reordering movable partitions; true when every broker ends
/// within one leadership of every other.
pub(super) fn balance(work: &mut [Work], brokers: usize) -> bool {
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

    // Hand leadership along a chain, last hand-over first.
    let hand_over = |work: &mut [Work], led: &mut [Vec<usize>], chain: Vec<Handover>| {
        for Handover {
            partition,
            new_leader,
        } in chain.into_iter().rev()
        {
            let replicas = &mut work[partition].replicas;
            let at = replicas
                .iter()
                .position(|&b| b == new_leader)
                .expect("new leader is a replica");
            let broker = replicas.remove(at);
            replicas.insert(0, broker);
            led[new_leader].push(partition);
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
                let Some(path) = path else { break };
                leaders[start] -= 1;
                leaders[path.end] += 1;
                changed = true;
                // Each hop reached a replica of the partition it went through: that replica leads.
                let chain = path
                    .hops
                    .iter()
                    .map(|hop| Handover {
                        partition: hop.partition,
                        new_leader: hop.broker,
                    })
                    .collect();
                hand_over(work, &mut led, chain);
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
                let Some(path) = path else { break };
                leaders[start] += 1;
                leaders[path.end] -= 1;
                changed = true;
                hand_over(work, &mut led, taken_back(start, &path.hops));
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
/// `is_end(y)` holds.
fn find_path(
    start: usize,
    brokers: usize,
    mut expand: impl FnMut(usize, &mut dyn FnMut(usize, usize) -> bool) -> bool,
    is_end: impl Fn(usize) -> bool,
) -> Option<Path> {
    // For each broker reached: the broker it was reached from and through which partition.
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
    while let Some((from, partition)) = parent[at] {
        hops.push(Hop {
            partition,
            broker: at,
        });
        at = from;
    }
    hops.reverse();
    Some(Path { end, hops })
}

/// For a path from `start` through holders (each hop reaching the partition's current leader),
/// the hand-overs that pull leadership back towards `start`: each partition goes to the broker
/// its hop came from.
fn taken_back(start: usize, hops: &[Hop]) -> Vec<Handover> {
    let mut from = start;
    hops.iter()
        .map(|hop| {
            let handover = Handover {
                partition: hop.partition,
                new_leader: from,
            };
            from = hop.broker;
            handover
        })
        .collect()
}
