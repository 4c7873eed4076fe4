//! Settings shared by every command: where the network and the state live.

use std::net::SocketAddr;
use std::path::PathBuf;

use ipnet::Ipv4Net;

use crate::oci::ContainerId;
use crate::store::fnv1a;

pub const DEFAULT_BRIDGE: &str = "weave";
pub const DEFAULT_RANGE: &str = "10.32.0.0/12";
pub const DEFAULT_STATE_DIR: &str = "/run/weave";
/// Linux interface names are at most 15 bytes.
pub const MAX_IFNAME: usize = 15;
/// Name of the container's end of the veth pair, as in weave.
pub const CONTAINER_IFNAME: &str = "ethwe";
pub const VETH_PREFIX: &str = "vethwe";

#[derive(Debug, Clone)]
pub struct Settings {
    pub bridge: String,
    pub ipalloc_range: Ipv4Net,
    pub state_dir: PathBuf,
    pub mtu: Option<u32>,
    pub dns: DnsSettings,
}

/// Weave DNS: where its server listens and how the hook starts it.
#[derive(Debug, Clone, Default)]
pub struct DnsSettings {
    /// The address (and prefix) put on the bridge; `None` means the range's first host.
    pub addr: Option<Ipv4Net>,
    /// The weave-dns executable; `None` means `weave-dns` next to weave-hook's own.
    pub server_path: Option<PathBuf>,
    /// Upstream resolvers given to a weave-dns this hook starts; empty means its default
    /// (the host's /etc/resolv.conf).
    pub upstreams: Vec<SocketAddr>,
}

impl Settings {
    /// Weave DNS's address: the flag, else the first host address of the allocation range
    /// with the range's prefix (10.32.0.1/12), which the allocator never hands out.
    pub fn dns_addr(&self) -> Ipv4Net {
        self.dns
            .addr
            .unwrap_or_else(|| first_host(self.ipalloc_range))
    }
}

/// The first host address of a subnet, with the subnet's prefix.
pub fn first_host(range: Ipv4Net) -> Ipv4Net {
    let first = range.hosts().next().unwrap_or(range.addr());
    Ipv4Net::new(first, range.prefix_len()).expect("prefix of a valid subnet")
}

/// The host end of a container's veth: `vethwe` and 9 hex digits of a hash of its id
/// (15 bytes, the kernel's limit), so detach and gc find it from the id alone.
pub fn host_veth_name(id: &ContainerId) -> String {
    format!(
        "{VETH_PREFIX}{:09x}",
        fnv1a(id.as_str().as_bytes()) & 0xf_ffff_ffff
    )
}

/// Checks a bridge name against the kernel's rules for interface names.
pub fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_IFNAME {
        return Err(format!("{name:?} must be 1 to {MAX_IFNAME} bytes long"));
    }
    if name == "."
        || name == ".."
        || name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(format!("{name:?} is not a valid interface name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_fit_and_are_stable() {
        let id = ContainerId::parse(&"f".repeat(64)).unwrap();
        let name = host_veth_name(&id);
        assert_eq!(name.len(), MAX_IFNAME);
        assert!(name.starts_with("vethwe"));
        assert_eq!(name, host_veth_name(&id));
        assert_ne!(name, host_veth_name(&ContainerId::parse("other").unwrap()));
    }

    #[test]
    fn dns_address_defaults_to_the_ranges_first_host() {
        let mut s = Settings {
            bridge: DEFAULT_BRIDGE.into(),
            ipalloc_range: DEFAULT_RANGE.parse().unwrap(),
            state_dir: DEFAULT_STATE_DIR.into(),
            mtu: None,
            dns: DnsSettings::default(),
        };
        assert_eq!(s.dns_addr(), "10.32.0.1/12".parse().unwrap());
        s.ipalloc_range = "10.40.0.0/16".parse().unwrap();
        assert_eq!(s.dns_addr(), "10.40.0.1/16".parse().unwrap());
        s.dns.addr = Some("10.2.0.53/24".parse().unwrap());
        assert_eq!(s.dns_addr(), "10.2.0.53/24".parse().unwrap());
    }

    #[test]
    fn interface_name_rules() {
        assert!(check_ifname("weave").is_ok());
        assert!(check_ifname("123456789012345").is_ok());
        assert!(check_ifname("1234567890123456").is_err());
        assert!(check_ifname("").is_err());
        assert!(check_ifname("a/b").is_err());
        assert!(check_ifname("a b").is_err());
        assert!(check_ifname("..").is_err());
    }
}
