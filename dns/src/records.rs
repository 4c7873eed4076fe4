//! The name table: which names map to which addresses, built from the hook's records, and
//! which of them belong to containers that still live.
//!
//! The table is keyed by record file (`<key>.json` in the records directory), so one
//! changed file is applied alone ([`Names::apply`]): with thousands of records, a change
//! costs one file read, not a re-read of every record.
//!
//! A record outlives its container when the container was killed and its poststop hook
//! never ran, so every answer checks its owner's pid *and* start time. A positive check is
//! trusted for [`LIVENESS_CACHE`], which bounds both the cost per query under load and how
//! long a killed container's name keeps resolving.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use weave_core::dns::label;
use weave_core::layout::{self, RECORD_SUFFIX};
use weave_core::process::ProcessId;
use weave_core::store::{Record, Store, StoreError};

/// How long a positive liveness check is trusted.
pub const LIVENESS_CACHE: Duration = Duration::from_millis(250);

/// Names and addresses of the attached containers.
pub struct Table {
    by_name: HashMap<String, Vec<Entry>>,
    by_addr: HashMap<Ipv4Addr, Vec<(String, Arc<Owner>)>>,
    /// What each record file put in, so that it can be taken out again.
    by_key: HashMap<String, Attached>,
    born: Instant,
}

struct Entry {
    addr: Ipv4Addr,
    owner: Arc<Owner>,
}

struct Attached {
    owner: Arc<Owner>,
    names: Vec<String>,
    addrs: Vec<Ipv4Addr>,
}

struct Owner {
    process: Option<ProcessId>,
    /// Milliseconds after the table's birth (plus one, so 0 means never) of the last check
    /// that found the process alive.
    alive_at: AtomicU64,
    /// A process that died stays dead: no need to look again.
    dead: AtomicBool,
}

impl Table {
    pub fn empty() -> Self {
        Self {
            by_name: HashMap::new(),
            by_addr: HashMap::new(),
            by_key: HashMap::new(),
            born: Instant::now(),
        }
    }

    /// Reads every record of the store; records that cannot be read are left out and
    /// returned as errors, so one bad file does not hide the others.
    pub fn load(store: &Store) -> Result<(Self, Vec<StoreError>), StoreError> {
        let listing = store.records()?;
        let mut table = Self::empty();
        for record in &listing.records {
            table.insert(record.id.clone(), record);
        }
        Ok((table, listing.unreadable))
    }

    /// A table of these records, keyed by their ids (as the hook names their files).
    pub fn from_records(records: &[Record]) -> Self {
        let mut table = Self::empty();
        for record in records {
            table.insert(record.id.clone(), record);
        }
        table
    }

    /// Puts in the names of one record file, replacing what that file put in before.
    fn insert(&mut self, key: String, record: &Record) {
        self.remove(&key);
        // Records are the hook's, but a hand-edited one must not put junk into answers.
        let mut names: Vec<String> = Vec::new();
        for name in &record.names {
            if label(name).is_ok_and(|l| l == *name) && !names.contains(name) {
                names.push(name.clone());
            }
        }
        if names.is_empty() {
            return;
        }
        let addrs: Vec<Ipv4Addr> = record.addrs.iter().map(|net| net.addr()).collect();
        let owner = Arc::new(Owner {
            process: record.owner,
            alive_at: AtomicU64::new(0),
            dead: AtomicBool::new(false),
        });
        for name in &names {
            let entries = self.by_name.entry(name.clone()).or_default();
            for &addr in &addrs {
                entries.push(Entry {
                    addr,
                    owner: owner.clone(),
                });
                self.by_addr
                    .entry(addr)
                    .or_default()
                    .push((name.clone(), owner.clone()));
            }
        }
        self.by_key.insert(
            key,
            Attached {
                owner,
                names,
                addrs,
            },
        );
    }

    /// Takes out the names of one record file.
    fn remove(&mut self, key: &str) {
        let Some(gone) = self.by_key.remove(key) else {
            return;
        };
        for name in &gone.names {
            if let Some(entries) = self.by_name.get_mut(name) {
                entries.retain(|e| !Arc::ptr_eq(&e.owner, &gone.owner));
                if entries.is_empty() {
                    self.by_name.remove(name);
                }
            }
        }
        for addr in &gone.addrs {
            if let Some(names) = self.by_addr.get_mut(addr) {
                names.retain(|(_, owner)| !Arc::ptr_eq(owner, &gone.owner));
                if names.is_empty() {
                    self.by_addr.remove(addr);
                }
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
                    .filter(|e| self.alive(&e.owner))
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
                    .filter(|(_, owner)| self.alive(owner))
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

    fn alive(&self, owner: &Owner) -> bool {
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

/// The key of a record file's name: the container id of `<id>.json` (the store's temporary
/// files are never taken for records).
pub fn record_key(file_name: &str) -> Option<String> {
    layout::id_of_file(file_name, RECORD_SUFFIX).map(|id| id.as_str().to_string())
}

/// One record file, read by the store's own rule; `None` when it is gone.
pub fn read_record(path: &Path) -> Result<Option<Record>, StoreError> {
    weave_core::store::read_record_file(path)
}

/// The current table, shared by the serving tasks (readers) and the watcher (the one
/// writer). A writer holds the lock only to apply one record, or to swap in a table read
/// beforehand, never while it reads files.
#[derive(Clone)]
pub struct Names(Arc<RwLock<Table>>);

impl Names {
    pub fn new(table: Table) -> Self {
        Self(Arc::new(RwLock::new(table)))
    }

    /// The table, locked for reading: hold it for one lookup (never across an await).
    pub fn current(&self) -> RwLockReadGuard<'_, Table> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the whole table (after a full re-read).
    pub fn replace(&self, table: Table) {
        let old = std::mem::replace(&mut *self.write(), table);
        // Freed outside the lock: a big table takes a while to drop.
        drop(old);
    }

    /// Applies one record file's new content: `None` when the file is gone or unreadable.
    pub fn apply(&self, key: &str, record: Option<&Record>) {
        let mut table = self.write();
        match record {
            Some(record) => table.insert(key.to_string(), record),
            None => table.remove(key),
        }
    }

    pub(crate) fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
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
            mac: None,
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
    fn applying_one_record_changes_only_its_own_names() {
        let names = Names::new(Table::from_records(&[
            record("a", &["10.32.0.2/12"], &["web", "a"], me()),
            record("b", &["10.32.0.3/12"], &["web"], me()),
        ]));
        names.apply(
            "a",
            Some(&record("a", &["10.32.0.4/12"], &["api", "api"], me())),
        );
        let t = names.current();
        assert_eq!(t.addresses("web"), [ip("10.32.0.3")]);
        assert_eq!(t.addresses("api"), [ip("10.32.0.4")]);
        assert!(t.addresses("a").is_empty());
        assert!(t.names(ip("10.32.0.2")).is_empty());
        assert_eq!(t.names(ip("10.32.0.4")), ["api"]);
        assert_eq!(t.len(), 2);
        drop(t);
        names.apply("b", None);
        names.apply("never-there", None);
        let t = names.current();
        assert!(t.addresses("web").is_empty());
        assert!(t.names(ip("10.32.0.3")).is_empty());
        assert_eq!(t.len(), 1);
        drop(t);
        // A record left with no valid name takes its old names out.
        names.apply("a", Some(&record("a", &["10.32.0.4/12"], &["Bad_"], me())));
        assert!(names.current().is_empty());
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
