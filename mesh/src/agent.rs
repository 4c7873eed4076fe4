//! `weave-mesh run`: the per-host agent.
//!
//! Threads: the lease's keepalive (every TTL/3; re-registers when the lease is gone), the
//! watch of the prefix (a full read, then events; read again after any error), the
//! maintenance tick (every second: publish the local store's addresses, reclaim hosts gone
//! longer than the grace, repair the data path every few seconds) and the socket's server
//! (one thread per connection). They share one [`Agent`].
//!
//! Stopping (SIGTERM, SIGINT) removes the socket and nothing else: the lease is not revoked
//! and the blocks are not released, so running containers keep their addresses; the lease
//! expires after its TTL, and the blocks are reclaimed by the other hosts after the grace
//! unless the agent is started again before.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ipnet::Ipv4Net;
use weave_core::fsutil::{self, WriteOptions};
use weave_core::layout::StateDir;
use weave_core::mesh::{
    self, boottime_ms, names_file_host, MeshState, NamedContainer, Peers, VERSION,
};
use weave_core::watch::{follow, DirWatch, Follower};

use crate::cluster::{Claim, Cluster, MeshError};
use crate::datapath::DataPath;
use crate::etcd::{prefix_end, EtcdError, WatchEvent};
use crate::local::{self, local_addrs};
use crate::names::{self, local_named};
use crate::release;
use crate::view::{remote_names, HostNames, View};

/// A claim of an address the hook has not written to its store yet is not taken back by the
/// publisher for this long.
const CLAIM_PENDING_MS: u64 = 30_000;
/// The data path is repaired (set_peers) at least this often.
const REPAIR_EVERY_MS: u64 = 5_000;
/// A conflict between a local address and etcd is logged at most this often per address.
const WARN_EVERY_MS: u64 = 60_000;
/// Taken off `valid_until_ms` (at most half the grace).
const VALIDITY_MARGIN_MS: u64 = 1_000;
/// The whole prefix is read again at least this often, whatever the watch says.
const RESYNC_EVERY_MS: u64 = 30_000;

/// What `weave-mesh run` was told.
#[derive(Debug, Clone)]
pub struct Config {
    pub cluster: Cluster,
    pub name: String,
    pub advertise: Ipv4Addr,
    pub state_dir: PathBuf,
    pub lease_ttl: Duration,
    pub reclaim_after: Duration,
    /// The most blocks this host may own (`--max-blocks`): annotations choose the subnets a
    /// container's `net:` entries ask in, so without a bound, containers started by anyone
    /// who may annotate could make the host claim block after block of the network.
    pub max_blocks: usize,
    /// A block that held none of this host's addresses this long is given back
    /// (`--release-empty-after`), except one empty block of `default_range`.
    pub release_empty_after: Duration,
    /// The hook's default allocation range (`--ipalloc-range`).
    pub default_range: Ipv4Net,
    /// The weave bridge (`--bridge`): its exposed addresses keep their blocks.
    pub bridge: String,
}

impl Config {
    pub fn layout(&self) -> StateDir {
        StateDir::new(&self.state_dir)
    }

    fn ttl_secs(&self) -> i64 {
        self.lease_ttl.as_secs().max(1) as i64
    }

    fn ttl_ms(&self) -> u64 {
        self.ttl_secs() as u64 * 1000
    }

    fn grace_ms(&self) -> u64 {
        self.reclaim_after.as_millis() as u64
    }

    /// Until when the blocks are provably this host's after a renewal sent at `sent_ms` with
    /// `ttl_ms` granted: its key lives at least until `sent_ms + ttl_ms`, and nobody reclaims
    /// before a grace more. Less a margin, for the hook's read of state.json and its
    /// allocation that follow.
    fn valid_until(&self, sent_ms: u64, ttl_ms: u64) -> u64 {
        let margin = VALIDITY_MARGIN_MS.min(self.grace_ms() / 2);
        sent_ms + ttl_ms + self.grace_ms() - margin
    }
}

/// What the threads share.
#[derive(Debug, Default)]
struct Inner {
    lease: i64,
    /// `None` until the first full read of the prefix.
    view: Option<View>,
    /// This host's blocks, with the revision each was claimed or last seen at.
    blocks: BTreeMap<Ipv4Net, i64>,
    valid_until_ms: u64,
    etcd_reachable: bool,
    mtu: Option<u32>,
    /// When this agent first saw each unregistered owner of blocks or addresses.
    absent_since: BTreeMap<String, u64>,
    /// Addresses claimed through the socket, and when.
    pending_claims: BTreeMap<Ipv4Addr, u64>,
    /// The peers the data path was last given successfully.
    peers_set: Option<Vec<Ipv4Addr>>,
    peers_file: Option<Peers>,
    last_repair_ms: u64,
    last_resync_ms: u64,
    warned: BTreeMap<Ipv4Addr, u64>,
    /// This host's blocks holding none of its addresses, since when.
    empty_since: BTreeMap<Ipv4Net, u64>,
    /// Blocks taken out of state.json to be given back, with the revision of their delete
    /// in etcd once done: until the view has caught up with it, the view's word that they
    /// are this host's is not taken.
    releasing: BTreeMap<Ipv4Net, Option<i64>>,
    /// This host's weave DNS containers as put in etcd, with the lease they were put with.
    names_published: Option<(i64, BTreeMap<String, NamedContainer>)>,
    /// The other hosts' containers as written to the mirror; `None` until the first write
    /// (which also removes the files a previous run left for hosts now gone).
    mirrored: Option<BTreeMap<String, Arc<HostNames>>>,
}

pub struct Agent {
    pub cfg: Config,
    datapath: Box<dyn DataPath>,
    inner: Mutex<Inner>,
    /// Held while a file of the mesh directory is written, and at exit.
    files: Mutex<()>,
    /// Block claims one at a time.
    claims: Mutex<()>,
    /// Data path calls one at a time.
    dp: Mutex<()>,
    /// Publications of the names one at a time.
    naming: Mutex<()>,
    /// Set by [`Agent::stop`]: the loops return.
    stop: AtomicBool,
    /// Set once registered and the data path is up: claims are served from then on.
    ready: AtomicBool,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Mesh(#[from] MeshError),
    #[error("cannot use state directory: {0}")]
    Dir(#[from] fsutil::DirError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up the overlay: {0}")]
    DataPath(String),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Agent {
    pub fn new(cfg: Config, datapath: Box<dyn DataPath>) -> Self {
        Self {
            cfg,
            datapath,
            // Until etcd says otherwise: its first failure is then logged as a change.
            inner: Mutex::new(Inner {
                etcd_reachable: true,
                ..Inner::default()
            }),
            files: Mutex::new(()),
            claims: Mutex::new(()),
            dp: Mutex::new(()),
            naming: Mutex::new(()),
            stop: AtomicBool::new(false),
            ready: AtomicBool::new(false),
        }
    }

    /// Makes the loops return at their next turn (tests; the binary exits instead).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn me(&self) -> &str {
        &self.cfg.name
    }

    /// Prepares the state directory, registers (waiting for etcd while it is unreachable;
    /// any other error, such as the name being taken, ends the start before the kernel is
    /// touched), then sets the data path up. Claims are served from then on.
    /// A start that fails removes the files it wrote when there were none before (the hook
    /// then stays the single-host hook).
    pub fn start(&self) -> Result<(), AgentError> {
        let layout = self.cfg.layout();
        fsutil::ensure_private_dir(layout.root())?;
        fsutil::ensure_private_dir(&layout.mesh_dir())?;
        fsutil::ensure_private_dir(&layout.mesh_names_dir())?;
        // Made before state.json is written: an attach that finds no lock file reads
        // state.json without it, which only an agent that gives no block back allows.
        mesh::try_hold_blocks_alone(&layout).map_err(|source| AgentError::Write {
            path: layout.mesh_blocks_lock(),
            source,
        })?;
        // The hook's records directory, watched for the names to publish (the hook makes it
        // the same way at its first attach).
        fsutil::ensure_private_dir(&layout.records_dir())?;
        let first = !layout.mesh_state().exists();
        let started = self.start_here();
        if started.is_err() && first {
            let _files = lock(&self.files);
            let _ = std::fs::remove_file(layout.mesh_state());
            let _ = std::fs::remove_file(layout.mesh_peers());
        }
        started
    }

    fn start_here(&self) -> Result<(), AgentError> {
        self.adopt_previous_state();
        loop {
            match self.register() {
                Ok(()) => break,
                Err(e) if e.is_unreachable() => {
                    self.etcd_failed(e);
                    tracing::debug!("registration: trying again");
                    std::thread::sleep(Duration::from_secs(2));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let mtu = match self.datapath.ensure() {
            Ok(mtu) => mtu,
            Err(e) => {
                // Undone: the others would count this host as a peer until its lease ends.
                let lease = lock(&self.inner).lease;
                let _ = self.cfg.cluster.etcd.lease_revoke(lease);
                return Err(AgentError::DataPath(e));
            }
        };
        lock(&self.inner).mtu = mtu;
        if let Err(e) = self.resync() {
            self.etcd_failed(e);
        }
        self.publish();
        self.publish_names();
        self.write_state();
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Whether [`Agent::start`] has finished.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Whether etcd answered the last request.
    pub fn etcd_reachable(&self) -> bool {
        lock(&self.inner).etcd_reachable
    }

    /// Keeps what the previous run of this host wrote (its blocks, valid until the moment it
    /// computed), so that attaches go on while this run waits for etcd; the registration
    /// then replaces the blocks with those etcd says are this host's.
    fn adopt_previous_state(&self) {
        let Ok(Some(old)) = MeshState::read(&self.cfg.layout()) else {
            return;
        };
        if old.host != self.cfg.name || old.block_prefix != self.cfg.cluster.block_prefix {
            return;
        }
        let mut inner = lock(&self.inner);
        inner.blocks = old.blocks.into_iter().map(|b| (b, 0)).collect();
        inner.valid_until_ms = old.valid_until_ms;
        inner.mtu = old.mtu;
    }

    /// Registers with a new lease and takes this host's blocks from a fresh read: a block
    /// now owned by someone else, or gone, is never handed out again.
    fn register(&self) -> Result<(), MeshError> {
        let cluster = &self.cfg.cluster;
        cluster.check_block_prefix(&cluster.snapshot()?)?;
        let before = boottime_ms();
        let lease = self.cfg.cluster.register(
            self.me(),
            self.cfg.advertise,
            self.cfg.ttl_secs(),
            self.cfg.grace_ms(),
        )?;
        let view = self.cfg.cluster.snapshot()?;
        {
            let mut inner = lock(&self.inner);
            inner.lease = lease;
            inner.etcd_reachable = true;
            inner.valid_until_ms = self.cfg.valid_until(before, self.cfg.ttl_ms());
            let rev = view.revision;
            inner.blocks.retain(|_, claimed| *claimed > rev);
            let mine: Vec<Ipv4Net> = view
                .blocks_of(self.me())
                .into_iter()
                .filter(|b| !inner.releasing.contains_key(b))
                .collect();
            inner.blocks.extend(mine.into_iter().map(|b| (b, rev)));
        }
        tracing::info!(
            "registered host {} ({}) with lease {lease:x}",
            self.me(),
            self.cfg.advertise
        );
        self.write_state();
        Ok(())
    }

    /// One renewal of the lease; re-registers when etcd says it is gone.
    pub fn keepalive_once(&self) {
        let before = boottime_ms();
        let lease = lock(&self.inner).lease;
        match self.cfg.cluster.etcd.lease_keepalive(lease) {
            Ok(Some(ttl)) => {
                let ttl_ms = (ttl.max(0) as u64 * 1000).min(self.cfg.ttl_ms());
                {
                    let mut inner = lock(&self.inner);
                    inner.valid_until_ms = self.cfg.valid_until(before, ttl_ms);
                    inner.etcd_reachable = true;
                }
                self.write_state();
            }
            Ok(None) => {
                tracing::warn!(
                    "the lease of host {} is gone (etcd was out of reach longer than its TTL); registering again",
                    self.me()
                );
                if let Err(e) = self.register() {
                    self.etcd_failed(e);
                }
            }
            Err(e) => self.etcd_failed(MeshError::Etcd {
                what: "cannot renew the lease".into(),
                source: e,
            }),
        }
    }

    pub fn keepalive_loop(&self) {
        let period = Duration::from_millis((self.cfg.ttl_ms() / 3).max(500));
        while !self.stopped() {
            let reachable = lock(&self.inner).etcd_reachable;
            std::thread::sleep(match reachable {
                true => period,
                false => Duration::from_secs(1).min(period),
            });
            self.keepalive_once();
        }
    }

    /// Records whether etcd answered; returns whether that changed.
    fn set_reachable(&self, reachable: bool) -> bool {
        let changed = {
            let mut inner = lock(&self.inner);
            std::mem::replace(&mut inner.etcd_reachable, reachable) != reachable
        };
        if changed {
            if reachable {
                tracing::info!("etcd is reachable again");
            }
            self.write_state();
        }
        changed
    }

    /// Reads the whole prefix again and makes it the view (unless the watch has already
    /// brought the view past it).
    pub fn resync(&self) -> Result<i64, MeshError> {
        let fresh = self.cfg.cluster.snapshot()?;
        let rev = fresh.revision;
        {
            let mut inner = lock(&self.inner);
            inner.last_resync_ms = boottime_ms();
            // What etcd holds of this host's names, put with the lease it has now or not.
            let lease = inner.lease;
            if fresh.revision >= inner.view.as_ref().map_or(0, |v| v.revision) {
                inner.names_published = Some((lease, fresh.names_of(self.me())));
            }
            match inner.view.as_mut() {
                Some(view) if view.revision > rev => {}
                Some(view) => view.reset(fresh),
                None => inner.view = Some(fresh),
            }
        }
        self.after_view_change();
        Ok(rev)
    }

    fn apply(&self, event: &WatchEvent) {
        {
            let mut inner = lock(&self.inner);
            let Some(view) = inner.view.as_mut() else {
                return;
            };
            // What a read of the prefix already holds is not applied twice.
            let base = view.revision;
            for e in event.events.iter().filter(|e| e.kv.mod_revision > base) {
                view.apply(&self.cfg.cluster.keys, e);
            }
            view.revision = view.revision.max(event.revision);
        }
        self.after_view_change();
    }

    /// The watch loop: never returns.
    pub fn watch_loop(&self) {
        let keys = self.cfg.cluster.keys.clone();
        let prefix = keys.prefix().to_vec();
        let end = prefix_end(&prefix);
        while !self.stopped() {
            let rev = match self.resync() {
                Ok(rev) => rev,
                Err(e) => {
                    self.etcd_failed(e);
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            match self.cfg.cluster.etcd.watch(&prefix, Some(&end), rev + 1) {
                Ok(watch) => {
                    for item in watch {
                        if self.stopped() {
                            return;
                        }
                        match item {
                            Ok(event) => self.apply(&event),
                            Err(EtcdError::Compacted { .. }) => break,
                            Err(e) => {
                                // Also every minute on a quiet mesh (the client's idle bound):
                                // read again and watch again.
                                tracing::debug!("the watch of etcd ended: {e}");
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::debug!("cannot watch etcd: {e}"),
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Brings the blocks, the reclaim clocks, peers.json and the data path in step with the
    /// view.
    fn after_view_change(&self) {
        let now = boottime_ms();
        let (blocks_changed, peers, peers_file) = {
            let mut inner = lock(&self.inner);
            let Some(view) = inner.view.clone() else {
                return;
            };
            let before: Vec<Ipv4Net> = inner.blocks.keys().copied().collect();
            inner
                .releasing
                .retain(|_, deleted| deleted.is_none_or(|rev| rev > view.revision));
            let mut mine = view.blocks_of(self.me());
            mine.retain(|b| !inner.releasing.contains_key(b));
            inner
                .blocks
                .retain(|b, claimed| mine.contains(b) || *claimed > view.revision);
            for b in mine {
                inner.blocks.entry(b).or_insert(view.revision);
            }
            let after: Vec<Ipv4Net> = inner.blocks.keys().copied().collect();
            let mut gone = view.unregistered_owners();
            gone.remove(self.me());
            inner.absent_since.retain(|h, _| gone.contains(h));
            for host in gone {
                inner.absent_since.entry(host).or_insert(now);
            }
            let peers = view.peer_ips(self.me());
            let file = view.peers_file(self.me());
            let peers = (inner.peers_set.as_ref() != Some(&peers)).then_some(peers);
            let file = (inner.peers_file.as_ref() != Some(&file)).then_some(file);
            for lost in before.iter().filter(|b| !after.contains(b)) {
                tracing::warn!(
                    "block {lost} is no longer this host's: it is not handed out any more"
                );
            }
            (before != after, peers, file)
        };
        if blocks_changed {
            self.write_state();
        }
        if let Some(peers) = peers {
            self.set_peers(peers);
        }
        if let Some(file) = peers_file {
            self.write_peers(file);
        }
        self.sync_mirror();
    }

    /// Brings the mirror of the other hosts' weave DNS names in step with the view: a file
    /// per live host (written when it changed), none for the others.
    fn sync_mirror(&self) {
        let (wanted, before) = {
            let inner = lock(&self.inner);
            let Some(view) = inner.view.as_ref() else {
                return;
            };
            (view.mirrors(self.me()), inner.mirrored.clone())
        };
        let layout = self.cfg.layout();
        let before = before.unwrap_or_else(|| self.mirror_files_on_disk());
        let _files = lock(&self.files);
        let mut written = before.clone();
        for host in before.keys().filter(|h| !wanted.contains_key(*h)) {
            match std::fs::remove_file(layout.mesh_names(host)) {
                Ok(()) => tracing::debug!("weave DNS names of host {host} dropped"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::error!("cannot remove {}: {e}", layout.mesh_names(host).display());
                    continue;
                }
            }
            written.remove(host);
        }
        for (host, named) in &wanted {
            let unchanged = before
                .get(host)
                .is_some_and(|b| Arc::ptr_eq(b, named) || b == named);
            if unchanged {
                continue;
            }
            let path = layout.mesh_names(host);
            let mirror = remote_names(host, named);
            let text = serde_json::to_vec(&mirror).expect("names always serialize");
            match fsutil::write_atomic(&path, &text, &WriteOptions::STATE) {
                Ok(()) => {
                    tracing::debug!(
                        "weave DNS names of host {host}: {} containers",
                        mirror.containers.len()
                    );
                    written.insert(host.clone(), named.clone());
                }
                Err(e) => tracing::error!("cannot write {}: {e}", path.display()),
            }
        }
        lock(&self.inner).mirrored = Some(written);
    }

    /// The hosts a previous run left mirror files for (their content does not matter: they
    /// are rewritten or removed).
    fn mirror_files_on_disk(&self) -> BTreeMap<String, Arc<HostNames>> {
        let dir = self.cfg.layout().mesh_names_dir();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return BTreeMap::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| names_file_host(e.file_name().to_str()?).map(str::to_string))
            .map(|host| (host, Arc::default()))
            .collect()
    }

    /// Puts this host's live weave DNS containers in etcd (with its lease, so they vanish
    /// with the host) and deletes those that went.
    pub fn publish_names(&self) {
        let _one = lock(&self.naming);
        let local = match local_named(&self.cfg.state_dir) {
            Ok(local) => local,
            Err(e) => {
                tracing::error!("cannot read the records: {e}");
                return;
            }
        };
        let (lease, mut published) = {
            let inner = lock(&self.inner);
            let published = match &inner.names_published {
                Some((lease, names)) if *lease == inner.lease => names.clone(),
                // Put with a lease that is gone: etcd deleted them with it.
                _ => BTreeMap::new(),
            };
            (inner.lease, published)
        };
        let (puts, deletes) = names::changes(&published, &local);
        let etcd = &self.cfg.cluster.etcd;
        let keys = &self.cfg.cluster.keys;
        let mut failed = None;
        for named in puts {
            let value = serde_json::to_vec(&named).expect("names always serialize");
            match etcd.put(&keys.name(self.me(), &named.id), &value, Some(lease)) {
                Ok(_) => {
                    tracing::debug!("published weave DNS names of {}", named.id);
                    published.insert(named.id.clone(), named);
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if failed.is_none() {
            for id in deletes {
                match etcd.delete(&keys.name(self.me(), &id), None) {
                    Ok(_) => {
                        tracing::debug!("withdrew weave DNS names of {id}");
                        published.remove(&id);
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
        }
        {
            let mut inner = lock(&self.inner);
            if inner.lease == lease {
                inner.names_published = Some((lease, published));
            }
        }
        if let Some(e) = failed {
            self.etcd_failed(MeshError::Etcd {
                what: "cannot publish the weave DNS names".into(),
                source: e,
            });
        }
    }

    /// Publishes the names within [`names::SETTLE`] of any change of the records (the
    /// maintenance tick publishes them every second too: a killed container's record stays).
    pub fn names_loop(&self) {
        if self.stopped() {
            return;
        }
        let mut records = NamesOfRecords {
            agent: self,
            dir: self.cfg.layout().records_dir(),
        };
        follow(records.rewatch(), &mut records);
    }

    fn set_peers(&self, peers: Vec<Ipv4Addr>) {
        let _dp = lock(&self.dp);
        match self.datapath.set_peers(&peers) {
            Ok(()) => {
                let mut inner = lock(&self.inner);
                if inner.peers_set.as_ref() != Some(&peers) {
                    tracing::info!("overlay peers: {peers:?}");
                }
                inner.peers_set = Some(peers);
                inner.last_repair_ms = boottime_ms();
            }
            Err(e) => {
                tracing::error!("cannot set the overlay's peers: {e}");
                lock(&self.inner).peers_set = None;
            }
        }
    }

    /// What state.json says now.
    pub fn mesh_state(&self) -> MeshState {
        let inner = lock(&self.inner);
        MeshState {
            version: VERSION,
            host: self.cfg.name.clone(),
            blocks: inner.blocks.keys().copied().collect(),
            block_prefix: self.cfg.cluster.block_prefix,
            valid_until_ms: inner.valid_until_ms,
            etcd_reachable: inner.etcd_reachable,
            mtu: inner.mtu,
        }
    }

    fn write_state(&self) {
        if let Err(e) = self.try_write_state() {
            tracing::error!("{e}");
        }
    }

    fn try_write_state(&self) -> Result<(), AgentError> {
        let _files = lock(&self.files);
        let state = self.mesh_state();
        let path = self.cfg.layout().mesh_state();
        let text = serde_json::to_vec_pretty(&state).expect("state always serializes");
        fsutil::write_atomic(&path, &text, &WriteOptions::STATE)
            .map_err(|source| AgentError::Write { path, source })
    }

    fn write_peers(&self, peers: Peers) {
        let _files = lock(&self.files);
        let path = self.cfg.layout().mesh_peers();
        let text = serde_json::to_vec_pretty(&peers).expect("peers always serialize");
        match fsutil::write_atomic(&path, &text, &WriteOptions::STATE) {
            Ok(()) => lock(&self.inner).peers_file = Some(peers),
            Err(e) => tracing::error!("cannot write {}: {e}", path.display()),
        }
    }

    /// Holds the file lock for good: called at exit so no write is cut in half.
    pub fn freeze_files(&self) -> MutexGuard<'_, ()> {
        lock(&self.files)
    }

    /// The maintenance loop: never returns.
    pub fn maintenance_loop(&self) {
        while !self.stopped() {
            std::thread::sleep(Duration::from_secs(1));
            self.maintain();
        }
    }

    pub fn maintain(&self) {
        let now = boottime_ms();
        let resync_due = now.saturating_sub(lock(&self.inner).last_resync_ms) >= RESYNC_EVERY_MS;
        if resync_due {
            if let Err(e) = self.resync() {
                self.etcd_failed(e);
            }
        }
        self.publish();
        self.publish_names();
        self.reclaim_gone();
        self.release_empty_blocks();
        let (due, peers) = {
            let inner = lock(&self.inner);
            let due = now.saturating_sub(inner.last_repair_ms) >= REPAIR_EVERY_MS;
            // With etcd out of reach, the last peers known: running containers keep talking.
            let peers = inner
                .peers_set
                .clone()
                .or_else(|| inner.view.as_ref().map(|v| v.peer_ips(self.me())));
            (due, peers)
        };
        if let (true, Some(peers)) = (due, peers) {
            self.repair(peers);
        }
    }

    /// Recreates what was deleted of the overlay (device, tables), then its peers.
    fn repair(&self, peers: Vec<Ipv4Addr>) {
        let ensured = {
            let _dp = lock(&self.dp);
            self.datapath.ensure()
        };
        match ensured {
            Ok(mtu) => {
                let changed = std::mem::replace(&mut lock(&self.inner).mtu, mtu) != mtu;
                if changed {
                    self.write_state();
                }
            }
            Err(e) => tracing::error!("cannot repair the overlay: {e}"),
        }
        self.set_peers(peers);
    }

    /// Puts the local store's addresses in etcd and takes back this host's keys that the
    /// store no longer holds.
    pub fn publish(&self) {
        let local = match local_addrs(&self.cfg.layout()) {
            Ok(local) => local,
            Err(e) => {
                tracing::error!("cannot read the address store: {e}");
                return;
            }
        };
        let now = boottime_ms();
        let (published, pending) = {
            let mut inner = lock(&self.inner);
            inner
                .pending_claims
                .retain(|_, at| now.saturating_sub(*at) < CLAIM_PENDING_MS);
            let Some(view) = inner.view.as_ref() else {
                return;
            };
            (view.addrs_of(self.me()), inner.pending_claims.clone())
        };
        let cluster = &self.cfg.cluster;
        for (ip, container) in &local {
            if published.get(ip) == Some(container) {
                continue;
            }
            match cluster.claim_addr(self.me(), *ip, container) {
                Ok(Claim::Granted(())) => {}
                Ok(Claim::Refused(reason)) => self.warn_conflict(*ip, container, &reason),
                Err(e) => return self.etcd_failed(e),
            }
        }
        for (ip, container) in &published {
            if local.contains_key(ip) || pending.contains_key(ip) {
                continue;
            }
            if let Err(e) = cluster.release_addr(self.me(), *ip, Some(container)) {
                return self.etcd_failed(e);
            }
        }
    }

    fn warn_conflict(&self, ip: Ipv4Addr, container: &str, reason: &str) {
        let now = boottime_ms();
        let mut inner = lock(&self.inner);
        let last = inner.warned.get(&ip).copied();
        if last.is_none_or(|t| now.saturating_sub(t) >= WARN_EVERY_MS) {
            tracing::warn!(
                "address {ip} of local container {container} conflicts with the mesh: {reason}"
            );
            inner.warned.insert(ip, now);
        }
    }

    /// Logs a failed etcd request: an unreachable etcd once when it goes away (then at
    /// debug level until it is back), anything else every time.
    fn etcd_failed(&self, e: MeshError) {
        if !e.is_unreachable() {
            tracing::warn!("{e}");
            return;
        }
        let was_reachable = lock(&self.inner).etcd_reachable;
        if was_reachable {
            tracing::warn!(
                "{e}; new blocks and addresses outside this host's blocks are refused until it is back"
            );
        } else {
            tracing::debug!("{e}");
        }
        self.set_reachable(false);
    }

    /// Reclaims the hosts this agent has seen unregistered for longer than the grace: its
    /// own, or the gone host's when that is longer (its hook allocated until then).
    pub fn reclaim_gone(&self) {
        let now = boottime_ms();
        let due: Vec<String> = {
            let inner = lock(&self.inner);
            let theirs = |h: &str| {
                inner
                    .view
                    .as_ref()
                    .and_then(|v| v.last_grace_ms.get(h).copied())
                    .unwrap_or(0)
            };
            inner
                .absent_since
                .iter()
                .filter(|(h, since)| {
                    now.saturating_sub(**since) >= self.cfg.grace_ms().max(theirs(h))
                })
                .map(|(h, _)| h.clone())
                .collect()
        };
        for host in due {
            match self.cfg.cluster.reclaim(&host) {
                Ok(done) if !done.blocks.is_empty() || !done.addrs.is_empty() => {
                    tracing::warn!(
                        "reclaimed host {host}, gone for {} s: blocks {:?}, addresses {:?}",
                        self.cfg.reclaim_after.as_secs(),
                        done.blocks,
                        done.addrs
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    self.etcd_failed(e);
                    // Not before another grace: a failed reclaim is not retried in a loop.
                    lock(&self.inner).absent_since.insert(host, now);
                }
            }
        }
    }

    /// Claims a new block of `subnet`; it is in state.json before this returns.
    pub fn claim_block(&self, subnet: Ipv4Net) -> Result<Claim<Ipv4Net>, MeshError> {
        let _one = lock(&self.claims);
        let owned = lock(&self.inner).blocks.len();
        if owned >= self.cfg.max_blocks {
            return Ok(Claim::Refused(format!(
                "host {} owns {owned} blocks already, the most weave-mesh --max-blocks allows; \
                 stop containers of other subnets, or raise --max-blocks",
                self.me()
            )));
        }
        let claim = self.cfg.cluster.claim_block(self.me(), subnet);
        self.note_etcd(&claim);
        match claim? {
            Claim::Granted((block, rev)) => {
                {
                    let mut inner = lock(&self.inner);
                    inner.blocks.insert(block, rev);
                    // Given back earlier, granted again now: this host's from this claim on.
                    inner.releasing.remove(&block);
                    inner.empty_since.remove(&block);
                }
                self.write_state();
                tracing::info!("claimed block {block}");
                Ok(Claim::Granted(block))
            }
            Claim::Refused(reason) => Ok(Claim::Refused(reason)),
        }
    }

    /// Gives back the blocks that held none of this host's addresses for
    /// `--release-empty-after` (weave-core's mesh contract, "Giving blocks back"): out of
    /// state.json under the blocks lock, then out of etcd. Only while etcd answers: a
    /// block out of state.json and still in etcd stays unused until its delete is done.
    pub fn release_empty_blocks(&self) {
        match self.empty_blocks_due(boottime_ms()) {
            Ok(due) if !due.is_empty() => self.take_out(&due),
            Ok(_) => {}
            Err(e) => tracing::error!("cannot read the address store: {e}"),
        }
        self.delete_released();
    }

    /// Tracks which blocks are empty; returns those due to be given back.
    fn empty_blocks_due(&self, now: u64) -> std::io::Result<Vec<Ipv4Net>> {
        let held = self.held_addrs()?;
        let mut inner = lock(&self.inner);
        let owned: Vec<Ipv4Net> = inner.blocks.keys().copied().collect();
        release::track_empty(&mut inner.empty_since, &owned, &held, now);
        if !inner.etcd_reachable || inner.view.is_none() {
            return Ok(Vec::new());
        }
        let after_ms = self.cfg.release_empty_after.as_millis() as u64;
        let range = self.cfg.default_range;
        Ok(release::due(
            &owned,
            &inner.empty_since,
            now,
            after_ms,
            range,
        ))
    }

    /// The addresses that keep a block: the store's, the host's exposed ones, those claimed
    /// through the socket and those etcd holds for this host.
    fn held_addrs(&self) -> std::io::Result<BTreeSet<Ipv4Addr>> {
        let mut held = local::held_addrs(&self.cfg.layout(), &self.cfg.bridge)?;
        let inner = lock(&self.inner);
        held.extend(inner.pending_claims.keys());
        if let Some(view) = &inner.view {
            held.extend(view.addrs_of(self.me()).keys());
        }
        Ok(held)
    }

    /// Takes the blocks out of state.json, under the blocks lock held alone, after a last
    /// look at the store (no attach allocates meanwhile). When an attach holds the lock,
    /// nothing is done: the next tick tries again.
    fn take_out(&self, due: &[Ipv4Net]) {
        let layout = self.cfg.layout();
        let _hold = match mesh::try_hold_blocks_alone(&layout) {
            Ok(Some(hold)) => hold,
            Ok(None) => return,
            Err(e) => {
                let path = layout.mesh_blocks_lock();
                return tracing::error!("cannot lock {}: {e}", path.display());
            }
        };
        let held = match self.held_addrs() {
            Ok(held) => held,
            Err(e) => return tracing::error!("cannot read the address store: {e}"),
        };
        let out: Vec<(Ipv4Net, i64)> = {
            let mut inner = lock(&self.inner);
            let out: Vec<(Ipv4Net, i64)> = due
                .iter()
                .filter(|b| release::holds_none(**b, &held))
                .filter_map(|b| inner.blocks.remove(b).map(|rev| (*b, rev)))
                .collect();
            for (b, _) in &out {
                inner.releasing.insert(*b, None);
                inner.empty_since.remove(b);
            }
            out
        };
        if out.is_empty() {
            return;
        }
        if let Err(e) = self.try_write_state() {
            // state.json may still list them: they stay this host's.
            let mut inner = lock(&self.inner);
            for (b, rev) in &out {
                inner.releasing.remove(b);
                inner.blocks.insert(*b, *rev);
            }
            return tracing::error!("{e}; the empty blocks are kept");
        }
        let blocks: Vec<Ipv4Net> = out.iter().map(|(b, _)| *b).collect();
        tracing::info!(
            "giving back blocks {blocks:?}: empty for {:?}",
            self.cfg.release_empty_after
        );
    }

    /// Deletes in etcd the blocks taken out of state.json; what etcd refuses or misses is
    /// tried again at the next tick.
    fn delete_released(&self) {
        let pending: Vec<Ipv4Net> = lock(&self.inner)
            .releasing
            .iter()
            .filter(|(_, deleted)| deleted.is_none())
            .map(|(b, _)| *b)
            .collect();
        for block in pending {
            let done = self.cfg.cluster.release_block(self.me(), block);
            self.note_etcd(&done);
            match done {
                Ok(rev) => {
                    if let Some(deleted) = lock(&self.inner).releasing.get_mut(&block) {
                        *deleted = Some(rev);
                    }
                    tracing::info!("gave back block {block}");
                }
                Err(e) => return self.etcd_failed(e),
            }
        }
    }

    pub fn claim_addr(&self, ip: Ipv4Addr, container: &str) -> Result<Claim<()>, MeshError> {
        lock(&self.inner).pending_claims.insert(ip, boottime_ms());
        let claim = self.cfg.cluster.claim_addr(self.me(), ip, container);
        self.note_etcd(&claim);
        if !matches!(claim, Ok(Claim::Granted(()))) {
            lock(&self.inner).pending_claims.remove(&ip);
        }
        claim
    }

    pub fn release_addr(&self, ip: Ipv4Addr, container: &str) -> Result<(), MeshError> {
        lock(&self.inner).pending_claims.remove(&ip);
        let done = self
            .cfg
            .cluster
            .release_addr(self.me(), ip, Some(container));
        self.note_etcd(&done);
        done.map(drop)
    }

    fn note_etcd<T>(&self, result: &Result<T, MeshError>) {
        match result {
            Err(e) if e.is_unreachable() => {
                self.set_reachable(false);
            }
            Ok(_) => {
                self.set_reachable(true);
            }
            Err(_) => {}
        }
    }
}

/// The records directory, followed for [`Agent::names_loop`]: each burst of changes, however
/// many files it touched, is one pass that publishes every name.
struct NamesOfRecords<'a> {
    agent: &'a Agent,
    dir: PathBuf,
}

impl Follower for NamesOfRecords<'_> {
    fn rewatch(&mut self) -> Option<DirWatch> {
        match DirWatch::new(&self.dir) {
            Ok(watch) => {
                self.agent.publish_names();
                Some(watch)
            }
            Err(e) => {
                tracing::debug!("cannot watch {}: {e}", self.dir.display());
                None
            }
        }
    }

    /// Nothing here: the pass after the batch reads every record.
    fn reload(&mut self) {}

    /// Nothing here: the pass after the batch reads every record.
    fn changed(&mut self, _file_name: &OsStr) {}

    fn settle(&mut self, watch: &mut DirWatch) {
        std::thread::sleep(names::SETTLE);
        // Drop what came meanwhile: one pass for the burst.
        watch.discard_queued();
        self.agent.publish_names();
    }

    fn stopped(&self) -> bool {
        self.agent.stopped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etcd::{Etcd, EtcdConfig};
    use crate::keys::Keys;

    fn config(ttl: u64, grace_ms: u64) -> Config {
        let etcd = Etcd::connect(&EtcdConfig {
            endpoints: vec!["http://127.0.0.1:1".into()],
            cacert: None,
            cert: None,
            key: None,
            timeout: Duration::from_secs(1),
        })
        .unwrap();
        Config {
            cluster: Cluster {
                etcd,
                keys: Keys::new("/weave/"),
                block_prefix: 26,
            },
            name: "h".into(),
            advertise: Ipv4Addr::LOCALHOST,
            state_dir: "/nonexistent".into(),
            lease_ttl: Duration::from_secs(ttl),
            reclaim_after: Duration::from_millis(grace_ms),
            max_blocks: 64,
            release_empty_after: Duration::from_secs(600),
            default_range: "10.32.0.0/12".parse().unwrap(),
            bridge: "weave".into(),
        }
    }

    #[test]
    fn blocks_are_valid_until_the_earliest_reclaim_less_a_margin() {
        let cfg = config(10, 300_000);
        assert_eq!(
            cfg.valid_until(5_000, cfg.ttl_ms()),
            5_000 + 10_000 + 300_000 - 1_000
        );
        // A short grace keeps at least half of itself.
        let cfg = config(2, 1_000);
        assert_eq!(cfg.valid_until(0, 2_000), 2_000 + 1_000 - 500);
    }
}
