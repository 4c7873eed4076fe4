//! The opt-in way out for a weave-only container (`weave.route=default`), as weave's
//! expose gave one: a default route through the host's exposed address, and the container's
//! addresses masqueraded when they leave through another network of the host. Only these
//! addresses (the set `masq` of weave's table `inet weave-hook`): the host forwards nothing
//! else from the bridge.

use std::io;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::nftables::TABLE;
use crate::nftgen::{self, ElementOp, FAMILY_INET};

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
/// The set of addresses that go out masqueraded.
pub const SET: &str = "masq";

/// Whether the host forwards IPv4 at all (the way out needs it; weave does not turn it on).
pub fn host_forwards() -> bool {
    weave_core::fsutil::read_proc(std::path::Path::new(IP_FORWARD)).is_ok_and(|v| v.trim() == "1")
}

/// The gateway of a container with `addrs`: an exposed address of the host in one of its
/// subnets (reached on-link), else the first exposed address (reached by a host route
/// through ethwe). `None` when the host is not exposed.
pub fn gateway(exposed: &[Ipv4Addr], addrs: &[Ipv4Net]) -> Option<(Ipv4Addr, bool)> {
    exposed
        .iter()
        .find(|gw| addrs.iter().any(|a| a.trunc().contains(*gw)))
        .map(|gw| (*gw, true))
        .or_else(|| exposed.first().map(|gw| (*gw, false)))
}

fn keys(addrs: &[Ipv4Net]) -> Vec<Vec<u8>> {
    addrs.iter().map(|a| a.addr().octets().to_vec()).collect()
}

/// Lets the addresses out, masqueraded.
pub fn allow(addrs: &[Ipv4Net]) -> io::Result<()> {
    nftgen::change_elements(FAMILY_INET, TABLE, ElementOp::Add, &[(SET, keys(addrs))]).map(drop)
}

/// Takes the addresses' way out away; already gone is success.
pub fn withdraw(addrs: &[Ipv4Net]) -> io::Result<()> {
    match nftgen::change_elements(FAMILY_INET, TABLE, ElementOp::Delete, &[(SET, keys(addrs))]) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other.map(drop),
    }
}

/// The addresses that have a way out now.
pub fn allowed() -> io::Result<Vec<Ipv4Addr>> {
    Ok(nftgen::elements(FAMILY_INET, TABLE, SET)?
        .into_iter()
        .filter_map(|k| <[u8; 4]>::try_from(k.get(..4)?).ok().map(Ipv4Addr::from))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_is_on_link_when_it_can_be() {
        let exposed: Vec<Ipv4Addr> = vec![
            "10.47.255.254".parse().unwrap(),
            "10.2.0.254".parse().unwrap(),
        ];
        let in_2: Vec<Ipv4Net> = vec!["10.2.0.5/24".parse().unwrap()];
        assert_eq!(
            gateway(&exposed, &in_2),
            Some(("10.2.0.254".parse().unwrap(), true))
        );
        let elsewhere: Vec<Ipv4Net> = vec!["10.9.0.5/24".parse().unwrap()];
        assert_eq!(
            gateway(&exposed, &elsewhere),
            Some(("10.47.255.254".parse().unwrap(), false))
        );
        assert_eq!(gateway(&[], &in_2), None);
    }
}
