//! Limits per client address, so that one container can neither turn weave-dns into an
//! amplifier towards the upstream resolvers nor take the service from the others:
//! - a rate of queries (every datagram or TCP message, answered or forwarded),
//! - a tighter rate of queries forwarded upstream,
//! - a number of TCP connections open at once (and a total).
//!
//! Rates are token buckets of one second's worth of queries, kept as GCRA's "theoretical
//! arrival time" (one integer per bucket). Clients live in a fixed table of
//! [`CLIENT_SLOTS`] slots indexed by a keyed hash of the address: memory stays the same
//! under queries from any number of (spoofed) sources, and a client whose slot another
//! address took starts again with a full bucket, which only ever favours it. The key is
//! random per process, so no one can pick addresses that share a slot on purpose.
//! TCP connections are counted exactly: a connection needs a completed handshake, so its
//! address is not spoofed, and the count is bounded by the total.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Queries per second per client, answered or forwarded. A container's resolver sends a
/// few at a time (A and AAAA in parallel, retries); this leaves room for programs that do
/// not cache at all.
pub const DEFAULT_QUERIES: u32 = 1000;
/// Forwarded queries per second per client (weave-dns caches nothing, so each of a
/// client's outside lookups is one upstream query).
pub const DEFAULT_FORWARDS: u32 = 200;
/// TCP connections per client at once (resolvers open one per truncated answer).
pub const DEFAULT_TCP_PER_CLIENT: u16 = 8;
/// TCP connections at once, all clients together.
pub const MAX_TCP: usize = 256;
/// Clients whose rates are tracked at once (32 bytes each, whatever the traffic).
pub const CLIENT_SLOTS: usize = 4096;
/// A bucket holds one second's worth of its rate.
const WINDOW_NS: u64 = 1_000_000_000;

/// The limits, per client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Queries per second (at least 1).
    pub queries: u32,
    /// Forwarded queries per second (at least 1).
    pub forwards: u32,
    /// TCP connections at once.
    pub tcp_per_client: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            queries: DEFAULT_QUERIES,
            forwards: DEFAULT_FORWARDS,
            tcp_per_client: usize::from(DEFAULT_TCP_PER_CLIENT),
        }
    }
}

/// The rates of the clients seen lately.
pub struct Clients {
    slots: Box<[Mutex<Slot>]>,
    hasher: RandomState,
    born: Instant,
    query_interval: u64,
    forward_interval: u64,
}

#[derive(Default)]
struct Slot {
    client: Option<Ipv4Addr>,
    /// Theoretical arrival times (ns after `born`) of the next query and forward.
    queries: u64,
    forwards: u64,
}

impl Clients {
    pub fn new(limits: &Limits) -> Self {
        Self {
            slots: (0..CLIENT_SLOTS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            born: Instant::now(),
            query_interval: WINDOW_NS / u64::from(limits.queries.max(1)),
            forward_interval: WINDOW_NS / u64::from(limits.forwards.max(1)),
        }
    }

    /// Whether this client may send one more query now (it is counted).
    pub fn query(&self, client: Ipv4Addr) -> bool {
        let interval = self.query_interval;
        self.with_slot(client, |slot, now| take(&mut slot.queries, now, interval))
    }

    /// Whether one more query of this client may be forwarded upstream now (it is counted).
    pub fn forward(&self, client: Ipv4Addr) -> bool {
        let interval = self.forward_interval;
        self.with_slot(client, |slot, now| take(&mut slot.forwards, now, interval))
    }

    fn with_slot(&self, client: Ipv4Addr, f: impl FnOnce(&mut Slot, u64) -> bool) -> bool {
        let index = self.hasher.hash_one(client) as usize % self.slots.len();
        let now = self.born.elapsed().as_nanos() as u64;
        let mut slot = self.slots[index].lock().unwrap_or_else(|e| e.into_inner());
        if slot.client != Some(client) {
            *slot = Slot {
                client: Some(client),
                ..Slot::default()
            };
        }
        f(&mut slot, now)
    }
}

/// GCRA: one more event fits when, at one `interval` each, the bucket's events would not
/// reach beyond one window from now.
fn take(tat: &mut u64, now: u64, interval: u64) -> bool {
    let next = (*tat).max(now) + interval;
    if next > now + WINDOW_NS {
        return false;
    }
    *tat = next;
    true
}

/// The TCP connections open at once, per client and in all.
pub struct TcpSlots {
    per_client: usize,
    total: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_client: HashMap<Ipv4Addr, usize>,
}

/// One open connection's place; given back when dropped.
pub struct TcpSlot {
    slots: Arc<TcpSlots>,
    client: Ipv4Addr,
}

impl TcpSlots {
    pub fn new(per_client: usize, total: usize) -> Arc<Self> {
        Arc::new(Self {
            per_client,
            total,
            open: Mutex::default(),
        })
    }

    /// A place for one more connection of this client, or `None` when it has
    /// `per_client` open already, or all clients together have `total`.
    pub fn take(self: &Arc<Self>, client: Ipv4Addr) -> Option<TcpSlot> {
        let mut open = self.lock();
        if open.total >= self.total {
            return None;
        }
        let mine = open.by_client.entry(client).or_insert(0);
        if *mine >= self.per_client {
            return None;
        }
        *mine += 1;
        open.total += 1;
        Some(TcpSlot {
            slots: self.clone(),
            client,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for TcpSlot {
    fn drop(&mut self) {
        let mut open = self.slots.lock();
        open.total -= 1;
        if let Some(mine) = open.by_client.get_mut(&self.client) {
            *mine -= 1;
            if *mine == 0 {
                open.by_client.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 32, 0, last)
    }

    #[test]
    fn a_bucket_holds_one_second_and_refills_at_the_rate() {
        let interval = WINDOW_NS / 100;
        let mut tat = 0;
        let now = 5 * WINDOW_NS;
        let taken = (0..1000).filter(|_| take(&mut tat, now, interval)).count();
        assert_eq!(taken, 100);
        // A tenth of a second later, ten more.
        let later = now + WINDOW_NS / 10;
        let taken = (0..1000)
            .filter(|_| take(&mut tat, later, interval))
            .count();
        assert_eq!(taken, 10);
    }

    #[test]
    fn each_client_has_its_own_rates() {
        let clients = Clients::new(&Limits {
            queries: 50,
            forwards: 5,
            tcp_per_client: 1,
        });
        let queries = (0..1000).filter(|_| clients.query(ip(2))).count();
        // Allow for the clock moving on while the loop runs.
        assert!((50..=55).contains(&queries), "{queries}");
        let forwards = (0..1000).filter(|_| clients.forward(ip(2))).count();
        assert!((5..=6).contains(&forwards), "{forwards}");
        // Another client is not bothered.
        assert!(clients.query(ip(3)) && clients.forward(ip(3)));
    }

    #[test]
    fn the_table_stays_bounded_under_many_sources() {
        let clients = Clients::new(&Limits::default());
        for i in 0..100_000u32 {
            assert!(clients.query(Ipv4Addr::from(0x0a00_0000 + i)));
        }
        assert_eq!(clients.slots.len(), CLIENT_SLOTS);
    }

    #[test]
    fn tcp_connections_are_bounded_per_client_and_in_all() {
        let slots = TcpSlots::new(2, 3);
        let a1 = slots.take(ip(2)).unwrap();
        let _a2 = slots.take(ip(2)).unwrap();
        assert!(slots.take(ip(2)).is_none(), "a third for one client");
        let b1 = slots.take(ip(3)).unwrap();
        assert!(slots.take(ip(4)).is_none(), "a fourth in all");
        drop(a1);
        let _a3 = slots.take(ip(2)).unwrap();
        drop(b1);
        assert!(slots.take(ip(4)).is_some());
        assert_eq!(slots.lock().by_client.len(), 1);
    }
}
