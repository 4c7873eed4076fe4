//! The measurements on the simulated mesh: attach with and without the agent, a new host's
//! first attach and the time until it is reachable, ping RTT and TCP throughput across hosts
//! against the same host and the raw underlay, and a many-host mesh's convergence.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ipnet::Ipv4Net;
use weave_e2e::mesh::in_netns;

use super::world::{Node, World};
use super::Scale;
use crate::methods::hook::{Cidr, DetachWhen, WeaveHook};
use crate::methods::{container_id, Method, Role};
use crate::results::Series;
use crate::sandbox::Container;
use crate::timing::millis;

/// How long a joining host may take to become reachable.
const REACH_WITHIN: Duration = Duration::from_secs(30);
/// How long a many-host mesh may take to converge.
const CONVERGE_WITHIN: Duration = Duration::from_secs(120);
/// The sample number of the container that stays attached during the attach measurement.
const RESIDENT: usize = usize::MAX;
/// Longer than the agents' publication period (1 s).
const PUBLISH_SETTLE: Duration = Duration::from_secs(3);
/// The port of the throughput measurement's iperf3 server.
const IPERF_PORT: &str = "5201";

/// weave-hook as runc runs it, on `node`'s state directory, allocating from the default
/// range (what `net:default` means).
pub fn hook_on(binary: &Path, state_dir: &Path, work: &Path, tag: &str) -> WeaveHook {
    let range: Ipv4Net = weave_core::settings::DEFAULT_RANGE
        .parse()
        .expect("the default range is valid");
    WeaveHook {
        label: format!("weave-hook ({tag})"),
        tag: tag.to_string(),
        binary: binary.to_path_buf(),
        bridge: weave_core::settings::DEFAULT_BRIDGE.to_string(),
        state_dir: state_dir.to_path_buf(),
        bundle: work.to_path_buf(),
        cidr: Cidr::Allocate(range),
        detach: DetachWhen::Running,
        role: Role::Ours,
    }
}

/// A container attached on a host, and its address.
pub struct Attached {
    pub container: Container,
    pub addr: Ipv4Addr,
    pub ms: f64,
}

impl Attached {
    pub fn netns_path(&self) -> PathBuf {
        self.container.netns_path()
    }
}

/// Starts a container and attaches it on `node` (weave-hook runs in the host's namespace);
/// returns it with the attach's duration.
pub fn attach_on(node: &Node, hook: &mut WeaveHook, n: usize) -> Result<Attached> {
    let container = Container::start()?;
    let ms = in_netns(node.netns(), || hook.attach(&container, n))?;
    let addr = node.address_of(&container_id(&hook.tag, n))?;
    Ok(Attached {
        container,
        addr,
        ms,
    })
}

fn detach_on(node: &Node, hook: &mut WeaveHook, mut c: Attached, n: usize) -> Result<()> {
    in_netns(node.netns(), || hook.detach(&mut c.container, n)).map(|_| ())
}

/// Part 1: attach+detach on a mesh host (agent running, blocks owned) and on a host without
/// an agent, interleaved (the order alternates); the attach times.
pub fn attach_with_and_without(
    mesh: &Node,
    single: &Node,
    (hook_bin, work): (&Path, &Path),
    samples: usize,
    warmup: usize,
) -> Result<(Series, Series)> {
    let mut hm = hook_on(hook_bin, mesh.state_dir(), work, "mesh");
    let mut hs = hook_on(hook_bin, single.state_dir(), work, "single");
    // One container stays attached on each side: a bridge without ports has no carrier,
    // and each sample would otherwise pay the bridge's carrier change on the single host
    // only (the mesh host's bridge always has its VXLAN port).
    let _resident = (
        attach_on(mesh, &mut hm, RESIDENT)?,
        attach_on(single, &mut hs, RESIDENT)?,
    );
    let mut with = Series::new(
        "attach, weave-mesh running (blocks owned)".into(),
        Role::Ours,
    );
    let mut without = Series::new("attach, single host (no agent)".into(), Role::Floor);
    for n in 0..warmup + samples {
        let one = |node: &Node, hook: &mut WeaveHook| -> Result<f64> {
            let c = attach_on(node, hook, n)?;
            let ms = c.ms;
            detach_on(node, hook, c, n)?;
            Ok(ms)
        };
        let (m, s) = if n % 2 == 0 {
            let m = one(mesh, &mut hm)?;
            (m, one(single, &mut hs)?)
        } else {
            let s = one(single, &mut hs)?;
            (one(mesh, &mut hm)?, s)
        };
        if n >= warmup {
            with.push(m);
            without.push(s);
        }
    }
    Ok((with, without))
}

/// Round-trip times of `count` pings from the container holding `from` to `to`, every
/// `interval` seconds, in ms (lost pings have none).
pub fn ping(from: &Path, to: Ipv4Addr, count: usize, interval: f64) -> Result<Vec<f64>> {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", from.display()))
        .args(["--", "ping", "-n"])
        .arg("-c")
        .arg(count.to_string())
        .arg("-i")
        .arg(format!("{interval}"))
        .arg("-W")
        .arg("1")
        .arg(to.to_string())
        .output()
        .context("run ping")?;
    Ok(rtts(&String::from_utf8_lossy(&out.stdout)))
}

/// The `time=X ms` of every reply line of ping's output.
pub fn rtts(text: &str) -> Vec<f64> {
    text.lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split_whitespace().next())
        .filter_map(|t| t.parse().ok())
        .collect()
}

/// Part 3: same-host and cross-host RTTs from `from`, in alternating rounds.
pub fn rtt_same_and_cross(
    from: &Attached,
    same: Ipv4Addr,
    cross: Ipv4Addr,
    pings: usize,
    rounds: usize,
) -> Result<(Series, Series, usize)> {
    let mut s = Series::new("ping RTT, same host".into(), Role::Floor);
    let mut x = Series::new("ping RTT, across hosts (VXLAN)".into(), Role::Ours);
    let per_round = pings.div_ceil(rounds.max(1));
    let path = from.netns_path();
    // Warm the neighbour caches.
    ping(&path, same, 2, 0.01)?;
    ping(&path, cross, 2, 0.01)?;
    for _ in 0..rounds.max(1) {
        for t in ping(&path, same, per_round, 0.01)? {
            s.push(t);
        }
        for t in ping(&path, cross, per_round, 0.01)? {
            x.push(t);
        }
    }
    let sent = per_round * rounds.max(1);
    if s.ms.is_empty() || x.ms.is_empty() {
        bail!(
            "no ping got an answer (same host {}, across {})",
            s.ms.len(),
            x.ms.len()
        );
    }
    Ok((s, x, sent))
}

/// An iperf3 server we started, killed (if still ours) when dropped.
struct IperfServer(Child);

impl Drop for IperfServer {
    fn drop(&mut self) {
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", self.0.id())).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains("iperf3") {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// One TCP throughput run of `secs` seconds from the namespace `client` to an iperf3 server
/// in `server` on `addr`; Gbit/s received.
pub fn iperf(server: &Path, addr: Ipv4Addr, client: &Path, secs: u32) -> Result<f64> {
    let child = Command::new("nsenter")
        .arg(format!("--net={}", server.display()))
        .args(["--", "iperf3", "-s", "-1", "-p", IPERF_PORT, "-B"])
        .arg(addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start iperf3 -s (install iperf3)")?;
    let _server = IperfServer(child);
    let start = Instant::now();
    loop {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", client.display()))
            .args(["--", "iperf3", "-J", "-p", IPERF_PORT, "-c"])
            .arg(addr.to_string())
            .arg("-t")
            .arg(secs.to_string())
            .stdin(Stdio::null())
            .output()
            .context("run iperf3 -c")?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if let Some(bps) = v["end"]["sum_received"]["bits_per_second"].as_f64() {
            return Ok(bps / 1e9);
        }
        if start.elapsed() > Duration::from_secs(5) {
            bail!(
                "iperf3 to {addr} failed: {}{}",
                v["error"].as_str().unwrap_or(""),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // The server is not listening yet.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a host joining the mesh took, from its agent's start.
pub struct Join {
    /// Until state.json said etcd is reachable.
    pub ready_ms: f64,
    /// The first attach (claims a block through the agent and etcd).
    pub first_attach_ms: f64,
    /// Until the existing host's FDB had the new host.
    pub in_fdb_ms: f64,
    /// Until a container on an existing host got a ping reply from the new host's container.
    pub reachable_ms: f64,
    pub container: Attached,
}

/// Part 2 and 5: adds a host, starts its agent, attaches a container as soon as the agent is
/// ready, and pings it from `from` on host `from_host` (every 10 ms) until it answers; a
/// thread meanwhile polls `from_host`'s FDB for the new host.
pub fn join(
    world: &mut World,
    n: u8,
    (from_host, from): (usize, &Attached),
    hook_bin: &Path,
    work: &Path,
) -> Result<Join> {
    let i = world.add_host(n);
    let mut hook = hook_on(
        hook_bin,
        world.nodes[i].state_dir(),
        work,
        &format!("join{n}"),
    );
    let container = Container::start()?;
    let t0 = Instant::now();
    world.start_agent(i)?;
    let world = &*world;
    let node = &world.nodes[i];
    std::thread::scope(|scope| {
        let fdb =
            scope.spawn(|| world.nodes[from_host].wait_fdb_has(node.sim.addr(), REACH_WITHIN));
        node.wait_ready()?;
        let ready_ms = millis(t0.elapsed());
        let first_attach_ms = first_attach(node, &mut hook, &container, 0)?;
        let addr = node.address_of(&container_id(&hook.tag, 0))?;
        first_reply(&from.netns_path(), addr)?;
        let reachable_ms = millis(t0.elapsed());
        let in_fdb = fdb
            .join()
            .map_err(|_| anyhow::anyhow!("the FDB polling thread panicked"))??;
        Ok(Join {
            ready_ms,
            first_attach_ms,
            in_fdb_ms: millis(in_fdb.duration_since(t0)),
            reachable_ms,
            container: Attached {
                container,
                addr,
                ms: first_attach_ms,
            },
        })
    })
}

/// The first attach on a host whose agent just became ready: state.json is written a moment
/// before the agent serves claims, so an attach refused as "starting" is tried again after a
/// millisecond (the successful one is timed), for at most a second.
fn first_attach(node: &Node, hook: &mut WeaveHook, container: &Container, n: usize) -> Result<f64> {
    let start = Instant::now();
    loop {
        match in_netns(node.netns(), || hook.attach(container, n)) {
            Ok(ms) => return Ok(ms),
            Err(e)
                if format!("{e:#}").contains("is starting")
                    && start.elapsed() < Duration::from_secs(1) =>
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Pings `to` from the namespace `from` every 10 ms until the first reply.
fn first_reply(from: &Path, to: Ipv4Addr) -> Result<()> {
    let mut child = Command::new("nsenter")
        .arg(format!("--net={}", from.display()))
        .args(["--", "ping", "-n", "-i", "0.01", "-w"])
        .arg(REACH_WITHIN.as_secs().to_string())
        .arg(to.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("start ping")?;
    let stdout = child.stdout.take().context("ping has no stdout")?;
    let replied = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("bytes from"));
    let _ = child.kill();
    let _ = child.wait();
    if !replied {
        bail!("{to} never answered within {REACH_WITHIN:?}");
    }
    Ok(())
}

pub fn many_hosts(
    world: &mut World,
    hosts: usize,
    per_host: usize,
    hook_bin: &Path,
    work: &Path,
    idle: Duration,
) -> Result<Scale> {
    for n in 1..=hosts {
        world.add_host(u8::try_from(n).context("at most 200 hosts")?);
    }
    let t0 = Instant::now();
    for i in 0..hosts {
        world.start_agent(i)?;
    }
    let mut converged: Vec<Option<f64>> = vec![None; hosts];
    while converged.iter().any(Option::is_none) {
        for (i, node) in world.nodes.iter().enumerate() {
            if converged[i].is_none() && node.fdb_peers()? >= hosts - 1 {
                converged[i] = Some(millis(t0.elapsed()));
            }
        }
        if t0.elapsed() > CONVERGE_WITHIN {
            let missing = converged.iter().filter(|c| c.is_none()).count();
            bail!("{missing} of {hosts} hosts have not every other host in their FDB after {CONVERGE_WITHIN:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut first = Series::new(
        format!("first attach on a host ({hosts}-host mesh)"),
        Role::Ours,
    );
    let mut rest = Series::new(format!("attach ({hosts}-host mesh)"), Role::Ours);
    let (_, rev_before, _) = world.etcd_load()?;
    let mut firsts: Vec<Attached> = Vec::new();
    let mut keep: Vec<Attached> = Vec::new();
    for node in &world.nodes {
        node.wait_ready()?;
        let mut hook = hook_on(hook_bin, node.state_dir(), work, &node.name);
        for n in 0..per_host {
            if n == 0 {
                let container = Container::start()?;
                let ms = first_attach(node, &mut hook, &container, n)?;
                let addr = node.address_of(&container_id(&hook.tag, n))?;
                first.push(ms);
                firsts.push(Attached {
                    container,
                    addr,
                    ms,
                });
            } else {
                let c = attach_on(node, &mut hook, n)?;
                rest.push(c.ms);
                keep.push(c);
            }
        }
    }
    let from = firsts[0].netns_path();
    let reachable = firsts[1..]
        .iter()
        .filter(|c| ping(&from, c.addr, 1, 0.2).is_ok_and(|r| !r.is_empty()))
        .count();
    // The agents publish new addresses within a second: let the last ones land first.
    std::thread::sleep(PUBLISH_SETTLE);
    let (_, rev0, _) = world.etcd_load()?;
    std::thread::sleep(idle);
    let (keys, rev1, db) = world.etcd_load()?;
    let mut converged_ms: Vec<f64> = converged.into_iter().flatten().collect();
    converged_ms.sort_by(f64::total_cmp);
    Ok(Scale {
        hosts,
        per_host,
        converged_ms,
        first_attach: first,
        attach: rest,
        reachable,
        etcd_keys: keys,
        idle_writes_per_s: rev1.saturating_sub(rev0) as f64 / idle.as_secs_f64(),
        writes_per_attach: rev0.saturating_sub(rev_before) as f64 / (hosts * per_host) as f64,
        etcd_db_bytes: db,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtts_of_iputils_output() {
        let text = "PING 10.32.0.2 (10.32.0.2) 56(84) bytes of data.\n\
                    64 bytes from 10.32.0.2: icmp_seq=1 ttl=64 time=0.045 ms\n\
                    64 bytes from 10.32.0.2: icmp_seq=2 ttl=64 time=1.20 ms\n\
                    \n--- 10.32.0.2 ping statistics ---\n\
                    2 packets transmitted, 2 received, 0% packet loss, time 1ms\n\
                    rtt min/avg/max/mdev = 0.045/0.622/1.200/0.577 ms\n";
        assert_eq!(rtts(text), vec![0.045, 1.20]);
    }
}
