//! Attach: wire a container into the weave network before its process runs.

use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::Path;

use ipnet::Ipv4Net;

use crate::bridge;
use crate::dns;
use crate::error::{Error, Result};
use crate::failpoint;
use crate::firewall::Recheck;
use crate::netlink::{Netlink, VethRequest};
use crate::netns::Netns;
use crate::oci::State;
use crate::options::{self, Wanted};
use crate::process::ProcessId;
use crate::settings::{host_veth_name, Settings, CONTAINER_IFNAME};
use crate::store::{Holder, Record, Store};

/// Attaches the container the state describes, if it asked for weave. Returns its record,
/// or `None` when it asked for nothing. On failure everything done so far is undone.
pub fn attach(settings: &Settings, state: &State) -> Result<Option<Record>> {
    let Wanted::Attach(request) = options::resolve(state)? else {
        tracing::debug!(id = %state.id, "no weave options; nothing to do");
        return Ok(None);
    };
    let pid = state.pid.ok_or(Error::NoPid)?;
    dns::check_requests(&request.addrs, settings.dns_addr())?;
    // Only a weave DNS container's config.json is read for its hostname, so plain attaches
    // stay as fast as they were.
    let (dns_addr, names) = match request.dns {
        true => (Some(settings.dns_addr()), dns::names_of(state)?),
        false => (None, Vec::new()),
    };
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
    let holder = Holder {
        id: &state.id,
        bridge: &settings.bridge,
        veth: &veth,
        owner: Some(owner),
        names: &names,
    };
    let record = store.reserve(&holder, &request.addrs, settings.ipalloc_range)?;
    failpoint::hit("reserved");
    let wired = wire(settings, &store, &record, dns_addr, &container_ns, &host_ns);
    // The server comes last: once it serves, the container's very first query is answered.
    let served = wired.and_then(|()| match dns_addr {
        Some(_) => dns::ensure_server(settings).map_err(Error::from),
        None => Ok(()),
    });
    if let Err(e) = served {
        undo(&store, state, &veth);
        return Err(e);
    }
    failpoint::hit("attached");
    tracing::info!(id = %state.id, %veth, addrs = ?record.addrs, names = ?record.names, "attached");
    Ok(Some(record))
}

fn wire(
    settings: &Settings,
    store: &Store,
    record: &Record,
    dns_addr: Option<Ipv4Net>,
    container_ns: &Netns,
    host_ns: &Netns,
) -> Result<()> {
    let mut host = Netlink::open().map_err(Error::netlink("open netlink socket"))?;
    let bridge_index = bridge::ensure(&mut host, settings)?;
    failpoint::hit("bridge");
    bridge::ensure_forwarding(store, &settings.bridge, Recheck::WhenChanged)?;
    if let Some(addr) = dns_addr {
        // Concurrent attaches race to add it: EEXIST means someone did.
        match host.add_address(bridge_index, addr) {
            Err(e) if e.raw_os_error() != Some(libc::EEXIST) => Err(Error::netlink(format!(
                "add weave DNS address {addr} to bridge {}",
                settings.bridge
            ))(e))?,
            _ => {}
        }
    }
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
    failpoint::hit("veth");
    let dns_route = dns_addr
        .map(|a| a.addr())
        .filter(|a| dns::needs_route(&record.addrs, *a));
    container_ns
        .run_in(host_ns, || configure_inside(record, dns_route))
        .map_err(Error::io("enter the container's network namespace"))?
}

/// Inside the container's namespace: addresses on ethwe, ethwe and lo up, neighbours told,
/// and a route to weave DNS when no subnet of the container holds its address.
fn configure_inside(record: &Record, dns_route: Option<Ipv4Addr>) -> Result<()> {
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
    failpoint::hit("addresses");
    nl.set_up(ethwe.index)
        .map_err(Error::netlink("bring ethwe up"))?;
    if let Some(dns) = dns_route {
        // Only this one address: the container's default route stays as it is.
        nl.add_link_route(ethwe.index, Ipv4Net::from(dns))
            .map_err(Error::netlink(format!(
                "add a route to weave DNS {dns} via ethwe"
            )))?;
    }
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
