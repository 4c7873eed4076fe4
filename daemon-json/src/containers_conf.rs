//! Which hooks directories podman reads: `[engine] hooks_dir` in containers.conf.
//!
//! podman (containers/common) reads only the file named by `$CONTAINERS_CONF` when it is set
//! (and refuses to run when that file is missing); otherwise
//! /usr/share/containers/containers.conf, /etc/containers/containers.conf and
//! /etc/containers/containers.conf.d/*.conf in name order, each later file's `hooks_dir`
//! replacing the earlier one. With no `hooks_dir` anywhere podman 4.3 reads only
//! /usr/share/containers/oci/hooks.d. (Rootful only: the hook needs CAP_NET_ADMIN, so the
//! per-user files of rootless podman do not matter here.)

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::cli::DEFAULT_HOOKS_DIR;

/// The system files, in the order podman reads them (each may be absent).
const SYSTEM_FILES: [&str; 2] = [
    "/usr/share/containers/containers.conf",
    "/etc/containers/containers.conf",
];
/// Drop-in files: every `*.conf` in it, read after [`SYSTEM_FILES`], in name order.
const DROP_IN_DIR: &str = "/etc/containers/containers.conf.d";

#[derive(Debug, Error)]
pub enum ConfError {
    #[error("CONTAINERS_CONF={0} does not exist: podman refuses to run with it")]
    Missing(PathBuf),
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, #[source] io::Error),
    #[error("{0} is not valid containers.conf TOML ({1}): podman refuses to run with it")]
    Toml(PathBuf, #[source] toml::de::Error),
}

/// Where podman's list of hooks directories comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// No file sets `hooks_dir`: podman's built-in default.
    Default,
    /// The last file read that sets `hooks_dir`.
    File(PathBuf),
}

/// The hooks directories podman reads, later ones overriding files of the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HooksDirs {
    pub dirs: Vec<PathBuf>,
    pub source: Source,
}

impl HooksDirs {
    /// Whether podman reads `dir` (compared after resolving symlinks where both exist).
    pub fn includes(&self, dir: &Path) -> bool {
        let wanted = canonical(dir);
        self.dirs.iter().any(|d| canonical(d) == wanted)
    }

    /// The directories, comma-separated, for messages.
    pub fn list(&self) -> String {
        let dirs: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
        match dirs.is_empty() {
            true => "no directory".to_string(),
            false => dirs.join(", "),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => write!(f, "podman's default: no containers.conf sets hooks_dir"),
            Self::File(path) => write!(f, "hooks_dir in {}", path.display()),
        }
    }
}

fn canonical(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

#[derive(Deserialize)]
struct Conf {
    #[serde(default)]
    engine: Option<Engine>,
}

#[derive(Deserialize)]
struct Engine {
    #[serde(default)]
    hooks_dir: Option<Vec<PathBuf>>,
}

/// The hooks directories podman reads, from `containers_conf` (`$CONTAINERS_CONF`) when
/// given, else from the system files.
pub fn hooks_dirs(containers_conf: Option<&Path>) -> Result<HooksDirs, ConfError> {
    let files = match containers_conf {
        Some(file) if file.is_file() => vec![file.to_path_buf()],
        Some(file) => return Err(ConfError::Missing(file.to_path_buf())),
        None => system_files()?,
    };
    hooks_dirs_from(&files)
}

/// The system files that exist, in podman's order.
fn system_files() -> Result<Vec<PathBuf>, ConfError> {
    let mut files: Vec<PathBuf> = SYSTEM_FILES
        .iter()
        .map(PathBuf::from)
        .filter(|f| f.is_file())
        .collect();
    let mut drop_ins = match fs::read_dir(DROP_IN_DIR) {
        Ok(dir) => dir
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "conf") && p.is_file())
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(ConfError::Read(DROP_IN_DIR.into(), e)),
    };
    drop_ins.sort();
    files.extend(drop_ins);
    Ok(files)
}

/// Reads `files` in order; the last `hooks_dir` wins.
fn hooks_dirs_from(files: &[PathBuf]) -> Result<HooksDirs, ConfError> {
    let mut found = HooksDirs {
        dirs: vec![PathBuf::from(DEFAULT_HOOKS_DIR)],
        source: Source::Default,
    };
    for file in files {
        let text = fs::read_to_string(file).map_err(|e| ConfError::Read(file.clone(), e))?;
        let conf: Conf = toml::from_str(&text).map_err(|e| ConfError::Toml(file.clone(), e))?;
        if let Some(dirs) = conf.engine.and_then(|e| e.hooks_dir) {
            found = HooksDirs {
                dirs,
                source: Source::File(file.clone()),
            };
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn without_hooks_dir_podman_reads_its_default() {
        let dir = tempfile::tempdir().unwrap();
        let conf = file(
            dir.path(),
            "a.conf",
            "[containers]\ndefault_ulimits=[\"nofile=1024:1024\"]\n[engine]\nruntime=\"runc\"\n",
        );
        let found = hooks_dirs_from(&[conf]).unwrap();
        assert_eq!(found.dirs, [PathBuf::from(DEFAULT_HOOKS_DIR)]);
        assert_eq!(found.source, Source::Default);
    }

    #[test]
    fn the_last_file_setting_hooks_dir_wins() {
        let dir = tempfile::tempdir().unwrap();
        let first = file(
            dir.path(),
            "1.conf",
            "[engine]\nhooks_dir=[\"/a\", \"/b\"]\n",
        );
        let second = file(dir.path(), "2.conf", "[engine]\nhooks_dir=[\"/c\"]\n");
        let silent = file(dir.path(), "3.conf", "[engine]\nruntime=\"crun\"\n");
        let found = hooks_dirs_from(&[first.clone(), second.clone(), silent]).unwrap();
        assert_eq!(found.dirs, [PathBuf::from("/c")]);
        assert_eq!(found.source, Source::File(second));
        assert!(found.includes(Path::new("/c")) && !found.includes(Path::new("/a")));
        let found = hooks_dirs_from(&[first]).unwrap();
        assert_eq!(found.list(), "/a, /b");
    }

    #[test]
    fn an_empty_list_means_no_directory() {
        let dir = tempfile::tempdir().unwrap();
        let conf = file(dir.path(), "a.conf", "[engine]\nhooks_dir=[]\n");
        assert_eq!(hooks_dirs_from(&[conf]).unwrap().list(), "no directory");
    }

    #[test]
    fn bad_toml_and_a_missing_containers_conf_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let bad = file(dir.path(), "bad.conf", "[engine\nhooks_dir=");
        let err = hooks_dirs(Some(&bad)).unwrap_err();
        assert!(matches!(err, ConfError::Toml(..)), "{err}");
        let missing = dir.path().join("missing.conf");
        let err = hooks_dirs(Some(&missing)).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }
}
