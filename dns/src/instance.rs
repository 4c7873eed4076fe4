//! One weave-dns per state directory. The lock is taken only once the sockets are bound, so
//! a held lock means "serving" (the hook waits for it); then the pid file is written, for
//! `weave-hook reset`. The protocol is weave-core's (`weave_core::dns_instance`).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use weave_core::dns_instance::{lock_held, open_lock, try_lock};
use weave_core::fsutil::{write_atomic, WriteOptions};
use weave_core::layout::StateDir;

/// The serving instance: holds the lock until dropped (or until the process dies).
pub struct Instance {
    _lock: File,
    pid_file: PathBuf,
}

/// Takes the lock and writes the pid file; `None` when another instance holds the lock.
pub fn claim(state_dir: &Path) -> io::Result<Option<Instance>> {
    let dir = StateDir::new(state_dir);
    let lock = open_lock(&dir)?;
    if !try_lock(&lock)? {
        return Ok(None);
    }
    let pid_file = dir.dns_pid();
    let pid = format!("{}\n", std::process::id());
    write_atomic(&pid_file, pid.as_bytes(), &WriteOptions::STATE)?;
    Ok(Some(Instance {
        _lock: lock,
        pid_file,
    }))
}

/// Whether another weave-dns holds the lock, or takes it within `patience` (it may have
/// bound the port a moment before us and not locked yet).
pub fn other_serves(state_dir: &Path, patience: Duration) -> bool {
    let Ok(lock) = open_lock(&StateDir::new(state_dir)) else {
        return false;
    };
    let deadline = Instant::now() + patience;
    loop {
        if lock_held(&lock).unwrap_or(false) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.pid_file)
            .is_ok_and(|pid| pid.trim() == std::process::id().to_string());
        if ours {
            let _ = std::fs::remove_file(&self.pid_file);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_instance_per_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!other_serves(dir.path(), Duration::ZERO));
        let first = claim(dir.path()).unwrap().expect("the first claim wins");
        let pid = std::fs::read_to_string(StateDir::new(dir.path()).dns_pid()).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
        // OFD locks conflict between open file descriptions, even in one process.
        assert!(claim(dir.path()).unwrap().is_none());
        assert!(other_serves(dir.path(), Duration::ZERO));
        drop(first);
        assert!(!StateDir::new(dir.path()).dns_pid().exists());
        assert!(!other_serves(dir.path(), Duration::ZERO));
    }
}
