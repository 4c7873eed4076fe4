//! Letting traffic between the bridge's ports through hosts whose firewall drops it.
//!
//! Docker loads br_netfilter (bridged frames then traverse iptables' FORWARD chain) and sets
//! that chain's policy to DROP, so two containers on another bridge resolve each other's MAC
//! but every IP packet between them is dropped. The per-bridge `nf_call_iptables` option does
//! not help (the global sysctl wins); an ACCEPT rule for the bridge does.
//!
//! The rule can vanish at any time (`iptables -F FORWARD`, a firewalld reload), so the
//! marker `<state-dir>/firewall-<bridge>` records *when* it was last seen, not only that it
//! was: on an nf_tables host, the ruleset generation (with the boot and the network
//! namespace it belongs to); an unchanged generation proves the rule is still there without
//! running iptables. iptables-legacy changes no generation, so there every attach runs
//! `iptables -C`.
//!
//! No store lock is ever held here: iptables can wait on its own lock (legacy) or hang, and
//! address reservations must not wait for it. A lock of the firewall's own
//! (`<state-dir>/firewall.lock`) only keeps concurrent hooks from inserting the rule twice,
//! and every iptables run is bounded (`-w`, and killed after [`DEADLINE`]).

use std::fs::{self, File};
use std::io::{self, ErrorKind};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::Flock;
use thiserror::Error;
use weave_core::fsutil::{self, WriteOptions};
use weave_core::layout::StateDir;

use crate::nftgen;

const BRIDGE_NF_SYSCTL: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";
/// How long iptables may wait for its own lock (`/run/xtables.lock`, legacy backend only).
const XTABLES_WAIT_SECS: u32 = 5;
/// How long one iptables process may run before it is killed.
pub const DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum FirewallError {
    #[error("cannot run iptables (needed because bridged traffic passes iptables here): {0}")]
    Spawn(#[source] io::Error),
    #[error("`iptables {args}` failed: {stderr}")]
    Failed { args: String, stderr: String },
    #[error("`iptables {args}` did not finish within {}s and was killed; is iptables stuck (see `ps -C iptables`)?", DEADLINE.as_secs())]
    TimedOut { args: String },
    #[error("waiting for `iptables {args}`")]
    Wait {
        args: String,
        #[source]
        source: io::Error,
    },
    #[error("{op} {path}")]
    State {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn state_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FirewallError + 'a {
    move |source| FirewallError::State {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Whether bridged IPv4 traffic currently passes through iptables in this namespace.
pub fn bridged_traffic_filtered() -> bool {
    fsutil::read_proc(Path::new(BRIDGE_NF_SYSCTL)).is_ok_and(|v| v.trim() == "1")
}

/// When the rule is verified with iptables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recheck {
    /// Only when the ruleset may have changed since it was last seen (attach).
    WhenChanged,
    /// Always, re-detecting the iptables backend too (`weave-hook gc`, the repair command).
    Always,
}

/// What [`keep_accept`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// The ruleset generation is the one the rule was seen at: no iptables was run.
    Unchanged,
    /// iptables found the rule in place.
    Verified,
    /// The rule was missing and has been inserted.
    Inserted,
}

/// Keeps the ACCEPT rule for `bridge` at the top of FORWARD, running iptables only when
/// `recheck` and the marker under `state_dir` say it may be needed.
pub fn keep_accept(
    state_dir: &StateDir,
    bridge: &str,
    recheck: Recheck,
) -> Result<Kept, FirewallError> {
    let marker = state_dir.firewall_marker(bridge);
    if recheck == Recheck::WhenChanged && Marker::read(&marker).is_current() {
        return Ok(Kept::Unchanged);
    }
    let _lock = FirewallLock::take(state_dir)?;
    // Another hook may have verified it while this one waited for the lock.
    let known = Marker::read(&marker);
    if recheck == Recheck::WhenChanged && known.is_current() {
        return Ok(Kept::Unchanged);
    }
    let backend = match (recheck, known) {
        (Recheck::WhenChanged, Marker::Nft(_)) => Backend::Nft,
        (Recheck::WhenChanged, Marker::Legacy) => Backend::Legacy,
        _ => Backend::detect()?,
    };
    let (kept, seen) = match backend {
        Backend::Nft => verify_nft(bridge)?,
        Backend::Legacy => (verify(bridge)?, Some(Marker::Legacy)),
    };
    match seen {
        Some(m) => m.write(&marker)?,
        // No generation to record: the next attach verifies again.
        None => remove_file(&marker)?,
    }
    Ok(kept)
}

/// Records that weave itself just changed the ruleset (a container port's elements) in the
/// transaction that made `generation`: a marker that holds the generation right before it
/// saw its rule in place with nothing else changed in between, and weave's own set elements
/// touch no FORWARD rule, so it moves on, and the next attach runs no iptables. That holds
/// for every bridge's marker in the state directory (two weave bridges on one host would
/// otherwise make each other's next attach check), `bridge`'s first. Any other marker stays
/// (the next attach verifies, as after any change). Best effort: a marker left behind only
/// costs one `iptables -C`.
pub fn own_change(state_dir: &StateDir, bridge: &str, generation: u32) {
    let Some(here) = Seen::here(generation) else {
        return;
    };
    let own = state_dir.firewall_marker(bridge);
    let others = state_dir
        .firewall_markers()
        .into_iter()
        .filter(|p| *p != own);
    for path in std::iter::once(own.clone()).chain(others) {
        let Marker::Nft(seen) = Marker::read(&path) else {
            continue;
        };
        let next = Seen {
            generation,
            ..seen.clone()
        };
        if seen.generation.wrapping_add(1) == generation && here == next {
            if let Err(e) = Marker::Nft(next).write(&path) {
                tracing::debug!(error = %e, "cannot move the firewall marker on");
            }
        }
    }
}

/// Removes every copy of the ACCEPT rule for `bridge` and its marker. Returns how many
/// rules were removed.
pub fn remove_accept(state_dir: &StateDir, bridge: &str) -> Result<usize, FirewallError> {
    let _lock = FirewallLock::take(state_dir)?;
    remove_file(&state_dir.firewall_marker(bridge))?;
    let mut removed = 0;
    while iptables(Op::Delete, bridge)? {
        removed += 1;
    }
    Ok(removed)
}

/// Checks, inserts when missing; returns what it did.
fn verify(bridge: &str) -> Result<Kept, FirewallError> {
    if iptables(Op::Check, bridge)? {
        return Ok(Kept::Verified);
    }
    iptables(Op::Insert, bridge)?;
    Ok(Kept::Inserted)
}

/// [`verify`], and the marker to record: the generation read *before* the check that saw the
/// rule, so that a change racing with the check moves the generation past the recorded one.
fn verify_nft(bridge: &str) -> Result<(Kept, Option<Marker>), FirewallError> {
    let before = Seen::now();
    let kept = verify(bridge)?;
    if kept == Kept::Verified {
        return Ok((kept, before.map(Marker::Nft)));
    }
    // Our own insert moved the generation: see the rule once more at the new one, or the
    // next attach would verify again.
    let after = Seen::now();
    let present = iptables(Op::Check, bridge)?;
    Ok((kept, after.filter(|_| present).map(Marker::Nft)))
}

/// Which kernel interface `iptables` drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Nft,
    Legacy,
}

impl Backend {
    /// `iptables -V` says `iptables v1.8.9 (nf_tables)` or `(legacy)`; before 1.8 there was
    /// only legacy, and no suffix.
    fn detect() -> Result<Self, FirewallError> {
        let out = run(&["-V"])?;
        let version = String::from_utf8_lossy(&out.stdout);
        Ok(match version.contains("(nf_tables)") {
            true => Backend::Nft,
            false => Backend::Legacy,
        })
    }
}

/// An nf_tables ruleset generation, with what makes it unique: the kernel restarts the
/// counter at each boot (and the state dir may survive one where /run is not tmpfs), and
/// each network namespace has its own.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    boot: String,
    netns: u64,
    generation: u32,
}

impl Seen {
    /// The calling thread's; `None` when nf_tables cannot be asked (then nothing is trusted).
    fn now() -> Option<Self> {
        match nftgen::generation() {
            Ok(generation) => Self::here(generation),
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the nf_tables generation");
                None
            }
        }
    }

    /// `generation`, of the calling thread's boot and network namespace.
    fn here(generation: u32) -> Option<Self> {
        let boot = boot_id()?.to_string();
        let netns = fs::metadata("/proc/thread-self/ns/net").ok()?.ino();
        Some(Self {
            boot,
            netns,
            generation,
        })
    }
}

/// This boot's id, read once per process (an attach asks twice).
fn boot_id() -> Option<&'static str> {
    static BOOT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    BOOT.get_or_init(|| {
        Some(
            fsutil::read_proc(Path::new(BOOT_ID))
                .ok()?
                .trim()
                .to_string(),
        )
    })
    .as_deref()
}

/// What `<state-dir>/firewall-<bridge>` says about the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Marker {
    /// No marker, or one this version cannot read: verify.
    Unknown,
    /// nf_tables backend: the rule was in place at this generation.
    Nft(Seen),
    /// iptables-legacy: nothing to watch; verify on every attach.
    Legacy,
}

impl Marker {
    fn read(path: &Path) -> Self {
        fsutil::read_small(path, 256)
            .map(|text| Self::parse(&String::from_utf8_lossy(&text)))
            .unwrap_or(Marker::Unknown)
    }

    fn parse(text: &str) -> Self {
        let words: Vec<&str> = text.split_whitespace().collect();
        match words[..] {
            ["legacy"] => Marker::Legacy,
            ["nf_tables", boot, netns, generation] => match (netns.parse(), generation.parse()) {
                (Ok(netns), Ok(generation)) => Marker::Nft(Seen {
                    boot: boot.to_string(),
                    netns,
                    generation,
                }),
                _ => Marker::Unknown,
            },
            _ => Marker::Unknown,
        }
    }

    fn text(&self) -> String {
        match self {
            Marker::Unknown => String::new(),
            Marker::Nft(s) => format!("nf_tables {} {} {}\n", s.boot, s.netns, s.generation),
            Marker::Legacy => "legacy\n".to_string(),
        }
    }

    /// Whether the rule is known to be in place without asking iptables: one netlink
    /// request, and only for an nf_tables marker.
    fn is_current(&self) -> bool {
        match self {
            Marker::Nft(seen) => Seen::now().as_ref() == Some(seen),
            _ => false,
        }
    }

    /// Written atomically (a reader never sees half a marker), never through a link.
    fn write(&self, path: &Path) -> Result<(), FirewallError> {
        fsutil::write_atomic(path, self.text().as_bytes(), &WriteOptions::STATE)
            .map_err(state_err("write", path))
    }
}

fn remove_file(path: &Path) -> Result<(), FirewallError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(state_err("remove", path)(e)),
        _ => Ok(()),
    }
}

/// `<state-dir>/firewall.lock`, flock(2)ed while iptables runs for the rule; released when
/// dropped (or when the process dies). Waiting for it is bounded: its holder runs at most
/// four iptables processes of at most [`DEADLINE`] each.
struct FirewallLock(#[allow(dead_code)] Flock<File>);

impl FirewallLock {
    fn take(state_dir: &StateDir) -> Result<Self, FirewallError> {
        let path = state_dir.firewall_lock();
        fsutil::lock_file(&path)
            .map(Self)
            .map_err(state_err("lock", &path))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Check,
    Insert,
    Delete,
}

/// `-w N FORWARD [1] -i <bridge> -o <bridge> -m comment --comment weave-hook -j ACCEPT`
fn rule_args(op: Op, bridge: &str) -> Vec<String> {
    let wait = XTABLES_WAIT_SECS.to_string();
    let (flag, position) = match op {
        Op::Check => ("-C", None),
        Op::Insert => ("-I", Some("1")),
        Op::Delete => ("-D", None),
    };
    let mut args = vec!["-w", &wait, flag, "FORWARD"];
    args.extend(position);
    args.extend(["-i", bridge, "-o", bridge]);
    args.extend(["-m", "comment", "--comment", "weave-hook", "-j", "ACCEPT"]);
    args.into_iter().map(str::to_string).collect()
}

/// Runs one rule operation. For `Check` and `Delete`, `false` means no such rule.
fn iptables(op: Op, bridge: &str) -> Result<bool, FirewallError> {
    let args = rule_args(op, bridge);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&args)?;
    match out.status.code() {
        Some(0) => Ok(true),
        // -C and -D answer 1 when no such rule exists.
        Some(1) if op != Op::Insert => Ok(false),
        _ => Err(FirewallError::Failed {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }),
    }
}

/// Runs iptables with `args`, killing it after [`DEADLINE`]. Its output is a few lines,
/// well within a pipe's buffer, so it cannot block on a full pipe while not being read.
fn run(args: &[&str]) -> Result<Output, FirewallError> {
    let joined = || args.join(" ");
    let mut child = crate::tools::command("iptables")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(FirewallError::Spawn)?;
    let exited = exits_within(&child, DEADLINE).map_err(|source| FirewallError::Wait {
        args: joined(),
        source,
    });
    let stuck = match exited {
        Ok(true) => {
            return child
                .wait_with_output()
                .map_err(|source| FirewallError::Wait {
                    args: joined(),
                    source,
                })
        }
        Ok(false) => FirewallError::TimedOut { args: joined() },
        Err(e) => e,
    };
    let _ = child.kill();
    let _ = child.wait();
    Err(stuck)
}

/// Waits until `child` exits or `limit` passes; does not reap it. A pidfd of an unreaped
/// child cannot refer to another process, and poll(2) wakes at the exit itself.
pub(crate) fn exits_within(child: &Child, limit: Duration) -> io::Result<bool> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just returned to us and is owned by nothing else.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd, for the duration of the call.
        match unsafe { libc::poll(&mut pfd, 1, ms) } {
            n if n > 0 => return Ok(true),
            0 => return Ok(false),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_and_junk_is_unknown() {
        let seen = Seen {
            boot: "8a7c-11".into(),
            netns: 4026531840,
            generation: 17,
        };
        for m in [Marker::Nft(seen), Marker::Legacy] {
            assert_eq!(Marker::parse(&m.text()), m);
        }
        // The empty marker of earlier versions, and anything else, means "verify".
        for junk in [
            "",
            "nf_tables",
            "nf_tables b x 1",
            "nf_tables b 1 -1",
            "legacy x",
            "nft",
        ] {
            assert_eq!(Marker::parse(junk), Marker::Unknown, "{junk:?}");
        }
    }

    #[test]
    fn rule_arguments_bound_the_wait_and_name_the_bridge() {
        assert_eq!(
            rule_args(Op::Insert, "weave").join(" "),
            "-w 5 -I FORWARD 1 -i weave -o weave -m comment --comment weave-hook -j ACCEPT"
        );
        assert_eq!(rule_args(Op::Check, "br")[2..4], ["-C", "FORWARD"]);
    }

    #[test]
    fn a_process_past_its_deadline_is_reported_not_waited_for() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let start = Instant::now();
        assert!(!exits_within(&child, Duration::from_millis(100)).unwrap());
        assert!(start.elapsed() < Duration::from_secs(2));
        child.kill().unwrap();
        child.wait().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        assert!(exits_within(&child, Duration::from_secs(5)).unwrap());
        child.wait().unwrap();
    }
}
