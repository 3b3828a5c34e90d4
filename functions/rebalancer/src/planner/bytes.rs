//! Evening out bytes ([`BytesMode::Even`](super::BytesMode::Even)): after the replica moves,
//! swaps inside each rack — one replica from its fullest broker for a smaller one from its
//! emptiest — until the rack's brokers hold bytes within its largest movable replica of each
//! other.
//!
//! A swap keeps every broker's replica count and every partition's racks, so the balance and
//! rack rules the moves reached still hold; each swap costs up to two moves beyond the minimum.
//! Each swap takes a difference `δ = size(p) − size(q)` with `0 < δ < D`, `D` the gap between
//! the two brokers, so the sum over brokers of bytes² falls with every swap and the loop ends.
//!
//! **Why the bound is reached** when every replica in the rack is movable (none in flight, none
//! of a partition with a replica on a broker missing from the description), no partition has two
//! replicas in it, and counts are within one (what the moves reach in that case): let the
//! fullest broker `H` hold `D` more bytes than the emptiest `L`, with `D` above the largest
//! replica `s`. If `H` holds no more replicas than `L`, pairing `H`'s replicas with `L`'s largest
//! ones, some `p` of `H` is larger than its `q`, since `H`'s total is larger. If `H` holds one
//! more, its replicas other than its largest still total more than `L`'s (they total at least
//! `L`'s plus `D − s`), and the same pairing applies. Either way `0 < size(p) − size(q) ≤ s < D`,
//! and no partition is on both, so a swap exists. Elsewhere (replicas not movable, partitions
//! sharing a rack) the loop stops when the fullest and emptiest brokers have no swap; the summary
//! reports whether the bound holds.

use std::collections::BTreeSet;

use super::index::Work;

/// Bytes per broker, and the movable replicas each holds as `(size, partition)`.
struct Rack {
    bytes: Vec<u64>,
    held: Vec<BTreeSet<(u64, usize)>>,
    /// `(bytes, broker)` for the members: first is the emptiest, last the fullest.
    order: BTreeSet<(u64, usize)>,
}

/// One swap: `give` leaves the fullest broker for the emptiest, `take` the other way.
struct Swap {
    give: (u64, usize),
    take: (u64, usize),
}

/// Swaps replicas between `members` (broker indices of one rack) until their bytes are within
/// the rack's largest movable replica of each other, or no swap between the fullest and the
/// emptiest remains.
pub(super) fn even_rack(work: &mut [Work], members: &[usize], broker_count: usize) {
    let mut member = vec![false; broker_count];
    for &b in members {
        member[b] = true;
    }
    let mut rack = Rack {
        bytes: vec![0; broker_count],
        held: vec![BTreeSet::new(); broker_count],
        order: BTreeSet::new(),
    };
    for (p, w) in work.iter().enumerate() {
        for &b in w.replicas.iter().filter(|&&b| member[b]) {
            rack.bytes[b] += w.size;
            if w.movable {
                rack.held[b].insert((w.size, p));
            }
        }
    }
    let Some(bound) = members
        .iter()
        .filter_map(|&b| rack.held[b].last().map(|(size, _)| *size))
        .max()
    else {
        return;
    };
    rack.order = members.iter().map(|&b| (rack.bytes[b], b)).collect();

    while let (Some(&(low, emptiest)), Some(&(high, fullest))) =
        (rack.order.first(), rack.order.last())
    {
        if high - low <= bound {
            break;
        }
        let Some(swap) = best_swap(work, &rack, fullest, emptiest) else {
            break;
        };
        apply(work, &mut rack, &swap, fullest, emptiest);
    }
}

/// The swap between `fullest` and `emptiest` that narrows their gap `D` the most: `δ` closest to
/// `D / 2` (the gap becomes `|D − 2δ|`); among equals, the one copying fewer bytes.
fn best_swap(work: &[Work], rack: &Rack, fullest: usize, emptiest: usize) -> Option<Swap> {
    let gap = rack.bytes[fullest] - rack.bytes[emptiest];
    let smallest_taken = rack.held[emptiest].first()?.0;
    let narrowed = |delta: u64| (gap - delta).abs_diff(delta);
    let mut best: Option<(u64, u64, Swap)> = None;
    // Largest first: once even the emptiest's smallest replica cannot give a `δ` better than the
    // best found, no smaller replica can either.
    for &(give_size, give) in rack.held[fullest].iter().rev() {
        let reachable = give_size.saturating_sub(smallest_taken).min(gap / 2);
        if let Some((left, _, _)) = &best
            && narrowed(reachable) > *left
        {
            break;
        }
        if work[give].replicas.contains(&emptiest) {
            continue;
        }
        // The ideal `take` is `give_size − gap / 2`; look at the nearest on either side.
        let ideal = (give_size.saturating_sub(gap / 2), 0);
        let not_on_fullest = |&&(_, q): &&(u64, usize)| !work[q].replicas.contains(&fullest);
        let below = rack.held[emptiest]
            .range(..ideal)
            .rev()
            .find(not_on_fullest);
        let above = rack.held[emptiest].range(ideal..).find(not_on_fullest);
        for &(take_size, take) in below.into_iter().chain(above) {
            if take_size >= give_size || give_size - take_size >= gap {
                continue;
            }
            let key = (narrowed(give_size - take_size), give_size + take_size);
            if best.as_ref().is_none_or(|(l, c, _)| key < (*l, *c)) {
                best = Some((
                    key.0,
                    key.1,
                    Swap {
                        give: (give_size, give),
                        take: (take_size, take),
                    },
                ));
            }
        }
    }
    best.map(|(_, _, swap)| swap)
}

fn apply(work: &mut [Work], rack: &mut Rack, swap: &Swap, fullest: usize, emptiest: usize) {
    // Both hold what they give: `held` lists only replicas on its broker.
    work[swap.give.1].relocate(fullest, emptiest);
    work[swap.take.1].relocate(emptiest, fullest);
    for b in [fullest, emptiest] {
        rack.order.remove(&(rack.bytes[b], b));
    }
    rack.held[fullest].remove(&swap.give);
    rack.held[emptiest].remove(&swap.take);
    rack.held[emptiest].insert(swap.give);
    rack.held[fullest].insert(swap.take);
    let delta = swap.give.0 - swap.take.0;
    rack.bytes[fullest] -= delta;
    rack.bytes[emptiest] += delta;
    for b in [fullest, emptiest] {
        rack.order.insert((rack.bytes[b], b));
    }
}
