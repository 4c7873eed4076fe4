//! Following a directory by inotify, the one way weave's daemons do it (weave-dns its records
//! and the mesh's names, the mesh agent the records): every way a file comes, changes or goes
//! is an event naming it; a lost event (the kernel's queue overflowed) means reading everything
//! again; the directory going away (`weave-hook reset`) ends the watch, and it is watched again.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use inotify::{EventMask, Inotify, WatchMask};

/// Room for a few hundred events per read (each is 16 bytes and its name).
const EVENT_BUFFER: usize = 64 * 1024;

/// An inotify watch of one directory.
pub struct DirWatch {
    inotify: Inotify,
    dir: PathBuf,
    buffer: Vec<u8>,
}

/// The watch is over: the directory went away, or inotify failed (said in a warning).
#[derive(Debug)]
pub struct Ended;

enum Event<'a> {
    Changed(&'a OsStr),
    Overflow,
}

impl DirWatch {
    /// Watches `dir` for every way a file in it comes (written, renamed in), changes (written
    /// in place) or goes (deleted, renamed out), and for the directory itself going away.
    pub fn new(dir: &Path) -> io::Result<Self> {
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
        Ok(DirWatch {
            inotify,
            dir: dir.to_path_buf(),
            buffer: vec![0u8; EVENT_BUFFER],
        })
    }

    /// Waits for events and hands each over, up to the end of the watch.
    fn wait(&mut self, mut each: impl FnMut(Event<'_>)) -> Result<(), Ended> {
        let events = loop {
            match self.inotify.read_events_blocking(&mut self.buffer) {
                Ok(events) => break events,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "inotify");
                    return Err(Ended);
                }
            }
        };
        for event in events {
            if event
                .mask
                .intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::IGNORED)
            {
                return Err(Ended);
            }
            if event.mask.contains(EventMask::Q_OVERFLOW) {
                tracing::info!(dir = %self.dir.display(), "inotify queue overflow; reading everything again");
                each(Event::Overflow);
            } else if let Some(name) = event.name {
                each(Event::Changed(name));
            }
        }
        Ok(())
    }

    /// Drops the events already queued, without waiting: for a follower that reads everything
    /// after a burst anyway.
    pub fn discard_queued(&mut self) {
        let _ = self.inotify.read_events(&mut self.buffer);
    }
}

/// What [`follow`] keeps current from a directory.
pub trait Follower {
    /// The pause after a watch ended before watching again.
    const REWATCH_PAUSE: Duration = Duration::ZERO;
    /// How long to wait before trying again when the directory could not be watched.
    const LOOK_AGAIN: Duration = Duration::from_secs(1);

    /// Watches the directory again (making it again, if it is this follower's to make), then
    /// reads everything in it: whatever changed meanwhile. `None`: not watched now.
    fn rewatch(&mut self) -> Option<DirWatch>;
    /// Events were lost: everything is to be read again.
    fn reload(&mut self);
    /// The file of this name in the directory came, changed or went.
    fn changed(&mut self, file_name: &OsStr);
    /// After each batch of events was handed over.
    fn settle(&mut self, _watch: &mut DirWatch) {}
    /// Whether to stop following (looked at after each batch and before each new watch).
    fn stopped(&self) -> bool {
        false
    }
}

/// Follows the directory with `watch` (`None`: not watched yet) for as long as the follower is
/// not stopped, watching it again whenever a watch ends.
pub fn follow<F: Follower>(mut watch: Option<DirWatch>, follower: &mut F) {
    while !follower.stopped() {
        match watch.take() {
            Some(mut w) => {
                while w
                    .wait(|event| match event {
                        Event::Changed(name) => follower.changed(name),
                        Event::Overflow => follower.reload(),
                    })
                    .is_ok()
                {
                    if follower.stopped() {
                        return;
                    }
                    follower.settle(&mut w);
                }
                thread::sleep(F::REWATCH_PAUSE);
            }
            None => thread::sleep(F::LOOK_AGAIN),
        }
        watch = follower.rewatch();
    }
}
