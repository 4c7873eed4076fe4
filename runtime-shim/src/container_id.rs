//! Container ids become file names (`<state-dir>/resolv/<id>.conf`) and hook input, so they
//! are checked before use: runc's own rule `^[\w+\-.]+$`, minus `.` and `..`, short enough
//! that `<id>.conf` fits in one 255-byte file name.

use std::ffi::OsStr;
use std::fmt;

const MAX_LEN: usize = 250;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid container id {0:?}: use 1-250 characters from A-Z a-z 0-9 _ + - . (not \".\" or \"..\")")]
pub struct InvalidId(pub String);

impl ContainerId {
    pub fn parse(raw: &OsStr) -> Result<Self, InvalidId> {
        let invalid = || InvalidId(raw.to_string_lossy().into_owned());
        let s = raw.to_str().ok_or_else(invalid)?;
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.');
        if s.is_empty() || s.len() > MAX_LEN || s == "." || s == ".." || !s.chars().all(allowed) {
            return Err(invalid());
        }
        Ok(ContainerId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
