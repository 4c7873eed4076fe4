//! The addresses the hook holds on this host: its store's `<state-dir>/addrs/<ip>` files, each
//! holding its owner's container id (weave-core's layout).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;

use weave_core::fsutil;
use weave_core::id::{ContainerId, MAX_ID_LEN};
use weave_core::layout::StateDir;
use weave_core::store::Store;

/// Every address file of the store that names a valid container id (temporary files, torn
/// files and anything else are skipped).
pub fn local_addrs(dir: &StateDir) -> io::Result<BTreeMap<Ipv4Addr, String>> {
    let mut addrs = BTreeMap::new();
    for (ip, path) in address_files(dir)? {
        let Ok(text) = fsutil::read_small(&path, MAX_ID_LEN as u64) else {
            continue;
        };
        let id = std::str::from_utf8(&text)
            .ok()
            .and_then(|t| ContainerId::parse(t.trim()).ok());
        if let Some(id) = id {
            addrs.insert(ip, id.as_str().to_string());
        }
    }
    Ok(addrs)
}

/// The addresses that keep their block this host's: every address file of the store,
/// whatever it holds (a torn one is still a claim), and the host's exposed addresses on
/// `bridge` (`weave-hook expose`).
pub fn held_addrs(dir: &StateDir, bridge: &str) -> io::Result<BTreeSet<Ipv4Addr>> {
    let mut held: BTreeSet<Ipv4Addr> = address_files(dir)?.into_keys().collect();
    let store = Store::existing(dir.root());
    held.extend(store.exposed(bridge).iter().map(Ipv4Net::addr));
    Ok(held)
}

/// The store's files named by an address.
fn address_files(dir: &StateDir) -> io::Result<BTreeMap<Ipv4Addr, PathBuf>> {
    let entries = match std::fs::read_dir(dir.addrs_dir()) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e),
    };
    let mut files = BTreeMap::new();
    for entry in entries {
        let entry = entry?;
        if let Some(ip) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
            files.insert(ip, entry.path());
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_files_are_read_and_others_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path());
        assert!(local_addrs(&dir).unwrap().is_empty());
        std::fs::create_dir(dir.addrs_dir()).unwrap();
        std::fs::write(dir.addr("10.32.0.5".parse().unwrap()), "c1").unwrap();
        std::fs::write(dir.addrs_dir().join(".tmpabc"), "c2").unwrap();
        std::fs::write(dir.addr("10.32.0.6".parse().unwrap()), "bad/id").unwrap();
        let addrs = local_addrs(&dir).unwrap();
        assert_eq!(addrs.len(), 1);
        assert_eq!(addrs[&"10.32.0.5".parse::<Ipv4Addr>().unwrap()], "c1");
        // What keeps a block counts the torn file too, not the temporary one.
        let held: Vec<String> = held_addrs(&dir, "weave")
            .unwrap()
            .iter()
            .map(|ip| ip.to_string())
            .collect();
        assert_eq!(held, ["10.32.0.5", "10.32.0.6"]);
    }
}
