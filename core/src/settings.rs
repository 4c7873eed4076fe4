//! Settings of the weave network on a host (bridge, range, state directory, MTU, log level,
//! weave DNS's address), their defaults, and the one validator of each. weave-hook parses its
//! flags with these; weave-runtime checks its `--weave-*` flags and weave-setup its
//! `--runtime-arg` values with the same ones, so a value one accepts the others accept.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use ipnet::Ipv4Net;

use crate::id::ContainerId;
use crate::layout::StateDir;

pub use crate::layout::DEFAULT_STATE_DIR;
pub const DEFAULT_BRIDGE: &str = "weave";
pub const DEFAULT_RANGE: &str = "10.32.0.0/12";
pub const DEFAULT_LOG_LEVEL: &str = "warn";
/// Linux interface names are at most 15 bytes.
pub const MAX_IFNAME: usize = 15;
/// Name of the container's end of the veth pair, as in weave.
pub const CONTAINER_IFNAME: &str = "ethwe";
pub const VETH_PREFIX: &str = "vethwe";
pub const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];

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
    /// The defaults of every setting.
    pub fn defaults() -> Self {
        Self {
            bridge: DEFAULT_BRIDGE.into(),
            ipalloc_range: DEFAULT_RANGE.parse().expect("default range is valid"),
            state_dir: DEFAULT_STATE_DIR.into(),
            mtu: None,
            dns: DnsSettings::default(),
        }
    }

    /// Weave DNS's address: the flag, else the first host address of the allocation range
    /// with the range's prefix (10.32.0.1/12), which the allocator never hands out.
    pub fn dns_addr(&self) -> Ipv4Net {
        self.dns
            .addr
            .unwrap_or_else(|| first_host(self.ipalloc_range))
    }

    pub fn layout(&self) -> StateDir {
        StateDir::new(&self.state_dir)
    }
}

/// The first host address of a subnet, with the subnet's prefix.
pub fn first_host(range: Ipv4Net) -> Ipv4Net {
    let first = range.hosts().next().unwrap_or(range.addr());
    Ipv4Net::new(first, range.prefix_len()).expect("prefix of a valid subnet")
}

/// FNV-1a: a stable, dependency-free hash (veth names, allocation hints).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The host end of a container's veth: `vethwe` and 9 hex digits of a hash of its id
/// (15 bytes, the kernel's limit), so detach and gc find it from the id alone.
pub fn host_veth_name(id: &ContainerId) -> String {
    format!(
        "{VETH_PREFIX}{:09x}",
        fnv1a(id.as_str().as_bytes()) & 0xf_ffff_ffff
    )
}

/// The VXLAN device of a bridge's mesh overlay (weave-mesh): `vx-` and the bridge's name
/// when that fits in 15 bytes, else `vx-` and 12 hex digits of a hash of the name. One rule,
/// so the agent, `weave-hook reset` and the tests all find it from the bridge alone.
pub fn vxlan_name(bridge: &str) -> String {
    let plain = format!("vx-{bridge}");
    match plain.len() <= MAX_IFNAME {
        true => plain,
        false => format!("vx-{:012x}", fnv1a(bridge.as_bytes()) & 0xffff_ffff_ffff),
    }
}

/// The kernel's rule for interface names (dev_valid_name).
pub fn parse_bridge(name: &str) -> Result<String, String> {
    if name.is_empty() || name.len() > MAX_IFNAME {
        return Err(format!("{name:?} must be 1 to {MAX_IFNAME} bytes long"));
    }
    if name == "."
        || name == ".."
        || name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(format!(
            "{name:?} is not a valid interface name (no '/', ':' or whitespace)"
        ));
    }
    Ok(name.to_string())
}

/// An allocation range: a subnet without host bits, /1 to /29.
pub fn parse_range(text: &str) -> Result<Ipv4Net, String> {
    let net: Ipv4Net = text
        .parse()
        .map_err(|_| format!("{text:?} is not an IPv4 subnet like 10.32.0.0/12"))?;
    if net != net.trunc() {
        return Err(format!(
            "{text:?} has host bits set; the subnet is {}",
            net.trunc()
        ));
    }
    if net.prefix_len() > 29 || net.prefix_len() == 0 {
        return Err(format!("{text:?}: use a prefix length from /1 to /29"));
    }
    Ok(net)
}

/// Weave DNS's address on the bridge: a unicast host address with its prefix.
pub fn parse_dns_addr(text: &str) -> Result<Ipv4Net, String> {
    let net: Ipv4Net = text
        .parse()
        .map_err(|_| format!("{text:?} is not an IPv4 address with prefix like 10.32.0.1/12"))?;
    let ip = net.addr();
    if ip.is_loopback() || ip.is_multicast() || ip.is_unspecified() || ip.is_broadcast() {
        return Err(format!("{text:?} cannot be a bridge address"));
    }
    if net.prefix_len() < 31 && (ip == net.network() || ip == net.broadcast()) {
        return Err(format!(
            "{text:?} is the network or broadcast address of its prefix"
        ));
    }
    Ok(net)
}

/// Inside the allocation range only the address allocation keeps free may serve DNS.
pub fn check_dns_addr(range: Ipv4Net, dns: Option<Ipv4Net>) -> Result<(), String> {
    let Some(addr) = dns else {
        return Ok(());
    };
    let kept = first_host(range);
    if range.contains(&addr.addr()) && addr.addr() != kept.addr() {
        return Err(format!(
            "--dns-addr {addr} is inside --ipalloc-range {range}, where containers get addresses; use {} (kept free for weave) or an address outside the range",
            kept.addr()
        ));
    }
    Ok(())
}

pub fn parse_mtu(text: &str) -> Result<u32, String> {
    text.parse::<u32>()
        .ok()
        .filter(|m| (68..=65535).contains(m))
        .ok_or_else(|| format!("{text:?} is not an MTU from 68 to 65535"))
}

pub fn parse_log_level(text: &str) -> Result<String, String> {
    let level = text.to_ascii_lowercase();
    match LOG_LEVELS.contains(&level.as_str()) {
        true => Ok(level),
        false => Err(format!(
            "{text:?} is not a log level; use one of {}",
            LOG_LEVELS.join(", ")
        )),
    }
}

/// A state directory: an absolute path (it becomes hook arguments and mount sources).
pub fn parse_state_dir(text: &str) -> Result<PathBuf, String> {
    match text.starts_with('/') {
        true => Ok(PathBuf::from(text)),
        false => Err(format!("{text:?} is not an absolute path")),
    }
}

/// An upstream resolver: `IP` (port 53) or `IP:PORT` (`[IPv6]:PORT`).
pub fn parse_upstream(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>()
        .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| format!("{text:?} is not an IP address or IP:PORT"))
}

/// The settings flags of weave-hook that weave-runtime passes on (as `--weave-<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookFlag {
    Bridge,
    IpallocRange,
    StateDir,
    Mtu,
    LogLevel,
    DnsAddr,
}

impl HookFlag {
    pub const ALL: [HookFlag; 6] = [
        Self::Bridge,
        Self::IpallocRange,
        Self::StateDir,
        Self::Mtu,
        Self::LogLevel,
        Self::DnsAddr,
    ];

    /// weave-hook's flag name, without the dashes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bridge => "bridge",
            Self::IpallocRange => "ipalloc-range",
            Self::StateDir => "state-dir",
            Self::Mtu => "mtu",
            Self::LogLevel => "log-level",
            Self::DnsAddr => "dns-addr",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Checks a value with weave-hook's own validator; returns it as the hook will be given it.
    pub fn check(self, value: &str) -> Result<String, String> {
        match self {
            Self::Bridge => parse_bridge(value),
            Self::IpallocRange => parse_range(value).map(|n| n.to_string()),
            Self::StateDir => parse_state_dir(value).map(|_| value.to_string()),
            Self::Mtu => parse_mtu(value).map(|m| m.to_string()),
            Self::LogLevel => parse_log_level(value),
            Self::DnsAddr => parse_dns_addr(value).map(|n| n.to_string()),
        }
    }
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
    fn vxlan_names_fit_and_follow_the_bridge() {
        assert_eq!(vxlan_name("weave"), "vx-weave");
        assert_eq!(vxlan_name("abcdefghijkl"), "vx-abcdefghijkl");
        let long = vxlan_name("abcdefghijklm");
        assert_eq!(long.len(), MAX_IFNAME);
        assert!(long.starts_with("vx-"));
        assert_ne!(long, vxlan_name("abcdefghijklmn"));
        assert!(parse_bridge(&long).is_ok());
    }

    #[test]
    fn dns_address_defaults_to_the_ranges_first_host() {
        let mut s = Settings::defaults();
        assert_eq!(s.dns_addr(), "10.32.0.1/12".parse().unwrap());
        s.ipalloc_range = "10.40.0.0/16".parse().unwrap();
        assert_eq!(s.dns_addr(), "10.40.0.1/16".parse().unwrap());
        s.dns.addr = Some("10.2.0.53/24".parse().unwrap());
        assert_eq!(s.dns_addr(), "10.2.0.53/24".parse().unwrap());
    }

    #[test]
    fn interface_name_rules() {
        assert!(parse_bridge("weave").is_ok());
        assert!(parse_bridge("123456789012345").is_ok());
        for bad in ["1234567890123456", "", "a/b", "a b", "..", "a:b"] {
            assert!(parse_bridge(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(
            parse_range("10.32.0.0/12").unwrap(),
            "10.32.0.0/12".parse().unwrap()
        );
        let err = parse_range("10.32.5.0/12").unwrap_err();
        assert!(
            err.contains("host bits") && err.contains("10.32.0.0/12"),
            "{err}"
        );
        for bad in ["10.0.0.0/30", "0.0.0.0/0", "x", "10.0.0.0"] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dns_addr_values() {
        assert!(parse_dns_addr("10.40.0.53/24").is_ok());
        assert!(parse_dns_addr("10.40.0.53/32").is_ok());
        for bad in [
            "10.40.0.53",
            "10.40.0.0/24",
            "10.40.0.255/24",
            "127.0.0.1/8",
            "x",
        ] {
            assert!(parse_dns_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dns_addr_inside_the_range_must_be_its_kept_first_host() {
        let range: Ipv4Net = DEFAULT_RANGE.parse().unwrap();
        let dns = |s: &str| Some(s.parse().unwrap());
        assert!(check_dns_addr(range, None).is_ok());
        assert!(check_dns_addr(range, dns("10.32.0.1/12")).is_ok());
        assert!(check_dns_addr(range, dns("10.2.0.53/24")).is_ok());
        let err = check_dns_addr(range, dns("10.32.0.7/12")).unwrap_err();
        assert!(err.contains("use 10.32.0.1"), "{err}");
        let range: Ipv4Net = "10.40.0.0/16".parse().unwrap();
        let err = check_dns_addr(range, dns("10.40.9.9/16")).unwrap_err();
        assert!(err.contains("use 10.40.0.1"), "{err}");
    }

    #[test]
    fn log_levels_mtu_state_dir() {
        assert_eq!(parse_log_level("INFO").unwrap(), "info");
        assert!(parse_log_level("verbose")
            .unwrap_err()
            .contains("error, warn, info, debug, trace"));
        assert_eq!(parse_mtu("1450").unwrap(), 1450);
        for bad in ["67", "65536", "x", ""] {
            assert!(parse_mtu(bad).is_err(), "{bad}");
        }
        assert!(parse_state_dir("/run/w").is_ok());
        assert!(parse_state_dir("run/w").is_err());
    }

    #[test]
    fn upstreams() {
        assert_eq!(
            parse_upstream("10.9.0.1").unwrap(),
            "10.9.0.1:53".parse().unwrap()
        );
        assert_eq!(
            parse_upstream("10.9.0.1:5353").unwrap(),
            "10.9.0.1:5353".parse().unwrap()
        );
        assert_eq!(
            parse_upstream("[fd00::1]:53").unwrap(),
            "[fd00::1]:53".parse().unwrap()
        );
        assert_eq!(parse_upstream("fd00::1").unwrap().port(), 53);
        assert!(parse_upstream("resolver.example").is_err());
    }

    #[test]
    fn hook_flags_by_name() {
        for f in HookFlag::ALL {
            assert_eq!(HookFlag::from_name(f.name()), Some(f));
        }
        assert_eq!(HookFlag::from_name("runtime"), None);
        assert!(HookFlag::IpallocRange.check("10.32.5.0/12").is_err());
        assert!(HookFlag::LogLevel.check("verbose").is_err());
        assert_eq!(HookFlag::Mtu.check("1400").unwrap(), "1400");
    }
}
