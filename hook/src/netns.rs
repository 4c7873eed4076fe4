//! Network namespaces: identifying them, and running code inside one.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::sched::{setns, CloneFlags};
use weave_core::store::NetnsId;

/// An open network namespace.
pub struct Netns {
    file: File,
}

impl Netns {
    /// Opens a namespace file, such as `/proc/<pid>/ns/net`.
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(Self {
            file: File::open(path)?,
        })
    }

    /// The namespace of the calling thread.
    pub fn current() -> io::Result<Self> {
        Self::open(Path::new("/proc/thread-self/ns/net"))
    }

    /// Namespaces are equal when their nsfs inodes are.
    pub fn same_as(&self, other: &Netns) -> io::Result<bool> {
        let (a, b) = (self.file.metadata()?, other.file.metadata()?);
        Ok(a.dev() == b.dev() && a.ino() == b.ino())
    }

    /// The namespace's identity in weave's store.
    pub fn id(&self) -> io::Result<NetnsId> {
        let meta = self.file.metadata()?;
        Ok(NetnsId {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// Runs `f` with the calling thread inside this namespace, then returns to `home`
    /// whatever `f` returned. Sockets opened inside stay bound to this namespace.
    pub fn run_in<T>(&self, home: &Netns, f: impl FnOnce() -> T) -> io::Result<T> {
        setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        let result = f();
        // Failing to return would leave every later host-side step in the container's
        // namespace: nothing sane can follow, so stop here.
        setns(home.file.as_fd(), CloneFlags::CLONE_NEWNET)
            .expect("cannot return to the host network namespace");
        Ok(result)
    }
}
