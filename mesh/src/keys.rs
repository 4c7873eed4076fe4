//! The keys weave-mesh keeps in etcd, under a prefix (`--prefix`, default `/weave/`) so that
//! several weave networks can share one etcd:
//!
//! ```text
//! <prefix>hosts/<name>           HostInfo JSON {advertise, lease, reclaim_after_ms}: put with the host's lease,
//!                                so it vanishes when the host's agent stops renewing it
//! <prefix>blocks/<a.b.c.d>-<len> the owner host's name: claimed by a transaction that
//!                                succeeds only while the key does not exist
//! <prefix>addrs/<ip>             AddrInfo JSON {host, container}: an address held on a host
//!                                (no lease: removed by its holder on release, by reclaim after
//!                                the grace, or by `weave-mesh rmhost`)
//! <prefix>names/<host>/<id>      NamedContainer JSON (weave-core's mesh): a weave DNS container
//!                                of that host, put with the host's lease by its agent, so the
//!                                names vanish with the host; deleted when the container goes
//! <prefix>addr-claims            touched by every claim of an address outside the claiming
//!                                host's blocks; a block claim compares its revision, so a block
//!                                is never claimed over an address another host just took in it
//! ```

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "/weave/";
/// Host names are at most this long (they are etcd keys and appear in messages).
pub const MAX_HOST_NAME: usize = 63;

/// A host's registration (`hosts/<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    /// Its underlay address: where the others send its VXLAN traffic.
    pub advertise: Ipv4Addr,
    /// The lease the key is put with.
    pub lease: i64,
    /// Its `--reclaim-after`, in milliseconds: the others wait at least this long before
    /// they reclaim its blocks, whatever their own grace (its hook stops allocating only
    /// after its own).
    #[serde(default)]
    pub reclaim_after_ms: u64,
}

/// Who holds an address (`addrs/<ip>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddrInfo {
    pub host: String,
    pub container: String,
}

/// What a key under the prefix is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Host(String),
    Block(Ipv4Net),
    Addr(Ipv4Addr),
    /// A weave DNS container: its host and its id.
    Name(String, String),
    AddrClaims,
}

/// The keys of one weave network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
        }
    }

    pub fn prefix(&self) -> &[u8] {
        self.prefix.as_bytes()
    }

    pub fn host(&self, name: &str) -> Vec<u8> {
        format!("{}hosts/{name}", self.prefix).into_bytes()
    }

    pub fn hosts_dir(&self) -> Vec<u8> {
        format!("{}hosts/", self.prefix).into_bytes()
    }

    pub fn block(&self, block: Ipv4Net) -> Vec<u8> {
        format!(
            "{}blocks/{}-{}",
            self.prefix,
            block.network(),
            block.prefix_len()
        )
        .into_bytes()
    }

    pub fn blocks_dir(&self) -> Vec<u8> {
        format!("{}blocks/", self.prefix).into_bytes()
    }

    pub fn addr(&self, ip: Ipv4Addr) -> Vec<u8> {
        format!("{}addrs/{ip}", self.prefix).into_bytes()
    }

    pub fn addrs_dir(&self) -> Vec<u8> {
        format!("{}addrs/", self.prefix).into_bytes()
    }

    pub fn name(&self, host: &str, id: &str) -> Vec<u8> {
        format!("{}names/{host}/{id}", self.prefix).into_bytes()
    }

    pub fn addr_claims(&self) -> Vec<u8> {
        format!("{}addr-claims", self.prefix).into_bytes()
    }

    /// What `key` is; `None` for keys of no meaning to weave-mesh (ignored).
    pub fn parse(&self, key: &[u8]) -> Option<Key> {
        let rest = std::str::from_utf8(key).ok()?.strip_prefix(&self.prefix)?;
        if rest == "addr-claims" {
            return Some(Key::AddrClaims);
        }
        if let Some(name) = rest.strip_prefix("hosts/") {
            return parse_host_name(name).ok().map(Key::Host);
        }
        if let Some(block) = rest.strip_prefix("blocks/") {
            let (addr, len) = block.split_once('-')?;
            let net = Ipv4Net::new(addr.parse().ok()?, len.parse().ok()?).ok()?;
            return (net.trunc() == net).then_some(Key::Block(net));
        }
        if let Some(name) = rest.strip_prefix("names/") {
            let (host, id) = name.split_once('/')?;
            let host = parse_host_name(host).ok()?;
            let id = weave_core::id::ContainerId::parse(id).ok()?;
            return Some(Key::Name(host, id.as_str().to_string()));
        }
        rest.strip_prefix("addrs/")?.parse().ok().map(Key::Addr)
    }
}

/// A host name: 1 to 63 bytes of letters, digits, `.`, `_` and `-` (it is part of etcd keys
/// and of messages shown to users).
pub fn parse_host_name(name: &str) -> Result<String, String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_HOST_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && name != "."
        && name != "..";
    match ok {
        true => Ok(name.to_string()),
        false => Err(format!(
            "{name:?} is not a host name: use 1 to {MAX_HOST_NAME} letters, digits, '.', '_' or '-'"
        )),
    }
}

/// Shown for a name in etcd that is not a valid host name (whoever wrote it, it is never
/// this host, and never printed as is).
pub const UNREADABLE: &str = "(unreadable)";

/// The host name a block's value or an address's `host` holds, or [`UNREADABLE`].
pub fn owner_name(value: &[u8]) -> String {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| parse_host_name(s).ok())
        .unwrap_or_else(|| UNREADABLE.to_string())
}

impl AddrInfo {
    /// The same, with a host name or container id that is not valid replaced by
    /// [`UNREADABLE`] (values in etcd are printed, and compared with this host's name).
    pub fn sanitized(self) -> Self {
        let container = weave_core::id::ContainerId::parse(&self.container)
            .map(|id| id.as_str().to_string())
            .unwrap_or_else(|_| UNREADABLE.to_string());
        Self {
            host: owner_name(self.host.as_bytes()),
            container,
        }
    }
}

/// A key prefix: starts and ends with `/`, printable ASCII without spaces.
pub fn parse_prefix(prefix: &str) -> Result<String, String> {
    let ok = prefix.len() >= 2
        && prefix.starts_with('/')
        && prefix.ends_with('/')
        && prefix.bytes().all(|b| b.is_ascii_graphic());
    match ok {
        true => Ok(prefix.to_string()),
        false => Err(format!(
            "{prefix:?} is not a key prefix: it starts and ends with '/', like /weave/ or /weave/net2/"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_back() {
        let keys = Keys::new("/weave/");
        let block: Ipv4Net = "10.32.0.64/26".parse().unwrap();
        assert_eq!(keys.block(block), b"/weave/blocks/10.32.0.64-26");
        assert_eq!(keys.parse(&keys.block(block)), Some(Key::Block(block)));
        assert_eq!(
            keys.parse(&keys.host("h1")),
            Some(Key::Host("h1".to_string()))
        );
        let ip: Ipv4Addr = "10.32.0.9".parse().unwrap();
        assert_eq!(keys.parse(&keys.addr(ip)), Some(Key::Addr(ip)));
        assert_eq!(keys.parse(&keys.addr_claims()), Some(Key::AddrClaims));
        assert_eq!(
            keys.parse(&keys.name("h1", "c1")),
            Some(Key::Name("h1".into(), "c1".into()))
        );
        assert_eq!(keys.parse(b"/weave/names/h1/a/b"), None);
        assert_eq!(keys.parse(b"/weave/names/../c1"), None);
        assert_eq!(keys.parse(b"/weave/blocks/10.32.0.65-26"), None);
        assert_eq!(keys.parse(b"/other/hosts/h1"), None);
        assert_eq!(keys.parse(b"/weave/hosts/a/b"), None);
    }

    #[test]
    fn odd_values_in_etcd_are_never_shown_as_they_are() {
        assert_eq!(owner_name(b"h1"), "h1");
        assert_eq!(owner_name(b"h1\x1b[31m"), UNREADABLE);
        assert_eq!(owner_name(&[0xff, 0x00]), UNREADABLE);
        let odd = AddrInfo {
            host: "a\nb".into(),
            container: "../x".into(),
        }
        .sanitized();
        assert_eq!(
            (odd.host.as_str(), odd.container.as_str()),
            (UNREADABLE, UNREADABLE)
        );
    }

    #[test]
    fn names_and_prefixes_are_checked() {
        assert!(parse_host_name("node-1.example_2").is_ok());
        for bad in ["", "a/b", "a b", "..", &"x".repeat(64)] {
            assert!(parse_host_name(bad).is_err(), "{bad:?}");
        }
        assert!(parse_prefix("/weave/").is_ok());
        for bad in ["weave/", "/weave", "/", "/we ave/"] {
            assert!(parse_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
