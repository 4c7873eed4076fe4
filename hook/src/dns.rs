//! Weave DNS, the hook's side: weave's DNS address on the bridge and a route to it inside
//! the container, and the weave-dns server, started on demand and stopped by `reset`. The
//! name rules and the one-server protocol it shares with weave-dns are weave-core's
//! ([`weave_core::dns`], [`weave_core::dns_instance`]).

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead};
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use thiserror::Error;
use weave_core::dns::NamesError;
use weave_core::dns_instance::{lock_held, open_lock, read_pid};
use weave_core::layout::StateDir;
use weave_core::process::has_exited;
use weave_core::settings::Settings;

use crate::dns_scope::{self, Scope};
/// The server's program name, looked for next to weave-hook's own executable.
pub const SERVER_NAME: &str = "weave-dns";
/// How long an attach waits for a server it started to serve.
const START_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `reset` waits for the server to exit after SIGTERM before it sends SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Error)]
pub enum DnsError {
    #[error(transparent)]
    Names(#[from] NamesError),
    #[error("{0} does not exist; install weave-dns next to weave-hook or pass --dns-server-path")]
    ServerMissing(PathBuf),
    #[error("cannot start {0}: {1}")]
    Spawn(PathBuf, #[source] io::Error),
    #[error("weave-dns did not start: {why} (its log: {log})")]
    NotStarted { why: String, log: PathBuf },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> DnsError + 'a {
    move |source| DnsError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A container reaches the DNS address on-link through a subnet of its own; otherwise it
/// needs a host route to it through ethwe.
pub fn needs_route(container_addrs: &[Ipv4Net], dns: Ipv4Addr) -> bool {
    !container_addrs.iter().any(|a| a.trunc().contains(&dns))
}

/// Makes sure a weave-dns serves this state directory: returns at once when one holds the
/// lock, else starts one (detached: own session, stdio away from the runtime's pipes) and
/// waits until it serves. Concurrent callers may each start one; all but one exit quietly.
pub fn ensure_server(settings: &Settings) -> Result<(), DnsError> {
    let dir = settings.layout();
    let lock_file = dir.dns_lock();
    let lock = open_lock(&dir).map_err(io_err("open", &lock_file))?;
    if lock_held(&lock).map_err(io_err("test the lock", &lock_file))? {
        return Ok(());
    }
    let program = server_program(settings)?;
    let mut child = dns_scope::spawn(&program, &settings.state_dir, |scope| {
        spawn(&program, settings, scope)
    })?;
    tracing::info!(pid = child.id(), "started weave-dns");
    wait_until_serving(&lock, &mut child, settings)
}

fn server_program(settings: &Settings) -> Result<PathBuf, DnsError> {
    let path = match &settings.dns.server_path {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .map_err(io_err("find own executable", Path::new("/proc/self/exe")))?
            .with_file_name(SERVER_NAME),
    };
    match path.is_file() {
        true => Ok(path),
        false => Err(DnsError::ServerMissing(path)),
    }
}

fn spawn(program: &Path, settings: &Settings, scope: Option<&Scope>) -> Result<Child, DnsError> {
    let log = settings.layout().dns_log();
    let stderr = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&log)
        .map_err(io_err("open", &log))?;
    let mut cmd = dns_scope::command(scope, program);
    cmd.arg("--state-dir")
        .arg(&settings.state_dir)
        .arg("--listen")
        .arg(settings.dns_addr().addr().to_string())
        .arg("--device")
        .arg(&settings.bridge);
    for upstream in &settings.dns.upstreams {
        cmd.arg("--upstream").arg(upstream.to_string());
    }
    // The runtime reads the hook's stdout and stderr until every writer closes them: the
    // server must hold neither, nor be in the runtime's session.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        // Not the bundle directory the runtime ran the hook in: that goes with the container.
        .current_dir("/");
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent. A forked
    // child is never a process group leader, so it cannot fail with EPERM.
    unsafe {
        cmd.pre_exec(|| nix::unistd::setsid().map(drop).map_err(io::Error::from));
    }
    cmd.spawn()
        .map_err(|e| DnsError::Spawn(program.to_path_buf(), e))
}

fn wait_until_serving(lock: &File, child: &mut Child, settings: &Settings) -> Result<(), DnsError> {
    let dir = settings.layout();
    let lock_file = dir.dns_lock();
    let deadline = Instant::now() + START_TIMEOUT;
    let not_started = |why: String| DnsError::NotStarted {
        why,
        log: dir.dns_log(),
    };
    loop {
        if lock_held(lock).map_err(io_err("test the lock", &lock_file))? {
            return Ok(());
        }
        // Exit 0 means another instance won the race; its lock shows up next.
        if let Ok(Some(status)) = child.try_wait() {
            if !status.success() {
                let last = last_line(&dir.dns_log()).unwrap_or_default();
                return Err(not_started(format!("it exited with {status}: {last}")));
            }
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(not_started(format!(
                "it did not serve within {} s",
                START_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn last_line(path: &Path) -> Option<String> {
    let file = File::open(path).ok()?;
    io::BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter(|l| !l.trim().is_empty())
        .last()
}

/// Stops the weave-dns serving this state directory, if its pid file names a running
/// weave-dns: SIGTERM, then SIGKILL after 2 s. Returns whether one was stopped.
pub fn stop_server(dir: &StateDir) -> Result<bool, DnsError> {
    let pid_file = dir.dns_pid();
    let pid = read_pid(dir).map_err(io_err("read", &pid_file))?;
    let stopped = match pid {
        Some(pid) if is_weave_dns(pid) => {
            terminate(pid);
            true
        }
        _ => false,
    };
    match std::fs::remove_file(&pid_file) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", &pid_file)(e)),
        _ => Ok(stopped),
    }
}

/// Whether `pid` runs the weave-dns program (a stale pid file may name a reused pid).
fn is_weave_dns(pid: i32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| {
        exe.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n == SERVER_NAME || n.starts_with("weave-dns "))
    }) && !has_exited(pid)
}

fn terminate(pid: i32) {
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if has_exited(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    tracing::warn!(pid, "weave-dns did not exit on SIGTERM; sending SIGKILL");
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_only_when_no_own_subnet_holds_the_dns_address() {
        let dns: Ipv4Addr = "10.32.0.1".parse().unwrap();
        assert!(!needs_route(&["10.32.4.5/12".parse().unwrap()], dns));
        assert!(needs_route(&["10.2.0.5/24".parse().unwrap()], dns));
        assert!(!needs_route(
            &[
                "10.2.0.5/24".parse().unwrap(),
                "10.32.0.9/12".parse().unwrap()
            ],
            dns
        ));
    }

    #[test]
    fn stop_ignores_a_pid_file_naming_another_program() {
        let dir = tempfile::tempdir().unwrap();
        let dir = StateDir::new(dir.path());
        std::fs::write(dir.dns_pid(), std::process::id().to_string()).unwrap();
        assert!(!stop_server(&dir).unwrap());
        assert!(!dir.dns_pid().exists());
        assert!(!stop_server(&dir).unwrap());
    }
}
