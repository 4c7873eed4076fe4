//! Garbage collection: what killed hooks and containers without poststop left behind.

use crate::error::{Error, Result};
use crate::netlink::Netlink;
use crate::settings::{Settings, VETH_PREFIX};
use crate::store::Store;

#[derive(Debug, Default)]
pub struct Report {
    /// Containers that were gone, whose reservations were released.
    pub released: Vec<String>,
    /// Addresses reserved by nobody, freed.
    pub orphan_addrs: usize,
    /// Host veths on the bridge that no attached container owns, deleted.
    pub deleted_veths: Vec<String>,
}

pub fn collect(settings: &Settings) -> Result<Report> {
    let mut host = Netlink::open().map_err(Error::netlink("open netlink socket"))?;
    // Links first, records second: attach writes its record before it creates its veth, so
    // every veth listed here that is still wanted has a record by the time records are read.
    let bridge = host
        .link_by_name(&settings.bridge)
        .map_err(Error::netlink(format!(
            "look up bridge {}",
            settings.bridge
        )))?;
    let ours: Vec<String> = match &bridge {
        Some(b) => host
            .links()
            .map_err(Error::netlink("list links"))?
            .into_iter()
            .filter(|l| l.master == Some(b.index) && l.name.starts_with(VETH_PREFIX))
            .map(|l| l.name)
            .collect(),
        None => Vec::new(),
    };
    let store = Store::open(&settings.state_dir)?;
    let garbage = store.collect_garbage()?;
    let live: Vec<String> = store.records()?.into_iter().map(|r| r.veth).collect();
    let mut report = Report {
        released: garbage.dead.iter().map(|r| r.id.clone()).collect(),
        orphan_addrs: garbage.orphan_addrs.len(),
        deleted_veths: Vec::new(),
    };
    let dead_veths = garbage.dead.iter().map(|r| r.veth.clone());
    let orphans = ours.into_iter().filter(|v| !live.contains(v));
    for veth in dead_veths.chain(orphans) {
        // A dead record's veth name may since belong to a live container of the same id.
        if live.contains(&veth) || report.deleted_veths.contains(&veth) {
            continue;
        }
        if host
            .delete_link(&veth)
            .map_err(Error::netlink(format!("delete {veth}")))?
        {
            report.deleted_veths.push(veth);
        }
    }
    Ok(report)
}
