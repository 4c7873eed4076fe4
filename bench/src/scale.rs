//! weave-hook attach latency with 0, 100, 1000... containers already attached. Each count has
//! a host namespace of its own (so the kernel's link tables hold exactly that many
//! containers' veths, and the store that many records), and the counts are sampled
//! interleaved, round by round.

use std::path::Path;

use anyhow::{Context, Result};
use ipnet::Ipv4Net;

use crate::methods::hook::{Cidr, WeaveHook};
use crate::methods::{Method, Role};
use crate::results::Series;
use crate::sandbox::{Container, Host};

const BRIDGE: &str = "wvbench-scale";
/// Sample numbers start here, far above those of the containers attached beforehand.
const FIRST_SAMPLE: usize = 1_000_000;

struct Level {
    count: usize,
    host: Host,
    hook: WeaveHook,
    /// The containers attached beforehand; they stay attached until the level is dropped.
    _attached: Vec<Container>,
    series: Series,
}

pub fn run(
    binary: &Path,
    work: &Path,
    subnet: Ipv4Net,
    counts: &[usize],
    samples: usize,
    warmup: usize,
) -> Result<Vec<(usize, Series)>> {
    let mut levels = Vec::new();
    for &count in counts {
        let host = Host::create()?;
        let hook = |tag: &str| WeaveHook {
            label: format!("weave-hook attach, {count} attached"),
            tag: tag.to_string(),
            binary: binary.to_path_buf(),
            bridge: BRIDGE.to_string(),
            state_dir: work.join(format!("scale-{count}")),
            bundle: work.to_path_buf(),
            cidr: Cidr::Allocate(subnet),
            detach_after_exit: false,
        };
        let mut filler = hook("fill");
        let attached = host.in_it(|| -> Result<Vec<Container>> {
            (0..count)
                .map(|n| {
                    let c = Container::start()?;
                    filler
                        .attach(&c, n)
                        .with_context(|| format!("attach container {n} of {count} beforehand"))?;
                    Ok(c)
                })
                .collect()
        })??;
        eprintln!("weave-bench: scale: {count} containers attached");
        let hook = hook("scale");
        let series = Series::new(hook.name(), Role::Ours);
        levels.push(Level {
            count,
            host,
            hook,
            _attached: attached,
            series,
        });
    }
    let count = levels.len();
    for round in 0..warmup + samples {
        for k in 0..count {
            let level = &mut levels[(k + round) % count];
            let n = FIRST_SAMPLE + round;
            let hook = &mut level.hook;
            let (a, _) = level.host.in_it(|| -> Result<_> {
                let mut c = Container::start()?;
                let a = hook.attach(&c, n)?;
                let d = hook.detach(&mut c, n)?;
                Ok((a, d))
            })??;
            if round >= warmup {
                level.series.push(a);
            }
        }
    }
    Ok(levels.into_iter().map(|l| (l.count, l.series)).collect())
}
