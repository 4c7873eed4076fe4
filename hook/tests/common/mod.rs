//! What the root tests of weave-hook share: a throwaway "host" (the test thread's own network
//! namespace), "containers" (processes in network namespaces of their own), shell commands in
//! either, and the settings of a test's own state directory.
#![allow(dead_code)] // each test file uses its own part of this

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use nix::sched::{unshare, CloneFlags};
use weave_core::id::ContainerId;
use weave_core::oci::{State, Status};
use weave_core::settings::Settings;

/// Moves the calling test thread into a fresh network namespace of its own, with the
/// conditions of a Docker host: br_netfilter on and the FORWARD policy DROP.
pub fn docker_host() {
    bare_host();
    std::fs::write("/proc/sys/net/bridge/bridge-nf-call-iptables", "1").unwrap();
    sh("iptables -w -P FORWARD DROP");
}

/// Moves the calling test thread into a fresh network namespace of its own, loopback up.
pub fn bare_host() {
    unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    sh("ip link set lo up");
}

/// Runs a shell command in the calling thread's namespaces; panics on failure.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The links of the test's host.
pub fn host_links() -> String {
    sh("ip -o link show")
}

/// weave-hook's settings with the test's own state directory, on bridge `weave`.
pub fn settings(dir: &Path) -> Settings {
    Settings {
        state_dir: dir.to_path_buf(),
        ..Settings::defaults()
    }
}

/// A stand-in for a container (or for another network): a process in a network namespace
/// of its own, killed when dropped.
pub struct Container {
    pub id: ContainerId,
    pub child: Child,
}

impl Container {
    pub fn start(id: &str) -> Self {
        Self {
            id: ContainerId::parse(id).unwrap(),
            child: weave_e2e::spawn_in_new_netns(),
        }
    }

    /// A process sharing the test's "host" namespace, like `--network host`.
    pub fn start_in_host_ns(id: &str) -> Self {
        Self {
            id: ContainerId::parse(id).unwrap(),
            child: Command::new("sleep").arg("300").spawn().unwrap(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The OCI state a runtime would give the hook at createRuntime.
    pub fn state(&self, cidr: &str) -> State {
        State {
            id: self.id.clone(),
            status: Status::Creating,
            pid: Some(self.pid()),
            bundle: None,
            annotations: HashMap::from([("weave.cidr".to_string(), cidr.to_string())]),
        }
    }

    /// The same state as JSON, for the binary.
    pub fn state_json(&self, cidr: &str) -> String {
        serde_json::json!({
            "ociVersion": "1.0.2", "id": self.id.as_str(), "status": "creating",
            "pid": self.pid(), "annotations": {"weave.cidr": cidr}
        })
        .to_string()
    }

    /// Runs a shell command inside the container's network namespace; panics on failure.
    pub fn run(&self, cmd: &str) -> String {
        sh(&format!("nsenter -t {} -n sh -c '{cmd}'", self.pid()))
    }

    /// Whether `python3 -c script args...` exits 0 inside the network namespace.
    pub fn python_ok(&self, script: &str, args: &[&str]) -> bool {
        Command::new("nsenter")
            .args(["-t", &self.pid().to_string(), "-n", "python3", "-c", script])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    /// Whether one ping from this container to `ip` is answered within a second.
    pub fn pings(&self, ip: &str) -> bool {
        Command::new("nsenter")
            .args(["-t", &self.pid().to_string(), "-n"])
            .args(["busybox", "ping", "-c", "1", "-W", "1", ip])
            .output()
            .unwrap()
            .status
            .success()
    }

    pub fn ethwe_mac(&self) -> String {
        let link = self.run("ip -o link show ethwe");
        let after = link.split("link/ether ").nth(1).expect("ethwe has a MAC");
        after.split_whitespace().next().unwrap().to_string()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.kill();
    }
}
