//! The ways of attaching a container to a bridge that are measured side by side. Each has its
//! own bridge and address range in the benchmark's host namespace.

pub mod cni;
pub mod floor;
pub mod hook;
pub mod library;
pub mod netavark;
pub mod pipework;

use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::Result;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::sandbox::Container;

/// What a row of the results is, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// weave-hook itself, as a runtime runs it.
    Ours,
    /// Another tool doing the same job.
    Peer,
    /// The same netlink requests from an already-running process.
    Floor,
    /// A part of weave-hook's cost, measured alone, to show where its time goes.
    Probe,
}

/// One way of attaching and detaching. `n` numbers the sample: methods derive container ids,
/// interface names and addresses from it, so consecutive samples never collide.
pub trait Method {
    fn name(&self) -> String;
    fn role(&self) -> Role;
    /// Anything to do once before the first sample (create a bridge, ...).
    fn prepare(&mut self) -> Result<()> {
        Ok(())
    }
    /// Attaches `container`; returns the milliseconds it took.
    fn attach(&mut self, container: &Container, n: usize) -> Result<f64>;
    /// Detaches it again; `None` when the method has no detach of its own. The container
    /// still runs, unless the method stops it first (as at a poststop hook).
    fn detach(&mut self, container: &mut Container, n: usize) -> Result<Option<f64>>;
}

/// A method that runs as processes: its commands can be started without waiting for them
/// (concurrency) or under /usr/bin/time (memory).
pub trait Process: Method {
    /// The attach (`true`) or detach command of sample `n`, and what goes on its stdin.
    fn command(&self, attach: bool, container: &Container, n: usize) -> (Command, Vec<u8>);
    /// The container-side interface name.
    fn ifname(&self) -> &'static str;
    fn bridge(&self) -> &str;
    /// Reservations left in the method's own store (0 where the store is not inspected).
    fn leftovers(&self) -> Result<usize> {
        Ok(0)
    }
}

/// The `n`-th host address of `net` (wrapping, skipping the network address and the first
/// host, which some tools keep for a gateway), with the net's prefix.
pub fn nth_addr(net: Ipv4Net, n: usize) -> Ipv4Net {
    let hosts = (1u32 << (32 - net.prefix_len())) - 3;
    let ip = u32::from(net.network()) + 2 + (n as u32 % hosts);
    Ipv4Net::new(Ipv4Addr::from(ip), net.prefix_len()).expect("prefix of a valid net")
}

/// A container id for sample `n` of method `tag`: unique, and valid for every tool.
pub fn container_id(tag: &str, n: usize) -> String {
    format!("wvbench-{tag}-{n}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nth_addr_skips_network_and_gateway_and_wraps() {
        let net: Ipv4Net = "10.33.0.0/30".parse().unwrap();
        assert_eq!(nth_addr(net, 0).to_string(), "10.33.0.2/30");
        assert_eq!(nth_addr(net, 1).to_string(), "10.33.0.2/30");
        let net: Ipv4Net = "10.33.0.0/16".parse().unwrap();
        assert_eq!(nth_addr(net, 0).to_string(), "10.33.0.2/16");
        assert_eq!(nth_addr(net, 300).to_string(), "10.33.1.46/16");
    }
}
