//! Attach: wire a container into the weave network before its process runs.

use std::cell::RefCell;
use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;

use weave_core::failpoint;
use weave_core::id::ContainerId;
use weave_core::oci::State;
use weave_core::options::{self, Wanted};
use weave_core::process::ProcessId;
use weave_core::settings::{host_veth_name, Settings, CONTAINER_IFNAME};
use weave_core::store::{Facts, Holder, Record, Reserved, Store, StoreError};

use crate::bridge;
use crate::dns;
use crate::error::{Error, Result};
use crate::firewall::{self, Recheck};
use crate::garp;
use crate::mesh::Mesh;
use crate::netlink::{Netlink, VethRequest};
use crate::netns::Netns;
use crate::nftables::{self, Openings, Rewrite};
use crate::portguard::{self, Port};
use crate::route;

/// Attaches the container the state describes, if it asked for weave. Returns its record,
/// or `None` when it asked for nothing. On failure everything done so far is undone.
pub fn attach(settings: &Settings, state: &State) -> Result<Option<Record>> {
    let Wanted::Attach(request) = options::resolve(state)? else {
        tracing::debug!(id = %state.id, "no weave options; nothing to do");
        return Ok(None);
    };
    let pid = state.pid.ok_or(Error::NoPid)?;
    // Only a weave DNS container's config.json is read for its hostname (and a pod member's
    // UTS namespace, when config.json has none), so plain attaches stay as fast as they were.
    let (dns_addr, claim) = match request.dns {
        true => (
            Some(settings.dns_addr()),
            weave_core::dns::claim_of(state, || crate::uts::hostname_of(pid))?,
        ),
        false => (None, Default::default()),
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
    let netns = container_ns
        .id()
        .map_err(|source| Error::Netns { pid, source })?;
    let store = Store::open(&settings.state_dir)?;
    // On a single host this is one failed open(2), and nothing else of the mesh runs.
    let mut mesh = Mesh::load(store.layout())?;
    let overlay;
    let settings = match mesh.as_ref().and_then(|m| m.state().mtu) {
        // Without --mtu, the overlay's: what fits the bridge fits the VXLAN device.
        Some(mtu) if settings.mtu.is_none() => {
            overlay = Settings {
                mtu: Some(mtu),
                ..settings.clone()
            };
            &overlay
        }
        _ => settings,
    };
    let veth = host_veth_name(&state.id);
    let holder = Holder {
        id: &state.id,
        bridge: &settings.bridge,
        veth: &veth,
        owner: Some(owner),
        names: &claim.names,
        shared: claim.shared,
        route: request.route,
        netns: Some(netns),
    };
    if request.route && !route::host_forwards() {
        return Err(Error::NoForwarding);
    }
    // Weave DNS's address is kept whether or not this container asks for DNS: another one
    // on the bridge may.
    // So are the host's exposed addresses (`weave-hook expose`).
    let exposed: Vec<Ipv4Addr> = store
        .exposed(&settings.bridge)
        .iter()
        .map(Ipv4Net::addr)
        .collect();
    let kept: Vec<Ipv4Addr> = std::iter::once(settings.dns_addr().addr())
        .chain(exposed.iter().copied())
        .collect();
    let interfaces = Interfaces::default();
    let facts = Facts {
        kept: &kept,
        interface_exists: &|r| interfaces.exist(r),
        // Filled in by `reserve`, from the mesh's view as it goes.
        mesh: None,
    };
    let mut claimed = Claimed {
        mesh: mesh.as_mut(),
        addrs: Vec::new(),
        id: &state.id,
    };
    let reserved = reserve(
        &store,
        &holder,
        &request.addrs,
        settings,
        &facts,
        &mut claimed,
    );
    if let Some(mesh) = claimed.mesh.as_deref_mut() {
        mesh.allocated();
    }
    let reserved = reserved.inspect_err(|_| claimed.release())?;
    failpoint::hit("reserved");
    // In a mesh an address may have been held on another host, whose store's marks this
    // one does not see: announce.
    let reserved = Reserved {
        announce: reserved.announce || claimed.mesh.is_some(),
        ..reserved
    };
    let record = &reserved.record;
    let mut created = None;
    let wired = match reserved.joined {
        // Its namespace's interface is there already: weave DNS is all it may need.
        true => join_dns(
            settings,
            dns_addr,
            &record.addrs,
            &Target {
                id: &state.id,
                container_ns: &container_ns,
                host_ns: &host_ns,
            },
        ),
        false => wire(
            settings,
            &store,
            &reserved,
            dns_addr,
            &Target {
                id: &state.id,
                container_ns: &container_ns,
                host_ns: &host_ns,
            },
            &exposed,
            &mut created,
        )
        .and_then(|()| Ok(store.netns_wired(&state.id, netns)?)),
    };
    // The server comes last: once it serves, the container's very first query is answered.
    let served = wired.and_then(|()| match dns_addr {
        Some(_) => dns::ensure_server(settings).map_err(Error::from),
        None => Ok(()),
    });
    if let Err(e) = served {
        undo(&store, state, created, record);
        claimed.release();
        return Err(e);
    }
    failpoint::hit("attached");
    tracing::info!(id = %state.id, veth = %record.veth, addrs = ?record.addrs, names = ?record.names, shares = ?record.netns.as_ref().and_then(|l| l.shares.as_ref()), "attached");
    Ok(Some(Record {
        veth_index: created.or(record.veth_index),
        ..reserved.record
    }))
}

/// How long an attach waits for another container of its network namespace to finish
/// wiring it (containers of a pod are created at the same time).
const WIRING_PATIENCE: Duration = Duration::from_secs(10);

/// In a mesh, how many new blocks one attach may ask for (concurrent attaches can fill a
/// new block before this one gets to it).
const BLOCK_CLAIMS: usize = 3;

/// Reserves the container's addresses, or joins its namespace's interface once the
/// container wiring it is done. In a mesh, asks weave-mesh, without the store's lock, for
/// what the store cannot give alone (a new block, an exact address proven unique), and
/// tries again.
fn reserve(
    store: &Store,
    holder: &Holder,
    requests: &[weave_core::cidr::AddrRequest],
    settings: &Settings,
    facts: &Facts,
    claimed: &mut Claimed,
) -> Result<Reserved> {
    let deadline = Instant::now() + WIRING_PATIENCE;
    let mut block_claims = 0;
    loop {
        let reserved = {
            let facts = Facts {
                kept: facts.kept,
                interface_exists: facts.interface_exists,
                mesh: claimed.mesh.as_deref().map(|m| m.facts(&claimed.addrs)),
            };
            store.reserve(holder, requests, settings.ipalloc_range, &facts)
        };
        let mesh = claimed.mesh.as_deref_mut();
        match (reserved, mesh) {
            (Err(StoreError::NetnsBeingWired { .. }), _) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            (Err(StoreError::BlocksExpired), Some(mesh)) => return Err(mesh.expired()),
            (Err(StoreError::BlocksFull(subnet)), Some(mesh)) if block_claims < BLOCK_CLAIMS => {
                block_claims += 1;
                mesh.claim_block(subnet)?;
            }
            (Err(StoreError::NeedsClaim(addrs)), Some(mesh)) => {
                for addr in addrs {
                    mesh.claim_addr(addr, holder.id)?;
                    claimed.addrs.push(addr);
                }
            }
            (other, _) => return Ok(other?),
        }
    }
}

/// The exact addresses weave-mesh proved unique for this attach: given back if it fails.
struct Claimed<'a> {
    mesh: Option<&'a mut Mesh>,
    addrs: Vec<Ipv4Addr>,
    id: &'a ContainerId,
}

impl Claimed<'_> {
    fn release(&self) {
        if let Some(mesh) = self.mesh.as_deref() {
            for addr in &self.addrs {
                mesh.release_addr(*addr, self.id);
            }
        }
    }
}

/// A container joining its namespace's interface with weave DNS: the server serves the
/// bridge's DNS address, and the namespace has a route to it (the wiring container may not
/// have asked for DNS). The route is added once per namespace and stays as long as ethwe
/// (the kernel deletes it with the interface): every port of the bridge may reach weave DNS
/// anyway (the host's firewall opens it to all), so a member leaving need not take it away
/// from the others.
fn join_dns(
    settings: &Settings,
    dns_addr: Option<Ipv4Net>,
    addrs: &[Ipv4Net],
    target: &Target,
) -> Result<()> {
    let Some(addr) = dns_addr else {
        return Ok(());
    };
    let mut host = Netlink::open().map_err(Error::netlink("open netlink socket"))?;
    let bridge_index = bridge::ensure(&mut host, settings)?;
    add_dns_address(&mut host, bridge_index, addr, &settings.bridge)?;
    let dns = addr.addr();
    if !dns::needs_route(addrs, dns) {
        return Ok(());
    }
    target
        .container_ns
        .run_in(target.host_ns, || {
            let mut nl =
                Netlink::open().map_err(Error::netlink("open netlink socket in the container"))?;
            let ethwe = ethwe_of(&mut nl)?;
            route_to_dns(&mut nl, ethwe, dns, true)
        })
        .map_err(Error::io("enter the container's network namespace"))?
}

/// Inside the container's namespace: the route to weave DNS's one address via ethwe (the
/// container's default route stays as it is). `exists_ok`: another container of the
/// namespace may have added it.
fn route_to_dns(nl: &mut Netlink, ethwe: u32, dns: Ipv4Addr, exists_ok: bool) -> Result<()> {
    match nl.add_link_route(ethwe, Ipv4Net::from(dns)) {
        Err(e) if exists_ok && e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        other => other.map_err(Error::netlink(format!(
            "add a route to weave DNS {dns} via ethwe"
        ))),
    }
}

/// The index of ethwe in the namespace `nl` speaks to.
fn ethwe_of(nl: &mut Netlink) -> Result<u32> {
    nl.link_by_name(CONTAINER_IFNAME)
        .map_err(Error::netlink("look up ethwe"))?
        .map(|l| l.index)
        .ok_or_else(|| Error::netlink("look up ethwe")(io::Error::from_raw_os_error(libc::ENODEV)))
}

/// Adds weave DNS's address to the bridge; concurrent attaches race to add it, and EEXIST
/// means someone did.
fn add_dns_address(
    host: &mut Netlink,
    bridge_index: u32,
    addr: Ipv4Net,
    bridge: &str,
) -> Result<()> {
    match host.add_address(bridge_index, addr) {
        Err(e) if e.raw_os_error() != Some(libc::EEXIST) => Err(Error::netlink(format!(
            "add weave DNS address {addr} to bridge {bridge}"
        ))(e)),
        _ => Ok(()),
    }
}

/// Which interfaces still exist, for the store: asked only about the holders of taken
/// addresses whose process is gone, so the common attach opens no socket for it.
#[derive(Default)]
pub(crate) struct Interfaces(RefCell<Option<Netlink>>);

impl Interfaces {
    /// Whether the record's host veth exists: its recorded index still carries its name. A
    /// record without an index never got its addresses onto an interface (they are added
    /// after the index is recorded). When the kernel cannot be asked, it is taken to exist.
    pub(crate) fn exist(&self, record: &Record) -> bool {
        let Some(index) = record.veth_index else {
            return false;
        };
        let mut socket = self.0.borrow_mut();
        if socket.is_none() {
            *socket = Netlink::open().ok();
        }
        socket.as_mut().is_none_or(|nl| {
            nl.link_with(index, &record.veth)
                .map_or(true, |l| l.is_some())
        })
    }
}

/// The container being wired.
struct Target<'a> {
    id: &'a ContainerId,
    container_ns: &'a Netns,
    host_ns: &'a Netns,
}

fn wire(
    settings: &Settings,
    store: &Store,
    reserved: &Reserved,
    dns_addr: Option<Ipv4Net>,
    target: &Target,
    exposed: &[Ipv4Addr],
    created: &mut Option<u32>,
) -> Result<()> {
    let record = &reserved.record;
    let mut host = Netlink::open().map_err(Error::netlink("open netlink socket"))?;
    let bridge_index = bridge::ensure(&mut host, settings)?;
    failpoint::hit("bridge");
    // Before the firewall's generation is recorded (writing the table moves it), and before
    // weave DNS's address makes the host reachable on the bridge.
    let openings = Openings {
        dns: settings.dns_addr().addr(),
        exposed,
    };
    if nftables::ensure(&settings.bridge, openings, Rewrite::WhenMissing)? {
        restore_guards(&mut host, store, settings)?;
    }
    bridge::ensure_forwarding(store, &settings.bridge, Recheck::WhenChanged)?;
    if let Some(addr) = dns_addr {
        add_dns_address(&mut host, bridge_index, addr, &settings.bridge)?;
    }
    remove_stale_veth(&mut host, reserved)?;
    let index = host.create_veth(&VethRequest {
        host_name: &record.veth,
        bridge_index,
        peer_name: CONTAINER_IFNAME,
        peer_netns: std::os::fd::AsFd::as_fd(target.container_ns.file()),
        peer_mac: record.mac,
        mtu: settings.mtu,
    });
    let index = match index {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            // The host name was free a moment ago, so it is ethwe.
            return Err(Error::AlreadyAttached);
        }
        other => other.map_err(Error::netlink(format!(
            "create veth {} with peer {CONTAINER_IFNAME} in the container",
            record.veth
        )))?,
    };
    *created = Some(index);
    // Before ethwe is up (so before the port has a carrier): the container's first frame
    // meets the guard already.
    if let Some(port) = guarded_port(record, index) {
        let generation = portguard::add(&port).map_err(Error::netlink(format!(
            "guard {} against spoofing (nftables table bridge weave-hook)",
            record.veth
        )))?;
        if let Some(generation) = generation {
            firewall::own_change(store.layout(), &settings.bridge, generation);
        }
    }
    port_without_ipv6(&record.veth)?;
    let announce = reserved.announce || !forwarded_to_port(&mut host, record, index);
    failpoint::hit("veth");
    store.set_veth_index(target.id, index)?;
    let gateway = match record.route {
        true => Some(way_out(settings, record, openings)?),
        false => None,
    };
    let dns_route = dns_addr
        .map(|a| a.addr())
        .filter(|a| dns::needs_route(&record.addrs, *a));
    // One entry into the container's namespace: the host's socket stays in the host's
    // namespace, so the wait for the port needs no way back.
    target
        .container_ns
        .run_in(target.host_ns, || {
            let (mut inside, ethwe) = configure_inside(record, dns_route, gateway)?;
            wait_until_forwarding(&mut host, index, &record.veth)?;
            match announce {
                true => announce_inside(&mut inside, ethwe, record),
                false => Ok(()),
            }
        })
        .map_err(Error::io("enter the container's network namespace"))??;
    Ok(())
}

/// A bridge port has no use for IPv6: with IPv6 off (before ethwe is up, so before the
/// port has a carrier) it never gets an address, link-local included, so no container
/// reaches the host on it, and it never gets the multicast route every IPv6 interface with
/// a carrier gets: with one per port, every later link change on the host walks a routing
/// table as long as the bridge has ports. A kernel without IPv6 has nothing to turn off.
fn port_without_ipv6(veth: &str) -> Result<()> {
    let path = format!("/proc/sys/net/ipv6/conf/{veth}/disable_ipv6");
    match fs::write(&path, b"1") {
        Err(e)
            if e.kind() == io::ErrorKind::NotFound && !Path::new("/proc/sys/net/ipv6").exists() =>
        {
            Ok(())
        }
        other => other.map_err(Error::io(format!("turn IPv6 off on {veth}: write {path}"))),
    }
}

/// Without an announcement the bridge would learn the new port from the container's first
/// frame; until then an earlier holder's port, which detach deletes in the background, may
/// still hold the MAC's forwarding entry. The hook points the entry at the new port itself
/// (one request, no broadcast). When the kernel refuses, the caller announces instead.
fn forwarded_to_port(host: &mut Netlink, record: &Record, index: u32) -> bool {
    let Some(mac) = record.mac else {
        return false;
    };
    match host.forward_mac_to(index, mac) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(veth = %record.veth, error = %e, "cannot set the port's forwarding entry; announcing instead");
            false
        }
    }
}

/// How long the hook waits for the bridge to forward the new port.
const FORWARDING_PATIENCE: Duration = Duration::from_millis(500);

/// The bridge forwards a port's frames only once the kernel's link watch has seen the
/// carrier that ethwe coming up gave the host veth: asynchronously, usually within
/// microseconds, later on a loaded host. The container's first packets would be lost
/// meanwhile (seen: a first ping lost in about 1 of 10 test runs under load), and so would
/// an announcement, so the hook waits until the bridge reports the port forwarding.
fn wait_until_forwarding(host: &mut Netlink, index: u32, veth: &str) -> Result<()> {
    match host
        .wait_forwarding(index, FORWARDING_PATIENCE)
        .map_err(Error::netlink(format!("look up {veth}")))?
    {
        Some(polls) => tracing::debug!(%veth, polls, "port forwarding"),
        None => {
            tracing::warn!(%veth, "the bridge port is not up after {FORWARDING_PATIENCE:?}; going on")
        }
    }
    Ok(())
}

/// Inside the container's namespace: neighbours told that ethwe holds its addresses, with
/// a gratuitous ARP for each, so that they drop a stale entry for a reused address. Not
/// needed when every earlier holder of the address had ethwe's MAC (derived from it): the
/// broadcast goes to every port of the bridge, and costs milliseconds on a full one.
///
/// Only once the bridge forwards the port: a broadcast sent while the port still waits for
/// the kernel's link watch is dropped at the bridge (the kernel's own announcement as ethwe
/// came up, `arp_notify`, was lost so in 20 of 48 runs of
/// `reused_address_is_announced_to_neighbours` run six at a time). With `arp_notify` on,
/// setting ethwe's MAC to the one it has makes the kernel send them, and ethwe's sent
/// packets show it did. A kernel that skips the notification for an unchanged MAC sends
/// nothing: then the hook sends them from a packet socket, which costs an RCU grace period
/// when it closes (about 8 ms here, against microseconds).
/// `nl` is a socket of the container's namespace, `ethwe` the index there.
fn announce_inside(nl: &mut Netlink, ethwe: u32, record: &Record) -> Result<()> {
    let Some(mac) = record.mac else {
        // Records of this version always have one (derived from the first address).
        tracing::warn!(veth = %record.veth, "ethwe's MAC is not recorded; neighbours not told");
        return Ok(());
    };
    let sysctl = format!("/proc/sys/net/ipv4/conf/{CONTAINER_IFNAME}/arp_notify");
    fs::write(&sysctl, b"1").map_err(Error::io(format!("write {sysctl}")))?;
    let sent = |nl: &mut Netlink| {
        nl.tx_packets(ethwe)
            .map_err(Error::netlink("read ethwe's statistics"))
    };
    let before = sent(nl)?;
    nl.set_mac(ethwe, mac).map_err(Error::netlink(
        "announce ethwe's addresses (set its MAC again)",
    ))?;
    let after = sent(nl)?;
    let count = record.addrs.len() as u64;
    if before.zip(after).is_some_and(|(b, a)| a >= b + count) {
        return Ok(());
    }
    tracing::debug!(
        ?before,
        ?after,
        "the kernel sent no gratuitous ARP; sending them"
    );
    let addrs: Vec<Ipv4Addr> = record.addrs.iter().map(|a| a.addr()).collect();
    garp::announce(ethwe, mac, &addrs)
        .map_err(Error::io("announce ethwe's addresses (gratuitous ARP)"))
}

/// Inside the container's namespace: addresses on ethwe, ethwe and lo up, and a route to
/// weave DNS when no subnet of the container holds its address. Returns the socket it used
/// (of the container's namespace) and ethwe's index, for the announcement.
fn configure_inside(
    record: &Record,
    dns_route: Option<Ipv4Addr>,
    gateway: Option<(Ipv4Addr, bool)>,
) -> Result<(Netlink, u32)> {
    let mut nl = Netlink::open().map_err(Error::netlink("open netlink socket in the container"))?;
    let ethwe = ethwe_of(&mut nl)?;
    for addr in &record.addrs {
        nl.add_address(ethwe, *addr)
            .map_err(Error::netlink(format!("add {addr} to ethwe")))?;
    }
    failpoint::hit("addresses");
    nl.set_up(ethwe).map_err(Error::netlink("bring ethwe up"))?;
    if let Some(dns) = dns_route {
        route_to_dns(&mut nl, ethwe, dns, false)?;
    }
    if let Some((gw, on_link)) = gateway {
        if nl
            .has_default_route()
            .map_err(Error::netlink("list the container's routes"))?
        {
            return Err(Error::HasDefaultRoute);
        }
        if !on_link {
            nl.add_link_route(ethwe, Ipv4Net::from(gw))
                .map_err(Error::netlink(format!(
                    "add a route to the host's {gw} via ethwe"
                )))?;
        }
        nl.add_default_route(ethwe, gw)
            .map_err(Error::netlink(format!("add a default route via {gw}")))?;
    }
    let lo = nl
        .link_by_name("lo")
        .map_err(Error::netlink("look up lo"))?
        .ok_or_else(|| Error::netlink("look up lo")(io::Error::from_raw_os_error(libc::ENODEV)))?;
    if !lo.up {
        nl.set_up(lo.index).map_err(Error::netlink("bring lo up"))?;
    }
    Ok((nl, ethwe))
}

/// A host veth of this name that an earlier run of the same container id left (its hook was
/// killed, its poststop never ran, or its detach's background deletion has not run yet) is
/// deleted, by index. Any other link of this name is
/// not ours to delete: the attach is refused.
fn remove_stale_veth(host: &mut Netlink, reserved: &Reserved) -> Result<()> {
    let veth = &reserved.record.veth;
    let Some(link) = host
        .link_by_name(veth)
        .map_err(Error::netlink(format!("look up {veth}")))?
    else {
        return Ok(());
    };
    let ours = reserved
        .previous
        .as_ref()
        .is_some_and(|p| p.veth == *veth && p.veth_index.is_none_or(|i| i == link.index));
    if !ours {
        return Err(Error::VethNameTaken { veth: veth.clone() });
    }
    host.delete_link_index(link.index)
        .map_err(Error::netlink(format!("delete stale {veth}")))?;
    tracing::info!(%veth, "deleted a stale veth of an earlier run");
    Ok(())
}

/// The port of the container's new veth `index`.
fn guarded_port(record: &Record, index: u32) -> Option<Port> {
    Port::of(&Record {
        veth_index: Some(index),
        ..record.clone()
    })
}

/// After weave's tables were written anew (the bridge's first attach, or after a flush):
/// the guards of this bridge's attached containers are back too.
fn restore_guards(host: &mut Netlink, store: &Store, settings: &Settings) -> Result<()> {
    let records: Vec<Record> = store
        .records()?
        .records
        .into_iter()
        .filter(|r| r.bridge == settings.bridge)
        .collect();
    let restored = portguard::restore(host, &records)
        .map_err(Error::netlink("guard the attached containers' ports again"))?;
    if restored > 0 {
        tracing::info!(
            restored,
            "weave's nftables tables were gone; guards restored"
        );
    }
    Ok(())
}

/// Best-effort undo of a failed attach: the veth it created (its peer goes with it), its
/// guard and the reservation (a container that joined its namespace's interface leaves it).
fn undo(store: &Store, state: &State, created: Option<u32>, record: &Record) {
    if let Some(index) = created {
        if let Err(e) = Netlink::open().and_then(|mut nl| nl.delete_link_index(index)) {
            tracing::warn!(index, error = %e, "undo: cannot delete the veth; `weave-hook gc` will");
        }
        if let Some(port) = guarded_port(record, index) {
            if let Err(e) = portguard::remove(&port) {
                tracing::warn!(index, error = %e, "undo: cannot remove the port's guard; `weave-hook gc` will");
            }
        }
    }
    match store.leave(&state.id) {
        // The last container of its namespace: the way out goes with the interface.
        Ok(Some(released)) if released.route => {
            if let Err(e) = route::withdraw(&released.addrs) {
                tracing::warn!(error = %e, "undo: cannot take the way out away; `weave-hook gc` will");
            }
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(id = %state.id, error = %e, "undo: cannot release the reservation; `weave-hook gc` will");
        }
    }
}

/// The way out of a `weave.route=default` container: its gateway, and its addresses let out
/// masqueraded (the table is written anew when it lacks the set, as before this version).
fn way_out(settings: &Settings, record: &Record, openings: Openings) -> Result<(Ipv4Addr, bool)> {
    let gateway = route::gateway(openings.exposed, &record.addrs)
        .ok_or_else(|| Error::NotExposed(settings.bridge.clone()))?;
    let allowed = route::allow(&record.addrs).or_else(|e| match e.raw_os_error() {
        Some(libc::ENOENT) => {
            nftables::ensure(&settings.bridge, openings, Rewrite::Always)?;
            route::allow(&record.addrs).map_err(Error::netlink("let the container's addresses out"))
        }
        _ => Err(Error::netlink("let the container's addresses out")(e)),
    });
    allowed.map(|()| gateway)
}
