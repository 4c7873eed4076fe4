//! weave-hook attach latency with 0, 100, 1000... containers already attached to its bridge and
//! in its store. One host namespace; the counts are measured in ascending order, attaching more
//! containers between them, so that at every count the machine holds exactly that many (an
//! interleaved design would need all counts to coexist, and the traffic of the large ones
//! would land on the small ones). Drift between counts is controlled by the floor, measured
//! interleaved with weave-hook at every count on the same bridge, as weave-hook attaches one
//! address (no gratuitous ARP) and with the ARP (as for second addresses): what grows in the
//! floor grows in the kernel, not in weave-hook.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use ipnet::Ipv4Net;

use crate::methods::floor::Floor;
use crate::methods::hook::{Cidr, DetachWhen, WeaveHook};
use crate::methods::library::InProcess;
use crate::methods::{Method, Role};
use crate::results::{ScaleLevel, Series};
use crate::sandbox::{Container, Host};

const BRIDGE: &str = "wvbench-scale";
/// Sample numbers start here, far above those of the containers attached beforehand.
const FIRST_SAMPLE: usize = 1_000_000;
/// Pause after attaching more containers: each new ethwe sends IPv6 router solicitations and
/// multicast reports for a few seconds, flooded to every port of the bridge.
const SETTLE: Duration = Duration::from_secs(10);

/// `candidates` (label, binary): other weave-hook builds, measured interleaved at every
/// count beside the real one, on the same bridge and store, as is weave-hook's attach code
/// called in-process (both reported in `ScaleLevel::candidates`).
#[allow(clippy::too_many_arguments)]
pub fn run(
    binary: &Path,
    candidates: &[(String, PathBuf)],
    work: &Path,
    (subnet, floor_subnet): (Ipv4Net, Ipv4Net),
    counts: &[usize],
    samples: usize,
    warmup: usize,
) -> Result<Vec<ScaleLevel>> {
    let mut counts = counts.to_vec();
    counts.sort_unstable();
    let host = Host::create()?;
    let hook_of = |binary: &Path, tag: &str, label: String| WeaveHook {
        label,
        tag: tag.to_string(),
        binary: binary.to_path_buf(),
        bridge: BRIDGE.to_string(),
        state_dir: work.join("scale"),
        bundle: work.to_path_buf(),
        cidr: Cidr::Allocate(subnet),
        detach: DetachWhen::Running,
        role: Role::Ours,
    };
    let hook = |tag: &str, label: String| hook_of(binary, tag, label);
    let mut filler = hook("fill", String::new());
    let mut attached: Vec<Container> = Vec::new();
    let mut levels = Vec::new();
    for count in counts {
        host.in_it(|| -> Result<()> {
            while attached.len() < count {
                let n = attached.len();
                let c = Container::start()?;
                filler
                    .attach(&c, n)
                    .with_context(|| format!("attach container {n} of {count} beforehand"))?;
                attached.push(c);
            }
            Ok(())
        })??;
        std::thread::sleep(SETTLE);
        eprintln!("weave-bench: scale: {count} containers attached");
        let mut hook = hook("scale", format!("weave-hook, {count} attached"));
        let mut floor = Floor::new(BRIDGE, floor_subnet, &format!("floor, {count} attached"));
        let mut announcing = Floor::announcing(
            BRIDGE,
            floor_subnet,
            &format!("floor with the gratuitous ARP, {count} attached"),
        );
        let mut others: Vec<WeaveHook> = candidates
            .iter()
            .enumerate()
            .map(|(i, (label, path))| {
                let mut c = hook_of(
                    path,
                    &format!("cand{i}"),
                    format!("candidate {label}, {count} attached"),
                );
                c.role = Role::Probe;
                c
            })
            .collect();
        let mut series = vec![
            Series::new(hook.name(), Role::Ours),
            Series::new(floor.name(), Role::Floor),
            Series::new(announcing.name(), Role::Probe),
        ];
        // weave-hook's attach code called in-process: splits its growth between the code
        // (store, netlink, firewall) and the process.
        let mut inproc = InProcess {
            hook: hook_of(binary, "inproc", String::new()),
        };
        series.extend(others.iter().map(|c| Series::new(c.name(), Role::Probe)));
        series.push(Series::new(inproc.name(), Role::Probe));
        host.in_it(|| -> Result<()> {
            floor.prepare()?;
            announcing.prepare()?;
            let mut methods: Vec<&mut dyn Method> = vec![&mut hook, &mut floor, &mut announcing];
            methods.extend(others.iter_mut().map(|c| c as &mut dyn Method));
            methods.push(&mut inproc);
            for round in 0..warmup + samples {
                let n = FIRST_SAMPLE + round;
                // Rotate the order, so each method follows each other alike.
                methods.rotate_left(1);
                for m in methods.iter_mut() {
                    let mut c = Container::start()?;
                    let t = m.attach(&c, n)?;
                    m.detach(&mut c, n)?;
                    if round >= warmup {
                        let i = series.iter().position(|s| s.name == m.name());
                        series[i.expect("a series per method")].push(t);
                    }
                }
            }
            Ok(())
        })??;
        let candidates = series.split_off(3);
        let [hook, floor, floor_announcing]: [Series; 3] = series.try_into().expect("three series");
        levels.push(ScaleLevel {
            count,
            hook,
            floor,
            floor_announcing,
            candidates,
        });
    }
    Ok(levels)
}
