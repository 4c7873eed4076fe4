//! N attaches started at once, then N detaches at once: wall time until the last is done,
//! and checks of the outcome read back from the kernel — every container has exactly one
//! address on its interface, no address twice, every veth on the bridge, and none left
//! after the detaches.

use std::collections::HashSet;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use weave_hook::netlink::Netlink;
use weave_hook::netns::Netns;

use crate::methods::Process;
use crate::results::{Burst, Concurrency};
use crate::sandbox::Container;
use crate::timing::{self, millis};

/// Starts one command per container at once and waits for all. Returns the wall time and
/// the failures, with the first failure's message.
fn burst(method: &dyn Process, attach: bool, containers: &[Container]) -> Result<(f64, usize)> {
    let commands: Vec<(Command, Vec<u8>)> = containers
        .iter()
        .enumerate()
        .map(|(n, c)| method.command(attach, c, n))
        .collect();
    let start = Instant::now();
    let mut children = Vec::with_capacity(commands.len());
    for (mut cmd, input) in commands {
        let child = timing::spawn(&mut cmd, &input)?;
        children.push((cmd, child));
    }
    let mut failures = 0;
    for (cmd, child) in &mut children {
        let status = child.wait().context("wait for a child")?;
        if let Err(e) = timing::check(cmd, child, status) {
            if failures == 0 {
                eprintln!("weave-bench: concurrency: {}: {e:#}", method.name());
            }
            failures += 1;
        }
    }
    // Waited in spawn order: the last wait returns when the slowest is done.
    Ok((millis(start.elapsed()), failures))
}

/// The IPv4 addresses on `ifname` inside each container (empty when it has none).
fn container_addrs(containers: &[Container], ifname: &str) -> Result<Vec<Vec<ipnet::Ipv4Net>>> {
    let home = Netns::current()?;
    containers
        .iter()
        .map(|c| {
            let ns = Netns::open(&c.netns_path())?;
            ns.run_in(&home, || -> Result<Vec<ipnet::Ipv4Net>> {
                let mut nl = Netlink::open()?;
                Ok(match nl.link_by_name(ifname)? {
                    Some(link) => nl.addresses(link.index)?,
                    None => Vec::new(),
                })
            })?
        })
        .collect()
}

/// How many links are enslaved to `bridge` in the current namespace.
fn bridge_ports(bridge: &str) -> Result<usize> {
    let mut nl = Netlink::open()?;
    let Some(br) = nl.link_by_name(bridge)? else {
        return Ok(0);
    };
    Ok(nl
        .links()?
        .iter()
        .filter(|l| l.master == Some(br.index))
        .count())
}

/// Ports still on `bridge` once deletions left to the background (weave-hook's detach hands
/// the ~30 ms veth deletion to a child) had up to 5 s to finish.
fn ports_left(bridge: &str) -> Result<usize> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let ports = bridge_ports(bridge)?;
        if ports == 0 || std::time::Instant::now() > deadline {
            return Ok(ports);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// One round for one method: attach burst, checks, detach burst, checks.
fn round(method: &dyn Process, at_once: usize) -> Result<(Burst, Burst)> {
    let containers: Vec<Container> = (0..at_once)
        .map(|_| Container::start())
        .collect::<Result<_>>()?;
    let (wall_ms, failures) = burst(method, true, &containers)?;
    let addrs = container_addrs(&containers, method.ifname())?;
    let with_one = addrs.iter().filter(|a| a.len() == 1).count();
    let distinct: HashSet<_> = addrs.iter().flatten().map(|a| a.addr()).collect();
    let all: usize = addrs.iter().map(Vec::len).sum();
    let ports = bridge_ports(method.bridge())?;
    let attach = Burst {
        wall_ms,
        failures,
        duplicates: all - distinct.len(),
        missing: (at_once - with_one) + at_once.abs_diff(ports),
    };
    let (wall_ms, failures) = burst(method, false, &containers)?;
    let detach = Burst {
        wall_ms,
        failures,
        duplicates: 0,
        missing: ports_left(method.bridge())? + method.leftovers()?,
    };
    Ok((attach, detach))
}

/// `rounds` rounds of `at_once` attaches and detaches per method, methods interleaved. Runs
/// in the caller's (host) namespace.
pub fn run(
    methods: &mut [Box<dyn Process>],
    at_once: usize,
    rounds: usize,
) -> Result<Vec<Concurrency>> {
    for m in methods.iter_mut() {
        m.prepare()?;
    }
    let mut results: Vec<Concurrency> = methods
        .iter()
        .map(|m| Concurrency {
            name: m.name(),
            role: m.role(),
            at_once,
            attach: Vec::new(),
            detach: Vec::new(),
        })
        .collect();
    for r in 0..rounds {
        for k in 0..methods.len() {
            let i = (k + r) % methods.len();
            let (a, d) = round(methods[i].as_ref(), at_once)
                .with_context(|| format!("{}: {at_once} at once", methods[i].name()))?;
            results[i].attach.push(a);
            results[i].detach.push(d);
        }
        eprintln!("weave-bench: concurrency: round {} of {rounds} done", r + 1);
    }
    Ok(results)
}
