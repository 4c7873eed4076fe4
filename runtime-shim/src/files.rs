//! Writing the bundle's config.json and weave's resolv.conf files atomically, with
//! weave-core's one atomic-write helper: a reader (runc) sees the old or the new file, never
//! a partial one, and a failure leaves no temporary file behind. Both are synced: config.json
//! is the user's bundle, not state on a tmpfs.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use weave_core::fsutil::{self, WriteOptions};

#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct WriteError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Replaces `path` with `contents`, keeping its mode and owner.
pub fn replace(path: &Path, contents: &[u8]) -> Result<(), WriteError> {
    let wrap = |source| WriteError {
        path: path.to_owned(),
        source,
    };
    let meta = fs::metadata(path).map_err(wrap)?;
    let options = WriteOptions {
        mode: meta.permissions().mode() & 0o7777,
        owner: Some((meta.uid(), meta.gid())),
        durable: true,
        temp_suffix: "",
    };
    fsutil::write_atomic(path, contents, &options).map_err(wrap)
}

/// Creates or replaces a resolv.conf file (mode 0644: the container's processes read it),
/// creating its directory (0700, as the rest of the state directory) if needed, and refusing
/// one that someone else could change.
pub fn create_resolv(state_dir: &Path, path: &Path, contents: &[u8]) -> Result<(), WriteError> {
    let wrap = |source| WriteError {
        path: path.to_owned(),
        source,
    };
    for dir in [Some(state_dir), path.parent()].into_iter().flatten() {
        fsutil::ensure_private_dir(dir)
            .map_err(|e| wrap(io::Error::new(io::ErrorKind::PermissionDenied, e)))?;
    }
    let options = WriteOptions {
        mode: 0o644,
        owner: None,
        durable: true,
        temp_suffix: "",
    };
    fsutil::write_atomic(path, contents, &options).map_err(wrap)
}
