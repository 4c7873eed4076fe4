//! Attach and detach latency, every method interleaved: each round runs every method once on
//! a fresh container, starting with a different method each round, so drift and the kernel's
//! background work (namespaces being freed) fall on all of them alike.
//!
//! Each method runs in a host namespace of its own (a Docker host's firewall in each), as a
//! host runs one network tool: in one shared namespace every method's firewall change (each
//! weave-hook attach's port guard, netavark's and the CNI plugin's rules) moves the
//! nf_tables generation, and each weave-hook attach then found its bridge's firewall marker
//! stale and ran `iptables -C` (a process, milliseconds), which a host with one weave bridge
//! does only after something else changed its ruleset.

use anyhow::{Context, Result};

use crate::methods::Method;
use crate::results::Series;
use crate::sandbox::{Container, Host};

/// Runs `warmup + samples` rounds; returns the attach and detach series of the measured ones
/// (methods without a detach have no detach series).
pub fn run(
    methods: &mut [Box<dyn Method>],
    samples: usize,
    warmup: usize,
) -> Result<(Vec<Series>, Vec<Series>)> {
    let hosts = methods
        .iter()
        .map(|_| Host::create())
        .collect::<Result<Vec<Host>>>()?;
    for (m, host) in methods.iter_mut().zip(&hosts) {
        host.in_it(|| m.prepare())?
            .with_context(|| format!("prepare {}", m.name()))?;
    }
    let mut attach: Vec<Series> = methods
        .iter()
        .map(|m| Series::new(m.name(), m.role()))
        .collect();
    let mut detach = attach.clone();
    let count = methods.len();
    for round in 0..warmup + samples {
        for k in 0..count {
            let i = (k + round) % count;
            let method = &mut methods[i];
            let mut container = Container::start()?;
            let a = hosts[i]
                .in_it(|| method.attach(&container, round))?
                .with_context(|| format!("{}: attach #{round}", method.name()))?;
            let d = hosts[i]
                .in_it(|| method.detach(&mut container, round))?
                .with_context(|| format!("{}: detach #{round}", method.name()))?;
            drop(container);
            if round >= warmup {
                attach[i].push(a);
                if let Some(d) = d {
                    detach[i].push(d);
                }
            }
        }
        if (round + 1) % 50 == 0 {
            eprintln!("weave-bench: latency: {} rounds done", round + 1);
        }
    }
    detach.retain(|s| !s.ms.is_empty());
    Ok((attach, detach))
}
