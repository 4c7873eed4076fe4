//! weave-runtime's own flags, defined once: `--weave-NAME VALUE` or `--weave-NAME=VALUE`
//! before the runc subcommand, usually from daemon.json `runtimeArgs`. weave-runtime reads
//! them and weave-setup checks the `--runtime-arg` values it writes into `runtimeArgs` with
//! this one definition, so a value one accepts the other accepts.

use std::fmt;
use std::path::PathBuf;

use crate::settings::HookFlag;

/// Prefix of every flag that belongs to weave-runtime rather than to the real runtime.
pub const PREFIX: &str = "--weave-";

/// A flag of weave-runtime (not counting `--weave-help`, which is only a first argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeFlag {
    /// The real runtime: a program name looked up on PATH, or a path.
    Runtime,
    /// weave-hook's absolute path.
    HookPath,
    /// A setting passed on to weave-hook (`--weave-bridge` becomes the hook's `--bridge`).
    Hook(HookFlag),
}

impl RuntimeFlag {
    pub fn all() -> impl Iterator<Item = Self> {
        [Self::Runtime, Self::HookPath]
            .into_iter()
            .chain(HookFlag::ALL.map(Self::Hook))
    }

    /// The name after [`PREFIX`].
    pub fn name(self) -> &'static str {
        match self {
            Self::Runtime => "runtime",
            Self::HookPath => "hook-path",
            Self::Hook(flag) => flag.name(),
        }
    }

    /// The flag whose name (after [`PREFIX`]) is `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::all().find(|f| f.name() == name)
    }

    /// Checks a value as weave-runtime does; hook settings with weave-hook's own validators.
    pub fn check(self, value: &str) -> Result<(), String> {
        match self {
            Self::Runtime => check_runtime(value),
            Self::HookPath => parse_hook_path(value).map(drop),
            Self::Hook(flag) => flag.check(value).map(drop),
        }
    }
}

impl fmt::Display for RuntimeFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.name())
    }
}

/// Every flag, spelled out: for messages that list what is known.
pub fn known() -> String {
    RuntimeFlag::all()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The real runtime: any program name or path, but not an empty one.
pub fn check_runtime(value: &str) -> Result<(), String> {
    match value.is_empty() {
        true => Err("must not be empty".into()),
        false => Ok(()),
    }
}

/// weave-hook's path ends up in the bundle's hooks, which OCI requires to be absolute.
pub fn parse_hook_path(text: &str) -> Result<PathBuf, String> {
    match text.starts_with('/') {
        true => Ok(PathBuf::from(text)),
        false => Err(format!("{text:?} must be an absolute UTF-8 path")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_by_name_and_spelled_out() {
        assert_eq!(RuntimeFlag::all().count(), 2 + HookFlag::ALL.len());
        for f in RuntimeFlag::all() {
            assert_eq!(RuntimeFlag::from_name(f.name()), Some(f));
            assert!(known().contains(&f.to_string()), "{f}");
        }
        assert_eq!(
            RuntimeFlag::from_name("bridge"),
            Some(RuntimeFlag::Hook(HookFlag::Bridge))
        );
        assert_eq!(RuntimeFlag::HookPath.to_string(), "--weave-hook-path");
        assert_eq!(RuntimeFlag::from_name("help"), None);
        assert_eq!(RuntimeFlag::from_name("colour"), None);
    }

    #[test]
    fn values_are_checked_as_weave_runtime_and_weave_hook_check_them() {
        assert!(RuntimeFlag::Runtime.check("runc").is_ok());
        assert!(RuntimeFlag::Runtime.check("").is_err());
        assert!(RuntimeFlag::HookPath
            .check("/usr/local/bin/weave-hook")
            .is_ok());
        assert!(RuntimeFlag::HookPath.check("weave-hook").is_err());
        let range = RuntimeFlag::Hook(HookFlag::IpallocRange);
        assert!(range.check("10.32.0.0/12").is_ok());
        assert!(range.check("10.32.5.0/12").is_err());
        assert!(RuntimeFlag::Hook(HookFlag::LogLevel)
            .check("verbose")
            .is_err());
    }
}
