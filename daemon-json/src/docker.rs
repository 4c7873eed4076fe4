//! `weave-setup docker` and `weave-setup uninstall docker`: read daemon.json, edit it,
//! write it back safely, and optionally make the running dockerd reload it.

use std::path::{Path, PathBuf};

use serde_json::Value;
use thiserror::Error;

use crate::atomic::{self, AtomicError};
use crate::cli::{DaemonArgs, DockerInstall, DockerUninstall};
use crate::daemon_json::{self, MergeError, RuntimeEntry};
use crate::dockerd::{self, DockerdError};
use crate::jsonfmt::{self, Style};
use crate::paths::{self, PathError, Program};
use crate::record::{self, Record, RecordError};

#[derive(Debug, Error)]
pub enum DockerError {
    #[error(transparent)]
    Path(#[from] PathError),
    #[error(transparent)]
    File(#[from] AtomicError),
    #[error("{0} is not valid JSON ({1}); fix it first, nothing was changed")]
    InvalidJson(PathBuf, #[source] serde_json::Error),
    #[error("{0}: {1}; nothing was changed")]
    Merge(PathBuf, #[source] MergeError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("{0} was written, but the running dockerd did not take it: {1}")]
    Reload(PathBuf, #[source] DockerdError),
}

/// daemon.json as read: where, its bytes (`None`: absent), value and layout.
struct DaemonJson {
    path: PathBuf,
    old: Option<Vec<u8>>,
    doc: Value,
    style: Style,
}

impl DaemonJson {
    fn read(path: &Path) -> Result<DaemonJson, DockerError> {
        let path = atomic::resolve(path)?;
        let old = atomic::read_optional(&path)?;
        let (doc, style) = jsonfmt::parse(old.as_deref().unwrap_or_default())
            .map_err(|e| DockerError::InvalidJson(path.clone(), e))?;
        Ok(DaemonJson {
            path,
            old,
            doc,
            style,
        })
    }

    fn render(&self) -> Vec<u8> {
        jsonfmt::render(&self.doc, &self.style)
    }

    /// Writes the edited document; returns a sentence saying where the old one went.
    fn write(&self) -> Result<String, DockerError> {
        let backup = atomic::replace(&self.path, self.old.as_deref(), &self.render())?;
        Ok(match backup {
            Some(backup) => format!("previous version kept as {}", backup.display()),
            None => "file created".to_string(),
        })
    }
}

/// Installs, then warns if weave-runtime is missing (a failed run shows only its error).
pub fn install(args: &DockerInstall) -> Result<(), DockerError> {
    let program = paths::locate(
        args.runtime_path.as_deref(),
        "--runtime-path",
        "weave-runtime",
    )?;
    install_pointing_to(args, &program)?;
    if let Some(warning) = program.warning() {
        eprintln!("weave-setup: warning: {warning}");
    }
    Ok(())
}

fn install_pointing_to(args: &DockerInstall, program: &Program) -> Result<(), DockerError> {
    let name = &args.target.runtime_name;
    let entry = RuntimeEntry {
        path: program.to_str_lossy(),
        args: args.runtime_args.clone(),
    };

    let mut file = DaemonJson::read(&args.target.config)?;
    let earlier = record::load(&file.path, name)?;
    let created_file = earlier
        .as_ref()
        .map_or(file.old.is_none(), |r| r.created_file);
    let outcome = daemon_json::install(
        &mut file.doc,
        name,
        &entry,
        args.set_as_default,
        args.force,
        &earlier.map(|r| r.installed).unwrap_or_default(),
    )
    .map_err(|e| DockerError::Merge(file.path.clone(), e))?;

    if args.dry_run {
        print!("{}", String::from_utf8_lossy(&file.render()));
        eprintln!("weave-setup: dry run: {} not written", file.path.display());
        return Ok(());
    }
    if outcome.changed {
        let note = file.write()?;
        record::save(
            &file.path,
            &Record {
                runtime: name.clone(),
                created_file,
                installed: outcome.installed,
            },
        )?;
        println!(
            "weave-setup: runtime \"{name}\" ({}) is in {}; {note}",
            entry.path,
            file.path.display()
        );
    } else {
        println!(
            "weave-setup: {} already has runtime \"{name}\" ({}); nothing changed",
            file.path.display(),
            entry.path
        );
    }
    if args.reload {
        reload(&file.path, &args.daemon, name, true)?;
        println!("weave-setup: dockerd reloaded and lists runtime \"{name}\"");
        println!("weave-setup: try: docker run --runtime {name} --annotation weave.cidr=10.32.0.5/12 ...");
    } else if outcome.changed {
        println!(
            "weave-setup: dockerd reads {} when it starts or on SIGHUP: run `weave-setup docker \
             --reload`, `kill -HUP $(cat {})`, or restart dockerd; then `docker info` lists \"{name}\"",
            file.path.display(),
            args.daemon.pidfile.display()
        );
    }
    Ok(())
}

pub fn uninstall(args: &DockerUninstall) -> Result<(), DockerError> {
    let name = &args.target.runtime_name;
    let mut file = DaemonJson::read(&args.target.config)?;
    let record = record::load(&file.path, name)?.unwrap_or_default();
    let changed = daemon_json::uninstall(&mut file.doc, name, &record.installed)
        .map_err(|e| DockerError::Merge(file.path.clone(), e))?;
    // A file that only existed for our runtime goes away with it.
    let remove_file =
        changed && record.created_file && file.doc == Value::Object(Default::default());

    if args.dry_run {
        if remove_file {
            println!(
                "weave-setup: would remove {} (weave-setup created it)",
                file.path.display()
            );
        } else {
            print!("{}", String::from_utf8_lossy(&file.render()));
        }
        eprintln!("weave-setup: dry run: {} not written", file.path.display());
        return Ok(());
    }
    match (&file.old, changed) {
        (Some(old), true) if remove_file => {
            let backup = atomic::remove(&file.path, old)?;
            println!(
                "weave-setup: removed {} (weave-setup had created it); previous version kept as {}",
                file.path.display(),
                backup.display()
            );
        }
        (_, true) => {
            let note = file.write()?;
            println!(
                "weave-setup: runtime \"{name}\" removed from {}; {note}",
                file.path.display()
            );
        }
        (_, false) => println!(
            "weave-setup: {} has no runtime \"{name}\"; nothing changed",
            file.path.display()
        ),
    }
    record::delete(&file.path)?;
    if args.reload {
        reload(&file.path, &args.daemon, name, false)?;
        println!("weave-setup: dockerd reloaded and no longer lists runtime \"{name}\"");
    }
    Ok(())
}

fn reload(
    config: &Path,
    daemon: &DaemonArgs,
    name: &str,
    present: bool,
) -> Result<(), DockerError> {
    let in_reload = |e| DockerError::Reload(config.to_path_buf(), e);
    let found = dockerd::find_for_reload(&daemon.pidfile, config).map_err(in_reload)?;
    dockerd::reload(&found, name, present, daemon.docker_host.as_deref()).map_err(in_reload)
}
