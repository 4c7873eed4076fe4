//! Where the installed integration points to: weave-runtime and weave-hook.

use std::path::{Path, PathBuf};

use thiserror::Error;

const INSTALL_DIR: &str = "/usr/local/bin";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PathError {
    #[error(
        "{flag} {path} is not an absolute path; dockerd and podman run it from another \
         directory, give the full path"
    )]
    NotAbsolute { flag: &'static str, path: PathBuf },
}

/// A program the configuration will point to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub path: PathBuf,
    /// Whether it exists now (it may be installed later: then we only warn).
    pub exists: bool,
}

impl Program {
    /// A warning for the user when the program is not there yet.
    pub fn warning(&self) -> Option<String> {
        (!self.exists).then(|| {
            format!(
                "{} does not exist (yet); containers that need it will fail until it is installed",
                self.path.display()
            )
        })
    }

    pub fn to_str_lossy(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }
}

/// `explicit` (from `flag`) if given; else `name` next to our own executable if it is there
/// (an unpacked release or a cargo build), else /usr/local/bin/`name`.
pub fn locate(
    explicit: Option<&Path>,
    flag: &'static str,
    name: &str,
) -> Result<Program, PathError> {
    let own_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    locate_from(explicit, flag, name, own_dir.as_deref())
}

fn locate_from(
    explicit: Option<&Path>,
    flag: &'static str,
    name: &str,
    own_dir: Option<&Path>,
) -> Result<Program, PathError> {
    let path = match explicit {
        Some(path) if !path.is_absolute() => {
            return Err(PathError::NotAbsolute {
                flag,
                path: path.to_path_buf(),
            })
        }
        Some(path) => path.to_path_buf(),
        None => own_dir
            .map(|dir| dir.join(name))
            .filter(|beside| beside.is_file())
            .unwrap_or_else(|| Path::new(INSTALL_DIR).join(name)),
    };
    let exists = path.is_file();
    Ok(Program { path, exists })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_path_must_be_absolute() {
        let err = locate_from(
            Some(Path::new("bin/weave-runtime")),
            "--runtime-path",
            "x",
            None,
        )
        .unwrap_err();
        assert!(err
            .to_string()
            .starts_with("--runtime-path bin/weave-runtime is not an absolute path"));
    }

    #[test]
    fn explicit_missing_path_is_kept_with_a_warning() {
        let program = locate_from(
            Some(Path::new("/nonexistent/weave-runtime")),
            "--runtime-path",
            "x",
            None,
        )
        .unwrap();
        assert_eq!(program.path, Path::new("/nonexistent/weave-runtime"));
        assert!(program.warning().unwrap().contains("does not exist"));
    }

    #[test]
    fn default_prefers_the_program_beside_us() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("weave-hook"), b"").unwrap();
        let program = locate_from(None, "--hook-path", "weave-hook", Some(dir.path())).unwrap();
        assert_eq!(program.path, dir.path().join("weave-hook"));
        assert!(program.exists);
        assert_eq!(program.warning(), None);

        let program = locate_from(None, "--hook-path", "weave-other", Some(dir.path())).unwrap();
        assert_eq!(program.path, Path::new("/usr/local/bin/weave-other"));
    }
}
