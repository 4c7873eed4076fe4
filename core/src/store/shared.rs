//! Shared network namespaces (pods, `--network container:X`): the weave network belongs to
//! the namespace. The first attached container of a namespace wires it (its veth, its
//! addresses: the address files name it); later ones asking for the same addresses join,
//! with a record that lists the same interface and addresses and names the wiring container
//! in `netns.shares`. The namespace's entry (`<state-dir>/netns/<dev>-<ino>`) names the
//! wiring container and the members. When the wiring container goes while a member lives,
//! the member takes its place (the address files are rewritten to name it); the last one
//! to go releases everything. An entry is trusted only while its interface exists or its
//! wiring container lives: the inode of a freed namespace can be reused.

use std::fs;
use std::io;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::{io_err, Facts, Holder, Record, Reserved, Store, StoreError, MAX_RECORD_BYTES};
use crate::cidr::AddrRequest;
use crate::fsutil;
use crate::id::ContainerId;

/// A network namespace: the nsfs device and inode of `/proc/<pid>/ns/net`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NetnsId {
    pub dev: u64,
    pub ino: u64,
}

/// A record's namespace, and the container whose interface it shares there (`None` for the
/// container that wired it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetnsLink {
    pub id: NetnsId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shares: Option<String>,
}

/// The entry of a namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    /// The container whose record the address files name.
    wirer: String,
    /// The other attached containers of the namespace.
    members: Vec<String>,
    /// The wiring container's attach finished: its interface is there to share.
    wired: bool,
}

impl Entry {
    fn ids(&self) -> impl Iterator<Item = ContainerId> + '_ {
        std::iter::once(&self.wirer)
            .chain(&self.members)
            .filter_map(|id| ContainerId::parse(id).ok())
    }

    fn lists(&self, id: &ContainerId) -> bool {
        self.wirer == id.as_str() || self.members.iter().any(|m| m == id.as_str())
    }
}

/// What settling a namespace released.
#[derive(Debug, Default)]
pub(super) struct Settled {
    /// The record whose interface is to be deleted: everyone of the namespace is gone.
    pub interface: Option<Record>,
    /// Records removed whose interface lives on (or that are `interface`'s companions).
    pub departed: Vec<Record>,
}

impl Store {
    /// Under the lock: when `holder`'s namespace was wired by another live (or still wired)
    /// container, records `holder` as a member sharing that interface, if it asks for the
    /// same addresses. `None` when `holder` is the one to wire it.
    pub(super) fn join_netns(
        &self,
        holder: &Holder,
        requests: &[AddrRequest],
        default_range: Ipv4Net,
        facts: &Facts,
    ) -> Result<Option<Reserved>, StoreError> {
        let Some(key) = holder.netns else {
            return Ok(None);
        };
        let Some(mut entry) = self.read_netns(key) else {
            return Ok(None);
        };
        let Ok(wirer_id) = ContainerId::parse(&entry.wirer) else {
            return Ok(None);
        };
        if wirer_id == *holder.id {
            return Ok(None);
        }
        let wirer = match self.read_record(&wirer_id) {
            Ok(Some(r)) if r.netns.as_ref().is_some_and(|l| l.id == key) => r,
            _ => return Ok(None),
        };
        if !entry.wired {
            return match wirer.is_alive() {
                true => Err(StoreError::NetnsBeingWired {
                    wirer: wirer.id.clone(),
                }),
                // Its attach was killed: this one wires the namespace anew.
                false => Ok(None),
            };
        }
        if !(wirer.is_alive() || (facts.interface_exists)(&wirer)) {
            // The namespace that entry was about is gone; its inode is this one's now.
            return Ok(None);
        }
        if !same_request(&wirer.addrs, requests, default_range) {
            return Err(StoreError::SharedNetnsConflict {
                has: describe(&wirer.addrs),
                wirer: wirer.id,
            });
        }
        // Addresses an earlier run of this id held alone are not its now.
        if let Ok(Some(stale)) = self.read_record(holder.id) {
            for net in &stale.addrs {
                self.release_addr(net.addr(), holder.id);
            }
        }
        let record = Record {
            id: holder.id.as_str().to_string(),
            owner: holder.owner,
            names: holder.names.to_vec(),
            shared: holder.shared,
            netns: Some(NetnsLink {
                id: key,
                shares: Some(wirer.id.clone()),
            }),
            ..wirer
        };
        self.write_record(&record)?;
        if !entry.lists(holder.id) {
            entry.members.push(record.id.clone());
        }
        if let Err(e) = self.write_netns(key, &entry) {
            let _ = fs::remove_file(self.dir.record(holder.id));
            return Err(e);
        }
        Ok(Some(Reserved {
            record,
            previous: None,
            joined: true,
            // No new interface: nothing to announce.
            announce: false,
        }))
    }

    /// Under the lock, after `record` (a wiring container's) was written: its namespace's
    /// entry, not yet wired. A restarted wiring container keeps its members.
    pub(super) fn begin_netns(&self, record: &Record) -> Result<(), StoreError> {
        let Some(link) = &record.netns else {
            return Ok(());
        };
        let members = self
            .read_netns(link.id)
            .filter(|e| e.wirer == record.id)
            .map(|e| e.members)
            .unwrap_or_default();
        let entry = Entry {
            wirer: record.id.clone(),
            members,
            wired: false,
        };
        self.write_netns(link.id, &entry)
    }

    /// The wiring container's attach finished: members may join.
    pub fn netns_wired(&self, id: &ContainerId, key: NetnsId) -> Result<(), StoreError> {
        let _lock = self.lock()?;
        match self.read_netns(key) {
            Some(mut entry) if entry.wirer == id.as_str() && !entry.wired => {
                entry.wired = true;
                self.write_netns(key, &entry)
            }
            _ => Ok(()),
        }
    }

    /// A container leaves (its detach, or the undo of its attach): its record goes. Returns
    /// the record whose interface is to be deleted, when it was the last of its namespace
    /// (or had it alone); while another container of the namespace lives, the interface,
    /// its addresses and its guard stay, and a leaving wiring container hands its role over.
    pub fn leave(&self, id: &ContainerId) -> Result<Option<Record>, StoreError> {
        let _lock = self.lock()?;
        let Some(record) = self.read_record(id)? else {
            return Ok(None);
        };
        let Some(link) = record.netns.clone() else {
            return self.release_locked(id);
        };
        match self.read_netns(link.id) {
            Some(entry) if entry.lists(id) => Ok(self.settle(link.id, &entry, Some(id))?.interface),
            // Its namespace was settled without it: a member's interface is not its own.
            _ => Ok(self.release_locked(id)?.filter(|_| link.shares.is_none())),
        }
    }

    /// Under the lock, for `collect_garbage`: a dead record of a namespace.
    pub(super) fn settle_dead(&self, record: &Record) -> Result<Settled, StoreError> {
        let Ok(id) = ContainerId::parse(&record.id) else {
            return Ok(Settled::default());
        };
        let link = record.netns.as_ref().expect("only records of a namespace");
        match self.read_netns(link.id) {
            Some(entry) if entry.lists(&id) => self.settle(link.id, &entry, None),
            _ => {
                let released = self.release_locked(&id)?;
                Ok(match link.shares {
                    None => Settled {
                        interface: released,
                        departed: Vec::new(),
                    },
                    Some(_) => Settled {
                        interface: None,
                        departed: released.into_iter().collect(),
                    },
                })
            }
        }
    }

    /// Puts a namespace's records in order: the dead ones (and `leaving`) go; if someone
    /// lives, a live container holds the interface (taking over from a wiring container
    /// that left); if no one does, everything is released.
    fn settle(
        &self,
        key: NetnsId,
        entry: &Entry,
        leaving: Option<&ContainerId>,
    ) -> Result<Settled, StoreError> {
        let records: Vec<Record> = entry
            .ids()
            .filter_map(|id| self.read_record(&id).ok().flatten())
            .filter(|r| r.netns.as_ref().is_some_and(|l| l.id == key))
            .collect();
        let (alive, dead): (Vec<Record>, Vec<Record>) = records
            .into_iter()
            .partition(|r| leaving.is_none_or(|l| l.as_str() != r.id) && r.is_alive());
        let mut settled = Settled::default();
        let Some(first) = alive.first() else {
            let path = self.netns_path(key);
            fs::remove_file(&path)
                .or_else(|e| match e.kind() {
                    io::ErrorKind::NotFound => Ok(()),
                    _ => Err(e),
                })
                .map_err(io_err("remove", &path))?;
            for record in dead {
                let Ok(id) = ContainerId::parse(&record.id) else {
                    continue;
                };
                if let Some(released) = self.release_locked(&id)? {
                    match record.id == entry.wirer && settled.interface.is_none() {
                        true => settled.interface = Some(released),
                        false => settled.departed.push(released),
                    }
                }
            }
            if settled.interface.is_none() && !settled.departed.is_empty() {
                settled.interface = Some(settled.departed.remove(0));
            }
            return Ok(settled);
        };
        let wirer = match alive.iter().find(|r| r.id == entry.wirer) {
            Some(w) => w.clone(),
            None => self.hand_over(dead.iter().find(|r| r.id == entry.wirer), first)?,
        };
        for member in alive.iter().filter(|r| r.id != wirer.id) {
            let shares = Some(wirer.id.clone());
            if member.netns.as_ref().is_some_and(|l| l.shares != shares) {
                self.write_record(&Record {
                    netns: Some(NetnsLink { id: key, shares }),
                    ..member.clone()
                })?;
            }
        }
        for record in dead {
            let Ok(id) = ContainerId::parse(&record.id) else {
                continue;
            };
            // The address files name the live wiring container now: only the record goes.
            settled.departed.extend(self.release_locked(&id)?);
        }
        let new_entry = Entry {
            wirer: wirer.id.clone(),
            members: alive
                .iter()
                .filter(|r| r.id != wirer.id)
                .map(|r| r.id.clone())
                .collect(),
            wired: entry.wired,
        };
        self.write_netns(key, &new_entry)?;
        Ok(settled)
    }

    /// `heir` (a live member) becomes the wiring container: its record holds the interface
    /// and the address files name it. The record first, the files second: a hook killed in
    /// between leaves every address held by one of the two.
    fn hand_over(&self, old: Option<&Record>, heir: &Record) -> Result<Record, StoreError> {
        let source = old.unwrap_or(heir);
        let key = heir.netns.as_ref().map(|l| l.id);
        let record = Record {
            veth: source.veth.clone(),
            veth_index: source.veth_index,
            mac: source.mac,
            addrs: source.addrs.clone(),
            netns: key.map(|id| NetnsLink { id, shares: None }),
            ..heir.clone()
        };
        self.write_record(&record)?;
        let heir_id = ContainerId::parse(&record.id).expect("records are written for valid ids");
        if let Some(old) = old {
            let old_id = ContainerId::parse(&old.id).ok();
            for net in &record.addrs {
                if self.addr_owner(net.addr()) == old_id {
                    self.overwrite_claim(net.addr(), &heir_id)?;
                }
            }
        }
        tracing::info!(from = ?old.map(|o| &o.id), to = %record.id, "the network namespace's interface is held by another of its containers now");
        Ok(record)
    }

    fn netns_path(&self, key: NetnsId) -> std::path::PathBuf {
        self.dir.netns(key.dev, key.ino)
    }

    /// The entry, if there is a readable one (an unreadable one is taken for none: its
    /// containers' records still hold their addresses).
    fn read_netns(&self, key: NetnsId) -> Option<Entry> {
        let text = fsutil::read_small(&self.netns_path(key), MAX_RECORD_BYTES).ok()?;
        serde_json::from_slice(&text).ok()
    }

    fn write_netns(&self, key: NetnsId, entry: &Entry) -> Result<(), StoreError> {
        let text = serde_json::to_vec(entry).expect("an entry always serializes");
        self.write(&self.netns_path(key), &text)
    }
}

/// Whether a request asks for what `has` carries: exact entries equal, `net:` entries
/// satisfied by an address of that subnet and prefix (the default range's for
/// `net:default`), one address per entry, every address asked for.
fn same_request(has: &[Ipv4Net], requests: &[AddrRequest], default_range: Ipv4Net) -> bool {
    if has.len() != requests.len() {
        return false;
    }
    let mut left = has.to_vec();
    // Exact entries first, so a `net:` entry does not take the address one of them names.
    let mut ordered: Vec<&AddrRequest> = requests.iter().collect();
    ordered.sort_by_key(|r| !matches!(r, AddrRequest::Exact(_)));
    ordered.into_iter().all(|req| {
        let fits = |a: &Ipv4Net| match *req {
            AddrRequest::Exact(net) => net == *a,
            AddrRequest::Allocate(subnet) => in_subnet(subnet, a),
            AddrRequest::DefaultRange => in_subnet(default_range, a),
        };
        left.iter().position(fits).map(|i| left.remove(i)).is_some()
    })
}

fn in_subnet(subnet: Ipv4Net, a: &Ipv4Net) -> bool {
    subnet.prefix_len() == a.prefix_len() && subnet.contains(&a.addr())
}

fn describe(addrs: &[Ipv4Net]) -> String {
    match addrs {
        [] => "no address".to_string(),
        _ => addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::ProcessId;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn id(s: &str) -> ContainerId {
        ContainerId::parse(s).unwrap()
    }

    fn me() -> Option<ProcessId> {
        Some(ProcessId::of(std::process::id() as i32).unwrap())
    }

    fn dead() -> Option<ProcessId> {
        let me = me().unwrap();
        Some(ProcessId {
            start_time: me.start_time + 1,
            ..me
        })
    }

    const POD: NetnsId = NetnsId {
        dev: 4,
        ino: 4026532000,
    };
    const RANGE: &str = "10.32.0.0/12";

    /// Interfaces exist (the pod's netns lives on in its infra container).
    const WIRED: Facts = Facts {
        kept: &[],
        interface_exists: &|_| true,
        mesh: None,
    };

    fn join(
        store: &Store,
        c: &str,
        owner: Option<ProcessId>,
        req: AddrRequest,
        facts: &Facts,
    ) -> Result<Reserved, StoreError> {
        let c = id(c);
        let holder = Holder {
            id: &c,
            bridge: "weave",
            veth: "vethwe-own",
            owner,
            names: &[],
            shared: false,
            route: false,
            netns: Some(POD),
        };
        store.reserve(&holder, &[req], net(RANGE), facts)
    }

    /// `a` wired the pod with 10.2.0.5/24 (its veth is index 7), `b` joined.
    fn pod(store: &Store, a: Option<ProcessId>, b: Option<ProcessId>) {
        let exact = AddrRequest::Exact(net("10.2.0.5/24"));
        let wired = join(store, "a", me(), exact, &WIRED).unwrap();
        assert!(!wired.joined);
        store.set_veth_index(&id("a"), 7).unwrap();
        // Before a's attach is done, b waits for it.
        let early = join(store, "b", me(), exact, &WIRED).unwrap_err();
        assert!(
            matches!(early, StoreError::NetnsBeingWired { .. }),
            "{early}"
        );
        store.netns_wired(&id("a"), POD).unwrap();
        let sub = AddrRequest::Allocate(net("10.2.0.0/24"));
        let joined = join(store, "b", me(), sub, &WIRED).unwrap();
        assert!(joined.joined);
        assert_eq!(joined.record.addrs, vec![net("10.2.0.5/24")]);
        assert_eq!(
            (joined.record.veth.as_str(), joined.record.veth_index),
            ("vethwe-own", Some(7))
        );
        set_owner(store, "a", a);
        set_owner(store, "b", b);
    }

    fn set_owner(store: &Store, c: &str, owner: Option<ProcessId>) {
        let record = store.record(&id(c)).unwrap().unwrap();
        store.write_record(&Record { owner, ..record }).unwrap();
    }

    fn addr_owner(dir: &std::path::Path) -> String {
        fs::read_to_string(dir.join("addrs/10.2.0.5")).unwrap()
    }

    #[test]
    fn a_second_container_of_a_netns_joins_its_interface_or_is_refused_naming_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        pod(&store, me(), me());
        assert_eq!(fs::read_dir(dir.path().join("addrs")).unwrap().count(), 1);
        let other = AddrRequest::Exact(net("10.2.0.6/24"));
        let err = join(&store, "c", me(), other, &WIRED).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("container a,") && msg.contains("10.2.0.5/24"),
            "{msg}"
        );
        assert!(store.record(&id("c")).unwrap().is_none());
        assert!(!dir.path().join("addrs/10.2.0.6").exists());
    }

    #[test]
    fn the_interface_stays_until_the_last_container_of_the_netns_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        pod(&store, me(), me());
        // The wiring container stops first: b holds the interface now.
        assert_eq!(store.leave(&id("a")).unwrap(), None);
        assert_eq!(addr_owner(dir.path()), "b");
        let b = store.record(&id("b")).unwrap().unwrap();
        assert_eq!(b.netns.unwrap().shares, None);
        // A container elsewhere cannot have the address.
        let new = id("new");
        let elsewhere = Holder {
            id: &new,
            bridge: "weave",
            veth: "vethwe-new",
            owner: me(),
            names: &[],
            shared: false,
            route: false,
            netns: None,
        };
        let exact = [AddrRequest::Exact(net("10.2.0.5/24"))];
        let gone = Facts {
            kept: &[],
            interface_exists: &|_| false,
            mesh: None,
        };
        let taken = store.reserve(&elsewhere, &exact, net(RANGE), &gone);
        assert!(
            matches!(taken, Err(StoreError::AddressInUse { .. })),
            "{taken:?}"
        );
        let last = store
            .leave(&id("b"))
            .unwrap()
            .expect("the last one deletes the interface");
        assert_eq!(last.veth_index, Some(7));
        assert_eq!(fs::read_dir(dir.path().join("addrs")).unwrap().count(), 0);
        assert_eq!(fs::read_dir(dir.path().join("netns")).unwrap().count(), 0);
    }

    #[test]
    fn gc_hands_a_killed_wiring_containers_interface_to_a_live_member() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // a was SIGKILLed (no poststop), b keeps the netns.
        pod(&store, dead(), me());
        let (garbage, listing) = store.collect_garbage().unwrap();
        assert!(garbage.dead.is_empty(), "the interface is b's: {garbage:?}");
        assert_eq!(
            garbage
                .departed
                .iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>(),
            ["a"]
        );
        assert_eq!(listing.records.len(), 1);
        assert_eq!(addr_owner(dir.path()), "b");
        // b killed too: the next gc releases everything and deletes the interface.
        set_owner(&store, "b", dead());
        let (garbage, _) = store.collect_garbage().unwrap();
        assert_eq!(garbage.dead.len(), 1);
        assert_eq!(fs::read_dir(dir.path().join("addrs")).unwrap().count(), 0);
    }

    #[test]
    fn a_member_leaving_keeps_the_interface_of_a_killed_wiring_container_alive_member() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        pod(&store, dead(), me());
        join(
            &store,
            "c",
            me(),
            AddrRequest::Exact(net("10.2.0.5/24")),
            &WIRED,
        )
        .unwrap();
        // b stops: c still lives, and takes over from the killed a.
        assert_eq!(store.leave(&id("b")).unwrap(), None);
        assert_eq!(addr_owner(dir.path()), "c");
        assert!(store.record(&id("a")).unwrap().is_none());
        assert!(store.leave(&id("c")).unwrap().is_some());
    }

    #[test]
    fn requests_are_the_same_when_they_normalise_to_the_addresses_held() {
        let range = net("10.32.0.0/12");
        let has = [net("10.2.0.5/24"), net("10.32.0.9/12")];
        let exact = AddrRequest::Exact(net("10.2.0.5/24"));
        let sub = AddrRequest::Allocate(net("10.2.0.0/24"));
        assert!(same_request(
            &has,
            &[exact, AddrRequest::DefaultRange],
            range
        ));
        assert!(same_request(&has, &[AddrRequest::DefaultRange, sub], range));
        assert!(!same_request(&has, &[exact], range), "one address fewer");
        assert!(!same_request(
            &has,
            &[
                AddrRequest::Exact(net("10.2.0.6/24")),
                AddrRequest::DefaultRange
            ],
            range
        ));
        assert!(
            !same_request(
                &has,
                &[
                    AddrRequest::Allocate(net("10.2.0.0/16")),
                    AddrRequest::DefaultRange
                ],
                range
            ),
            "another prefix is another request"
        );
    }
}
