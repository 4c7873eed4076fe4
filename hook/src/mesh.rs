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
use weave_core::mesh::{self, MeshState, Reply, Request, REQUEST_TIMEOUT};
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
}

impl Mesh {
    /// The agent's view of this host, or `None` when no agent runs on this state directory
    /// (the single-host hook: nothing else of the mesh runs).
    pub fn load(dir: &StateDir) -> Result<Option<Self>> {
        let state = MeshState::read(dir).map_err(|source| Error::MeshState {
            path: dir.mesh_state(),
            source,
        })?;
        Ok(state.map(|state| Self {
            dir: dir.clone(),
            state,
            read_at_ms: mesh::boottime_ms(),
        }))
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
        let Some(fresh) = Self::load(&self.dir)? else {
            return Ok(false);
        };
        let changed = fresh.state.blocks != self.state.blocks;
        *self = fresh;
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
        let Some(fresh) = Self::load(&self.dir)? else {
            return Err(Error::AgentReply {
                what,
                why: format!(
                    "it granted block {block}, but {} is gone",
                    self.dir.mesh_state().display()
                ),
            });
        };
        if !fresh.state.blocks.contains(&block) {
            return Err(Error::AgentReply {
                what,
                why: format!(
                    "it granted block {block}, but {} does not list it",
                    self.dir.mesh_state().display()
                ),
            });
        }
        tracing::info!(%block, %subnet, "weave-mesh claimed a new block for this host");
        *self = fresh;
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
    use super::*;

    #[test]
    fn reasons_are_one_bounded_line() {
        assert_eq!(printable("held by\nhost b\x1b[31m"), "held by host b [31m");
        let long = "x".repeat(5000);
        assert_eq!(printable(&long).chars().count(), MAX_REASON_CHARS + 1);
    }
}
