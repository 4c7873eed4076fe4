//! Keeping the name table current: inotify on the records directory, a full re-read of the
//! records on every change (atomic renames in, deletions out). Without inotify, a re-read
//! every second.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use inotify::{EventMask, Inotify, WatchMask};
use weave_core::store::Store;

use crate::records::{Names, Table};

/// Re-read period when inotify is not available.
const POLL: Duration = Duration::from_secs(1);
/// Pause before watching again after the directory went away.
const REWATCH: Duration = Duration::from_millis(100);

/// Reads the records into `names` now, and again whenever they change. Never returns.
pub async fn follow(state_dir: PathBuf, names: Names) {
    let mut reported = HashSet::new();
    loop {
        let store = match Store::open(&state_dir) {
            Ok(store) => store,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the state directory; retrying");
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        let dir = store.records_dir();
        match watch(&dir) {
            Ok(inotify) => {
                reload(&store, &names, &mut reported);
                follow_events(inotify, &store, &names, &mut reported).await;
                tokio::time::sleep(REWATCH).await;
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch; re-reading every second");
                reload(&store, &names, &mut reported);
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

fn watch(dir: &Path) -> std::io::Result<Inotify> {
    let inotify = Inotify::init()?;
    inotify.watches().add(
        dir,
        WatchMask::MOVED_TO
            | WatchMask::MOVED_FROM
            | WatchMask::CLOSE_WRITE
            | WatchMask::DELETE
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF,
    )?;
    Ok(inotify)
}

/// Re-reads on every change to a record; returns when the directory itself goes away.
async fn follow_events(
    inotify: Inotify,
    store: &Store,
    names: &Names,
    reported: &mut HashSet<String>,
) {
    let mut events = match inotify.into_event_stream(vec![0u8; 4096]) {
        Ok(events) => events,
        Err(e) => {
            tracing::warn!(error = %e, "inotify stream");
            return;
        }
    };
    while let Some(event) = events.next().await {
        let Ok(event) = event else {
            return;
        };
        if event
            .mask
            .intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::IGNORED)
        {
            return;
        }
        // Temp files of the store's atomic writes do not end in .json; an overflow may
        // have lost any change.
        let record = event
            .name
            .as_ref()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(".json"));
        if record || event.mask.contains(EventMask::Q_OVERFLOW) {
            reload(store, names, reported);
        }
    }
}

fn reload(store: &Store, names: &Names, reported: &mut HashSet<String>) {
    match Table::load(store) {
        Ok((table, unreadable)) => {
            tracing::debug!(names = table.len(), "records read");
            names.replace(table);
            // Said once per bad file, not at every re-read.
            let now: HashSet<String> = unreadable.iter().map(ToString::to_string).collect();
            for error in now.difference(reported) {
                tracing::warn!(%error, "record left out");
            }
            *reported = now;
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the records; keeping the names known"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::tests::{me, record};
    use std::time::Instant;

    async fn eventually(what: &str, f: impl Fn() -> bool) -> Duration {
        let start = Instant::now();
        while !f() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{what} not seen in 5 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        start.elapsed()
    }

    #[tokio::test]
    async fn new_and_removed_records_are_seen_without_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let names = Names::new(Table::empty());
        let task = tokio::spawn(follow(dir.path().to_path_buf(), names.clone()));
        // Written as the hook writes: a temp file renamed into place.
        let r = record("a", &["10.32.0.2/12"], &["web"], me());
        let tmp = store.records_dir().join("a.tmp1");
        // Give the watch time to be set up before the first change.
        tokio::time::sleep(Duration::from_millis(100)).await;
        std::fs::write(&tmp, serde_json::to_string(&r).unwrap()).unwrap();
        std::fs::rename(&tmp, store.records_dir().join("a.json")).unwrap();
        eventually("new record", || {
            !names.current().addresses("web").is_empty()
        })
        .await;
        std::fs::remove_file(store.records_dir().join("a.json")).unwrap();
        let gone = eventually("removal", || names.current().addresses("web").is_empty()).await;
        assert!(gone < Duration::from_secs(1), "{gone:?}");
        task.abort();
    }
}
