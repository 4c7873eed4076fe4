//! Weave DNS across hosts (issue 14): what this host publishes of its weave DNS containers,
//! and how the agent notices their changes. weave-dns never talks to etcd: the agent puts
//! this host's containers under `<prefix>names/<host>/<id>` (with the host's lease) and
//! mirrors the other hosts' into `<state-dir>/mesh/names/<host>.json`, which weave-dns
//! follows by inotify (weave-core's `mesh` module has the layout).

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::time::Duration;

use weave_core::mesh::{started_ms, NamedContainer};
use weave_core::store::{Record, Store};

/// After a change of the records, further changes are awaited this long before publishing:
/// a burst of attaches costs one pass.
pub const SETTLE: Duration = Duration::from_millis(20);

/// The weave DNS container a record describes, while its process lives.
pub fn named(record: &Record) -> Option<NamedContainer> {
    let owner = record.owner?;
    if record.names.is_empty() || !owner.is_alive() {
        return None;
    }
    Some(NamedContainer {
        id: record.id.clone(),
        names: record.names.clone(),
        addrs: record.addrs.iter().map(|net| net.addr()).collect(),
        shared: record.shared,
        started_ms: started_ms(owner)?,
        pid: owner.pid,
    })
}

/// This host's live weave DNS containers, by id, from the hook's records (unreadable records
/// are skipped: the next pass reads them again).
pub fn local_named(state_dir: &Path) -> io::Result<BTreeMap<String, NamedContainer>> {
    let listing = Store::existing(state_dir)
        .records()
        .map_err(|e| io::Error::other(e.to_string()))?;
    Ok(listing
        .records
        .iter()
        .filter_map(named)
        .map(|c| (c.id.clone(), c))
        .collect())
}

/// What to put and what to delete so that etcd holds `local`, given that it holds
/// `published`.
pub fn changes(
    published: &BTreeMap<String, NamedContainer>,
    local: &BTreeMap<String, NamedContainer>,
) -> (Vec<NamedContainer>, Vec<String>) {
    let puts = local
        .values()
        .filter(|c| published.get(&c.id) != Some(c))
        .cloned()
        .collect();
    let deletes = published
        .keys()
        .filter(|id| !local.contains_key(*id))
        .cloned()
        .collect();
    (puts, deletes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weave_core::process::ProcessId;

    fn record(id: &str, names: &[&str], owner: Option<ProcessId>) -> Record {
        serde_json::from_value(serde_json::json!({
            "id": id, "bridge": "weave", "veth": "vethwe0",
            "addrs": ["10.32.0.2/12"], "owner": owner,
            "names": names,
        }))
        .unwrap()
    }

    #[test]
    fn live_named_records_only_are_published() {
        let me = ProcessId::of(std::process::id() as i32).unwrap();
        let dead = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        let c = named(&record("c1", &["web"], Some(me))).unwrap();
        assert_eq!(
            c.addrs,
            ["10.32.0.2".parse::<std::net::Ipv4Addr>().unwrap()]
        );
        assert_eq!((c.pid, c.started_ms), (me.pid, started_ms(me).unwrap()));
        assert!(named(&record("c2", &[], Some(me))).is_none(), "no names");
        assert!(named(&record("c3", &["db"], Some(dead))).is_none(), "dead");
        assert!(named(&record("c4", &["db"], None)).is_none(), "no process");
    }

    #[test]
    fn changes_put_what_differs_and_delete_what_went() {
        let me = ProcessId::of(std::process::id() as i32).unwrap();
        let one = |id: &str, name: &str| named(&record(id, &[name], Some(me))).unwrap();
        let published: BTreeMap<_, _> = [("a", one("a", "x")), ("b", one("b", "y"))]
            .map(|(k, v)| (k.to_string(), v))
            .into();
        let local: BTreeMap<_, _> = [
            ("a", one("a", "x")),
            ("b", one("b", "z")),
            ("c", one("c", "w")),
        ]
        .map(|(k, v)| (k.to_string(), v))
        .into();
        let (puts, deletes) = changes(&published, &local);
        let ids: Vec<&str> = puts.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["b", "c"]);
        assert!(deletes.is_empty());
        let (puts, deletes) = changes(&local, &BTreeMap::new());
        assert!(puts.is_empty());
        assert_eq!(deletes, ["a", "b", "c"]);
    }
}
