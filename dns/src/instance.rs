//! One weave-dns per state directory. The lock is taken only once the sockets are bound, so
//! a held lock means "serving" (the hook waits for it); then the pid file is written, for
//! `weave-hook reset`. Both protocols are the hook's (`weave_hook::dns`).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use weave_hook::dns::{lock_held, open_lock, pid_path, try_lock};

/// The serving instance: holds the lock until dropped (or until the process dies).
pub struct Instance {
    _lock: File,
    pid_file: PathBuf,
}

/// Takes the lock and writes the pid file; `None` when another instance holds the lock.
pub fn claim(state_dir: &Path) -> io::Result<Option<Instance>> {
    let lock = open_lock(state_dir)?;
    if !try_lock(&lock)? {
        return Ok(None);
    }
    let pid_file = pid_path(state_dir);
    let tmp = pid_file.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, format!("{}\n", std::process::id()))?;
    std::fs::rename(&tmp, &pid_file)?;
    Ok(Some(Instance {
        _lock: lock,
        pid_file,
    }))
}

/// Whether another weave-dns holds the lock, or takes it within `patience` (it may have
/// bound the port a moment before us and not locked yet).
pub fn other_serves(state_dir: &Path, patience: Duration) -> bool {
    let Ok(lock) = open_lock(state_dir) else {
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
        let pid = std::fs::read_to_string(pid_path(dir.path())).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
        // OFD locks conflict between open file descriptions, even in one process.
        assert!(claim(dir.path()).unwrap().is_none());
        assert!(other_serves(dir.path(), Duration::ZERO));
        drop(first);
        assert!(!pid_path(dir.path()).exists());
        assert!(!other_serves(dir.path(), Duration::ZERO));
    }
}
