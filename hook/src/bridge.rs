//! The weave bridge: created on first use, up, and passing its ports' traffic.

use std::io;

use crate::error::{Error, Result};
use crate::firewall::{self, FirewallError, Kept, Recheck};
use crate::netlink::Netlink;
use crate::settings::Settings;
use crate::store::Store;

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
    match firewall::keep_accept(store.root(), bridge, recheck) {
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
    match firewall::remove_accept(store.root(), bridge) {
        Ok(n) => tracing::info!(%bridge, removed = n, "removed FORWARD rules"),
        Err(FirewallError::Spawn(e)) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
