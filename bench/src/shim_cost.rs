//! The output of weave-runtime's own benchmark (`cargo bench -p weave-runtime`, which
//! scripts/bench.sh runs in the same session), reused rather than measured twice: its text
//! goes into BENCHMARKS.md as it is, and the end-to-end ratios are read from its rows.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

/// Row labels printed by `runtime-shim/benches/shim_cost.rs` (kept equal to its constants).
pub mod rows {
    pub const DOCKER: &str = "docker run";
    pub const DOCKER_RUNC: &str = "--runtime runc --network none";
    pub const DOCKER_WEAVE: &str = "--runtime weave --network none + weave.cidr (path only)";
    pub const DOCKER_RUNTIME_ARGS: &str = "same, runtimeArgs (dockerd's wrapper script)";
    pub const DOCKER_NOOP_HOOK: &str = "same as weave, but the hook is /bin/true (no network)";
    pub const DOCKER_BRIDGE: &str = "--runtime runc, Docker's default bridge network";
    pub const PODMAN: &str = "podman run";
    pub const PODMAN_NONE: &str = "--network none";
    pub const PODMAN_WEAVE: &str = "--network none + weave.cidr (hooks.d)";
    pub const PODMAN_NOOP_HOOK: &str = "--network none + a hooks.d hook that is /bin/true";
    pub const PODMAN_NETAVARK: &str = "podman's default network (netavark)";
}

pub struct ShimCost {
    pub text: String,
}

/// The end-to-end ratios of one engine: weave ÷ the engine without a network, and weave ÷
/// the engine's own default network (medians); and what a hook that does nothing costs
/// the same engine (÷ without a network), the limit of any hook, when that row was measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineRatios {
    pub weave_ms: f64,
    pub over_none: f64,
    pub over_own_network: f64,
    pub noop_hook_over_none: Option<f64>,
}

impl ShimCost {
    pub fn load(path: &Path) -> Result<Self> {
        let text = fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        Ok(Self { text })
    }

    /// The median (ms) of row `label` in the block whose title starts with `section`
    /// (lines `  <label>  <ms> ms   x<ratio>`).
    pub fn median_ms(&self, section: &str, label: &str) -> Option<f64> {
        self.text
            .lines()
            .skip_while(|l| !l.starts_with(section))
            .skip(1)
            .take_while(|l| l.starts_with(' '))
            .find_map(|l| {
                let rest = l.trim_start().strip_prefix(label)?;
                let mut words = rest.split_whitespace();
                let ms = words.next()?.parse().ok()?;
                (words.next() == Some("ms")).then_some(ms)
            })
    }

    fn ratios(&self, section: &str, [weave, none, own, noop]: [&str; 4]) -> Option<EngineRatios> {
        let weave_ms = self.median_ms(section, weave)?;
        let none_ms = self.median_ms(section, none)?;
        Some(EngineRatios {
            weave_ms,
            over_none: weave_ms / none_ms,
            over_own_network: weave_ms / self.median_ms(section, own)?,
            noop_hook_over_none: self.median_ms(section, noop).map(|ms| ms / none_ms),
        })
    }

    /// `docker run --rm` with weave at Docker's default settings.
    pub fn docker(&self) -> Option<EngineRatios> {
        use rows::*;
        self.ratios(
            DOCKER,
            [DOCKER_WEAVE, DOCKER_RUNC, DOCKER_BRIDGE, DOCKER_NOOP_HOOK],
        )
    }

    /// The `runtimeArgs` row ÷ runc `--network none`.
    pub fn docker_runtime_args(&self) -> Option<f64> {
        use rows::*;
        Some(self.median_ms(DOCKER, DOCKER_RUNTIME_ARGS)? / self.median_ms(DOCKER, DOCKER_RUNC)?)
    }

    /// `podman run --rm` with weave through hooks.d.
    pub fn podman(&self) -> Option<EngineRatios> {
        use rows::*;
        self.ratios(
            PODMAN,
            [PODMAN_WEAVE, PODMAN_NONE, PODMAN_NETAVARK, PODMAN_NOOP_HOOK],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str =
        "per call: --version (median of 300, interleaved)\n  runc --version   2.00 ms   x1.00\n\
docker run --rm bb true (median of 20, interleaved)
  --runtime runc --network none                                  200.00 ms   x1.00
  --runtime weave --network none + weave.cidr (path only)        202.00 ms   x1.01
  --runtime weave --network none, no weave options               201.00 ms   x1.00
  same, runtimeArgs (dockerd's wrapper script)                   230.00 ms   x1.15
  same as weave, but the hook is /bin/true (no network)          204.00 ms   x1.02
  --runtime runc, Docker's default bridge network                300.00 ms   x1.50
podman run --rm bb true (median of 20, interleaved)
  --network none                                                 160.00 ms   x1.00
  --network none + weave.cidr (hooks.d)                          168.00 ms   x1.05
  --network none + a hooks.d hook that is /bin/true              164.00 ms   x1.03
  podman's default network (netavark)                            336.00 ms   x2.10
";

    #[test]
    fn reads_each_engines_ratios() {
        let cost = ShimCost { text: TEXT.into() };
        let d = cost.docker().unwrap();
        assert_eq!(d.weave_ms, 202.0);
        assert!((d.over_none - 1.01).abs() < 1e-9);
        assert!((d.over_own_network - 202.0 / 300.0).abs() < 1e-9);
        assert!((cost.docker_runtime_args().unwrap() - 1.15).abs() < 1e-9);
        assert!((d.noop_hook_over_none.unwrap() - 1.02).abs() < 1e-9);
        let p = cost.podman().unwrap();
        assert!((p.over_none - 1.05).abs() < 1e-9);
        assert!((p.over_own_network - 0.5).abs() < 1e-9);
        assert!((p.noop_hook_over_none.unwrap() - 164.0 / 160.0).abs() < 1e-9);
    }

    #[test]
    fn a_run_without_the_no_op_hook_rows_still_has_its_ratios() {
        let old: String = TEXT
            .lines()
            .filter(|l| !l.contains("/bin/true"))
            .collect::<Vec<_>>()
            .join("\n");
        let cost = ShimCost { text: old };
        assert_eq!(cost.docker().unwrap().noop_hook_over_none, None);
        assert_eq!(cost.podman().unwrap().noop_hook_over_none, None);
        assert!((cost.podman().unwrap().over_none - 1.05).abs() < 1e-9);
    }

    #[test]
    fn a_label_is_matched_whole_within_its_own_section() {
        let cost = ShimCost { text: TEXT.into() };
        // "--network none" is podman's row; docker's "--runtime runc --network none" is not it.
        assert_eq!(cost.median_ms(rows::PODMAN, rows::PODMAN_NONE), Some(160.0));
        let none = ShimCost {
            text: "nothing".into(),
        };
        assert_eq!(none.docker(), None);
        assert_eq!(none.podman(), None);
    }
}
