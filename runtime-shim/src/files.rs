//! Writing the bundle's config.json and weave's resolv.conf files atomically: a temporary
//! file in the same directory, fsync, rename. A reader (runc) sees the old or the new file,
//! never a partial one, and a failure leaves no temporary file behind.

use std::fs::{self, DirBuilder, File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

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
    write_atomic(
        path,
        contents,
        meta.permissions(),
        Some((meta.uid(), meta.gid())),
    )
    .map_err(wrap)
}

/// Creates or replaces `path` with mode 0644, creating its directory (0755) if needed.
pub fn create(path: &Path, contents: &[u8]) -> Result<(), WriteError> {
    let wrap = |source| WriteError {
        path: path.to_owned(),
        source,
    };
    let dir = parent(path);
    DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(wrap)?;
    write_atomic(path, contents, Permissions::from_mode(0o644), None).map_err(wrap)
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn write_atomic(
    path: &Path,
    contents: &[u8],
    perms: Permissions,
    owner: Option<(u32, u32)>,
) -> io::Result<()> {
    let dir = parent(path);
    // Dropping the temporary file on any error below deletes it.
    let mut tmp = tempfile::Builder::new()
        .prefix(".weave-runtime-")
        .tempfile_in(dir)?;
    tmp.write_all(contents)?;
    let file = tmp.as_file();
    file.set_permissions(perms)?;
    if let Some((uid, gid)) = owner {
        let meta = file.metadata()?;
        if (meta.uid(), meta.gid()) != (uid, gid) {
            std::os::unix::fs::fchown(file, Some(uid), Some(gid))?;
        }
    }
    file.sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // The rename is durable only once the directory itself is synced.
    File::open(dir)?.sync_all()
}
