//! The hook's side of the mesh (weave-mesh, the per-host agent): this host's blocks from
//! `mesh/state.json`, and the agent's socket for what must be proven unique across hosts (a
//! new block, an exact address outside the blocks). The contract is weave-core's
//! [`weave_core::mesh`]. The store's lock is never held while the agent is asked.

use std::io;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use weave_core::fsutil;
use weave_core::id::ContainerId;
use weave_core::layout::StateDir;
use weave_core::mesh::{
    self, BlocksHold, MeshState, Reply, Request, BLOCKS_PATIENCE, REQUEST_TIMEOUT,
};
use weave_core::store::MeshFacts;

use crate::error::{Error, Result};

/// At most this much of a reason the agent gives is shown (one line of stderr).
const MAX_REASON_CHARS: usize = 400;

/// This host in the mesh, for one attach.
#[derive(Debug)]
pub struct Mesh {
    dir: StateDir,
    state: MeshState,
    /// CLOCK_BOOTTIME when the state was read.
    read_at_ms: u64,
    /// Until the addresses are in the store: the agent gives no block back meanwhile.
    hold: Option<BlocksHold>,
}

impl Mesh {
    /// The agent's view of this host, or `None` when no agent runs on this state directory
    /// (the single-host hook: nothing else of the mesh runs). In a mesh, the blocks are
    /// held (shared) until [`Mesh::allocated`], and the state is read again under the hold.
    pub fn load(dir: &StateDir) -> Result<Option<Self>> {
        if read_state(dir)?.is_none() {
            return Ok(None);
        }
        let hold = mesh::hold_blocks_shared(dir, BLOCKS_PATIENCE).map_err(Error::io(format!(
            "lock {}",
            dir.mesh_blocks_lock().display()
        )))?;
        Ok(read_state(dir)?.map(|state| Self {
            dir: dir.clone(),
            state,
            read_at_ms: mesh::boottime_ms(),
            hold,
        }))
    }

    /// The attach's addresses are in the store (or it failed): the agent may give back
    /// the blocks it sees empty.
    pub fn allocated(&mut self) {
        self.hold = None;
    }

    pub fn state(&self) -> &MeshState {
        &self.state
    }

    /// What the store must respect, with the exact addresses the agent proved for this
    /// container.
    pub fn facts<'a>(&'a self, claimed: &'a [Ipv4Addr]) -> MeshFacts<'a> {
        MeshFacts {
            blocks: &self.state.blocks,
            valid: self.state.blocks_valid(self.read_at_ms),
            claimed,
        }
    }

    /// The refusal of an allocation from blocks whose validity has passed.
    pub fn expired(&self) -> Error {
        Error::BlocksExpired {
            host: self.state.host.clone(),
            ago_secs: self.read_at_ms.saturating_sub(self.state.valid_until_ms) / 1000,
        }
    }

    /// Reads the agent's state again; returns whether this host's blocks changed (another
    /// attach had a block claimed meanwhile).
    pub fn refresh(&mut self) -> Result<bool> {
        let Some(fresh) = read_state(&self.dir)? else {
            return Ok(false);
        };
        let changed = fresh.blocks != self.state.blocks;
        self.state = fresh;
        self.read_at_ms = mesh::boottime_ms();
        Ok(changed)
    }

    /// Asks the agent for a new block inside `subnet`, then reads the state it wrote. One
    /// attach of this host at a time asks (under the claim lock, never the store's): the
    /// others, waiting, find the new block in the state and ask for none (16 concurrent
    /// first attaches would otherwise claim a block each).
    pub fn claim_block(&mut self, subnet: Ipv4Net) -> Result<()> {
        let lock = self.dir.mesh_claim_lock();
        let _claiming =
            fsutil::lock_file(&lock).map_err(Error::io(format!("lock {}", lock.display())))?;
        if self.refresh()? {
            return Ok(());
        }
        let what = format!("a new address block in {subnet}");
        let block = match self.ask(&Request::ClaimBlock { subnet }, &what)? {
            Reply::Block { block } => block,
            other => return Err(unexpected(&what, &other)),
        };
        let overlaps = subnet.contains(&block.network()) || block.contains(&subnet.network());
        if !overlaps {
            return Err(Error::AgentReply {
                what,
                why: format!("it granted block {block}, which is not in {subnet}"),
            });
        }
        let Some(fresh) = read_state(&self.dir)? else {
            return Err(Error::AgentReply {
                what,
                why: format!(
                    "it granted block {block}, but {} is gone",
                    self.dir.mesh_state().display()
                ),
            });
        };
        if !fresh.blocks.contains(&block) {
            return Err(Error::AgentReply {
                what,
                why: format!(
                    "it granted block {block}, but {} does not list it",
                    self.dir.mesh_state().display()
                ),
            });
        }
        tracing::info!(%block, %subnet, "weave-mesh claimed a new block for this host");
        self.state = fresh;
        self.read_at_ms = mesh::boottime_ms();
        Ok(())
    }

    /// Asks the agent to prove `addr` unique across the mesh for container `id`.
    pub fn claim_addr(&self, addr: Ipv4Addr, id: &ContainerId) -> Result<()> {
        let what = format!("address {addr}, outside this host's address blocks,");
        let request = Request::ClaimAddr {
            addr,
            id: id.as_str().to_string(),
        };
        match self.ask(&request, &what)? {
            Reply::Ok => Ok(()),
            other => Err(unexpected(&what, &other)),
        }
    }

    /// Gives back what [`Mesh::claim_addr`] claimed (the attach failed after it). Best
    /// effort: an address the agent keeps is only unavailable until the container's id
    /// is reused or weave-mesh reconciles.
    pub fn release_addr(&self, addr: Ipv4Addr, id: &ContainerId) {
        let request = Request::ReleaseAddr {
            addr,
            id: id.as_str().to_string(),
        };
        match self.ask(&request, &format!("the release of address {addr}")) {
            Ok(Reply::Ok) => {}
            Ok(other) => {
                tracing::warn!(%addr, reply = ?other, "weave-mesh did not release the address")
            }
            Err(e) => {
                tracing::warn!(%addr, error = %e, "cannot give the address back to weave-mesh")
            }
        }
    }

    /// One request and its reply; `Refused` and `Unreachable` become errors that say why.
    fn ask(&self, request: &Request, what: &str) -> Result<Reply> {
        let socket = self.dir.mesh_socket();
        let reply = mesh::ask(&self.dir, request, REQUEST_TIMEOUT).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => Error::AgentNotRunning {
                what: what.to_string(),
                socket: socket.clone(),
            },
            _ => Error::Agent {
                what: what.to_string(),
                socket: socket.clone(),
                source: e,
            },
        })?;
        match reply {
            Reply::Refused { reason } => Err(Error::MeshRefused {
                reason: printable(&reason),
            }),
            Reply::Unreachable { reason } => Err(Error::EtcdUnreachable {
                what: what.to_string(),
                reason: printable(&reason),
            }),
            other => Ok(other),
        }
    }
}

/// The agent's state.json, `None` when there is none.
fn read_state(dir: &StateDir) -> Result<Option<MeshState>> {
    MeshState::read(dir).map_err(|source| Error::MeshState {
        path: dir.mesh_state(),
        source,
    })
}

fn unexpected(what: &str, reply: &Reply) -> Error {
    Error::AgentReply {
        what: what.to_string(),
        why: printable(&format!("unexpected reply {reply:?}")),
    }
}

/// A reason from the agent as one bounded line: no control characters, at most
/// [`MAX_REASON_CHARS`].
fn printable(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REASON_CHARS)
        .collect();
    if text.chars().count() > MAX_REASON_CHARS {
        out.push('…');
    }
    out.trim().to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn reasons_are_one_bounded_line() {
        assert_eq!(printable("held by\nhost b\x1b[31m"), "held by host b [31m");
        let long = "x".repeat(5000);
        assert_eq!(printable(&long).chars().count(), MAX_REASON_CHARS + 1);
    }

    #[test]
    fn an_attach_holds_the_blocks_until_its_addresses_are_in_the_store() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path());
        assert!(Mesh::load(&dir).unwrap().is_none(), "no agent: no mesh");
        fsutil::ensure_private_dir(&dir.mesh_dir()).unwrap();
        let state = MeshState {
            version: mesh::VERSION,
            host: "h".into(),
            blocks: vec!["10.32.0.0/26".parse().unwrap()],
            block_prefix: 26,
            valid_until_ms: u64::MAX,
            etcd_reachable: true,
            mtu: None,
        };
        std::fs::write(dir.mesh_state(), serde_json::to_vec(&state).unwrap()).unwrap();
        // An agent that made no lock file gives no block back: read without a hold.
        let loaded = Mesh::load(&dir).unwrap().unwrap();
        assert!(loaded.hold.is_none());
        assert!(
            !dir.mesh_blocks_lock().exists(),
            "the hook makes no lock file"
        );
        // The agent makes it; from then on an attach holds it until it has allocated.
        drop(mesh::try_hold_blocks_alone(&dir).unwrap().unwrap());
        let mut loaded = Mesh::load(&dir).unwrap().unwrap();
        assert_eq!(loaded.state().blocks, state.blocks);
        let agent = mesh::try_hold_blocks_alone(&dir).unwrap();
        assert!(agent.is_none(), "the agent took the blocks under an attach");
        // Another attach reads at the same time.
        let other = Mesh::load(&dir).unwrap().unwrap();
        assert!(other.hold.is_some());
        drop(other);
        loaded.allocated();
        // An agent stuck with the lock: the attach fails after its patience, saying so.
        let stuck = mesh::try_hold_blocks_alone(&dir).unwrap().unwrap();
        let e = mesh::hold_blocks_shared(&dir, Duration::from_millis(20)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("weave-mesh has held it"), "{e}");
        drop(stuck);
        assert!(mesh::hold_blocks_shared(&dir, Duration::ZERO)
            .unwrap()
            .is_some());
    }
}
