//! weave-bench: measures weave-hook against its peers, side by side, in one run.
//!
//! `run` measures and writes results.json and samples.csv; `report` turns them into the
//! tables of BENCHMARKS.md, the README paragraph and the PNG plot. scripts/bench.sh does both,
//! plus weave-runtime's own benchmark, and installs the peers first.

mod concurrency;
mod latency;
mod memory;
mod mesh;
mod methods;
mod plot;
mod report;
mod results;
mod sandbox;
mod scale;
mod shim_cost;
mod stats;
mod timing;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use ipnet::Ipv4Net;

use methods::cni::Cni;
use methods::floor::Floor;
use methods::hook::{Cidr, DetachWhen, WeaveHook};
use methods::library::{InProcess, ProcessStart};
use methods::netavark::Netavark;
use methods::pipework::Pipework;
use methods::{Method, Process, Role};
use results::{Machine, Results};
use sandbox::Host;

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
/// Peak RSS hardly varies: a few runs of each process suffice.
const RSS_SAMPLES: usize = 20;

/// Benchmarks weave-hook (the OCI hook) against the CNI bridge plugin with host-local IPAM,
/// netavark, a pipework-style iproute2 script and the netlink floor, side by side.
///
/// Run as root. Everything happens in throwaway network namespaces that die with the
/// process: the machine's own network is not touched. Addresses come from 10.32.0.0/12.
/// scripts/bench.sh installs the peers, builds, runs both commands and weave-runtime's own
/// benchmark.
#[derive(Parser, Debug)]
#[command(name = "weave-bench", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Measure, and write results.json and samples.csv.
    Run(RunArgs),
    /// Write BENCHMARKS.md's tables, the README section and the plot from results.json.
    Report(ReportArgs),
    /// Measure the weave mesh on simulated hosts with real agents and etcd; writes mesh.json.
    Mesh(mesh::MeshArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Part {
    Latency,
    Scale,
    Concurrency,
    Memory,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Directory for results.json and samples.csv.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Scratch directory for state dirs and bundles (default: a temporary directory).
    #[arg(long)]
    work: Option<PathBuf>,
    /// Measured samples per method (after the warm-up).
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// Unmeasured rounds first (bridge creation and cold caches land there).
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Numbers of containers already attached for the scale measurement.
    #[arg(long, value_delimiter = ',', default_value = "0,100,1000")]
    scale: Vec<usize>,
    /// Attaches started at once in the concurrency measurement.
    #[arg(long, default_value_t = 64)]
    at_once: usize,
    /// Rounds of the concurrency measurement.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// The weave-hook binary (default: next to weave-bench).
    #[arg(long)]
    hook: Option<PathBuf>,
    /// The weave-runtime binary (default: next to weave-bench).
    #[arg(long)]
    runtime: Option<PathBuf>,
    /// A config.json Docker wrote for a container asking for weave.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../runtime-shim/tests/golden/docker-annotation-cidr/config.json"))]
    docker_config: PathBuf,
    /// A prototype weave-hook build to measure beside the real one, as LABEL=PATH
    /// (repeatable): adds its attach/detach rows, and a detach after exit with the
    /// namespace held.
    #[arg(long, value_parser = parse_candidate)]
    candidate: Vec<(String, PathBuf)>,
    /// Measure only these parts (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Part>,
}

#[derive(clap::Args, Debug)]
struct ReportArgs {
    /// Directory holding results.json; the plot is written there too.
    #[arg(long, default_value = "bench/results")]
    results: PathBuf,
    /// Output of `cargo bench -p weave-runtime` from the same session, if any.
    #[arg(long)]
    shim_cost: Option<PathBuf>,
    /// The markdown file whose generated block is replaced.
    #[arg(long, default_value = "BENCHMARKS.md")]
    benchmarks: PathBuf,
    /// A markdown file (the README) whose generated block gets the headline figures.
    #[arg(long)]
    readme: Option<PathBuf>,
    /// A TrueType font for the plot's text (Debian: fonts-dejavu-core).
    #[arg(
        long,
        default_value = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    )]
    font: PathBuf,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Run(args) => run(args),
        Cmd::Report(args) => report(args),
        Cmd::Mesh(args) => mesh_run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weave-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn parse_candidate(text: &str) -> Result<(String, PathBuf), String> {
    match text.split_once('=') {
        Some((label, path)) if !label.is_empty() && !path.is_empty() => {
            Ok((label.to_string(), PathBuf::from(path)))
        }
        _ => Err(format!("{text:?}: expected LABEL=PATH")),
    }
}

/// A binary built next to weave-bench, unless given.
fn sibling(given: Option<PathBuf>, name: &str) -> Result<PathBuf> {
    let path = match given {
        Some(p) => p,
        None => std::env::current_exe()
            .context("locate weave-bench's own executable")?
            .with_file_name(name),
    };
    if !path.is_file() {
        bail!(
            "{} not found: build it (cargo build --release -p {name}) or pass its path",
            path.display()
        );
    }
    Ok(path)
}

fn net(text: &str) -> Ipv4Net {
    text.parse().expect("a literal subnet")
}

fn run(args: RunArgs) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("run as root: every method needs CAP_NET_ADMIN (all of it happens in throwaway namespaces)");
    }
    let wants = |p: Part| args.only.is_empty() || args.only.contains(&p);
    let hook = sibling(args.hook.clone(), "weave-hook")?;
    let scratch = tempfile::Builder::new().prefix("wvbench").tempdir()?;
    let work = args
        .work
        .clone()
        .unwrap_or_else(|| scratch.path().to_path_buf());
    std::fs::create_dir_all(&work).with_context(|| format!("create {}", work.display()))?;
    let load_before = loadavg();
    let mut results = Results {
        machine: Machine {
            nproc: std::thread::available_parallelism().map_or(0, usize::from),
            kernel: read_trim("/proc/sys/kernel/osrelease"),
            cpu: cpu_model(),
            load_before,
            load_after: String::new(),
            started: command_output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])),
        },
        samples: args.samples,
        attach: Vec::new(),
        detach: Vec::new(),
        scale: Vec::new(),
        concurrency: Vec::new(),
        runtime_calls: Vec::new(),
        rss: Vec::new(),
    };
    let weave_hook = |label: &str, tag: &str, bridge: &str, cidr: Cidr| WeaveHook {
        label: label.to_string(),
        tag: tag.to_string(),
        binary: hook.clone(),
        bridge: bridge.to_string(),
        state_dir: work.join(format!("state-{tag}")),
        bundle: work.clone(),
        cidr,
        detach: DetachWhen::Running,
        role: Role::Ours,
    };
    if wants(Part::Latency) {
        let mut methods: Vec<Box<dyn Method>> = vec![
            Box::new(weave_hook(
                "weave-hook (net: allocation)",
                "hook",
                "wvbench-hook",
                Cidr::Allocate(net("10.32.0.0/16")),
            )),
            Box::new(weave_hook(
                "weave-hook (exact address)",
                "hookx",
                "wvbench-hookx",
                Cidr::Exact(net("10.33.0.0/16")),
            )),
            Box::new(WeaveHook {
                detach: DetachWhen::Exited,
                ..weave_hook(
                    "weave-hook, detach after the container exited (runc)",
                    "hookp",
                    "wvbench-hookp",
                    Cidr::Allocate(net("10.47.0.0/16")),
                )
            }),
            Box::new(WeaveHook {
                detach: DetachWhen::ExitedNetnsHeld,
                ..weave_hook(
                    "weave-hook, detach after exit, netns held (Docker)",
                    "hookd",
                    "wvbench-hookd",
                    Cidr::Allocate(net("10.42.0.0/16")),
                )
            }),
            Box::new(Floor::new(
                "wvbench-floor",
                net("10.35.0.0/16"),
                "floor: same netlink requests, in-process",
            )),
            Box::new(Cni {
                bridge: "wvbench-cni".into(),
                subnet: net("10.36.0.0/16"),
                data_dir: work.join("cni"),
            }),
            Box::new(Netavark {
                bridge: "wvbench-nv".into(),
                subnet: net("10.37.0.0/16"),
                config_dir: work.join("netavark"),
            }),
            Box::new(Pipework {
                script: Path::new(MANIFEST_DIR).join("pipework-style.sh"),
                bridge: "wvbench-pipe".into(),
                subnet: net("10.38.0.0/16"),
            }),
            Box::new(InProcess {
                hook: weave_hook(
                    "",
                    "lib",
                    "wvbench-lib",
                    Cidr::Allocate(net("10.34.0.0/16")),
                ),
            }),
            Box::new(ProcessStart {
                label: "probe: weave-hook --version (process start, no work)".into(),
                program: hook.clone(),
                args: vec!["--version".into()],
            }),
            Box::new(ProcessStart {
                label: "probe: /bin/true (any process start)".into(),
                program: "/bin/true".into(),
                args: Vec::new(),
            }),
        ];
        for (i, (label, path)) in args.candidate.iter().enumerate() {
            if !path.is_file() {
                bail!("candidate {label}: {} is not a file", path.display());
            }
            let candidate = |detach, what: &str, bridge: String| WeaveHook {
                label: format!("candidate {label}{what}"),
                tag: bridge.trim_start_matches("wvbench-").to_string(),
                binary: path.clone(),
                state_dir: work.join(format!("state-cand{i}-{bridge}")),
                bridge,
                bundle: work.clone(),
                cidr: Cidr::Allocate(net("10.45.0.0/16")),
                detach,
                role: Role::Probe,
            };
            for (detach, what, bridge) in [
                (DetachWhen::Running, "", format!("wvbench-c{i}")),
                (
                    DetachWhen::ExitedNetnsHeld,
                    ", detach after exit, netns held (Docker)",
                    format!("wvbench-c{i}d"),
                ),
            ] {
                methods.push(Box::new(candidate(detach, what, bridge)));
            }
        }
        // Each method in a host namespace of its own (see latency.rs).
        let (attach, detach) = latency::run(&mut methods, args.samples, args.warmup)?;
        results.attach = attach;
        results.detach = detach;
    }
    if wants(Part::Scale) {
        results.scale = scale::run(
            &hook,
            &args.candidate,
            &work,
            (net("10.39.0.0/16"), net("10.44.0.0/16")),
            &args.scale,
            args.samples,
            args.warmup,
        )?;
    }
    if wants(Part::Concurrency) {
        let mut methods: Vec<Box<dyn Process>> = vec![
            Box::new(weave_hook(
                "weave-hook (net: allocation)",
                "conc",
                "wvbench-chook",
                Cidr::Allocate(net("10.40.0.0/16")),
            )),
            Box::new(Cni {
                bridge: "wvbench-ccni".into(),
                subnet: net("10.41.0.0/16"),
                data_dir: work.join("cni-conc"),
            }),
            // Not netavark: podman serializes its calls with a lock, and concurrent
            // teardowns race to delete the bridge ("failed to get bridge interface").
        ];
        let host = Host::create()?;
        results.concurrency =
            host.in_it(|| concurrency::run(&mut methods, args.at_once, args.rounds))??;
    }
    if wants(Part::Memory) {
        let runtime = sibling(args.runtime.clone(), "weave-runtime")?;
        results.runtime_calls =
            memory::runtime_calls(&runtime, &args.docker_config, &work, args.samples)?;
        let mut methods: Vec<Box<dyn Process>> = vec![
            Box::new(weave_hook(
                "weave-hook",
                "rss",
                "wvbench-rhook",
                Cidr::Allocate(net("10.43.0.0/16")),
            )),
            Box::new(Cni {
                bridge: "wvbench-rcni".into(),
                subnet: net("10.44.0.0/16"),
                data_dir: work.join("cni-rss"),
            }),
            Box::new(Netavark {
                bridge: "wvbench-rnv".into(),
                subnet: net("10.45.0.0/16"),
                config_dir: work.join("netavark-rss"),
            }),
            Box::new(Pipework {
                script: Path::new(MANIFEST_DIR).join("pipework-style.sh"),
                bridge: "wvbench-rpipe".into(),
                subnet: net("10.46.0.0/16"),
            }),
        ];
        let host = Host::create()?;
        results.rss = host.in_it(|| {
            memory::rss(
                &mut methods,
                &runtime,
                &args.docker_config,
                &work,
                RSS_SAMPLES,
            )
        })??;
    }
    results.machine.load_after = loadavg();
    results.save(&args.out)?;
    eprintln!("weave-bench: results in {}", args.out.display());
    Ok(())
}

fn mesh_run(args: mesh::MeshArgs) -> Result<()> {
    let hook = sibling(args.hook.clone(), "weave-hook")?;
    let agent = sibling(args.mesh.clone(), "weave-mesh")?;
    mesh::run(args, hook, agent)
}

/// The mesh block of BENCHMARKS.md and mesh.png, when the results hold a mesh.json.
fn mesh_report(args: &ReportArgs) -> Result<()> {
    let Some(results) = mesh::MeshResults::load(&args.results)? else {
        return Ok(());
    };
    let png = args.results.join("mesh.png");
    let base = args.benchmarks.parent().unwrap_or(Path::new(""));
    let link = png.strip_prefix(base).unwrap_or(&png).display().to_string();
    mesh::report::write(&results, &args.benchmarks, &args.font, &png, &link)
}

fn report(args: ReportArgs) -> Result<()> {
    let results = Results::load(&args.results)?;
    let shim = args
        .shim_cost
        .as_deref()
        .map(shim_cost::ShimCost::load)
        .transpose()?;
    let png = args.results.join("latency.png");
    plot::draw(&results, &args.font, &png)?;
    // The markdown links the plot relative to itself.
    let base = args.benchmarks.parent().unwrap_or(Path::new(""));
    let link = png.strip_prefix(base).unwrap_or(&png).display().to_string();
    report::write(
        &results,
        shim.as_ref(),
        &args.benchmarks,
        args.readme.as_deref(),
        &link,
    )?;
    mesh_report(&args)?;
    eprintln!(
        "weave-bench: wrote {}{} and {}",
        args.benchmarks.display(),
        args.readme
            .as_ref()
            .map_or(String::new(), |r| format!(", {}", r.display())),
        png.display()
    );
    Ok(())
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path).map_or_else(|_| "unknown".into(), |s| s.trim().to_string())
}

fn loadavg() -> String {
    read_trim("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn cpu_model() -> String {
    read_trim("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn command_output(cmd: &mut Command) -> String {
    cmd.output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_label_equals_path() {
        assert_eq!(
            parse_candidate("static=/a/b=c").unwrap(),
            ("static".to_string(), PathBuf::from("/a/b=c"))
        );
        assert!(parse_candidate("no-path=").is_err());
        assert!(parse_candidate("=/path").is_err());
        assert!(parse_candidate("plain").is_err());
    }
}
