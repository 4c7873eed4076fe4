//! Replacing a configuration file so that it is never half-written or lost, with weave-core's
//! one atomic-write helper (`fsutil::write_atomic`): the new contents go to a temporary file in
//! the same directory (`.tmpXXXXXX.weave-tmp`: not `*.json`, so podman's hooks.d never reads
//! it) that gets the old file's mode and owner, is fsynced and renamed over the target; then
//! the directory is fsynced. What this module adds is the editing protocol: the previous
//! contents are first saved the same way as `<name>.weave-backup` (one backup, replaced on
//! each change), a file changed since it was read is not overwritten, a symbolic link is
//! edited through, and a dry run probes every write without making it. On every failure the
//! temporary file is removed and the target is untouched.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use thiserror::Error;
use weave_core::fsutil::{self, parent_dir, WriteOptions};

const BACKUP_SUFFIX: &str = ".weave-backup";
const TEMP_SUFFIX: &str = ".weave-tmp";
const NEW_FILE_MODE: u32 = 0o644;

#[derive(Debug, Error)]
pub enum AtomicError {
    #[error("directory {0} does not exist (create it, or choose another path)")]
    MissingDir(PathBuf),
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, #[source] io::Error),
    #[error("{0} changed while weave-setup was editing it; nothing written, run again")]
    ChangedMeanwhile(PathBuf),
    #[error("cannot write {0}: {1}")]
    Write(PathBuf, #[source] io::Error),
    #[error("cannot remove {0}: {1}")]
    Remove(PathBuf, #[source] io::Error),
    #[error("cannot sync directory {0}: {1}")]
    SyncDir(PathBuf, #[source] io::Error),
    #[error("{0} is a symbolic link whose target cannot be resolved: {1}")]
    Symlink(PathBuf, #[source] io::Error),
}

/// The file to edit for `path`: its final target when it is a symbolic link (configuration
/// managers link daemon.json; replacing the link by a plain file would cut it off).
pub fn resolve(path: &Path) -> Result<PathBuf, AtomicError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            fs::canonicalize(path).map_err(|e| AtomicError::Symlink(path.to_path_buf(), e))
        }
        _ => Ok(path.to_path_buf()),
    }
}

/// The path of the backup kept next to `path`.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(BACKUP_SUFFIX);
    PathBuf::from(name)
}

/// Reads `path`; `Ok(None)` when it does not exist. A missing parent directory is an error,
/// since we would not be able to create the file there either.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, AtomicError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let dir = parent_dir(path);
            if dir.is_dir() {
                Ok(None)
            } else {
                Err(AtomicError::MissingDir(dir.to_path_buf()))
            }
        }
        Err(e) => Err(AtomicError::Read(path.to_path_buf(), e)),
    }
}

/// Replaces `path` (which held `old`, `None` if absent) with `new`, first saving `old` as the
/// backup. Returns the backup's path when one was written.
pub fn replace(
    path: &Path,
    old: Option<&[u8]>,
    new: &[u8],
) -> Result<Option<PathBuf>, AtomicError> {
    let options = unchanged(path, old)?;
    let backup = match old {
        Some(old) => {
            let backup = backup_path(path);
            write(&backup, old, &options)?;
            Some(backup)
        }
        None => None,
    };
    write(path, new, &options)?;
    Ok(backup)
}

/// Replaces `path` (which held `old`) with `new` without touching the backup: for an
/// intermediate version that the backup must not record.
pub fn rewrite(path: &Path, old: &[u8], new: &[u8]) -> Result<(), AtomicError> {
    let options = unchanged(path, Some(old))?;
    write(path, new, &options)
}

/// Removes `path` (which held `old`), first saving `old` as the backup.
pub fn remove(path: &Path, old: &[u8]) -> Result<PathBuf, AtomicError> {
    let options = unchanged(path, Some(old))?;
    let backup = backup_path(path);
    write(&backup, old, &options)?;
    fs::remove_file(path).map_err(|e| AtomicError::Remove(path.to_path_buf(), e))?;
    let dir = parent_dir(path);
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| AtomicError::SyncDir(dir.to_path_buf(), e))?;
    Ok(backup)
}

/// Writes a new file of weave-setup's own (its record) atomically: mode 0644, our ids.
pub fn write_new(path: &Path, contents: &[u8]) -> Result<(), AtomicError> {
    write(path, contents, &options_for(None))
}

/// Runs the steps of [`replace`] that can fail for lack of permission, a read-only
/// filesystem or a directory in the way, and changes nothing: a dry run fails where the real
/// run would. (The temporary file each write starts with is created and removed again.)
pub fn check_replace(path: &Path, old: Option<&[u8]>) -> Result<(), AtomicError> {
    let options = unchanged(path, old)?;
    if old.is_some() {
        check_write(&backup_path(path), &options)?;
    }
    check_write(path, &options)
}

/// Fails where [`rewrite`] would, and changes nothing (see [`check_replace`]).
pub fn check_rewrite(path: &Path, old: &[u8]) -> Result<(), AtomicError> {
    let options = unchanged(path, Some(old))?;
    check_write(path, &options)
}

/// Fails where [`write_new`] would, and changes nothing (see [`check_replace`]).
pub fn check_write_new(path: &Path) -> Result<(), AtomicError> {
    check_write(path, &options_for(None))
}

fn write(path: &Path, contents: &[u8], options: &WriteOptions) -> Result<(), AtomicError> {
    fsutil::write_atomic(path, contents, options)
        .map_err(|e| AtomicError::Write(path.to_path_buf(), e))
}

fn check_write(path: &Path, options: &WriteOptions) -> Result<(), AtomicError> {
    fsutil::check_write_atomic(path, options).map_err(|e| AtomicError::Write(path.to_path_buf(), e))
}

/// Refuses to overwrite a concurrent edit made since we read the file; else returns how its
/// replacement (and backup) is written: with its mode and ids when it exists.
fn unchanged(path: &Path, old: Option<&[u8]>) -> Result<WriteOptions, AtomicError> {
    if read_optional(path)?.as_deref() != old {
        return Err(AtomicError::ChangedMeanwhile(path.to_path_buf()));
    }
    match fs::metadata(path) {
        Ok(meta) => Ok(options_for(Some(&meta))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(options_for(None)),
        Err(e) => Err(AtomicError::Read(path.to_path_buf(), e)),
    }
}

/// Configuration must survive a crash of the machine: always durable.
fn options_for(existing: Option<&fs::Metadata>) -> WriteOptions {
    WriteOptions {
        mode: existing.map_or(NEW_FILE_MODE, |m| m.mode() & 0o7777),
        owner: existing.map(|m| (m.uid(), m.gid())),
        durable: true,
        temp_suffix: TEMP_SUFFIX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::Permissions;
    use std::os::unix::fs::PermissionsExt;

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replace_keeps_mode_and_writes_a_backup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.json");
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o600)).unwrap();

        let backup = replace(&path, Some(b"old"), b"new").unwrap().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::read(&backup).unwrap(), b"old");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o600);
        assert_eq!(fs::metadata(&backup).unwrap().mode() & 0o7777, 0o600);
        assert_eq!(
            names_in(dir.path()),
            ["daemon.json", "daemon.json.weave-backup"]
        );
    }

    #[test]
    fn rewrite_leaves_the_backup_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.json");
        fs::write(&path, b"v1").unwrap();
        replace(&path, Some(b"v1"), b"v2").unwrap();
        rewrite(&path, b"v2", b"v3").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"v3");
        assert_eq!(fs::read(backup_path(&path)).unwrap(), b"v1");
        assert!(rewrite(&path, b"v2", b"v4").is_err(), "v3 was overwritten");
    }

    #[test]
    fn new_file_gets_mode_0644_and_no_backup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.json");
        assert_eq!(read_optional(&path).unwrap(), None);
        assert_eq!(replace(&path, None, b"{}").unwrap(), None);
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o644);
        assert_eq!(names_in(dir.path()), ["daemon.json"]);
    }

    #[test]
    fn read_only_file_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.json");
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o444)).unwrap();
        // The file's own write bit does not matter: it is replaced through its directory.
        replace(&path, Some(b"old"), b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o444);
    }

    #[test]
    fn concurrent_edit_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.json");
        fs::write(&path, b"edited by someone else").unwrap();
        let err = replace(&path, Some(b"what we read"), b"new").unwrap_err();
        assert!(matches!(err, AtomicError::ChangedMeanwhile(_)), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"edited by someone else");
        assert_eq!(names_in(dir.path()), ["daemon.json"]);
    }

    #[test]
    fn missing_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-dir/daemon.json");
        let err = read_optional(&path).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        assert!(matches!(
            replace(&path, None, b"{}"),
            Err(AtomicError::MissingDir(_))
        ));
    }

    #[test]
    fn failed_rename_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: rename(2) of a file over it fails.
        let path = dir.path().join("daemon.json");
        fs::create_dir(&path).unwrap();
        let err = write_new(&path, b"{}").unwrap_err();
        assert!(matches!(err, AtomicError::Write(..)), "{err}");
        assert_eq!(names_in(dir.path()), ["daemon.json"]);
    }

    #[test]
    fn symlinked_file_is_edited_through_the_link() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        let link = dir.path().join("daemon.json");
        fs::write(&real, b"old").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let target = resolve(&link).unwrap();
        replace(&target, Some(b"old"), b"new").unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&link).unwrap(), b"new");

        fs::remove_file(&real).unwrap();
        assert!(matches!(resolve(&link), Err(AtomicError::Symlink(..))));
    }

    #[test]
    fn check_replace_changes_nothing_and_fails_where_replace_would() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.json");
        fs::write(&path, b"old").unwrap();
        check_replace(&path, Some(b"old")).unwrap();
        check_replace(&dir.path().join("new.json"), None).unwrap();
        assert_eq!(names_in(dir.path()), ["daemon.json"]);

        assert!(matches!(
            check_replace(&path, Some(b"other")),
            Err(AtomicError::ChangedMeanwhile(_))
        ));
        fs::create_dir(backup_path(&path)).unwrap();
        let checked = check_replace(&path, Some(b"old")).unwrap_err();
        let real = replace(&path, Some(b"old"), b"new").unwrap_err();
        assert!(matches!(checked, AtomicError::Write(..)), "{checked}");
        assert!(matches!(real, AtomicError::Write(..)), "{real}");
        assert!(matches!(
            check_replace(&dir.path().join("gone/daemon.json"), None),
            Err(AtomicError::MissingDir(_))
        ));
    }

    #[test]
    fn remove_keeps_a_backup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weave.json");
        fs::write(&path, b"hook").unwrap();
        let backup = remove(&path, b"hook").unwrap();
        assert!(!path.exists());
        assert_eq!(fs::read(backup).unwrap(), b"hook");
    }
}
