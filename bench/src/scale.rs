//! weave-hook attach latency with 0, 100, 1000... containers already attached. Each count has
//! a host namespace of its own (so the kernel's link tables hold exactly that many
//! containers' veths, and the store that many records), and the counts are sampled
//! interleaved, round by round. The floor is measured on the same bridges, to tell what
//! grows in the kernel from what grows in weave-hook.

use std::path::Path;

use anyhow::{Context, Result};
use ipnet::Ipv4Net;

use crate::methods::floor::Floor;
use crate::methods::hook::{Cidr, DetachWhen, WeaveHook};
use crate::methods::{Method, Role};
use crate::results::{ScaleLevel, Series};
use crate::sandbox::{Container, Host};

const BRIDGE: &str = "wvbench-scale";
/// Sample numbers start here, far above those of the containers attached beforehand.
const FIRST_SAMPLE: usize = 1_000_000;

struct Level {
    count: usize,
    host: Host,
    hook: WeaveHook,
    floor: Floor,
    silent: Floor,
    /// The containers attached beforehand; they stay attached until the level is dropped.
    _attached: Vec<Container>,
    series: Series,
    floor_series: Series,
    silent_series: Series,
}

pub fn run(
    binary: &Path,
    work: &Path,
    subnet: Ipv4Net,
    floor_subnet: Ipv4Net,
    counts: &[usize],
    samples: usize,
    warmup: usize,
) -> Result<Vec<ScaleLevel>> {
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
            detach: DetachWhen::Running,
            role: Role::Ours,
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
        let mut floor = Floor::new(BRIDGE, floor_subnet, &format!("floor, {count} attached"));
        let mut silent = Floor::silent(
            BRIDGE,
            floor_subnet,
            &format!("floor without gratuitous ARP, {count} attached"),
        );
        host.in_it(|| floor.prepare().and_then(|()| silent.prepare()))??;
        levels.push(Level {
            count,
            host,
            series: Series::new(hook.name(), Role::Ours),
            floor_series: Series::new(floor.name(), Role::Floor),
            silent_series: Series::new(silent.name(), Role::Probe),
            hook,
            floor,
            silent,
            _attached: attached,
        });
    }
    let count = levels.len();
    for round in 0..warmup + samples {
        for k in 0..count {
            let level = &mut levels[(k + round) % count];
            let n = FIRST_SAMPLE + round;
            let methods: [&mut dyn Method; 3] =
                [&mut level.hook, &mut level.floor, &mut level.silent];
            let times = level.host.in_it(|| -> Result<Vec<f64>> {
                methods
                    .into_iter()
                    .map(|m| {
                        let mut c = Container::start()?;
                        let t = m.attach(&c, n)?;
                        m.detach(&mut c, n)?;
                        Ok(t)
                    })
                    .collect()
            })??;
            if round >= warmup {
                level.series.push(times[0]);
                level.floor_series.push(times[1]);
                level.silent_series.push(times[2]);
            }
        }
    }
    Ok(levels
        .into_iter()
        .map(|l| ScaleLevel {
            count: l.count,
            hook: l.series,
            floor: l.floor_series,
            floor_silent: l.silent_series,
        })
        .collect())
}
