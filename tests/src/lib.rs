//! Harness for the end-to-end tests: the built binaries, busybox bundles for real runc,
//! throwaway "host" network namespaces with a Docker host's firewall, cleanup guards.
//!
//! Every guard removes what it made when dropped, also when the test fails.

pub mod docker;
pub mod etcd;
pub mod mesh;
pub mod podman;
pub mod runc_env;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// True when the test may run. Outside CI a non-root run skips loudly; in CI it fails.
pub fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} needs root, and CI must run it"
    );
    eprintln!("SKIPPED: {test} needs root (not in CI, so skipping)");
    false
}

/// Spawns `sleep` in a network namespace of its own (a stand-in for a container) and returns
/// once the namespace exists: `unshare` execs `sleep` only after unsharing.
pub fn spawn_in_new_netns() -> std::process::Child {
    let child = Command::new("unshare")
        .args(["-n", "sleep", "300"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let me = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    while std::fs::read_link(format!("/proc/{}/ns/net", child.id()))
        .ok()
        .is_none_or(|ns| ns == me)
    {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child
}

/// True when `program` is on PATH. In CI a missing prerequisite fails the test; outside CI
/// the test skips loudly.
pub fn tool_or_skip(test: &str, program: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} needs {program}; the README's test command installs it"
    );
    eprintln!("SKIPPED: {test} needs {program}, which is not installed");
    false
}

/// Directory of the workspace's built binaries (target/<profile>), found from the running
/// test executable (target/<profile>/deps/<test>).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace` first",
        path.display()
    );
    path
}

/// Runs a command; panics with its stderr when it fails.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn sh(cmd: &str) -> String {
    run_ok(Command::new("sh").arg("-c").arg(cmd))
}

/// A command's stdout then stderr, as text (for assertions and their messages).
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Polls `cond` every 10 ms, up to `limit`; returns how long it took to hold, or `None`.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `runc run --detach` of `bundle` as container `id`; panics with runc's words on failure.
/// A host program run in the network namespace of process `pid` (a container's: the
/// host's tools, iputils ping with `-M do` among them, inside its network).
pub fn in_netns_of(pid: u32, args: &[&str]) -> Output {
    Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .arg("--")
        .args(args)
        .output()
        .unwrap()
}

pub fn start(runc: &Runc, id: &str, bundle: &Bundle) {
    let out = runc.run_detached(id, bundle);
    assert!(out.status.success(), "{id}: {}", text(&out));
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A name unique to this process and call, for netns, containers and the like.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A throwaway "host": a named network namespace with a Docker host's firewall
/// (br_netfilter on, FORWARD policy DROP). The hook, run by a runtime started inside it,
/// creates its bridge and rules there, never on the machine's real network.
pub struct TestHost {
    pub name: String,
}

impl TestHost {
    pub fn new() -> Self {
        let name = unique("wvt");
        sh(&format!("ip netns add {name}"));
        let host = Self { name };
        host.sh("ip link set lo up && echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables && iptables -w -P FORWARD DROP");
        host
    }

    /// A command that runs inside this host's network namespace (and nothing else of it).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.name))
            .arg("--")
            .arg(program);
        cmd
    }

    pub fn sh(&self, script: &str) -> String {
        run_ok(self.command("sh").arg("-c").arg(script))
    }

    /// Names of this host's links that start with `prefix`.
    pub fn links(&self, prefix: &str) -> Vec<String> {
        self.sh("ip -o link show")
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap().to_string())
            .filter(|n| n.starts_with(prefix))
            .collect()
    }
}

impl TestHost {
    /// The host veths (`vethwe*`) still there once detach's background deletion had time
    /// to finish: waits up to 2 s for them to go.
    pub fn veths_left(&self) -> Vec<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            let left = self.links("vethwe");
            if left.is_empty() || std::time::Instant::now() > deadline {
                return left;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Default for TestHost {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        // Deleting the namespace deletes its bridge, veths and firewall rules with it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A busybox-static root filesystem, shared read-only by every container of a test.
pub struct Rootfs {
    pub dir: tempfile::TempDir,
}

impl Rootfs {
    pub fn busybox() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy("/bin/busybox", bin.join("busybox"))
            .expect("busybox-static is installed (/bin/busybox)");
        for applet in [
            "sh", "ip", "ping", "sleep", "cat", "echo", "hostname", "nslookup", "true", "ls",
            "grep",
        ] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        for d in ["proc", "sys", "dev", "etc", "tmp"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("etc/resolv.conf"), "").unwrap();
        std::fs::write(dir.path().join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Packs the root filesystem into the tar file `tar`, as `docker import` and
    /// `podman import` take it (there is no registry to pull from).
    pub fn tar_to(&self, tar: &Path) {
        run_ok(
            Command::new("tar")
                .arg("-C")
                .arg(self.path())
                .arg("-cf")
                .arg(tar)
                .arg("."),
        );
    }
}

/// An OCI bundle for runc: `runc spec`'s defaults, adapted for tests.
pub struct Bundle {
    pub dir: tempfile::TempDir,
    pub config: Value,
}

impl Bundle {
    pub fn new(rootfs: &Rootfs, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        run_ok(Command::new("runc").arg("spec").current_dir(dir.path()));
        let text = std::fs::read(dir.path().join("config.json")).unwrap();
        let mut config: Value = serde_json::from_slice(&text).unwrap();
        config["root"] = json!({"path": rootfs.path(), "readonly": true});
        config["process"]["terminal"] = json!(false);
        config["process"]["args"] = json!(args);
        // busybox ping needs a raw socket.
        for set in ["bounding", "effective", "permitted"] {
            if let Some(caps) = config["process"]["capabilities"][set].as_array_mut() {
                caps.push(json!("CAP_NET_RAW"));
            }
        }
        let bundle = Self { dir, config };
        bundle.save();
        bundle
    }

    pub fn annotate(&mut self, key: &str, value: &str) -> &mut Self {
        self.config["annotations"][key] = json!(value);
        self.save();
        self
    }

    /// Edits config.json with `f`, then saves it.
    pub fn edit(&mut self, f: impl FnOnce(&mut Value)) -> &mut Self {
        f(&mut self.config);
        self.save();
        self
    }

    /// Adds weave-hook as createRuntime and poststop hook, with the given settings flags.
    pub fn with_weave_hook(&mut self, flags: &[&str]) -> &mut Self {
        let hook = bin("weave-hook");
        let args = |cmd: &str| {
            let mut a = vec!["weave-hook".to_string()];
            a.extend(flags.iter().map(|f| f.to_string()));
            a.push(cmd.to_string());
            a
        };
        self.config["hooks"] = json!({
            "createRuntime": [{"path": hook, "args": args("attach")}],
            "poststop": [{"path": hook, "args": args("detach")}],
        });
        self.save();
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn save(&self) {
        std::fs::write(
            self.dir.path().join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }
}

/// The runc-compatible command-line runtimes the tests drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Runc,
    /// crun refuses these VMs' hybrid cgroup layout (cgroup v1 controllers plus a cgroup2
    /// mount at /sys/fs/cgroup/unified: "cgroups in hybrid mode not supported"). Each crun
    /// command therefore runs in a private mount namespace of its own with that cgroup2 mount
    /// unmounted, where crun sees plain cgroup v1; the host's mounts are untouched.
    Crun,
}

impl Engine {
    /// The program name, as `tool_or_skip` looks it up.
    pub fn program(self) -> &'static str {
        match self {
            Self::Runc => "runc",
            Self::Crun => "crun",
        }
    }
}

/// crun's command line under [`Engine::Crun`]: the mount namespace is private, so the
/// unmount never reaches the host; hosts without that mount skip it.
const CRUN_WITHOUT_UNIFIED_CGROUP: &str = "if mountpoint -q /sys/fs/cgroup/unified; then \
     umount /sys/fs/cgroup/unified || exit 125; fi; exec crun \"$@\"";

/// A runc-compatible runtime (runc, or crun: [`Engine`]) with a state root of the test's
/// own, run inside a [`TestHost`]. Dropping it force-deletes every container it still knows.
pub struct Runc<'h> {
    pub host: &'h TestHost,
    pub root: tempfile::TempDir,
    pub engine: Engine,
}

impl<'h> Runc<'h> {
    pub fn new(host: &'h TestHost) -> Self {
        Self::of(Engine::Runc, host)
    }

    pub fn of(engine: Engine, host: &'h TestHost) -> Self {
        Self {
            host,
            root: tempfile::tempdir().unwrap(),
            engine,
        }
    }

    pub fn command(&self) -> Command {
        let mut cmd = match self.engine {
            Engine::Runc => self.host.command("runc"),
            Engine::Crun => {
                let mut cmd = self.host.command("unshare");
                cmd.args(["-m", "--propagation", "private", "sh", "-c"])
                    .args([CRUN_WITHOUT_UNIFIED_CGROUP, "crun"]);
                cmd
            }
        };
        cmd.arg("--root").arg(self.root.path());
        cmd
    }

    /// `runc run` in the foreground: returns when the container exits (poststop has run).
    pub fn run(&self, id: &str, bundle: &Bundle) -> Output {
        self.command()
            .args(["run", "--bundle"])
            .arg(bundle.path())
            .arg(id)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// The pid of the running container `id`'s init, from `runc state`.
    pub fn pid(&self, id: &str) -> u32 {
        let state = run_ok(self.command().args(["state", id]));
        let state: serde_json::Value = serde_json::from_str(&state).unwrap();
        state["pid"].as_u64().unwrap() as u32
    }

    /// `runc run --detach`: returns once the container runs. The container inherits the
    /// stdio it is given, so stderr goes to a file: a pipe would stay open until it exits.
    pub fn run_detached(&self, id: &str, bundle: &Bundle) -> Output {
        let mut err = tempfile::tempfile().unwrap();
        let status = self
            .command()
            .args(["run", "--detach", "--bundle"])
            .arg(bundle.path())
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err.try_clone().unwrap())
            .status()
            .unwrap();
        let mut stderr = Vec::new();
        std::io::Seek::rewind(&mut err).unwrap();
        std::io::Read::read_to_end(&mut err, &mut stderr).unwrap();
        Output {
            status,
            stdout: Vec::new(),
            stderr,
        }
    }

    pub fn exec(&self, id: &str, args: &[&str]) -> Output {
        self.command()
            .arg("exec")
            .arg(id)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Starts every container at once (`runc run --detach` each); panics naming the first
    /// that failed.
    pub fn run_all_detached(&self, ids: &[String], bundle: &Bundle) {
        std::thread::scope(|scope| {
            let runs: Vec<_> = ids
                .iter()
                .map(|id| scope.spawn(|| self.run_detached(id, bundle)))
                .collect();
            for (id, run) in ids.iter().zip(runs) {
                let out = run.join().unwrap();
                assert!(
                    out.status.success(),
                    "{id}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        });
    }

    /// Removes every container at once.
    pub fn remove_all(&self, ids: &[String]) {
        std::thread::scope(|scope| {
            for id in ids {
                scope.spawn(move || self.remove(id));
            }
        });
    }

    /// Kills and deletes a container; poststop hooks run at the delete.
    pub fn remove(&self, id: &str) {
        let _ = self
            .command()
            .args(["kill", id, "KILL"])
            .stderr(Stdio::null())
            .status();
        // The kill is asynchronous: delete fails while the process is still running.
        for _ in 0..200 {
            let out = self
                .command()
                .args(["delete", id])
                .stderr(Stdio::piped())
                .output()
                .unwrap();
            if out.status.success()
                || String::from_utf8_lossy(&out.stderr).contains("does not exist")
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = self.command().args(["delete", "--force", id]).status();
    }
}

impl Drop for Runc<'_> {
    fn drop(&mut self) {
        let Ok(out) = self.command().args(["list", "-q"]).output() else {
            return;
        };
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = self.command().args(["delete", "--force", id]).status();
        }
    }
}

/// The weave-dns serving a state directory. The hook starts it detached, so nothing would
/// stop it but this guard: when dropped (also when the test failed) it kills the process
/// its pid file names, once checked to be weave-dns, and the one it started itself.
pub struct WeaveDns {
    state_dir: PathBuf,
    child: Option<std::process::Child>,
}

impl WeaveDns {
    /// Guards the weave-dns a hook starts for `state_dir` (if it ever does).
    pub fn started_by_hook(state_dir: &Path) -> Self {
        Self {
            state_dir: state_dir.to_path_buf(),
            child: None,
        }
    }

    /// Starts weave-dns for `state_dir` in `host`'s network namespace, as a service manager
    /// would, with extra `args`; returns once it serves (its pid file is written).
    pub fn start(host: &TestHost, state_dir: &Path, args: &[&str]) -> Self {
        let child = host
            .command(bin("weave-dns"))
            .arg("--state-dir")
            .arg(state_dir)
            .args(args)
            .stdin(Stdio::null())
            .spawn()
            .expect("start weave-dns");
        let mut dns = Self {
            state_dir: state_dir.to_path_buf(),
            child: Some(child),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while dns.pid().is_none() {
            if let Some(status) = dns.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("weave-dns exited with {status} before serving");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "weave-dns did not serve in 10 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        dns
    }

    /// The pid in the state directory's dns.pid, when that process runs weave-dns.
    pub fn pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.state_dir.join("dns.pid")).ok()?;
        let pid: i32 = text.trim().parse().ok()?;
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
        let name = exe.file_name()?.to_string_lossy().into_owned();
        name.starts_with("weave-dns").then_some(pid)
    }
}

impl Drop for WeaveDns {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An upstream DNS resolver of the test's own, so that no test ever queries a real one:
/// dnsmasq in a network namespace of its own, linked to a [`TestHost`] by a veth pair (the
/// host's end 10.53.0.1/30, the resolver 10.53.0.2/30). It answers its `records` (name and
/// dnsmasq's `--host-record` addresses: `IPv4[,IPv6]`) and refuses everything else. Dropping it stops dnsmasq (by pid) and deletes the namespace.
pub struct Upstream {
    pub netns: String,
    daemon: std::process::Child,
}

impl Upstream {
    pub const ADDR: &'static str = "10.53.0.2";

    pub fn start(host: &TestHost, records: &[(&str, &str)]) -> Self {
        let netns = unique("wvu");
        sh(&format!("ip netns add {netns}"));
        let link = unique("wvu");
        let setup = format!(
            "ip -n {h} link add {link} type veth peer name up0 netns {netns} && \
             ip -n {h} addr add 10.53.0.1/30 dev {link} && ip -n {h} link set {link} up && \
             ip -n {netns} addr add {addr}/30 dev up0 && ip -n {netns} link set up0 up && \
             ip -n {netns} link set lo up",
            h = host.name,
            addr = Self::ADDR
        );
        let linked = Command::new("sh").arg("-c").arg(&setup).status();
        if !linked.as_ref().is_ok_and(|s| s.success()) {
            let _ = Command::new("ip").args(["netns", "del", &netns]).status();
            panic!("{setup}: {linked:?}");
        }
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &netns, "dnsmasq", "--keep-in-foreground"])
            .args([
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--user=root",
            ])
            .args(["--bind-interfaces", "--pid-file=", "--log-facility=-"])
            .arg(format!("--listen-address={}", Self::ADDR));
        for (name, ip) in records {
            cmd.arg(format!("--host-record={name},{ip}"));
        }
        let daemon = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq");
        let upstream = Self { netns, daemon };
        // Serving once its port is bound.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let bound = Command::new("ip")
                .args(["netns", "exec", &upstream.netns, "ss", "-lun"])
                .output()
                .is_ok_and(|o| {
                    String::from_utf8_lossy(&o.stdout).contains(&format!("{}:53", Self::ADDR))
                });
            if bound {
                return upstream;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "dnsmasq did not bind in 10 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Upstream {
    /// A command that runs inside the resolver's network namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns]).arg(program);
        cmd
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        // `ip netns exec` execs dnsmasq in place: the child's pid is dnsmasq's.
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}
