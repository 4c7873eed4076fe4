//! Where the weave-dns that the hook starts on demand runs.
//!
//! The hook runs in the container runtime's cgroup (containerd.service, a podman conmon
//! scope, ...): a process it starts stays there, and systemd kills it when it stops or
//! cleans up that unit. On a host booted with systemd (as sd_booted(3) tells: the directory
//! `/run/systemd/system` exists) the server is therefore started through
//! `systemd-run --scope`, as netavark starts aardvark-dns: systemd-run moves itself into a
//! new transient scope unit, then execs the server (same pid, same stdio and session). When
//! systemd-run is missing, fails or hangs, the server is started plainly, with a warning.
//! Without systemd nothing cleans up cgroups: the plain start is all there is.

use std::ffi::OsString;
use std::fmt::Display;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use weave_core::settings::fnv1a;

pub const SYSTEMD_RUN: &str = "systemd-run";
/// sd_booted(3): this directory exists only when systemd is the init system.
const BOOTED: &str = "/run/systemd/system";
/// How long systemd-run may take to make the scope and exec the server (one D-Bus call).
const ENTER_TIMEOUT: Duration = Duration::from_secs(1);

/// A systemd scope of its own for the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    systemd_run: PathBuf,
    unit: String,
}

impl Scope {
    /// The scope to start the server of `state_dir` in: `None` without systemd, or (with a
    /// warning) when systemd runs but systemd-run cannot be found.
    pub fn detect(state_dir: &Path) -> Option<Self> {
        let path = crate::tools::search_path();
        Self::detect_with(Path::new(BOOTED), &path, state_dir)
    }

    fn detect_with(booted: &Path, path: &OsString, state_dir: &Path) -> Option<Self> {
        if !booted.is_dir() {
            return None;
        }
        let Some(systemd_run) = find_program(path, SYSTEMD_RUN) else {
            tracing::warn!(
                "systemd runs but {SYSTEMD_RUN} is not in PATH: weave-dns starts in the \
                 runtime's cgroup, and stops when systemd stops the runtime's unit"
            );
            return None;
        };
        Some(Self {
            systemd_run,
            unit: unit_name(state_dir),
        })
    }
}

/// `weave-dns-<hash of the state directory>-<hook pid>.scope`: which state directory it
/// serves, and unique, so that hooks starting servers at once do not fail on each other's
/// unit (the losers of the race for the port exit 0 and their scopes go away).
fn unit_name(state_dir: &Path) -> String {
    let hash = fnv1a(state_dir.as_os_str().as_encoded_bytes());
    format!("weave-dns-{hash:016x}-{}.scope", std::process::id())
}

fn find_program(path: &OsString, name: &str) -> Option<PathBuf> {
    std::env::split_paths(path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|file| {
            fs::metadata(file).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The command that runs `program`: in `scope` when there is one (the caller adds the
/// server's arguments, stdio and the like as for `program` itself).
pub fn command(scope: Option<&Scope>, program: &Path) -> Command {
    let Some(scope) = scope else {
        return Command::new(program);
    };
    let mut cmd = Command::new(&scope.systemd_run);
    cmd.arg("--quiet")
        .arg("--scope")
        // A failed scope is unloaded too: no unit is left behind for each start.
        .arg("--collect")
        .arg(format!("--unit={}", scope.unit))
        .arg("--")
        .arg(program);
    cmd
}

/// Starts the server with `start`, which is given the scope to start it in (see
/// [`command`]): in a scope of its own when systemd runs, else (or when that fails) plainly.
pub fn spawn<E: Display>(
    program: &Path,
    state_dir: &Path,
    start: impl Fn(Option<&Scope>) -> Result<Child, E>,
) -> Result<Child, E> {
    match Scope::detect(state_dir) {
        Some(scope) => spawn_in(&scope, program, ENTER_TIMEOUT, start),
        None => start(None),
    }
}

fn spawn_in<E: Display>(
    scope: &Scope,
    program: &Path,
    timeout: Duration,
    start: impl Fn(Option<&Scope>) -> Result<Child, E>,
) -> Result<Child, E> {
    let failure = match start(Some(scope)) {
        Ok(mut child) => match entered(&mut child, program, timeout) {
            Ok(()) => return Ok(child),
            Err(why) => why,
        },
        Err(e) => e.to_string(),
    };
    tracing::warn!(
        unit = %scope.unit,
        %failure,
        "cannot start weave-dns in a systemd scope of its own; starting it in the runtime's \
         cgroup, where it stops when systemd stops the runtime's unit"
    );
    start(None)
}

/// Waits until systemd-run has made the scope and exec'd the server (the child then runs
/// `program`); kills it when it does not within `timeout`.
fn entered(child: &mut Child, program: &Path, timeout: Duration) -> Result<(), String> {
    let server = fs::metadata(program).map_err(|e| format!("{}: {e}", program.display()))?;
    let exe = format!("/proc/{}/exe", child.id());
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            // The server ran and found another one serving.
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("{SYSTEMD_RUN} exited with {status}")),
            _ => {}
        }
        let running = fs::metadata(&exe);
        if running.is_ok_and(|m| m.dev() == server.dev() && m.ino() == server.ino()) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{SYSTEMD_RUN} did not start it within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::io;
    use std::process::Stdio;

    const SLEEP: &str = "/bin/sleep";

    fn scope(systemd_run: &Path) -> Scope {
        Scope {
            systemd_run: systemd_run.to_path_buf(),
            unit: unit_name(Path::new("/run/weave")),
        }
    }

    /// Starts `sleep 30` as the "server", counting the tries and keeping their stderr.
    fn sleeper<'a>(
        tries: &'a Cell<usize>,
        log: &Path,
    ) -> impl Fn(Option<&Scope>) -> io::Result<Child> + 'a {
        let log = log.to_path_buf();
        move |scope| {
            tries.set(tries.get() + 1);
            let stderr = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)?;
            command(scope, Path::new(SLEEP))
                .arg("30")
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
        }
    }

    fn runs(child: &Child, program: &str) -> bool {
        fs::read_link(format!("/proc/{}/exe", child.id()))
            .is_ok_and(|exe| exe == fs::canonicalize(program).unwrap())
    }

    fn stop(mut child: Child) {
        let _ = child.kill();
        let _ = child.wait();
    }

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn systemd_is_detected_as_sd_booted_does() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).unwrap();
        let booted = dir.path().join("system");
        let path: OsString = format!("relative:{}", bin.display()).into();
        let state = Path::new("/run/weave");
        // Not booted with systemd: no scope, whatever is installed.
        assert_eq!(Scope::detect_with(&booted, &path, state), None);
        fs::create_dir(&booted).unwrap();
        // Booted, but no systemd-run (a non-executable file does not count).
        fs::write(bin.join(SYSTEMD_RUN), "").unwrap();
        assert_eq!(Scope::detect_with(&booted, &path, state), None);
        let systemd_run = script(&bin, SYSTEMD_RUN, "exit 1");
        let found = Scope::detect_with(&booted, &path, state).unwrap();
        assert_eq!(found.systemd_run, systemd_run);
        // A file named like the marker is not the directory.
        let file = dir.path().join("file");
        fs::write(&file, "").unwrap();
        assert_eq!(Scope::detect_with(&file, &path, state), None);
    }

    #[test]
    fn the_scoped_command_line() {
        let unit = unit_name(Path::new("/run/weave"));
        assert!(unit.starts_with("weave-dns-") && unit.ends_with(".scope"));
        assert_eq!(unit, unit_name(Path::new("/run/weave")), "stable");
        assert_ne!(unit, unit_name(Path::new("/run/weave2")));
        assert!(unit.len() < 100);
        let s = scope(Path::new("/usr/bin/systemd-run"));
        let mut cmd = command(Some(&s), Path::new("/usr/local/bin/weave-dns"));
        cmd.arg("--state-dir").arg("/run/weave");
        assert_eq!(cmd.get_program(), "/usr/bin/systemd-run");
        let args: Vec<_> = cmd.get_args().map(|a| a.to_str().unwrap()).collect();
        let unit_arg = format!("--unit={unit}");
        assert_eq!(
            args,
            [
                "--quiet",
                "--scope",
                "--collect",
                &unit_arg,
                "--",
                "/usr/local/bin/weave-dns",
                "--state-dir",
                "/run/weave"
            ]
        );
        let plain = command(None, Path::new("/usr/local/bin/weave-dns"));
        assert_eq!(plain.get_program(), "/usr/local/bin/weave-dns");
        assert_eq!(plain.get_args().count(), 0);
    }

    /// The real systemd-run on a host without systemd (these machines) fails to make the
    /// scope: the server is then started plainly.
    #[test]
    fn a_failing_systemd_run_falls_back_to_a_plain_start() {
        let systemd_run = Path::new("/usr/bin/systemd-run");
        if !systemd_run.exists() || Path::new(BOOTED).is_dir() {
            eprintln!("SKIPPED: needs systemd-run installed on a host not booted with systemd");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let tries = Cell::new(0);
        let child = spawn_in(
            &scope(systemd_run),
            Path::new(SLEEP),
            ENTER_TIMEOUT,
            sleeper(&tries, &log),
        )
        .unwrap();
        assert_eq!(tries.get(), 2);
        assert!(runs(&child, SLEEP));
        let said = fs::read_to_string(&log).unwrap();
        assert!(!said.trim().is_empty(), "systemd-run said nothing");
        stop(child);
    }

    #[test]
    fn a_missing_or_hanging_systemd_run_falls_back_to_a_plain_start() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        for (systemd_run, timeout) in [
            (dir.path().join("missing"), ENTER_TIMEOUT),
            (
                script(dir.path(), "hangs", "while :; do sleep 0.1; done"),
                Duration::from_millis(200),
            ),
        ] {
            let tries = Cell::new(0);
            let child = spawn_in(
                &scope(&systemd_run),
                Path::new(SLEEP),
                timeout,
                sleeper(&tries, &log),
            )
            .unwrap();
            assert_eq!(tries.get(), 2, "{}", systemd_run.display());
            assert!(runs(&child, SLEEP));
            stop(child);
        }
    }

    /// A stand-in for systemd-run that, like it, execs what follows `--`: the child is then
    /// the server itself, started once.
    #[test]
    fn the_server_started_in_its_scope_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let fake = script(
            dir.path(),
            SYSTEMD_RUN,
            "while [ \"$1\" != -- ]; do shift; done; shift; sleep 0.05; exec \"$@\"",
        );
        let tries = Cell::new(0);
        let child = spawn_in(
            &scope(&fake),
            Path::new(SLEEP),
            ENTER_TIMEOUT,
            sleeper(&tries, &dir.path().join("log")),
        )
        .unwrap();
        assert_eq!(tries.get(), 1);
        assert!(runs(&child, SLEEP));
        stop(child);
    }
}
