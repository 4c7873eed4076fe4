//! Process identity: a pid alone is reused by the kernel, a pid with its start time is not.
//! The one reader of `/proc/<pid>/stat` and the one rule for "gone": a process that does not
//! exist, has another start time, or is a zombie (a killed container's init stays one until
//! its parent reaps it, and its namespaces are already released).

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    pub pid: i32,
    /// Field 22 of /proc/<pid>/stat: clock ticks after boot.
    pub start_time: u64,
}

/// The fields of `/proc/<pid>/stat` weave reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Field 3: R, S, D, Z, X...
    pub state: char,
    pub start_time: u64,
}

impl Stat {
    pub fn of(pid: i32) -> io::Result<Self> {
        let text = crate::fsutil::read_proc(Path::new(&format!("/proc/{pid}/stat")))?;
        parse_stat(&text).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected /proc/{pid}/stat format"),
            )
        })
    }

    /// A zombie, or a process being torn down.
    pub fn has_exited(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

impl ProcessId {
    /// Identifies a running process; fails when it does not exist.
    pub fn of(pid: i32) -> io::Result<Self> {
        let stat = Stat::of(pid)?;
        Ok(Self {
            pid,
            start_time: stat.start_time,
        })
    }

    /// Whether this very process still runs: not gone, not a later one that got the same
    /// pid, not a zombie.
    pub fn is_alive(&self) -> bool {
        Stat::of(self.pid).is_ok_and(|s| s.start_time == self.start_time && !s.has_exited())
    }
}

/// Whether `pid` names no running process (gone, or a zombie).
pub fn has_exited(pid: i32) -> bool {
    Stat::of(pid).map_or(true, |s| s.has_exited())
}

/// The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
fn parse_stat(stat: &str) -> Option<Stat> {
    let mut rest = stat[stat.rfind(')')? + 1..].split_ascii_whitespace();
    // `rest` starts at field 3 (state); start time is field 22.
    let state = rest.next()?.chars().next()?;
    let start_time = rest.nth(22 - 4)?.parse().ok()?;
    Some(Stat { state, start_time })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_survives_odd_command_names() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(
            parse_stat(stat),
            Some(Stat {
                state: 'S',
                start_time: 987654
            })
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
    }

    #[test]
    fn own_process_is_alive_and_a_changed_start_time_is_not() {
        let me = ProcessId::of(std::process::id() as i32).unwrap();
        assert!(me.is_alive());
        let impostor = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!impostor.is_alive());
        assert!(ProcessId::of(i32::MAX).is_err());
        assert!(has_exited(i32::MAX));
    }

    #[test]
    fn a_zombie_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let id = loop {
            // Not reaped yet: the exited child stays a zombie until `wait`.
            let stat = Stat::of(pid).unwrap();
            if stat.has_exited() {
                break ProcessId {
                    pid,
                    start_time: stat.start_time,
                };
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        assert!(!id.is_alive());
        assert!(has_exited(pid));
        child.wait().unwrap();
    }
}
