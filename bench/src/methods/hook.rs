//! weave-hook as a runtime runs it: a new process per stage, the OCI state on stdin.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use ipnet::Ipv4Net;
use serde_json::json;

use super::{container_id, nth_addr, Method, Process, Role};
use crate::sandbox::Container;
use crate::timing;

/// Where each attach gets its address from.
#[derive(Debug, Clone)]
pub enum Cidr {
    /// `weave.cidr=net:<subnet>`: allocated by weave-hook's store.
    Allocate(Ipv4Net),
    /// `weave.cidr=<address>`: the `n`-th address of the subnet, as netavark is given one.
    Exact(Ipv4Net),
}

pub struct WeaveHook {
    pub label: String,
    pub tag: String,
    pub binary: PathBuf,
    pub bridge: String,
    pub state_dir: PathBuf,
    pub bundle: PathBuf,
    pub cidr: Cidr,
    pub detach: DetachWhen,
    /// `Ours` for the release build; `Probe` for a prototype measured beside it.
    pub role: Role,
}

/// When the measured detach runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetachWhen {
    /// The container still runs: the veth exists and must be deleted, as for every peer.
    Running,
    /// After the container exited and its namespace went with it (plain runc): the veth is
    /// usually gone already.
    Exited,
    /// After the container exited, its namespace still held (Docker keeps it until after
    /// the runtime's delete, when poststop runs): the veth still exists.
    ExitedNetnsHeld,
}

impl WeaveHook {
    /// The weave-hook process for `stage` (attach or detach); the state goes on its stdin.
    fn process(&self, stage: &str) -> Command {
        let mut cmd = Command::new(&self.binary);
        // args[0] as runtimes pass it (config.json hooks' "args" start with the name).
        cmd.arg0("weave-hook")
            .arg("--bridge")
            .arg(&self.bridge)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg(stage);
        cmd
    }

    fn cidr(&self, n: usize) -> String {
        match self.cidr {
            Cidr::Allocate(net) => format!("net:{net}"),
            Cidr::Exact(net) => nth_addr(net, n).to_string(),
        }
    }

    /// The OCI state runc hands a createRuntime hook.
    pub fn creating_state(&self, container: &Container, n: usize) -> Vec<u8> {
        let cidr = self.cidr(n);
        state(
            &self.tag,
            n,
            "creating",
            Some(container.pid()),
            &self.bundle,
            &cidr,
        )
    }

    /// The OCI state runc hands a poststop hook: no pid.
    pub fn stopped_state(&self, n: usize) -> Vec<u8> {
        state(&self.tag, n, "stopped", None, &self.bundle, &self.cidr(n))
    }
}

/// An OCI state as runc writes it to a hook's stdin.
fn state(
    tag: &str,
    n: usize,
    status: &str,
    pid: Option<i32>,
    bundle: &Path,
    cidr: &str,
) -> Vec<u8> {
    let mut state = json!({
        "ociVersion": "1.0.2-dev",
        "id": container_id(tag, n),
        "status": status,
        "bundle": bundle,
        "annotations": {"weave.cidr": cidr},
    });
    if let Some(pid) = pid {
        state["pid"] = json!(pid);
    }
    serde_json::to_vec(&state).expect("a JSON value serializes")
}

/// Entries of a directory (a missing one has none).
fn entries(dir: &Path) -> Result<usize> {
    match std::fs::read_dir(dir) {
        Ok(d) => Ok(d.count()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e).with_context(|| format!("read {}", dir.display())),
    }
}

impl Method for WeaveHook {
    fn name(&self) -> String {
        self.label.clone()
    }

    fn role(&self) -> Role {
        self.role
    }

    fn attach(&mut self, container: &Container, n: usize) -> Result<f64> {
        let (mut cmd, input) = self.command(true, container, n);
        timing::time(&mut cmd, &input)
    }

    fn detach(&mut self, container: &mut Container, n: usize) -> Result<Option<f64>> {
        match self.detach {
            DetachWhen::Running => {}
            DetachWhen::Exited => container.stop(),
            DetachWhen::ExitedNetnsHeld => {
                container.hold_netns()?;
                container.stop();
            }
        }
        let (mut cmd, input) = self.command(false, container, n);
        let took = timing::time(&mut cmd, &input)?;
        self.wait_for_deletion(n)?;
        Ok(Some(took))
    }
}

/// How long a detach's background deletion of the host veth may take before the harness
/// goes on anyway.
const DELETION_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

impl WeaveHook {
    /// Waits, untimed, until the veth that detach deletes in a background child is gone:
    /// the next sample's attach would otherwise meet that deletion in the kernel (it holds
    /// the RTNL lock for longer the more ports the bridge has), which the floor's
    /// synchronous deletion never leaves behind, and measure it as its own.
    fn wait_for_deletion(&self, n: usize) -> Result<()> {
        let id = weave_core::id::ContainerId::parse(&container_id(&self.tag, n))
            .context("a benchmark container id")?;
        let veth = weave_core::settings::host_veth_name(&id);
        let mut nl = weave_hook::netlink::Netlink::open().context("open netlink socket")?;
        let deadline = std::time::Instant::now() + DELETION_PATIENCE;
        while nl.link_by_name(&veth)?.is_some() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Ok(())
    }
}

impl Process for WeaveHook {
    fn command(&self, attach: bool, container: &Container, n: usize) -> (Command, Vec<u8>) {
        if attach {
            (self.process("attach"), self.creating_state(container, n))
        } else {
            (self.process("detach"), self.stopped_state(n))
        }
    }

    fn ifname(&self) -> &'static str {
        weave_core::settings::CONTAINER_IFNAME
    }

    fn bridge(&self) -> &str {
        &self.bridge
    }

    /// Address files and container records still in weave-hook's store.
    fn leftovers(&self) -> Result<usize> {
        Ok(entries(&self.state_dir.join("addrs"))? + entries(&self.state_dir.join("containers"))?)
    }
}
