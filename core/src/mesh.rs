//! The contract between weave-mesh (the per-host agent, crate `mesh/`) and weave-hook.
//!
//! The hook never talks to etcd and links no HTTP or gRPC stack. It learns the mesh from two
//! files the agent keeps in the state directory, and asks the agent over a Unix socket only
//! for what must be proven unique cluster-wide (a new block, an address outside this host's
//! blocks):
//!
//! ```text
//! <state-dir>/mesh/state.json   MeshState: this host's name, its blocks, until when they are
//!                               provably its own, the overlay MTU (written atomically)
//! <state-dir>/mesh/peers.json   Peers: the other hosts and the addresses they hold, for
//!                               `weave-hook ps` (written atomically)
//! <state-dir>/mesh/agent.sock   one request line (JSON), one reply line (JSON)
//! <state-dir>/mesh/blocks.lock  flock(2)ed: shared by the hook from its read of state.json
//!                               until its addresses are in the store, exclusively by the
//!                               agent while it takes an empty block out of state.json
//! <state-dir>/mesh/names/<host>.json
//!                               RemoteNames: the weave DNS containers of another live host,
//!                               mirrored from etcd by the agent (written atomically, deleted
//!                               when the host goes); weave-dns follows the directory
//! ```
//! With no `mesh/state.json`, the hook is exactly the single-host hook: the only cost of the
//! mesh on its attach path is one failed open(2).
//!
//! **Blocks.** Cluster-wide uniqueness comes from blocks: aligned subnets of `block_prefix`
//! bits (26 by default), each owned by at most one host (claimed in etcd by a transaction that
//! succeeds only while the block's key does not exist). Addresses are grouped by the block that
//! contains them, whatever the subnet a container asks in: a host allocates `net:` addresses
//! only in the blocks it owns, and an explicit address in a block it owns needs no etcd. A
//! subnet narrower than a block lives in one block, so one host allocates from it.
//!
//! **Giving blocks back.** A block that has held none of this host's addresses for
//! `weave-mesh --release-empty-after` is given back, except one empty block of the default
//! range. Under the blocks lock, held alone, the agent checks the store's address files
//! once more and writes state.json without the block; only then does it delete the block
//! in etcd. An attach reads state.json again under the lock, held shared, and keeps it until
//! its addresses are in the store: it either allocates in a block the agent then sees in
//! use, or never sees the block.
//!
//! **Validity.** The agent renews its lease in etcd; after each renewal it sets `valid_until`
//! (CLOCK_BOOTTIME, milliseconds) to the earliest moment another host could reclaim this
//! host's blocks: renewal time + lease TTL + reclaim grace. Past it, the hook allocates
//! nothing from the blocks (an agent that is dead or cut off from etcd for that long may have
//! lost them).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::Ipv4Net;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::fsutil;
use crate::layout::StateDir;

/// Blocks are /26 unless `weave-mesh --block-prefix` says otherwise.
pub const DEFAULT_BLOCK_PREFIX: u8 = 26;
/// The version of the files and of the socket protocol; a reader refuses another one.
pub const VERSION: u32 = 1;
/// The bytes VXLAN over IPv4 adds to a frame (outer IPv4 20 + UDP 8 + VXLAN 8 + inner
/// Ethernet 14): the overlay MTU is the underlay's minus this.
pub const VXLAN_OVERHEAD: u32 = 50;
/// At most this much is read of either file or of a reply.
const MAX_BYTES: u64 = 4 << 20;

/// What the agent tells the hook about this host (`mesh/state.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshState {
    pub version: u32,
    /// This host's name in the mesh (`weave-mesh --name`).
    pub host: String,
    /// The blocks this host owns, each `block_prefix` bits long.
    pub blocks: Vec<Ipv4Net>,
    pub block_prefix: u8,
    /// CLOCK_BOOTTIME milliseconds: until then the blocks are provably this host's.
    pub valid_until_ms: u64,
    /// Whether the agent's last etcd request succeeded.
    pub etcd_reachable: bool,
    /// The MTU of the weave bridge, the veths and ethwe: the underlay's minus
    /// [`VXLAN_OVERHEAD`]; `None` while the agent has not measured it.
    pub mtu: Option<u32>,
}

/// Another host of the mesh, as the agent last saw it (`mesh/peers.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub name: String,
    /// Its underlay address (`weave-mesh --advertise`).
    pub advertise: Ipv4Addr,
    /// Whether its lease is alive.
    pub alive: bool,
}

/// An address held on some host (`mesh/peers.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldAddr {
    pub addr: Ipv4Addr,
    pub host: String,
    pub container: String,
}

/// The mesh as the agent last saw it (`mesh/peers.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peers {
    pub version: u32,
    pub peers: Vec<Peer>,
    pub addrs: Vec<HeldAddr>,
}

/// What the hook asks the agent (one JSON line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// A new block for this host, inside `subnet` (all of its blocks are full).
    ClaimBlock { subnet: Ipv4Net },
    /// `addr`, outside this host's blocks, for container `id`: proven unique in etcd.
    ClaimAddr { addr: Ipv4Addr, id: String },
    /// Gives back an address [`Request::ClaimAddr`] claimed (the attach failed after it).
    ReleaseAddr { addr: Ipv4Addr, id: String },
}

/// The agent's answer (one JSON line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Reply {
    /// The block now owned by this host (also in `state.json` before the reply is sent).
    Block { block: Ipv4Net },
    /// Done (a claim or a release).
    Ok,
    /// Refused: `reason` is a whole sentence for the user, naming the host that holds what
    /// was asked for, or saying that the subnet has no free block.
    Refused { reason: String },
    /// etcd could not be reached: nothing can be proven unique.
    Unreachable { reason: String },
}

/// One weave DNS container as the mesh knows it: published by its host's agent in etcd
/// (`<prefix>names/<host>/<id>`), mirrored by the others into `mesh/names/<host>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedContainer {
    pub id: String,
    /// Lowercase labels (weave-dns checks them again).
    pub names: Vec<String>,
    pub addrs: Vec<Ipv4Addr>,
    #[serde(default)]
    pub shared: bool,
    /// When its process started, in wall-clock milliseconds ([`started_ms`]): the order of
    /// claimants across hosts.
    pub started_ms: u64,
    /// Its process id on its host: the tie-breaker after `started_ms`.
    pub pid: i32,
}

/// The weave DNS containers of one other host (`mesh/names/<host>.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteNames {
    pub version: u32,
    pub host: String,
    pub containers: Vec<NamedContainer>,
}

/// The suffix of a mirror file.
pub const NAMES_SUFFIX: &str = ".json";
/// At most this much is read of a mirror file (10,000 containers take about 1.5 MB).
pub const MAX_NAMES_BYTES: u64 = 64 << 20;

impl RemoteNames {
    /// One mirror file: `None` when it is gone.
    pub fn read(path: &std::path::Path) -> io::Result<Option<Self>> {
        let text = match fsutil::read_small(path, MAX_NAMES_BYTES) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let names: Self = serde_json::from_slice(&text)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if names.version != VERSION {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("version {} (this program reads {VERSION})", names.version),
            ));
        }
        Ok(Some(names))
    }
}

/// The host a mirror file's name stands for (`<host>.json`); `None` for temporary files and
/// anything else.
pub fn names_file_host(file_name: &str) -> Option<&str> {
    let host = file_name.strip_suffix(NAMES_SUFFIX)?;
    let ok = !host.is_empty()
        && host.len() <= 63
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !host.starts_with('.');
    ok.then_some(host)
}

/// When a process started, in wall-clock milliseconds since the epoch: comparable between
/// hosts (as far as their clocks agree), unlike its start time in ticks after boot.
/// `None` when the clocks cannot be read.
pub fn started_ms(process: crate::process::ProcessId) -> Option<u64> {
    // SAFETY: sysconf(3) has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|h| *h > 0)?;
    let since_boot = process.start_time.checked_mul(1000)? / hz;
    boot_wall_ms()?.checked_add(since_boot)
}

/// The wall clock at boot, in ms: read once per process, so that every start this process
/// converts is ordered as its ticks are. Read at each call, two reads of the two clocks
/// a little apart could land on either side of a rounding boundary, and one process's
/// records came out 10 ms apart (weave-dns ordered a shared name's addresses by it).
fn boot_wall_ms() -> Option<u64> {
    static BOOT_WALL: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *BOOT_WALL.get_or_init(|| {
        use nix::time::{clock_gettime, ClockId};
        let ms = |c: ClockId| {
            clock_gettime(c)
                .ok()
                .map(|t| t.tv_sec() * 1000 + t.tv_nsec() / 1_000_000)
        };
        // The start time counts CLOCK_BOOTTIME ticks; the wall clock at boot is the difference.
        let boot_wall = ms(ClockId::CLOCK_REALTIME)? - ms(ClockId::CLOCK_BOOTTIME)?;
        u64::try_from(boot_wall).ok()
    })
}

/// How long the hook waits for the agent's reply: a claim is one etcd transaction, or a few.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

impl StateDir {
    pub fn mesh_dir(&self) -> PathBuf {
        self.root().join("mesh")
    }

    pub fn mesh_state(&self) -> PathBuf {
        self.mesh_dir().join("state.json")
    }

    pub fn mesh_peers(&self) -> PathBuf {
        self.mesh_dir().join("peers.json")
    }

    /// The mirror of the other hosts' weave DNS names (see [`RemoteNames`]).
    pub fn mesh_names_dir(&self) -> PathBuf {
        self.mesh_dir().join("names")
    }

    pub fn mesh_names(&self, host: &str) -> PathBuf {
        self.mesh_names_dir().join(format!("{host}{NAMES_SUFFIX}"))
    }

    pub fn mesh_socket(&self) -> PathBuf {
        self.mesh_dir().join("agent.sock")
    }

    /// flock(2)ed shared by weave-hook from its read of state.json until its addresses are in
    /// the store, and exclusively by weave-mesh while it takes an empty block out of
    /// state.json: a block is never given back under an allocation that read it. The agent
    /// makes it before it writes state.json; the hook never creates it.
    pub fn mesh_blocks_lock(&self) -> PathBuf {
        self.mesh_dir().join("blocks.lock")
    }

    /// Taken by weave-hook while it asks for a new block, so that concurrent attaches of
    /// this host ask once (the mesh directory is the agent's: the lock is beside it).
    pub fn mesh_claim_lock(&self) -> PathBuf {
        self.root().join("mesh-claim.lock")
    }
}

impl MeshState {
    /// The agent's view, or `None` when no agent has run on this state directory (the
    /// single-host case). An unreadable or foreign file is an error: the hook must not
    /// silently fall back to allocating without the mesh.
    pub fn read(dir: &StateDir) -> io::Result<Option<Self>> {
        let text = match fsutil::read_small(&dir.mesh_state(), MAX_BYTES) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        // Only a directory root alone can change holds a state.json of the agent's.
        fsutil::check_private_dir(&dir.mesh_dir())
            .map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, e.to_string()))?;
        let state: Self = serde_json::from_slice(&text)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if state.version != VERSION {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "version {} (this weave-hook reads {VERSION})",
                    state.version
                ),
            ));
        }
        Ok(Some(state))
    }

    /// Whether the blocks may still be allocated from at `now_ms` (CLOCK_BOOTTIME).
    pub fn blocks_valid(&self, now_ms: u64) -> bool {
        now_ms < self.valid_until_ms
    }

    /// The block of this host that holds `addr`, if any.
    pub fn owning_block(&self, addr: Ipv4Addr) -> Option<Ipv4Net> {
        self.blocks.iter().copied().find(|b| b.contains(&addr))
    }

    /// This host's blocks that overlap `subnet` (where its `net:` allocations may go).
    pub fn blocks_in(&self, subnet: Ipv4Net) -> Vec<Ipv4Net> {
        self.blocks
            .iter()
            .copied()
            .filter(|b| b.contains(&subnet.network()) || subnet.contains(&b.network()))
            .collect()
    }
}

/// Held by weave-hook while it allocates from this host's blocks, or by weave-mesh while it
/// takes an empty block out of state.json (see [`StateDir::mesh_blocks_lock`]); let go
/// when dropped.
#[derive(Debug)]
pub struct BlocksHold {
    _lock: Flock<File>,
}

/// How long weave-hook waits while the agent holds the blocks lock alone: it does so for a
/// look at the store and one write of state.json, so only a stuck agent exceeds it.
pub const BLOCKS_PATIENCE: Duration = Duration::from_secs(5);

/// weave-hook's hold, shared with the other attaches; waits while the agent takes a block
/// out, up to `patience` (then `ErrorKind::TimedOut`). `None` without a lock file: the agent
/// that wrote state.json gives no block back (an earlier version).
pub fn hold_blocks_shared(dir: &StateDir, patience: Duration) -> io::Result<Option<BlocksHold>> {
    let deadline = std::time::Instant::now() + patience;
    let how = FlockArg::LockSharedNonblock;
    loop {
        match fsutil::lock_file_as(&dir.mesh_blocks_lock(), how, false) {
            Ok(lock) => return Ok(Some(BlocksHold { _lock: lock })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        if std::time::Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "weave-mesh has held it alone for more than {patience:?}; restart `weave-mesh run`"
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// weave-mesh's hold, alone (the lock file is made when missing); `None` while an attach
/// holds it: the agent never waits for the hook.
pub fn try_hold_blocks_alone(dir: &StateDir) -> io::Result<Option<BlocksHold>> {
    let how = FlockArg::LockExclusiveNonblock;
    match fsutil::lock_file_as(&dir.mesh_blocks_lock(), how, true) {
        Ok(lock) => Ok(Some(BlocksHold { _lock: lock })),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

impl Peers {
    /// The agent's last view of the other hosts; empty when there is none.
    pub fn read(dir: &StateDir) -> Self {
        fsutil::read_small(&dir.mesh_peers(), MAX_BYTES)
            .ok()
            .and_then(|text| serde_json::from_slice::<Self>(&text).ok())
            .filter(|p| p.version == VERSION)
            .unwrap_or_default()
    }
}

/// The aligned block of `prefix` bits that holds `addr`.
pub fn block_of(addr: Ipv4Addr, prefix: u8) -> Ipv4Net {
    Ipv4Net::new(addr, prefix)
        .expect("block prefix is at most 32")
        .trunc()
}

/// The blocks of `prefix` bits that hold addresses of `subnet`, in address order (one, the
/// block around it, for a subnet narrower than a block).
pub fn blocks_of(subnet: Ipv4Net, prefix: u8) -> impl Iterator<Item = Ipv4Net> {
    let subnet = subnet.trunc();
    let (first, count) = match subnet.prefix_len() <= prefix {
        true => (subnet.network(), 1u64 << (prefix - subnet.prefix_len())),
        false => (block_of(subnet.network(), prefix).network(), 1),
    };
    let step = 1u64 << (32 - prefix);
    (0..count).map(move |i| {
        let start = u64::from(u32::from(first)) + i * step;
        Ipv4Net::new(Ipv4Addr::from(start as u32), prefix).expect("valid prefix")
    })
}

/// CLOCK_BOOTTIME in milliseconds: the clock of [`MeshState::valid_until_ms`] (system-wide,
/// never set back, counts suspend).
pub fn boottime_ms() -> u64 {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .expect("CLOCK_BOOTTIME is always there on Linux");
    now.tv_sec() as u64 * 1000 + now.tv_nsec() as u64 / 1_000_000
}

/// Sends one request to the agent and reads its reply. An agent that is not running is an
/// error of kind `NotFound` or `ConnectionRefused`.
pub fn ask(dir: &StateDir, request: &Request, timeout: Duration) -> io::Result<Reply> {
    let mut stream = UnixStream::connect(dir.mesh_socket())?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut line = serde_json::to_vec(request).expect("a request always serializes");
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut reply = Vec::new();
    BufReader::new(stream)
        .take(MAX_BYTES)
        .read_until(b'\n', &mut reply)?;
    serde_json::from_slice(&reply).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_converts_to_the_same_wall_clock_time_on_every_call() {
        let me = crate::process::ProcessId::of(std::process::id() as i32).unwrap();
        let first = started_ms(me).unwrap();
        for _ in 0..10_000 {
            assert_eq!(started_ms(me), Some(first));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(
            first <= now && now - first < 3_600_000,
            "{first} vs now {now}"
        );
    }

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_of_a_wide_subnet_tile_it() {
        let blocks: Vec<_> = blocks_of(net("10.32.0.0/24"), 26).collect();
        assert_eq!(
            blocks,
            vec![
                net("10.32.0.0/26"),
                net("10.32.0.64/26"),
                net("10.32.0.128/26"),
                net("10.32.0.192/26")
            ]
        );
        assert_eq!(blocks_of(net("10.32.0.0/12"), 26).count(), 1 << 14);
    }

    #[test]
    fn a_narrow_subnet_lives_in_the_block_around_it() {
        let blocks: Vec<_> = blocks_of(net("10.9.0.200/30"), 26).collect();
        assert_eq!(blocks, vec![net("10.9.0.192/26")]);
        assert_eq!(
            block_of("10.9.0.201".parse().unwrap(), 26),
            net("10.9.0.192/26")
        );
    }

    #[test]
    fn blocks_in_a_subnet_are_those_overlapping_it() {
        let state = MeshState {
            version: VERSION,
            host: "a".into(),
            blocks: vec![net("10.32.0.64/26"), net("10.9.0.192/26")],
            block_prefix: 26,
            valid_until_ms: 10,
            etcd_reachable: true,
            mtu: None,
        };
        assert_eq!(
            state.blocks_in(net("10.32.0.0/12")),
            vec![net("10.32.0.64/26")]
        );
        assert_eq!(
            state.blocks_in(net("10.9.0.200/30")),
            vec![net("10.9.0.192/26")]
        );
        assert!(state.blocks_in(net("10.40.0.0/16")).is_empty());
        assert!(state.blocks_valid(9) && !state.blocks_valid(10));
    }

    #[test]
    fn state_json_is_read_only_from_a_directory_root_alone_changes() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path());
        assert!(
            MeshState::read(&dir).unwrap().is_none(),
            "no agent: single host"
        );
        std::fs::create_dir(dir.mesh_dir()).unwrap();
        let state = MeshState {
            version: VERSION,
            host: "a".into(),
            blocks: vec![],
            block_prefix: 26,
            valid_until_ms: 1,
            etcd_reachable: true,
            mtu: Some(1450),
        };
        std::fs::write(dir.mesh_state(), serde_json::to_vec(&state).unwrap()).unwrap();
        assert_eq!(MeshState::read(&dir).unwrap(), Some(state));
        let perms = |mode| std::fs::Permissions::from_mode(mode);
        std::fs::set_permissions(dir.mesh_dir(), perms(0o777)).unwrap();
        let err = MeshState::read(&dir).unwrap_err();
        assert!(
            err.to_string().contains("writable by its group or others"),
            "{err}"
        );
        std::fs::set_permissions(dir.mesh_dir(), perms(0o755)).unwrap();
        // A link in place of the file, or of the directory, is not followed.
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::rename(dir.mesh_state(), &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.mesh_state()).unwrap();
        assert!(MeshState::read(&dir).is_err());
        std::fs::remove_file(dir.mesh_state()).unwrap();
        std::fs::rename(&elsewhere, dir.mesh_state()).unwrap();
        let real = tmp.path().join("real");
        std::fs::rename(dir.mesh_dir(), &real).unwrap();
        std::os::unix::fs::symlink(&real, dir.mesh_dir()).unwrap();
        let err = MeshState::read(&dir).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }

    #[test]
    fn mirror_files_are_named_by_valid_hosts_only() {
        assert_eq!(names_file_host("hostb.json"), Some("hostb"));
        for bad in [".tmpX", "hostb", ".json", "a b.json", "..json", "../x.json"] {
            assert_eq!(names_file_host(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn start_times_in_wall_clock_follow_ticks() {
        let me = crate::process::ProcessId::of(std::process::id() as i32).unwrap();
        let ms = started_ms(me).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(ms <= now + 20 && ms + 3_600_000 > now, "{ms} vs now {now}");
        assert_eq!(started_ms(me), Some(ms), "stable between reads");
        let later = crate::process::ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(started_ms(later).unwrap() > ms);
    }

    #[test]
    fn requests_and_replies_are_one_json_line() {
        let r = Request::ClaimAddr {
            addr: "10.32.0.9".parse().unwrap(),
            id: "c1".into(),
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"op":"claim_addr","addr":"10.32.0.9","id":"c1"}"#);
        let reply: Reply = serde_json::from_str(r#"{"result":"refused","reason":"x"}"#).unwrap();
        assert_eq!(reply, Reply::Refused { reason: "x".into() });
    }
}
