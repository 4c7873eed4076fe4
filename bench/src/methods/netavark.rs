//! netavark, podman's network backend (Rust), bridge driver on an internal network, called
//! as podman calls it: `netavark --config DIR setup|teardown NETNS` with the network options
//! on stdin. podman does the IPAM itself and hands netavark a static address.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;
use ipnet::Ipv4Net;
use serde_json::json;

use super::{container_id, nth_addr, Method, Process, Role};
use crate::sandbox::Container;
use crate::timing;

pub const BINARY: &str = "/usr/lib/podman/netavark";
pub const IFNAME: &str = "eth0";

pub struct Netavark {
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub config_dir: PathBuf,
}

impl Netavark {
    fn options(&self, n: usize) -> Vec<u8> {
        let network = &self.bridge;
        let gateway = nth_addr(self.subnet, 0).addr();
        // Sample addresses start after the gateway.
        let ip = nth_addr(self.subnet, n + 1).addr();
        let options = json!({
            "container_id": container_id("netavark", n),
            "container_name": container_id("netavark", n),
            "networks": {network: {"interface_name": IFNAME, "static_ips": [ip.to_string()]}},
            "network_info": {network: {
                "dns_enabled": false,
                "driver": "bridge",
                // A network id is 64 hex digits; one per bridge is all netavark needs.
                "id": format!("{:0>64}", self.bridge.bytes().map(|b| format!("{b:02x}")).collect::<String>()),
                "internal": true,
                "ipv6_enabled": false,
                "name": network,
                "network_interface": self.bridge,
                "subnets": [{"subnet": self.subnet.to_string(), "gateway": gateway.to_string()}],
            }},
        });
        serde_json::to_vec(&options).expect("a JSON value serializes")
    }
}

impl Process for Netavark {
    /// The invocation (setup or teardown) of sample `n`; the options go on stdin.
    fn command(&self, attach: bool, container: &Container, n: usize) -> (Command, Vec<u8>) {
        let mut cmd = Command::new(BINARY);
        cmd.arg("--config")
            .arg(&self.config_dir)
            .arg(if attach { "setup" } else { "teardown" })
            .arg(container.netns_path());
        (cmd, self.options(n))
    }

    fn ifname(&self) -> &'static str {
        IFNAME
    }

    fn bridge(&self) -> &str {
        &self.bridge
    }
}

impl Method for Netavark {
    fn name(&self) -> String {
        "netavark (bridge, internal)".into()
    }

    fn role(&self) -> Role {
        Role::Peer
    }

    fn attach(&mut self, container: &Container, n: usize) -> Result<f64> {
        let (mut cmd, input) = self.command(true, container, n);
        timing::time(&mut cmd, &input)
    }

    fn detach(&mut self, container: &mut Container, n: usize) -> Result<Option<f64>> {
        let (mut cmd, input) = self.command(false, container, n);
        timing::time(&mut cmd, &input).map(Some)
    }
}
