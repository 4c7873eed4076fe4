//! Reset: take the network down when nothing uses it (weave-dns, bridge and firewall rule).

use crate::bridge;
use crate::dns;
use crate::error::{Error, Result};
use crate::netlink::Netlink;
use crate::settings::Settings;
use crate::store::Store;

/// Stops the state directory's weave-dns, deletes the bridge (and weave DNS's address with
/// it) and removes its firewall rule. Refuses while a live container is attached to it;
/// records of dead ones are collected first.
pub fn reset(settings: &Settings) -> Result<()> {
    crate::gc::collect(settings)?;
    let store = Store::open(&settings.state_dir)?;
    let attached: Vec<String> = store
        .records()?
        .into_iter()
        .filter(|r| r.bridge == settings.bridge)
        .map(|r| r.id)
        .collect();
    if !attached.is_empty() {
        return Err(Error::StillAttached {
            bridge: settings.bridge.clone(),
            count: attached.len(),
            ids: attached.join(", "),
        });
    }
    if dns::stop_server(&settings.state_dir)? {
        tracing::info!("stopped weave-dns");
    }
    let mut host = Netlink::open().map_err(Error::netlink("open netlink socket"))?;
    if let Some(link) = host
        .link_by_name(&settings.bridge)
        .map_err(Error::netlink(format!("look up {}", settings.bridge)))?
    {
        if link.kind.as_deref() != Some("bridge") {
            return Err(Error::NotABridge(
                settings.bridge.clone(),
                link.kind.unwrap_or_default(),
            ));
        }
        host.delete_link(&settings.bridge)
            .map_err(Error::netlink(format!("delete bridge {}", settings.bridge)))?;
    }
    bridge::remove_forwarding(&store, &settings.bridge)
}
