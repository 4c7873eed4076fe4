//! What `weave-setup docker` added to a daemon.json, kept beside it as
//! `<daemon.json>.weave-state` so that `uninstall docker` removes exactly that.
//!
//! It cannot live inside daemon.json: dockerd refuses to start on keys it does not know.
//!
//! One record per daemon.json, one entry in it per runtime name. When installs with
//! `--set-as-default` nest (weave over runc2, then weave2 over weave), each entry remembers
//! the default it replaced; uninstalling one whose replacement is still installed hands its
//! own remembered default on to that replacement (weave2 now restores runc2), so the chain
//! never leads back to a runtime that is gone.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::atomic::{self, AtomicError};
use crate::daemon_json::{Installed, PreviousDefault};

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

/// Everything weave-setup installed into one daemon.json.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// `runtimes` did not exist and was created for the first install: it goes when it is
    /// empty again, whichever install is undone last.
    #[serde(default)]
    pub created_runtimes: bool,
    /// One entry per installed runtime name, oldest first.
    pub installs: Vec<Install>,
}

/// The install of one runtime name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Install {
    pub runtime: String,
    /// Set when this install changed `default-runtime`: what uninstall puts back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_default: Option<PreviousDefault>,
}

/// The record as versions before one-entry-per-name wrote it: a single install.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SingleInstall {
    runtime: String,
    #[serde(default)]
    created_runtimes: bool,
    #[serde(default)]
    replaced_default: Option<PreviousDefault>,
}

impl From<SingleInstall> for Record {
    fn from(old: SingleInstall) -> Record {
        Record {
            created_runtimes: old.created_runtimes,
            installs: vec![Install {
                runtime: old.runtime,
                replaced_default: old.replaced_default,
            }],
        }
    }
}

impl Record {
    pub fn entry(&self, runtime: &str) -> Option<&Install> {
        self.installs.iter().find(|i| i.runtime == runtime)
    }

    /// Adds what an install of `runtime` changed. A repeated install keeps the default its
    /// first one replaced, so that uninstall still restores the original.
    pub fn note_install(&mut self, runtime: &str, installed: &Installed) {
        self.created_runtimes |= installed.created_runtimes;
        match self.installs.iter_mut().find(|i| i.runtime == runtime) {
            Some(entry) => {
                if entry.replaced_default.is_none() {
                    entry.replaced_default = installed.replaced_default.clone();
                }
            }
            None => self.installs.push(Install {
                runtime: runtime.to_string(),
                replaced_default: installed.replaced_default.clone(),
            }),
        }
    }

    /// Takes `runtime`'s entry out and returns what its uninstall must undo. An install that
    /// replaced `runtime` as the default inherits the default `runtime` had replaced.
    pub fn remove(&mut self, runtime: &str) -> Installed {
        let created_runtimes = self.created_runtimes;
        let Some(index) = self.installs.iter().position(|i| i.runtime == runtime) else {
            return Installed {
                created_runtimes,
                replaced_default: None,
            };
        };
        let removed = self.installs.remove(index);
        if let Some(inherited) = &removed.replaced_default {
            for other in &mut self.installs {
                let Some(replaced) = &mut other.replaced_default else {
                    continue;
                };
                if replaced.previous.as_deref() == Some(runtime) {
                    // A cycle (possible only through hand edits) must not make a runtime
                    // restore itself: then it restores no default at all.
                    replaced.previous = inherited
                        .previous
                        .clone()
                        .filter(|previous| *previous != other.runtime);
                }
            }
        }
        if self.installs.is_empty() {
            self.created_runtimes = false;
        }
        Installed {
            created_runtimes,
            replaced_default: removed.replaced_default,
        }
    }
}

pub fn path_for(config: &Path) -> PathBuf {
    let mut name = config.as_os_str().to_os_string();
    name.push(SUFFIX);
    PathBuf::from(name)
}

/// The record file of one daemon.json as read, so that it can be replaced and put back.
#[derive(Debug)]
pub struct Stored {
    path: PathBuf,
    old: Option<Vec<u8>>,
    record: Record,
}

/// Reads `config`'s record (empty when there is none). Records of earlier versions, which
/// held a single install, are read as a record with one entry.
pub fn load(config: &Path) -> Result<Stored, RecordError> {
    let path = path_for(config);
    let old = atomic::read_optional(&path)?;
    let record = match &old {
        None => Record::default(),
        Some(bytes) => parse(bytes).map_err(|e| RecordError::Invalid(path.clone(), e))?,
    };
    Ok(Stored { path, old, record })
}

fn parse(bytes: &[u8]) -> Result<Record, serde_json::Error> {
    let value: Value = serde_json::from_slice(bytes)?;
    if value.get("installs").is_some() {
        serde_json::from_value(value)
    } else {
        serde_json::from_value::<SingleInstall>(value).map(Record::from)
    }
}

impl Stored {
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// What [`save`](Self::save) would write: `None` removes the file (nothing installed).
    fn render(record: &Record) -> Option<Vec<u8>> {
        if record.installs.is_empty() {
            return None;
        }
        let mut text = serde_json::to_vec_pretty(record).expect("a record always serializes");
        text.push(b'\n');
        Some(text)
    }

    /// Whether saving `record` would change the file.
    pub fn differs(&self, record: &Record) -> bool {
        Self::render(record) != self.old
    }

    /// Fails exactly where [`save`](Self::save) would fail for lack of permission, a
    /// read-only filesystem or a directory in the way; changes nothing.
    pub fn check_save(&self, record: &Record) -> Result<(), RecordError> {
        if self.differs(record) {
            atomic::check_write_new(&self.path)?;
        }
        Ok(())
    }

    /// Writes `record`, or removes the file when it holds no install; touches nothing when
    /// the file already says the same.
    pub fn save(&self, record: &Record) -> Result<(), RecordError> {
        if !self.differs(record) {
            return Ok(());
        }
        self.put(Self::render(record).as_deref())
    }

    /// Puts the file back as it was read (after a later step failed).
    pub fn restore(&self) -> Result<(), RecordError> {
        self.put(self.old.as_deref())
    }

    fn put(&self, contents: Option<&[u8]>) -> Result<(), RecordError> {
        match contents {
            Some(text) => Ok(atomic::write_new(&self.path, text)?),
            None => match std::fs::remove_file(&self.path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(RecordError::Remove(self.path.clone(), e)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replaced(previous: Option<&str>) -> Installed {
        Installed {
            created_runtimes: false,
            replaced_default: Some(PreviousDefault {
                previous: previous.map(str::to_string),
            }),
        }
    }

    fn previous_of(record: &Record, runtime: &str) -> Option<String> {
        record
            .entry(runtime)
            .and_then(|i| i.replaced_default.clone())
            .and_then(|d| d.previous)
    }

    #[test]
    fn saved_record_loads_back_and_saving_again_does_not_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("daemon.json");
        let mut record = Record::default();
        record.note_install(
            "weave",
            &Installed {
                created_runtimes: true,
                ..replaced(Some("runc"))
            },
        );
        record.note_install("weave2", &Installed::default());
        let stored = load(&config).unwrap();
        assert_eq!(stored.record(), &Record::default());
        stored.save(&record).unwrap();
        let stored = load(&config).unwrap();
        assert_eq!(stored.record(), &record);
        assert!(!stored.differs(&record));

        let before = std::fs::metadata(path_for(&config))
            .unwrap()
            .modified()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        stored.save(&record).unwrap();
        let after = std::fs::metadata(path_for(&config))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(before, after);

        stored.save(&Record::default()).unwrap();
        assert!(!path_for(&config).exists());
        stored.restore().unwrap();
        assert_eq!(load(&config).unwrap().record(), &record);
    }

    #[test]
    fn single_install_record_of_earlier_versions_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("daemon.json");
        std::fs::write(
            path_for(&config),
            r#"{"runtime": "weave", "created_runtimes": true, "replaced_default": {"previous": "runc2"}}"#,
        )
        .unwrap();
        let record = load(&config).unwrap().record;
        assert!(record.created_runtimes);
        assert_eq!(record.installs.len(), 1);
        assert_eq!(previous_of(&record, "weave").as_deref(), Some("runc2"));
    }

    #[test]
    fn garbage_record_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("daemon.json");
        for garbage in ["not json", r#"{"installs": 3}"#, r#"{"runtime": 1}"#, "[]"] {
            std::fs::write(path_for(&config), garbage).unwrap();
            let err = load(&config).unwrap_err();
            assert!(err.to_string().contains("weave-state"), "{garbage}: {err}");
        }
    }

    #[test]
    fn a_repeated_install_keeps_the_first_replaced_default() {
        let mut record = Record::default();
        record.note_install("weave", &replaced(Some("runc")));
        record.note_install("weave", &replaced(Some("crun")));
        assert_eq!(previous_of(&record, "weave").as_deref(), Some("runc"));
        assert_eq!(record.installs.len(), 1);
    }

    #[test]
    fn removing_an_install_hands_its_default_to_the_one_that_replaced_it() {
        let mut record = Record::default();
        record.note_install("weave", &replaced(Some("runc2")));
        record.note_install("weave2", &replaced(Some("weave")));
        record.note_install("other", &Installed::default());

        let undo = record.remove("weave");
        assert_eq!(
            undo.replaced_default,
            replaced(Some("runc2")).replaced_default
        );
        assert_eq!(previous_of(&record, "weave2").as_deref(), Some("runc2"));
        assert!(record.entry("weave").is_none());
        assert!(record.entry("other").is_some());
    }

    #[test]
    fn a_cycle_does_not_make_a_runtime_restore_itself() {
        let mut record = Record::default();
        record.note_install("a", &replaced(Some("b")));
        record.note_install("b", &replaced(Some("a")));
        record.remove("a");
        let b = record.entry("b").unwrap();
        assert_eq!(b.replaced_default, Some(PreviousDefault { previous: None }));
    }

    #[test]
    fn created_runtimes_stays_until_the_last_install_is_removed() {
        let mut record = Record::default();
        record.note_install(
            "weave",
            &Installed {
                created_runtimes: true,
                replaced_default: None,
            },
        );
        record.note_install("weave2", &Installed::default());
        assert!(record.remove("weave").created_runtimes);
        assert!(record.created_runtimes);
        assert!(record.remove("weave2").created_runtimes);
        assert_eq!(record, Record::default());
        assert!(!record.remove("weave3").created_runtimes);
    }
}
