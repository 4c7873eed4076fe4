//! Container ids: the one rule every weave program applies before an id becomes a file name
//! under the state directory or an argument of the hook.

use std::fmt;

use thiserror::Error;

/// The kernel's limit on one file name (NAME_MAX).
pub const NAME_MAX: usize = 255;
/// Longest container id weave accepts: the longest file name derived from an id is
/// `<id>.json` / `<id>.conf` (temporary files never carry the id), which must fit in
/// NAME_MAX. runc accepts ids up to NAME_MAX; those of 251 to 255 bytes are refused at
/// attach with [`IdError::TooLong`], and detach of one is a no-op.
pub const MAX_ID_LEN: usize = NAME_MAX - 5;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum IdError {
    #[error("invalid container id {0:?}: it is empty")]
    Empty(String),
    #[error("container id {shown}... is {len} bytes long; weave accepts ids of at most {MAX_ID_LEN} bytes (they name files under the state directory)")]
    TooLong { shown: String, len: usize },
    #[error("invalid container id {0:?}: it would name a directory")]
    Dots(String),
    #[error("invalid container id {0:?}: only letters, digits, '_', '+', '.' and '-' are allowed")]
    BadChar(String),
}

/// A container id that is safe to use as a file name under the state directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId(String);

impl ContainerId {
    /// Accepts runc's ids (`[A-Za-z0-9_+.-]+`) other than `.` and `..`, of at most
    /// [`MAX_ID_LEN`] bytes.
    pub fn parse(id: &str) -> Result<Self, IdError> {
        if id.is_empty() {
            return Err(IdError::Empty(id.to_string()));
        }
        if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'.' | b'-'))
        {
            return Err(IdError::BadChar(shorten(id)));
        }
        if id.len() > MAX_ID_LEN {
            return Err(IdError::TooLong {
                shown: id[..32].to_string(),
                len: id.len(),
            });
        }
        if id == "." || id == ".." {
            return Err(IdError::Dots(id.to_string()));
        }
        Ok(Self(id.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// At most 80 characters of a hostile value in an error message.
fn shorten(text: &str) -> String {
    text.chars().take(80).collect()
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_ids_up_to_the_limit() {
        for ok in ["t1", "a_b+c.d-e", &"f".repeat(64), &"x".repeat(MAX_ID_LEN)] {
            assert_eq!(ContainerId::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refused_ids_say_why() {
        assert!(matches!(ContainerId::parse(""), Err(IdError::Empty(_))));
        assert!(matches!(ContainerId::parse(".."), Err(IdError::Dots(_))));
        assert!(matches!(ContainerId::parse("."), Err(IdError::Dots(_))));
        for bad in ["a/b", "../../etc", "a b", "a\0b", "é"] {
            assert!(
                matches!(ContainerId::parse(bad), Err(IdError::BadChar(_))),
                "{bad:?}"
            );
        }
        for len in [MAX_ID_LEN + 1, NAME_MAX, NAME_MAX + 1, 4096] {
            let err = ContainerId::parse(&"a".repeat(len)).unwrap_err();
            assert!(matches!(err, IdError::TooLong { .. }), "{len}");
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("{len} bytes")) && msg.len() < 200,
                "{msg}"
            );
        }
    }
}
