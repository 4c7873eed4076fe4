//! The name table: which names map to which addresses, built from the hook's records, and
//! which of them belong to containers that still live.
//!
//! A record outlives its container when the container was killed and its poststop hook
//! never ran, so every answer checks its owner's pid *and* start time. A positive check is
//! trusted for [`LIVENESS_CACHE`], which bounds both the cost per query under load and how
//! long a killed container's name keeps resolving.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use weave_core::dns::label;
use weave_core::process::ProcessId;
use weave_core::store::{Record, Store, StoreError};

/// How long a positive liveness check is trusted.
pub const LIVENESS_CACHE: Duration = Duration::from_millis(250);

/// Names and addresses of the attached containers, as of one reading of the records.
pub struct Table {
    by_name: HashMap<String, Vec<Entry>>,
    by_addr: HashMap<Ipv4Addr, Vec<(String, usize)>>,
    owners: Vec<Owner>,
    born: Instant,
}

struct Entry {
    addr: Ipv4Addr,
    owner: usize,
}

struct Owner {
    process: Option<ProcessId>,
    /// Milliseconds after `born` (plus one, so 0 means never) of the last check that found
    /// the process alive.
    alive_at: AtomicU64,
    /// A process that died stays dead: no need to look again.
    dead: AtomicBool,
}

impl Table {
    pub fn empty() -> Self {
        Self::from_records(&[])
    }

    /// Reads every record of the store; records that cannot be read are left out and
    /// returned as errors, so one bad file does not hide the others.
    pub fn load(store: &Store) -> Result<(Self, Vec<StoreError>), StoreError> {
        let listing = store.records()?;
        Ok((Self::from_records(&listing.records), listing.unreadable))
    }

    pub fn from_records(records: &[Record]) -> Self {
        let mut table = Self {
            by_name: HashMap::new(),
            by_addr: HashMap::new(),
            owners: Vec::with_capacity(records.len()),
            born: Instant::now(),
        };
        for record in records {
            table.add(record);
        }
        table
    }

    fn add(&mut self, record: &Record) {
        // Records are the hook's, but a hand-edited one must not put junk into answers.
        let names: Vec<&String> = record
            .names
            .iter()
            .filter(|n| label(n).is_ok_and(|l| l == **n))
            .collect();
        if names.is_empty() {
            return;
        }
        let owner = self.owners.len();
        self.owners.push(Owner {
            process: record.owner,
            alive_at: AtomicU64::new(0),
            dead: AtomicBool::new(false),
        });
        for name in names {
            let entries = self.by_name.entry(name.clone()).or_default();
            for net in &record.addrs {
                entries.push(Entry {
                    addr: net.addr(),
                    owner,
                });
                self.by_addr
                    .entry(net.addr())
                    .or_default()
                    .push((name.clone(), owner));
            }
        }
    }

    /// Addresses of live containers that have this name (a lowercase label).
    pub fn addresses(&self, name: &str) -> Vec<Ipv4Addr> {
        self.by_name
            .get(name)
            .map(|entries| {
                entries
                    .iter()
                    .filter(|e| self.alive(e.owner))
                    .map(|e| e.addr)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Names of the live containers that have this address.
    pub fn names(&self, addr: Ipv4Addr) -> Vec<&str> {
        self.by_addr
            .get(&addr)
            .map(|names| {
                names
                    .iter()
                    .filter(|(_, owner)| self.alive(*owner))
                    .map(|(name, _)| name.as_str())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    fn alive(&self, index: usize) -> bool {
        let owner = &self.owners[index];
        if owner.dead.load(Ordering::Relaxed) {
            return false;
        }
        let now = self.born.elapsed().as_millis() as u64 + 1;
        let checked = owner.alive_at.load(Ordering::Relaxed);
        if checked != 0 && now.saturating_sub(checked) < LIVENESS_CACHE.as_millis() as u64 {
            return true;
        }
        let alive = owner.process.is_some_and(|p| p.is_alive());
        match alive {
            true => owner.alive_at.store(now, Ordering::Relaxed),
            false => owner.dead.store(true, Ordering::Relaxed),
        }
        alive
    }
}

/// The current table, replaced as a whole when the records change.
#[derive(Clone)]
pub struct Names(Arc<RwLock<Arc<Table>>>);

impl Names {
    pub fn new(table: Table) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(table))))
    }

    pub fn current(&self) -> Arc<Table> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, table: Table) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn me() -> Option<ProcessId> {
        Some(ProcessId::of(std::process::id() as i32).unwrap())
    }

    pub fn gone() -> Option<ProcessId> {
        me().map(|p| ProcessId {
            start_time: p.start_time + 1,
            ..p
        })
    }

    pub fn record(id: &str, addrs: &[&str], names: &[&str], owner: Option<ProcessId>) -> Record {
        Record {
            id: id.into(),
            veth_index: None,
            bridge: "weave".into(),
            veth: "vethwe0".into(),
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            owner,
            names: names.iter().map(|n| n.to_string()).collect(),
        }
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn names_map_to_every_address_of_their_live_containers() {
        let t = Table::from_records(&[
            record("a", &["10.32.0.2/12", "10.2.0.2/24"], &["web", "a1"], me()),
            record("b", &["10.32.0.3/12"], &["web"], me()),
            record("c", &["10.32.0.4/12"], &[], me()),
        ]);
        assert_eq!(
            t.addresses("web"),
            [ip("10.32.0.2"), ip("10.2.0.2"), ip("10.32.0.3")]
        );
        assert_eq!(t.addresses("a1"), [ip("10.32.0.2"), ip("10.2.0.2")]);
        assert!(t.addresses("c").is_empty());
        assert_eq!(t.names(ip("10.2.0.2")), ["web", "a1"]);
        assert!(t.names(ip("10.32.0.4")).is_empty());
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn names_of_gone_containers_are_not_answered() {
        let t = Table::from_records(&[
            record("killed", &["10.32.0.2/12"], &["b"], gone()),
            record("unknown", &["10.32.0.3/12"], &["c"], None),
        ]);
        assert!(t.addresses("b").is_empty());
        assert!(t.addresses("c").is_empty());
        assert!(t.names(ip("10.32.0.2")).is_empty());
    }

    #[test]
    fn hand_edited_junk_names_are_ignored() {
        let t = Table::from_records(&[record(
            "a",
            &["10.32.0.2/12"],
            &["UPPER", "a.b", "", "ok"],
            me(),
        )]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.addresses("ok"), [ip("10.32.0.2")]);
    }

    #[test]
    fn load_skips_corrupt_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let good = record("a", &["10.32.0.2/12"], &["web"], me());
        std::fs::write(
            store.records_dir().join("a.json"),
            serde_json::to_vec(&good).unwrap(),
        )
        .unwrap();
        std::fs::write(store.records_dir().join("bad.json"), "{").unwrap();
        let (t, unreadable) = Table::load(&store).unwrap();
        assert_eq!(t.addresses("web"), [ip("10.32.0.2")]);
        assert_eq!(unreadable.len(), 1);
    }
}
