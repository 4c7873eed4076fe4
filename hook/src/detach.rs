//! Detach: release what a container held. Idempotent.

use std::fs;
use std::io;

use nix::unistd::{fork, ForkResult};

use crate::error::{Error, Result};
use crate::netlink::Netlink;
use crate::oci::ContainerId;
use crate::settings::{host_veth_name, Settings};
use crate::store::Store;

/// Where weave-runtime writes a container's resolv.conf; removed at detach.
pub fn resolv_conf_path(settings: &Settings, id: &ContainerId) -> std::path::PathBuf {
    settings
        .state_dir
        .join("resolv")
        .join(format!("{}.conf", id.as_str()))
}

/// Releases the container's reservations, deletes its host veth if it still exists and its
/// resolv.conf. Every step runs even when an earlier one fails; the failures are reported
/// together. Detaching a container that was never attached is a success.
pub fn detach(settings: &Settings, id: &ContainerId) -> Result<()> {
    let mut failures = Vec::new();
    let store = Store::open(&settings.state_dir)?;
    let veth = match store.release(id) {
        Ok(Some(record)) => record.veth,
        Ok(None) => host_veth_name(id),
        Err(e) => {
            failures.push(e.to_string());
            host_veth_name(id)
        }
    };
    // At poststop the veth usually still exists (Docker holds the namespace until after the
    // runtime's delete; with plain runc the namespace is freed asynchronously), and deleting
    // a device costs its caller ~30 ms of RCU waits in the kernel, which the runtime and
    // `docker run --rm` would wait for. So a detached child deletes it, by index: should the
    // same container id attach again meanwhile, its new veth has another index.
    match Netlink::open().and_then(|mut nl| nl.link_by_name(&veth)) {
        Ok(Some(link)) => delete_in_background(&veth, link.index),
        Ok(None) => tracing::debug!(%veth, "host veth already gone"),
        Err(e) => failures.push(Error::netlink(format!("look up {veth}"))(e).to_string()),
    }
    let resolv = resolv_conf_path(settings, id);
    match fs::remove_file(&resolv) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            failures.push(format!("remove {}: {e}", resolv.display()))
        }
        _ => {}
    }
    if failures.is_empty() {
        tracing::info!(%id, "detached");
        Ok(())
    } else {
        Err(Error::Several(failures.join("; ")))
    }
}

/// Deletes the link from a child that outlives the hook. A lost child costs nothing lasting:
/// attach deletes a stale veth of its name, and `weave-hook gc` deletes orphans.
fn delete_in_background(veth: &str, index: u32) {
    // SAFETY: the hook is single-threaded, so the child may run any code.
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
                    let _ = nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd);
                }
            }
            if let Err(e) = Netlink::open().and_then(|mut nl| nl.delete_link_index(index)) {
                tracing::warn!(%veth, error = %e, "cannot delete the host veth; `weave-hook gc` will");
            }
            // SAFETY: leaves without running the parent's exit handlers or flushing its buffers.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Parent { .. }) => {}
        Err(e) => {
            tracing::warn!(%veth, error = %e, "cannot fork; deleting the host veth in the foreground");
            if let Err(e) = Netlink::open().and_then(|mut nl| nl.delete_link_index(index)) {
                tracing::warn!(%veth, error = %e, "cannot delete the host veth; `weave-hook gc` will");
            }
        }
    }
}
