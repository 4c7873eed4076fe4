//! Garbage collection: what killed hooks and containers without poststop left behind.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use weave_core::id::ContainerId;
use weave_core::layout::{self, RESOLV_SUFFIX};
use weave_core::settings::{host_veth_name, Settings, VETH_PREFIX};
use weave_core::store::{Record, Store};

use crate::bridge;
use crate::error::{Error, Result};
use crate::firewall::Recheck;
use crate::netlink::Netlink;
use crate::nftables::{self, Openings, Rewrite};
use crate::portguard;
use crate::route;

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
    /// Ports gone whose guard elements were removed.
    pub unguarded_ports: usize,
    /// Records that could not be read, skipped (and their addresses kept), with why.
    pub skipped: Vec<String>,
}

/// weave-runtime writes a container's resolv.conf before runc even starts, so a file without
/// a record is only stale once it is older than any create can take.
const RESOLV_GRACE: Duration = Duration::from_secs(60);

/// Also puts the bridge's firewall rule back when it is gone (see `firewall`).
pub fn collect(settings: &Settings) -> Result<Report> {
    let mut host = Netlink::open().map_err(Error::netlink("open netlink socket"))?;
    // Links first, records second: attach writes its record before it creates its veth, so
    // every veth listed here that is still wanted has a record by the time records are read.
    let ours = bridge_ports(&mut host, settings)?;
    let ports = ours.clone().unwrap_or_default();
    let store = Store::open(&settings.state_dir)?;
    let (garbage, listing) = store.collect_garbage()?;
    let attached: Vec<&str> = listing
        .records
        .iter()
        .map(|r| r.id.as_str())
        .chain(listing.unreadable_ids.iter().map(String::as_str))
        .collect();
    let mut report = Report {
        released: garbage
            .dead
            .iter()
            .chain(&garbage.departed)
            .map(|r| r.id.clone())
            .collect(),
        orphan_addrs: garbage.orphan_addrs.len(),
        stale_resolv_files: remove_stale_resolv_files(&settings.layout().resolv_dir(), &attached),
        skipped: listing.unreadable.iter().map(ToString::to_string).collect(),
        ..Report::default()
    };
    // A record that cannot be read still claims the veth its id hashes to.
    let unreadable: Vec<Record> = listing
        .unreadable_ids
        .iter()
        .filter_map(|id| ContainerId::parse(id).ok())
        .map(|id| Record {
            id: id.as_str().to_string(),
            bridge: settings.bridge.clone(),
            veth: host_veth_name(&id),
            veth_index: None,
            mac: None,
            addrs: Vec::new(),
            owner: None,
            names: Vec::new(),
            shared: false,
            route: false,
            netns: None,
        })
        .collect();
    let live: Vec<Record> = listing.records.iter().cloned().chain(unreadable).collect();
    for (name, index) in doomed(&ports, &garbage.dead, &live) {
        // By index: a link of the same name made since the listing is another link.
        if host
            .delete_link_index(index)
            .map_err(Error::netlink(format!("delete {name}")))?
        {
            report.deleted_veths.push(name);
        }
    }
    // Guards of ports that are gone (those just deleted, those of containers whose
    // namespace went): every bridge's, since an element names only an interface index.
    report.unguarded_ports = portguard::remove_gone(|| {
        let links = host.links()?;
        Ok(links.into_iter().map(|l| l.index).collect())
    })
    .map_err(Error::netlink("remove the guards of ports that are gone"))?;
    // The repair command: the rule may have gone with a firewall reload, whatever the
    // marker says; checked last, so a failing iptables does not stop the cleanup above.
    if ours.is_some() {
        let exposed: Vec<_> = store
            .exposed(&settings.bridge)
            .iter()
            .map(|n| n.addr())
            .collect();
        let openings = Openings {
            dns: settings.dns_addr().addr(),
            exposed: &exposed,
        };
        nftables::ensure(&settings.bridge, openings, Rewrite::Always)?;
        let mine: Vec<Record> = listing
            .records
            .iter()
            .filter(|r| r.bridge == settings.bridge)
            .cloned()
            .collect();
        portguard::restore(&mut host, &mine)
            .map_err(Error::netlink("guard the attached containers' ports again"))?;
        // Ways out: back for the live (a flush took them), gone for the dead.
        for record in mine.iter().filter(|r| r.route) {
            route::allow(&record.addrs)
                .map_err(Error::netlink(format!("let {} out again", record.id)))?;
        }
        for record in garbage.dead.iter().filter(|r| r.route) {
            route::withdraw(&record.addrs)
                .map_err(Error::netlink(format!("take {}'s way out away", record.id)))?;
        }
        bridge::ensure_forwarding(&store, &settings.bridge, Recheck::Always)?;
    }
    Ok(report)
}

/// weave's veths on the bridge: name to index. `None` when there is no bridge, or when it
/// is another state directory's: its ports (and its firewall rule) are that directory's.
fn bridge_ports(host: &mut Netlink, settings: &Settings) -> Result<Option<HashMap<String, u32>>> {
    let name = &settings.bridge;
    let Some(bridge) = host
        .link_by_name(name)
        .map_err(Error::netlink(format!("look up bridge {name}")))?
    else {
        return Ok(None);
    };
    if bridge
        .alias
        .as_deref()
        .is_some_and(|a| a != crate::bridge::owner_alias(settings))
    {
        tracing::warn!(bridge = %name, "the bridge is another state directory's; not collecting its ports");
        return Ok(None);
    }
    Ok(Some(
        host.links()
            .map_err(Error::netlink("list links"))?
            .into_iter()
            .filter(|l| l.master == Some(bridge.index) && l.name.starts_with(VETH_PREFIX))
            .map(|l| (l.name, l.index))
            .collect(),
    ))
}

/// The ports to delete: those of dead records, and those no live record claims. A live
/// record claims its veth by index, or by name while its index is not recorded yet (its
/// attach is creating it).
fn doomed(ports: &HashMap<String, u32>, dead: &[Record], live: &[Record]) -> Vec<(String, u32)> {
    let claimed = |name: &str, index: u32| {
        live.iter()
            .any(|r| r.veth == name && r.veth_index.is_none_or(|i| i == index))
    };
    let mut doomed: Vec<(String, u32)> = ports
        .iter()
        .filter(|(name, index)| !claimed(name, **index))
        .map(|(name, index)| (name.clone(), *index))
        .collect();
    // A dead record's veth that is not on the bridge any more (or never was) is gone with
    // its namespace, or was moved by someone: not ours to chase.
    for record in dead {
        if let (Some(index), Some(port)) = (record.veth_index, ports.get(&record.veth)) {
            if *port == index && !doomed.iter().any(|(_, i)| *i == index) {
                doomed.push((record.veth.clone(), index));
            }
        }
    }
    doomed.sort();
    doomed
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
        let name = name.to_string_lossy();
        let temp = name.starts_with(layout::TEMP_PREFIX);
        let id = layout::id_of_file(&name, RESOLV_SUFFIX);
        if id.is_none() && !temp {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > RESOLV_GRACE);
        let unattached = id.is_none_or(|id| !attached.contains(&id.as_str()));
        if old && unattached && fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, veth: &str, index: Option<u32>) -> Record {
        Record {
            id: id.into(),
            bridge: "weave".into(),
            veth: veth.into(),
            veth_index: index,
            mac: None,
            addrs: vec![],
            owner: None,
            names: vec![],
            shared: false,
            route: false,
            netns: None,
        }
    }

    #[test]
    fn only_unclaimed_ports_and_dead_records_ports_are_doomed() {
        let ports = HashMap::from([
            ("vethweA".to_string(), 10),
            ("vethweB".to_string(), 11),
            ("vethweC".to_string(), 12),
            ("vethweD".to_string(), 13),
        ]);
        let live = [
            record("a", "vethweA", Some(10)),
            // Its attach is creating it: claimed by name.
            record("b", "vethweB", None),
            // A live record whose veth has another index: the port named so is not its.
            record("c", "vethweC", Some(99)),
        ];
        let dead = [
            record("d", "vethweD", Some(13)),
            record("e", "vethweE", Some(14)),
        ];
        assert_eq!(
            doomed(&ports, &dead, &live),
            vec![("vethweC".to_string(), 12), ("vethweD".to_string(), 13)]
        );
    }
}
