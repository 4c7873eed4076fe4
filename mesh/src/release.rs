//! Which of this host's blocks to give back: those that have held none of its addresses for
//! `--release-empty-after`, except one empty block of the default range (so that the common
//! `net:default` attach still never waits on etcd, even when the host's other blocks are
//! full). How they are given back safely is
//! weave-core's mesh contract ("Giving blocks back") and [`crate::agent`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// Brings `empty_since` (block → CLOCK_BOOTTIME ms it was first seen empty) in step with the
/// blocks `owned` now and the addresses `held` now: an owned block holding none keeps its
/// time or starts at `now_ms`; every other block is dropped.
pub fn track_empty(
    empty_since: &mut BTreeMap<Ipv4Net, u64>,
    owned: &[Ipv4Net],
    held: &BTreeSet<Ipv4Addr>,
    now_ms: u64,
) {
    let empty: BTreeSet<Ipv4Net> = owned
        .iter()
        .copied()
        .filter(|b| holds_none(*b, held))
        .collect();
    empty_since.retain(|b, _| empty.contains(b));
    for b in empty {
        empty_since.entry(b).or_insert(now_ms);
    }
}

/// Whether `block` holds none of the addresses `held`.
pub fn holds_none(block: Ipv4Net, held: &BTreeSet<Ipv4Addr>) -> bool {
    !held.iter().any(|ip| block.contains(ip))
}

/// The blocks due at `now_ms`: owned, empty for at least `after_ms`, except the lowest empty
/// block of `default_range`, which stays.
pub fn due(
    owned: &[Ipv4Net],
    empty_since: &BTreeMap<Ipv4Net, u64>,
    now_ms: u64,
    after_ms: u64,
    default_range: Ipv4Net,
) -> Vec<Ipv4Net> {
    let in_range = |b: &Ipv4Net| default_range.contains(&b.network());
    let spare = owned
        .iter()
        .copied()
        .filter(|b| in_range(b) && empty_since.contains_key(b))
        .min();
    owned
        .iter()
        .copied()
        .filter(|b| Some(*b) != spare)
        .filter(|b| {
            empty_since
                .get(b)
                .is_some_and(|since| now_ms.saturating_sub(*since) >= after_ms)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<Ipv4Net> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn ips(list: &[&str]) -> BTreeSet<Ipv4Addr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    const RANGE: &str = "10.32.0.0/12";

    #[test]
    fn a_block_is_due_once_empty_for_the_whole_delay() {
        let owned = nets(&["10.32.0.0/26", "10.50.0.0/26", "10.60.0.0/26"]);
        let mut since = BTreeMap::new();
        track_empty(&mut since, &owned, &ips(&["10.32.0.5"]), 1000);
        assert_eq!(since.keys().copied().collect::<Vec<_>>(), owned[1..]);
        // Seen empty again later: the first time counts.
        track_empty(&mut since, &owned, &ips(&["10.32.0.5"]), 5000);
        let range = RANGE.parse().unwrap();
        assert!(due(&owned, &since, 10_999, 10_000, range).is_empty());
        assert_eq!(due(&owned, &since, 11_000, 10_000, range), owned[1..]);
        // An address in it again: its clock starts over.
        track_empty(
            &mut since,
            &owned,
            &ips(&["10.32.0.5", "10.50.0.9"]),
            12_000,
        );
        assert_eq!(due(&owned, &since, 12_000, 10_000, range), owned[2..]);
        // A block no longer owned is forgotten.
        track_empty(&mut since, &owned[..1], &ips(&[]), 13_000);
        assert_eq!(since.keys().copied().collect::<Vec<_>>(), owned[..1]);
    }

    #[test]
    fn one_empty_block_of_the_default_range_stays() {
        let owned = nets(&[
            "10.32.0.64/26",
            "10.32.0.0/26",
            "10.32.0.128/26",
            "10.50.0.0/26",
        ]);
        let range = RANGE.parse().unwrap();
        let mut since = BTreeMap::new();
        track_empty(&mut since, &owned, &ips(&[]), 0);
        assert_eq!(
            due(&owned, &since, 100, 10, range),
            nets(&["10.32.0.64/26", "10.32.0.128/26", "10.50.0.0/26"]),
            "the lowest empty block of the range stays"
        );
        // The lowest one holds an address (it may be full): the next empty one stays.
        let mut since = BTreeMap::new();
        track_empty(&mut since, &owned, &ips(&["10.32.0.7"]), 0);
        assert_eq!(
            due(&owned, &since, 100, 10, range),
            nets(&["10.32.0.128/26", "10.50.0.0/26"])
        );
        // Blocks only outside the range: all of them go.
        let outside = nets(&["10.50.0.0/26", "10.50.0.64/26"]);
        let mut since = BTreeMap::new();
        track_empty(&mut since, &outside, &ips(&[]), 0);
        assert_eq!(due(&outside, &since, 100, 10, range), outside);
    }
}
