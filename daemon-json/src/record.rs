//! What `weave-setup docker` added to a daemon.json, kept beside it as
//! `<daemon.json>.weave-state` so that `uninstall docker` removes exactly that.
//!
//! It cannot live inside daemon.json: dockerd refuses to start on keys it does not know.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::atomic::{self, AtomicError};
use crate::daemon_json::Installed;

const SUFFIX: &str = ".weave-state";

#[derive(Debug, Error)]
pub enum RecordError {
    #[error("{0} is not a weave-setup record ({1}); remove it if you no longer need it")]
    Invalid(PathBuf, #[source] serde_json::Error),
    #[error(transparent)]
    File(#[from] AtomicError),
    #[error("cannot remove {0}: {1}")]
    Remove(PathBuf, #[source] io::Error),
}

/// The record of one install.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The runtime name the record is about.
    pub runtime: String,
    #[serde(flatten)]
    pub installed: Installed,
}

pub fn path_for(config: &Path) -> PathBuf {
    let mut name = config.as_os_str().to_os_string();
    name.push(SUFFIX);
    PathBuf::from(name)
}

/// The record of `config`'s install of `runtime`, if there is one.
pub fn load(config: &Path, runtime: &str) -> Result<Option<Record>, RecordError> {
    let path = path_for(config);
    let Some(bytes) = atomic::read_optional(&path)? else {
        return Ok(None);
    };
    let record: Record =
        serde_json::from_slice(&bytes).map_err(|e| RecordError::Invalid(path, e))?;
    Ok((record.runtime == runtime).then_some(record))
}

/// Writes `record` unless the file already says the same (a second install touches nothing).
pub fn save(config: &Path, record: &Record) -> Result<(), RecordError> {
    let path = path_for(config);
    let mut text = serde_json::to_vec_pretty(record).expect("a record always serializes");
    text.push(b'\n');
    if atomic::read_optional(&path)?.as_deref() == Some(text.as_slice()) {
        return Ok(());
    }
    atomic::write_file(&path, &text, None)?;
    Ok(())
}

pub fn delete(config: &Path) -> Result<(), RecordError> {
    let path = path_for(config);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RecordError::Remove(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon_json::PreviousDefault;

    #[test]
    fn saved_record_loads_back_and_saving_again_does_not_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("daemon.json");
        let record = Record {
            runtime: "weave".into(),
            installed: Installed {
                created_runtimes: true,
                replaced_default: Some(PreviousDefault {
                    previous: Some("runc".into()),
                }),
            },
        };
        save(&config, &record).unwrap();
        assert_eq!(load(&config, "weave").unwrap(), Some(record.clone()));
        assert_eq!(load(&config, "other").unwrap(), None);

        let before = std::fs::metadata(path_for(&config))
            .unwrap()
            .modified()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        save(&config, &record).unwrap();
        let after = std::fs::metadata(path_for(&config))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(before, after);

        delete(&config).unwrap();
        delete(&config).unwrap();
        assert_eq!(load(&config, "weave").unwrap(), None);
    }

    #[test]
    fn garbage_record_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("daemon.json");
        std::fs::write(path_for(&config), b"not json").unwrap();
        let err = load(&config, "weave").unwrap_err();
        assert!(err.to_string().contains("weave-state"), "{err}");
    }
}
