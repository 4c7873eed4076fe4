//! The floor: the netlink requests (and sysctl writes) weave-hook's attach makes, in the
//! same order, from this already-running process: no spawn, no argument or state parsing,
//! no store, no logging.
//! The host-side socket is opened once; the container-side one cannot be (it belongs to the
//! container's new namespace).

use std::io;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ipnet::Ipv4Net;
use weave_core::mac::Mac;
use weave_hook::netlink::{Netlink, VethRequest};
use weave_hook::netns::Netns;

use super::{nth_addr, Method, Role};
use crate::sandbox::Container;
use crate::timing::millis;

pub struct Floor {
    pub bridge: String,
    pub subnet: Ipv4Net,
    label: String,
    /// Whether ethwe announces its address as weave-hook's does (after the port forwards).
    announce: bool,

    host: Option<(Netlink, Netns)>,
}

impl Floor {
    /// As weave-hook attaches one address: ethwe's MAC is derived from it, and no
    /// gratuitous ARP is sent.
    pub fn new(bridge: &str, subnet: Ipv4Net, label: &str) -> Self {
        Self {
            bridge: bridge.to_string(),
            subnet,
            label: label.to_string(),
            announce: false,
            host: None,
        }
    }

    /// The same with the gratuitous ARP, as weave-hook sends it for second
    /// addresses and addresses once held under another MAC: shows what the broadcast costs
    /// on a busy bridge.
    pub fn announcing(bridge: &str, subnet: Ipv4Net, label: &str) -> Self {
        Self {
            announce: true,
            ..Self::new(bridge, subnet, label)
        }
    }

    fn veth(n: usize) -> String {
        format!("wvbf{n}")
    }
}

/// What weave-hook does inside the container's namespace, request for request; returns the
/// socket and ethwe's index for the announcement.
fn configure_inside(addr: Ipv4Net) -> io::Result<(Netlink, u32)> {
    let mut nl = Netlink::open()?;
    let ethwe = nl
        .link_by_name("ethwe")?
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))?;
    nl.add_address(ethwe.index, addr)?;
    nl.set_up(ethwe.index)?;
    let lo = nl
        .link_by_name("lo")?
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))?;
    if !lo.up {
        nl.set_up(lo.index)?;
    }
    Ok((nl, ethwe.index))
}

/// weave-hook's announcement, once the port forwards: `arp_notify`, then ethwe's MAC set
/// to the one it has, which makes the kernel send the gratuitous ARP.
fn announce_inside(nl: &mut Netlink, ethwe: u32, mac: Mac) -> io::Result<()> {
    std::fs::write("/proc/sys/net/ipv4/conf/ethwe/arp_notify", b"1")?;
    nl.set_mac(ethwe, mac)
}

impl Method for Floor {
    fn name(&self) -> String {
        self.label.clone()
    }

    fn role(&self) -> Role {
        Role::Floor
    }

    fn prepare(&mut self) -> Result<()> {
        let mut nl = Netlink::open().context("open netlink socket")?;
        // The scale measurement shares weave-hook's bridge, which may exist already.
        match nl.create_bridge(&self.bridge, None) {
            Err(e) if e.raw_os_error() != Some(libc::EEXIST) => {
                Err(e).with_context(|| format!("create bridge {}", self.bridge))?
            }
            _ => {}
        }
        let bridge = nl
            .link_by_name(&self.bridge)?
            .context("the bridge just created is gone")?;
        nl.set_up(bridge.index)?;
        let home = Netns::current().context("open own network namespace")?;
        self.host = Some((nl, home));
        Ok(())
    }

    fn attach(&mut self, container: &Container, n: usize) -> Result<f64> {
        let (host, home) = self.host.as_mut().context("floor not prepared")?;
        let veth = Self::veth(n);
        let addr = nth_addr(self.subnet, n);
        let announce = self.announce;
        let start = Instant::now();
        let container_ns = Netns::open(Path::new(&container.netns_path()))?;
        let bridge = host.link_by_name(&self.bridge)?.context("bridge is gone")?;
        host.delete_link(&veth)?;
        let mac = Mac::for_address(addr.addr());
        let index = host.create_veth(&VethRequest {
            host_name: &veth,
            bridge_index: bridge.index,
            peer_name: "ethwe",
            peer_netns: container_ns.file().as_fd(),
            peer_mac: Some(mac),
            mtu: None,
        })?;
        // As weave-hook: no IPv6 on the bridge port, and without an announcement the
        // bridge's entry for ethwe's MAC set to the port.
        std::fs::write(format!("/proc/sys/net/ipv6/conf/{veth}/disable_ipv6"), b"1")?;
        if !announce {
            host.forward_mac_to(index, mac)?;
        }
        container_ns.run_in(home, || -> io::Result<()> {
            let (mut inside, ethwe) = configure_inside(addr)?;
            // As weave-hook waits for the port to forward (its patience too), from inside,
            // announcing or not.
            host.wait_forwarding(index, Duration::from_millis(500))?;
            if announce {
                announce_inside(&mut inside, ethwe, mac)?;
            }
            Ok(())
        })??;
        Ok(millis(start.elapsed()))
    }

    fn detach(&mut self, _container: &mut Container, n: usize) -> Result<Option<f64>> {
        let (host, _) = self.host.as_mut().context("floor not prepared")?;
        let start = Instant::now();
        host.delete_link(&Self::veth(n))?;
        Ok(Some(millis(start.elapsed())))
    }
}
