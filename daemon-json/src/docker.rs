//! `weave-setup docker` and `weave-setup uninstall docker`: read daemon.json, edit it,
//! write it back safely, and optionally make the running dockerd reload it.

use std::path::{Path, PathBuf};

use serde_json::Value;
use thiserror::Error;

use crate::atomic::{self, AtomicError};
use crate::cli::{DaemonArgs, DockerInstall, DockerUninstall};
use crate::daemon_json::{self, MergeError, RuntimeEntry};
use crate::dockerd::{self, Dockerd, DockerdError, Expected};
use crate::jsonfmt::{self, Style};
use crate::paths::{self, PathError, Program};
use crate::record::{self, Record, RecordError, Stored};
use crate::runtime_args::{self, RuntimeArgError};

#[derive(Debug, Error)]
pub enum DockerError {
    #[error(transparent)]
    Path(#[from] PathError),
    #[error(transparent)]
    RuntimeArg(#[from] RuntimeArgError),
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
    #[error("{path} was not written ({error}), and its record could not be put back: {undo}")]
    Undo {
        path: PathBuf,
        #[source]
        error: AtomicError,
        undo: RecordError,
    },
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

    /// The edited document with the keys a SIGHUP would otherwise keep spelled out
    /// ([`daemon_json::for_live_reload`]), when it needs them.
    fn render_for_live_reload(&self) -> Option<Vec<u8>> {
        daemon_json::for_live_reload(&self.doc).map(|doc| jsonfmt::render(&doc, &self.style))
    }

    /// Fails where writing the edited document would (see [`atomic::check_replace`]).
    fn check_write(&self) -> Result<(), DockerError> {
        Ok(atomic::check_replace(&self.path, self.old.as_deref())?)
    }

    /// Saves `record` first (it is what uninstall needs), then replaces daemon.json with
    /// `contents`; if that fails, the record is put back. Returns where the old file went.
    fn write_recorded(
        &self,
        contents: &[u8],
        stored: &Stored,
        record: &Record,
    ) -> Result<String, DockerError> {
        stored.save(record)?;
        let backup = match atomic::replace(&self.path, self.old.as_deref(), contents) {
            Ok(backup) => backup,
            Err(error) => {
                return Err(match stored.restore() {
                    Ok(()) => error.into(),
                    Err(undo) => DockerError::Undo {
                        path: self.path.clone(),
                        error,
                        undo,
                    },
                })
            }
        };
        Ok(match backup {
            Some(backup) => format!("previous version kept as {}", backup.display()),
            None => "file created".to_string(),
        })
    }

    /// Writes the document after an uninstall and makes `dockerd` drop the runtime: through
    /// the explicit form first when the exact document would not do it.
    fn write_reloading(
        &self,
        stored: &Stored,
        record: &Record,
        dockerd: &Dockerd,
        daemon: &DaemonArgs,
        expected: &Expected,
    ) -> Result<String, DockerError> {
        let exact = self.render();
        let explicit = self.render_for_live_reload();
        let note = self.write_recorded(explicit.as_deref().unwrap_or(&exact), stored, record)?;
        reload(&self.path, dockerd, daemon, expected)?;
        if let Some(explicit) = explicit {
            atomic::rewrite(&self.path, &explicit, &exact)?;
        }
        Ok(note)
    }

    /// Makes `dockerd` drop a runtime that daemon.json no longer has, leaving the file as it
    /// is (through the explicit form for the time of the reload, when needed).
    fn reload_unchanged(
        &self,
        dockerd: &Dockerd,
        daemon: &DaemonArgs,
        expected: &Expected,
    ) -> Result<(), DockerError> {
        let (Some(explicit), Some(old)) = (self.render_for_live_reload(), self.old.as_deref())
        else {
            return reload(&self.path, dockerd, daemon, expected);
        };
        atomic::rewrite(&self.path, old, &explicit)?;
        reload(&self.path, dockerd, daemon, expected)?;
        Ok(atomic::rewrite(&self.path, &explicit, old)?)
    }

    /// Fails where [`reload_unchanged`](Self::reload_unchanged) would fail to write.
    fn check_reload_unchanged(&self) -> Result<(), DockerError> {
        match (self.render_for_live_reload(), self.old.as_deref()) {
            (Some(_), Some(old)) => Ok(atomic::check_rewrite(&self.path, old)?),
            _ => Ok(()),
        }
    }

    fn print_dry_run(&self) {
        print!("{}", String::from_utf8_lossy(&self.render()));
        eprintln!("weave-setup: dry run: {} not written", self.path.display());
    }
}

/// The dockerd that `--reload` is aimed at, and whether it already shows the file's state.
struct ReloadTarget {
    dockerd: Dockerd,
    current: bool,
}

/// Installs, then warns if weave-runtime is missing (a failed run shows only its error).
pub fn install(args: &DockerInstall) -> Result<(), DockerError> {
    runtime_args::check(&args.runtime_args)?;
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

// Install and uninstall make every check of the real run before their first write, and
// --dry-run stops right after them: so a dry run fails exactly when the real run would.

fn install_pointing_to(args: &DockerInstall, program: &Program) -> Result<(), DockerError> {
    let name = &args.target.runtime_name;
    let entry = RuntimeEntry {
        path: program.to_str_lossy(),
        args: args.runtime_args.clone(),
    };

    let mut file = DaemonJson::read(&args.target.config)?;
    let stored = record::load(&file.path)?;
    let outcome =
        daemon_json::install(&mut file.doc, name, &entry, args.set_as_default, args.force)
            .map_err(|e| DockerError::Merge(file.path.clone(), e))?;
    let mut record = stored.record().clone();
    if outcome.changed {
        record.note_install(name, &outcome.installed);
        stored.check_save(&record)?;
        file.check_write()?;
    }
    let expected = expectation(&file.doc, name, true);
    let target = reload_target(args.reload, &file.path, &args.daemon, &expected)?;
    if args.dry_run {
        file.print_dry_run();
        return Ok(());
    }

    if outcome.changed {
        let note = file.write_recorded(&file.render(), &stored, &record)?;
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
    match target {
        Some(target) if outcome.changed || !target.current => {
            reload(&file.path, &target.dockerd, &args.daemon, &expected)?;
            println!("weave-setup: dockerd reloaded and lists runtime \"{name}\"");
            println!("weave-setup: try: docker run --runtime {name} --annotation weave.cidr=10.32.0.5/12 ...");
        }
        Some(target) => print_not_signalled(&target, &expected),
        None if outcome.changed => println!(
            "weave-setup: dockerd reads {} when it starts or on SIGHUP: run `weave-setup docker \
             --reload`, `kill -HUP $(cat {})`, or restart dockerd; then `docker info` lists \"{name}\"",
            file.path.display(),
            args.daemon.pidfile.display()
        ),
        None => {}
    }
    Ok(())
}

/// Uninstalls. daemon.json itself stays, even if install created it: a dockerd started with
/// `--config-file` fails to reload (and to restart) when that file is missing.
pub fn uninstall(args: &DockerUninstall) -> Result<(), DockerError> {
    let name = &args.target.runtime_name;
    let mut file = DaemonJson::read(&args.target.config)?;
    let stored = record::load(&file.path)?;
    let mut record = stored.record().clone();
    let undo = record.remove(name);
    let changed = daemon_json::uninstall(&mut file.doc, name, &undo)
        .map_err(|e| DockerError::Merge(file.path.clone(), e))?;
    let expected = expectation(&file.doc, name, false);
    let target = reload_target(args.reload, &file.path, &args.daemon, &expected)?;
    let stale = target.as_ref().filter(|t| !t.current);
    stored.check_save(&record)?;
    if changed {
        file.check_write()?;
    } else if stale.is_some() {
        file.check_reload_unchanged()?;
    }
    if args.dry_run {
        file.print_dry_run();
        return Ok(());
    }

    if changed {
        let note = match &target {
            Some(target) => {
                file.write_reloading(&stored, &record, &target.dockerd, &args.daemon, &expected)?
            }
            None => file.write_recorded(&file.render(), &stored, &record)?,
        };
        println!(
            "weave-setup: runtime \"{name}\" removed from {}; {note}",
            file.path.display()
        );
    } else {
        // The runtime may have been removed by hand: its record entry goes all the same.
        stored.save(&record)?;
        println!(
            "weave-setup: {} has no runtime \"{name}\"; nothing changed",
            file.path.display()
        );
        if let Some(stale) = stale {
            file.reload_unchanged(&stale.dockerd, &args.daemon, &expected)?;
        }
    }
    match &target {
        Some(target) if changed || !target.current => {
            println!("weave-setup: dockerd reloaded and no longer lists runtime \"{name}\"")
        }
        Some(target) => print_not_signalled(target, &expected),
        None if changed => println!(
            "weave-setup: a running dockerd keeps the runtime until it restarts (on SIGHUP \
             it keeps keys that daemon.json no longer has): use --reload to drop it now"
        ),
        None => {}
    }
    Ok(())
}

/// What dockerd shows once it runs with `doc`.
fn expectation(doc: &Value, name: &str, present: bool) -> Expected {
    Expected {
        name: name.to_string(),
        present,
        default_runtime: daemon_json::effective_default(doc).to_string(),
    }
}

/// With --reload (dry run too), finds the dockerd and asks what it shows, before anything is
/// written: a wrong --pidfile or --config, or a docker CLI that cannot reach it, changes
/// nothing.
fn reload_target(
    wanted: bool,
    config: &Path,
    daemon: &DaemonArgs,
    expected: &Expected,
) -> Result<Option<ReloadTarget>, DockerError> {
    if !wanted {
        return Ok(None);
    }
    let not_found = |e| DockerError::NoDockerd(config.to_path_buf(), e);
    let dockerd = dockerd::find_for_reload(&daemon.pidfile, config).map_err(not_found)?;
    let view = dockerd::view(daemon.docker_host.as_deref()).map_err(not_found)?;
    Ok(Some(ReloadTarget {
        dockerd,
        current: view.shows(expected),
    }))
}

fn print_not_signalled(target: &ReloadTarget, expected: &Expected) {
    println!(
        "weave-setup: dockerd pid {} already shows {expected}; not reloaded",
        target.dockerd.pid
    );
}

fn reload(
    config: &Path,
    dockerd: &Dockerd,
    daemon: &DaemonArgs,
    expected: &Expected,
) -> Result<(), DockerError> {
    dockerd::reload(dockerd, expected, daemon.docker_host.as_deref())
        .map_err(|e| DockerError::Reload(config.to_path_buf(), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon_json::Installed;

    #[test]
    fn record_is_put_back_when_daemon_json_cannot_be_written() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("daemon.json");
        std::fs::write(&config, "{}").unwrap();
        let file = DaemonJson::read(&config).unwrap();
        let stored = record::load(&file.path).unwrap();
        let mut record = stored.record().clone();
        record.note_install(
            "weave",
            &Installed {
                created_runtimes: true,
                replaced_default: None,
            },
        );
        // Edited by someone else after we read it: the write is refused.
        std::fs::write(&config, r#"{"edited": true}"#).unwrap();
        let err = file
            .write_recorded(br#"{"runtimes": {}}"#, &stored, &record)
            .unwrap_err();
        assert!(
            matches!(err, DockerError::File(AtomicError::ChangedMeanwhile(_))),
            "{err}"
        );
        assert!(!record::path_for(&config).exists());
        assert_eq!(
            std::fs::read_to_string(&config).unwrap(),
            r#"{"edited": true}"#
        );
    }
}
