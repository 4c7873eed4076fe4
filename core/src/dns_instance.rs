//! The protocol between weave-hook and weave-dns for "one server per state directory".
//!
//! The serving weave-dns holds an open file description lock (fcntl `F_OFD_SETLK`) on
//! `dns.lock` once its sockets are bound, and writes its pid to `dns.pid` for
//! `weave-hook reset`. An OFD lock, not flock(2): it can be *tested* without being taken
//! (`F_OFD_GETLK`), so a hook looking for a server never makes a starting server fail to
//! take it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg};

use crate::layout::StateDir;

/// Opens (creating it, mode 0600) the lock file of the state directory.
pub fn open_lock(dir: &StateDir) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dir.dns_lock())
}

/// A write lock on the whole file. nix wraps fcntl but not the flock struct itself.
fn whole_file_lock() -> libc::flock {
    // SAFETY: flock is plain old data; all-zero is a valid value.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock
}

/// Whether another open file description holds the lock (tested, not taken).
pub fn lock_held(file: &File) -> io::Result<bool> {
    let mut lock = whole_file_lock();
    fcntl(file.as_raw_fd(), FcntlArg::F_OFD_GETLK(&mut lock))?;
    Ok(lock.l_type != libc::F_UNLCK as libc::c_short)
}

/// Takes the lock without waiting; `false` when someone else holds it. It is held until
/// `file` is closed, or its process dies.
pub fn try_lock(file: &File) -> io::Result<bool> {
    match fcntl(file.as_raw_fd(), FcntlArg::F_OFD_SETLK(&whole_file_lock())) {
        Ok(_) => Ok(true),
        Err(Errno::EAGAIN | Errno::EACCES) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The pid `dns.pid` names, if it names one.
pub fn read_pid(dir: &StateDir) -> io::Result<Option<i32>> {
    match crate::fsutil::read_small(&dir.dns_pid(), 64) {
        Ok(text) => Ok(String::from_utf8_lossy(&text)
            .trim()
            .parse::<i32>()
            .ok()
            .filter(|p| *p > 0)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_is_seen_from_another_descriptor_without_being_taken() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path());
        let server = open_lock(&dir).unwrap();
        let hook = open_lock(&dir).unwrap();
        assert!(!lock_held(&hook).unwrap());
        // Testing did not take it: the server still can.
        assert!(try_lock(&server).unwrap());
        assert!(lock_held(&hook).unwrap());
        assert!(!try_lock(&hook).unwrap());
        drop(server);
        assert!(!lock_held(&hook).unwrap());
    }

    #[test]
    fn pid_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path());
        assert_eq!(read_pid(&dir).unwrap(), None);
        std::fs::write(dir.dns_pid(), "1234\n").unwrap();
        assert_eq!(read_pid(&dir).unwrap(), Some(1234));
        std::fs::write(dir.dns_pid(), "-1").unwrap();
        assert_eq!(read_pid(&dir).unwrap(), None);
    }
}
