//! Simulated hosts for the mesh tests: an underlay (a network namespace of its own with a
//! bridge) and hosts on it (each a [`TestHost`] with a veth to the underlay, an address of
//! the test's own underlay network, a state directory and a runc root of its own).
//!
//! Addresses are only ever put inside these namespaces. Dropping a guard removes what it
//! made, also when the test panics: the host's namespace (its veth, bridge, VXLAN device
//! and tables go with it), the underlay's namespace, the state directory.

use std::collections::BTreeSet;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use weave_core::settings::DEFAULT_BRIDGE;
use weave_hook::netlink::FdbEntry;

use crate::etcd::EtcdCluster;
use crate::{bin, run_ok, sh, unique, Runc, TestHost};

/// The underlay network of the simulated hosts: 192.168.251.0/24, inside these namespaces
/// only.
pub const UNDERLAY_NET: &str = "192.168.251";

/// The underlay: a network namespace with a bridge joining the simulated hosts.
pub struct Underlay {
    pub netns: String,
    /// The MTU of every host's underlay interface.
    pub mtu: u32,
}

impl Underlay {
    /// The bridge inside the underlay's namespace.
    pub const BRIDGE: &'static str = "ul0";

    /// An underlay with the usual Ethernet MTU (the overlay gets 1450).
    pub fn new() -> Self {
        Self::with_mtu(1500)
    }

    /// An underlay whose hosts' interfaces have MTU `mtu` (1550 gives a 1500-byte overlay).
    pub fn with_mtu(mtu: u32) -> Self {
        let netns = unique("wvul");
        sh(&format!("ip netns add {netns}"));
        let underlay = Self { netns, mtu };
        underlay.sh(&format!(
            "ip link set lo up && ip link add {b} type bridge && ip link set {b} mtu {mtu} up",
            b = Self::BRIDGE
        ));
        underlay
    }

    /// Runs a shell script inside the underlay's namespace; panics on failure.
    pub fn sh(&self, script: &str) -> String {
        run_ok(
            Command::new("nsenter")
                .arg(format!("--net=/run/netns/{}", self.netns))
                .args(["--", "sh", "-c", script]),
        )
    }
}

impl Default for Underlay {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Underlay {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

/// A simulated host: its own network namespace (with a Docker host's firewall, as every
/// [`TestHost`]), `eth0` on the underlay at 192.168.251.`n`/24, a state directory.
pub struct SimHost {
    pub host: TestHost,
    pub n: u8,
    pub state_dir: tempfile::TempDir,
}

impl SimHost {
    pub fn new(underlay: &Underlay, n: u8) -> Self {
        let host = TestHost::new();
        let sim = Self {
            host,
            n,
            state_dir: tempfile::tempdir().unwrap(),
        };
        let port = unique("wvu");
        let mtu = underlay.mtu;
        sh(&format!(
            "ip -n {ul} link add {port} mtu {mtu} type veth peer name eth0 netns {h} mtu {mtu} && \
             ip -n {ul} link set {port} master {b} up && \
             ip -n {h} addr add {addr}/24 dev eth0 && ip -n {h} link set eth0 up",
            ul = underlay.netns,
            h = sim.host.name,
            b = Underlay::BRIDGE,
            addr = sim.addr(),
        ));
        sim
    }

    /// This host's underlay address.
    pub fn addr(&self) -> Ipv4Addr {
        format!("{UNDERLAY_NET}.{}", self.n).parse().unwrap()
    }

    pub fn state_dir(&self) -> &Path {
        self.state_dir.path()
    }

    /// The weave-hook flags that select this host's state directory, plus `extra`.
    pub fn hook_flags<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut flags = vec!["--state-dir", self.state_dir.path().to_str().unwrap()];
        flags.extend(extra);
        flags
    }

    /// weave-hook run inside this host's network namespace, on its state directory.
    pub fn hook(&self) -> Command {
        let mut cmd = self.host.command(bin("weave-hook"));
        cmd.arg("--state-dir").arg(self.state_dir.path());
        cmd
    }

    /// A runc of this host (runc under `nsenter --net`, a root of its own).
    pub fn runc(&self) -> Runc<'_> {
        Runc::new(&self.host)
    }

    /// Runs a shell script inside this host's network namespace; panics on failure.
    pub fn sh(&self, script: &str) -> String {
        self.host.sh(script)
    }

    /// The first address of container `id`'s record on this host.
    pub fn address_of(&self, id: &str) -> Ipv4Addr {
        let path = self.state_dir().join(format!("containers/{id}.json"));
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let net = record["addrs"][0].as_str().unwrap();
        net.split('/').next().unwrap().parse().unwrap()
    }

    /// The agent's state.json on this host, as JSON (`None` while absent).
    pub fn mesh_state(&self) -> Option<serde_json::Value> {
        let text = std::fs::read(self.state_dir().join("mesh/state.json")).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// The entries of this host's VXLAN FDB, flood and learned (none while the device is not
    /// there): read by netlink inside the host's namespace, as the overlay reads them.
    pub fn fdb(&self) -> Result<Vec<FdbEntry>, weave_hook::error::Error> {
        self.in_netns(|| weave_hook::overlay::fdb(DEFAULT_BRIDGE))
    }

    /// The remote VTEPs in this host's VXLAN FDB, each once, in order.
    pub fn fdb_remotes(&self) -> Result<Vec<Ipv4Addr>, weave_hook::error::Error> {
        let remotes: BTreeSet<Ipv4Addr> = self.fdb()?.iter().map(|e| e.dst).collect();
        Ok(remotes.into_iter().collect())
    }

    /// The agent has started: its state.json says etcd is reachable and has the overlay's
    /// MTU (written at the end of the agent's start; etcd_reachable alone comes earlier).
    pub fn agent_ready(&self) -> bool {
        self.mesh_state()
            .is_some_and(|s| s["etcd_reachable"] == true && s["mtu"].is_u64())
    }

    /// The agent's state.json says etcd is reachable (`true`) or not (`false`).
    pub fn sees_etcd(&self, reachable: bool) -> bool {
        self.mesh_state()
            .is_some_and(|s| s["etcd_reachable"] == reachable)
    }

    /// Runs `f` on a thread inside this host's network namespace (netlink sockets,
    /// /proc/sys/net and processes it starts are the host's), and returns its result.
    pub fn in_netns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_netns(&self.host.name, f)
    }
}

/// Runs `f` on a thread that joined the named network namespace `/run/netns/<netns>`; a
/// panic in `f` is the caller's.
pub fn in_netns<T: Send>(netns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/run/netns/{netns}");
    std::thread::scope(|scope| {
        let thread = scope.spawn(|| {
            let ns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: setns(2) on a descriptor we own; it changes only this thread.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        });
        match thread.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// A network namespace of the test's own for the etcd members, on the underlay: `eth0`
/// with one address per member.
pub struct EtcdNetns {
    pub name: String,
    /// The members' addresses, in the order given.
    pub ips: Vec<Ipv4Addr>,
}

impl EtcdNetns {
    /// `hosts`: the members' host numbers on the underlay (`192.168.251.N`).
    pub fn new(underlay: &Underlay, hosts: &[u8]) -> Self {
        let name = unique("wvetc");
        sh(&format!("ip netns add {name}"));
        let ips = hosts
            .iter()
            .map(|n| format!("{UNDERLAY_NET}.{n}").parse().unwrap())
            .collect();
        let ns = Self { name, ips };
        let port = unique("wve");
        let addrs: String = ns
            .ips
            .iter()
            .map(|ip| format!(" && ip -n {} addr add {ip}/24 dev eth0", ns.name))
            .collect();
        sh(&format!(
            "ip -n {ul} link add {port} type veth peer name eth0 netns {h} && \
             ip -n {ul} link set {port} master {b} up && \
             ip -n {h} link set lo up && ip -n {h} link set eth0 up{addrs}",
            ul = underlay.netns,
            h = ns.name,
            b = Underlay::BRIDGE,
        ));
        ns
    }
}

impl Drop for EtcdNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A `weave-mesh run` of a simulated host, stopped by its (unreaped, so never reused) pid.
pub struct Agent {
    pub name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Agent {
    /// `weave-mesh run` on `sim` as host `name`, a TLS client of `etcd`, on the host's state
    /// directory, with `run_flags` after those, logging at debug level to `<logs>/<name>.log`.
    pub fn start(
        sim: &SimHost,
        name: &str,
        etcd: &EtcdCluster,
        logs: &Path,
        run_flags: &[&str],
    ) -> Self {
        let log = logs.join(format!("{name}.log"));
        let file = File::create(&log).unwrap();
        let child = sim
            .host
            .command(bin("weave-mesh"))
            .args(etcd.mesh_flags())
            .arg("run")
            .args(["--name", name])
            .args(["--advertise", &sim.addr().to_string()])
            .arg("--state-dir")
            .arg(sim.state_dir())
            .args(run_flags)
            .args(["--log-level", "debug"])
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start weave-mesh");
        Self {
            name: name.into(),
            child: Some(child),
            log,
        }
    }

    /// What the agent logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL (no goodbye to etcd: its lease must run out).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}
