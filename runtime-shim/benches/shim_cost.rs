//! What weave-runtime costs, measured against runc in one run on one machine:
//! - per call, when it only passes through: `--version` and `state` via the shim vs runc;
//! - per `docker run --rm bb true`: `--runtime runc` vs `--runtime weave` without weave
//!   options (passthrough) vs `--runtime weave --annotation weave.cidr=...` (hook attached).
//!
//! Run as root: `cargo build --release -p weave-hook && cargo bench -p weave-runtime`.
//! Calls alternate between the variants so drift affects all of them alike.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weave_e2e::docker::{Dockerd, IMAGE};
use weave_e2e::{Rootfs, TestHost};

const SHIM: &str = env!("CARGO_BIN_EXE_weave-runtime");
const CALLS: usize = 300;
const DOCKER_RUNS: usize = 20;

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
    for _ in 0..n {
        for (i, (_, run)) in variants.iter_mut().enumerate() {
            samples[i].push(run());
        }
    }
    println!("{title} (median of {n}, interleaved)");
    let medians: Vec<Duration> = samples.into_iter().map(median).collect();
    for ((name, _), m) in variants.iter().zip(&medians) {
        println!(
            "  {name:<55} {:>8.2} ms   x{:.2}",
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

fn docker_runs() {
    let host = TestHost::new();
    let state = tempfile::tempdir().unwrap();
    let dockerd = Dockerd::start(
        &host,
        &[
            "--weave-bridge=wvbench".to_owned(),
            format!("--weave-state-dir={}", state.path().display()),
        ],
    );
    dockerd.import(&Rootfs::busybox());
    let run = |extra: &[&str]| {
        let mut cmd = dockerd.docker();
        cmd.args(["run", "--rm"]).args(extra).args([IMAGE, "true"]);
        time(&mut cmd)
    };
    let runc = ["--runtime", "runc"];
    let passthrough = ["--runtime", "weave"];
    let attach = [
        "--runtime",
        "weave",
        "--annotation",
        "weave.cidr=10.2.0.5/24",
    ];
    // One warm-up of each, so first-use costs (bridge creation) are not in the samples.
    run(&runc);
    run(&attach);
    compare(
        "docker run --rm bb true",
        DOCKER_RUNS,
        &mut [
            ("--runtime runc", &mut || run(&runc)),
            (
                "--runtime weave, no weave options (passthrough)",
                &mut || run(&passthrough),
            ),
            (
                "--runtime weave --annotation weave.cidr=10.2.0.5/24",
                &mut || run(&attach),
            ),
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
}
