//! The mesh as read from etcd: hosts, blocks, addresses. Built from one range of the prefix
//! and kept current by the watch's events. Pure data: no etcd calls here.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use weave_core::mesh::{HeldAddr, NamedContainer, Peer, Peers, RemoteNames, VERSION};

use crate::etcd::{Event, EventKind, Kv};
use crate::keys::{owner_name, AddrInfo, HostInfo, Key, Keys, UNREADABLE};

/// A value and the revision it was last changed at (for guarded deletes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At<T> {
    pub value: T,
    pub mod_revision: i64,
}

/// One host's weave DNS containers, by id.
pub type HostNames = BTreeMap<String, NamedContainer>;

/// The mirror file of `host`'s containers.
pub fn remote_names(host: &str, named: &HostNames) -> RemoteNames {
    RemoteNames {
        version: VERSION,
        host: host.to_string(),
        containers: named.values().cloned().collect(),
    }
}

#[derive(Debug, Clone, Default)]
pub struct View {
    /// The store's revision this view is as of.
    pub revision: i64,
    /// Registered hosts: their keys exist only while their leases live.
    pub hosts: BTreeMap<String, At<HostInfo>>,
    /// Every claimed block and its owner.
    pub blocks: BTreeMap<Ipv4Net, At<String>>,
    /// Every published address and its holder.
    pub addrs: BTreeMap<Ipv4Addr, At<AddrInfo>>,
    /// Every host's weave DNS containers, by id (shared, so that a copy of the view costs
    /// one reference per host, and an unchanged host compares by pointer).
    pub names: BTreeMap<String, Arc<HostNames>>,
    /// The last underlay address seen of every host, also once its key is gone.
    pub last_advertise: BTreeMap<String, Ipv4Addr>,
    /// The last reclaim grace seen of every host (milliseconds), also once its key is gone.
    pub last_grace_ms: BTreeMap<String, u64>,
}

impl View {
    /// The view of the keys of one range, read at `revision`.
    pub fn from_kvs(keys: &Keys, kvs: &[Kv], revision: i64) -> Self {
        let mut view = Self {
            revision,
            ..Self::default()
        };
        for kv in kvs {
            view.put(keys, kv);
        }
        view
    }

    /// Replaces the contents with a fresh range, keeping what is remembered of gone hosts.
    pub fn reset(&mut self, fresh: View) {
        let mut advertise = std::mem::take(&mut self.last_advertise);
        advertise.extend(fresh.last_advertise.clone());
        let mut grace = std::mem::take(&mut self.last_grace_ms);
        grace.extend(fresh.last_grace_ms.clone());
        *self = fresh;
        self.last_advertise = advertise;
        self.last_grace_ms = grace;
    }

    /// Applies one watch event.
    pub fn apply(&mut self, keys: &Keys, event: &Event) {
        match event.kind {
            EventKind::Put => self.put(keys, &event.kv),
            EventKind::Delete => self.delete(keys, &event.kv.key),
        }
        self.revision = self.revision.max(event.kv.mod_revision);
    }

    fn put(&mut self, keys: &Keys, kv: &Kv) {
        let rev = kv.mod_revision;
        match keys.parse(&kv.key) {
            Some(Key::Host(name)) => {
                if let Ok(info) = serde_json::from_slice::<HostInfo>(&kv.value) {
                    self.last_advertise.insert(name.clone(), info.advertise);
                    self.last_grace_ms
                        .insert(name.clone(), info.reclaim_after_ms);
                    self.hosts.insert(name, at(info, rev));
                }
            }
            Some(Key::Block(net)) => {
                self.blocks.insert(net, at(owner_name(&kv.value), rev));
            }
            Some(Key::Addr(ip)) => {
                // An unreadable value still holds the address: it is never handed out.
                let info = serde_json::from_slice::<AddrInfo>(&kv.value)
                    .map(AddrInfo::sanitized)
                    .unwrap_or_else(|_| AddrInfo {
                        host: UNREADABLE.into(),
                        container: UNREADABLE.into(),
                    });
                self.addrs.insert(ip, at(info, rev));
            }
            Some(Key::Name(host, id)) => {
                match serde_json::from_slice::<NamedContainer>(&kv.value) {
                    Ok(mut named) => {
                        named.id = id.clone();
                        Arc::make_mut(self.names.entry(host).or_default()).insert(id, named);
                    }
                    Err(_) => self.delete_name(&host, &id),
                }
            }
            Some(Key::AddrClaims) | None => {}
        }
    }

    fn delete_name(&mut self, host: &str, id: &str) {
        if let Some(named) = self.names.get_mut(host) {
            Arc::make_mut(named).remove(id);
            if named.is_empty() {
                self.names.remove(host);
            }
        }
    }

    /// The weave DNS containers `host` published.
    pub fn names_of(&self, host: &str) -> HostNames {
        self.names
            .get(host)
            .map(|n| n.as_ref().clone())
            .unwrap_or_default()
    }

    /// What `me` mirrors for weave-dns: the weave DNS containers of every other host whose
    /// lease lives (a host whose key is gone is dropped whole, whatever keys remain).
    pub fn mirrors(&self, me: &str) -> BTreeMap<String, Arc<HostNames>> {
        self.names
            .iter()
            .filter(|(host, _)| host.as_str() != me && self.hosts.contains_key(*host))
            .map(|(host, named)| (host.clone(), named.clone()))
            .collect()
    }

    fn delete(&mut self, keys: &Keys, key: &[u8]) {
        match keys.parse(key) {
            Some(Key::Host(name)) => {
                self.hosts.remove(&name);
            }
            Some(Key::Block(net)) => {
                self.blocks.remove(&net);
            }
            Some(Key::Addr(ip)) => {
                self.addrs.remove(&ip);
            }
            Some(Key::Name(host, id)) => self.delete_name(&host, &id),
            Some(Key::AddrClaims) | None => {}
        }
    }

    /// The underlay addresses of the live hosts other than `me`, sorted, without duplicates.
    pub fn peer_ips(&self, me: &str) -> Vec<Ipv4Addr> {
        let ips: BTreeSet<Ipv4Addr> = self
            .hosts
            .iter()
            .filter(|(name, _)| name.as_str() != me)
            .map(|(_, h)| h.value.advertise)
            .collect();
        ips.into_iter().collect()
    }

    /// The blocks `host` owns.
    pub fn blocks_of(&self, host: &str) -> Vec<Ipv4Net> {
        self.blocks
            .iter()
            .filter(|(_, owner)| owner.value == host)
            .map(|(net, _)| *net)
            .collect()
    }

    /// The addresses published for `host`, with the container holding each.
    pub fn addrs_of(&self, host: &str) -> BTreeMap<Ipv4Addr, String> {
        self.addrs
            .iter()
            .filter(|(_, a)| a.value.host == host)
            .map(|(ip, a)| (*ip, a.value.container.clone()))
            .collect()
    }

    /// Hosts that own blocks or addresses but are not registered (their lease is gone).
    pub fn unregistered_owners(&self) -> BTreeSet<String> {
        self.blocks
            .values()
            .map(|b| &b.value)
            .chain(self.addrs.values().map(|a| &a.value.host))
            .filter(|owner| !self.hosts.contains_key(*owner))
            .cloned()
            .collect()
    }

    /// What `peers.json` says on host `me`: the other hosts (live ones, and gone ones that
    /// still own something) and the addresses they hold.
    pub fn peers_file(&self, me: &str) -> Peers {
        let mut names: BTreeSet<String> = self.hosts.keys().cloned().collect();
        names.extend(self.unregistered_owners());
        names.remove(me);
        let peers = names
            .into_iter()
            .filter_map(|name| {
                let advertise = self.last_advertise.get(&name).copied()?;
                let alive = self.hosts.contains_key(&name);
                Some(Peer {
                    name,
                    advertise,
                    alive,
                })
            })
            .collect();
        let addrs = self
            .addrs
            .iter()
            .filter(|(_, a)| a.value.host != me)
            .map(|(ip, a)| HeldAddr {
                addr: *ip,
                host: a.value.host.clone(),
                container: a.value.container.clone(),
            })
            .collect();
        Peers {
            version: VERSION,
            peers,
            addrs,
        }
    }
}

fn at<T>(value: T, mod_revision: i64) -> At<T> {
    At {
        value,
        mod_revision,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: Vec<u8>, value: &[u8], rev: i64) -> Kv {
        Kv {
            key,
            value: value.to_vec(),
            create_revision: rev,
            mod_revision: rev,
            version: 1,
            lease: 0,
        }
    }

    fn host(keys: &Keys, name: &str, ip: &str, rev: i64) -> Kv {
        let info = HostInfo {
            advertise: ip.parse().unwrap(),
            lease: 7,
            reclaim_after_ms: 9000,
        };
        kv(keys.host(name), &serde_json::to_vec(&info).unwrap(), rev)
    }

    fn named(keys: &Keys, host: &str, id: &str, name: &str, rev: i64) -> Kv {
        let c = NamedContainer {
            id: "ignored: the key says".into(),
            names: vec![name.into()],
            addrs: vec!["10.32.0.9".parse().unwrap()],
            shared: false,
            started_ms: 5,
            pid: 9,
        };
        kv(keys.name(host, id), &serde_json::to_vec(&c).unwrap(), rev)
    }

    #[test]
    fn mirrors_hold_the_names_of_live_other_hosts_only() {
        let keys = Keys::new("/w/");
        let mut view = View::from_kvs(
            &keys,
            &[
                host(&keys, "a", "192.168.0.1", 1),
                host(&keys, "b", "192.168.0.2", 2),
                named(&keys, "a", "ca", "web", 3),
                named(&keys, "b", "cb", "db", 4),
                named(&keys, "b", "cb2", "db2", 5),
                named(&keys, "gone", "cg", "old", 6),
                kv(keys.name("b", "bad"), b"{", 7),
            ],
            7,
        );
        let mirrors = view.mirrors("a");
        assert_eq!(
            mirrors.keys().collect::<Vec<_>>(),
            ["b"],
            "not mine, not gone's"
        );
        let file = remote_names("b", &mirrors["b"]);
        let ids: Vec<&str> = file.containers.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            ["cb", "cb2"],
            "the key's id; an unreadable value left out"
        );
        assert_eq!(view.names_of("a").len(), 1);
        // A container goes; then its host's key: the whole host goes.
        view.apply(
            &keys,
            &Event {
                kind: EventKind::Delete,
                kv: kv(keys.name("b", "cb"), b"", 8),
                prev: None,
            },
        );
        assert_eq!(view.mirrors("a")["b"].len(), 1);
        view.apply(
            &keys,
            &Event {
                kind: EventKind::Delete,
                kv: kv(keys.host("b"), b"", 9),
                prev: None,
            },
        );
        assert!(view.mirrors("a").is_empty());
    }

    #[test]
    fn a_view_follows_puts_and_deletes() {
        let keys = Keys::new("/w/");
        let b1: Ipv4Net = "10.32.0.0/26".parse().unwrap();
        let addr = AddrInfo {
            host: "b".into(),
            container: "c1".into(),
        };
        let kvs = vec![
            host(&keys, "a", "192.168.1.1", 2),
            host(&keys, "b", "192.168.1.2", 3),
            kv(keys.block(b1), b"b", 4),
            kv(
                keys.addr("10.32.0.5".parse().unwrap()),
                &serde_json::to_vec(&addr).unwrap(),
                5,
            ),
            kv(b"/w/junk".to_vec(), b"x", 6),
        ];
        let mut view = View::from_kvs(&keys, &kvs, 6);
        assert_eq!(
            view.peer_ips("a"),
            vec!["192.168.1.2".parse::<Ipv4Addr>().unwrap()]
        );
        assert_eq!(view.blocks_of("b"), vec![b1]);
        assert!(view.unregistered_owners().is_empty());
        let peers = view.peers_file("a");
        assert_eq!(peers.peers.len(), 1);
        assert_eq!(peers.addrs.len(), 1);

        let gone = Event {
            kind: EventKind::Delete,
            kv: kv(keys.host("b"), b"", 9),
            prev: None,
        };
        view.apply(&keys, &gone);
        assert!(view.peer_ips("a").is_empty());
        assert_eq!(view.revision, 9);
        assert_eq!(
            view.unregistered_owners().into_iter().collect::<Vec<_>>(),
            vec!["b".to_string()]
        );
        // b is still listed, as gone, while it owns something.
        let peers = view.peers_file("a");
        assert_eq!(peers.peers.len(), 1);
        assert!(!peers.peers[0].alive);
        // A fresh range keeps what is remembered of gone hosts.
        let fresh = View::from_kvs(&keys, &kvs[..1], 10);
        view.reset(fresh);
        assert_eq!(view.last_advertise.len(), 2);
        assert_eq!(view.last_grace_ms["b"], 9000);
    }
}
