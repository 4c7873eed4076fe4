//! Attach: wire a container into the weave network before its process runs.

use std::fs;
use std::io;
use std::path::Path;

use crate::bridge;
use crate::error::{Error, Result};
use crate::netlink::{Netlink, VethRequest};
use crate::netns::Netns;
use crate::oci::State;
use crate::options::{self, Wanted};
use crate::process::ProcessId;
use crate::settings::{host_veth_name, Settings, CONTAINER_IFNAME};
use crate::store::{Record, Store};

/// Attaches the container the state describes, if it asked for weave. Returns its record,
/// or `None` when it asked for nothing. On failure everything done so far is undone.
pub fn attach(settings: &Settings, state: &State) -> Result<Option<Record>> {
    let Wanted::Attach(request) = options::resolve(state)? else {
        tracing::debug!(id = %state.id, "no weave options; nothing to do");
        return Ok(None);
    };
    let pid = state.pid.ok_or(Error::NoPid)?;
    let container_ns = Netns::open(Path::new(&format!("/proc/{pid}/ns/net")))
        .map_err(|source| Error::Netns { pid, source })?;
    let host_ns = Netns::current().map_err(Error::io("open own network namespace"))?;
    if container_ns
        .same_as(&host_ns)
        .map_err(Error::io("compare network namespaces"))?
    {
        return Err(Error::HostNetns);
    }
    let owner = ProcessId::of(pid).map_err(|source| Error::Netns { pid, source })?;
    let store = Store::open(&settings.state_dir)?;
    let veth = host_veth_name(&state.id);
    let record = store.reserve(
        &state.id,
        &settings.bridge,
        &veth,
        Some(owner),
        &request.addrs,
        settings.ipalloc_range,
    )?;
    let wired = wire(settings, &store, &record, &container_ns, &host_ns);
    if let Err(e) = wired {
        undo(&store, state, &veth);
        return Err(e);
    }
    tracing::info!(id = %state.id, %veth, addrs = ?record.addrs, "attached");
    Ok(Some(record))
}

fn wire(
    settings: &Settings,
    store: &Store,
    record: &Record,
    container_ns: &Netns,
    host_ns: &Netns,
) -> Result<()> {
    let mut host = Netlink::open().map_err(Error::netlink("open netlink socket"))?;
    let bridge_index = bridge::ensure(&mut host, settings)?;
    bridge::ensure_forwarding(store, &settings.bridge)?;
    // A veth of this name belongs to an earlier run of the same container id (its hook was
    // killed, or its poststop never ran): that container is gone, so its veth is stale.
    if host
        .delete_link(&record.veth)
        .map_err(Error::netlink(format!("delete stale {}", record.veth)))?
    {
        tracing::info!(veth = %record.veth, "deleted a stale veth of an earlier run");
    }
    let created = host.create_veth(&VethRequest {
        host_name: &record.veth,
        bridge_index,
        peer_name: CONTAINER_IFNAME,
        peer_netns: std::os::fd::AsFd::as_fd(container_ns.file()),
        mtu: settings.mtu,
    });
    match created {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            // Either name may clash; the host name was just cleared, so it is ethwe.
            return Err(Error::AlreadyAttached);
        }
        other => other.map_err(Error::netlink(format!(
            "create veth {} with peer {CONTAINER_IFNAME} in the container",
            record.veth
        )))?,
    }
    container_ns
        .run_in(host_ns, || configure_inside(record))
        .map_err(Error::io("enter the container's network namespace"))?
}

/// Inside the container's namespace: addresses on ethwe, ethwe and lo up, neighbours told.
fn configure_inside(record: &Record) -> Result<()> {
    let mut nl = Netlink::open().map_err(Error::netlink("open netlink socket in the container"))?;
    let ethwe = nl
        .link_by_name(CONTAINER_IFNAME)
        .map_err(Error::netlink("look up ethwe"))?
        .ok_or_else(|| {
            Error::netlink("look up ethwe")(io::Error::from_raw_os_error(libc::ENODEV))
        })?;
    // With arp_notify the kernel sends a gratuitous ARP for every address when the link
    // comes up, so neighbours drop a stale entry for a reused address.
    let sysctl = format!("/proc/sys/net/ipv4/conf/{CONTAINER_IFNAME}/arp_notify");
    fs::write(&sysctl, b"1").map_err(Error::io(format!("write {sysctl}")))?;
    for addr in &record.addrs {
        nl.add_address(ethwe.index, *addr)
            .map_err(Error::netlink(format!("add {addr} to ethwe")))?;
    }
    nl.set_up(ethwe.index)
        .map_err(Error::netlink("bring ethwe up"))?;
    let lo = nl
        .link_by_name("lo")
        .map_err(Error::netlink("look up lo"))?
        .ok_or_else(|| Error::netlink("look up lo")(io::Error::from_raw_os_error(libc::ENODEV)))?;
    if !lo.up {
        nl.set_up(lo.index).map_err(Error::netlink("bring lo up"))?;
    }
    Ok(())
}

/// Best-effort undo of a failed attach: the veth (its peer goes with it) and the reservation.
fn undo(store: &Store, state: &State, veth: &str) {
    match Netlink::open().and_then(|mut nl| nl.delete_link(veth)) {
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(%veth, error = %e, "undo: cannot delete veth; `weave-hook gc` will")
        }
    }
    if let Err(e) = store.release(&state.id) {
        tracing::warn!(id = %state.id, error = %e, "undo: cannot release the reservation; `weave-hook gc` will");
    }
}
