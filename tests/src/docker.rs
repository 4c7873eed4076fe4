//! A Docker daemon of the test's own: its own data root, exec root, socket, pid file and
//! daemon.json (declaring `runtimes.weave` = the built weave-runtime with the test's
//! `--weave-*` flags in `runtimeArgs`), its own managed containerd, all inside a
//! [`TestHost`] so docker0, the weave bridge and Docker's firewall rules (FORWARD DROP,
//! br_netfilter) live in a throwaway network namespace, and in a private mount namespace so
//! no container mount can outlive the daemon. Dropping it stops everything it started, by pid.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::{bin, run_ok, Rootfs, TestHost};

pub const IMAGE: &str = "bb:latest";

/// Longest any single docker CLI call may take before the test gives up on it.
const CALL_TIMEOUT_SECS: &str = "120";

pub struct Dockerd<'h> {
    host: &'h TestHost,
    dir: tempfile::TempDir,
    daemon: Child,
}

impl<'h> Dockerd<'h> {
    /// Starts dockerd with `runtimes.weave` = weave-runtime `runtime_args...`; waits until
    /// it answers.
    pub fn start(host: &'h TestHost, runtime_args: &[String]) -> Self {
        let dir = Self::new_dir();
        let config = json!({
            "runtimes": {"weave": {"path": bin("weave-runtime"), "runtimeArgs": runtime_args}},
            // docker0 inside the test host, in the project's test range.
            "bip": "10.2.250.1/24",
            "storage-driver": "vfs",
        });
        fs::write(Self::config_path(dir.path()), config.to_string()).unwrap();
        Self::start_with_config(host, dir)
    }

    /// A directory for a daemon: the caller writes [`Dockerd::config_path`] in it, then
    /// starts the daemon with [`Dockerd::start_with_config`].
    pub fn new_dir() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("weave-dockerd")
            .tempdir()
            .unwrap()
    }

    /// The daemon.json a daemon on `dir` reads.
    pub fn config_path(dir: &Path) -> PathBuf {
        dir.join("daemon.json")
    }

    /// Starts dockerd on `dir`/daemon.json, which the caller wrote; waits until it answers.
    pub fn start_with_config(host: &'h TestHost, dir: tempfile::TempDir) -> Self {
        Self::start_with_setup(host, dir, None)
    }

    /// As [`Dockerd::start_with_config`], with `setup` (a shell command, e.g. a mount) run
    /// first in the daemon's private mount namespace: what it mounts only the daemon and
    /// what it starts (containerd, runc, hooks) see, and it goes away with them.
    pub fn start_with_setup(
        host: &'h TestHost,
        dir: tempfile::TempDir,
        setup: Option<&str>,
    ) -> Self {
        let log = fs::File::create(dir.path().join("dockerd.log")).unwrap();
        // nsenter, unshare (without --fork) and sh's exec run in place: the child's pid is
        // dockerd's.
        let mut daemon = host.command("unshare");
        daemon.args(["--mount", "--propagation", "private", "--"]);
        match setup {
            Some(setup) => {
                daemon.args(["sh", "-c", &format!("{setup} && exec dockerd \"$@\""), "sh"])
            }
            None => daemon.arg("dockerd"),
        };
        let daemon = daemon
            .arg("--config-file")
            .arg(Self::config_path(dir.path()))
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("dockerd.pid"))
            .arg("-H")
            .arg(format!(
                "unix://{}",
                dir.path().join("docker.sock").display()
            ))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        let dockerd = Self { host, dir, daemon };
        dockerd.wait_ready();
        dockerd
    }

    pub fn pid(&self) -> u32 {
        self.daemon.id()
    }

    pub fn pidfile(&self) -> PathBuf {
        self.dir.path().join("dockerd.pid")
    }

    /// The daemon's address, as `docker -H` and DOCKER_HOST take it.
    pub fn socket_uri(&self) -> String {
        format!("unix://{}", self.dir.path().join("docker.sock").display())
    }

    /// The names of the runtimes the daemon knows now (`docker info`).
    pub fn runtimes(&self) -> String {
        self.ok(&[
            "info",
            "--format",
            "{{range $k, $v := .Runtimes}}{{$k}} {{end}}",
        ])
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let ok = self
                .docker()
                .arg("version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("dockerd did not come up in 60 s; its log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The docker CLI talking to this daemon, bounded in time.
    pub fn docker(&self) -> Command {
        let mut cmd = Command::new("timeout");
        cmd.args([CALL_TIMEOUT_SECS, "docker"])
            .env("DOCKER_HOST", self.socket_uri())
            .env("DOCKER_CONFIG", self.dir.path().join("cli"))
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.docker().args(args).output().unwrap()
    }

    /// Runs `docker args...`, panics with its output unless it succeeds.
    pub fn ok(&self, args: &[&str]) -> String {
        run_ok(self.docker().args(args))
    }

    /// Imports `rootfs` as [`IMAGE`] (there is no registry to pull from).
    pub fn import(&self, rootfs: &Rootfs) {
        let tar = self.dir.path().join("rootfs.tar");
        rootfs.tar_to(&tar);
        run_ok(self.docker().arg("import").arg(&tar).arg(IMAGE));
    }

    pub fn host(&self) -> &TestHost {
        self.host
    }

    /// Pids of the processes this daemon started (containerd, shims, containers' runc) that
    /// are still alive: every one names a path under the daemon's own directory.
    fn leftover_pids(&self) -> Vec<i32> {
        let mine = self.dir.path().to_string_lossy().into_owned();
        let Ok(procs) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        procs
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                String::from_utf8_lossy(&cmdline).contains(&mine)
            })
            .collect()
    }
}

fn kill(pid: i32, signal: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid, signal) };
}

impl Drop for Dockerd<'_> {
    fn drop(&mut self) {
        // Removing the containers first runs their poststop hooks, as a user's `docker rm` would.
        let _ = self
            .docker()
            .args(["rm", "--force"])
            .args(
                String::from_utf8_lossy(&self.run(&["ps", "-aq"]).stdout)
                    .split_whitespace()
                    .collect::<Vec<_>>(),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        kill(self.daemon.id() as i32, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.daemon.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if !matches!(self.daemon.try_wait(), Ok(Some(_))) {
            kill(self.daemon.id() as i32, libc::SIGKILL);
            let _ = self.daemon.wait();
        }
        for pid in self.leftover_pids() {
            kill(pid, libc::SIGKILL);
        }
    }
}

/// Where a container's resolv.conf written by weave-runtime lives under `state_dir`.
pub fn resolv_conf(state_dir: &Path, container_id: &str) -> PathBuf {
    state_dir
        .join("resolv")
        .join(format!("{container_id}.conf"))
}
