//! The mesh's data path on one host: a kernel VXLAN device on the weave bridge, its
//! forwarding entries for the other hosts, and the two nftables tables that keep the
//! underlay and the host-local addresses safe. weave-mesh (the agent) calls [`ensure`] at
//! start and [`set_peers`] every few seconds; `weave-hook reset` calls [`remove_device`].
//! No packet passes through weave's code: once set up, the kernel forwards on its own, also
//! while the agent is down.
//!
//! **The device.** `vx-<bridge>` ([`vxlan_name`]), with an explicit VNI, local address,
//! UDP port, TTL 64, TOS inherited from the inner packet (a container's DSCP survives on the
//! underlay) and ageing 300 s, enslaved to the bridge and up, with no IPv6 address of its own
//! (the host's stack would otherwise send router solicitations through it to every peer). It
//! is marked with the bridge's owner alias; a device of that name that is not a VXLAN, or
//! is marked for another state directory, or is enslaved elsewhere, is refused.
//!
//! **Learning on.** The flood list (all-zero MAC, one remote per peer, [`set_peers`]) carries
//! broadcast and unknown unicast; with learning, the device also learns which peer each
//! remote MAC sits behind from the frames it receives, so unicast goes to one peer instead of
//! being copied to every peer (with `nolearning` and no unicast entries, every frame between
//! hosts would be sent N-1 times). What learning costs, and why it is safe here:
//! - a dead peer's learned entries: [`set_peers`] deletes every entry of the device whose
//!   remote is not a peer, learned or not, so they go with the peer (within the agent's
//!   lease TTL + its period), not after the 300 s ageing;
//! - moved addresses: a container's MAC is derived from its address (`weave_core::mac`), so
//!   an address that moves to another host keeps its MAC; the new container's gratuitous ARP
//!   (attach announces every address) is flooded to every peer, and each one's device
//!   re-learns the MAC behind the new host at once;
//! - forged sources: only peers' frames reach the device (the underlay filter below), and a
//!   container cannot send with another MAC (the port guard of `portguard`).
//!
//! **Underlay safety** (table `inet weave-mesh`): VXLAN is unauthenticated UDP, and the
//! kernel's VXLAN socket listens on every address of the host. UDP to a port of the set
//! `ports` is dropped unless its (port, source) pair is in the set `peers`, which
//! [`set_peers`] keeps equal to the peers: a dump, a diff and one netlink transaction when
//! something changed, none when nothing did. IPv6 to those ports is dropped (the device is
//! IPv4). Nothing the host forwards may go to a peer's VXLAN port either: a container with
//! a way out (`weave.route=default`) would otherwise send VXLAN to a peer masqueraded as
//! this host, and put any frame it likes on that peer's bridge, past its port guard. After
//! `nft flush ruleset` the next [`set_peers`] (or [`ensure`]) writes the tables again with
//! `nft -f -`.
//!
//! **Host-local addresses** (table `bridge weave-mesh`): every host has weave DNS at the same
//! address on its bridge and may expose addresses of its own there. ARP and IPv4 from or to
//! those addresses never cross the VXLAN port in either direction (the set `host_local`:
//! device name and address), so a container always finds its own host's DNS, and one host's
//! bridge address never answers another host's containers. The set follows the settings'
//! DNS address and `Store::exposed`, at every [`ensure`] and [`set_peers`].
//!
//! **MTU.** The overlay's MTU is the MTU of the underlay interface that holds `local`, minus
//! [`VXLAN_OVERHEAD`], unless overridden. It is set on the device and on the bridge (set by
//! hand, the bridge no longer follows its ports' MTUs); the veths get it from the hook.

use std::collections::BTreeSet;
use std::io;
use std::net::Ipv4Addr;

use weave_core::mesh::VXLAN_OVERHEAD;
use weave_core::settings::{vxlan_name, Settings};
use weave_core::store::Store;

use crate::bridge;
use crate::error::{Error, Result};
use crate::netlink::{FdbEntry, Link, Netlink, Vxlan, VxlanRequest};
use crate::nftables::{self, ifname_key};
use crate::nftgen::{self, ElementOp, SetChange, FAMILY_BRIDGE, FAMILY_INET};

/// The tables' name (families `inet` and `bridge`).
pub const TABLE: &str = "weave-mesh";
/// The flood list's MAC: broadcast, multicast and unknown unicast go to each of its remotes.
pub const FLOOD_MAC: [u8; 6] = [0; 6];
/// See the module docs: learning on, and every entry of a gone peer purged.
const LEARNING: bool = true;
const TTL: u8 = 64;
/// The outer TOS is the inner packet's.
const TOS_INHERIT: u8 = 1;
const AGEING_SECS: u32 = 300;
/// The smallest IPv4 MTU.
const MIN_MTU: u32 = 68;

/// The overlay of one bridge, as weave-mesh runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    /// The weave bridge (the device is `vxlan_name(bridge)`).
    pub bridge: String,
    /// The VXLAN network identifier, 1 to 2^24-1; the same on every host.
    pub vni: u32,
    /// The UDP port, the same on every host (4789 is IANA's).
    pub port: u16,
    /// This host's underlay address (weave-mesh --advertise).
    pub local: Ipv4Addr,
    /// The overlay MTU, when not the underlay's minus [`VXLAN_OVERHEAD`].
    pub mtu: Option<u32>,
}

/// Sets the overlay up, or repairs it: the bridge, the tables (before the device, so that
/// it never runs unfiltered), the VXLAN device on the bridge (recreated when its VNI,
/// address or port changed), both MTUs. Idempotent; returns the
/// overlay MTU in use. The flood list is [`set_peers`]'s. A device created here and not
/// fully set up is deleted again.
pub fn ensure(settings: &Settings, overlay: &Overlay) -> Result<u32> {
    check(overlay)?;
    let settings = for_bridge(settings, overlay);
    let mut nl = Netlink::open().map_err(Error::netlink("open netlink socket"))?;
    let bridge_index = bridge::ensure(&mut nl, &settings)?;
    let mtu = overlay_mtu(&mut nl, overlay)?;
    // The filter first: a device that is up before it would take anyone's frames.
    let peers = current_peers(overlay)?;
    sync_tables(&settings, overlay, &peers)?;
    // The bridge's MTU before the device joins it: set by hand on a bridge whose MTU the
    // kernel derived from its ports (it would lower it to the device's), it stays put.
    bridge_mtu(&mut nl, overlay, bridge_index, mtu)?;
    ensure_device(&mut nl, &settings, overlay, bridge_index, mtu)?;
    Ok(mtu)
}

/// The bridge's MTU set by hand (the kernel then stops deriving it from the ports').
fn bridge_mtu(nl: &mut Netlink, overlay: &Overlay, bridge_index: u32, mtu: u32) -> Result<()> {
    let bridge = nl
        .link_by_index(bridge_index)
        .map_err(Error::netlink(format!("look up bridge {}", overlay.bridge)))?
        .ok_or_else(|| gone(&overlay.bridge))?;
    if bridge.mtu != mtu {
        nl.set_mtu(bridge_index, mtu)
            .map_err(Error::netlink(format!(
                "set the MTU of bridge {} to {mtu}",
                overlay.bridge
            )))?;
    }
    Ok(())
}

/// Makes the flood list and the underlay filter's set exactly `peers` (this host's own
/// address and duplicates are left out), deletes every entry of the device, learned or not,
/// whose remote is not a peer, and brings the host-local set in step. Cheap when nothing
/// changed: two netlink dumps and two nf_tables dumps, no process, no change.
pub fn set_peers(settings: &Settings, overlay: &Overlay, peers: &[Ipv4Addr]) -> Result<()> {
    check(overlay)?;
    let settings = for_bridge(settings, overlay);
    let peers: BTreeSet<Ipv4Addr> = peers
        .iter()
        .copied()
        .filter(|p| *p != overlay.local && usable(*p))
        .collect();
    let mut nl = Netlink::open().map_err(Error::netlink("open netlink socket"))?;
    let vx = our_device(&mut nl, overlay)?;
    sync_fdb(&mut nl, &vx, &peers)?;
    sync_tables(&settings, overlay, &peers)
}

/// Takes the overlay down: the VXLAN device, this overlay's elements of both tables, and
/// the tables once no overlay has elements left. The bridge stays (the hook's). Idempotent.
pub fn remove(settings: &Settings, overlay: &Overlay) -> Result<()> {
    let settings = for_bridge(settings, overlay);
    teardown(&settings, Some(overlay.port))
}

/// [`remove`] for `weave-hook reset`, which knows only the settings: the port is read from
/// the device (when the device is gone, only its host-local elements are removed).
pub fn remove_device(settings: &Settings) -> Result<()> {
    teardown(settings, None)
}

fn teardown(settings: &Settings, port: Option<u16>) -> Result<()> {
    let name = vxlan_name(&settings.bridge);
    let mut nl = Netlink::open().map_err(Error::netlink("open netlink socket"))?;
    let mut port = port;
    if let Some(link) = nl
        .link_by_name(&name)
        .map_err(Error::netlink(format!("look up {name}")))?
    {
        let bridge_index = nl
            .link_by_name(&settings.bridge)
            .map_err(Error::netlink(format!(
                "look up bridge {}",
                settings.bridge
            )))?
            .map(|l| l.index);
        check_ours(&link, settings, bridge_index)?;
        let vxlan = nl
            .vxlan_of(link.index)
            .map_err(Error::netlink(format!("read the settings of {name}")))?;
        port = port.or(vxlan.map(|v| v.port));
        nl.delete_link_index(link.index)
            .map_err(Error::netlink(format!("delete {name}")))?;
        tracing::info!(device = %name, "deleted the overlay's VXLAN device");
    }
    remove_elements(&settings.bridge, &name, port)
}

/// This overlay's elements out of both tables, and the tables gone once empty.
fn remove_elements(bridge: &str, device: &str, port: Option<u16>) -> Result<()> {
    let Some(local_have) = dump(FAMILY_BRIDGE, "host_local")? else {
        return Ok(()); // no tables
    };
    let ours = |have: &[Vec<u8>], is_ours: &dyn Fn(&[u8]) -> bool| -> Vec<Vec<u8>> {
        have.iter().filter(|k| is_ours(k)).cloned().collect()
    };
    let prefix = ifname_key(device);
    let local = ours(&local_have, &|k| k.starts_with(&prefix));
    let bridge_key = ifname_key(bridge);
    let bridges = ours(&dump(FAMILY_INET, "bridges")?.unwrap_or_default(), &|k| {
        k == bridge_key
    });
    let ports_have = dump(FAMILY_INET, "ports")?.unwrap_or_default();
    let peers_have = dump(FAMILY_INET, "peers")?.unwrap_or_default();
    let (ports, peers) = match port {
        Some(port) => (
            ours(&ports_have, &|k| k == port_key(port)),
            ours(&peers_have, &|k| k.starts_with(&port_field(port))),
        ),
        None => (Vec::new(), Vec::new()),
    };
    let empty = local_have.len() == local.len() && ports_have.len() == ports.len();
    let changes = [
        change(FAMILY_BRIDGE, "host_local", ElementOp::Delete, local),
        change(FAMILY_INET, "bridges", ElementOp::Delete, bridges),
        change(FAMILY_INET, "ports", ElementOp::Delete, ports),
        change(FAMILY_INET, "peers", ElementOp::Delete, peers),
    ];
    nftgen::apply(&changes).map_err(mesh_nft("remove the overlay's elements"))?;
    if empty {
        let script = format!(
            "add table inet {TABLE}\ndelete table inet {TABLE}\n\
             add table bridge {TABLE}\ndelete table bridge {TABLE}\n"
        );
        nftables::run_nft(bridge, &script)?;
    }
    Ok(())
}

/// The checks a caller's mistake would otherwise turn into a kernel error.
fn check(overlay: &Overlay) -> Result<()> {
    let bad = |what: String| Err(Error::BadOverlay(what));
    if !(1..(1 << 24)).contains(&overlay.vni) {
        return bad(format!("VNI {} is not from 1 to 16777215", overlay.vni));
    }
    if overlay.port == 0 {
        return bad("UDP port 0".into());
    }
    if !usable(overlay.local) {
        return bad(format!(
            "{} cannot be a host's underlay address",
            overlay.local
        ));
    }
    if let Some(mtu) = overlay.mtu.filter(|m| !(MIN_MTU..=65535).contains(m)) {
        return bad(format!("MTU {mtu} is not from {MIN_MTU} to 65535"));
    }
    Ok(())
}

/// A unicast address a VTEP can have.
fn usable(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() || ip.is_loopback())
}

fn for_bridge(settings: &Settings, overlay: &Overlay) -> Settings {
    Settings {
        bridge: overlay.bridge.clone(),
        ..settings.clone()
    }
}

fn gone(name: &str) -> Error {
    Error::netlink(format!("look up {name}"))(io::Error::from_raw_os_error(libc::ENODEV))
}

fn mesh_nft(op: &str) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::MeshNft {
        op: op.to_string(),
        source,
    }
}

/// The override, else the MTU of the interface holding `local` minus the encapsulation.
fn overlay_mtu(nl: &mut Netlink, overlay: &Overlay) -> Result<u32> {
    if let Some(mtu) = overlay.mtu {
        return Ok(mtu);
    }
    let underlay = nl
        .link_holding(overlay.local)
        .map_err(Error::netlink("list the host's addresses"))?
        .ok_or(Error::NoUnderlay(overlay.local))?;
    match underlay.mtu.checked_sub(VXLAN_OVERHEAD) {
        Some(mtu) if mtu >= MIN_MTU => Ok(mtu),
        _ => Err(Error::UnderlayMtu {
            underlay: underlay.name,
            mtu: underlay.mtu,
        }),
    }
}

/// The device in place with the right settings.
fn ensure_device(
    nl: &mut Netlink,
    settings: &Settings,
    overlay: &Overlay,
    bridge_index: u32,
    mtu: u32,
) -> Result<()> {
    let name = vxlan_name(&overlay.bridge);
    let want = wanted(overlay);
    let existing = nl
        .link_by_name(&name)
        .map_err(Error::netlink(format!("look up {name}")))?;
    let link = match existing {
        None => return create_device(nl, settings, overlay, bridge_index, mtu),
        Some(link) => link,
    };
    check_ours(&link, settings, Some(bridge_index))?;
    let have = nl
        .vxlan_of(link.index)
        .map_err(Error::netlink(format!("read the settings of {name}")))?;
    if have != Some(want) {
        tracing::info!(device = %name, ?have, ?want, "recreating the VXLAN device with new settings");
        nl.delete_link_index(link.index)
            .map_err(Error::netlink(format!("delete {name}")))?;
        return create_device(nl, settings, overlay, bridge_index, mtu);
    }
    if link.alias.is_none() {
        nl.set_alias(link.index, &bridge::owner_alias(settings))
            .map_err(Error::netlink(format!("mark {name} as ours")))?;
    }
    if link.mtu != mtu {
        nl.set_mtu(link.index, mtu)
            .map_err(Error::netlink(format!("set the MTU of {name} to {mtu}")))?;
    }
    if link.master != Some(bridge_index) {
        nl.set_master(link.index, bridge_index)
            .map_err(Error::netlink(format!(
                "attach {name} to bridge {}",
                overlay.bridge
            )))?;
    }
    if !link.up {
        nl.set_up(link.index)
            .map_err(Error::netlink(format!("bring {name} up")))?;
    }
    Ok(())
}

fn wanted(overlay: &Overlay) -> Vxlan {
    Vxlan {
        vni: overlay.vni,
        local: overlay.local,
        port: overlay.port,
        learning: LEARNING,
    }
}

/// A link of the device's name is ours when it is a VXLAN device marked with this state
/// directory's alias, or unmarked and on no other bridge (made by an earlier version, or
/// by a run killed before it marked it).
fn check_ours(link: &Link, settings: &Settings, bridge_index: Option<u32>) -> Result<()> {
    let taken = |what: String| {
        Err(Error::VxlanTaken {
            device: link.name.clone(),
            bridge: settings.bridge.clone(),
            what,
        })
    };
    if link.kind.as_deref() != Some("vxlan") {
        let kind = link.kind.clone().unwrap_or_else(|| "non-VXLAN".into());
        return taken(format!("it is a {kind} link"));
    }
    let ours = bridge::owner_alias(settings);
    match link.alias.as_deref() {
        Some(alias) if alias == ours => Ok(()),
        Some(alias) => taken(format!("it is marked {alias:?}")),
        None if link.master.is_some() && link.master != bridge_index => {
            taken("it is a port of another bridge".into())
        }
        None => Ok(()),
    }
}

/// Creates the device (down, no IPv6 address), marks it, enslaves it, brings it up; any
/// failure deletes it again.
fn create_device(
    nl: &mut Netlink,
    settings: &Settings,
    overlay: &Overlay,
    bridge_index: u32,
    mtu: u32,
) -> Result<()> {
    let name = vxlan_name(&overlay.bridge);
    let req = VxlanRequest {
        name: &name,
        vxlan: wanted(overlay),
        mtu,
        ttl: TTL,
        tos: TOS_INHERIT,
        ageing: AGEING_SECS,
    };
    nl.create_vxlan(&req)
        .map_err(|e| create_error(&name, overlay, e))?;
    let link = nl
        .link_by_name(&name)
        .map_err(Error::netlink(format!("look up {name}")))?
        .ok_or_else(|| gone(&name))?;
    let configured = configure_new(nl, settings, &link, bridge_index);
    if configured.is_err() {
        let _ = nl.delete_link_index(link.index);
    }
    configured.map(|()| {
        tracing::info!(device = %name, vni = overlay.vni, port = overlay.port, local = %overlay.local, mtu, "created the overlay's VXLAN device");
    })
}

fn create_error(name: &str, overlay: &Overlay, e: io::Error) -> Error {
    match e.raw_os_error() {
        // Another VXLAN device of this namespace has the VNI and port already.
        Some(libc::EEXIST) => Error::VxlanTaken {
            device: name.to_string(),
            bridge: overlay.bridge.clone(),
            what: format!(
                "another VXLAN device uses VNI {} on port {} already",
                overlay.vni, overlay.port
            ),
        },
        _ => Error::netlink(format!("create VXLAN device {name}"))(e),
    }
}

fn configure_new(
    nl: &mut Netlink,
    settings: &Settings,
    link: &Link,
    bridge_index: u32,
) -> Result<()> {
    let name = &link.name;
    match nl.no_ipv6_addresses(link.index) {
        // Below IPv6's minimum MTU (1280) the device has no IPv6 at all: just as well.
        Err(e) if e.raw_os_error() != Some(libc::EAFNOSUPPORT) => {
            return Err(Error::netlink(format!("turn IPv6 addresses off on {name}"))(e))
        }
        _ => {}
    }
    nl.set_alias(link.index, &bridge::owner_alias(settings))
        .map_err(Error::netlink(format!("mark {name} as ours")))?;
    nl.set_master(link.index, bridge_index)
        .map_err(Error::netlink(format!(
            "attach {name} to bridge {}",
            settings.bridge
        )))?;
    nl.set_up(link.index)
        .map_err(Error::netlink(format!("bring {name} up")))
}

/// The device, checked to be ours with the overlay's settings; [`ensure`] makes it.
fn our_device(nl: &mut Netlink, overlay: &Overlay) -> Result<Link> {
    let name = vxlan_name(&overlay.bridge);
    let link = nl
        .link_by_name(&name)
        .map_err(Error::netlink(format!("look up {name}")))?
        .ok_or_else(|| Error::OverlayMissing(name.clone()))?;
    let have = nl
        .vxlan_of(link.index)
        .map_err(Error::netlink(format!("read the settings of {name}")))?;
    match have == Some(wanted(overlay)) {
        true => Ok(link),
        false => Err(Error::OverlayMissing(name)),
    }
}

/// The forwarding entries, flood and learned, of the bridge's VXLAN device (none while there
/// is no such device), in the calling thread's network namespace: what [`set_peers`] keeps.
pub fn fdb(bridge: &str) -> Result<Vec<FdbEntry>> {
    let name = vxlan_name(bridge);
    let mut nl = Netlink::open().map_err(Error::netlink("open netlink socket"))?;
    match nl
        .link_by_name(&name)
        .map_err(Error::netlink(format!("look up {name}")))?
    {
        Some(vx) => entries(&mut nl, &vx),
        None => Ok(Vec::new()),
    }
}

fn entries(nl: &mut Netlink, vx: &Link) -> Result<Vec<FdbEntry>> {
    nl.fdb(vx.index).map_err(Error::netlink(format!(
        "list the forwarding entries of {}",
        vx.name
    )))
}

/// Flood entries exactly for `peers`; every entry (flood or learned) of another remote out.
fn sync_fdb(nl: &mut Netlink, vx: &Link, peers: &BTreeSet<Ipv4Addr>) -> Result<()> {
    let name = &vx.name;
    let entries = entries(nl, vx)?;
    for e in entries.iter().filter(|e| !peers.contains(&e.dst)) {
        nl.fdb_delete(vx.index, e.mac, e.dst)
            .map_err(Error::netlink(format!(
                "delete the entry of {name} for {} via gone peer {}",
                mac_text(e.mac),
                e.dst
            )))?;
        tracing::info!(device = %name, mac = %mac_text(e.mac), dst = %e.dst, "deleted a forwarding entry of a gone peer");
    }
    for peer in peers {
        if entries.iter().any(|e| e.mac == FLOOD_MAC && e.dst == *peer) {
            continue;
        }
        match nl.fdb_append(vx.index, FLOOD_MAC, *peer) {
            Err(e) if e.raw_os_error() != Some(libc::EEXIST) => {
                return Err(Error::netlink(format!(
                    "add peer {peer} to the flood list of {name}"
                ))(e))
            }
            _ => tracing::info!(device = %name, %peer, "added a peer to the flood list"),
        }
    }
    Ok(())
}

fn mac_text(mac: [u8; 6]) -> String {
    weave_core::mac::Mac(mac).to_string()
}

/// The peers the underlay filter lets in now (ensure keeps them: they are set_peers's).
fn current_peers(overlay: &Overlay) -> Result<BTreeSet<Ipv4Addr>> {
    let key = port_field(overlay.port);
    Ok(dump(FAMILY_INET, "peers")?
        .unwrap_or_default()
        .iter()
        .filter(|k| k.len() == 8 && k.starts_with(&key))
        .map(|k| Ipv4Addr::new(k[4], k[5], k[6], k[7]))
        .collect())
}

/// Writes the tables when a flush took them (one `nft -f -`), then brings the sets of this
/// overlay in step in one netlink transaction (none when they are).
fn sync_tables(settings: &Settings, overlay: &Overlay, peers: &BTreeSet<Ipv4Addr>) -> Result<()> {
    let device = vxlan_name(&overlay.bridge);
    nftables::quotable(&overlay.bridge)?;
    nftables::quotable(&device)?;
    let local = host_local(settings)?;
    if !tables_in_place(overlay, &device, settings)? {
        nftables::run_nft(
            &overlay.bridge,
            &script(&overlay.bridge, overlay.port, &device, peers, &local),
        )?;
        tracing::info!(bridge = %overlay.bridge, "wrote nftables tables inet and bridge {TABLE}");
    }
    let want_peers: Keys = peers.iter().map(|p| peer_key(overlay.port, *p)).collect();
    let have_peers = present(FAMILY_INET, "peers", &port_field(overlay.port))?;
    let (want_local, have_local) = host_local_sets(&device, &local)?;
    let [add_peers, delete_peers] = in_step(FAMILY_INET, "peers", &want_peers, &have_peers);
    let [add_local, delete_local] = in_step(FAMILY_BRIDGE, "host_local", &want_local, &have_local);
    let changes = [add_peers, delete_peers, add_local, delete_local];
    if changes.iter().any(|c| !c.keys.is_empty()) {
        nftgen::apply(&changes).map_err(mesh_nft("update the mesh's nftables sets"))?;
        tracing::info!(bridge = %overlay.bridge, peers = peers.len(), host_local = local.len(), "updated the mesh's nftables sets");
    }
    Ok(())
}

/// Brings the host-local set of the bridge's overlay in step with the settings and the
/// store's exposed addresses, at once (`weave-hook expose` calls it before it puts an
/// address on the bridge, `hide` after it took one off). Nothing when the bridge has no
/// overlay.
pub fn sync_host_local(settings: &Settings) -> Result<()> {
    let device = vxlan_name(&settings.bridge);
    let local = host_local(settings)?;
    let (want, have) = host_local_sets(&device, &local)?;
    if have.is_empty() {
        return Ok(()); // no overlay on this bridge (ensure always adds weave DNS's address)
    }
    let changes = in_step(FAMILY_BRIDGE, "host_local", &want, &have);
    nftgen::apply(&changes)
        .map(drop)
        .map_err(mesh_nft("update the mesh's host-local addresses"))
}

/// The host-local keys of `device` wanted and in place.
fn host_local_sets(device: &str, local: &BTreeSet<Ipv4Addr>) -> Result<(Keys, Keys)> {
    let want = local.iter().map(|a| local_key(device, *a)).collect();
    let have = present(FAMILY_BRIDGE, "host_local", &ifname_key(device))?;
    Ok((want, have))
}

/// The keys of a set that start with `prefix` (this overlay's); none when the set does not
/// exist.
fn present(family: u8, set: &str, prefix: &[u8]) -> Result<Keys> {
    Ok(dump(family, set)?
        .unwrap_or_default()
        .into_iter()
        .filter(|k| k.starts_with(prefix))
        .collect())
}

/// What brings a set from the keys it has to the keys wanted: the keys to add, those to
/// delete.
fn in_step<'a>(family: u8, set: &'a str, want: &Keys, have: &Keys) -> [SetChange<'a>; 2] {
    [
        change(family, set, ElementOp::Add, diff(want, have)),
        change(family, set, ElementOp::Delete, diff(have, want)),
    ]
}

fn diff(a: &Keys, b: &Keys) -> Vec<Vec<u8>> {
    a.difference(b).cloned().collect()
}

fn change(family: u8, set: &str, op: ElementOp, keys: Vec<Vec<u8>>) -> SetChange<'_> {
    SetChange {
        family,
        table: TABLE,
        set,
        op,
        keys,
    }
}

/// Set element keys, as nf_tables stores them.
type Keys = BTreeSet<Vec<u8>>;

/// The addresses of this host's bridge: weave DNS's and the exposed ones.
fn host_local(settings: &Settings) -> Result<BTreeSet<Ipv4Addr>> {
    let store = Store::existing(&settings.state_dir);
    Ok(std::iter::once(settings.dns_addr().addr())
        .chain(store.exposed(&settings.bridge).iter().map(|n| n.addr()))
        .collect())
}

/// Both tables hold this overlay's anchor elements (its port, its DNS address): a flush
/// takes them with the rules.
fn tables_in_place(overlay: &Overlay, device: &str, settings: &Settings) -> Result<bool> {
    let query = mesh_nft("ask nf_tables whether the mesh's tables are in place");
    let port =
        nftgen::has_element(FAMILY_INET, TABLE, "ports", &port_key(overlay.port)).map_err(query)?;
    if !port {
        return Ok(false);
    }
    let query = mesh_nft("ask nf_tables whether the mesh's tables are in place");
    let bridge = nftgen::has_element(FAMILY_INET, TABLE, "bridges", &ifname_key(&overlay.bridge))
        .map_err(query)?;
    let query = mesh_nft("ask nf_tables whether the mesh's tables are in place");
    let dns = settings.dns_addr().addr();
    Ok(bridge
        && nftgen::has_element(FAMILY_BRIDGE, TABLE, "host_local", &local_key(device, dns))
            .map_err(query)?)
}

/// A set's keys; `None` when the table or set does not exist.
fn dump(family: u8, set: &str) -> Result<Option<Vec<Vec<u8>>>> {
    match nftgen::elements(family, TABLE, set) {
        Ok(keys) => Ok(Some(keys)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(mesh_nft(&format!("list the mesh's nftables set {set}"))(e)),
    }
}

/// A `ports` key: the port in network order (2 bytes: a key of one field is not padded).
fn port_key(port: u16) -> Vec<u8> {
    port.to_be_bytes().to_vec()
}

/// The port as the first field of a concatenation: padded to 4 bytes (a register).
fn port_field(port: u16) -> Vec<u8> {
    let [hi, lo] = port.to_be_bytes();
    vec![hi, lo, 0, 0]
}

/// A `peers` key: inet_service . ipv4_addr.
fn peer_key(port: u16, peer: Ipv4Addr) -> Vec<u8> {
    let mut key = port_field(port);
    key.extend(peer.octets());
    key
}

/// A `host_local` key: ifname . ipv4_addr.
fn local_key(device: &str, addr: Ipv4Addr) -> Vec<u8> {
    let mut key = ifname_key(device);
    key.extend(addr.octets());
    key
}

/// Both tables, whole: structure, rules (chains flushed first, so a rerun never duplicates
/// one) and this overlay's elements. One transaction.
fn script(
    bridge: &str,
    port: u16,
    device: &str,
    peers: &BTreeSet<Ipv4Addr>,
    local: &BTreeSet<Ipv4Addr>,
) -> String {
    let t = format!("inet {TABLE}");
    let mut s = format!(
        "add table {t}\n\
         add set {t} ports {{ type inet_service; comment \"UDP ports of weave-mesh overlays\"; }}\n\
         add set {t} peers {{ type inet_service . ipv4_addr; comment \"who may send to each port: the mesh's hosts\"; }}\n\
         add set {t} bridges {{ type ifname; comment \"weave bridges with an overlay: nothing from them is forwarded to an overlay port\"; }}\n\
         add chain {t} input {{ type filter hook input priority -10; policy accept; }}\n\
         flush chain {t} input\n\
         add rule {t} input meta nfproto ipv4 udp dport @ports udp dport . ip saddr != @peers drop\n\
         add rule {t} input meta nfproto ipv6 udp dport @ports drop\n\
         add chain {t} forward {{ type filter hook forward priority -10; policy accept; }}\n\
         flush chain {t} forward\n\
         add rule {t} forward iifname @bridges udp dport @ports drop\n\
         add element {t} ports {{ {port} }}\n\
         add element {t} bridges {{ \"{bridge}\" }}\n"
    );
    for peer in peers {
        s.push_str(&format!("add element {t} peers {{ {port} . {peer} }}\n"));
    }
    let b = format!("bridge {TABLE}");
    s.push_str(&format!(
        "add table {b}\n\
         add set {b} host_local {{ type ifname . ipv4_addr; comment \"a VXLAN port and its host's own bridge addresses: never across it\"; }}\n\
         add chain {b} prerouting {{ type filter hook prerouting priority filter; policy accept; }}\n\
         add chain {b} postrouting {{ type filter hook postrouting priority filter; policy accept; }}\n\
         flush chain {b} prerouting\n\
         flush chain {b} postrouting\n"
    ));
    for (chain, dir) in [("prerouting", "iifname"), ("postrouting", "oifname")] {
        for field in ["arp saddr ip", "arp daddr ip"] {
            s.push_str(&format!(
                "add rule {b} {chain} ether type arp {dir} . {field} @host_local drop\n"
            ));
        }
        for field in ["ip saddr", "ip daddr"] {
            s.push_str(&format!(
                "add rule {b} {chain} ether type ip {dir} . {field} @host_local drop\n"
            ));
        }
    }
    for addr in local {
        s.push_str(&format!(
            "add element {b} host_local {{ \"{device}\" . {addr} }}\n"
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_laid_out_as_nf_tables_stores_them() {
        // `nft --debug=netlink list set inet weave-mesh peers` shows 4789 . 192.168.251.2
        // as the words 0000b512 02fba8c0.
        let key = peer_key(4789, "192.168.251.2".parse().unwrap());
        assert_eq!(key, vec![0x12, 0xb5, 0, 0, 192, 168, 251, 2]);
        let key = local_key("vx-weave", "10.32.0.1".parse().unwrap());
        assert_eq!(key.len(), 20);
        assert_eq!(&key[..9], b"vx-weave\0");
        assert_eq!(&key[16..], &[10, 32, 0, 1]);
    }

    #[test]
    fn the_script_filters_both_directions_and_lists_the_elements() {
        let peers = ["192.168.251.2".parse().unwrap()].into();
        let local = ["10.32.0.1".parse().unwrap()].into();
        let s = script("weave", 4789, "vx-weave", &peers, &local);
        assert!(s.contains("add element inet weave-mesh ports { 4789 }"));
        assert!(s.contains("peers { 4789 . 192.168.251.2 }"));
        assert!(s.contains("host_local { \"vx-weave\" . 10.32.0.1 }"));
        assert_eq!(s.matches("@host_local drop").count(), 8);
        assert!(s.contains("flush chain inet weave-mesh input"));
        assert!(s.contains("add element inet weave-mesh bridges { \"weave\" }"));
        assert!(s.contains("forward iifname @bridges udp dport @ports drop"));
    }

    #[test]
    fn bad_overlays_are_refused_before_the_kernel_sees_them() {
        let ok = Overlay {
            bridge: "weave".into(),
            vni: 42,
            port: 4789,
            local: "192.168.251.1".parse().unwrap(),
            mtu: None,
        };
        assert!(check(&ok).is_ok());
        for bad in [
            Overlay {
                vni: 0,
                ..ok.clone()
            },
            Overlay {
                vni: 1 << 24,
                ..ok.clone()
            },
            Overlay {
                port: 0,
                ..ok.clone()
            },
            Overlay {
                local: Ipv4Addr::UNSPECIFIED,
                ..ok.clone()
            },
            Overlay {
                local: "224.0.0.1".parse().unwrap(),
                ..ok.clone()
            },
            Overlay {
                mtu: Some(67),
                ..ok.clone()
            },
        ] {
            assert!(check(&bad).is_err(), "{bad:?}");
        }
    }
}
