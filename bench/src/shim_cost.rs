//! The output of weave-runtime's own benchmark (`cargo bench -p weave-runtime`, which
//! scripts/bench.sh runs in the same session), reused rather than measured twice.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

pub struct ShimCost {
    pub text: String,
}

impl ShimCost {
    pub fn load(path: &Path) -> Result<Self> {
        let text = fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        Ok(Self { text })
    }

    /// The ratio printed for `docker run --rm` with `--runtime weave --annotation ...`
    /// against `--runtime runc` (lines `  <variant>  <ms> ms   x<ratio>`).
    pub fn docker_attach_ratio(&self) -> Option<f64> {
        self.text
            .lines()
            .skip_while(|l| !l.starts_with("docker run"))
            .find(|l| l.contains("--runtime weave --annotation"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|r| r.strip_prefix('x'))
            .and_then(|r| r.parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_docker_ratio() {
        let text = "per call: --version (median of 300, interleaved)\n  runc --version   2.00 ms   x1.00\n\
            docker run --rm bb true (median of 20, interleaved)\n  --runtime runc   300.00 ms   x1.00\n  \
            --runtime weave --annotation weave.cidr=10.2.0.5/24   310.00 ms   x1.03\n";
        let cost = ShimCost { text: text.into() };
        assert_eq!(cost.docker_attach_ratio(), Some(1.03));
        let none = ShimCost {
            text: "nothing".into(),
        };
        assert_eq!(none.docker_attach_ratio(), None);
    }
}
