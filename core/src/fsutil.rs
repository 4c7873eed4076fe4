//! Files weave writes and reads: one atomic-write helper, one bounded reader.
//!
//! A write goes to a temporary file of the same directory, created exclusively under an
//! unpredictable name (`.tmp` + random), then renamed over the target: a reader sees the old
//! or the new content, never a mix, and nobody can plant a link where the temporary file
//! will be. On failure the temporary file is removed and the target is untouched.

use std::fs::{DirBuilder, File, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{fchown, DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use tempfile::NamedTempFile;
use thiserror::Error;

use crate::layout::TEMP_PREFIX;

/// Why a directory of the state directory is not trusted.
#[derive(Debug, Error)]
pub enum DirError {
    #[error("cannot create directory {0}: {1}")]
    Create(PathBuf, #[source] io::Error),
    #[error("{path} {why}; weave keeps its state only in a directory that root alone can change (remove it, or choose another --state-dir)")]
    Untrusted { path: PathBuf, why: String },
}

/// Creates `path` (and missing parents) mode 0700 if needed, then checks that it is a real
/// directory (not a symbolic link), owned by this process's user, and writable by nobody
/// else: a state directory someone else can change would let them plant links where weave
/// writes as root, or forge records and reservations.
pub fn ensure_private_dir(path: &Path) -> Result<(), DirError> {
    // Made once, then checked on every open: one stat when it is there.
    let meta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(|e| DirError::Create(path.to_path_buf(), e))?;
            std::fs::symlink_metadata(path)
        }
        found => found,
    };
    trusted_dir(path, meta)
}

/// Checks, without creating anything, that `path` is a directory only this process's user
/// can change (see [`ensure_private_dir`]).
pub fn check_private_dir(path: &Path) -> Result<(), DirError> {
    trusted_dir(path, std::fs::symlink_metadata(path))
}

/// The checks of [`check_private_dir`] on `path`'s metadata (not followed through a link).
fn trusted_dir(path: &Path, meta: io::Result<std::fs::Metadata>) -> Result<(), DirError> {
    let untrusted = |why: String| DirError::Untrusted {
        path: path.to_path_buf(),
        why,
    };
    let meta = meta.map_err(|e| untrusted(e.to_string()))?;
    if meta.file_type().is_symlink() {
        return Err(untrusted("is a symbolic link".into()));
    }
    if !meta.is_dir() {
        return Err(untrusted("is not a directory".into()));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(untrusted(format!(
            "is owned by uid {}, not {me}",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(untrusted(format!(
            "is writable by its group or others (mode {:o})",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// A lock file of the state directory (created 0600, never through a link), flock(2)ed
/// exclusively; released when the returned value is dropped, or when the process dies.
pub fn lock_file(path: &Path) -> io::Result<Flock<File>> {
    lock_file_as(path, FlockArg::LockExclusive, true)
}

/// A lock file of the state directory (never through a link; created 0600 when `create`),
/// flock(2)ed as `how` says; a non-blocking lock held elsewhere is `ErrorKind::WouldBlock`.
pub fn lock_file_as(path: &Path, how: FlockArg, create: bool) -> io::Result<Flock<File>> {
    let file = std::fs::OpenOptions::new()
        .create(create)
        .truncate(false)
        .write(create)
        .read(!create)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    Flock::lock(file, how).map_err(|(_, errno)| errno.into())
}

/// How [`write_atomic`] writes.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    /// Mode of the new file.
    pub mode: u32,
    /// Owner and group of the new file; the writer's when `None`.
    pub owner: Option<(u32, u32)>,
    /// fsync the file and its directory: for configuration that must survive a crash of
    /// the machine. State under a tmpfs does not need it.
    pub durable: bool,
    /// Suffix of the temporary file, for directories whose readers match names.
    pub temp_suffix: &'static str,
}

impl WriteOptions {
    /// A private file of the state directory: 0600, not synced.
    pub const STATE: Self = Self {
        mode: 0o600,
        owner: None,
        durable: false,
        temp_suffix: "",
    };
}

/// Replaces `path` with `data` atomically (see the module's documentation).
pub fn write_atomic(path: &Path, data: &[u8], options: &WriteOptions) -> io::Result<()> {
    // Dropping `temp` on any early return deletes the temporary file.
    let mut temp = prepared_temp(path, options)?;
    temp.write_all(data)?;
    if options.durable {
        temp.as_file().sync_all()?;
    }
    crate::failpoint::hit("record-temp");
    temp.persist(path).map_err(|e| e.error)?;
    if options.durable {
        // The rename is durable only once the directory itself is synced.
        File::open(parent_dir(path))?.sync_all()?;
    }
    Ok(())
}

/// Fails where [`write_atomic`] would for lack of permission, a read-only filesystem or a
/// directory in the way, and changes nothing: the temporary file is made with its final mode
/// and owner, then removed. For dry runs that must fail exactly when the real run would.
pub fn check_write_atomic(path: &Path, options: &WriteOptions) -> io::Result<()> {
    if path.is_dir() {
        // rename(2) of a file over a directory fails with EISDIR.
        return Err(io::Error::from_raw_os_error(libc::EISDIR));
    }
    prepared_temp(path, options).map(drop)
}

/// The empty temporary file that becomes `path`, with its final mode and owner.
fn prepared_temp(path: &Path, options: &WriteOptions) -> io::Result<NamedTempFile> {
    let temp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .suffix(options.temp_suffix)
        .permissions(Permissions::from_mode(options.mode))
        .tempfile_in(parent_dir(path))?;
    let file = temp.as_file();
    // The umask may have narrowed the mode given at creation.
    file.set_permissions(Permissions::from_mode(options.mode))?;
    if let Some((uid, gid)) = options.owner {
        let meta = file.metadata()?;
        // chown needs privileges even when nothing changes.
        if (meta.uid(), meta.gid()) != (uid, gid) {
            fchown(file, Some(uid), Some(gid))?;
        }
    }
    Ok(temp)
}

/// The directory a file of `path` goes in (`.` for a bare name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Reads a small file of /proc or /sys whole. They report no size, so the reads would start
/// at 32 bytes and double; a page-sized buffer takes it in one read(2), the next finds the end.
pub fn read_proc(path: &Path) -> io::Result<String> {
    let file = File::open(path)?;
    let mut data = Vec::with_capacity(4096);
    // Through `Take` (with no limit that matters): `File`'s own read_to_end first asks the
    // file's size and position, two more system calls.
    file.take(u64::MAX).read_to_end(&mut data)?;
    String::from_utf8(data).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Reads a small regular file of the state directory: never through a symbolic link, never
/// blocking on a FIFO, at most `limit` bytes (more is an error).
pub fn read_small(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    // Room for the whole file and one byte more: one read(2) takes it all and the next
    // finds its end (from an empty vector the reads would start at 32 bytes and double).
    let mut data = Vec::with_capacity(meta.len().min(limit) as usize + 1);
    file.take(limit + 1).read_to_end(&mut data)?;
    if data.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {limit} bytes"),
        ));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn write_replaces_whole_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        write_atomic(&path, b"one", &WriteOptions::STATE).unwrap();
        write_atomic(&path, b"two", &WriteOptions::STATE).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn a_failed_write_leaves_the_target_and_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a directory: the rename fails.
        let path = dir.path().join("d");
        fs::create_dir(&path).unwrap();
        assert!(write_atomic(&path, b"x", &WriteOptions::STATE).is_err());
        assert!(path.is_dir());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn private_dirs_are_made_0700_and_others_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("a/b");
        ensure_private_dir(&state).unwrap();
        assert_eq!(
            fs::metadata(&state).unwrap().permissions().mode() & 0o777,
            0o700
        );
        ensure_private_dir(&state).unwrap();
        fs::set_permissions(&state, Permissions::from_mode(0o770)).unwrap();
        let err = ensure_private_dir(&state).unwrap_err().to_string();
        assert!(
            err.contains("writable by its group or others (mode 770)"),
            "{err}"
        );
        fs::set_permissions(&state, Permissions::from_mode(0o700)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&state, &link).unwrap();
        let err = ensure_private_dir(&link).unwrap_err().to_string();
        assert!(err.contains("is a symbolic link"), "{err}");
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(&state, Some(65534), None).unwrap();
            let err = ensure_private_dir(&state).unwrap_err().to_string();
            assert!(err.contains("is owned by uid 65534"), "{err}");
        }
    }

    #[test]
    fn a_file_in_the_way_of_a_private_dir_is_named_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        fs::write(&path, b"x").unwrap();
        let err = ensure_private_dir(&path).unwrap_err().to_string();
        assert!(err.contains("is not a directory"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"x");
    }

    #[test]
    fn proc_reads_take_the_whole_file_past_the_first_page() {
        let stat = read_proc(Path::new("/proc/self/stat")).unwrap();
        assert!(
            stat.starts_with(&format!("{} (", std::process::id())),
            "{stat}"
        );
        let dir = tempfile::tempdir().unwrap();
        let long = dir.path().join("long");
        let text: String = (0..3000).map(|i| format!("{i}\n")).collect();
        assert!(text.len() > 3 * 4096);
        fs::write(&long, &text).unwrap();
        assert_eq!(read_proc(&long).unwrap(), text);
        assert!(read_proc(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn the_check_fails_where_the_write_would_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        check_write_atomic(&path, &WriteOptions::STATE).unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        fs::create_dir(&path).unwrap();
        assert!(check_write_atomic(&path, &WriteOptions::STATE).is_err());
        assert!(write_atomic(&path, b"x", &WriteOptions::STATE).is_err());
        let missing = dir.path().join("gone/f.json");
        assert!(check_write_atomic(&missing, &WriteOptions::STATE).is_err());
        assert!(write_atomic(&missing, b"x", &WriteOptions::STATE).is_err());
    }

    #[test]
    fn reads_refuse_links_fifos_and_large_files() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        fs::write(&secret, "root only").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        assert!(read_small(&link, 64).is_err());
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(read_small(&fifo, 64).is_err());
        assert!(read_small(&secret, 4).is_err());
        assert_eq!(read_small(&secret, 64).unwrap(), b"root only");
    }
}
