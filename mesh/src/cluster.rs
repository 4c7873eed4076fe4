//! The mesh's operations on etcd: registration, block and address claims, reclaim of a gone
//! host. Every change that must be unique is one transaction whose compares make a race
//! harmless: two hosts never both get a block, an address, or each other's leftovers.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use thiserror::Error;
use weave_core::mesh::block_of;
use weave_core::settings::fnv1a;

use crate::etcd::{prefix_end, Cmp, Compare, Etcd, EtcdError, Kv, Op, OpResponse};
use crate::keys::{owner_name, AddrInfo, HostInfo, Key, Keys, UNREADABLE};
use crate::view::View;

/// How many times a transaction that lost a race is tried again with fresh data.
const TXN_ATTEMPTS: usize = 16;
/// Keys deleted by one reclaim transaction (etcd allows 128 operations per transaction).
const RECLAIM_BATCH: usize = 64;

#[derive(Debug, Error)]
pub enum MeshError {
    #[error("{what}: {source}")]
    Etcd {
        what: String,
        #[source]
        source: EtcdError,
    },
    #[error("host name {name:?} is registered by another live agent (underlay address {advertise}); choose another --name, or stop that agent and wait for its lease to expire")]
    NameTaken { name: String, advertise: Ipv4Addr },
    #[error("host {name:?} is alive (its agent renews its lease, underlay address {advertise}); stop its weave-mesh first, or pass --force to remove it anyway (its running containers' addresses may then be handed out twice)")]
    HostAlive { name: String, advertise: Ipv4Addr },
    #[error("host {0:?} is not registered in etcd (its lease expired while etcd was out of reach); weave-mesh is registering it again: try again in a few seconds")]
    NotRegistered(String),
    #[error("etcd holds blocks of /{found} under this key prefix, and this agent claims /{ours} (--block-prefix): every host of one weave network must use the same block length")]
    BlockPrefix { found: u8, ours: u8 },
    #[error("{0}: too many concurrent changes in etcd; try again")]
    Contention(String),
}

impl MeshError {
    /// True when etcd could not be reached (nothing could be proven).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, MeshError::Etcd { source, .. } if source.is_unreachable())
    }
}

fn ctx(what: impl Into<String>) -> impl FnOnce(EtcdError) -> MeshError {
    let what = what.into();
    move |source| MeshError::Etcd { what, source }
}

/// The answer to a claim that etcd could decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim<T> {
    Granted(T),
    Refused(String),
}

/// What a reclaim removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reclaimed {
    pub blocks: Vec<Ipv4Net>,
    pub addrs: Vec<Ipv4Addr>,
    /// False when the host registered again meanwhile (nothing was removed).
    pub host_gone: bool,
}

/// One weave network in one etcd.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub etcd: Etcd,
    pub keys: Keys,
    pub block_prefix: u8,
}

fn absent(key: Vec<u8>) -> Compare {
    Compare::CreateRevision {
        key,
        op: Cmp::Equal,
        value: 0,
    }
}

fn unchanged(key: Vec<u8>, mod_revision: i64) -> Compare {
    Compare::ModRevision {
        key,
        op: Cmp::Equal,
        value: mod_revision,
    }
}

fn registered(host_key: Vec<u8>) -> Compare {
    Compare::CreateRevision {
        key: host_key,
        op: Cmp::Greater,
        value: 0,
    }
}

fn range_op(key: Vec<u8>, range_end: Option<Vec<u8>>) -> Op {
    Op::Range { key, range_end }
}

impl Cluster {
    /// Every key of the network, as one consistent view.
    pub fn snapshot(&self) -> Result<View, MeshError> {
        let prefix = self.keys.prefix();
        let range = self
            .etcd
            .range(prefix, Some(&prefix_end(prefix)))
            .map_err(ctx("cannot read the mesh from etcd"))?;
        Ok(View::from_kvs(&self.keys, &range.kvs, range.revision))
    }

    /// Refuses a network whose blocks have another length than this agent's: blocks of
    /// different lengths could overlap without their keys meeting.
    pub fn check_block_prefix(&self, view: &View) -> Result<(), MeshError> {
        match view
            .blocks
            .keys()
            .find(|b| b.prefix_len() != self.block_prefix)
        {
            Some(b) => Err(MeshError::BlockPrefix {
                found: b.prefix_len(),
                ours: self.block_prefix,
            }),
            None => Ok(()),
        }
    }

    /// Registers host `name` at `advertise` with a new lease of `ttl` seconds; returns the
    /// lease. Refused while another live agent holds the name from another address; a key
    /// from this same address is this host's previous run, taken over.
    pub fn register(
        &self,
        name: &str,
        advertise: Ipv4Addr,
        ttl: i64,
        reclaim_after_ms: u64,
    ) -> Result<i64, MeshError> {
        let key = self.keys.host(name);
        for _ in 0..TXN_ATTEMPTS {
            let current = self
                .etcd
                .get(&key)
                .map_err(ctx(format!("cannot read host {name:?} in etcd")))?;
            let rev = match &current {
                Some(kv) => {
                    let info = serde_json::from_slice::<HostInfo>(&kv.value).ok();
                    if let Some(info) = info.filter(|i| i.advertise != advertise) {
                        return Err(MeshError::NameTaken {
                            name: name.into(),
                            advertise: info.advertise,
                        });
                    }
                    kv.mod_revision
                }
                None => 0,
            };
            let lease = self
                .etcd
                .lease_grant(ttl)
                .map_err(ctx("cannot get a lease from etcd"))?;
            let info = HostInfo {
                advertise,
                lease,
                reclaim_after_ms,
            };
            let value = serde_json::to_vec(&info).expect("host info always serializes");
            let put = Op::Put {
                key: key.clone(),
                value,
                lease: Some(lease),
            };
            let txn = self
                .etcd
                .txn(&[unchanged(key.clone(), rev)], &[put], &[])
                .map_err(ctx(format!("cannot register host {name:?} in etcd")))?;
            if txn.succeeded {
                if let Some(old) = current.filter(|kv| kv.lease != 0 && kv.lease != lease) {
                    // The previous run's lease holds nothing now; let it go at once.
                    let _ = self.etcd.lease_revoke(old.lease);
                }
                return Ok(lease);
            }
            let _ = self.etcd.lease_revoke(lease);
        }
        Err(MeshError::Contention(format!("registering host {name:?}")))
    }

    /// Claims a free block of `subnet` for host `me`: one not owned by anyone and holding no
    /// address of another host. The search starts at an offset derived from `me`, so hosts
    /// claiming at once mostly try different blocks.
    /// Granted with the block and the revision of the claim.
    pub fn claim_block(
        &self,
        me: &str,
        subnet: Ipv4Net,
    ) -> Result<Claim<(Ipv4Net, i64)>, MeshError> {
        let subnet = subnet.trunc();
        for _ in 0..TXN_ATTEMPTS {
            let read = self.read_for_block_claim(me)?;
            if !read.registered {
                return Err(MeshError::NotRegistered(me.into()));
            }
            let Some(block) = self.free_block(me, subnet, &read) else {
                return Ok(Claim::Refused(format!(
                    "no free block of /{} is left in {subnet} (every one is owned by a host, or holds another host's address)",
                    self.block_prefix
                )));
            };
            let compare = [
                absent(self.keys.block(block)),
                unchanged(self.keys.addr_claims(), read.claims_rev),
                registered(self.keys.host(me)),
            ];
            let put = Op::Put {
                key: self.keys.block(block),
                value: me.as_bytes().to_vec(),
                lease: None,
            };
            let txn = self
                .etcd
                .txn(&compare, &[put], &[])
                .map_err(ctx(format!("cannot claim block {block} in etcd")))?;
            if txn.succeeded {
                return Ok(Claim::Granted((block, txn.revision)));
            }
        }
        Err(MeshError::Contention(format!(
            "claiming a block of {subnet}"
        )))
    }

    fn read_for_block_claim(&self, me: &str) -> Result<BlockClaimRead, MeshError> {
        let blocks = self.keys.blocks_dir();
        let addrs = self.keys.addrs_dir();
        let ops = [
            range_op(self.keys.addr_claims(), None),
            range_op(blocks.clone(), Some(prefix_end(&blocks))),
            range_op(addrs.clone(), Some(prefix_end(&addrs))),
            range_op(self.keys.host(me), None),
        ];
        let txn = self
            .etcd
            .txn(&[], &ops, &[])
            .map_err(ctx("cannot read the blocks from etcd"))?;
        let kvs = |i: usize| match txn.responses.get(i) {
            Some(OpResponse::Range(r)) => r.kvs.clone(),
            _ => Vec::new(),
        };
        let claims_rev = kvs(0).first().map_or(0, |kv| kv.mod_revision);
        let mut all = kvs(1);
        all.extend(kvs(2));
        Ok(BlockClaimRead {
            registered: !kvs(3).is_empty(),
            claims_rev,
            view: View::from_kvs(&self.keys, &all, txn.revision),
        })
    }

    /// The first free block of `subnet`, from `me`'s offset on.
    fn free_block(&self, me: &str, subnet: Ipv4Net, read: &BlockClaimRead) -> Option<Ipv4Net> {
        let foreign: BTreeSet<Ipv4Net> = read
            .view
            .addrs
            .iter()
            .filter(|(_, a)| a.value.host != me)
            .map(|(ip, _)| block_of(*ip, self.block_prefix))
            .collect();
        // Nothing is collected: a wide subnet (a /8 holds 2^18 blocks of /26) costs only
        // the blocks looked at.
        let count = block_count(subnet, self.block_prefix);
        let start = fnv1a(me.as_bytes()) % count;
        (0..count)
            .map(|i| nth_block(subnet, self.block_prefix, (start + i) % count))
            .find(|b| !read.view.blocks.contains_key(b) && !foreign.contains(b))
    }

    /// Claims `ip` for container `container` of host `me`: granted when no other host holds
    /// it and its block is not another host's.
    pub fn claim_addr(
        &self,
        me: &str,
        ip: Ipv4Addr,
        container: &str,
    ) -> Result<Claim<()>, MeshError> {
        let block = block_of(ip, self.block_prefix);
        let (block_key, addr_key) = (self.keys.block(block), self.keys.addr(ip));
        let want = AddrInfo {
            host: me.into(),
            container: container.into(),
        };
        for _ in 0..TXN_ATTEMPTS {
            let ops = [
                range_op(block_key.clone(), None),
                range_op(addr_key.clone(), None),
                range_op(self.keys.host(me), None),
            ];
            let txn = self
                .etcd
                .txn(&[], &ops, &[])
                .map_err(ctx(format!("cannot read address {ip} in etcd")))?;
            let first = |i: usize| match txn.responses.get(i) {
                Some(OpResponse::Range(r)) => r.kvs.first().cloned(),
                _ => None,
            };
            let (owner_kv, holder_kv) = (first(0), first(1));
            if first(2).is_none() {
                return Err(MeshError::NotRegistered(me.into()));
            }
            let owner = owner_kv.as_ref().map(|kv| owner_name(&kv.value));
            if let Some(owner) = owner.as_ref().filter(|o| o.as_str() != me) {
                return Ok(Claim::Refused(format!(
                    "address {ip} is in block {block}, which belongs to host {owner}; choose an address outside it, or let {owner} allocate it"
                )));
            }
            let holder = holder_kv.as_ref().map(|kv| {
                serde_json::from_slice::<AddrInfo>(&kv.value)
                    .map(AddrInfo::sanitized)
                    .unwrap_or_else(|_| AddrInfo {
                        host: UNREADABLE.into(),
                        container: UNREADABLE.into(),
                    })
            });
            match &holder {
                Some(h) if *h == want => return Ok(Claim::Granted(())),
                Some(h) if h.host != me => {
                    return Ok(Claim::Refused(format!(
                        "address {ip} is in use by container {} on host {}; choose another address or stop that container",
                        h.container, h.host
                    )))
                }
                _ => {}
            }
            let mut compare = vec![
                unchanged(
                    addr_key.clone(),
                    holder_kv.as_ref().map_or(0, |kv| kv.mod_revision),
                ),
                registered(self.keys.host(me)),
            ];
            let mut success = vec![Op::Put {
                key: addr_key.clone(),
                value: serde_json::to_vec(&want).expect("addr info always serializes"),
                lease: None,
            }];
            match &owner_kv {
                Some(kv) => compare.push(unchanged(block_key.clone(), kv.mod_revision)),
                None => {
                    // Outside this host's blocks: make concurrent block claims look again.
                    compare.push(absent(block_key.clone()));
                    success.push(Op::Put {
                        key: self.keys.addr_claims(),
                        value: Vec::new(),
                        lease: None,
                    });
                }
            }
            let txn = self
                .etcd
                .txn(&compare, &success, &[])
                .map_err(ctx(format!("cannot claim address {ip} in etcd")))?;
            if txn.succeeded {
                return Ok(Claim::Granted(()));
            }
        }
        Err(MeshError::Contention(format!("claiming address {ip}")))
    }

    /// Removes `ip`'s key if it says host `me` holds it (for `container`, when given).
    pub fn release_addr(
        &self,
        me: &str,
        ip: Ipv4Addr,
        container: Option<&str>,
    ) -> Result<bool, MeshError> {
        let key = self.keys.addr(ip);
        let Some(kv) = self
            .etcd
            .get(&key)
            .map_err(ctx(format!("cannot read address {ip} in etcd")))?
        else {
            return Ok(false);
        };
        let ours = serde_json::from_slice::<AddrInfo>(&kv.value)
            .is_ok_and(|a| a.host == me && container.is_none_or(|c| c == a.container));
        if !ours {
            return Ok(false);
        }
        let delete = Op::Delete {
            key: key.clone(),
            range_end: None,
        };
        let txn = self
            .etcd
            .txn(&[unchanged(key, kv.mod_revision)], &[delete], &[])
            .map_err(ctx(format!("cannot release address {ip} in etcd")))?;
        Ok(txn.succeeded)
    }

    /// Deletes block `block` while host `me` owns it, unchanged since read. Returns a
    /// revision from which etcd does not hold the block as `me`'s (the delete's, or the
    /// read's when it was not `me`'s). An address of `me` left in it still keeps it from
    /// other hosts' claims, as any address outside a block does.
    pub fn release_block(&self, me: &str, block: Ipv4Net) -> Result<i64, MeshError> {
        let key = self.keys.block(block);
        for _ in 0..TXN_ATTEMPTS {
            let read = self
                .etcd
                .txn(&[], &[range_op(key.clone(), None)], &[])
                .map_err(ctx(format!("cannot read block {block} in etcd")))?;
            let kv = match read.responses.first() {
                Some(OpResponse::Range(r)) => r.kvs.first().cloned(),
                _ => None,
            };
            let Some(kv) = kv.filter(|kv| owner_name(&kv.value) == me) else {
                return Ok(read.revision);
            };
            let delete = Op::Delete {
                key: key.clone(),
                range_end: None,
            };
            let txn = self
                .etcd
                .txn(&[unchanged(key.clone(), kv.mod_revision)], &[delete], &[])
                .map_err(ctx(format!("cannot give block {block} back in etcd")))?;
            if txn.succeeded {
                return Ok(txn.revision);
            }
        }
        Err(MeshError::Contention(format!("giving back block {block}")))
    }

    /// Removes the blocks and addresses of host `name`, guarded by its registration being
    /// absent and by every removed key being unchanged since read: racing reclaims, a host
    /// registering again, or a block claimed by someone else meanwhile are all harmless.
    /// Addresses go first, so a freed block never holds a gone host's address.
    pub fn reclaim(&self, name: &str) -> Result<Reclaimed, MeshError> {
        let view = self.snapshot()?;
        if view.hosts.contains_key(name) {
            return Ok(Reclaimed::default());
        }
        let mut done = Reclaimed {
            host_gone: true,
            ..Reclaimed::default()
        };
        let addrs: Vec<(Key, Vec<u8>, i64)> = view
            .addrs
            .iter()
            .filter(|(_, a)| a.value.host == name)
            .map(|(ip, a)| (Key::Addr(*ip), self.keys.addr(*ip), a.mod_revision))
            .collect();
        let blocks: Vec<(Key, Vec<u8>, i64)> = view
            .blocks
            .iter()
            .filter(|(_, b)| b.value == name)
            .map(|(net, b)| (Key::Block(*net), self.keys.block(*net), b.mod_revision))
            .collect();
        for batch in addrs
            .chunks(RECLAIM_BATCH)
            .chain(blocks.chunks(RECLAIM_BATCH))
        {
            let mut compare = vec![absent(self.keys.host(name))];
            compare.extend(batch.iter().map(|(_, k, rev)| unchanged(k.clone(), *rev)));
            let delete: Vec<Op> = batch
                .iter()
                .map(|(_, k, _)| Op::Delete {
                    key: k.clone(),
                    range_end: None,
                })
                .collect();
            let txn = self.etcd.txn(&compare, &delete, &[]).map_err(ctx(format!(
                "cannot reclaim host {name:?}'s blocks in etcd"
            )))?;
            if !txn.succeeded {
                // Registered again, or another agent reclaimed or changed these keys first.
                done.host_gone = self
                    .etcd
                    .get(&self.keys.host(name))
                    .map_err(ctx("cannot read etcd"))?
                    .is_none();
                continue;
            }
            for (key, _, _) in batch {
                match key {
                    Key::Addr(ip) => done.addrs.push(*ip),
                    Key::Block(net) => done.blocks.push(*net),
                    _ => {}
                }
            }
        }
        Ok(done)
    }

    /// `weave-mesh rmhost`: ends host `name`'s lease (refused while it is registered, unless
    /// `force`), then reclaims its blocks and addresses at once.
    pub fn rmhost(&self, name: &str, force: bool) -> Result<Reclaimed, MeshError> {
        let key = self.keys.host(name);
        if let Some(kv) = self
            .etcd
            .get(&key)
            .map_err(ctx(format!("cannot read host {name:?} in etcd")))?
        {
            let advertise = host_advertise(&kv);
            if !force {
                return Err(MeshError::HostAlive {
                    name: name.into(),
                    advertise,
                });
            }
            if kv.lease != 0 {
                self.etcd
                    .lease_revoke(kv.lease)
                    .map_err(ctx(format!("cannot end host {name:?}'s lease")))?;
            }
            self.etcd
                .delete(&key, None)
                .map_err(ctx(format!("cannot remove host {name:?}")))?;
        }
        self.reclaim(name)
    }
}

/// The `n`th block of weave-core's `blocks_of(subnet, prefix)`, computed.
fn nth_block(subnet: Ipv4Net, prefix: u8, n: u64) -> Ipv4Net {
    let first = u64::from(u32::from(
        block_of(subnet.trunc().network(), prefix).network(),
    ));
    let addr = first + n * (1u64 << (32 - prefix));
    Ipv4Net::new(Ipv4Addr::from(addr as u32), prefix).expect("a block prefix is at most 32")
}

/// How many blocks of `prefix` bits `blocks_of` gives for `subnet`.
fn block_count(subnet: Ipv4Net, prefix: u8) -> u64 {
    match subnet.prefix_len() <= prefix {
        true => 1u64 << (prefix - subnet.prefix_len()),
        false => 1,
    }
}

fn host_advertise(kv: &Kv) -> Ipv4Addr {
    serde_json::from_slice::<HostInfo>(&kv.value)
        .map(|h| h.advertise)
        .unwrap_or(Ipv4Addr::UNSPECIFIED)
}

struct BlockClaimRead {
    registered: bool,
    claims_rev: i64,
    view: View,
}

#[cfg(test)]
mod tests {
    use super::*;
    use weave_core::mesh::blocks_of;

    #[test]
    fn blocks_are_computed_as_blocks_of_lists_them() {
        for (subnet, prefix) in [
            ("10.32.0.0/22", 26),
            ("10.9.0.200/30", 26),
            ("10.0.0.0/8", 24),
        ] {
            let subnet: Ipv4Net = subnet.parse().unwrap();
            let listed: Vec<Ipv4Net> = blocks_of(subnet, prefix).collect();
            assert_eq!(block_count(subnet, prefix), listed.len() as u64);
            for (n, block) in listed.iter().enumerate() {
                assert_eq!(nth_block(subnet, prefix, n as u64), *block);
            }
        }
    }
}
