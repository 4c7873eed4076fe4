//! The running dockerd: finding it, making it re-read daemon.json (SIGHUP), and asking it
//! through the docker CLI which runtimes it knows.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use thiserror::Error;

use crate::cli::DEFAULT_DAEMON_JSON;

/// How long `--reload` waits for dockerd to show the new configuration.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Debug, Error)]
pub enum DockerdError {
    #[error(
        "no running dockerd found ({pidfile} names none, and no dockerd process reads {config}); \
         start dockerd: it reads daemon.json when it starts"
    )]
    NotRunning { pidfile: PathBuf, config: PathBuf },
    #[error(
        "several dockerd processes read {config} (pids {pids:?}); pass --pidfile to choose one"
    )]
    Several { config: PathBuf, pids: Vec<i32> },
    #[error(
        "dockerd pid {pid} (from {pidfile}) reads {theirs}, not {ours}; \
         pass --config {theirs} or the --pidfile of the right dockerd"
    )]
    OtherConfig {
        pid: i32,
        pidfile: PathBuf,
        theirs: PathBuf,
        ours: PathBuf,
    },
    #[error("cannot send SIGHUP to dockerd pid {0}: {1}")]
    Signal(i32, #[source] nix::Error),
    #[error(
        "cannot run the docker CLI to check the runtime: {0}; check with `docker info` yourself"
    )]
    Cli(#[source] io::Error),
    #[error("`docker info` failed: {0}")]
    Info(String),
    #[error(
        "dockerd pid {pid} does not show {expected} {waited:?} after SIGHUP (it shows {shown}); \
         dockerd's log says why, e.g. a daemon.json it cannot load"
    )]
    NotReloaded {
        pid: i32,
        expected: String,
        waited: Duration,
        shown: String,
    },
}

/// What dockerd must show once it has loaded a daemon.json.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// The runtime weave-setup installs or uninstalls.
    pub name: String,
    /// Whether that runtime is in the file.
    pub present: bool,
    /// The file's default-runtime (runc when it names none).
    pub default_runtime: String,
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let listed = if self.present { "" } else { "no " };
        write!(
            f,
            "{listed}runtime \"{}\" and default-runtime \"{}\"",
            self.name, self.default_runtime
        )
    }
}

/// What `docker info` reports about runtimes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub runtimes: Vec<String>,
    pub default_runtime: String,
}

impl View {
    /// Whether dockerd already runs with what `expected` describes (then no SIGHUP is needed).
    pub fn shows(&self, expected: &Expected) -> bool {
        self.runtimes.contains(&expected.name) == expected.present
            && self.default_runtime == expected.default_runtime
    }
}

impl std::fmt::Display for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "runtimes {} and default-runtime \"{}\"",
            self.runtimes.join(", "),
            self.default_runtime
        )
    }
}

/// A running dockerd and the daemon.json it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerd {
    pub pid: i32,
    pub config: PathBuf,
}

/// The dockerd named by `pidfile`, or else the one dockerd process reading `config`.
/// `Ok(None)` when none runs.
pub fn find(pidfile: &Path, config: &Path) -> Result<Option<Dockerd>, DockerdError> {
    if let Some(pid) = pid_from_file(pidfile) {
        return Ok(Some(Dockerd {
            pid,
            config: config_of(pid),
        }));
    }
    let ours = canonical(config);
    let pids: Vec<i32> = dockerd_pids()
        .into_iter()
        .filter(|&pid| canonical(&config_of(pid)) == ours)
        .collect();
    match pids.as_slice() {
        [] => Ok(None),
        [pid] => Ok(Some(Dockerd {
            pid: *pid,
            config: config_of(*pid),
        })),
        _ => Err(DockerdError::Several {
            config: config.to_path_buf(),
            pids,
        }),
    }
}

/// Finds the dockerd reading `config`, or says clearly why there is none.
pub fn find_for_reload(pidfile: &Path, config: &Path) -> Result<Dockerd, DockerdError> {
    let dockerd = find(pidfile, config)?.ok_or_else(|| DockerdError::NotRunning {
        pidfile: pidfile.to_path_buf(),
        config: config.to_path_buf(),
    })?;
    if canonical(&dockerd.config) != canonical(config) {
        return Err(DockerdError::OtherConfig {
            pid: dockerd.pid,
            pidfile: pidfile.to_path_buf(),
            theirs: dockerd.config,
            ours: config.to_path_buf(),
        });
    }
    Ok(dockerd)
}

/// Sends SIGHUP (dockerd reloads `runtimes` and `default-runtime` on it) and waits until
/// `docker info` shows `expected`.
pub fn reload(
    dockerd: &Dockerd,
    expected: &Expected,
    docker_host: Option<&str>,
) -> Result<(), DockerdError> {
    kill(Pid::from_raw(dockerd.pid), Signal::SIGHUP)
        .map_err(|e| DockerdError::Signal(dockerd.pid, e))?;
    let start = Instant::now();
    loop {
        let shown = view(docker_host)?;
        if shown.shows(expected) {
            return Ok(());
        }
        if start.elapsed() >= RELOAD_TIMEOUT {
            return Err(DockerdError::NotReloaded {
                pid: dockerd.pid,
                expected: expected.to_string(),
                waited: RELOAD_TIMEOUT,
                shown: shown.to_string(),
            });
        }
        sleep(POLL_INTERVAL);
    }
}

/// The runtimes and the default runtime that `docker info` reports.
pub fn view(docker_host: Option<&str>) -> Result<View, DockerdError> {
    let mut docker = Command::new("docker");
    if let Some(host) = docker_host {
        docker.args(["-H", host]);
    }
    let output = docker
        .args([
            "info",
            "--format",
            "{{json .Runtimes}} {{json .DefaultRuntime}}",
        ])
        .output()
        .map_err(DockerdError::Cli)?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(DockerdError::Info(first.trim().to_string()));
    }
    parse_view(&output.stdout)
}

/// Parses the two JSON values of [`view`]'s format: the runtimes object and the default's name.
fn parse_view(stdout: &[u8]) -> Result<View, DockerdError> {
    let values: Result<Vec<Value>, _> = serde_json::Deserializer::from_slice(stdout)
        .into_iter()
        .collect();
    match values.as_deref() {
        Ok([Value::Object(runtimes), Value::String(default_runtime)]) => Ok(View {
            runtimes: runtimes.keys().cloned().collect(),
            default_runtime: default_runtime.clone(),
        }),
        _ => Err(DockerdError::Info(format!(
            "unexpected output {:?}",
            String::from_utf8_lossy(stdout).trim()
        ))),
    }
}

/// The pid in `pidfile` if that process is alive and is a dockerd (pidfiles go stale).
fn pid_from_file(pidfile: &Path) -> Option<i32> {
    let pid = fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
    is_dockerd(pid).then_some(pid)
}

fn is_dockerd(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim_end() == "dockerd")
}

fn dockerd_pids() -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&pid| is_dockerd(pid))
        .collect()
}

/// The daemon.json dockerd `pid` reads: its `--config-file`, else the default.
fn config_of(pid: i32) -> PathBuf {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<String> = cmdline
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let config = config_flag(&args).unwrap_or_else(|| PathBuf::from(DEFAULT_DAEMON_JSON));
    if config.is_absolute() {
        config
    } else {
        fs::read_link(format!("/proc/{pid}/cwd"))
            .map(|cwd| cwd.join(&config))
            .unwrap_or(config)
    }
}

/// The value of `--config-file X` / `--config-file=X` in dockerd's arguments (last one wins,
/// as in dockerd's flag parser).
fn config_flag(args: &[String]) -> Option<PathBuf> {
    let mut found = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if let Some(value) = arg.strip_prefix("--config-file=") {
            found = Some(PathBuf::from(value));
        } else if arg == "--config-file" {
            found = iter.next().map(PathBuf::from);
        }
    }
    found
}

fn canonical(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn config_file_flag_in_both_spellings() {
        assert_eq!(
            config_flag(&strings(&["dockerd", "--config-file", "/a.json", "-D"])),
            Some(PathBuf::from("/a.json"))
        );
        assert_eq!(
            config_flag(&strings(&["dockerd", "--config-file=/b.json"])),
            Some(PathBuf::from("/b.json"))
        );
        assert_eq!(config_flag(&strings(&["dockerd", "-H", "unix:///x"])), None);
    }

    #[test]
    fn view_is_the_runtime_names_and_the_default_of_docker_info() {
        let out = br#"{"io.containerd.runc.v2":{"path":"runc"},"runc":{"path":"runc"},"weave":{"path":"/w"}} "weave"
"#;
        let view = parse_view(out).unwrap();
        assert_eq!(view.runtimes, ["io.containerd.runc.v2", "runc", "weave"]);
        assert_eq!(view.default_runtime, "weave");
        assert!(parse_view(b"null").is_err());
        assert!(parse_view(br#"{"runc":{}}"#).is_err());
        assert!(parse_view(br#"{"runc":{}} "runc" 3"#).is_err());
    }

    #[test]
    fn view_shows_an_expectation_only_when_runtime_and_default_match() {
        let view = View {
            runtimes: vec!["runc".into(), "weave".into()],
            default_runtime: "runc".into(),
        };
        let expected = |present, default: &str| Expected {
            name: "weave".into(),
            present,
            default_runtime: default.into(),
        };
        assert!(view.shows(&expected(true, "runc")));
        assert!(!view.shows(&expected(true, "weave")));
        assert!(!view.shows(&expected(false, "runc")));
    }

    #[test]
    fn stale_pidfile_is_not_a_dockerd() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("docker.pid");
        // Our own pid: alive, but not a dockerd.
        fs::write(&pidfile, std::process::id().to_string()).unwrap();
        assert_eq!(pid_from_file(&pidfile), None);
        assert_eq!(pid_from_file(&dir.path().join("missing.pid")), None);
    }
}
