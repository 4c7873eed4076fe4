//! The simulated mesh the benchmark runs on: an underlay of its own (a network namespace with
//! a bridge), a 3-member TLS etcd in a namespace of its own on it, and hosts (network
//! namespaces on the underlay, from the e2e harness) each with a real `weave-mesh run`.
//!
//! Everything is dropped in reverse order of creation, also when a measurement fails or
//! panics: agents (by the pid this process started and has not reaped, checked against
//! /proc/PID/cmdline), hosts, etcd, its namespace, the underlay.

use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::sandbox::output;
use anyhow::{bail, Context, Result};
use weave_e2e::etcd::EtcdCluster;
use weave_e2e::mesh::{EtcdNetns, SimHost, Underlay};

/// The etcd members' host numbers on the underlay (192.168.251.N).
const ETCD_HOSTS: [u8; 3] = [201, 202, 203];
/// How long an agent may take to write a state.json with etcd reachable.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// A `weave-mesh run` of one host.
pub struct Agent {
    child: Option<Child>,
    state_dir: PathBuf,
    pub log: PathBuf,
}

impl Agent {
    /// Stops the agent (SIGKILL) if it is still our unreaped child and its command line
    /// still names its state directory.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let cmdline =
                std::fs::read(format!("/proc/{}/cmdline", child.id())).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&*self.state_dir.to_string_lossy()) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A simulated host, with its agent once started.
pub struct Node {
    pub name: String,
    /// Dropped before `sim` (fields drop in order).
    pub agent: Option<Agent>,
    pub sim: SimHost,
}

impl Node {
    pub fn state_dir(&self) -> &Path {
        self.sim.state_dir()
    }

    pub fn netns(&self) -> &str {
        &self.sim.host.name
    }

    /// The agent has started ([`SimHost::agent_ready`]).
    pub fn ready(&self) -> bool {
        self.sim.agent_ready()
    }

    /// Polls [`Node::ready`] every millisecond; the time it took.
    pub fn wait_ready(&self) -> Result<Duration> {
        let start = Instant::now();
        while !self.ready() {
            if start.elapsed() > READY_WITHIN {
                bail!(
                    "the agent of {} wrote no state.json with etcd reachable within {READY_WITHIN:?}; its log:\n{}",
                    self.name,
                    self.agent_log()
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(start.elapsed())
    }

    pub fn agent_log(&self) -> String {
        self.agent
            .as_ref()
            .and_then(|a| std::fs::read_to_string(&a.log).ok())
            .unwrap_or_default()
    }

    /// The remote VTEPs in this host's VXLAN FDB (none while the agent has not made the
    /// device yet).
    pub fn fdb_dsts(&self) -> Result<Vec<Ipv4Addr>> {
        self.sim
            .fdb_remotes()
            .with_context(|| format!("read the FDB of {}", self.name))
    }

    /// How many remote VTEPs this host's VXLAN FDB has.
    pub fn fdb_peers(&self) -> Result<usize> {
        self.fdb_dsts().map(|d| d.len())
    }

    /// Polls this host's FDB every 10 ms until it has `peer`; the instant it did.
    pub fn wait_fdb_has(&self, peer: Ipv4Addr, within: Duration) -> Result<Instant> {
        let start = Instant::now();
        loop {
            if self.fdb_dsts()?.contains(&peer) {
                return Ok(Instant::now());
            }
            if start.elapsed() > within {
                bail!(
                    "{} never had {peer} in its FDB within {within:?}",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The first address weave-hook gave container `id` on this host.
    pub fn address_of(&self, id: &str) -> Result<Ipv4Addr> {
        let path = self.state_dir().join(format!("containers/{id}.json"));
        let text = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
        let record: serde_json::Value = serde_json::from_slice(&text)?;
        record["addrs"][0]
            .as_str()
            .and_then(|a| a.split('/').next())
            .and_then(|a| a.parse().ok())
            .with_context(|| format!("no address in {}", path.display()))
    }
}

/// The underlay, etcd and the hosts.
pub struct World {
    /// Dropped first: agents stop before etcd goes.
    pub nodes: Vec<Node>,
    pub etcd: EtcdCluster,
    _etcd_ns: EtcdNetns,
    pub underlay: Underlay,
    mesh_bin: PathBuf,
    logs: PathBuf,
}

impl World {
    /// An underlay and a healthy 3-member TLS etcd on it, no hosts yet.
    pub fn new(mesh_bin: &Path, logs: &Path) -> Result<Self> {
        let underlay = Underlay::new();
        let etcd_ns = EtcdNetns::new(&underlay, &ETCD_HOSTS);
        let etcd = EtcdCluster::start_in(&etcd_ns.name, &etcd_ns.ips, true);
        std::fs::create_dir_all(logs).with_context(|| format!("create {}", logs.display()))?;
        Ok(Self {
            nodes: Vec::new(),
            etcd,
            _etcd_ns: etcd_ns,
            underlay,
            mesh_bin: mesh_bin.to_path_buf(),
            logs: logs.to_path_buf(),
        })
    }

    /// A host at 192.168.251.`n` (1..=200), without an agent. Returns its index.
    pub fn add_host(&mut self, n: u8) -> usize {
        let sim = SimHost::new(&self.underlay, n);
        self.nodes.push(Node {
            name: format!("bench{n}"),
            agent: None,
            sim,
        });
        self.nodes.len() - 1
    }

    /// Starts host `i`'s agent (does not wait for it).
    pub fn start_agent(&mut self, i: usize) -> Result<()> {
        let node = &self.nodes[i];
        let log = self.logs.join(format!("{}.log", node.name));
        let file =
            std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let mut cmd = node.sim.host.command(&self.mesh_bin);
        // SAFETY: only an async-signal-safe syscall between fork and exec. The agent (nsenter
        // execs it in place) dies with weave-bench even when weave-bench is killed; the
        // signal follows the thread that spawned it, the main thread here.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .args(self.etcd.mesh_flags())
            .arg("run")
            .args(["--name", &node.name])
            .args(["--advertise", &node.sim.addr().to_string()])
            .arg("--state-dir")
            .arg(node.state_dir())
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("start {}", self.mesh_bin.display()))?;
        self.nodes[i].agent = Some(Agent {
            child: Some(child),
            state_dir: self.nodes[i].state_dir().to_path_buf(),
            log,
        });
        Ok(())
    }

    /// etcd's view: (keys under /weave/, revision, database bytes).
    pub fn etcd_load(&self) -> Result<(usize, u64, u64)> {
        let keys = output(
            self.etcdctl()
                .args(["get", "--prefix", "/weave/", "--keys-only"]),
        )?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count();
        let status = output(
            self.etcdctl()
                .arg(format!("--endpoints={}", self.etcd.endpoint(0)))
                .args(["endpoint", "status", "-w", "json"]),
        )?;
        let v: serde_json::Value =
            serde_json::from_str(&status).context("etcdctl endpoint status")?;
        let first = &v[0]["Status"];
        let revision = first["header"]["revision"].as_u64().unwrap_or(0);
        let db = first["dbSize"].as_u64().unwrap_or(0);
        Ok((keys, revision, db))
    }

    fn etcdctl(&self) -> Command {
        let (ca, cert, key) = self.etcd.client_tls();
        let mut cmd = self.etcd.command("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.etcd.endpoints().join(",")))
            .arg("--cacert")
            .arg(ca)
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key);
        cmd
    }
}
