//! A pipework-style shell script (bench/pipework-style.sh): one iproute2 process per step,
//! the peer moved into the container's namespace after creation. Detach is `ip link del`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;
use ipnet::Ipv4Net;

use super::{nth_addr, Method, Process, Role};
use crate::sandbox::{run_quiet, Container};
use crate::timing;

pub struct Pipework {
    pub script: PathBuf,
    pub bridge: String,
    pub subnet: Ipv4Net,
}

fn host_ifname(n: usize) -> String {
    format!("wvbp{n}")
}

impl Method for Pipework {
    fn name(&self) -> String {
        "pipework-style iproute2 script".into()
    }

    fn role(&self) -> Role {
        Role::Peer
    }

    /// pipework expects the bridge to exist (it would otherwise create it, once).
    fn prepare(&mut self) -> Result<()> {
        run_quiet(Command::new("ip").args(["link", "add", &self.bridge, "type", "bridge"]))?;
        run_quiet(Command::new("ip").args(["link", "set", &self.bridge, "up"]))
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

impl Process for Pipework {
    fn command(&self, attach: bool, container: &Container, n: usize) -> (Command, Vec<u8>) {
        let mut cmd;
        if attach {
            cmd = Command::new("sh");
            cmd.arg(&self.script)
                .arg(&self.bridge)
                .arg(container.pid().to_string())
                .arg(nth_addr(self.subnet, n).to_string())
                .arg(host_ifname(n));
        } else {
            cmd = Command::new("ip");
            cmd.args(["link", "del", &host_ifname(n)]);
        }
        (cmd, Vec::new())
    }

    fn ifname(&self) -> &'static str {
        "eth1"
    }

    fn bridge(&self) -> &str {
        &self.bridge
    }
}
