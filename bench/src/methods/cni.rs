//! The CNI reference bridge plugin with host-local IPAM (Debian's containernetworking-plugins),
//! called as a container runtime calls it: environment variables and the config on stdin.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;
use ipnet::Ipv4Net;
use serde_json::json;

use super::{container_id, Method, Process, Role};
use crate::sandbox::Container;
use crate::timing;

pub const PLUGIN_DIR: &str = "/usr/lib/cni";
pub const IFNAME: &str = "eth0";

pub struct Cni {
    pub bridge: String,
    pub subnet: Ipv4Net,
    /// host-local's store of reservations.
    pub data_dir: PathBuf,
}

impl Cni {
    fn config(&self) -> Vec<u8> {
        let config = json!({
            "cniVersion": "1.0.0",
            "name": self.bridge,
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": false,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": self.subnet.to_string()}]],
                "dataDir": self.data_dir,
            },
        });
        serde_json::to_vec(&config).expect("a JSON value serializes")
    }
}

impl Process for Cni {
    /// The plugin invocation (ADD or DEL) of sample `n`; the config goes on stdin.
    fn command(&self, attach: bool, container: &Container, n: usize) -> (Command, Vec<u8>) {
        let mut cmd = Command::new(format!("{PLUGIN_DIR}/bridge"));
        cmd.env("CNI_COMMAND", if attach { "ADD" } else { "DEL" })
            .env("CNI_CONTAINERID", container_id("cni", n))
            .env("CNI_NETNS", container.netns_path())
            .env("CNI_IFNAME", IFNAME)
            .env("CNI_PATH", PLUGIN_DIR);
        (cmd, self.config())
    }

    fn ifname(&self) -> &'static str {
        IFNAME
    }

    fn bridge(&self) -> &str {
        &self.bridge
    }
}

impl Method for Cni {
    fn name(&self) -> String {
        "CNI bridge + host-local".into()
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
