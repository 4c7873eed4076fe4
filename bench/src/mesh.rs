//! `weave-bench mesh`: the weave mesh's figures (issue 13's benchmarks), on simulated hosts
//! (network namespaces on an underlay of the benchmark's own), a real 3-member TLS etcd and
//! real `weave-mesh run` agents. Writes `mesh.json` beside results.json; `weave-bench
//! report` renders it into BENCHMARKS.md when present.
//!
//! Every figure that is a ratio comes from one run, its two sides measured alternately.

mod measure;
pub mod report;
mod world;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::results::Series;
use measure::{hook_on, Attached};
use world::World;

/// Host numbers on the underlay (192.168.251.N) of the two-host part.
const HOST_A: u8 = 1;
const HOST_B: u8 = 2;
const SINGLE: u8 = 100;
const FIRST_JOINER: u8 = 10;
/// Hosts without an agent whose first attach is compared with a joining host's.
const FIRST_NEW_SINGLE: u8 = 110;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MeshPart {
    /// Two hosts and a single host: attach with/without the agent, RTT, TCP throughput,
    /// joining hosts.
    Pair,
    /// Many hosts with several containers each: convergence, attach, etcd load.
    Scale,
    /// Only the TCP throughput of the two-host part (overlay vs underlay), on two fresh
    /// hosts; printed (and saved as `tcp` in mesh.json only with another part, so that
    /// `--only tcp` never overwrites a full run's results). Not part of the default run:
    /// the pair part measures the same.
    Tcp,
}

#[derive(clap::Args, Debug)]
pub struct MeshArgs {
    /// Directory for mesh.json.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Scratch directory (agents' logs; default: a temporary directory).
    #[arg(long)]
    work: Option<PathBuf>,
    /// Attach samples on each side (with and without the agent), after the warm-up.
    #[arg(long, default_value_t = 100)]
    samples: usize,
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Pings on each side (same host, across hosts), in alternating rounds.
    #[arg(long, default_value_t = 1000)]
    pings: usize,
    #[arg(long, default_value_t = 10)]
    ping_rounds: usize,
    /// iperf3 runs on each side (overlay, underlay), alternating, and their length.
    #[arg(long, default_value_t = 3)]
    iperf_rounds: usize,
    #[arg(long, default_value_t = 5)]
    iperf_secs: u32,
    /// Hosts joining the two-host mesh one after the other (first attach, time to reachable).
    #[arg(long, default_value_t = 5)]
    joins: usize,
    /// Hosts and containers per host of the scale part.
    #[arg(long, default_value_t = 20)]
    hosts: usize,
    #[arg(long, default_value_t = 10)]
    per_host: usize,
    /// Seconds the scale mesh idles while etcd's writes are counted.
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,
    /// The weave-hook binary (default: next to weave-bench).
    #[arg(long)]
    pub hook: Option<PathBuf>,
    /// The weave-mesh binary (default: next to weave-bench).
    #[arg(long)]
    pub mesh: Option<PathBuf>,
    /// Measure only these parts (default: both).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<MeshPart>,
}

/// The two-host part.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pair {
    pub attach_mesh: Series,
    pub attach_single: Series,
    pub rtt_same: Series,
    pub rtt_cross: Series,
    /// Pings sent on each side (lost ones have no RTT).
    pub pings_sent: usize,
    pub tcp: Tcp,
    pub iperf_secs: u32,
    /// Each joining host: agent start until state.json says etcd is reachable.
    pub join_ready: Series,
    /// Each joining host: agent start until host A's FDB had it.
    pub join_in_fdb: Series,
    /// Each joining host's first attach (a block claim through the agent and etcd).
    pub join_first_attach: Series,
    /// The first attach on a fresh host without an agent, one before each joining host.
    pub first_attach_single: Series,
    /// Each joining host: agent start until a container on host A gets a ping reply from
    /// a container on it.
    pub join_reachable: Series,
}

/// The many-host part.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scale {
    pub hosts: usize,
    pub per_host: usize,
    /// Per host, from the start of all agents until its FDB had every other host, sorted.
    pub converged_ms: Vec<f64>,
    pub first_attach: Series,
    pub attach: Series,
    pub reachable: usize,
    pub etcd_keys: usize,
    pub idle_writes_per_s: f64,
    /// etcd revisions from before the first attach until the last address was published,
    /// per container (block claims and address publications).
    pub writes_per_attach: f64,
    pub etcd_db_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeshResults {
    pub started: String,
    pub load_before: String,
    pub load_after: String,
    pub nproc: usize,
    pub pair: Option<Pair>,
    pub scale: Option<Scale>,
    /// The `tcp` part alone (absent from a default run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<Tcp>,
}

impl MeshResults {
    pub const FILE: &'static str = "mesh.json";

    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let path = dir.join(Self::FILE);
        std::fs::write(&path, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("write {}", path.display()))
    }

    /// `None` when the directory has no mesh.json.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(Self::FILE);
        match std::fs::read(&path) {
            Ok(text) => serde_json::from_slice(&text)
                .map(Some)
                .with_context(|| format!("parse {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
        }
    }
}

pub fn run(args: MeshArgs, hook: PathBuf, mesh_bin: PathBuf) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("run as root: the mesh benchmark creates network namespaces and starts etcd");
    }
    for tool in [
        "etcd", "etcdctl", "iperf3", "ping", "openssl", "nsenter", "bridge",
    ] {
        if !on_path(tool) {
            bail!(
                "{tool} is not installed (scripts/bench.sh installs what the mesh benchmark needs)"
            );
        }
    }
    let wants = |p| (args.only.is_empty() && p != MeshPart::Tcp) || args.only.contains(&p);
    let scratch = tempfile::Builder::new().prefix("wvbmesh").tempdir()?;
    let work = args
        .work
        .clone()
        .unwrap_or_else(|| scratch.path().to_path_buf());
    std::fs::create_dir_all(&work).with_context(|| format!("create {}", work.display()))?;
    let mut results = MeshResults {
        started: super::command_output(
            std::process::Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]),
        ),
        load_before: super::loadavg(),
        load_after: String::new(),
        nproc: std::thread::available_parallelism().map_or(0, usize::from),
        pair: None,
        scale: None,
        tcp: None,
    };
    if wants(MeshPart::Pair) {
        eprintln!("weave-bench mesh: two hosts and a single host");
        results.pair = Some(pair(&args, &hook, &mesh_bin, &work.join("pair"))?);
    }
    if wants(MeshPart::Tcp) {
        eprintln!("weave-bench mesh: TCP across two hosts, overlay vs underlay");
        let tcp = tcp_only(&args, &hook, &mesh_bin, &work.join("tcp"))?;
        eprintln!("weave-bench mesh: {}", tcp.summary());
        results.tcp = Some(tcp);
    }
    if wants(MeshPart::Scale) {
        eprintln!(
            "weave-bench mesh: {} hosts x {} containers",
            args.hosts, args.per_host
        );
        let mut world = World::new(&mesh_bin, &work.join("scale-logs"))?;
        results.scale = Some(measure::many_hosts(
            &mut world,
            args.hosts,
            args.per_host,
            &hook,
            &work,
            Duration::from_secs(args.idle_secs),
        )?);
    }
    results.load_after = super::loadavg();
    if results.pair.is_none() && results.scale.is_none() {
        return Ok(());
    }
    results.save(&args.out)?;
    eprintln!(
        "weave-bench mesh: results in {}",
        args.out.join(MeshResults::FILE).display()
    );
    Ok(())
}

fn pair(args: &MeshArgs, hook: &Path, mesh_bin: &Path, work: &Path) -> Result<Pair> {
    let mut world = World::new(mesh_bin, &work.join("logs"))?;
    let a = world.add_host(HOST_A);
    let b = world.add_host(HOST_B);
    let single = world.add_host(SINGLE);
    world.start_agent(a)?;
    world.start_agent(b)?;
    for i in [a, b] {
        world.nodes[i].wait_ready()?;
    }
    let (attach_mesh, attach_single) = measure::attach_with_and_without(
        &world.nodes[a],
        &world.nodes[single],
        (hook, work),
        args.samples,
        args.warmup,
    )?;
    // Long-lived containers: two on A, one on B.
    let mut ha = hook_on(hook, world.nodes[a].state_dir(), work, "pa");
    let mut hb = hook_on(hook, world.nodes[b].state_dir(), work, "pb");
    let a1 = measure::attach_on(&world.nodes[a], &mut ha, 0)?;
    let a2 = measure::attach_on(&world.nodes[a], &mut ha, 1)?;
    let b1 = measure::attach_on(&world.nodes[b], &mut hb, 0)?;
    let (rtt_same, rtt_cross, pings_sent) =
        measure::rtt_same_and_cross(&a1, a2.addr, b1.addr, args.pings, args.ping_rounds)?;
    let tcp = throughput(&world, (a, b), (&a1, &b1), args)?;
    let mut join_ready = Series::new(
        "agent start to ready (state.json complete)".into(),
        crate::methods::Role::Probe,
    );
    let mut join_first = Series::new(
        "first attach on a new host (block claim)".into(),
        crate::methods::Role::Ours,
    );
    let mut join_reach = Series::new(
        "agent start to first ping reply from an existing host".into(),
        crate::methods::Role::Ours,
    );
    let mut join_in_fdb = Series::new(
        "agent start to the new host in an existing host's FDB".into(),
        crate::methods::Role::Probe,
    );
    let mut first_single = Series::new(
        "first attach on a new host without agent".into(),
        crate::methods::Role::Floor,
    );
    let mut joined: Vec<Attached> = Vec::new();
    for j in 0..args.joins {
        let j8 = u8::try_from(j)
            .ok()
            .filter(|j| *j < 80)
            .context("at most 80 joining hosts")?;
        // The same first attach on a fresh host without an agent: what the claim adds.
        let fresh = world.add_host(FIRST_NEW_SINGLE + j8);
        let mut hf = hook_on(hook, world.nodes[fresh].state_dir(), work, "fresh");
        let c = measure::attach_on(&world.nodes[fresh], &mut hf, 0)?;
        first_single.push(c.ms);
        joined.push(c);
        let join = measure::join(&mut world, FIRST_JOINER + j8, (a, &a1), hook, work)?;
        join_ready.push(join.ready_ms);
        join_in_fdb.push(join.in_fdb_ms);
        join_first.push(join.first_attach_ms);
        join_reach.push(join.reachable_ms);
        joined.push(join.container);
    }
    Ok(Pair {
        attach_mesh,
        attach_single,
        rtt_same,
        rtt_cross,
        pings_sent,
        tcp,
        iperf_secs: args.iperf_secs,
        join_ready,
        join_in_fdb,
        join_first_attach: join_first,
        first_attach_single: first_single,
        join_reachable: join_reach,
    })
}

/// TCP throughput runs, Gbit/s.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tcp {
    pub overlay: Vec<f64>,
    pub underlay: Vec<f64>,
}

impl Tcp {
    /// Both sides' runs and the ratio of their means.
    pub fn summary(&self) -> String {
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let list = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.2}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        format!(
            "TCP overlay [{}] Gbit/s, underlay [{}] Gbit/s, x{:.2}",
            list(&self.overlay),
            list(&self.underlay),
            mean(&self.overlay) / mean(&self.underlay)
        )
    }
}

/// The `tcp` part: two hosts with agents, a container on each, [`throughput`].
fn tcp_only(args: &MeshArgs, hook: &Path, mesh_bin: &Path, work: &Path) -> Result<Tcp> {
    let mut world = World::new(mesh_bin, &work.join("logs"))?;
    let a = world.add_host(HOST_A);
    let b = world.add_host(HOST_B);
    world.start_agent(a)?;
    world.start_agent(b)?;
    for i in [a, b] {
        world.nodes[i].wait_ready()?;
    }
    let mut ha = hook_on(hook, world.nodes[a].state_dir(), work, "ta");
    let mut hb = hook_on(hook, world.nodes[b].state_dir(), work, "tb");
    let ca = measure::attach_on(&world.nodes[a], &mut ha, 0)?;
    let cb = measure::attach_on(&world.nodes[b], &mut hb, 0)?;
    throughput(&world, (a, b), (&ca, &cb), args)
}

/// Part 4: TCP from a container on A to one on B vs from host A to host B on the underlay,
/// alternating.
fn throughput(
    world: &World,
    (a, b): (usize, usize),
    (ca, cb): (&Attached, &Attached),
    args: &MeshArgs,
) -> Result<Tcp> {
    let ns = |i: usize| PathBuf::from(format!("/run/netns/{}", world.nodes[i].netns()));
    let mut tcp = Tcp::default();
    for _ in 0..args.iperf_rounds {
        tcp.overlay.push(measure::iperf(
            &cb.netns_path(),
            cb.addr,
            &ca.netns_path(),
            args.iperf_secs,
        )?);
        tcp.underlay.push(measure::iperf(
            &ns(b),
            world.nodes[b].sim.addr(),
            &ns(a),
            args.iperf_secs,
        )?);
    }
    Ok(tcp)
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

#[cfg(test)]
mod tests {
    use super::Tcp;

    #[test]
    fn tcp_summary_lists_both_sides_and_the_ratio_of_means() {
        let t = Tcp {
            overlay: vec![8.0, 6.0],
            underlay: vec![10.0, 10.0],
        };
        assert_eq!(
            t.summary(),
            "TCP overlay [8.00 6.00] Gbit/s, underlay [10.00 10.00] Gbit/s, x0.70"
        );
    }
}
