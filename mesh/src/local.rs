//! The addresses the hook holds on this host: its store's `<state-dir>/addrs/<ip>` files, each
//! holding its owner's container id (weave-core's layout).

use std::collections::BTreeMap;
use std::io;
use std::net::Ipv4Addr;

use weave_core::fsutil;
use weave_core::id::{ContainerId, MAX_ID_LEN};
use weave_core::layout::StateDir;

/// Every address file of the store that names a valid container id (temporary files, torn
/// files and anything else are skipped).
pub fn local_addrs(dir: &StateDir) -> io::Result<BTreeMap<Ipv4Addr, String>> {
    let entries = match std::fs::read_dir(dir.addrs_dir()) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e),
    };
    let mut addrs = BTreeMap::new();
    for entry in entries {
        let entry = entry?;
        let Some(ip) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(text) = fsutil::read_small(&entry.path(), MAX_ID_LEN as u64) else {
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
    }
}
