//! The weave bridge: created on first use, up, and passing its ports' traffic.

use std::fs;
use std::io;

use weave_core::settings::{fnv1a, Settings};
use weave_core::store::Store;

use crate::error::{Error, Result};
use crate::firewall::{self, FirewallError, Kept, Recheck};
use crate::netlink::{Link, Netlink};

/// Start of the ifalias weave-hook gives the bridges it creates.
const ALIAS_PREFIX: &str = "weave-hook ";
/// The kernel's limit on an ifalias (IFALIASZ - 1).
const MAX_ALIAS: usize = 255;

/// The ifalias that marks a bridge as the one of this state directory: two state
/// directories on one bridge would hand out the same addresses, and the `reset` of one would
/// cut the other's containers off.
pub fn owner_alias(settings: &Settings) -> String {
    let dir = settings.state_dir.display().to_string();
    let dir = dir.trim_end_matches('/');
    let alias = format!("{ALIAS_PREFIX}{dir}");
    match alias.len() <= MAX_ALIAS {
        true => alias,
        false => format!("{ALIAS_PREFIX}#{:016x}", fnv1a(dir.as_bytes())),
    }
}

/// Checks that the bridge is this state directory's. A bridge without the mark (just
/// created, or made by an earlier weave-hook or by hand for weave) is marked as ours.
fn check_owner(host: &mut Netlink, link: &Link, settings: &Settings) -> Result<()> {
    let ours = owner_alias(settings);
    match link.alias.as_deref() {
        // Marked by a version that left snooping on: turned off once, here.
        Some(alias) if alias == ours && link.snooping => {
            tracing::info!(bridge = %link.name, "turning multicast snooping off");
            host.no_multicast_snooping(link.index)
                .map_err(Error::netlink(format!(
                    "turn multicast snooping off on {}",
                    link.name
                )))
        }
        Some(alias) if alias == ours => Ok(()),
        Some(alias) => Err(Error::BridgeOwnedElsewhere {
            bridge: link.name.clone(),
            owner: alias
                .strip_prefix(ALIAS_PREFIX)
                .unwrap_or(alias)
                .to_string(),
        }),
        None => {
            tracing::info!(bridge = %link.name, alias = %ours, "marking the bridge as this state directory's");
            no_ipv6(&link.name)?;
            host.no_ipv6_addresses(link.index)
                .map_err(Error::netlink(format!(
                    "turn IPv6 addresses off on {}",
                    link.name
                )))?;
            host.no_multicast_snooping(link.index)
                .map_err(Error::netlink(format!(
                    "turn multicast snooping off on {}",
                    link.name
                )))?;
            host.set_alias(link.index, &ours)
                .map_err(Error::netlink(format!("mark bridge {} as ours", link.name)))
        }
    }
}

/// Until weave speaks IPv6, the bridge does not: no router advertisement from a container
/// accepted (one gave the host a default route and an address through the bridge), and no
/// address of its own (addr_gen_mode none, set by the caller while the new bridge has no
/// carrier yet), so no link-local address a container could reach the host on. Not
/// `disable_ipv6`: writing it on a bridge made the first packets between its new ports go
/// missing (1 s of loss in ~1 of 4 test runs). Done once, when weave-hook marks the bridge.
fn no_ipv6(bridge: &str) -> Result<()> {
    for (name, value) in [("accept_ra", "0"), ("autoconf", "0")] {
        let path = format!("/proc/sys/net/ipv6/conf/{bridge}/{name}");
        match fs::write(&path, value) {
            // A kernel without IPv6 has nothing to turn off.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            other => other.map_err(Error::io(format!("write {path}")))?,
        }
    }
    Ok(())
}

/// Makes sure the bridge exists and is up; returns its index. Concurrent first attaches
/// race to create it: whoever loses gets `EEXIST` and uses the winner's.
pub fn ensure(host: &mut Netlink, settings: &Settings) -> Result<u32> {
    let name = &settings.bridge;
    let link = match host
        .link_by_name(name)
        .map_err(Error::netlink(format!("look up bridge {name}")))?
    {
        Some(link) => link,
        None => {
            match host.create_bridge(name, settings.mtu) {
                Ok(()) => tracing::info!(bridge = %name, "created bridge"),
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => return Err(Error::netlink(format!("create bridge {name}"))(e)),
            }
            host.link_by_name(name)
                .map_err(Error::netlink(format!("look up bridge {name}")))?
                .ok_or_else(|| {
                    Error::netlink(format!("look up bridge {name}"))(io::Error::from_raw_os_error(
                        libc::ENODEV,
                    ))
                })?
        }
    };
    if link.kind.as_deref() != Some("bridge") {
        return Err(Error::NotABridge(
            name.clone(),
            link.kind.unwrap_or_else(|| "non-bridge".into()),
        ));
    }
    check_owner(host, &link, settings)?;
    if !link.up {
        host.set_up(link.index)
            .map_err(Error::netlink(format!("bring bridge {name} up")))?;
    }
    Ok(link.index)
}

/// Makes bridged traffic between the bridge's ports pass where the firewall sees it.
/// The common attach costs one netlink request and no process (see `firewall`); `recheck`
/// says when to verify with iptables anyway. No store lock is taken: iptables may wait.
pub fn ensure_forwarding(store: &Store, bridge: &str, recheck: Recheck) -> Result<()> {
    // Checked on every attach: Docker may have started (and loaded br_netfilter) since.
    if !firewall::bridged_traffic_filtered() {
        return Ok(());
    }
    match firewall::keep_accept(store.layout(), bridge, recheck) {
        Ok(Kept::Unchanged) => {}
        Ok(kept) => tracing::info!(%bridge, ?kept, "bridged traffic accepted in FORWARD"),
        // No iptables binary: then nothing can have installed iptables rules to drop it.
        Err(FirewallError::Spawn(e)) if e.kind() == io::ErrorKind::NotFound => {
            tracing::warn!("bridged traffic passes the firewall here, but iptables is not installed; not adding an ACCEPT rule");
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// Removes the bridge's firewall rule and forgets it; used when the bridge goes away.
pub fn remove_forwarding(store: &Store, bridge: &str) -> Result<()> {
    match firewall::remove_accept(store.layout(), bridge) {
        Ok(n) => tracing::info!(%bridge, removed = n, "removed FORWARD rules"),
        Err(FirewallError::Spawn(e)) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
