//! The address store: which container holds which address, under the state directory
//! (paths in [`crate::layout`]).
//!
//! Every change happens under the store's lock, so two hooks never hand out one address, and
//! a reader never sees half a change. The lock is never held across a process or a network
//! call. A hook killed mid-change leaves at worst an address file without a record, or a
//! record whose process is gone: `collect_garbage` removes both.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::fcntl::Flock;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::cidr::AddrRequest;
use crate::failpoint;
use crate::fsutil::{self, WriteOptions};
use crate::id::ContainerId;
use crate::layout::{self, StateDir, RECORD_SUFFIX};
use crate::mac::Mac;
use crate::process::ProcessId;
use crate::settings::fnv1a;

mod shared;
pub use shared::{NetnsId, NetnsLink};

/// How long a detached container's addresses are remembered for its restart.
pub const RELEASED_MEMORY: Duration = Duration::from_secs(24 * 3600);
/// Records are a few hundred bytes; anything much larger is not one of ours.
const MAX_RECORD_BYTES: u64 = 64 * 1024;

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
    #[error("address {0} is kept by weave itself (weave DNS's address, or the host's, given by `weave-hook expose`); choose another one")]
    Reserved(Ipv4Addr),
    #[error("record {0} is corrupt ({1}); `weave-hook gc` skips it, remove it once its container is gone")]
    Corrupt(PathBuf, String),
    #[error("the container shares its network namespace with container {wirer}, whose ethwe has {has}; a container of that namespace must ask for the same addresses (weave.cidr), or not ask for weave")]
    SharedNetnsConflict { wirer: String, has: String },
    #[error("container {wirer}, whose network namespace this container shares, is still being attached; try again")]
    NetnsBeingWired { wirer: String },
    #[error("no free address left in this host's address blocks of {0}, though weave-mesh claimed new blocks for it (concurrent attaches took them); try again, or stop containers")]
    BlocksFull(Ipv4Net),
    #[error("this host's address blocks are no longer provably its own")]
    BlocksExpired,
    #[error("{} outside this host's address blocks: weave-mesh must prove {} unique across the mesh first", describe_addrs(.0), if .0.len() == 1 { "it" } else { "them" })]
    NeedsClaim(Vec<Ipv4Addr>),
    #[error(transparent)]
    Dir(#[from] fsutil::DirError),
}

fn describe_addrs(addrs: &[Ipv4Addr]) -> String {
    let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    match list.len() {
        1 => format!("address {}", list[0]),
        _ => format!("addresses {}", list.join(", ")),
    }
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
    /// The host veth's interface index once it exists: links are deleted by index, and only
    /// when the index still carries the recorded name, so a link of the same name made
    /// later (a restarted container's, another program's) is never hit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub veth_index: Option<u32>,
    /// ethwe's MAC ([`Mac::for_address`] of the first address); `None` in records of
    /// earlier versions, which let the kernel choose it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<Mac>,
    pub addrs: Vec<Ipv4Net>,
    /// The container's init process; `None` for a record whose process is not known.
    pub owner: Option<ProcessId>,
    /// Its weave DNS names: lowercase labels without the domain (empty without weave DNS).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// `weave.dns.shared=true`: its names are shared with other containers that share them,
    /// instead of held by the first (see weave-dns's name table).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared: bool,
    /// `weave.route=default`: its addresses go out through the host, masqueraded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub route: bool,
    /// The network namespace it was attached in, and whose interface it shares there;
    /// `None` in records of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<NetnsLink>,
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
    pub shared: bool,
    pub route: bool,
    /// Its network namespace: containers of one namespace share one interface.
    pub netns: Option<NetnsId>,
}

/// What the store cannot know by itself, from its caller.
pub struct Facts<'a> {
    /// Addresses weave keeps for itself (weave DNS's): never handed out.
    pub kept: &'a [Ipv4Addr],
    /// Whether the interface of a record still exists (its host veth, by the recorded index).
    /// An address is never handed out while an interface carrying it exists.
    pub interface_exists: &'a dyn Fn(&Record) -> bool,
    /// In a mesh (`weave-mesh` runs on this host): where this host may take addresses.
    /// `None` on a single host: anywhere.
    pub mesh: Option<MeshFacts<'a>>,
}

/// What the store must respect in a mesh: addresses are unique across hosts only inside the
/// blocks this host owns, or when weave-mesh proved them unique.
#[derive(Debug, Clone, Copy)]
pub struct MeshFacts<'a> {
    /// The blocks this host owns (from `mesh/state.json`).
    pub blocks: &'a [Ipv4Net],
    /// Whether the blocks are still provably this host's (their validity has not passed).
    pub valid: bool,
    /// Exact addresses outside the blocks that weave-mesh proved unique for this container.
    pub claimed: &'a [Ipv4Addr],
}

impl MeshFacts<'_> {
    fn in_blocks(&self, ip: Ipv4Addr) -> bool {
        self.blocks.iter().any(|b| b.contains(&ip))
    }

    /// Before anything is taken: refuses what the blocks' validity does not cover, and
    /// returns the exact addresses still to be proven unique.
    fn check(&self, requests: &[AddrRequest]) -> Result<Vec<Ipv4Addr>, StoreError> {
        let mut unproven = Vec::new();
        for req in requests {
            match *req {
                // Outside the blocks only what weave-mesh proved, valid blocks or not.
                AddrRequest::Exact(net) if !self.in_blocks(net.addr()) => {
                    let ip = net.addr();
                    match self.claimed.contains(&ip) {
                        true => {}
                        false => unproven.push(ip),
                    }
                }
                _ if !self.valid => return Err(StoreError::BlocksExpired),
                _ => {}
            }
        }
        Ok(unproven)
    }
}

impl Facts<'_> {
    /// Whether `holder` (the record of the container an address file names) still holds
    /// `ip`: it lists it, and its process lives or its interface exists (a pod's netns can
    /// outlive the container that wired it; an attach in progress has a live process).
    fn holds(&self, holder: &Record, ip: Ipv4Addr) -> bool {
        holder.addrs.iter().any(|a| a.addr() == ip)
            && (holder.is_alive() || (self.interface_exists)(holder))
    }
}

/// What a reservation found and made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserved {
    pub record: Record,
    /// What the same id had before: the record an earlier run left (killed hook, no
    /// poststop), else what it held at its last detach (`docker restart`: the background
    /// deletion of its veth may not have happened yet). A veth of that name and index is
    /// this container's to replace.
    pub previous: Option<Record>,
    /// The namespace was wired already: the record shares that interface, nothing is to
    /// be created.
    pub joined: bool,
    /// Whether a neighbour may still know one of the addresses under another MAC than the
    /// one ethwe gets, so that the new interface must announce them (gratuitous ARP).
    /// ethwe's MAC is derived from its first address, and every holder of that address as
    /// its first had the same MAC: a neighbour's entry, stale or not, is already right.
    /// Not so for a second address (its holder's MAC is derived from another address), nor
    /// for an address that some holder had as a second one (marked when claimed, kept until
    /// the state directory goes, at reboot), nor in a store older than those marks.
    pub announce: bool,
}

/// The records of a store, read leniently: one file that cannot be read does not hide the
/// others.
#[derive(Debug, Default)]
pub struct Listing {
    /// Sorted by id.
    pub records: Vec<Record>,
    /// Why each unreadable record file could not be read.
    pub unreadable: Vec<StoreError>,
    /// The ids whose record files exist but cannot be read: their addresses are kept.
    pub unreadable_ids: Vec<String>,
}

/// What `collect_garbage` removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Garbage {
    /// Records of containers that are gone (their veths are the caller's to delete).
    pub dead: Vec<Record>,
    /// Address files with no record behind them.
    pub orphan_addrs: Vec<Ipv4Addr>,
    /// Records of gone containers that shared a namespace's interface, which lives on in
    /// another container of the namespace or is `dead`'s to delete.
    pub departed: Vec<Record>,
}

pub struct Store {
    dir: StateDir,
}

/// The store's lock; released when dropped (or when the process dies).
pub struct Lock(#[allow(dead_code)] Flock<File>);

impl Store {
    /// A handle on the store under `root`, its directories created (mode 0700) when missing
    /// and refused when someone else could change them.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let dir = StateDir::new(root);
        // Only the first open of a store (or of one from before the directory) finds it
        // missing: one stat otherwise.
        let announce = dir.announce_dir();
        let new_announce = !announce.exists();
        let older = new_announce && dir.addrs_dir().exists();
        for path in dir.store_dirs() {
            fsutil::ensure_private_dir(&path)?;
        }
        let store = Self { dir };
        if new_announce {
            store.make_announce_dir(older)?;
        }
        Ok(store)
    }

    /// Makes the announce directory, with the mark that every address is to be announced
    /// when the store held addresses before it had one: in one rename, so no attach sees
    /// the directory without the mark.
    fn make_announce_dir(&self, older: bool) -> Result<(), StoreError> {
        let path = self.dir.announce_dir();
        // Unique to this process and call: threads of one process may race here too.
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let temp = self.dir.root().join(format!(
            "{}announce-{}-{call}",
            layout::TEMP_PREFIX,
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&temp);
        fsutil::ensure_private_dir(&temp)?;
        if older {
            let all = temp.join(layout::ANNOUNCE_ALL);
            File::create(&all).map_err(io_err("create", &all))?;
        }
        match fs::rename(&temp, &path) {
            Ok(()) => Ok(()),
            // Another attach made it first.
            Err(_) if path.is_dir() => {
                let _ = fs::remove_dir_all(&temp);
                Ok(())
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&temp);
                Err(io_err("rename", &path)(e))
            }
        }
    }

    /// Whether neighbours may know `claimed` under another MAC than ethwe's (see
    /// [`Reserved::announce`]); marks the second and later addresses as such for their
    /// next holders. When in doubt (a file that cannot be read), announce.
    fn announce(&self, claimed: &[Ipv4Net]) -> bool {
        let mut announce = claimed.len() != 1;
        for net in claimed.iter().skip(1) {
            let path = self.dir.announce(net.addr());
            if let Err(e) = File::create(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot mark an address for announcement");
            }
        }
        let marked = |path: PathBuf| !matches!(fs::symlink_metadata(path), Err(e) if e.kind() == io::ErrorKind::NotFound);
        if let Some(first) = claimed.first() {
            announce = announce
                || marked(self.dir.announce_dir().join(layout::ANNOUNCE_ALL))
                || marked(self.dir.announce(first.addr()));
        }
        announce
    }

    /// A handle for reading only: nothing is created.
    pub fn existing(root: &Path) -> Self {
        Self {
            dir: StateDir::new(root),
        }
    }

    pub fn layout(&self) -> &StateDir {
        &self.dir
    }

    pub fn root(&self) -> &Path {
        self.dir.root()
    }

    /// Takes the store's lock, for changes of the state directory that must not race with
    /// the store's. Hold it briefly: never across a process or a network call.
    pub fn lock(&self) -> Result<Lock, StoreError> {
        let path = self.dir.store_lock();
        fsutil::lock_file(&path)
            .map(Lock)
            .map_err(io_err("lock", &path))
    }

    /// Reserves the requested addresses for a container and records it.
    ///
    /// `DefaultRange` requests allocate from `default_range`, whose first host address is
    /// kept for weave itself. The addresses of `facts.kept` (weave DNS's, in whatever subnet)
    /// are never handed out, by allocation in any subnet or on request: a container holding
    /// one would answer, with arp_notify, for the service every container relies on. An
    /// address whose holder is gone (no process, no interface: a failed start, a container
    /// killed without its poststop) is free at once, without `weave-hook gc`. A previous record of the same id is
    /// replaced: its container is gone (runtimes do not reuse a live id); its addresses are
    /// preferred, as are those it had at its last detach, and those it held that the new
    /// request does not ask for are released.
    pub fn reserve(
        &self,
        holder: &Holder,
        requests: &[AddrRequest],
        default_range: Ipv4Net,
        facts: &Facts,
    ) -> Result<Reserved, StoreError> {
        if let Some(net) = requests.iter().find_map(|r| match r {
            AddrRequest::Exact(net) if facts.kept.contains(&net.addr()) => Some(net),
            _ => None,
        }) {
            return Err(StoreError::Reserved(net.addr()));
        }
        let id = holder.id;
        let _lock = self.lock()?;
        if let Some(joined) = self.join_netns(holder, requests, default_range, facts)? {
            return Ok(joined);
        }
        if let Some(mesh) = &facts.mesh {
            let unproven = mesh.check(requests)?;
            // A container of this host holding one is named at once: weave-mesh is not
            // asked for what this host knows is taken.
            for ip in &unproven {
                self.refuse_if_held(*ip, id, facts)?;
            }
            if !unproven.is_empty() {
                return Err(StoreError::NeedsClaim(unproven));
            }
        }
        let stale = self.read_record(id)?;
        let previous = stale.clone().or_else(|| self.released_record(id));
        let preferred: Vec<Ipv4Addr> = previous
            .iter()
            .flat_map(|r| r.addrs.iter().map(Ipv4Net::addr))
            .collect();
        let mut claimed: Vec<Ipv4Net> = Vec::with_capacity(requests.len());
        let result = requests.iter().try_for_each(|req| {
            let net = match *req {
                AddrRequest::Exact(net) => self.claim_exact(id, net, facts).map(|()| net)?,
                AddrRequest::Allocate(subnet) => {
                    self.allocate(id, Pool::new(subnet, false), facts, &preferred)?
                }
                AddrRequest::DefaultRange => {
                    self.allocate(id, Pool::new(default_range, true), facts, &preferred)?
                }
            };
            claimed.push(net);
            Ok(())
        });
        let record = Record {
            id: id.as_str().to_string(),
            bridge: holder.bridge.to_string(),
            veth: holder.veth.to_string(),
            veth_index: None,
            mac: claimed.first().map(|net| Mac::for_address(net.addr())),
            addrs: claimed.clone(),
            owner: holder.owner,
            names: holder.names.to_vec(),
            shared: holder.shared,
            route: holder.route,
            netns: holder.netns.map(|id| NetnsLink { id, shares: None }),
        };
        let result = result
            .and_then(|()| self.write_record(&record))
            .and_then(|()| self.begin_netns(&record));
        if let Err(e) = result {
            for net in &claimed {
                self.release_addr(net.addr(), id);
            }
            return Err(e);
        }
        if let Some(stale) = &stale {
            for old in stale.addrs.iter().filter(|a| !claimed.contains(a)) {
                self.release_addr(old.addr(), id);
            }
        }
        Ok(Reserved {
            announce: self.announce(&claimed),
            record,
            previous,
            joined: false,
        })
    }

    /// The host's addresses on `bridge` (`weave-hook expose`); none when nothing is exposed.
    pub fn exposed(&self, bridge: &str) -> Vec<Ipv4Net> {
        fsutil::read_small(&self.dir.exposed(bridge), MAX_RECORD_BYTES)
            .ok()
            .and_then(|text| serde_json::from_slice(&text).ok())
            .unwrap_or_default()
    }

    /// Keeps `net`'s address for the host on `bridge`: from now on no container gets it.
    /// Refused while a container holds it. Returns whether it was not exposed yet.
    pub fn expose(&self, bridge: &str, net: Ipv4Net, facts: &Facts) -> Result<bool, StoreError> {
        let _lock = self.lock()?;
        let ip = net.addr();
        if let Some(owner) = self.addr_owner(ip) {
            if self.still_held(&owner, ip, facts) {
                return Err(StoreError::AddressInUse {
                    addr: ip,
                    owner: owner.to_string(),
                });
            }
        }
        let mut exposed = self.exposed(bridge);
        if exposed.contains(&net) {
            return Ok(false);
        }
        exposed.push(net);
        self.write_exposed(bridge, &exposed)?;
        Ok(true)
    }

    /// Gives the host's address `net` on `bridge` back (all of them when `None`); returns
    /// those that were exposed.
    pub fn hide(&self, bridge: &str, net: Option<Ipv4Net>) -> Result<Vec<Ipv4Net>, StoreError> {
        let _lock = self.lock()?;
        let (hidden, kept): (Vec<Ipv4Net>, Vec<Ipv4Net>) = self
            .exposed(bridge)
            .into_iter()
            .partition(|n| net.is_none_or(|want| *n == want));
        if !hidden.is_empty() {
            self.write_exposed(bridge, &kept)?;
        }
        Ok(hidden)
    }

    fn write_exposed(&self, bridge: &str, exposed: &[Ipv4Net]) -> Result<(), StoreError> {
        let path = self.dir.exposed(bridge);
        if exposed.is_empty() {
            return match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", &path)(e)),
                _ => Ok(()),
            };
        }
        let text = serde_json::to_vec(exposed).expect("addresses always serialize");
        self.write(&path, &text)
    }

    /// Records the index of the container's host veth, once it exists.
    pub fn set_veth_index(&self, id: &ContainerId, index: u32) -> Result<(), StoreError> {
        let _lock = self.lock()?;
        match self.read_record(id)? {
            Some(mut record) => {
                record.veth_index = Some(index);
                self.write_record(&record)
            }
            None => Ok(()),
        }
    }

    /// Releases a container's addresses and forgets its record. Returns the record, or
    /// `None` when the container was not attached (which is not an error).
    pub fn release(&self, id: &ContainerId) -> Result<Option<Record>, StoreError> {
        let _lock = self.lock()?;
        self.release_locked(id)
    }

    fn release_locked(&self, id: &ContainerId) -> Result<Option<Record>, StoreError> {
        let Some(record) = self.read_record(id)? else {
            return Ok(None);
        };
        for net in &record.addrs {
            self.release_addr(net.addr(), id);
        }
        self.remember_released(id, &record);
        let path = self.dir.record(id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(Some(record)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Some(record)),
            Err(e) => Err(io_err("remove", &path)(e)),
        }
    }

    /// The directory holding one record per attached container (weave-dns watches it).
    pub fn records_dir(&self) -> PathBuf {
        self.dir.records_dir()
    }

    /// Every record that can be read, and what could not be read.
    pub fn records(&self) -> Result<Listing, StoreError> {
        let dir = self.dir.records_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Listing::default()),
            Err(e) => return Err(io_err("read directory", &dir)(e)),
        };
        let mut listing = Listing::default();
        for entry in entries {
            let entry = entry.map_err(io_err("read directory", &dir))?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| layout::id_of_file(n, RECORD_SUFFIX))
            else {
                continue;
            };
            match self.read_record(&id) {
                Ok(Some(record)) => listing.records.push(record),
                Ok(None) => {}
                Err(e) => {
                    listing.unreadable.push(e);
                    listing.unreadable_ids.push(id.as_str().to_string());
                }
            }
        }
        listing.records.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(listing)
    }

    /// The record of one container, if it has one.
    pub fn record(&self, id: &ContainerId) -> Result<Option<Record>, StoreError> {
        self.read_record(id)
    }

    /// Releases what belongs to containers that are gone, and address files without a
    /// record (left by a hook killed between writing them and writing its record). Records
    /// that cannot be read are skipped (returned in the listing), and their addresses kept.
    pub fn collect_garbage(&self) -> Result<(Garbage, Listing), StoreError> {
        let _lock = self.lock()?;
        let mut garbage = Garbage::default();
        let mut listing = self.records()?;
        let (live, dead): (Vec<Record>, Vec<Record>) =
            listing.records.drain(..).partition(Record::is_alive);
        for record in dead {
            if record.netns.is_some() {
                // Settling the first dead record of a namespace settles them all: the
                // others' records are gone by their turn.
                let settled = self.settle_dead(&record)?;
                garbage.dead.extend(settled.interface);
                garbage.departed.extend(settled.departed);
                continue;
            }
            let Ok(id) = ContainerId::parse(&record.id) else {
                continue;
            };
            if let Some(r) = self.release_locked(&id)? {
                garbage.dead.push(r);
            }
        }
        listing.records = live;
        let owners: HashSet<&str> = listing
            .records
            .iter()
            .map(|r| r.id.as_str())
            .chain(listing.unreadable_ids.iter().map(String::as_str))
            .collect();
        let dir = self.dir.addrs_dir();
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
            let owner = self.addr_owner(ip);
            if !owner.is_some_and(|o| owners.contains(o.as_str())) {
                let _ = fs::remove_file(entry.path());
                garbage.orphan_addrs.push(ip);
            }
        }
        self.remove_temp_records();
        self.forget_old_releases();
        Ok((garbage, listing))
    }

    /// Temp files of record writers killed between write and rename (under the lock, so no
    /// writer is running now).
    fn remove_temp_records(&self) {
        let Ok(entries) = fs::read_dir(self.dir.records_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().ends_with(RECORD_SUFFIX) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    fn claim_exact(&self, id: &ContainerId, net: Ipv4Net, facts: &Facts) -> Result<(), StoreError> {
        let ip = net.addr();
        match self.try_claim(ip, id)? {
            Claim::Taken(Some(owner)) if owner != *id => {
                if self.still_held(&owner, ip, facts) {
                    return Err(StoreError::AddressInUse {
                        addr: ip,
                        owner: owner.to_string(),
                    });
                }
                self.overwrite_claim(ip, id)
            }
            // An address file that names no valid id is junk (torn, or planted): replace it.
            Claim::Taken(None) => self.overwrite_claim(ip, id),
            Claim::Taken(Some(_)) | Claim::Claimed => Ok(()),
        }
    }

    /// Refuses `ip` when another container still holds it here.
    fn refuse_if_held(
        &self,
        ip: Ipv4Addr,
        id: &ContainerId,
        facts: &Facts,
    ) -> Result<(), StoreError> {
        match self.addr_owner(ip) {
            Some(owner) if owner != *id && self.still_held(&owner, ip, facts) => {
                Err(StoreError::AddressInUse {
                    addr: ip,
                    owner: owner.to_string(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Whether the container an address file names still holds the address. Under the
    /// store's lock no attach is between claiming an address and writing its record, so an
    /// address file without a record (a killed hook's) holds nothing. A record that cannot
    /// be read is taken to hold it. A holder that is gone is released whole, as its detach
    /// would have (its other addresses are free too, and `ps` no longer lists it).
    fn still_held(&self, owner: &ContainerId, ip: Ipv4Addr, facts: &Facts) -> bool {
        let held = match self.read_record(owner) {
            Ok(Some(record)) => facts.holds(&record, ip),
            Ok(None) => false,
            Err(_) => true,
        };
        if !held {
            tracing::info!(%ip, stale_owner = %owner, "taking over an address whose holder is gone");
            if let Err(e) = self.release_locked(owner) {
                tracing::warn!(%owner, error = %e, "cannot release a gone holder; `weave-hook gc` will");
            }
        }
        held
    }

    fn allocate(
        &self,
        id: &ContainerId,
        pool: Pool,
        facts: &Facts,
        preferred: &[Ipv4Addr],
    ) -> Result<Ipv4Net, StoreError> {
        let subnet = pool.subnet;
        let pool = match &facts.mesh {
            Some(mesh) => pool.within(mesh.blocks),
            None => pool,
        };
        let full = || match facts.mesh {
            Some(_) => StoreError::BlocksFull(subnet),
            None => StoreError::SubnetFull(subnet),
        };
        if pool.size == 0 {
            return Err(full());
        }
        let hint = preferred
            .iter()
            .find_map(|ip| pool.offset_of(*ip))
            .unwrap_or_else(|| fnv1a(id.as_str().as_bytes()) % pool.size);
        let net = |ip| Ipv4Net::new(ip, subnet.prefix_len()).expect("prefix from a valid net");
        for step in 0..pool.size {
            let ip = pool.nth((hint + step) % pool.size);
            if facts.kept.contains(&ip) {
                continue;
            }
            match self.try_claim(ip, id)? {
                Claim::Claimed => return Ok(net(ip)),
                Claim::Taken(Some(owner)) if owner == *id => return Ok(net(ip)),
                Claim::Taken(Some(owner)) if !self.still_held(&owner, ip, facts) => {
                    self.overwrite_claim(ip, id)?;
                    return Ok(net(ip));
                }
                Claim::Taken(None) => {
                    self.overwrite_claim(ip, id)?;
                    return Ok(net(ip));
                }
                Claim::Taken(Some(_)) => {}
            }
        }
        Err(full())
    }

    fn try_claim(&self, ip: Ipv4Addr, id: &ContainerId) -> Result<Claim, StoreError> {
        let path = self.dir.addr(ip);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut file) => {
                file.write_all(id.as_str().as_bytes())
                    .map_err(io_err("write", &path))?;
                failpoint::hit("claimed");
                Ok(Claim::Claimed)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Ok(Claim::Taken(self.addr_owner(ip)))
            }
            Err(e) => Err(io_err("create", &path)(e)),
        }
    }

    /// The id an address file names; `None` when it names none (torn, or not a regular
    /// file of ours). Its content is never shown to anyone unless it is a valid id.
    fn addr_owner(&self, ip: Ipv4Addr) -> Option<ContainerId> {
        let text = fsutil::read_small(&self.dir.addr(ip), crate::id::MAX_ID_LEN as u64).ok()?;
        ContainerId::parse(std::str::from_utf8(&text).ok()?.trim()).ok()
    }

    fn overwrite_claim(&self, ip: Ipv4Addr, id: &ContainerId) -> Result<(), StoreError> {
        self.write(&self.dir.addr(ip), id.as_str().as_bytes())
    }

    /// Removes an address file if it still names `id` (never someone else's).
    fn release_addr(&self, ip: Ipv4Addr, id: &ContainerId) {
        if self.addr_owner(ip).as_ref() == Some(id) {
            let _ = fs::remove_file(self.dir.addr(ip));
        }
    }

    fn read_record(&self, id: &ContainerId) -> Result<Option<Record>, StoreError> {
        let path = self.dir.record(id);
        match read_record_file(&path)? {
            Some(record) if record.id != id.as_str() => Err(StoreError::Corrupt(
                path,
                "it names another container".into(),
            )),
            record => Ok(record),
        }
    }

    fn write_record(&self, record: &Record) -> Result<(), StoreError> {
        let text = serde_json::to_vec(record).expect("a record always serializes");
        let id = ContainerId::parse(&record.id).expect("records are written for valid ids");
        self.write(&self.dir.record(&id), &text)
    }

    fn write(&self, path: &Path, data: &[u8]) -> Result<(), StoreError> {
        fsutil::write_atomic(path, data, &WriteOptions::STATE).map_err(io_err("write", path))
    }

    /// The record the container had at its last detach (only its addresses, from a
    /// release memory of an earlier version).
    fn released_record(&self, id: &ContainerId) -> Option<Record> {
        let text = fsutil::read_small(&self.dir.released(id), MAX_RECORD_BYTES).ok()?;
        let record = serde_json::from_slice::<Record>(&text).ok().or_else(|| {
            let addrs = serde_json::from_slice::<Vec<Ipv4Net>>(&text).ok()?;
            Some(Record {
                id: id.as_str().to_string(),
                bridge: String::new(),
                veth: String::new(),
                veth_index: None,
                mac: None,
                addrs,
                owner: None,
                names: Vec::new(),
                shared: false,
                route: false,
                netns: None,
            })
        })?;
        (record.id == id.as_str()).then_some(record)
    }

    /// Best effort: losing this memory only costs a restarted container its old address.
    fn remember_released(&self, id: &ContainerId, record: &Record) {
        let text = serde_json::to_vec(record).expect("a record always serializes");
        let _ = self.write(&self.dir.released(id), &text);
    }

    fn forget_old_releases(&self) {
        let Ok(entries) = fs::read_dir(self.dir.released_dir()) else {
            return;
        };
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > RELEASED_MEMORY);
            let temp = entry
                .file_name()
                .to_string_lossy()
                .starts_with(layout::TEMP_PREFIX);
            if old || temp {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// Reads one record file (weave-dns follows them one by one): never through a link, at most
/// 64 KiB; `None` when it is gone.
pub fn read_record_file(path: &Path) -> Result<Option<Record>, StoreError> {
    let text = match fsutil::read_small(path, MAX_RECORD_BYTES) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            return Err(StoreError::Corrupt(path.to_path_buf(), e.to_string()))
        }
        Err(e) => return Err(io_err("read", path)(e)),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| StoreError::Corrupt(path.to_path_buf(), e.to_string()))
}

enum Claim {
    Claimed,
    /// Taken by the id the address file names (`None`: it names no valid id).
    Taken(Option<ContainerId>),
}

/// The allocatable addresses of a subnet: no network or broadcast address, and with
/// `keep_first` not the first host address either; in a mesh only those inside this host's
/// blocks. Addresses are numbered across its segments, in address order.
struct Pool {
    subnet: Ipv4Net,
    /// Runs of addresses: the first, and how many.
    segments: Vec<(u32, u64)>,
    size: u64,
}

impl Pool {
    fn new(subnet: Ipv4Net, keep_first: bool) -> Self {
        let network = u32::from(subnet.network());
        let hosts = (1u64 << (32 - subnet.prefix_len())) - 2;
        let skip = u64::from(keep_first).min(hosts - 1);
        let size = hosts - skip;
        Self {
            subnet,
            segments: vec![(network + 1 + skip as u32, size)],
            size,
        }
    }

    /// The part of the pool inside `blocks`. Blocks are aligned, so two of them are
    /// disjoint or one holds the other: each address is counted once.
    fn within(self, blocks: &[Ipv4Net]) -> Self {
        let mut blocks: Vec<Ipv4Net> = blocks.iter().map(Ipv4Net::trunc).collect();
        blocks.sort_by_key(|b| (b.network(), b.prefix_len()));
        let mut outer: Vec<Ipv4Net> = Vec::with_capacity(blocks.len());
        for block in blocks {
            if !outer.last().is_some_and(|o| o.contains(&block)) {
                outer.push(block);
            }
        }
        let mut segments = Vec::new();
        for (first, size) in &self.segments {
            let (start, end) = (u64::from(*first), u64::from(*first) + size);
            for block in &outer {
                let b_start = u64::from(u32::from(block.network()));
                let b_end = b_start + (1u64 << (32 - block.prefix_len()));
                let (lo, hi) = (start.max(b_start), end.min(b_end));
                if lo < hi {
                    segments.push((lo as u32, hi - lo));
                }
            }
        }
        let size = segments.iter().map(|s| s.1).sum();
        Self {
            subnet: self.subnet,
            segments,
            size,
        }
    }

    #[cfg(test)]
    fn contains(&self, ip: Ipv4Addr) -> bool {
        self.offset_of(ip).is_some()
    }

    /// The number of `ip` in the pool, if it is one of its addresses.
    fn offset_of(&self, ip: Ipv4Addr) -> Option<u64> {
        let ip = u32::from(ip);
        let mut before = 0;
        for &(first, size) in &self.segments {
            if ip >= first && u64::from(ip - first) < size {
                return Some(before + u64::from(ip - first));
            }
            before += size;
        }
        None
    }

    /// The address numbered `n` (less than `size`).
    fn nth(&self, mut n: u64) -> Ipv4Addr {
        for &(first, size) in &self.segments {
            if n < size {
                return Ipv4Addr::from(first + n as u32);
            }
            n -= size;
        }
        unreachable!("pool address {n} past its size")
    }
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

    /// No kept address, no interface left by anyone.
    const NOTHING: Facts = Facts {
        kept: &[],
        interface_exists: &|_| false,
        mesh: None,
    };

    fn holder<'a>(c: &'a ContainerId, owner: Option<ProcessId>) -> Holder<'a> {
        Holder {
            id: c,
            bridge: "weave",
            veth: "vethwe0",
            owner,
            names: &[],
            shared: false,
            route: false,
            netns: None,
        }
    }

    fn reserve(
        store: &Store,
        c: &str,
        owner: Option<ProcessId>,
        reqs: &[AddrRequest],
    ) -> Result<Record, StoreError> {
        store
            .reserve(&holder(&id(c), owner), reqs, net(RANGE), &NOTHING)
            .map(|r| r.record)
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
        assert_eq!(store.records().unwrap().records.len(), 1);
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
            .reserve(
                &holder(&id("a"), me()),
                &[AddrRequest::DefaultRange],
                small,
                &NOTHING,
            )
            .unwrap()
            .record;
        assert_eq!(r.addrs, vec![net("10.40.0.2/30")]);
        let err = store
            .reserve(
                &holder(&id("b"), me()),
                &[AddrRequest::DefaultRange],
                small,
                &NOTHING,
            )
            .unwrap_err();
        assert!(matches!(err, StoreError::SubnetFull(_)));
    }

    #[test]
    fn kept_addresses_are_never_handed_out_in_any_subnet() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // weave DNS at 10.47.0.1 with the range 10.47.0.0/16; a container asks net: for the
        // /30 that holds it.
        let dns: Ipv4Addr = "10.47.0.1".parse().unwrap();
        let subnet = net("10.47.0.0/30");
        let reserve = |c: &str, req: AddrRequest| {
            store
                .reserve(
                    &holder(&id(c), me()),
                    &[req],
                    net("10.47.0.0/16"),
                    &Facts {
                        kept: &[dns],
                        interface_exists: &|_| false,
                        mesh: None,
                    },
                )
                .map(|r| r.record.addrs)
        };
        assert_eq!(
            reserve("a", AddrRequest::Allocate(subnet)).unwrap(),
            vec![net("10.47.0.2/30")]
        );
        assert!(matches!(
            reserve("b", AddrRequest::Allocate(subnet)),
            Err(StoreError::SubnetFull(_))
        ));
        let err = reserve("c", AddrRequest::Exact(net("10.47.0.1/24"))).unwrap_err();
        assert!(
            matches!(err, StoreError::Reserved(ip) if ip == dns),
            "{err}"
        );
        assert!(!dir.path().join("addrs/10.47.0.1").exists());
    }

    #[test]
    fn an_address_is_free_once_its_holder_and_interface_are_gone_without_gc() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let subnet = net("10.2.0.0/30");
        // Two failed starts: their processes died, their interfaces went with their netns.
        for c in ["failed1", "failed2"] {
            reserve(&store, c, dead(), &[AddrRequest::Allocate(subnet)]).unwrap();
        }
        // A hook killed between claiming and recording leaves an address file alone.
        fs::write(dir.path().join("addrs/10.2.0.9"), "killed").unwrap();
        let third = reserve(&store, "third", me(), &[AddrRequest::Allocate(subnet)]).unwrap();
        assert_eq!(third.addrs[0].prefix_len(), 30);
        let nine = reserve(
            &store,
            "nine",
            me(),
            &[AddrRequest::Exact(net("10.2.0.9/24"))],
        );
        assert!(nine.is_ok(), "{nine:?}");
        // The gone holder whose address was taken is released whole.
        let ids: Vec<String> = store
            .records()
            .unwrap()
            .records
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids.len(), 3, "{ids:?}");
        assert!(ids.contains(&"third".to_string()) && ids.contains(&"nine".to_string()));
    }

    #[test]
    fn an_address_is_held_while_its_interface_exists_though_its_process_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // A pod: the container that wired the netns was killed, the netns (and its
        // interface) lives on in the other containers.
        let wired = Facts {
            kept: &[],
            interface_exists: &|r: &Record| r.id == "killed",
            mesh: None,
        };
        let reserve_with = |c: &str, owner, req: AddrRequest| {
            store
                .reserve(&holder(&id(c), owner), &[req], net(RANGE), &wired)
                .map(|r| r.record.addrs)
        };
        let subnet = net("10.2.0.0/30");
        reserve_with("killed", dead(), AddrRequest::Exact(net("10.2.0.1/30"))).unwrap();
        let err = reserve_with("new", me(), AddrRequest::Exact(net("10.2.0.1/30"))).unwrap_err();
        assert!(matches!(err, StoreError::AddressInUse { .. }), "{err}");
        assert_eq!(
            reserve_with("other", me(), AddrRequest::Allocate(subnet)).unwrap(),
            vec![net("10.2.0.2/30")]
        );
        assert!(matches!(
            reserve_with("full", me(), AddrRequest::Allocate(subnet)),
            Err(StoreError::SubnetFull(_))
        ));
    }

    #[test]
    fn an_exposed_address_is_the_hosts_until_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let host = net("10.2.0.254/24");
        reserve(&store, "a", me(), &[AddrRequest::Exact(net("10.2.0.7/24"))]).unwrap();
        let err = store
            .expose("weave", net("10.2.0.7/24"), &NOTHING)
            .unwrap_err();
        assert!(matches!(err, StoreError::AddressInUse { .. }), "{err}");
        assert!(store.expose("weave", host, &NOTHING).unwrap());
        assert!(
            !store.expose("weave", host, &NOTHING).unwrap(),
            "idempotent"
        );
        assert_eq!(store.exposed("weave"), vec![host]);
        assert!(store.exposed("other").is_empty());
        // gc leaves it.
        store.collect_garbage().unwrap();
        assert_eq!(store.exposed("weave"), vec![host]);
        assert_eq!(store.hide("weave", None).unwrap(), vec![host]);
        assert!(store.exposed("weave").is_empty());
        assert!(store.hide("weave", Some(host)).unwrap().is_empty());
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
        assert_eq!(store.records().unwrap().records.len(), 1);
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
        let (g, _) = store.collect_garbage().unwrap();
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
        assert_eq!(store.collect_garbage().unwrap().0, Garbage::default());
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
                            &NOTHING,
                        )
                        .unwrap()
                        .record
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
            shared: true,
            route: false,
            ..holder(&c, me())
        };
        store
            .reserve(&holder, &[AddrRequest::DefaultRange], net(RANGE), &NOTHING)
            .unwrap();
        let record = &store.records().unwrap().records[0];
        assert_eq!((&record.names, record.shared), (&names, true));
        // A record written before names existed.
        fs::write(
            store.records_dir().join("old.json"),
            r#"{"id":"old","bridge":"weave","veth":"v","addrs":["10.2.0.1/24"],"owner":null}"#,
        )
        .unwrap();
        let old = store.records().unwrap().records.remove(1);
        assert_eq!(
            (old.id.as_str(), old.names.len(), old.shared),
            ("old", 0, false)
        );
        assert_eq!(old.mac, None, "a record from before ethwe's MAC was chosen");
    }

    #[test]
    fn the_mac_of_the_first_address_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let first: Ipv4Net = "10.2.0.9/24".parse().unwrap();
        let reserved = reserve(
            &store,
            "m",
            me(),
            &[AddrRequest::Exact(first), AddrRequest::DefaultRange],
        )
        .unwrap();
        let mac = Some(Mac::for_address(first.addr()));
        assert_eq!(reserved.mac, mac);
        assert_eq!(store.records().unwrap().records[0].mac, mac);
    }

    fn announces(store: &Store, c: &str, reqs: &[AddrRequest]) -> bool {
        store
            .reserve(&holder(&id(c), me()), reqs, net(RANGE), &NOTHING)
            .unwrap()
            .announce
    }

    #[test]
    fn an_address_is_announced_only_where_its_derived_mac_may_not_be_known() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let exact = |s: &str| AddrRequest::Exact(net(s));
        // A first address never held under another MAC: neighbours know it right.
        assert!(!announces(&store, "a", &[exact("10.2.0.5/24")]));
        store.release(&id("a")).unwrap();
        assert!(!announces(&store, "b", &[exact("10.2.0.5/24")]));
        store.release(&id("b")).unwrap();
        // Two addresses: the second goes under the first's MAC.
        assert!(announces(
            &store,
            "c",
            &[exact("10.2.0.6/24"), exact("10.2.0.7/24")]
        ));
        store.release(&id("c")).unwrap();
        // An address once held second is announced whenever it comes back, first or not.
        assert!(announces(&store, "d", &[exact("10.2.0.7/24")]));
        store.release(&id("d")).unwrap();
        assert!(announces(&store, "e", &[exact("10.2.0.7/24")]));
        // The other one of the pair was first: its MAC was its own.
        assert!(!announces(&store, "f", &[exact("10.2.0.6/24")]));
    }

    #[test]
    fn a_store_older_than_the_marks_announces_everything() {
        let dir = tempfile::tempdir().unwrap();
        // A store of an earlier version: addresses, no announce directory.
        fs::create_dir_all(dir.path().join("addrs")).unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(announces(
            &store,
            "a",
            &[AddrRequest::Exact(net("10.2.0.5/24"))]
        ));
        // And stays so for its life (until the state directory goes, at reboot).
        let again = Store::open(dir.path()).unwrap();
        again.release(&id("a")).unwrap();
        assert!(announces(
            &again,
            "b",
            &[AddrRequest::Exact(net("10.2.0.8/24"))]
        ));
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names.iter().any(|n| n.starts_with(layout::TEMP_PREFIX)),
            "no temporary directory left: {names:?}"
        );
    }

    #[test]
    fn one_corrupt_record_is_skipped_and_its_addresses_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        reserve(&store, "a", me(), &[AddrRequest::DefaultRange]).unwrap();
        reserve(
            &store,
            "bad",
            me(),
            &[AddrRequest::Exact(net("10.2.0.7/24"))],
        )
        .unwrap();
        fs::write(store.records_dir().join("bad.json"), "{not json").unwrap();
        let listing = store.records().unwrap();
        assert_eq!(listing.records.len(), 1);
        assert!(matches!(listing.unreadable[..], [StoreError::Corrupt(..)]));
        assert_eq!(listing.unreadable_ids, ["bad"]);
        let msg = listing.unreadable[0].to_string();
        assert!(msg.contains("bad.json"), "{msg}");
        // gc goes on past it, and keeps the address its container may still use.
        let (garbage, listing) = store.collect_garbage().unwrap();
        assert_eq!(garbage, Garbage::default());
        assert_eq!(listing.records.len(), 1);
        assert!(dir.path().join("addrs/10.2.0.7").exists());
    }

    #[test]
    fn a_reattach_releases_the_addresses_it_no_longer_asks_for() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let two = [
            AddrRequest::Exact(net("10.2.0.5/24")),
            AddrRequest::Exact(net("10.3.0.5/24")),
        ];
        reserve(&store, "a", dead(), &two).unwrap();
        let again = store
            .reserve(
                &holder(&id("a"), me()),
                &[AddrRequest::Exact(net("10.3.0.5/24"))],
                net(RANGE),
                &NOTHING,
            )
            .unwrap();
        assert_eq!(again.previous.unwrap().addrs.len(), 2);
        assert_eq!(again.record.addrs, vec![net("10.3.0.5/24")]);
        assert!(!dir.path().join("addrs/10.2.0.5").exists());
        assert!(dir.path().join("addrs/10.3.0.5").exists());
        // Someone else can have it now.
        reserve(&store, "b", me(), &[AddrRequest::Exact(net("10.2.0.5/24"))]).unwrap();
    }

    #[test]
    fn longest_ids_reserve_and_release() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let long = "x".repeat(crate::id::MAX_ID_LEN);
        reserve(&store, &long, me(), &[AddrRequest::DefaultRange]).unwrap();
        // A second write of the record (replacing it) and the release memory fit as well.
        store.set_veth_index(&id(&long), 7).unwrap();
        assert_eq!(
            store.record(&id(&long)).unwrap().unwrap().veth_index,
            Some(7)
        );
        assert!(store.release(&id(&long)).unwrap().is_some());
        assert!(dir.path().join("released").join(&long).exists());
        assert_eq!(fs::read_dir(dir.path().join("addrs")).unwrap().count(), 0);
    }

    #[test]
    fn planted_address_files_are_never_echoed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let secret = dir.path().join("secret");
        fs::write(&secret, "TOP-SECRET").unwrap();
        std::os::unix::fs::symlink(&secret, dir.path().join("addrs/10.2.0.5")).unwrap();
        // A symlink is not an address file of ours: the exact claim replaces it, and no
        // message carries the target's content.
        let r = reserve(&store, "a", me(), &[AddrRequest::Exact(net("10.2.0.5/24"))]).unwrap();
        assert_eq!(r.addrs, vec![net("10.2.0.5/24")]);
        assert_eq!(fs::read_to_string(&secret).unwrap(), "TOP-SECRET");
        assert_eq!(
            fs::read_to_string(dir.path().join("addrs/10.2.0.5")).unwrap(),
            "a"
        );
    }

    fn in_mesh<'a>(
        blocks: &'a [Ipv4Net],
        claimed: &'a [Ipv4Addr],
        kept: &'a [Ipv4Addr],
    ) -> Facts<'a> {
        Facts {
            kept,
            interface_exists: &|_| false,
            mesh: Some(MeshFacts {
                blocks,
                valid: true,
                claimed,
            }),
        }
    }

    #[test]
    fn in_a_mesh_allocation_stays_inside_the_blocks_until_they_are_full() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // Two /30 blocks of this host in the default range: 8 addresses, all host addresses
        // of the /12, but for the kept one.
        let blocks = [net("10.32.0.4/30"), net("10.32.0.64/30")];
        let kept: [Ipv4Addr; 1] = ["10.32.0.66".parse().unwrap()];
        let facts = in_mesh(&blocks, &[], &kept);
        let mut got = HashSet::new();
        for i in 0..7 {
            let r = store
                .reserve(
                    &holder(&id(&format!("c{i}")), me()),
                    &[AddrRequest::DefaultRange],
                    net(RANGE),
                    &facts,
                )
                .unwrap();
            let ip = r.record.addrs[0];
            assert_eq!(ip.prefix_len(), 12);
            assert!(blocks.iter().any(|b| b.contains(&ip.addr())), "{ip}");
            assert_ne!(ip.addr(), kept[0]);
            got.insert(ip);
        }
        assert_eq!(got.len(), 7);
        let err = store
            .reserve(
                &holder(&id("late"), me()),
                &[AddrRequest::DefaultRange],
                net(RANGE),
                &facts,
            )
            .unwrap_err();
        assert!(
            matches!(err, StoreError::BlocksFull(s) if s == net(RANGE)),
            "{err}"
        );
        // A subnet holding none of the blocks: nothing, and the same error.
        let err = store
            .reserve(
                &holder(&id("other"), me()),
                &[AddrRequest::Allocate(net("10.9.0.0/24"))],
                net(RANGE),
                &facts,
            )
            .unwrap_err();
        assert!(matches!(err, StoreError::BlocksFull(_)), "{err}");
        assert!(store.record(&id("late")).unwrap().is_none());
    }

    #[test]
    fn in_a_mesh_a_narrow_subnet_keeps_its_own_network_and_broadcast() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let blocks = [net("10.9.0.0/26")];
        let facts = in_mesh(&blocks, &[], &[]);
        let reserve = |c: &str| {
            store
                .reserve(
                    &holder(&id(c), me()),
                    &[AddrRequest::Allocate(net("10.9.0.8/30"))],
                    net(RANGE),
                    &facts,
                )
                .map(|r| r.record.addrs[0])
        };
        let got: HashSet<_> = [reserve("a").unwrap(), reserve("b").unwrap()].into();
        assert_eq!(
            got,
            HashSet::from([net("10.9.0.9/30"), net("10.9.0.10/30")])
        );
        assert!(matches!(reserve("c"), Err(StoreError::BlocksFull(_))));
    }

    #[test]
    fn in_a_mesh_exact_addresses_outside_the_blocks_need_a_claim_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let blocks = [net("10.32.0.64/26")];
        let reqs = [
            AddrRequest::Exact(net("10.32.0.70/12")),
            AddrRequest::Exact(net("10.2.0.5/24")),
            AddrRequest::Exact(net("10.2.0.6/24")),
        ];
        let err = store
            .reserve(
                &holder(&id("a"), me()),
                &reqs,
                net(RANGE),
                &in_mesh(&blocks, &[], &[]),
            )
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::NeedsClaim(a) if a.len() == 2),
            "{err}"
        );
        // Nothing was taken before the refusal, not even the address inside the block.
        assert_eq!(fs::read_dir(dir.path().join("addrs")).unwrap().count(), 0);
        let claimed: [Ipv4Addr; 2] = ["10.2.0.5".parse().unwrap(), "10.2.0.6".parse().unwrap()];
        let r = store
            .reserve(
                &holder(&id("a"), me()),
                &reqs,
                net(RANGE),
                &in_mesh(&blocks, &claimed, &[]),
            )
            .unwrap();
        assert_eq!(r.record.addrs.len(), 3);
        // Another container of this host asking for one is refused here, naming the holder,
        // without a claim.
        let err = store
            .reserve(
                &holder(&id("b"), me()),
                &[AddrRequest::Exact(net("10.2.0.6/24"))],
                net(RANGE),
                &in_mesh(&blocks, &[], &[]),
            )
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::AddressInUse { owner, .. } if owner == "a"),
            "{err}"
        );
    }

    #[test]
    fn in_a_mesh_expired_blocks_give_nothing_but_proven_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let blocks = [net("10.32.0.64/26")];
        let claimed: [Ipv4Addr; 1] = ["10.2.0.5".parse().unwrap()];
        let expired = Facts {
            mesh: Some(MeshFacts {
                blocks: &blocks,
                valid: false,
                claimed: &claimed,
            }),
            ..in_mesh(&blocks, &claimed, &[])
        };
        for req in [
            AddrRequest::DefaultRange,
            AddrRequest::Allocate(net("10.32.0.64/26")),
            AddrRequest::Exact(net("10.32.0.70/12")),
        ] {
            let err = store
                .reserve(&holder(&id("a"), me()), &[req], net(RANGE), &expired)
                .unwrap_err();
            assert!(matches!(err, StoreError::BlocksExpired), "{req:?}: {err}");
        }
        let exact = [AddrRequest::Exact(net("10.2.0.5/24"))];
        assert!(store
            .reserve(&holder(&id("a"), me()), &exact, net(RANGE), &expired)
            .is_ok());
    }

    #[test]
    fn in_a_mesh_a_restarted_container_gets_its_address_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let blocks = [net("10.32.0.64/26"), net("10.32.1.0/26")];
        let facts = in_mesh(&blocks, &[], &[]);
        let reserve = |c: &str| {
            store
                .reserve(
                    &holder(&id(c), me()),
                    &[AddrRequest::DefaultRange],
                    net(RANGE),
                    &facts,
                )
                .unwrap()
                .record
                .addrs
        };
        let first = reserve("web");
        for i in 0..20 {
            reserve(&format!("x{i}"));
        }
        store.release(&id("web")).unwrap();
        reserve("y");
        assert_eq!(reserve("web"), first);
    }

    #[test]
    fn pool_within_blocks() {
        let p = Pool::new(net("10.32.0.0/12"), true).within(&[
            net("10.32.0.0/30"),
            net("10.32.0.0/29"),
            net("10.40.0.0/30"),
            net("10.2.0.0/24"),
        ]);
        // The /29 holds the /30 (counted once); the first host is kept for weave; 10.2/24
        // is outside the subnet.
        assert_eq!(p.size, 7 - 1 + 4);
        assert_eq!(p.nth(0), "10.32.0.2".parse::<Ipv4Addr>().unwrap());
        assert_eq!(p.nth(6), "10.40.0.0".parse::<Ipv4Addr>().unwrap());
        assert_eq!(p.offset_of("10.40.0.3".parse().unwrap()), Some(9));
        assert_eq!(p.offset_of("10.32.0.8".parse().unwrap()), None);
        assert_eq!(Pool::new(net("10.2.0.0/24"), false).within(&[]).size, 0);
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
