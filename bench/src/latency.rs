//! Attach and detach latency, every method interleaved: each round runs every method once on
//! a fresh container, starting with a different method each round, so drift and the kernel's
//! background work (namespaces being freed) fall on all of them alike.

use anyhow::{Context, Result};

use crate::methods::Method;
use crate::results::Series;
use crate::sandbox::Container;

/// Runs `warmup + samples` rounds; returns the attach and detach series of the measured ones
/// (methods without a detach have no detach series).
pub fn run(
    methods: &mut [Box<dyn Method>],
    samples: usize,
    warmup: usize,
) -> Result<(Vec<Series>, Vec<Series>)> {
    for m in methods.iter_mut() {
        m.prepare()
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
            let a = method
                .attach(&container, round)
                .with_context(|| format!("{}: attach #{round}", method.name()))?;
            let d = method
                .detach(&mut container, round)
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
