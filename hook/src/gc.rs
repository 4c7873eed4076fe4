//! Garbage collection: what killed hooks and containers without poststop left behind.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::bridge;
use crate::error::{Error, Result};
use crate::firewall::Recheck;
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
    /// resolv.conf files of weave-runtime whose container never attached or is gone.
    pub stale_resolv_files: usize,
}

/// weave-runtime writes a container's resolv.conf before runc even starts, so a file without
/// a record is only stale once it is older than any create can take.
const RESOLV_GRACE: Duration = Duration::from_secs(60);

/// Also puts the bridge's firewall rule back when it is gone (see `firewall`).
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
    let records = store.records()?;
    let live: Vec<String> = records.iter().map(|r| r.veth.clone()).collect();
    let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    let mut report = Report {
        released: garbage.dead.iter().map(|r| r.id.clone()).collect(),
        orphan_addrs: garbage.orphan_addrs.len(),
        deleted_veths: Vec::new(),
        stale_resolv_files: remove_stale_resolv_files(&settings.state_dir.join("resolv"), &ids),
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
    // The repair command: the rule may have gone with a firewall reload, whatever the
    // marker says; checked last, so a failing iptables does not stop the cleanup above.
    if bridge.is_some() {
        bridge::ensure_forwarding(&store, &settings.bridge, Recheck::Always)?;
    }
    Ok(report)
}

/// Removes resolv.conf files (`<id>.conf`) of containers without a record, once old enough.
fn remove_stale_resolv_files(dir: &Path, attached: &[&str]) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".conf")) else {
            continue;
        };
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > RESOLV_GRACE);
        if old && !attached.contains(&id) && fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}
