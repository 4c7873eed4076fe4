//! One invocation of weave-runtime: scan the arguments, prepare the bundle for `create` and
//! `run` when the container asks for weave, then exec the real runtime.

use std::convert::Infallible;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::exec::{self, ExecError};
use crate::files::{self, WriteError};
use crate::plan::{self, Inputs, PlanError};
use crate::runc_args::{self, CreateTarget, ScanError, Scanned};
use crate::runtime_log;
use crate::settings::{Settings, SettingsError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("container {id}: {source}")]
    Container {
        id: String,
        #[source]
        source: ContainerError,
    },
}

/// What can go wrong while preparing one container's bundle.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("cannot read {0}: {1} (is --bundle right?)")]
    ReadConfig(PathBuf, #[source] io::Error),
    #[error("{0}")]
    Plan(#[from] PlanError),
    #[error("weave-hook not found at {0}: {1} (install it next to weave-runtime or set --weave-hook-path)")]
    HookMissing(PathBuf, #[source] io::Error),
    #[error("cannot locate weave-runtime's own directory to find weave-hook: {0} (set --weave-hook-path)")]
    OwnPath(#[source] io::Error),
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// Runs weave-runtime with `args` (argv without argv[0]); returns only on failure.
pub fn run(args: Vec<OsString>) -> Error {
    let scanned = match runc_args::scan(args) {
        Ok(scanned) => scanned,
        Err(e) => return e.into(),
    };
    let log = scanned.log.clone();
    let err = match prepare_and_exec(scanned) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    if let Some(log) = &log {
        runtime_log::append(log, &format!("weave-runtime: {err}"));
    }
    err
}

fn prepare_and_exec(scanned: Scanned) -> Result<Infallible, Error> {
    let settings = Settings::new(scanned.shim_flags, |k| std::env::var_os(k))?;
    let runtime = exec::resolve(&settings.runtime, std::env::var_os("PATH").as_deref())?;
    let written = match &scanned.create {
        Some(target) => prepare(target, &settings).map_err(|source| Error::Container {
            // An id too long to accept is shown in full by no message.
            id: target.id.to_string_lossy().chars().take(64).collect(),
            source,
        })?,
        None => None,
    };
    let err = exec::exec(&runtime, &scanned.runtime_args);
    // The runtime never ran, so no poststop hook will delete the resolv.conf written for it.
    if let Some(path) = written {
        let _ = fs::remove_file(path);
    }
    Err(err.into())
}

/// Edits the bundle for weave; returns the resolv.conf file written, if any.
fn prepare(target: &CreateTarget, settings: &Settings) -> Result<Option<PathBuf>, ContainerError> {
    let config_path = target.bundle.join("config.json");
    let bytes =
        fs::read(&config_path).map_err(|e| ContainerError::ReadConfig(config_path.clone(), e))?;
    let hook_path = hook_path(settings)?;
    let inputs = Inputs {
        id: &target.id,
        bundle: &target.bundle,
        settings,
        hook_path: &hook_path,
    };
    let plan = plan::plan(&bytes, &inputs, |p| fs::read_to_string(p))?;
    if plan.config.is_some() {
        check_hook(&hook_path)?;
    }
    let written = match &plan.resolv {
        Some(r) => {
            files::create_resolv(settings.state_dir(), &r.path, r.contents.as_bytes())?;
            Some(r.path.clone())
        }
        None => None,
    };
    if let Some(config) = &plan.config {
        if let Err(e) = files::replace(&config_path, config) {
            if let Some(path) = &written {
                let _ = fs::remove_file(path);
            }
            return Err(e.into());
        }
    }
    Ok(written)
}

fn hook_path(settings: &Settings) -> Result<PathBuf, ContainerError> {
    if let Some(p) = &settings.hook_path {
        return Ok(p.clone());
    }
    let me = std::env::current_exe().map_err(ContainerError::OwnPath)?;
    Ok(me.with_file_name("weave-hook"))
}

/// A missing hook would only show up as runc's "fork/exec: no such file" at createRuntime.
fn check_hook(path: &Path) -> Result<(), ContainerError> {
    fs::metadata(path)
        .map(drop)
        .map_err(|e| ContainerError::HookMissing(path.to_owned(), e))
}
