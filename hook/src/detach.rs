//! Detach: release what a container held. Idempotent.

use std::fs;
use std::io;

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
    // Usually already gone: the veth dies with the container's network namespace.
    match Netlink::open().and_then(|mut nl| nl.delete_link(&veth)) {
        Ok(deleted) => tracing::debug!(%veth, deleted, "host veth"),
        Err(e) => failures.push(Error::netlink(format!("delete {veth}"))(e).to_string()),
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
