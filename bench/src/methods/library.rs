//! Probes that split weave-hook's cost: its own attach/detach code called in-process
//! (options, store, netlink: all but the process), and processes that do no work
//! (`weave-hook --version`: exec, dynamic loading, argument parsing; `/bin/true`: any exec).

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use weave_core::oci::State;
use weave_core::settings::Settings;

use super::hook::WeaveHook;
use super::{Method, Role};
use crate::sandbox::Container;
use crate::timing::{self, millis};

/// weave-hook's library, called from this process with the state a runtime would pass.
pub struct InProcess {
    /// The same options and state as the process rows, but its own bridge and state dir.
    pub hook: WeaveHook,
}

impl InProcess {
    fn settings(&self) -> Settings {
        Settings {
            bridge: self.hook.bridge.clone(),
            state_dir: self.hook.state_dir.clone(),
            ..Settings::defaults()
        }
    }
}

impl Method for InProcess {
    fn name(&self) -> String {
        "probe: weave-hook attach code in-process".into()
    }

    fn role(&self) -> Role {
        Role::Probe
    }

    fn attach(&mut self, container: &Container, n: usize) -> Result<f64> {
        let settings = self.settings();
        let input = self.hook.creating_state(container, n);
        let start = Instant::now();
        let state = State::read(&input[..])?;
        weave_hook::attach::attach(&settings, &state).context("in-process attach")?;
        Ok(millis(start.elapsed()))
    }

    fn detach(&mut self, _container: &mut Container, n: usize) -> Result<Option<f64>> {
        let settings = self.settings();
        let input = self.hook.stopped_state(n);
        let start = Instant::now();
        let state = State::read(&input[..])?;
        let left = weave_hook::detach::detach(&settings, &state.id).context("in-process detach")?;
        // As the binary does: the kernel's deletion wait is not the caller's (forked only
        // when this process is single-threaded).
        weave_hook::detach::delete_in_background(&left);
        Ok(Some(millis(start.elapsed())))
    }
}

/// A process that does no work (`weave-hook --version`, `/bin/true`): what starting a
/// process costs before any of its work.
pub struct ProcessStart {
    pub label: String,
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl Method for ProcessStart {
    fn name(&self) -> String {
        self.label.clone()
    }

    fn role(&self) -> Role {
        Role::Probe
    }

    fn attach(&mut self, _container: &Container, _n: usize) -> Result<f64> {
        timing::time(Command::new(&self.program).args(&self.args), b"")
    }

    fn detach(&mut self, _container: &mut Container, _n: usize) -> Result<Option<f64>> {
        Ok(None)
    }
}
