//! A container sends only as itself: its port of the bridge lets in only frames from its own
//! MAC, and of those only IPv4 from its own addresses and ARP naming its own MAC and
//! addresses. Everything else (another source MAC, a foreign address, IPv6, any other
//! protocol, VLAN tags) is dropped in the bridge's prerouting hook, before the bridge learns
//! the source MAC, so a container cannot fill the bridge's forwarding database either.
//!
//! The rules live in weave's table `bridge weave-hook` (written with the `inet` one, see
//! `nftables`) and refer to three sets keyed by the port's interface index: `ports`,
//! `macs` (index . MAC) and `ips` (index . address). Attach adds a port's elements in one
//! netlink transaction (no process); detach, a failed attach and gc delete them. A port
//! that is not in `ports` (the mesh's VXLAN device, a port weave did not make) is let be.
//!
//! Why not per-port tc filters, which would go with the port by themselves: the kernels
//! weave runs on here have no flower or matchall classifier and no gact action.

use std::collections::HashSet;
use std::io;
use std::net::Ipv4Addr;

use weave_core::mac::Mac;
use weave_core::store::Record;

use crate::netlink::Netlink;
use crate::nftables::TABLE;
use crate::nftgen::{self, ElementOp, FAMILY_BRIDGE};

/// A guarded port: what its elements are made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub index: u32,
    pub mac: Mac,
    pub addrs: Vec<Ipv4Addr>,
}

impl Port {
    /// The port a record describes, once its veth exists (records of versions that did not
    /// choose ethwe's MAC describe none).
    pub fn of(record: &Record) -> Option<Self> {
        Some(Self {
            index: record.veth_index?,
            mac: record.mac?,
            addrs: record.addrs.iter().map(|a| a.addr()).collect(),
        })
    }

    /// The port's elements, set by set.
    fn elements(&self) -> Vec<(&'static str, Vec<Vec<u8>>)> {
        let index = self.index.to_ne_bytes();
        let mut mac = index.to_vec();
        // An ether_addr field takes 8 bytes in a concatenation (registers are 4 bytes).
        mac.extend(self.mac.0);
        mac.extend([0, 0]);
        let ips = self
            .addrs
            .iter()
            .map(|a| index.iter().copied().chain(a.octets()).collect())
            .collect();
        vec![
            ("ports", vec![index.to_vec()]),
            ("macs", vec![mac]),
            ("ips", ips),
        ]
    }
}

/// Guards the port; returns the ruleset generation the change made (see
/// `firewall::own_change`).
pub fn add(port: &Port) -> io::Result<Option<u32>> {
    nftgen::change_elements(FAMILY_BRIDGE, TABLE, ElementOp::Add, &port.elements())
}

/// Deletes the port's elements; already gone (a flush, an earlier run) is success. Returns
/// the generation the change made, when it made one.
pub fn remove(port: &Port) -> io::Result<Option<u32>> {
    match nftgen::change_elements(FAMILY_BRIDGE, TABLE, ElementOp::Delete, &port.elements()) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        other => other,
    }
}

/// Guards again the ports of `records` whose veth still exists (by index and name): after
/// the table was written anew (a flush took their elements). Returns how many.
pub fn restore(host: &mut Netlink, records: &[Record]) -> io::Result<usize> {
    let mut restored = 0;
    for (record, port) in records.iter().filter_map(|r| Some((r, Port::of(r)?))) {
        if host.link_with(port.index, &record.veth)?.is_some() {
            add(&port)?;
            restored += 1;
        }
    }
    Ok(restored)
}

/// Deletes the elements of every port whose interface index is not among the links
/// `existing` lists (its veth is gone: the elements must not outlive it, and an index is
/// reused in time). The elements are read first and the links after: an attach adds its
/// elements only once its veth exists, so it is never taken for gone. A detach's background
/// child may delete some of them meanwhile, which fails the whole transaction (ENOENT): then
/// everything is read again, a few times. Returns how many ports were cleared.
pub fn remove_gone(mut existing: impl FnMut() -> io::Result<HashSet<u32>>) -> io::Result<usize> {
    const TRIES: usize = 5;
    let mut tries = 0;
    loop {
        tries += 1;
        match remove_gone_once(&mut existing) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && tries < TRIES => {}
            other => return other,
        }
    }
}

fn remove_gone_once(existing: &mut impl FnMut() -> io::Result<HashSet<u32>>) -> io::Result<usize> {
    let index_of = |key: &[u8]| {
        key.get(0..4)
            .map(|i| u32::from_ne_bytes(i.try_into().unwrap()))
    };
    let mut all = Vec::new();
    for set in ["ports", "macs", "ips"] {
        match nftgen::elements(FAMILY_BRIDGE, TABLE, set) {
            Ok(keys) => all.push((set, keys)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    let existing = existing()?;
    let gone = |key: &Vec<u8>| index_of(key).is_some_and(|i| !existing.contains(&i));
    let doomed: Vec<(&str, Vec<Vec<u8>>)> = all
        .into_iter()
        .map(|(set, keys)| (set, keys.into_iter().filter(gone).collect::<Vec<_>>()))
        .filter(|(_, keys)| !keys.is_empty())
        .collect();
    let ports = doomed
        .iter()
        .find(|(name, _)| *name == "ports")
        .map_or(0, |(_, keys)| keys.len());
    if !doomed.is_empty() {
        nftgen::change_elements(FAMILY_BRIDGE, TABLE, ElementOp::Delete, &doomed)?;
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_are_keyed_by_the_port_index() {
        let port = Port {
            index: 3,
            mac: Mac([0x0a, 0x58, 10, 2, 0, 5]),
            addrs: vec!["10.2.0.5".parse().unwrap(), "10.3.0.1".parse().unwrap()],
        };
        let e = port.elements();
        let i = 3u32.to_ne_bytes();
        assert_eq!(e[0], ("ports", vec![i.to_vec()]));
        // As `nft --debug=netlink add element bridge weave-hook macs { v1 . 0a:58:0a:02:00:05 }`
        // lays it out.
        assert_eq!(e[1].1[0][4..], [0x0a, 0x58, 10, 2, 0, 5, 0, 0]);
        assert_eq!(e[2].1.len(), 2);
        assert_eq!(e[2].1[1][4..], [10, 3, 0, 1]);
    }
}
