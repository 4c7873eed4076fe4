//! The state directory: every path weave's programs keep there, defined once.
//!
//! ```text
//! <state-dir>/lock                    flock(2) held while the store is read or changed
//! <state-dir>/containers/<id>.json    one record per attached container (written atomically)
//! <state-dir>/addrs/<ip>              one file per reserved address, holding its owner's id
//! <state-dir>/released/<id>           addresses a container had at its last detach
//! <state-dir>/netns/<dev>-<ino>       one per shared network namespace: who wired it, who shares it
//! <state-dir>/resolv/<id>.conf        weave-runtime's resolv.conf for a weave DNS container
//! <state-dir>/firewall-<bridge>       what the hook knows of the bridge's firewall rule
//! <state-dir>/firewall.lock           held while iptables runs for the rule
//! <state-dir>/exposed-<bridge>        the host's addresses on the bridge (`weave-hook expose`)
//! <state-dir>/dns.lock                held by the serving weave-dns once its sockets are bound
//! <state-dir>/dns.pid                 its pid, for `weave-hook reset`
//! <state-dir>/dns.log                 its stderr when the hook started it
//! ```
//! Temporary files are `.tmp*` with a random part, in the directory of the file they replace:
//! never `*.json` or `*.conf`, so no reader takes one for a finished file, and never a name
//! a container id or another user can predict.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::id::ContainerId;

/// weave-hook's default state directory (on tmpfs on most hosts, so a reboot clears it).
pub const DEFAULT_STATE_DIR: &str = "/run/weave";
/// Prefix of every temporary file weave writes into the state directory.
pub const TEMP_PREFIX: &str = ".tmp";
/// Suffix of a record file.
pub const RECORD_SUFFIX: &str = ".json";
/// In the announce directory: every address is to be announced (the store held addresses
/// before it tracked which MAC they were held under).
pub const ANNOUNCE_ALL: &str = "all";
/// Suffix of a resolv.conf file.
pub const RESOLV_SUFFIX: &str = ".conf";

/// The name of a bridge's firewall marker, before the bridge's name.
const FIREWALL_MARKER_PREFIX: &str = "firewall-";

/// The paths of one state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The store's lock file.
    pub fn store_lock(&self) -> PathBuf {
        self.root.join("lock")
    }

    pub fn records_dir(&self) -> PathBuf {
        self.root.join("containers")
    }

    pub fn record(&self, id: &ContainerId) -> PathBuf {
        self.records_dir()
            .join(format!("{}{RECORD_SUFFIX}", id.as_str()))
    }

    pub fn addrs_dir(&self) -> PathBuf {
        self.root.join("addrs")
    }

    pub fn addr(&self, ip: Ipv4Addr) -> PathBuf {
        self.addrs_dir().join(ip.to_string())
    }

    pub fn released_dir(&self) -> PathBuf {
        self.root.join("released")
    }

    pub fn released(&self, id: &ContainerId) -> PathBuf {
        self.released_dir().join(id.as_str())
    }

    /// Addresses a neighbour may know under another MAC than the one derived from them
    /// (see [`crate::store::Reserved::announce`]): one empty file per address, and
    /// [`ANNOUNCE_ALL`] when the store is older than this directory.
    pub fn announce_dir(&self) -> PathBuf {
        self.root.join("announce")
    }

    pub fn announce(&self, ip: Ipv4Addr) -> PathBuf {
        self.announce_dir().join(ip.to_string())
    }

    pub fn netns_dir(&self) -> PathBuf {
        self.root.join("netns")
    }

    /// The entry of a network namespace, named by the nsfs device and inode of
    /// `/proc/<pid>/ns/net` (see [`crate::store::NetnsId`]).
    pub fn netns(&self, dev: u64, ino: u64) -> PathBuf {
        self.netns_dir().join(format!("{dev}-{ino}"))
    }

    pub fn resolv_dir(&self) -> PathBuf {
        self.root.join("resolv")
    }

    pub fn resolv(&self, id: &ContainerId) -> PathBuf {
        self.resolv_dir()
            .join(format!("{}{RESOLV_SUFFIX}", id.as_str()))
    }

    pub fn firewall_marker(&self, bridge: &str) -> PathBuf {
        self.root.join(format!("{FIREWALL_MARKER_PREFIX}{bridge}"))
    }

    /// Every bridge's firewall marker in this state directory (none when it cannot be read).
    pub fn firewall_markers(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(FIREWALL_MARKER_PREFIX))
            })
            .map(|e| e.path())
            .collect()
    }

    /// The host's addresses on a bridge (`weave-hook expose`).
    pub fn exposed(&self, bridge: &str) -> PathBuf {
        self.root.join(format!("exposed-{bridge}"))
    }

    /// flock(2)ed while iptables runs for a bridge's rule (never the store's lock).
    pub fn firewall_lock(&self) -> PathBuf {
        self.root.join("firewall.lock")
    }

    pub fn dns_lock(&self) -> PathBuf {
        self.root.join("dns.lock")
    }

    pub fn dns_pid(&self) -> PathBuf {
        self.root.join("dns.pid")
    }

    pub fn dns_log(&self) -> PathBuf {
        self.root.join("dns.log")
    }

    /// The store's directories, created (mode 0700) by [`crate::store::Store::open`].
    pub fn store_dirs(&self) -> [PathBuf; 5] {
        [
            self.root.clone(),
            self.records_dir(),
            self.addrs_dir(),
            self.released_dir(),
            self.netns_dir(),
        ]
    }
}

/// The id a record or resolv.conf file name belongs to; `None` for anything else (temporary
/// files among them).
pub fn id_of_file(name: &str, suffix: &str) -> Option<ContainerId> {
    let stem = name.strip_suffix(suffix)?;
    ContainerId::parse(stem).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_derived_name_fits_in_one_file_name() {
        let id = ContainerId::parse(&"a".repeat(crate::id::MAX_ID_LEN)).unwrap();
        let dir = StateDir::new("/run/weave");
        for path in [dir.record(&id), dir.released(&id), dir.resolv(&id)] {
            let name = path.file_name().unwrap().len();
            assert!(
                name <= crate::id::NAME_MAX,
                "{} is {name} bytes",
                path.display()
            );
        }
    }

    #[test]
    fn temp_files_are_never_taken_for_records() {
        assert!(id_of_file(".tmpAbC123", RECORD_SUFFIX).is_none());
        assert_eq!(
            id_of_file("c1.json", RECORD_SUFFIX).map(|i| i.as_str().to_string()),
            Some("c1".to_string())
        );
    }
}
