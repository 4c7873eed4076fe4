//! Reset: take the network down when nothing uses it (weave-dns, bridge and firewall rule).

use std::os::unix::net::UnixStream;

use weave_core::settings::Settings;
use weave_core::store::Store;

use crate::bridge;
use crate::dns;
use crate::error::{Error, Result};
use crate::netlink::Netlink;
use crate::nftables::{self, Openings};
use crate::overlay;

/// Stops the state directory's weave-dns, deletes the mesh overlay (VXLAN device and
/// tables, `overlay::remove_device`) and the bridge (and weave DNS's address with
/// it), removes its firewall rule and its elements of weave's nftables table. Refuses while a live container is attached to it (dead
/// ones are collected first), when the bridge is another state directory's, and when it has
/// ports weave-hook did not make, and while weave-mesh serves the state directory (it would
/// put the bridge and its VXLAN device back). The bridge is deleted under the store's lock,
/// so no attach can add a port meanwhile.
pub fn reset(settings: &Settings) -> Result<()> {
    refuse_while_mesh_serves(settings)?;
    crate::gc::collect(settings)?;
    let store = Store::open(&settings.state_dir)?;
    refuse_while_attached(&store, settings)?;
    if dns::stop_server(&settings.layout())? {
        tracing::info!("stopped weave-dns");
    }
    // The mesh's VXLAN device is a port of the bridge: it goes first, with its tables.
    overlay::remove_device(settings)?;
    {
        let _lock = store.lock()?;
        refuse_while_attached(&store, settings)?;
        delete_bridge(settings)?;
    }
    // The host's exposed addresses went with the bridge.
    let exposed: Vec<_> = store
        .hide(&settings.bridge, None)?
        .iter()
        .map(|n| n.addr())
        .collect();
    let openings = Openings {
        dns: settings.dns_addr().addr(),
        exposed: &exposed,
    };
    nftables::remove(&settings.bridge, openings)?;
    bridge::remove_forwarding(&store, &settings.bridge)
}

/// An agent serves the state directory while its socket accepts a connection (a stopped
/// agent removes it; a killed one leaves a socket nobody accepts on).
fn refuse_while_mesh_serves(settings: &Settings) -> Result<()> {
    let socket = settings.layout().mesh_socket();
    match UnixStream::connect(&socket) {
        Ok(_) => Err(Error::MeshServes(socket)),
        Err(_) => Ok(()),
    }
}

fn refuse_while_attached(store: &Store, settings: &Settings) -> Result<()> {
    let listing = store.records()?;
    // A record that cannot be read is skipped: if its container is attached, its veth is a
    // port of the bridge, and `delete_bridge` refuses.
    for skipped in &listing.unreadable {
        tracing::warn!("reset: skipped: {skipped}");
    }
    let attached: Vec<String> = listing
        .records
        .into_iter()
        .filter(|r| r.bridge == settings.bridge)
        .map(|r| r.id)
        .collect();
    match attached.is_empty() {
        true => Ok(()),
        false => Err(Error::StillAttached {
            bridge: settings.bridge.clone(),
            count: attached.len(),
            ids: attached.join(", "),
        }),
    }
}

fn delete_bridge(settings: &Settings) -> Result<()> {
    let name = &settings.bridge;
    let mut host = Netlink::open().map_err(Error::netlink("open netlink socket"))?;
    let Some(link) = host
        .link_by_name(name)
        .map_err(Error::netlink(format!("look up {name}")))?
    else {
        return Ok(());
    };
    if link.kind.as_deref() != Some("bridge") {
        return Err(Error::NotABridge(
            name.clone(),
            link.kind.unwrap_or_default(),
        ));
    }
    let ours = bridge::owner_alias(settings);
    if let Some(owner) = link.alias.as_deref().filter(|a| *a != ours) {
        return Err(Error::BridgeOwnedElsewhere {
            bridge: name.clone(),
            owner: owner.to_string(),
        });
    }
    let ports: Vec<String> = host
        .links()
        .map_err(Error::netlink("list links"))?
        .into_iter()
        .filter(|l| l.master == Some(link.index))
        .map(|l| l.name)
        .collect();
    if !ports.is_empty() {
        return Err(Error::ForeignPorts {
            bridge: name.clone(),
            ports: ports.join(", "),
        });
    }
    host.delete_link_index(link.index)
        .map_err(Error::netlink(format!("delete bridge {name}")))?;
    Ok(())
}
