//! What weave-runtime costs, measured against runc in one run on one machine:
//! - per call, when it only passes through: `--version` and `state` via the shim vs runc;
//! - per `docker run --rm bb true`, one daemon: `--runtime runc --network none` vs
//!   `--runtime weave --network none` with an address, at Docker's default settings
//!   (daemon.json `runtimes.weave.path` only), without weave options (passthrough), and
//!   declared with `runtimeArgs` (how the end-to-end tests declare it: dockerd then runs it
//!   through a generated shell script), and vs Docker's default bridge network;
//! - per `podman run --rm bb true`: `--network none` vs the same with an address through
//!   the hooks.d file `weave-setup podman` writes vs podman's default network (netavark);
//! - in both engines, the same container with a hook that does nothing (`/bin/true` in
//!   weave-hook's place): what running two hooks costs the engine, the limit of any hook.
//!
//! Run as root: `cargo build --release -p weave-hook -p weave-setup && cargo bench -p
//! weave-runtime [passthrough|docker|podman]`; `WEAVE_BENCH_BIN_DIR` names another directory
//! holding weave-runtime, weave-hook and weave-setup (scripts/bench.sh: the static builds).
//! `WEAVE_BENCH_RUNS=N`: runs per engine row (default 20).
//! Calls alternate between the variants so drift affects all of them alike.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weave_e2e::docker::{Dockerd, IMAGE};
use weave_e2e::podman::{Podman, IMAGE as PODMAN_IMAGE};
use weave_e2e::{Rootfs, TestHost};

const SHIM: &str = env!("CARGO_BIN_EXE_weave-runtime");
const CALLS: usize = 300;
/// `docker run` / `podman run` per row, unless `WEAVE_BENCH_RUNS` says otherwise.
const ENGINE_RUNS: usize = 20;

fn engine_runs() -> usize {
    std::env::var("WEAVE_BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(ENGINE_RUNS)
}

fn time(cmd: &mut Command) -> Duration {
    let start = Instant::now();
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    start.elapsed()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Measures each variant `n` times, interleaved; prints medians and ratios to the first.
fn compare(title: &str, n: usize, variants: &mut [(&str, &mut dyn FnMut() -> Duration)]) {
    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(n); variants.len()];
    let count = variants.len();
    for round in 0..n {
        // Each round starts one variant further on: none always runs right after the
        // same other one (a container's teardown may still be running when the next starts).
        for i in (0..count).map(|k| (round + k) % count) {
            samples[i].push((variants[i].1)());
        }
    }
    println!("{title} (median of {n}, interleaved, each round starting one further on)");
    let medians: Vec<Duration> = samples.into_iter().map(median).collect();
    for ((name, _), m) in variants.iter().zip(&medians) {
        println!(
            "  {name:<60} {:>8.2} ms   x{:.2}",
            ms(*m),
            m.as_secs_f64() / medians[0].as_secs_f64()
        );
    }
}

fn passthrough() {
    let root = tempfile::tempdir().unwrap();
    let shim = |args: &[&str]| {
        let mut c = Command::new(SHIM);
        c.env("WEAVE_RUNTIME", "runc").args(args);
        c
    };
    let runc = |args: &[&str]| {
        let mut c = Command::new("runc");
        c.args(args);
        c
    };
    compare(
        "per call: --version",
        CALLS,
        &mut [
            ("runc --version", &mut || time(&mut runc(&["--version"]))),
            ("weave-runtime --version (exec runc)", &mut || {
                time(&mut shim(&["--version"]))
            }),
        ],
    );
    let r = root.path().to_str().unwrap().to_owned();
    let state = ["--root", r.as_str(), "state", "bench-no-such-container"];
    compare(
        "per call: state (of a container that does not exist)",
        CALLS,
        &mut [
            ("runc state", &mut || time(&mut runc(&state))),
            ("weave-runtime state", &mut || time(&mut shim(&state))),
        ],
    );
}

/// Runs `cmd` (an engine's `run ... IMAGE`, completed here with a command that lists
/// ethwe's addresses) and panics unless ethwe carries `addr`.
fn assert_attached(cmd: &mut Command, addr: &str) {
    let out = cmd
        .args(["ip", "-o", "-4", "addr", "show", "ethwe"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("inet {addr} ")),
        "the container has no {addr} on ethwe: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Where the binaries under test are: `WEAVE_BENCH_BIN_DIR` (scripts/bench.sh points it at
/// the static release builds users install), else this build's.
fn bin_dir() -> PathBuf {
    std::env::var_os("WEAVE_BENCH_BIN_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(weave_e2e::bin_dir, PathBuf::from)
}

/// weave-hook's default state directory, `/run/weave`, replaced in the daemon's private
/// mount namespace by a tmpfs (as `/run` is on a systemd host): a daemon.json with the
/// runtime's path only uses the defaults, and the machine's own `/run/weave` stays as it
/// was. The mount point is made if missing, and removed again if it was made here.
struct DefaultStateDir {
    made: bool,
}

impl DefaultStateDir {
    const PATH: &'static str = "/run/weave";

    fn new() -> Self {
        let made = !Path::new(Self::PATH).exists();
        if made {
            std::fs::create_dir_all(Self::PATH).unwrap();
        }
        Self { made }
    }

    /// The mount, for [`Dockerd::start_with_setup`].
    fn setup(&self) -> String {
        format!("mount -t tmpfs -o mode=0755 weave-bench {}", Self::PATH)
    }
}

impl Drop for DefaultStateDir {
    fn drop(&mut self) {
        if self.made {
            // Empty on the machine's side: the tmpfs was mounted only in the daemon's namespace.
            let _ = std::fs::remove_dir(Self::PATH);
        }
    }
}

/// Rows of `docker run --rm`, all against one daemon: runc and weave with `--network none`,
/// weave at Docker's default settings (daemon.json `runtimes.weave.path` only) and, labelled,
/// through `runtimeArgs` (dockerd then runs the runtime via a generated shell script), and
/// runc on Docker's default bridge network.
fn docker_runs() {
    let bins = bin_dir();
    let host = TestHost::new();
    let state = tempfile::tempdir().unwrap();
    let default_state = DefaultStateDir::new();
    let dir = Dockerd::new_dir();
    let runtime = bins.join("weave-runtime");
    let noop = NoopHookRuntime::new(&runtime);
    let config = serde_json::json!({
        "runtimes": {
            "weave": {"path": runtime},
            "weave-noop": {"path": noop.runtime()},
            "weave-args": {"path": runtime, "runtimeArgs": [
                "--weave-bridge=wvbench".to_owned(),
                format!("--weave-state-dir={}", state.path().display()),
            ]},
        },
        // docker0 inside the throwaway host, in the project's test range.
        "bip": "10.2.250.1/24",
        "storage-driver": "vfs",
    });
    std::fs::write(Dockerd::config_path(dir.path()), config.to_string()).unwrap();
    let dockerd = Dockerd::start_with_setup(&host, dir, Some(&default_state.setup()));
    dockerd.import(&Rootfs::busybox());
    let run = |extra: &[&str]| {
        let mut cmd = dockerd.docker();
        cmd.args(["run", "--rm"]).args(extra).args([IMAGE, "true"]);
        time(&mut cmd)
    };
    let none = ["--network", "none"];
    let runc = [&["--runtime", "runc"][..], &none].concat();
    let passthrough = [&["--runtime", "weave"][..], &none].concat();
    let attach = [
        &[
            "--runtime",
            "weave",
            "--annotation",
            "weave.cidr=10.2.0.5/24",
        ][..],
        &none,
    ]
    .concat();
    let attach_args = [
        &[
            "--runtime",
            "weave-args",
            "--annotation",
            "weave.cidr=10.2.0.6/24",
        ][..],
        &none,
    ]
    .concat();
    let noop_hook = [
        &[
            "--runtime",
            "weave-noop",
            "--annotation",
            "weave.cidr=10.2.0.8/24",
        ][..],
        &none,
    ]
    .concat();
    run(&noop_hook);
    assert_hook_ran(&noop.runs());
    noop.noop();
    let bridge = ["--runtime", "runc"];
    // One warm-up of each, so first-use costs (bridges, firewall rules) are not in the samples.
    for extra in [
        &runc[..],
        &passthrough,
        &attach,
        &attach_args,
        &noop_hook,
        &bridge,
    ] {
        run(extra);
    }
    // The weave rows measure an attach: the container's first instruction sees its address.
    for (extra, addr) in [(&attach, "10.2.0.5/24"), (&attach_args, "10.2.0.6/24")] {
        let mut cmd = dockerd.docker();
        cmd.args(["run", "--rm"]).args(extra).args([IMAGE]);
        assert_attached(&mut cmd, addr);
    }
    compare(
        "docker run --rm bb true",
        engine_runs(),
        &mut [
            (DOCKER_RUNC, &mut || run(&runc)),
            (DOCKER_WEAVE, &mut || run(&attach)),
            (DOCKER_PASSTHROUGH, &mut || run(&passthrough)),
            (DOCKER_RUNTIME_ARGS, &mut || run(&attach_args)),
            (DOCKER_NOOP_HOOK, &mut || run(&noop_hook)),
            (DOCKER_BRIDGE, &mut || run(&bridge)),
        ],
    );
}

const DOCKER_RUNC: &str = "--runtime runc --network none";
const DOCKER_WEAVE: &str = "--runtime weave --network none + weave.cidr (path only)";
const DOCKER_PASSTHROUGH: &str = "--runtime weave --network none, no weave options";
const DOCKER_RUNTIME_ARGS: &str = "same, runtimeArgs (dockerd's wrapper script)";
const DOCKER_NOOP_HOOK: &str = "same as weave, but the hook is /bin/true (no network)";
const DOCKER_BRIDGE: &str = "--runtime runc, Docker's default bridge network";

const PODMAN_NONE: &str = "--network none";
const PODMAN_WEAVE: &str = "--network none + weave.cidr (hooks.d)";
const PODMAN_NOOP_HOOK: &str = "--network none + a hooks.d hook that is /bin/true";
const PODMAN_NETAVARK: &str = "podman's default network (netavark)";
/// The annotation that selects [`PODMAN_NOOP_HOOK`]'s hooks.d file (weave's ignores it).
const NOOP_ANNOTATION: &str = "wvbench.noop";

/// A weave-runtime whose weave-hook is `/bin/true`: copies of both in a directory of their
/// own (weave-runtime runs the weave-hook next to its own executable). Its rows measure what
/// the engine and the shim cost around a hook that does nothing, the limit of any hook.
struct NoopHookRuntime {
    dir: tempfile::TempDir,
}

impl NoopHookRuntime {
    /// Starts with a hook that counts its runs (see [`assert_hook_ran`]); [`Self::noop`]
    /// makes it `/bin/true`.
    fn new(runtime: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(runtime, dir.path().join("weave-runtime")).unwrap();
        write_counting_hook(&dir.path().join("weave-hook"), &dir.path().join("runs"));
        Self { dir }
    }

    fn runtime(&self) -> PathBuf {
        self.dir.path().join("weave-runtime")
    }

    fn runs(&self) -> PathBuf {
        self.dir.path().join("runs")
    }

    fn noop(&self) {
        let hook = self.dir.path().join("weave-hook");
        std::fs::remove_file(&hook).unwrap();
        std::fs::copy("/bin/true", hook).unwrap();
    }
}

/// A shell script at `path` that appends a line to `runs` each time it runs.
fn write_counting_hook(path: &Path, runs: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let script = format!("#!/bin/sh\necho ran >> '{}'\n", runs.display());
    std::fs::write(path, script).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The no-op rows measure a hook only if the engine runs it: once at createRuntime and once
/// at poststop for one container.
fn assert_hook_ran(runs: &Path) {
    let count = std::fs::read_to_string(runs)
        .unwrap_or_default()
        .lines()
        .count();
    assert_eq!(
        count, 2,
        "the no-op hook ran {count} times for one container, not 2"
    );
}

/// A hooks.d file like weave's for `hook`, selected by [`NOOP_ANNOTATION`].
fn write_noop_hook(hooks: &Path, hook: &Path) {
    let file = serde_json::json!({
        "version": "1.0.0",
        "hook": {"path": hook, "args": ["hook"]},
        "when": {"annotations": {"^wvbench\\.noop$": ".*"}},
        "stages": ["createRuntime", "poststop"],
    });
    std::fs::write(hooks.join("wvbench-noop.json"), file.to_string()).unwrap();
}

/// Rows of `podman run --rm`: `--network none` alone, with weave through the hooks.d file
/// `weave-setup podman` writes, and on podman's default network (netavark).
fn podman_runs() {
    let bins = bin_dir();
    let host = TestHost::new();
    let state = tempfile::tempdir().unwrap();
    let hooks = tempfile::tempdir().unwrap();
    // The hook's flags cost nothing per call (podman runs the hook directly, no wrapper).
    let setup = Command::new(bins.join("weave-setup"))
        .arg("podman")
        .arg("--hooks-dir")
        .arg(hooks.path())
        .arg("--hook-path")
        .arg(bins.join("weave-hook"))
        .args(["--bridge", "wvbench"])
        .arg("--state-dir")
        .arg(state.path())
        .output()
        .unwrap();
    assert!(
        setup.status.success(),
        "weave-setup podman failed: {}",
        String::from_utf8_lossy(&setup.stderr)
    );
    let counting = tempfile::tempdir().unwrap();
    let (counter, runs) = (counting.path().join("hook"), counting.path().join("runs"));
    write_counting_hook(&counter, &runs);
    write_noop_hook(hooks.path(), &counter);
    let podman = Podman::new(&host, hooks.path());
    podman.import(&Rootfs::busybox());
    let run = |extra: &[&str]| {
        let mut cmd = podman.command();
        cmd.args(["run", "--rm"])
            .args(extra)
            .args([PODMAN_IMAGE, "true"]);
        time(&mut cmd)
    };
    let none = ["--network", "none"];
    let attach = [
        "--network",
        "none",
        "--annotation",
        "weave.cidr=10.2.0.7/24",
    ];
    let noop_annotation = format!("{NOOP_ANNOTATION}=1");
    let noop_hook = ["--network", "none", "--annotation", &noop_annotation];
    run(&noop_hook);
    assert_hook_ran(&runs);
    write_noop_hook(hooks.path(), Path::new("/bin/true"));
    for extra in [&none[..], &attach, &noop_hook, &[]] {
        run(extra);
    }
    let mut cmd = podman.command();
    cmd.args(["run", "--rm"]).args(attach).args([PODMAN_IMAGE]);
    assert_attached(&mut cmd, "10.2.0.7/24");
    compare(
        "podman run --rm bb true",
        engine_runs(),
        &mut [
            (PODMAN_NONE, &mut || run(&none)),
            (PODMAN_WEAVE, &mut || run(&attach)),
            (PODMAN_NOOP_HOOK, &mut || run(&noop_hook)),
            (PODMAN_NETAVARK, &mut || run(&[])),
        ],
    );
}

fn main() {
    // `cargo bench` passes --bench; any other argument is a filter cargo would pass on.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let wants = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    if wants("passthrough") {
        passthrough();
    }
    if wants("docker") {
        docker_runs();
    }
    if wants("podman") {
        podman_runs();
    }
}
