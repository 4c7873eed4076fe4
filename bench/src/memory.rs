//! Peak RSS of every process-based method and of weave-runtime, and weave-runtime's own time
//! per call.
//!
//! Peak RSS is taken under /usr/bin/time: wait4's figure for a child that weave-bench spawns
//! itself would include weave-bench's own RSS (a vfork child's exec records the parent's
//! high-water mark). weave-runtime execs the real runtime, and the peak RSS is the maximum
//! over that exec chain, so there the real runtime is replaced by /bin/true: the figures are
//! the shim's own. runc's own is measured beside it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::methods::{Process, Role};
use crate::results::{Rss, Series};
use crate::sandbox::Container;
use crate::timing;

/// What weave-runtime execs instead of runc.
const STAND_IN: &str = "/bin/true";
const GNU_TIME: &str = "/usr/bin/time";

/// Runs `cmd` with `input` under GNU time; returns its peak RSS in KiB.
fn peak_rss(cmd: &Command, input: &[u8], report: &Path) -> Result<u64> {
    let mut timed = Command::new(GNU_TIME);
    timed
        .args(["-f", "%M", "-o"])
        .arg(report)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => timed.env(key, v),
            None => timed.env_remove(key),
        };
    }
    timing::time(&mut timed, input)?;
    let text = fs::read_to_string(report).with_context(|| format!("read {}", report.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("{GNU_TIME} reported {text:?}, not a size in KiB"))
}

/// A Docker bundle for weave-runtime: Docker's config.json, restored before every call
/// because the shim edits it in place.
struct RuntimeCall {
    runtime: PathBuf,
    config: Vec<u8>,
    bundle: PathBuf,
    state: PathBuf,
}

impl RuntimeCall {
    fn create(&self, n: usize) -> Result<Command> {
        fs::write(self.bundle.join("config.json"), &self.config)
            .with_context(|| format!("write {}/config.json", self.bundle.display()))?;
        let mut cmd = Command::new(&self.runtime);
        cmd.env("WEAVE_RUNTIME", STAND_IN)
            .arg("--weave-state-dir")
            .arg(&self.state)
            .args(["--root", "/nonexistent-wvbench-root", "--log"])
            .arg(self.bundle.join("log.json"))
            .args(["--log-format", "json", "create", "--bundle"])
            .arg(&self.bundle)
            .arg("--pid-file")
            .arg(self.bundle.join("init.pid"))
            .arg(format!("wvbench-runtime-{n}"));
        Ok(cmd)
    }

    fn version(&self) -> Command {
        let mut cmd = Command::new(&self.runtime);
        cmd.env("WEAVE_RUNTIME", STAND_IN).arg("--version");
        cmd
    }
}

const CREATE: &str =
    "weave-runtime create (Docker bundle with weave.cidr: edits config.json, execs the runtime)";
const VERSION: &str = "weave-runtime --version (passthrough: execs the runtime)";
const RUNC: &str = "runc --version (for comparison)";

fn runtime_call(runtime: &Path, config: &Path, work: &Path) -> Result<RuntimeCall> {
    let bundle = work.join("runtime-bundle");
    fs::create_dir_all(&bundle).with_context(|| format!("create {}", bundle.display()))?;
    Ok(RuntimeCall {
        runtime: runtime.to_path_buf(),
        config: fs::read(config).with_context(|| format!("read {}", config.display()))?,
        bundle,
        state: work.join("runtime-state"),
    })
}

/// weave-runtime's time per call, `samples` of each, interleaved with runc's.
pub fn runtime_calls(
    runtime: &Path,
    config: &Path,
    work: &Path,
    samples: usize,
) -> Result<Vec<Series>> {
    let call = runtime_call(runtime, config, work)?;
    let mut create = Series::new(CREATE.into(), Role::Ours);
    let mut version = Series::new(VERSION.into(), Role::Ours);
    let mut runc = Series::new(RUNC.into(), Role::Peer);
    for n in 0..samples {
        create.push(timing::time(&mut call.create(n)?, b"").context("weave-runtime create")?);
        version.push(timing::time(&mut call.version(), b"").context("weave-runtime --version")?);
        runc.push(
            timing::time(Command::new("runc").arg("--version"), b"").context("runc --version")?,
        );
    }
    Ok(vec![create, version, runc])
}

/// Peak RSS of each method's attach and detach processes and of weave-runtime's calls,
/// `samples` of each. The methods run in the caller's (host) namespace.
pub fn rss(
    methods: &mut [Box<dyn Process>],
    runtime: &Path,
    config: &Path,
    work: &Path,
    samples: usize,
) -> Result<Vec<Rss>> {
    let report = work.join("time-report");
    let mut rows = Vec::new();
    for m in methods.iter_mut() {
        m.prepare()?;
        let mut attach = Rss {
            name: format!("{}: attach", m.name()),
            role: m.role(),
            kib: Vec::new(),
        };
        let mut detach = Rss {
            name: format!("{}: detach", m.name()),
            role: m.role(),
            kib: Vec::new(),
        };
        for n in 0..samples {
            let container = Container::start()?;
            let (cmd, input) = m.command(true, &container, n);
            attach.kib.push(
                peak_rss(&cmd, &input, &report).with_context(|| format!("{}: attach", m.name()))?,
            );
            let (cmd, input) = m.command(false, &container, n);
            detach.kib.push(
                peak_rss(&cmd, &input, &report).with_context(|| format!("{}: detach", m.name()))?,
            );
        }
        rows.push(attach);
        rows.push(detach);
    }
    let call = runtime_call(runtime, config, work)?;
    let mut create = Rss {
        name: CREATE.into(),
        role: Role::Ours,
        kib: Vec::new(),
    };
    let mut version = Rss {
        name: VERSION.into(),
        role: Role::Ours,
        kib: Vec::new(),
    };
    let mut runc = Rss {
        name: RUNC.into(),
        role: Role::Peer,
        kib: Vec::new(),
    };
    for n in 0..samples {
        create.kib.push(peak_rss(&call.create(n)?, b"", &report)?);
        version.kib.push(peak_rss(&call.version(), b"", &report)?);
        runc.kib.push(peak_rss(
            Command::new("runc").arg("--version"),
            b"",
            &report,
        )?);
    }
    rows.extend([create, version, runc]);
    Ok(rows)
}
