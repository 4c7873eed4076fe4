//! Weave DNS, the hook's side: the names a container registers, weave's DNS address on the
//! bridge and a route to it inside the container, and the weave-dns server, started on
//! demand and stopped by `reset`.
//!
//! weave-dns and the hook meet in the state directory:
//! ```text
//! <state-dir>/containers/<id>.json  records, with the names (weave-dns watches them)
//! <state-dir>/dns.lock              locked by the serving weave-dns once its sockets are bound
//! <state-dir>/dns.pid               its pid, for `weave-hook reset`
//! <state-dir>/dns.log               its stderr when the hook started it
//! ```
//! The lock is an open file description lock (fcntl `F_OFD_SETLK`), not flock(2): it can be
//! *tested* without being taken (`F_OFD_GETLK`), so a hook looking for a server never makes a
//! starting server fail to take it.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use thiserror::Error;

use crate::cidr::AddrRequest;
use crate::dns_scope::{self, Scope};
use crate::oci::{BundleConfig, OciError, State};
use crate::settings::Settings;

pub const NAMES_ANNOTATION: &str = "weave.dns.names";
/// The domain weave DNS answers for (weave's own).
pub const DOMAIN: &str = "weave.local";
/// At most this many names in `weave.dns.names`.
pub const MAX_NAMES: usize = 16;
/// A DNS label's limit (RFC 1035).
pub const MAX_LABEL: usize = 63;
const MAX_NAMES_TEXT: usize = 1024;
/// The server's program name, looked for next to weave-hook's own executable.
pub const SERVER_NAME: &str = "weave-dns";
/// How long an attach waits for a server it started to serve.
const START_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `reset` waits for the server to exit after SIGTERM before it sends SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Error)]
pub enum DnsError {
    #[error("bad {NAMES_ANNOTATION} annotation {value:?}: {why}")]
    BadNames { value: String, why: String },
    #[error("the state names no bundle, so the hostname in config.json cannot be read")]
    NoBundle,
    #[error(transparent)]
    Bundle(#[from] OciError),
    #[error("address {0} is weave DNS's address (--dns-addr); choose another one")]
    AddressIsDns(Ipv4Addr),
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

/// Reduces a name to the one lowercase label weave stores: letters, digits and '-' (not at
/// either end), 1 to 63 bytes. `web.weave.local` and a trailing dot are accepted as `web`.
pub fn label(text: &str) -> Result<String, &'static str> {
    let lower = text.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    let name = name
        .strip_suffix(DOMAIN)
        .and_then(|n| n.strip_suffix('.'))
        .unwrap_or(name);
    if name.is_empty() {
        return Err("is empty");
    }
    if name.len() > MAX_LABEL {
        return Err("is longer than 63 bytes, a DNS label's limit");
    }
    if name.contains('.') {
        return Err("has a dot: give one label, as in web (found as web.weave.local)");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("may only hold letters, digits and '-'");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("may not start or end with '-'");
    }
    Ok(name.to_string())
}

/// The names a weave DNS container registers: its hostname, when that is a valid name (a
/// hostname is not a weave option, so one that is not a DNS label is skipped, not refused),
/// then the names of `weave.dns.names` (spaces or commas between them), without duplicates.
pub fn names(hostname: Option<&str>, annotation: Option<&str>) -> Result<Vec<String>, DnsError> {
    let mut names = Vec::new();
    if let Some(host) = hostname {
        match label(host) {
            Ok(name) => names.push(name),
            Err(why) => tracing::info!(%host, why, "hostname is not a DNS name; not registered"),
        }
    }
    let Some(value) = annotation else {
        return Ok(names);
    };
    let bad = |why: String| DnsError::BadNames {
        value: value.chars().take(80).collect(),
        why,
    };
    if value.len() > MAX_NAMES_TEXT {
        return Err(bad(format!("longer than {MAX_NAMES_TEXT} bytes")));
    }
    let words: Vec<&str> = value
        .split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .collect();
    if words.len() > MAX_NAMES {
        return Err(bad(format!("more than {MAX_NAMES} names")));
    }
    for word in words {
        let name = label(word).map_err(|why| bad(format!("{word:?} {why}")))?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// The names of the container the state describes: hostname from its config.json, and the
/// `weave.dns.names` annotation of the state, else of config.json.
pub fn names_of(state: &State) -> Result<Vec<String>, DnsError> {
    let bundle = state.bundle.as_deref().ok_or(DnsError::NoBundle)?;
    let config = BundleConfig::read(bundle)?;
    let annotation = state
        .annotations
        .get(NAMES_ANNOTATION)
        .or_else(|| config.annotations.get(NAMES_ANNOTATION));
    names(config.hostname.as_deref(), annotation.map(String::as_str))
}

/// Refuses an explicit request for weave DNS's own address, which the bridge carries.
pub fn check_requests(requests: &[AddrRequest], dns: Ipv4Net) -> Result<(), DnsError> {
    match requests
        .iter()
        .find(|r| matches!(r, AddrRequest::Exact(net) if net.addr() == dns.addr()))
    {
        Some(_) => Err(DnsError::AddressIsDns(dns.addr())),
        None => Ok(()),
    }
}

/// A container reaches the DNS address on-link through a subnet of its own; otherwise it
/// needs a host route to it through ethwe.
pub fn needs_route(container_addrs: &[Ipv4Net], dns: Ipv4Addr) -> bool {
    !container_addrs.iter().any(|a| a.trunc().contains(&dns))
}

pub fn lock_path(state_dir: &Path) -> PathBuf {
    state_dir.join("dns.lock")
}

pub fn pid_path(state_dir: &Path) -> PathBuf {
    state_dir.join("dns.pid")
}

pub fn log_path(state_dir: &Path) -> PathBuf {
    state_dir.join("dns.log")
}

/// Opens (creating it, mode 0600) the lock file of the state directory.
pub fn open_lock(state_dir: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(lock_path(state_dir))
}

fn whole_file_lock(kind: libc::c_int) -> libc::flock {
    // SAFETY: flock is plain old data; all-zero is a valid value.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock
}

/// Whether another open file description holds the lock (tested, not taken).
pub fn lock_held(file: &File) -> io::Result<bool> {
    let mut lock = whole_file_lock(libc::F_WRLCK);
    // SAFETY: a valid descriptor and a flock struct we own.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut lock) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(lock.l_type != libc::F_UNLCK as libc::c_short)
}

/// Takes the lock without waiting; `false` when someone else holds it. It is held until
/// `file` is closed, or its process dies.
pub fn try_lock(file: &File) -> io::Result<bool> {
    let lock = whole_file_lock(libc::F_WRLCK);
    // SAFETY: a valid descriptor and a flock struct we own.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &lock) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN | libc::EACCES) => Ok(false),
        _ => Err(e),
    }
}

/// Parses an upstream resolver: `IP` (port 53) or `IP:PORT` (`[IPv6]:PORT`).
pub fn parse_upstream(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>()
        .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| format!("{text:?} is not an IP address or IP:PORT"))
}

/// Makes sure a weave-dns serves this state directory: returns at once when one holds the
/// lock, else starts one (detached: own session, stdio away from the runtime's pipes) and
/// waits until it serves. Concurrent callers may each start one; all but one exit quietly.
pub fn ensure_server(settings: &Settings) -> Result<(), DnsError> {
    let lock_file = lock_path(&settings.state_dir);
    let lock = open_lock(&settings.state_dir).map_err(io_err("open", &lock_file))?;
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
    let log = log_path(&settings.state_dir);
    let stderr = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
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
        cmd.pre_exec(|| match libc::setsid() {
            -1 => Err(io::Error::last_os_error()),
            _ => Ok(()),
        });
    }
    cmd.spawn()
        .map_err(|e| DnsError::Spawn(program.to_path_buf(), e))
}

fn wait_until_serving(lock: &File, child: &mut Child, settings: &Settings) -> Result<(), DnsError> {
    let lock_file = lock_path(&settings.state_dir);
    let deadline = Instant::now() + START_TIMEOUT;
    let not_started = |why: String| DnsError::NotStarted {
        why,
        log: log_path(&settings.state_dir),
    };
    loop {
        if lock_held(lock).map_err(io_err("test the lock", &lock_file))? {
            return Ok(());
        }
        // Exit 0 means another instance won the race; its lock shows up next.
        if let Ok(Some(status)) = child.try_wait() {
            if !status.success() {
                let last = last_line(&log_path(&settings.state_dir)).unwrap_or_default();
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
pub fn stop_server(state_dir: &Path) -> Result<bool, DnsError> {
    let pid_file = pid_path(state_dir);
    let pid = match std::fs::read_to_string(&pid_file) {
        Ok(text) => text.trim().parse::<i32>().ok().filter(|p| *p > 0),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err("read", &pid_file)(e)),
    };
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
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if has_exited(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    tracing::warn!(pid, "weave-dns did not exit on SIGTERM; sending SIGKILL");
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// Gone, or a zombie its parent has not reaped yet (the hook is not its parent).
fn has_exited(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_none_or(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(label("Web").unwrap(), "web");
        assert_eq!(label("web.weave.local").unwrap(), "web");
        assert_eq!(label("WEB.Weave.Local.").unwrap(), "web");
        assert_eq!(label("a-1").unwrap(), "a-1");
        assert_eq!(label("0123456789ab").unwrap(), "0123456789ab");
        assert_eq!(label(&"a".repeat(63)).unwrap().len(), 63);
        for bad in [
            "",
            ".",
            "weave.local",
            &"a".repeat(64),
            "a.b",
            "a_b",
            "-a",
            "a-",
            "é",
            "a b",
            "a\0",
            "web.example.com",
        ] {
            assert!(label(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn names_from_hostname_and_annotation() {
        assert_eq!(
            names(Some("Web"), Some("db, cache  web,api.weave.local")).unwrap(),
            ["web", "db", "cache", "api"]
        );
        // A hostname that is no DNS label is skipped; the container still gets its names.
        assert_eq!(names(Some("host.example.com"), Some("b")).unwrap(), ["b"]);
        assert_eq!(names(None, None).unwrap(), Vec::<String>::new());
        assert_eq!(names(None, Some(" , ")).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn bad_annotation_names_are_refused_with_the_culprit() {
        let err = names(None, Some("ok, bad_name")).unwrap_err().to_string();
        assert!(err.contains("weave.dns.names"), "{err}");
        assert!(err.contains("\"bad_name\""), "{err}");
        let many = (0..17)
            .map(|i| format!("n{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(names(None, Some(&many))
            .unwrap_err()
            .to_string()
            .contains("more than 16"));
        let long = "a,".repeat(600);
        assert!(names(None, Some(&long))
            .unwrap_err()
            .to_string()
            .contains("1024 bytes"));
    }

    #[test]
    fn names_of_reads_hostname_and_annotation_from_the_bundle() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"hostname":"c0ffee123456","annotations":{"weave.dns.names":"web"}}"#,
        )
        .unwrap();
        let mut state = State::parse(br#"{"id":"c","status":"creating","pid":1}"#).unwrap();
        state.bundle = Some(dir.path().to_path_buf());
        assert_eq!(names_of(&state).unwrap(), ["c0ffee123456", "web"]);
        state
            .annotations
            .insert(NAMES_ANNOTATION.into(), "api".into());
        assert_eq!(names_of(&state).unwrap(), ["c0ffee123456", "api"]);
        state.bundle = None;
        assert!(matches!(names_of(&state), Err(DnsError::NoBundle)));
    }

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
    fn the_dns_address_cannot_be_asked_for() {
        let dns: Ipv4Net = "10.32.0.1/12".parse().unwrap();
        let exact = |s: &str| AddrRequest::Exact(s.parse().unwrap());
        assert!(check_requests(&[exact("10.32.0.2/12")], dns).is_ok());
        assert!(check_requests(&[AddrRequest::DefaultRange], dns).is_ok());
        assert!(matches!(
            check_requests(&[exact("10.32.0.1/24")], dns),
            Err(DnsError::AddressIsDns(_))
        ));
    }

    #[test]
    fn upstreams() {
        assert_eq!(
            parse_upstream("10.9.0.1").unwrap(),
            "10.9.0.1:53".parse().unwrap()
        );
        assert_eq!(
            parse_upstream("10.9.0.1:5353").unwrap(),
            "10.9.0.1:5353".parse().unwrap()
        );
        assert_eq!(
            parse_upstream("[fd00::1]:53").unwrap(),
            "[fd00::1]:53".parse().unwrap()
        );
        assert_eq!(parse_upstream("fd00::1").unwrap().port(), 53);
        assert!(parse_upstream("resolver.example").is_err());
    }

    #[test]
    fn the_lock_is_seen_from_another_descriptor_without_being_taken() {
        let dir = tempfile::tempdir().unwrap();
        let server = open_lock(dir.path()).unwrap();
        let hook = open_lock(dir.path()).unwrap();
        assert!(!lock_held(&hook).unwrap());
        // Testing did not take it: the server still can.
        assert!(try_lock(&server).unwrap());
        assert!(lock_held(&hook).unwrap());
        assert!(!try_lock(&hook).unwrap());
        drop(server);
        assert!(!lock_held(&hook).unwrap());
    }

    #[test]
    fn stop_ignores_a_pid_file_naming_another_program() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(pid_path(dir.path()), std::process::id().to_string()).unwrap();
        assert!(!stop_server(dir.path()).unwrap());
        assert!(!pid_path(dir.path()).exists());
        assert!(!stop_server(dir.path()).unwrap());
    }
}
