//! Finding the real runtime and becoming it: `exec`, not a child process, so its pid,
//! signals, stdio and exit code are exactly what the caller (containerd, podman) expects.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(
        "runtime {0:?} not found on PATH (set --weave-runtime=/path/to/runc or WEAVE_RUNTIME)"
    )]
    NotFound(OsString),
    #[error(
        "runtime {0} is weave-runtime itself (set --weave-runtime=/path/to/runc or WEAVE_RUNTIME)"
    )]
    Loop(PathBuf),
    #[error("cannot execute runtime {0}: {1}")]
    Exec(PathBuf, #[source] io::Error),
}

/// Resolves `runtime` like execvp would (a name containing '/' is a path, anything else is
/// looked up in `path_var`), and refuses weave-runtime itself, which would exec forever.
pub fn resolve(runtime: &OsStr, path_var: Option<&OsStr>) -> Result<PathBuf, ExecError> {
    let found = if runtime.as_bytes().contains(&b'/') {
        PathBuf::from(runtime)
    } else {
        let dirs = path_var.unwrap_or(OsStr::new(
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ));
        std::env::split_paths(dirs)
            .map(|d| d.join(runtime))
            .find(|p| is_executable(p))
            .ok_or_else(|| ExecError::NotFound(runtime.to_owned()))?
    };
    if is_self(&found) {
        return Err(ExecError::Loop(found));
    }
    Ok(found)
}

fn is_executable(p: &Path) -> bool {
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn is_self(candidate: &Path) -> bool {
    let me = std::env::current_exe().and_then(|p| p.canonicalize());
    let it = candidate.canonicalize();
    matches!((me, it), (Ok(me), Ok(it)) if me == it)
}

/// Replaces this process with `runtime args...`, same environment. Returns only on failure.
pub fn exec(runtime: &Path, args: &[OsString]) -> ExecError {
    let err = Command::new(runtime).args(args).exec();
    ExecError::Exec(runtime.to_owned(), err)
}
