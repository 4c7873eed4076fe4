//! What the agent tests share: agents run as processes in a namespace, clients of the
//! test's etcd, waiting.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use weave_core::layout::StateDir;
use weave_core::mesh::{self, MeshState, Reply, Request};
use weave_e2e::etcd::EtcdCluster;
use weave_mesh::cluster::Cluster;
use weave_mesh::etcd::{Etcd, EtcdConfig};
use weave_mesh::keys::{Keys, DEFAULT_PREFIX};

pub const BIN: &str = env!("CARGO_BIN_EXE_weave-mesh");

pub fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

pub fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// A client of the test cluster, for checks (used inside `etcd.run_in`).
pub fn cluster_of(etcd: &EtcdCluster) -> Cluster {
    Cluster {
        etcd: Etcd::connect(&EtcdConfig {
            endpoints: etcd.endpoints(),
            cacert: None,
            cert: None,
            key: None,
            timeout: Duration::from_secs(2),
        })
        .unwrap(),
        keys: Keys::new(DEFAULT_PREFIX),
        block_prefix: 26,
    }
}

pub fn wait_for(what: &str, within: Duration, ok: impl FnMut() -> bool) -> Duration {
    wait_or(within, ok, || what.to_string())
}

/// [`wait_for`], with the failure's message made only when it fails (an agent's log then).
pub fn wait_or(
    within: Duration,
    mut ok: impl FnMut() -> bool,
    what: impl Fn() -> String,
) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < within,
            "{}: not within {within:?}",
            what()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

/// One `weave-mesh run` in the etcd namespace, with a state directory of its own; killed
/// (by the pid we started, checked against its command line) when dropped.
pub struct AgentProc {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub state: PathBuf,
    pub name: String,
}

impl AgentProc {
    pub fn state_dir(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("state")
    }

    /// An agent of the test's etcd, without a data path.
    pub fn spawn(etcd: &EtcdCluster, name: &str, advertise: &str, state: Option<PathBuf>) -> Self {
        let endpoints = etcd.endpoints().join(",");
        Self::spawn_with(
            etcd.netns(),
            &endpoints,
            name,
            advertise,
            state,
            &["--no-overlay"],
        )
    }

    /// `weave-mesh run` in network namespace `netns` (lease TTL 2 s, grace 3 s), with `extra`
    /// flags of `run`.
    pub fn spawn_with(
        netns: &str,
        endpoints: &str,
        name: &str,
        advertise: &str,
        state: Option<PathBuf>,
        extra: &[&str],
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("weave-mesh-")
            .tempdir()
            .unwrap();
        let log = std::fs::File::create(dir.path().join(format!("{name}.log"))).unwrap();
        let state = state.unwrap_or_else(|| Self::state_dir(&dir));
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{netns}"))
            .args(["--", BIN, "--etcd", endpoints, "--etcd-timeout", "1", "run"])
            .args(["--name", name, "--advertise", advertise])
            .args(["--lease-ttl", "2"])
            .args(match extra.contains(&"--reclaim-after") {
                true => &[][..],
                false => &["--reclaim-after", "3"][..],
            })
            .arg("--state-dir")
            .arg(&state)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Self {
            child: Some(child),
            dir,
            state,
            name: name.into(),
        }
    }

    /// Starts an agent and waits until it has registered (state.json valid).
    pub fn start(etcd: &EtcdCluster, name: &str, advertise: &str) -> Self {
        let agent = Self::spawn(etcd, name, advertise, None);
        agent.wait_registered();
        agent
    }

    /// Waits until the agent serves its socket, has registered and serves claims (a
    /// release of an address nobody holds is answered Ok only then).
    pub fn wait_registered(&self) {
        self.wait_serving();
        let probe = Request::ReleaseAddr {
            addr: Ipv4Addr::UNSPECIFIED,
            id: "probe".into(),
        };
        wait_or(
            Duration::from_secs(15),
            || {
                mesh::ask(&self.layout(), &probe, mesh::REQUEST_TIMEOUT)
                    .is_ok_and(|r| r == Reply::Ok)
            },
            || format!("agent {} ready ({})", self.name, self.log()),
        );
        wait_or(
            Duration::from_secs(15),
            || {
                MeshState::read(&self.layout())
                    .ok()
                    .flatten()
                    .is_some_and(|s| s.etcd_reachable && s.blocks_valid(mesh::boottime_ms()))
            },
            || format!("agent {} registered ({})", self.name, self.log()),
        );
    }

    pub fn wait_serving(&self) {
        let socket = self.layout().mesh_socket();
        wait_or(
            Duration::from_secs(15),
            || std::os::unix::net::UnixStream::connect(&socket).is_ok(),
            || format!("agent {} serving ({})", self.name, self.log()),
        );
    }

    pub fn layout(&self) -> StateDir {
        StateDir::new(&self.state)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{}.log", self.name)))
            .unwrap_or_default()
    }

    pub fn ask(&self, request: &Request) -> Reply {
        mesh::ask(&self.layout(), request, mesh::REQUEST_TIMEOUT).unwrap()
    }

    pub fn state(&self) -> MeshState {
        MeshState::read(&self.layout()).unwrap().unwrap()
    }

    /// Waits for the process to exit by itself; returns its success and log.
    pub fn wait_exit(&mut self, within: Duration) -> (bool, String) {
        let mut child = self.child.take().unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (status.success(), self.log());
            }
            if start.elapsed() > within {
                self.child = Some(child);
                panic!("agent {} still runs after {within:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` and reaps the agent; returns whether it exited with success.
    pub fn signal(&mut self, signal: libc::c_int) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", child.id())).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&*self.state.to_string_lossy()) {
            // SAFETY: kill(2) of our own unreaped child, whose command line we just checked.
            unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        }
        child.wait().is_ok_and(|s| s.success())
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.signal(libc::SIGKILL);
    }
}
