//! `weave-setup docker` and `weave-setup uninstall docker`: read daemon.json, edit it,
//! write it back safely, and optionally make the running dockerd reload it.

use std::path::{Path, PathBuf};

use serde_json::Value;
use thiserror::Error;

use crate::atomic::{self, AtomicError};
use crate::cli::{DaemonArgs, DockerInstall, DockerUninstall};
use crate::daemon_json::{self, MergeError, RuntimeEntry};
use crate::dockerd::{self, Dockerd, DockerdError};
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
    #[error("{0} was not changed: {1}")]
    NoDockerd(PathBuf, #[source] DockerdError),
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

    /// Writes the edited document after an uninstall and makes `dockerd` drop the runtime:
    /// through the explicit form of [`daemon_json::for_live_reload`] when the exact document
    /// would not do it. Returns a sentence saying where the old version went.
    fn write_reloading(
        &self,
        dockerd: &Dockerd,
        daemon: &DaemonArgs,
        name: &str,
    ) -> Result<String, DockerError> {
        let Some(explicit) = daemon_json::for_live_reload(&self.doc) else {
            let note = self.write()?;
            reload(&self.path, dockerd, daemon, name, false)?;
            return Ok(note);
        };
        let explicit = jsonfmt::render(&explicit, &self.style);
        let backup = atomic::replace(&self.path, self.old.as_deref(), &explicit)?;
        reload(&self.path, dockerd, daemon, name, false)?;
        atomic::rewrite(&self.path, &explicit, &self.render())?;
        Ok(match backup {
            Some(backup) => format!("previous version kept as {}", backup.display()),
            None => "file created".to_string(),
        })
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
    let dockerd = preflight_reload(args.reload && !args.dry_run, &file.path, &args.daemon)?;
    let earlier = record::load(&file.path, name)?;
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
    if let Some(dockerd) = dockerd {
        reload(&file.path, &dockerd, &args.daemon, name, true)?;
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

/// Uninstalls. daemon.json itself stays, even if install created it: a dockerd started with
/// `--config-file` fails to reload (and to restart) when that file is missing.
pub fn uninstall(args: &DockerUninstall) -> Result<(), DockerError> {
    let name = &args.target.runtime_name;
    let mut file = DaemonJson::read(&args.target.config)?;
    let dockerd = preflight_reload(args.reload && !args.dry_run, &file.path, &args.daemon)?;
    let record = record::load(&file.path, name)?.unwrap_or_default();
    let changed = daemon_json::uninstall(&mut file.doc, name, &record.installed)
        .map_err(|e| DockerError::Merge(file.path.clone(), e))?;

    if args.dry_run {
        print!("{}", String::from_utf8_lossy(&file.render()));
        eprintln!("weave-setup: dry run: {} not written", file.path.display());
        return Ok(());
    }
    match (changed, &dockerd) {
        (false, _) => println!(
            "weave-setup: {} has no runtime \"{name}\"; nothing changed",
            file.path.display()
        ),
        (true, Some(dockerd)) => {
            let note = file.write_reloading(dockerd, &args.daemon, name)?;
            println!(
                "weave-setup: runtime \"{name}\" removed from {}; {note}",
                file.path.display()
            );
        }
        (true, None) => {
            let note = file.write()?;
            println!(
                "weave-setup: runtime \"{name}\" removed from {}; {note}",
                file.path.display()
            );
            println!(
                "weave-setup: a running dockerd keeps the runtime until it restarts (on SIGHUP \
                 it keeps keys that daemon.json no longer has): use --reload to drop it now"
            );
        }
    }
    record::delete(&file.path)?;
    if let (Some(dockerd), false) = (&dockerd, changed) {
        reload(&file.path, dockerd, &args.daemon, name, false)?;
    }
    if dockerd.is_some() {
        println!("weave-setup: dockerd reloaded and no longer lists runtime \"{name}\"");
    }
    Ok(())
}

/// With --reload, finds the dockerd before anything is written, so that a wrong --pidfile or
/// --config changes nothing.
fn preflight_reload(
    wanted: bool,
    config: &Path,
    daemon: &DaemonArgs,
) -> Result<Option<Dockerd>, DockerError> {
    if !wanted {
        return Ok(None);
    }
    dockerd::find_for_reload(&daemon.pidfile, config)
        .map(Some)
        .map_err(|e| DockerError::NoDockerd(config.to_path_buf(), e))
}

fn reload(
    config: &Path,
    dockerd: &Dockerd,
    daemon: &DaemonArgs,
    name: &str,
    present: bool,
) -> Result<(), DockerError> {
    dockerd::reload(dockerd, name, present, daemon.docker_host.as_deref())
        .map_err(|e| DockerError::Reload(config.to_path_buf(), e))
}
