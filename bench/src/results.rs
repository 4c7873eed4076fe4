//! What one run measured, as written to `results.json` and `samples.csv` and read back by
//! `weave-bench report`.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::methods::Role;
use crate::stats::Summary;

/// The samples of one method in one phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Series {
    pub name: String,
    pub role: Role,
    pub ms: Vec<f64>,
}

impl Series {
    pub fn new(name: String, role: Role) -> Self {
        Self {
            name,
            role,
            ms: Vec::new(),
        }
    }

    pub fn push(&mut self, ms: f64) {
        self.ms.push(ms);
    }

    pub fn summary(&self) -> Summary {
        Summary::of(&self.ms).expect("a series has samples")
    }
}

/// Attach latency with `count` containers already attached to the bridge and in the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScaleLevel {
    pub count: usize,
    pub hook: Series,
    pub floor: Series,
    /// The floor with the gratuitous ARP (weave-hook sends it for second addresses and
    /// addresses once held under another MAC). Empty in results of earlier versions, which
    /// measured the floor without it instead.
    #[serde(default = "no_series")]
    pub floor_announcing: Series,
    /// Other weave-hook builds (`--candidate`) and weave-hook's attach code in-process,
    /// interleaved with the rest.
    #[serde(default)]
    pub candidates: Vec<Series>,
}

fn no_series() -> Series {
    Series::new(String::new(), Role::Probe)
}

/// Peak RSS of one kind of process, measured under /usr/bin/time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rss {
    pub name: String,
    pub role: Role,
    pub kib: Vec<u64>,
}

/// One round of N operations started at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Burst {
    pub wall_ms: f64,
    pub failures: usize,
    pub duplicates: usize,
    /// Interfaces that should exist after the burst (attach) or not (detach) but do not
    /// (or do).
    pub missing: usize,
}

/// N attaches (and then N detaches) started at once, several rounds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Concurrency {
    pub name: String,
    pub role: Role,
    pub at_once: usize,
    pub attach: Vec<Burst>,
    pub detach: Vec<Burst>,
}

/// The machine and the conditions of the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub nproc: usize,
    pub kernel: String,
    pub cpu: String,
    pub load_before: String,
    pub load_after: String,
    pub started: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub machine: Machine,
    pub samples: usize,
    pub attach: Vec<Series>,
    pub detach: Vec<Series>,
    /// weave-hook attach (and the floor) with containers already attached, by count.
    pub scale: Vec<ScaleLevel>,
    pub concurrency: Vec<Concurrency>,
    /// weave-runtime's own cost per call (the real runtime replaced by /bin/true).
    pub runtime_calls: Vec<Series>,
    pub rss: Vec<Rss>,
}

impl Results {
    pub fn save(&self, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let json = dir.join("results.json");
        fs::write(&json, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("write {}", json.display()))?;
        let csv = dir.join("samples.csv");
        fs::write(&csv, self.csv()).with_context(|| format!("write {}", csv.display()))?;
        Ok(())
    }

    pub fn load(dir: &Path) -> Result<Self> {
        let json = dir.join("results.json");
        let text = fs::read(&json).with_context(|| format!("read {}", json.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("parse {}", json.display()))
    }

    /// Every timed sample, one per line: `phase,method,index,ms`.
    fn csv(&self) -> String {
        let mut out = String::from("phase,method,index,ms\n");
        let mut rows = |phase: &str, s: &Series| {
            for (i, ms) in s.ms.iter().enumerate() {
                let _ = writeln!(out, "{phase},\"{}\",{i},{ms:.4}", s.name);
            }
        };
        for s in &self.attach {
            rows("attach", s);
        }
        for s in &self.detach {
            rows("detach", s);
        }
        for level in &self.scale {
            let phase = format!("scale-{}", level.count);
            rows(&phase, &level.hook);
            rows(&phase, &level.floor);
            rows(&phase, &level.floor_announcing);
            for c in &level.candidates {
                rows(&phase, c);
            }
        }
        for s in &self.runtime_calls {
            rows("runtime-call", s);
        }
        out
    }
}
