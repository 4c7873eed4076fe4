//! The host on the weave network, as weave's `expose` and `hide`: an address of the host's
//! on the bridge, which containers reach whole (on weave DNS's address only port 53 is
//! open). It is kept out of every allocation and explicit request, survives `gc`, and goes
//! with `hide` or `reset`.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use weave_core::settings::Settings;
use weave_core::store::{Facts, Store};

use crate::attach::Interfaces;
use crate::bridge;
use crate::error::{Error, Result};
use crate::netlink::Netlink;
use crate::nftables::{self, Openings, Rewrite};
use crate::overlay;

/// The address `expose` gives the host when none is named: the last host address of the
/// allocation range, with the range's prefix (10.47.255.254/12 for 10.32.0.0/12), so that
/// every container of the range reaches it on-link.
pub fn default_address(range: Ipv4Net) -> Ipv4Net {
    let last = range.hosts().last().unwrap_or(range.addr());
    Ipv4Net::new(last, range.prefix_len()).expect("prefix of a valid subnet")
}

/// Exposes the host on the bridge at `net` (default: [`default_address`]). Idempotent.
pub fn expose(settings: &Settings, net: Option<Ipv4Net>) -> Result<Ipv4Net> {
    let net = net.unwrap_or_else(|| default_address(settings.ipalloc_range));
    let dns = settings.dns_addr().addr();
    if net.addr() == dns {
        return Err(Error::ExposeDns(dns));
    }
    let store = Store::open(&settings.state_dir)?;
    let interfaces = Interfaces::default();
    let facts = Facts {
        kept: &[dns],
        interface_exists: &|r| interfaces.exist(r),
        mesh: None,
    };
    let added = store.expose(&settings.bridge, net, &facts)?;
    let wired = wire(settings, &store, net);
    if wired.is_err() && added {
        let _ = store.hide(&settings.bridge, Some(net));
        let _ = overlay::sync_host_local(settings);
    }
    wired.map(|()| net)
}

fn wire(settings: &Settings, store: &Store, net: Ipv4Net) -> Result<()> {
    // Host-local on a mesh before it is on the bridge: no other host's container reaches it.
    overlay::sync_host_local(settings)?;
    let mut host = Netlink::open().map_err(Error::netlink("open netlink socket"))?;
    let index = bridge::ensure(&mut host, settings)?;
    match host.add_address(index, net) {
        Err(e) if e.raw_os_error() != Some(libc::EEXIST) => Err(Error::netlink(format!(
            "add the host's address {net} to bridge {}",
            settings.bridge
        ))(e))?,
        _ => {}
    }
    let exposed = exposed_addrs(store, settings);
    let openings = Openings {
        dns: settings.dns_addr().addr(),
        exposed: &exposed,
    };
    nftables::ensure(&settings.bridge, openings, Rewrite::Always)?;
    Ok(())
}

/// Takes the host's address `net` off the bridge (all of them when `None`). Returns those
/// that were exposed.
pub fn hide(settings: &Settings, net: Option<Ipv4Net>) -> Result<Vec<Ipv4Net>> {
    let store = Store::open(&settings.state_dir)?;
    let hidden = store.hide(&settings.bridge, net)?;
    if hidden.is_empty() {
        return Ok(hidden);
    }
    let mut host = Netlink::open().map_err(Error::netlink("open netlink socket"))?;
    if let Some(link) = host
        .link_by_name(&settings.bridge)
        .map_err(Error::netlink(format!("look up {}", settings.bridge)))?
    {
        for net in &hidden {
            host.delete_address(link.index, *net)
                .map_err(Error::netlink(format!(
                    "delete {net} from {}",
                    settings.bridge
                )))?;
        }
    }
    let exposed = exposed_addrs(&store, settings);
    let openings = Openings {
        dns: settings.dns_addr().addr(),
        exposed: &exposed,
    };
    let hidden_addrs: Vec<Ipv4Addr> = hidden.iter().map(Ipv4Net::addr).collect();
    nftables::withdraw(&settings.bridge, openings, &hidden_addrs)?;
    overlay::sync_host_local(settings)?;
    Ok(hidden)
}

fn exposed_addrs(store: &Store, settings: &Settings) -> Vec<Ipv4Addr> {
    store
        .exposed(&settings.bridge)
        .iter()
        .map(Ipv4Net::addr)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_the_ranges_last_host() {
        let range: Ipv4Net = "10.32.0.0/12".parse().unwrap();
        assert_eq!(default_address(range), "10.47.255.254/12".parse().unwrap());
        let range: Ipv4Net = "10.2.0.0/24".parse().unwrap();
        assert_eq!(default_address(range), "10.2.0.254/24".parse().unwrap());
    }
}
