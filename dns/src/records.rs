//! The name table: which names map to which addresses, built from the hook's records, and
//! which of them belong to containers that still live.
//!
//! The table is keyed by record file (`<key>.json` in the records directory), so one
//! changed file is applied alone ([`Names::apply`]): with thousands of records, a change
//! costs one file read, not a re-read of every record.
//!
//! Who is answered for a name: its claimants are kept in attach order (the start time of
//! the container's process, then its pid: neither is the container's to choose, unlike its
//! id, and both are in the record, so the order survives a restart of weave-dns). The first
//! live claimant decides: one that does not share (`weave.dns.shared` unset, the default)
//! holds the name alone, whoever else claims it; one that shares is answered together with
//! every later live claimant that shares too. When it goes, the next claimant decides.
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
use weave_core::mesh::{started_ms, NamedContainer, RemoteNames};
use weave_core::process::ProcessId;
use weave_core::store::{Record, Store, StoreError};

/// How long a positive liveness check is trusted.
pub const LIVENESS_CACHE: Duration = Duration::from_millis(250);

/// Names and addresses of the attached containers, this host's and (mirrored by the mesh
/// agent) the other hosts'.
pub struct Table {
    /// Each name's claimants, in attach order.
    by_name: HashMap<String, Vec<Arc<Claimant>>>,
    by_addr: HashMap<Ipv4Addr, Vec<(String, Arc<Claimant>)>>,
    /// What each record file put in, so that it can be taken out again.
    by_key: HashMap<String, Attached>,
    /// What each other host's mirror file put in.
    by_host: HashMap<String, Vec<Attached>>,
    born: Instant,
}

struct Attached {
    claimant: Arc<Claimant>,
    names: Vec<String>,
}

/// One container, as a claimant of its names.
struct Claimant {
    process: Option<ProcessId>,
    addrs: Vec<Ipv4Addr>,
    shared: bool,
    /// Attach order, comparable between hosts: wall-clock start of its process in
    /// milliseconds, its pid, its host (empty for this host's).
    order: (u64, i32, String),
    /// Another host's container: alive as long as its host's agent publishes it.
    remote: bool,
    /// Milliseconds after the table's birth (plus one, so 0 means never) of the last check
    /// that found the process alive.
    alive_at: AtomicU64,
    /// A process that died stays dead: no need to look again.
    dead: AtomicBool,
}

impl Claimant {
    /// Attach order: the container's process started first (wall clock, so that claimants
    /// of other hosts compare), then the lower pid, then the host's name (a record without a
    /// process is never alive, so its place does not matter).
    fn order(&self) -> (u64, i32, &str) {
        (self.order.0, self.order.1, &self.order.2)
    }

    fn local(record: &Record) -> Self {
        let order = match record.owner {
            Some(p) => (started_ms(p).unwrap_or(u64::MAX), p.pid, String::new()),
            None => (u64::MAX, i32::MAX, String::new()),
        };
        Self {
            process: record.owner,
            addrs: record.addrs.iter().map(|net| net.addr()).collect(),
            shared: record.shared,
            order,
            remote: false,
            alive_at: AtomicU64::new(0),
            dead: AtomicBool::new(false),
        }
    }

    fn remote(host: &str, c: &NamedContainer) -> Self {
        Self {
            process: None,
            addrs: c.addrs.clone(),
            shared: c.shared,
            order: (c.started_ms, c.pid, host.to_string()),
            remote: true,
            alive_at: AtomicU64::new(0),
            dead: AtomicBool::new(false),
        }
    }
}

/// The valid names of a list, without duplicates: records and mirror files are weave's,
/// but a hand-edited one must not put junk into answers.
fn valid_names(names: &[String]) -> Vec<String> {
    let mut valid: Vec<String> = Vec::new();
    for name in names {
        if label(name).is_ok_and(|l| l == *name) && !valid.contains(name) {
            valid.push(name.clone());
        }
    }
    valid
}

impl Table {
    pub fn empty() -> Self {
        Self {
            by_name: HashMap::new(),
            by_addr: HashMap::new(),
            by_key: HashMap::new(),
            by_host: HashMap::new(),
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
        let names = valid_names(&record.names);
        if names.is_empty() {
            return;
        }
        let attached = Attached {
            claimant: Arc::new(Claimant::local(record)),
            names,
        };
        self.link(&attached);
        self.by_key.insert(key, attached);
    }

    /// Takes out the names of one record file.
    fn remove(&mut self, key: &str) {
        if let Some(gone) = self.by_key.remove(key) {
            self.unlink(&gone);
        }
    }

    /// Puts in another host's weave DNS containers (its mirror file), replacing what that
    /// host had; `None` takes them all out (the file is gone: so is the host, or its agent).
    pub fn set_host(&mut self, host: &str, mirror: Option<&RemoteNames>) {
        for gone in self.by_host.remove(host).unwrap_or_default() {
            self.unlink(&gone);
        }
        let Some(mirror) = mirror else {
            return;
        };
        let mut attached = Vec::with_capacity(mirror.containers.len());
        for container in &mirror.containers {
            let names = valid_names(&container.names);
            if names.is_empty() {
                continue;
            }
            let one = Attached {
                claimant: Arc::new(Claimant::remote(host, container)),
                names,
            };
            self.link(&one);
            attached.push(one);
        }
        if !attached.is_empty() {
            self.by_host.insert(host.to_string(), attached);
        }
    }

    /// The hosts whose containers the table holds.
    pub fn hosts(&self) -> Vec<String> {
        self.by_host.keys().cloned().collect()
    }

    /// Moves the other hosts' containers of `old` into this table (after a re-read of the
    /// local records, which knows only this host's).
    fn adopt_hosts(&mut self, old: &mut Table) {
        for (host, attached) in old.by_host.drain() {
            for one in &attached {
                self.link(one);
            }
            self.by_host.insert(host, attached);
        }
    }

    fn link(&mut self, attached: &Attached) {
        let claimant = &attached.claimant;
        let order = claimant.order();
        for name in &attached.names {
            let claimants = self.by_name.entry(name.clone()).or_default();
            let at = claimants.partition_point(|c| c.order() <= order);
            claimants.insert(at, claimant.clone());
            for &addr in &claimant.addrs {
                self.by_addr
                    .entry(addr)
                    .or_default()
                    .push((name.clone(), claimant.clone()));
            }
        }
    }

    fn unlink(&mut self, gone: &Attached) {
        for name in &gone.names {
            if let Some(claimants) = self.by_name.get_mut(name) {
                claimants.retain(|c| !Arc::ptr_eq(c, &gone.claimant));
                if claimants.is_empty() {
                    self.by_name.remove(name);
                }
            }
        }
        for addr in &gone.claimant.addrs {
            if let Some(names) = self.by_addr.get_mut(addr) {
                names.retain(|(_, c)| !Arc::ptr_eq(c, &gone.claimant));
                if names.is_empty() {
                    self.by_addr.remove(addr);
                }
            }
        }
    }

    /// The addresses this name (a lowercase label) is answered with, in attach order of
    /// their containers.
    pub fn addresses(&self, name: &str) -> Vec<Ipv4Addr> {
        self.by_name
            .get(name)
            .map(|claimants| {
                self.holders(claimants)
                    .into_iter()
                    .flat_map(|c| c.addrs.iter().copied())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The names this address is answered for: those its live container is answered with.
    pub fn names(&self, addr: Ipv4Addr) -> Vec<&str> {
        self.by_addr
            .get(&addr)
            .map(|names| {
                names
                    .iter()
                    .filter(|(name, claimant)| self.holds(name, claimant))
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

    /// The claimants a name is answered with: the first live one alone when it does not
    /// share, else it and every later live one that shares.
    fn holders<'a>(&self, claimants: &'a [Arc<Claimant>]) -> Vec<&'a Claimant> {
        let mut live = claimants.iter().filter(|c| self.alive(c));
        let Some(first) = live.next() else {
            return Vec::new();
        };
        if !first.shared {
            return vec![first];
        }
        std::iter::once(first)
            .chain(live.filter(|c| c.shared))
            .map(|c| c.as_ref())
            .collect()
    }

    fn holds(&self, name: &str, claimant: &Claimant) -> bool {
        self.by_name.get(name).is_some_and(|claimants| {
            self.holders(claimants)
                .iter()
                .any(|h| std::ptr::eq(*h, claimant))
        })
    }

    fn alive(&self, claimant: &Claimant) -> bool {
        if claimant.remote {
            return true;
        }
        if claimant.dead.load(Ordering::Relaxed) {
            return false;
        }
        let now = self.born.elapsed().as_millis() as u64 + 1;
        let checked = claimant.alive_at.load(Ordering::Relaxed);
        if checked != 0 && now.saturating_sub(checked) < LIVENESS_CACHE.as_millis() as u64 {
            return true;
        }
        let alive = claimant.process.is_some_and(|p| p.is_alive());
        match alive {
            true => claimant.alive_at.store(now, Ordering::Relaxed),
            false => claimant.dead.store(true, Ordering::Relaxed),
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

    /// Replaces the local records (after a full re-read of them); the other hosts'
    /// containers stay.
    pub fn replace(&self, mut table: Table) {
        let old = {
            let mut current = self.write();
            table.adopt_hosts(&mut current);
            std::mem::replace(&mut *current, table)
        };
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

    /// Applies one host's mirror file: `None` when it is gone or unreadable.
    pub fn apply_host(&self, host: &str, mirror: Option<&RemoteNames>) {
        self.write().set_host(host, mirror);
    }

    /// Replaces every other host's containers with these (after a full re-read of the
    /// mirror directory).
    pub fn replace_hosts(&self, mirrors: &[RemoteNames]) {
        let mut table = self.write();
        for host in table.hosts() {
            if !mirrors.iter().any(|m| m.host == host) {
                table.set_host(&host, None);
            }
        }
        for mirror in mirrors {
            table.set_host(&mirror.host, Some(mirror));
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
            shared: false,
            route: false,
            netns: None,
        }
    }

    /// A record that shares its names.
    pub fn sharing(id: &str, addrs: &[&str], names: &[&str], owner: Option<ProcessId>) -> Record {
        Record {
            shared: true,
            ..record(id, addrs, names, owner)
        }
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn names_map_to_every_address_of_their_live_containers() {
        let t = Table::from_records(&[
            sharing("a", &["10.32.0.2/12", "10.2.0.2/24"], &["web", "a1"], me()),
            sharing("b", &["10.32.0.3/12"], &["web"], me()),
            sharing("c", &["10.32.0.4/12"], &[], me()),
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

    /// Processes started one after the other (so in attach order), killed when dropped.
    struct Procs(Vec<std::process::Child>);

    impl Procs {
        fn start(n: usize) -> Self {
            Self(
                (0..n)
                    .map(|_| {
                        std::process::Command::new("sleep")
                            .arg("60")
                            .spawn()
                            .unwrap()
                    })
                    .collect(),
            )
        }

        fn id(&self, i: usize) -> Option<ProcessId> {
            Some(ProcessId::of(self.0[i].id() as i32).unwrap())
        }

        fn kill(&mut self, i: usize) {
            self.0[i].kill().unwrap();
            self.0[i].wait().unwrap();
        }
    }

    impl Drop for Procs {
        fn drop(&mut self) {
            for child in &mut self.0 {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    #[test]
    fn a_name_is_its_first_live_claimants_alone_whatever_the_ids() {
        let mut procs = Procs::start(3);
        // Ids and file order favour the latecomers: neither counts.
        let records = [
            record("0-late", &["10.32.0.3/12"], &["web"], procs.id(1)),
            sharing("00-later", &["10.32.0.4/12"], &["web"], procs.id(2)),
            record("victim", &["10.32.0.2/12"], &["web", "v"], procs.id(0)),
        ];
        for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
            // As a restarted weave-dns reads them, in any order.
            let t = Table::from_records(&order.map(|i| records[i].clone()));
            assert_eq!(t.addresses("web"), [ip("10.32.0.2")]);
            assert_eq!(t.names(ip("10.32.0.2")), ["web", "v"]);
            // A claimant that does not hold the name gets no PTR for it either.
            assert!(t.names(ip("10.32.0.3")).is_empty());
        }
        // The holder goes: the next claimant by the same rule holds it.
        procs.kill(0);
        let t = Table::from_records(&records);
        assert_eq!(t.addresses("web"), [ip("10.32.0.3")]);
        assert_eq!(t.names(ip("10.32.0.3")), ["web"]);
        assert!(t.addresses("v").is_empty());
        procs.kill(1);
        let t = Table::from_records(&records);
        assert_eq!(t.addresses("web"), [ip("10.32.0.4")]);
    }

    #[test]
    fn a_shared_name_is_answered_with_every_live_sharer() {
        let mut procs = Procs::start(4);
        let records = [
            sharing("a", &["10.32.0.2/12"], &["web"], procs.id(0)),
            record("b", &["10.32.0.3/12"], &["web"], procs.id(1)),
            sharing("c", &["10.32.0.4/12", "10.2.0.4/24"], &["web"], procs.id(2)),
            sharing("d", &["10.32.0.5/12"], &["web"], procs.id(3)),
        ];
        let t = Table::from_records(&records);
        assert_eq!(
            t.addresses("web"),
            [
                ip("10.32.0.2"),
                ip("10.32.0.4"),
                ip("10.2.0.4"),
                ip("10.32.0.5")
            ]
        );
        // b wanted the name alone but came after a sharer: not answered.
        assert!(t.names(ip("10.32.0.3")).is_empty());
        assert_eq!(t.names(ip("10.2.0.4")), ["web"]);
        // The first sharer goes: b is first and holds the name alone.
        procs.kill(0);
        let t = Table::from_records(&records);
        assert_eq!(t.addresses("web"), [ip("10.32.0.3")]);
        assert!(t.names(ip("10.32.0.4")).is_empty());
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

    pub fn remote(id: &str, addr: &str, names: &[&str], started_ms: u64) -> NamedContainer {
        NamedContainer {
            id: id.into(),
            names: names.iter().map(|n| n.to_string()).collect(),
            addrs: vec![ip(addr)],
            shared: false,
            started_ms,
            pid: 1,
        }
    }

    pub fn mirror(host: &str, containers: Vec<NamedContainer>) -> RemoteNames {
        RemoteNames {
            version: weave_core::mesh::VERSION,
            host: host.into(),
            containers,
        }
    }

    fn my_start() -> u64 {
        started_ms(me().unwrap()).unwrap()
    }

    #[test]
    fn remote_claimants_are_ordered_with_local_ones_by_wall_clock_start() {
        let names = Names::new(Table::from_records(&[record(
            "local",
            &["10.32.0.2/12"],
            &["web", "mine"],
            me(),
        )]));
        // Started before this process, on host b: it holds "web"; this host keeps "mine".
        names.apply_host(
            "hostb",
            Some(&mirror(
                "hostb",
                vec![remote("b1", "10.32.1.2", &["web", "b"], my_start() - 1000)],
            )),
        );
        let t = names.current();
        assert_eq!(t.addresses("web"), [ip("10.32.1.2")]);
        assert_eq!(t.addresses("b"), [ip("10.32.1.2")]);
        assert_eq!(t.addresses("mine"), [ip("10.32.0.2")]);
        // PTR of a remote address; the local one lost "web".
        assert_eq!(t.names(ip("10.32.1.2")), ["web", "b"]);
        assert_eq!(t.names(ip("10.32.0.2")), ["mine"]);
        drop(t);
        // Started later on host c: this host's container holds "mine" against it.
        names.apply_host(
            "hostc",
            Some(&mirror(
                "hostc",
                vec![remote("c1", "10.32.2.2", &["mine"], my_start() + 1000)],
            )),
        );
        assert_eq!(names.current().addresses("mine"), [ip("10.32.0.2")]);
        // Host b's container goes: the name falls to the next claimant, here.
        names.apply_host("hostb", Some(&mirror("hostb", vec![])));
        let t = names.current();
        assert_eq!(t.addresses("web"), [ip("10.32.0.2")]);
        assert!(t.addresses("b").is_empty() && t.names(ip("10.32.1.2")).is_empty());
        drop(t);
        // A whole host goes at once.
        names.apply_host("hostc", None);
        assert!(names.current().hosts().is_empty());
    }

    #[test]
    fn a_shared_name_is_answered_with_every_host_s_sharers() {
        let mut b = remote("b1", "10.32.1.2", &["api"], my_start() + 10);
        b.shared = true;
        let mut c = remote("c1", "10.32.2.2", &["api"], my_start() + 20);
        c.shared = true;
        let names = Names::new(Table::from_records(&[sharing(
            "local",
            &["10.32.0.2/12"],
            &["api"],
            me(),
        )]));
        names.replace_hosts(&[mirror("hostb", vec![b]), mirror("hostc", vec![c])]);
        assert_eq!(
            names.current().addresses("api"),
            [ip("10.32.0.2"), ip("10.32.1.2"), ip("10.32.2.2")]
        );
        // A re-read of the local records keeps the other hosts' containers.
        names.replace(Table::empty());
        assert_eq!(
            names.current().addresses("api"),
            [ip("10.32.1.2"), ip("10.32.2.2")]
        );
        assert_eq!(names.current().names(ip("10.32.2.2")), ["api"]);
        // A full re-read of the mirrors drops the hosts it does not find.
        names.replace_hosts(&[]);
        assert!(names.current().is_empty());
    }

    #[test]
    fn equal_start_times_on_two_hosts_are_ordered_the_same_everywhere() {
        let names = Names::new(Table::empty());
        names.replace_hosts(&[
            mirror("hostz", vec![remote("z", "10.32.3.2", &["x"], 5)]),
            mirror("hosta", vec![remote("a", "10.32.4.2", &["x"], 5)]),
        ]);
        assert_eq!(names.current().addresses("x"), [ip("10.32.4.2")]);
        // A bad name in a mirror is left out; its good ones stay.
        names.apply_host(
            "hosty",
            Some(&mirror(
                "hosty",
                vec![remote("y", "10.32.5.2", &["Bad_", "ok"], 1)],
            )),
        );
        let t = names.current();
        assert_eq!(t.names(ip("10.32.5.2")), ["ok"]);
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
