//! The address store: which container holds which address, under the state directory.
//!
//! ```text
//! <state-dir>/lock                 flock(2) held while the store is read or changed
//! <state-dir>/containers/<id>.json one record per attached container (written atomically)
//! <state-dir>/addrs/<ip>           one file per reserved address, holding its owner's id
//! <state-dir>/released/<id>        addresses a container had at its last detach
//! ```
//! Every change happens under the lock, so two hooks never hand out one address, and a
//! reader never sees half a change. A hook killed mid-change leaves at worst an address file
//! without a record, or a record whose process is gone: `collect_garbage` removes both.

use std::collections::HashSet;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::cidr::AddrRequest;
use crate::failpoint;
use crate::oci::ContainerId;
use crate::process::ProcessId;

/// How long a detached container's addresses are remembered for its restart.
pub const RELEASED_MEMORY: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("address {addr} is in use by container {owner}; choose another address or stop that container")]
    AddressInUse { addr: Ipv4Addr, owner: String },
    #[error(
        "no free address left in {0}; stop containers, or run `weave-hook gc` if some were killed"
    )]
    SubnetFull(Ipv4Net),
    #[error("record {0} is corrupt: {1}")]
    Corrupt(PathBuf, String),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// One attached container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub bridge: String,
    pub veth: String,
    pub addrs: Vec<Ipv4Net>,
    /// The container's init process; `None` for a record whose process is not known.
    pub owner: Option<ProcessId>,
    /// Its weave DNS names: lowercase labels without the domain (empty without weave DNS).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

impl Record {
    pub fn is_alive(&self) -> bool {
        self.owner.is_some_and(|p| p.is_alive())
    }
}

/// Who reserves addresses: everything of its record but the addresses.
#[derive(Debug, Clone, Copy)]
pub struct Holder<'a> {
    pub id: &'a ContainerId,
    pub bridge: &'a str,
    pub veth: &'a str,
    pub owner: Option<ProcessId>,
    pub names: &'a [String],
}

/// What `collect_garbage` removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Garbage {
    /// Records of containers that are gone (their veths are the caller's to delete).
    pub dead: Vec<Record>,
    /// Address files with no record behind them.
    pub orphan_addrs: Vec<Ipv4Addr>,
}

pub struct Store {
    root: PathBuf,
}

/// The store's lock; released when dropped (or when the process dies).
struct Lock(#[allow(dead_code)] File);

impl Store {
    /// A handle on the store under `root`, created (mode 0700) when missing.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        for dir in [
            root.to_path_buf(),
            root.join("containers"),
            root.join("addrs"),
            root.join("released"),
        ] {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(io_err("create directory", &dir))?;
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// A handle for reading only: nothing is created.
    pub fn existing(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock(&self) -> Result<Lock, StoreError> {
        let path = self.root.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err("open", &path))?;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io_err("lock", &path)(io::Error::last_os_error()));
        }
        Ok(Lock(file))
    }

    /// Runs `f` under the store's lock, for other state-directory changes that must not race.
    pub fn locked<T>(&self, f: impl FnOnce() -> T) -> Result<T, StoreError> {
        let _lock = self.lock()?;
        Ok(f())
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.records_dir().join(format!("{id}.json"))
    }

    fn addr_path(&self, ip: Ipv4Addr) -> PathBuf {
        self.root.join("addrs").join(ip.to_string())
    }

    fn released_path(&self, id: &str) -> PathBuf {
        self.root.join("released").join(id)
    }

    /// Reserves the requested addresses for a container and records it.
    ///
    /// `DefaultRange` requests allocate from `default_range`, whose first host address is
    /// kept for weave itself (the bridge's own address). A previous record of the same id is
    /// replaced: its container is gone (runtimes do not reuse a live id), and its addresses
    /// are preferred, as are those it had at its last detach.
    pub fn reserve(
        &self,
        holder: &Holder,
        requests: &[AddrRequest],
        default_range: Ipv4Net,
    ) -> Result<Record, StoreError> {
        let id = holder.id;
        let _lock = self.lock()?;
        let mut preferred = self.released_addrs(id.as_str());
        if let Some(stale) = self.read_record(id.as_str())? {
            preferred.extend(stale.addrs.iter().map(Ipv4Net::addr));
        }
        let mut claimed: Vec<Ipv4Net> = Vec::with_capacity(requests.len());
        let result = requests.iter().try_for_each(|req| {
            let net = match *req {
                AddrRequest::Exact(net) => self.claim_exact(id, net).map(|()| net)?,
                AddrRequest::Allocate(subnet) => self.allocate(id, subnet, false, &preferred)?,
                AddrRequest::DefaultRange => self.allocate(id, default_range, true, &preferred)?,
            };
            claimed.push(net);
            Ok(())
        });
        let record = Record {
            id: id.as_str().to_string(),
            bridge: holder.bridge.to_string(),
            veth: holder.veth.to_string(),
            addrs: claimed.clone(),
            owner: holder.owner,
            names: holder.names.to_vec(),
        };
        let result = result.and_then(|()| self.write_record(&record));
        if let Err(e) = result {
            for net in &claimed {
                self.release_addr(net.addr(), id.as_str());
            }
            return Err(e);
        }
        Ok(record)
    }

    /// Releases a container's addresses and forgets its record. Returns the record, or
    /// `None` when the container was not attached (which is not an error).
    pub fn release(&self, id: &ContainerId) -> Result<Option<Record>, StoreError> {
        let _lock = self.lock()?;
        self.release_locked(id.as_str())
    }

    fn release_locked(&self, id: &str) -> Result<Option<Record>, StoreError> {
        let Some(record) = self.read_record(id)? else {
            return Ok(None);
        };
        for net in &record.addrs {
            self.release_addr(net.addr(), id);
        }
        self.remember_released(&record);
        let path = self.record_path(id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(Some(record)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Some(record)),
            Err(e) => Err(io_err("remove", &path)(e)),
        }
    }

    /// Every attached container, sorted by id.
    pub fn records(&self) -> Result<Vec<Record>, StoreError> {
        let (records, mut unreadable) = self.readable_records()?;
        match unreadable.is_empty() {
            true => Ok(records),
            false => Err(unreadable.swap_remove(0)),
        }
    }

    /// The directory holding one record per attached container (weave-dns watches it).
    pub fn records_dir(&self) -> PathBuf {
        self.root.join("containers")
    }

    /// Every record that can be read, sorted by id, and the errors of those that cannot:
    /// for readers that must not let one bad file hide the others (weave-dns).
    pub fn readable_records(&self) -> Result<(Vec<Record>, Vec<StoreError>), StoreError> {
        let dir = self.records_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Default::default()),
            Err(e) => return Err(io_err("read directory", &dir)(e)),
        };
        let mut records = Vec::new();
        let mut unreadable = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("read directory", &dir))?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            match self.read_record(id) {
                Ok(Some(record)) => records.push(record),
                Ok(None) => {}
                Err(e) => unreadable.push(e),
            }
        }
        records.sort_by(|a, b| a.id.cmp(&b.id));
        Ok((records, unreadable))
    }

    /// Releases what belongs to containers that are gone, and address files without a
    /// record (left by a hook killed between writing them and writing its record).
    pub fn collect_garbage(&self) -> Result<Garbage, StoreError> {
        let _lock = self.lock()?;
        let mut garbage = Garbage::default();
        for record in self.records()? {
            if !record.is_alive() {
                if let Some(r) = self.release_locked(&record.id)? {
                    garbage.dead.push(r);
                }
            }
        }
        let owners: HashSet<String> = self.records()?.into_iter().map(|r| r.id).collect();
        let dir = self.root.join("addrs");
        for entry in fs::read_dir(&dir).map_err(io_err("read directory", &dir))? {
            let entry = entry.map_err(io_err("read directory", &dir))?;
            let Some(ip) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<Ipv4Addr>().ok())
            else {
                // Not ours to interpret (a temp file of a killed writer): remove it.
                let _ = fs::remove_file(entry.path());
                continue;
            };
            let owner = fs::read_to_string(entry.path()).unwrap_or_default();
            if !owners.contains(owner.trim()) {
                let _ = fs::remove_file(entry.path());
                garbage.orphan_addrs.push(ip);
            }
        }
        self.remove_temp_records();
        self.forget_old_releases();
        Ok(garbage)
    }

    /// Temp files of record writers killed between write and rename (under the lock, so no
    /// writer is running now).
    fn remove_temp_records(&self) {
        let Ok(entries) = fs::read_dir(self.root.join("containers")) else {
            return;
        };
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().ends_with(".json") {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    fn claim_exact(&self, id: &ContainerId, net: Ipv4Net) -> Result<(), StoreError> {
        let ip = net.addr();
        match self.try_claim(ip, id.as_str())? {
            Claim::Taken(owner) if owner != id.as_str() => {
                // The holder may be a container that was killed without its poststop hook.
                let holder_alive = self
                    .read_record(&owner)?
                    .is_some_and(|r| r.is_alive() && r.addrs.iter().any(|a| a.addr() == ip));
                if holder_alive {
                    return Err(StoreError::AddressInUse { addr: ip, owner });
                }
                tracing::info!(%ip, stale_owner = %owner, "taking over an address whose holder is gone");
                self.overwrite_claim(ip, id.as_str())
            }
            Claim::Taken(_) | Claim::Claimed => Ok(()),
        }
    }

    fn allocate(
        &self,
        id: &ContainerId,
        subnet: Ipv4Net,
        keep_first: bool,
        preferred: &[Ipv4Addr],
    ) -> Result<Ipv4Net, StoreError> {
        let pool = Pool::new(subnet, keep_first);
        let hint = preferred
            .iter()
            .find(|ip| pool.contains(**ip))
            .map(|ip| pool.offset_of(*ip))
            .unwrap_or_else(|| fnv1a(id.as_str().as_bytes()) % pool.size);
        for step in 0..pool.size {
            let ip = pool.nth((hint + step) % pool.size);
            match self.try_claim(ip, id.as_str())? {
                Claim::Claimed => {
                    return Ok(
                        Ipv4Net::new(ip, subnet.prefix_len()).expect("prefix from a valid net")
                    )
                }
                Claim::Taken(owner) if owner == id.as_str() => {
                    return Ok(
                        Ipv4Net::new(ip, subnet.prefix_len()).expect("prefix from a valid net")
                    )
                }
                Claim::Taken(_) => {}
            }
        }
        Err(StoreError::SubnetFull(subnet))
    }

    fn try_claim(&self, ip: Ipv4Addr, id: &str) -> Result<Claim, StoreError> {
        let path = self.addr_path(ip);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut file) => {
                file.write_all(id.as_bytes())
                    .map_err(io_err("write", &path))?;
                failpoint::hit("claimed");
                Ok(Claim::Claimed)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let owner = fs::read_to_string(&path).map_err(io_err("read", &path))?;
                Ok(Claim::Taken(owner.trim().to_string()))
            }
            Err(e) => Err(io_err("create", &path)(e)),
        }
    }

    fn overwrite_claim(&self, ip: Ipv4Addr, id: &str) -> Result<(), StoreError> {
        let path = self.addr_path(ip);
        write_atomic(&path, id.as_bytes())
    }

    /// Removes an address file if it still names `id` (never someone else's).
    fn release_addr(&self, ip: Ipv4Addr, id: &str) {
        let path = self.addr_path(ip);
        if fs::read_to_string(&path).is_ok_and(|owner| owner.trim() == id) {
            let _ = fs::remove_file(&path);
        }
    }

    fn read_record(&self, id: &str) -> Result<Option<Record>, StoreError> {
        let path = self.record_path(id);
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(path, e.to_string()))
    }

    fn write_record(&self, record: &Record) -> Result<(), StoreError> {
        let text = serde_json::to_vec(record).expect("a record always serializes");
        write_atomic(&self.record_path(&record.id), &text)
    }

    fn released_addrs(&self, id: &str) -> Vec<Ipv4Addr> {
        fs::read(self.released_path(id))
            .ok()
            .and_then(|text| serde_json::from_slice::<Vec<Ipv4Net>>(&text).ok())
            .map(|nets| nets.iter().map(Ipv4Net::addr).collect())
            .unwrap_or_default()
    }

    /// Best effort: losing this memory only costs a restarted container its old address.
    fn remember_released(&self, record: &Record) {
        let text = serde_json::to_vec(&record.addrs).expect("addresses always serialize");
        let _ = write_atomic(&self.released_path(&record.id), &text);
    }

    fn forget_old_releases(&self) {
        let Ok(entries) = fs::read_dir(self.root.join("released")) else {
            return;
        };
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > RELEASED_MEMORY);
            if old {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

enum Claim {
    Claimed,
    Taken(String),
}

/// The allocatable addresses of a subnet: no network or broadcast address, and with
/// `keep_first` not the first host address either.
struct Pool {
    first: u32,
    size: u64,
}

impl Pool {
    fn new(subnet: Ipv4Net, keep_first: bool) -> Self {
        let network = u32::from(subnet.network());
        let hosts = (1u64 << (32 - subnet.prefix_len())) - 2;
        let skip = u64::from(keep_first).min(hosts - 1);
        Self {
            first: network + 1 + skip as u32,
            size: hosts - skip,
        }
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        ip >= self.first && u64::from(ip - self.first) < self.size
    }

    fn offset_of(&self, ip: Ipv4Addr) -> u64 {
        u64::from(u32::from(ip) - self.first)
    }

    fn nth(&self, n: u64) -> Ipv4Addr {
        Ipv4Addr::from(self.first + n as u32)
    }
}

/// FNV-1a: a stable, dependency-free hash to spread containers over a subnet.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Writes a file by renaming a temp file of the same directory over it, so readers see
/// the old or the new content, never a mix.
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), StoreError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let result = fs::write(&tmp, data)
        .map_err(io_err("write", &tmp))
        .inspect(|()| failpoint::hit("record-temp"))
        .and_then(|()| fs::rename(&tmp, path).map_err(io_err("rename", path)));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ContainerId {
        ContainerId::parse(s).unwrap()
    }

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn me() -> Option<ProcessId> {
        Some(ProcessId::of(std::process::id() as i32).unwrap())
    }

    fn dead() -> Option<ProcessId> {
        let me = me().unwrap();
        Some(ProcessId {
            start_time: me.start_time + 1,
            ..me
        })
    }

    const RANGE: &str = "10.32.0.0/12";

    fn holder<'a>(c: &'a ContainerId, owner: Option<ProcessId>) -> Holder<'a> {
        Holder {
            id: c,
            bridge: "weave",
            veth: "vethwe0",
            owner,
            names: &[],
        }
    }

    fn reserve(
        store: &Store,
        c: &str,
        owner: Option<ProcessId>,
        reqs: &[AddrRequest],
    ) -> Result<Record, StoreError> {
        store.reserve(&holder(&id(c), owner), reqs, net(RANGE))
    }

    #[test]
    fn exact_address_is_exclusive_while_its_holder_lives() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let req = [AddrRequest::Exact(net("10.2.0.5/24"))];
        assert_eq!(
            reserve(&store, "a", me(), &req).unwrap().addrs,
            vec![net("10.2.0.5/24")]
        );
        let err = reserve(&store, "b", me(), &req).unwrap_err();
        assert!(
            matches!(&err, StoreError::AddressInUse { owner, .. } if owner == "a"),
            "{err}"
        );
        assert!(err.to_string().contains("10.2.0.5"), "{err}");
        // b's failed attempt reserved nothing and left no record.
        assert_eq!(store.records().unwrap().len(), 1);
        store.release(&id("a")).unwrap();
        assert!(reserve(&store, "b", me(), &req).is_ok());
    }

    #[test]
    fn exact_address_of_a_dead_holder_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let req = [AddrRequest::Exact(net("10.2.0.5/24"))];
        reserve(&store, "a", dead(), &req).unwrap();
        reserve(&store, "b", me(), &req).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("addrs/10.2.0.5")).unwrap(),
            "b"
        );
    }

    #[test]
    fn allocation_skips_network_broadcast_and_taken() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let subnet = net("10.2.0.0/30");
        let mut got = HashSet::new();
        for c in ["a", "b"] {
            let r = reserve(&store, c, me(), &[AddrRequest::Allocate(subnet)]).unwrap();
            got.insert(r.addrs[0]);
        }
        assert_eq!(got, HashSet::from([net("10.2.0.1/30"), net("10.2.0.2/30")]));
        let err = reserve(&store, "c", me(), &[AddrRequest::Allocate(subnet)]).unwrap_err();
        assert!(matches!(err, StoreError::SubnetFull(s) if s == subnet));
    }

    #[test]
    fn default_range_keeps_its_first_address_for_weave() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let small = net("10.40.0.0/30");
        let r = store
            .reserve(&holder(&id("a"), me()), &[AddrRequest::DefaultRange], small)
            .unwrap();
        assert_eq!(r.addrs, vec![net("10.40.0.2/30")]);
        let err = store
            .reserve(&holder(&id("b"), me()), &[AddrRequest::DefaultRange], small)
            .unwrap_err();
        assert!(matches!(err, StoreError::SubnetFull(_)));
    }

    #[test]
    fn restarted_container_gets_its_address_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let subnet = net("10.2.0.0/24");
        let pool = Pool::new(subnet, false);
        // Occupy the address web's id hashes to, so web gets another one...
        let slot = pool.nth(fnv1a(b"web") % pool.size);
        let slot = AddrRequest::Exact(Ipv4Net::new(slot, 24).unwrap());
        reserve(&store, "x", me(), &[slot]).unwrap();
        let first = reserve(&store, "web", me(), &[AddrRequest::Allocate(subnet)])
            .unwrap()
            .addrs;
        assert_ne!(AddrRequest::Exact(first[0]), slot);
        // ... then free everything: web comes back to its own address, not to its hash slot.
        store.release(&id("web")).unwrap();
        store.release(&id("x")).unwrap();
        let again = reserve(&store, "web", me(), &[AddrRequest::Allocate(subnet)])
            .unwrap()
            .addrs;
        assert_eq!(first, again);
        // Same after a crash (record never released): the stale record's address is reused.
        let third = reserve(&store, "web", me(), &[AddrRequest::Allocate(subnet)])
            .unwrap()
            .addrs;
        assert_eq!(first, third);
        assert_eq!(store.records().unwrap().len(), 1);
    }

    #[test]
    fn multi_address_failure_releases_what_it_took() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        reserve(&store, "a", me(), &[AddrRequest::Exact(net("10.2.0.9/24"))]).unwrap();
        let reqs = [
            AddrRequest::Allocate(net("10.3.0.0/24")),
            AddrRequest::Exact(net("10.2.0.9/24")),
        ];
        assert!(reserve(&store, "b", me(), &reqs).is_err());
        let files: Vec<_> = fs::read_dir(dir.path().join("addrs"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(files, vec![std::ffi::OsString::from("10.2.0.9")]);
    }

    #[test]
    fn release_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.release(&id("never")).unwrap(), None);
        reserve(&store, "a", me(), &[AddrRequest::DefaultRange]).unwrap();
        assert!(store.release(&id("a")).unwrap().is_some());
        assert_eq!(store.release(&id("a")).unwrap(), None);
        assert_eq!(fs::read_dir(dir.path().join("addrs")).unwrap().count(), 0);
    }

    #[test]
    fn garbage_is_dead_records_and_orphan_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        reserve(
            &store,
            "live",
            me(),
            &[AddrRequest::Exact(net("10.2.0.1/24"))],
        )
        .unwrap();
        reserve(
            &store,
            "gone",
            dead(),
            &[AddrRequest::Exact(net("10.2.0.2/24"))],
        )
        .unwrap();
        // A hook killed after claiming an address but before writing its record:
        fs::write(dir.path().join("addrs/10.2.0.3"), "crashed").unwrap();
        // ... or in the middle of writing the address file:
        fs::write(dir.path().join("addrs/10.2.0.4"), "").unwrap();
        let g = store.collect_garbage().unwrap();
        assert_eq!(
            g.dead.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            vec!["gone"]
        );
        let mut orphans = g.orphan_addrs.clone();
        orphans.sort();
        assert_eq!(
            orphans,
            vec![
                "10.2.0.3".parse::<Ipv4Addr>().unwrap(),
                "10.2.0.4".parse().unwrap()
            ]
        );
        let left: Vec<_> = fs::read_dir(dir.path().join("addrs"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("10.2.0.1")]);
        assert_eq!(store.collect_garbage().unwrap(), Garbage::default());
    }

    #[test]
    fn concurrent_reservations_never_share_an_address() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let subnet = net("10.2.0.0/26");
        let handles: Vec<_> = (0..62)
            .map(|i| {
                let root = root.clone();
                std::thread::spawn(move || {
                    let store = Store::open(&root).unwrap();
                    store
                        .reserve(
                            &holder(&id(&format!("c{i}")), me()),
                            &[AddrRequest::Allocate(subnet)],
                            net(RANGE),
                        )
                        .unwrap()
                        .addrs[0]
                })
            })
            .collect();
        let addrs: HashSet<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(
            addrs.len(),
            62,
            "62 hosts in a /26, every one handed out once"
        );
    }

    #[test]
    fn names_are_recorded_and_old_records_read_without_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let names = vec!["web".to_string(), "db".to_string()];
        let c = id("a");
        let holder = Holder {
            names: &names,
            ..holder(&c, me())
        };
        store
            .reserve(&holder, &[AddrRequest::DefaultRange], net(RANGE))
            .unwrap();
        assert_eq!(store.records().unwrap()[0].names, names);
        // A record written before names existed.
        fs::write(
            store.records_dir().join("old.json"),
            r#"{"id":"old","bridge":"weave","veth":"v","addrs":["10.2.0.1/24"],"owner":null}"#,
        )
        .unwrap();
        let old = store.records().unwrap().remove(1);
        assert_eq!((old.id.as_str(), old.names.len()), ("old", 0));
    }

    #[test]
    fn one_corrupt_record_does_not_hide_the_others_from_lenient_readers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        reserve(&store, "a", me(), &[AddrRequest::DefaultRange]).unwrap();
        fs::write(store.records_dir().join("bad.json"), "{not json").unwrap();
        let (records, unreadable) = store.readable_records().unwrap();
        assert_eq!(records.len(), 1);
        assert!(matches!(unreadable[..], [StoreError::Corrupt(..)]));
        assert!(matches!(store.records(), Err(StoreError::Corrupt(..))));
    }

    #[test]
    fn pool_arithmetic() {
        let p = Pool::new(net("10.2.0.0/24"), false);
        assert_eq!((p.nth(0), p.size), ("10.2.0.1".parse().unwrap(), 254));
        assert!(
            !p.contains("10.2.0.0".parse().unwrap()) && !p.contains("10.2.0.255".parse().unwrap())
        );
        let p = Pool::new(net("10.32.0.0/12"), true);
        assert_eq!(
            (p.nth(0), p.size),
            ("10.32.0.2".parse().unwrap(), (1 << 20) - 3)
        );
    }
}
