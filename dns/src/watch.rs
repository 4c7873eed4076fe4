//! Keeping the name table current, on a thread of its own (blocking inotify), never on the
//! async workers that answer queries.
//!
//! An inotify event names the record file that changed: that one file is read again, or its
//! names taken out when it is gone (atomic renames in, deletions and renames out). The whole
//! directory is read only at start, after an event queue overflow (changes were lost), and
//! after watching again (the directory went away). Without inotify, a full re-read every
//! second.

use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::thread;
use std::time::Duration;

use thiserror::Error;
use weave_core::store::{Store, StoreError};
use weave_core::watch::{follow, DirWatch, Follower};

use crate::records::{read_record, record_key, Names, Table};

#[derive(Debug, Error)]
pub enum WatchError {
    #[error("read the records")]
    Records(#[source] StoreError),
    #[error("start the thread that follows the records")]
    Thread(#[source] io::Error),
}

/// Reads every record into `names` now (an error here is the caller's), then follows their
/// changes on a thread of its own, for as long as the process runs.
pub fn start(store: Store, names: Names) -> Result<(), WatchError> {
    // Watched before the first read, so that no change falls between the two.
    let watch = watch_or_warn(&store.records_dir());
    let (table, unreadable) = Table::load(&store).map_err(WatchError::Records)?;
    warn_unreadable(&unreadable);
    names.replace(table);
    thread::Builder::new()
        .name("records".into())
        .spawn(move || follow(watch, &mut Records { store, names }))
        .map_err(WatchError::Thread)?;
    Ok(())
}

/// The records directory, followed into the name table.
struct Records {
    store: Store,
    names: Names,
}

impl Follower for Records {
    /// Without inotify, a full re-read every second.
    const LOOK_AGAIN: Duration = Duration::from_secs(1);
    /// Lets the directory's removal end before it is made again.
    const REWATCH_PAUSE: Duration = Duration::from_millis(100);

    fn rewatch(&mut self) -> Option<DirWatch> {
        // The directory may have gone away (`weave-hook reset`): make it again.
        match Store::open(self.store.root()) {
            Ok(reopened) => self.store = reopened,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the state directory; retrying");
                return None;
            }
        }
        let watch = watch_or_warn(&self.store.records_dir());
        reload(&self.store, &self.names);
        watch
    }

    fn reload(&mut self) {
        reload(&self.store, &self.names);
    }

    fn changed(&mut self, file_name: &OsStr) {
        apply(&self.store.records_dir(), file_name, &self.names);
    }
}

fn watch_or_warn(dir: &Path) -> Option<DirWatch> {
    DirWatch::new(dir)
        .inspect_err(|e| {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch; re-reading every second")
        })
        .ok()
}

/// Reads one record file again (it changed, or went away) and applies just that.
fn apply(dir: &Path, file_name: &OsStr, names: &Names) {
    // Temp files of the store's atomic writes do not end in .json.
    let Some(key) = file_name.to_str().and_then(record_key) else {
        return;
    };
    match read_record(&dir.join(file_name)) {
        Ok(record) => names.apply(&key, record.as_ref()),
        Err(error) => {
            tracing::warn!(%error, "record left out");
            names.apply(&key, None);
        }
    }
}

fn reload(store: &Store, names: &Names) {
    match Table::load(store) {
        Ok((table, unreadable)) => {
            tracing::debug!(names = table.len(), "records read");
            warn_unreadable(&unreadable);
            names.replace(table);
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the records; keeping the names known"),
    }
}

fn warn_unreadable(unreadable: &[StoreError]) {
    for error in unreadable {
        tracing::warn!(%error, "record left out");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::tests::{me, record};
    use std::fs;
    use std::io::Write;
    use std::net::Ipv4Addr;
    use std::path::PathBuf;
    use std::time::Instant;
    use weave_core::store::Record;

    /// A state directory followed by a watcher thread (which outlives the test harmlessly:
    /// it only reads the temp directory).
    struct Followed {
        _tmp: tempfile::TempDir,
        records: PathBuf,
        names: Names,
    }

    fn followed(initial: &[Record]) -> Followed {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let records = store.records_dir();
        for r in initial {
            write_in_place(&records.join(format!("{}.json", r.id)), r);
        }
        let names = Names::new(Table::empty());
        start(store, names.clone()).unwrap();
        Followed {
            _tmp: tmp,
            records,
            names,
        }
    }

    impl Followed {
        /// As the hook writes: a temp file renamed into place.
        fn put(&self, r: &Record) {
            let tmp = self.records.join(format!("{}.tmp1", r.id));
            fs::write(&tmp, serde_json::to_vec(r).unwrap()).unwrap();
            fs::rename(&tmp, self.records.join(format!("{}.json", r.id))).unwrap();
        }

        fn path(&self, id: &str) -> PathBuf {
            self.records.join(format!("{id}.json"))
        }

        fn resolves(&self, name: &str) -> Vec<Ipv4Addr> {
            self.names.current().addresses(name)
        }

        fn eventually(&self, what: &str, f: impl Fn(&Self) -> bool) {
            let start = Instant::now();
            while !f(self) {
                assert!(
                    start.elapsed() < Duration::from_secs(5),
                    "{what} not seen in 5 s"
                );
                thread::sleep(Duration::from_millis(2));
            }
        }
    }

    fn write_in_place(path: &Path, r: &Record) {
        fs::write(path, serde_json::to_vec(r).unwrap()).unwrap();
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn each_kind_of_change_is_applied() {
        let f = followed(&[record("old", &["10.32.0.9/12"], &["old"], me())]);
        assert_eq!(f.resolves("old"), [ip("10.32.0.9")], "read at start");
        f.put(&record("a", &["10.32.0.2/12"], &["web"], me()));
        f.eventually("a new record", |f| f.resolves("web") == [ip("10.32.0.2")]);
        // Replaced by a rename over it: the old names go, the new ones come.
        f.put(&record("a", &["10.32.0.3/12"], &["api"], me()));
        f.eventually("a replaced record", |f| {
            f.resolves("web").is_empty() && f.resolves("api") == [ip("10.32.0.3")]
        });
        // Rewritten in place (a hand edit): a close after writing.
        write_in_place(
            &f.path("a"),
            &record("a", &["10.32.0.4/12"], &["api"], me()),
        );
        f.eventually("an edit in place", |f| {
            f.resolves("api") == [ip("10.32.0.4")]
        });
        // Renamed away, then deleted.
        fs::rename(f.path("a"), f.records.join("a.json.bak")).unwrap();
        f.eventually("a renamed-away record", |f| f.resolves("api").is_empty());
        fs::remove_file(f.path("old")).unwrap();
        f.eventually("a deleted record", |f| f.resolves("old").is_empty());
        // A record that turns corrupt takes its names out; the others stay.
        f.put(&record("b", &["10.32.0.5/12"], &["db"], me()));
        f.put(&record("c", &["10.32.0.6/12"], &["cache"], me()));
        f.eventually("two records", |f| !f.resolves("cache").is_empty());
        fs::write(f.path("b"), "{").unwrap();
        f.eventually("a corrupt record", |f| f.resolves("db").is_empty());
        assert_eq!(f.resolves("cache"), [ip("10.32.0.6")]);
    }

    /// Changes an unrelated record's content without any event in the records directory
    /// (through a hard link outside it): a watcher that re-reads every record on every
    /// event would see it; one that applies only the changed file does not.
    fn change_behind_the_watchers_back(f: &Followed, id: &str, content: &[u8]) -> PathBuf {
        let link = f.records.parent().unwrap().join(format!("link-{id}"));
        fs::hard_link(f.path(id), &link).unwrap();
        let mut file = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&link)
            .unwrap();
        file.write_all(content).unwrap();
        link
    }

    #[test]
    fn an_event_reads_only_the_record_it_names() {
        let f = followed(&[record("other", &["10.32.0.7/12"], &["other"], me())]);
        change_behind_the_watchers_back(&f, "other", b"{ corrupt");
        f.put(&record("a", &["10.32.0.2/12"], &["web"], me()));
        f.eventually("the new record", |f| !f.resolves("web").is_empty());
        assert_eq!(
            f.resolves("other"),
            [ip("10.32.0.7")],
            "an unrelated record was read again"
        );
        f.put(&record("a", &["10.32.0.2/12"], &["web2"], me()));
        fs::remove_file(f.path("a")).unwrap();
        f.eventually("the removal", |f| {
            f.resolves("web").is_empty() && f.resolves("web2").is_empty()
        });
        assert_eq!(f.resolves("other"), [ip("10.32.0.7")]);
    }

    /// The kernel's queue overflows while the watcher is held up (the test holds the table's
    /// write lock): the changes whose events were lost are found by a full re-read.
    #[test]
    fn an_overflowing_event_queue_means_a_full_reread() {
        let f = followed(&[record("other", &["10.32.0.7/12"], &["other"], me())]);
        let queue: usize = fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let held = f.names.write();
        f.put(&record("first", &["10.32.0.2/12"], &["first"], me()));
        // Let the watcher take that event and block on the lock.
        thread::sleep(Duration::from_millis(300));
        for i in 0..queue + 100 {
            // Distinct names: the kernel merges identical consecutive events.
            let path = f.records.join(format!("noise{i}.tmp"));
            fs::write(&path, b"").unwrap();
        }
        f.put(&record("lost", &["10.32.0.3/12"], &["lost"], me()));
        change_behind_the_watchers_back(
            &f,
            "other",
            &serde_json::to_vec(&record("other", &["10.32.0.8/12"], &["other"], me())).unwrap(),
        );
        drop(held);
        f.eventually("the record whose event was lost", |f| {
            !f.resolves("lost").is_empty()
        });
        // Only a full re-read can have seen this change.
        assert_eq!(f.resolves("other"), [ip("10.32.0.8")]);
        assert_eq!(f.resolves("first"), [ip("10.32.0.2")]);
        for i in 0..queue + 100 {
            let _ = fs::remove_file(f.records.join(format!("noise{i}.tmp")));
        }
    }

    #[test]
    fn a_removed_directory_is_watched_again_and_read_in_full() {
        let f = followed(&[record("a", &["10.32.0.2/12"], &["web"], me())]);
        fs::remove_dir_all(&f.records).unwrap();
        // Made again by the watcher; then written before and after the new watch.
        f.eventually("the directory made again", |f| f.records.is_dir());
        f.put(&record("b", &["10.32.0.3/12"], &["db"], me()));
        f.eventually("a record in the new directory", |f| {
            f.resolves("db") == [ip("10.32.0.3")]
        });
        assert!(f.resolves("web").is_empty());
    }
}
