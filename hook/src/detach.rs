//! Detach: release what a container held. Idempotent.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;

use nix::unistd::{fork, ForkResult};
use weave_core::id::ContainerId;
use weave_core::layout::StateDir;
use weave_core::settings::Settings;
use weave_core::store::{Record, Store};

use crate::error::{Error, Result};
use crate::firewall;
use crate::netlink::Netlink;
use crate::portguard::{self, Port};

/// A host veth that detach found still present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftVeth {
    pub name: String,
    pub index: u32,
}

/// A port's guard elements (see `portguard`), and whose firewall marker their deletion may
/// move on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftGuard {
    pub port: Port,
    pub state_dir: StateDir,
    pub bridge: String,
}

/// What detach leaves for the caller to delete (see [`delete_in_background`] and
/// [`delete_now`]): both cost the kernel's RCU waits, which the runtime would wait for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftover {
    pub veth: Option<LeftVeth>,
    pub guard: Option<LeftGuard>,
}

impl Leftover {
    pub fn is_empty(&self) -> bool {
        self.veth.is_none() && self.guard.is_none()
    }
}

/// Releases the container's reservations and its resolv.conf, and finds its host veth if it
/// still exists (proved the container's by the index its record holds). Every step runs even
/// when an earlier one fails; the failures are reported together. Detaching a container that
/// was never attached is a success.
///
/// At poststop the veth usually still exists (Docker holds the namespace until after the
/// runtime's delete; with plain runc the namespace is freed asynchronously), and deleting a
/// device costs its caller ~30 ms of RCU waits in the kernel, which the runtime and
/// `docker run --rm` would wait for: so the veth is returned, for the caller to delete. So
/// are the port's guard elements: deleting a set element costs ~12 ms of the same waits.
pub fn detach(settings: &Settings, id: &ContainerId) -> Result<Leftover> {
    let mut failures = Vec::new();
    let store = Store::open(&settings.state_dir)?;
    // A container sharing its network namespace's interface leaves it to the others.
    let left_record = store.leave(id);
    // The way out of a weave.route=default container goes with its interface, at once
    // (rare: the ~12 ms of kernel waits are paid only by these).
    if let Ok(Some(record)) = &left_record {
        if record.route {
            if let Err(e) = crate::route::withdraw(&record.addrs) {
                failures.push(Error::netlink("take the container's way out away")(e));
            }
        }
    }
    let left = match left_record {
        Ok(Some(record)) => Leftover {
            veth: find_veth(&record).unwrap_or_else(|e| {
                failures.push(e);
                None
            }),
            guard: Port::of(&record).map(|port| LeftGuard {
                port,
                state_dir: store.layout().clone(),
                bridge: record.bridge.clone(),
            }),
        },
        // Without a record no link is provably this container's: gc deletes orphans.
        Ok(None) => Leftover::default(),
        Err(e) => {
            failures.push(e.into());
            Leftover::default()
        }
    };
    let resolv = settings.layout().resolv(id);
    match fs::remove_file(&resolv) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            failures.push(Error::io(format!("remove {}", resolv.display()))(e))
        }
        _ => {}
    }
    match failures.is_empty() {
        true => {
            tracing::info!(%id, "detached");
            Ok(left)
        }
        false => Err(Error::Several(failures)),
    }
}

/// Deletes the port's guard elements (they must not outlive the port, and its interface
/// index is reused in time); the firewall marker moves past the change when it can.
fn unguard(guard: &LeftGuard) -> Result<()> {
    let generation = portguard::remove(&guard.port).map_err(Error::netlink(format!(
        "remove the guard of port {}",
        guard.port.index
    )))?;
    if let Some(generation) = generation {
        firewall::own_change(&guard.state_dir, &guard.bridge, generation);
    }
    Ok(())
}

/// The record's host veth, if it still exists: by the recorded index (checked to still carry
/// the recorded name), or by name for a record written before its veth existed.
fn find_veth(record: &Record) -> Result<Option<LeftVeth>> {
    let mut nl = Netlink::open().map_err(Error::netlink("open netlink socket"))?;
    let lookup = Error::netlink(format!("look up {}", record.veth));
    let link = match record.veth_index {
        Some(index) => nl.link_with(index, &record.veth).map_err(lookup)?,
        None => nl.link_by_name(&record.veth).map_err(lookup)?,
    };
    Ok(link.map(|l| LeftVeth {
        name: l.name,
        index: l.index,
    }))
}

/// Deletes what detach left, now, in the caller: every step runs even when another fails.
pub fn delete_now(left: &Leftover) -> Result<()> {
    let mut failures = Vec::new();
    // The veth first: a runtime or test waiting for it to go does not wait for the guard.
    if let Some(veth) = &left.veth {
        let deleted = Netlink::open()
            .and_then(|mut nl| nl.delete_link_index(veth.index))
            .map(drop)
            .map_err(Error::netlink(format!("delete {}", veth.name)));
        failures.extend(deleted.err());
    }
    if let Some(guard) = &left.guard {
        failures.extend(unguard(guard).err());
    }
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.remove(0)),
        _ => Err(Error::Several(failures)),
    }
}

/// Deletes the veth from a child that outlives the caller, which then need not wait for the
/// kernel. Only a single-threaded process may fork and go on running Rust code in the child
/// (another thread may hold a lock the child would need), so a multi-threaded caller deletes
/// it in the foreground instead. A lost child costs nothing lasting: `weave-hook gc` deletes
/// orphans.
pub fn delete_in_background(left: &Leftover) {
    if left.is_empty() {
        return;
    }
    if !single_threaded() {
        if let Err(e) = delete_now(left) {
            tracing::warn!(error = %e, "cannot delete the host veth or its guard; `weave-hook gc` will");
        }
        return;
    }
    // SAFETY: the process is single-threaded (checked above), so the child may run any code.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            // A runtime reading the hook's stdout and stderr waits until every writer has
            // closed them: the child keeps none of them.
            let _ = nix::unistd::setsid();
            if let Ok(null) = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
            {
                for fd in 0..3 {
                    let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
                }
            }
            let code = match delete_now(left) {
                Ok(()) => 0,
                Err(_) => 1,
            };
            // Leaves without running the parent's exit handlers or flushing its buffers.
            // SAFETY: _exit(2) is always safe to call; nix has no wrapper for it.
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { .. }) => {}
        Err(e) => {
            tracing::warn!(error = %e, "cannot fork; deleting the host veth and its guard in the foreground");
            if let Err(e) = delete_now(left) {
                tracing::warn!(error = %e, "cannot delete the host veth or its guard; `weave-hook gc` will");
            }
        }
    }
}

/// Whether the calling process has one thread (`Threads:` of /proc/self/status).
fn single_threaded() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .is_some_and(|n| n.trim() == "1")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_process_is_not_single_threaded() {
        // The test harness runs tests on threads of their own: the background deletion
        // must not fork here.
        let _other =
            std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_millis(200)));
        assert!(!single_threaded());
    }
}
