//! What a runc end-to-end test needs: a throwaway host, a busybox rootfs, a state dir of its
//! own, and bundles wired to weave-hook with those settings.

use std::process::Command;

use crate::{bin, root_or_skip, run_ok, tool_or_skip, Bundle, Engine, Rootfs, TestHost};

pub struct RuncEnv {
    pub host: TestHost,
    pub rootfs: Rootfs,
    pub state: tempfile::TempDir,
}

impl RuncEnv {
    /// `None` when the test must skip (not root outside CI, or runc missing outside CI).
    pub fn new(test: &str) -> Option<Self> {
        Self::using(Engine::Runc, test)
    }

    /// `None` when the test must skip (not root outside CI, or the engine missing outside
    /// CI). Bundles come from `runc spec`, so runc is needed in every case.
    pub fn using(engine: Engine, test: &str) -> Option<Self> {
        if !root_or_skip(test)
            || !tool_or_skip(test, "runc")
            || !tool_or_skip(test, engine.program())
        {
            return None;
        }
        Some(Self {
            host: TestHost::new(),
            rootfs: Rootfs::busybox(),
            state: tempfile::tempdir().unwrap(),
        })
    }

    /// weave-hook's settings flags for this environment.
    pub fn flags(&self) -> Vec<String> {
        vec![
            "--state-dir".into(),
            self.state.path().display().to_string(),
        ]
    }

    /// A bundle running `args`, asking for `cidr`, with weave-hook as its hooks.
    pub fn bundle(&self, args: &[&str], cidr: &str) -> Bundle {
        let mut b = Bundle::new(&self.rootfs, args);
        let flags = self.flags();
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        b.annotate("weave.cidr", cidr).with_weave_hook(&flags);
        b
    }

    /// `weave-hook ps` for this environment's state dir.
    pub fn ps(&self) -> String {
        run_ok(Command::new(bin("weave-hook")).args(self.flags()).arg("ps"))
    }

    /// Files left under a subdirectory of the state dir.
    pub fn files_in(&self, sub: &str) -> usize {
        std::fs::read_dir(self.state.path().join(sub))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}
