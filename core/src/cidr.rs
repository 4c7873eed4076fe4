//! The `weave.cidr` syntax, parsed into typed requests at the edge.
//!
//! Weave's own syntax: a list separated by spaces or commas of `ip/len`, `ip:ip/len`,
//! `net:subnet`, `net:default`, the empty string (= `net:default`) or `none`.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use thiserror::Error;

/// At most this many entries: weave's multi-CIDR attach is for a handful of addresses, and a
/// bound keeps a hostile annotation from making the hook do unbounded work.
pub const MAX_ENTRIES: usize = 16;
/// Longest accepted `weave.cidr` value, in bytes.
pub const MAX_LEN: usize = 1024;

/// One address the container asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrRequest {
    /// Exactly this address and prefix.
    Exact(Ipv4Net),
    /// Any free address of this subnet.
    Allocate(Ipv4Net),
    /// Any free address of the configured default range (`--ipalloc-range`).
    DefaultRange,
}

/// What a `weave.cidr` value asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrSpec {
    /// `none`: leave the container alone.
    None,
    /// Attach with these addresses, in the order given (never empty).
    Attach(Vec<AddrRequest>),
}

/// Why a `weave.cidr` value was refused. Each message names the offending entry.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CidrError {
    #[error("value is {0} bytes long, at most {MAX_LEN} are accepted")]
    TooLong(usize),
    #[error("{0} entries given, at most {MAX_ENTRIES} are accepted")]
    TooMany(usize),
    #[error("'none' cannot be combined with other entries")]
    NoneWithOthers,
    #[error(
        "entry '{0}' has no prefix length; write it as {0}/24 (or whatever the subnet's length is)"
    )]
    MissingPrefix(String),
    #[error("entry '{0}' is not an IPv4 address with prefix length (like 10.2.0.5/24)")]
    BadAddress(String),
    #[error("entry '{0}' uses unknown prefix '{1}:'; known are 'ip:' and 'net:'")]
    UnknownPrefix(String, String),
    #[error("entry '{0}': prefix length /0 would route every address to ethwe")]
    ZeroPrefix(String),
    #[error("entry '{0}': {1} is not a unicast address")]
    NotUnicast(String, Ipv4Addr),
    #[error("entry '{0}' is the network address of {1}; pick a host address, or net:{1} to have one allocated")]
    NetworkAddress(String, Ipv4Net),
    #[error("entry '{0}' is the broadcast address of {1}")]
    BroadcastAddress(String, Ipv4Net),
    #[error("entry '{0}' has host bits set; the subnet is net:{1}")]
    NotASubnet(String, Ipv4Net),
    #[error("entry '{0}': a /{1} subnet has no address to allocate; use /30 or shorter")]
    SubnetTooSmall(String, u8),
    #[error("entry '{0}' is listed twice")]
    Duplicate(String),
    #[error("IPv6 entry '{0}' is not supported yet")]
    Ipv6(String),
}

/// Parses a `weave.cidr` value.
pub fn parse(value: &str) -> Result<CidrSpec, CidrError> {
    if value.len() > MAX_LEN {
        return Err(CidrError::TooLong(value.len()));
    }
    let entries: Vec<&str> = value
        .split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|e| !e.is_empty())
        .collect();
    if entries.len() > MAX_ENTRIES {
        return Err(CidrError::TooMany(entries.len()));
    }
    if entries.contains(&"none") {
        return match entries.len() {
            1 => Ok(CidrSpec::None),
            _ => Err(CidrError::NoneWithOthers),
        };
    }
    if entries.is_empty() {
        return Ok(CidrSpec::Attach(vec![AddrRequest::DefaultRange]));
    }
    let mut requests = Vec::with_capacity(entries.len());
    for entry in entries {
        let request = parse_entry(entry)?;
        if requests.contains(&request) {
            return Err(CidrError::Duplicate(entry.to_string()));
        }
        requests.push(request);
    }
    Ok(CidrSpec::Attach(requests))
}

fn parse_entry(entry: &str) -> Result<AddrRequest, CidrError> {
    match entry.split_once(':') {
        Some(("net", "default")) => Ok(AddrRequest::DefaultRange),
        Some(("net", subnet)) => parse_subnet(entry, subnet).map(AddrRequest::Allocate),
        Some(("ip", addr)) => parse_exact(entry, addr).map(AddrRequest::Exact),
        Some((prefix, _)) if prefix.contains('.') || prefix.is_empty() => {
            Err(CidrError::Ipv6(entry.to_string()))
        }
        Some((prefix, _)) if prefix.chars().all(|c| c.is_ascii_hexdigit()) => {
            Err(CidrError::Ipv6(entry.to_string()))
        }
        Some((prefix, _)) => Err(CidrError::UnknownPrefix(
            entry.to_string(),
            prefix.to_string(),
        )),
        None => parse_exact(entry, entry).map(AddrRequest::Exact),
    }
}

fn parse_net(entry: &str, text: &str) -> Result<Ipv4Net, CidrError> {
    let bad = || CidrError::BadAddress(entry.to_string());
    let Some((addr, prefix)) = text.split_once('/') else {
        return match text.parse::<Ipv4Addr>() {
            Ok(_) => Err(CidrError::MissingPrefix(entry.to_string())),
            Err(_) => Err(bad()),
        };
    };
    // std's parser refuses leading zeros ("010" could be read as octal); ipnet's does not.
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let canonical_prefix = !prefix.is_empty()
        && prefix.len() <= 2
        && prefix.bytes().all(|b| b.is_ascii_digit())
        && !(prefix.len() == 2 && prefix.starts_with('0'));
    if !canonical_prefix {
        return Err(bad());
    }
    let net = Ipv4Net::new(addr, prefix.parse().map_err(|_| bad())?).map_err(|_| bad())?;
    if net.prefix_len() == 0 {
        return Err(CidrError::ZeroPrefix(entry.to_string()));
    }
    Ok(net)
}

fn parse_exact(entry: &str, text: &str) -> Result<Ipv4Net, CidrError> {
    let net = parse_net(entry, text)?;
    let ip = net.addr();
    if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || ip.is_broadcast() {
        return Err(CidrError::NotUnicast(entry.to_string(), ip));
    }
    // /31 and /32 have no network or broadcast address (RFC 3021).
    if net.prefix_len() <= 30 {
        if ip == net.network() {
            return Err(CidrError::NetworkAddress(entry.to_string(), net.trunc()));
        }
        if ip == net.broadcast() {
            return Err(CidrError::BroadcastAddress(entry.to_string(), net.trunc()));
        }
    }
    Ok(net)
}

fn parse_subnet(entry: &str, text: &str) -> Result<Ipv4Net, CidrError> {
    let net = parse_net(entry, text)?;
    if net.addr() != net.network() {
        return Err(CidrError::NotASubnet(entry.to_string(), net.trunc()));
    }
    if net.prefix_len() > 30 {
        return Err(CidrError::SubnetTooSmall(
            entry.to_string(),
            net.prefix_len(),
        ));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn exact_forms() {
        let want = CidrSpec::Attach(vec![AddrRequest::Exact(net("10.2.0.5/24"))]);
        assert_eq!(parse("10.2.0.5/24"), Ok(want.clone()));
        assert_eq!(parse("ip:10.2.0.5/24"), Ok(want.clone()));
        assert_eq!(parse("  10.2.0.5/24\n"), Ok(want));
    }

    #[test]
    fn allocation_forms() {
        assert_eq!(
            parse("net:10.2.0.0/24"),
            Ok(CidrSpec::Attach(vec![AddrRequest::Allocate(net(
                "10.2.0.0/24"
            ))]))
        );
        let default = Ok(CidrSpec::Attach(vec![AddrRequest::DefaultRange]));
        assert_eq!(parse("net:default"), default);
        assert_eq!(parse(""), default);
        assert_eq!(parse("  , "), default);
    }

    #[test]
    fn none_opts_out_alone_only() {
        assert_eq!(parse("none"), Ok(CidrSpec::None));
        assert_eq!(parse(" none "), Ok(CidrSpec::None));
        assert_eq!(parse("none 10.2.0.5/24"), Err(CidrError::NoneWithOthers));
    }

    #[test]
    fn several_entries_keep_their_order() {
        let got = parse("10.2.0.5/24, net:10.3.0.0/16 net:default,ip:10.4.0.9/8").unwrap();
        assert_eq!(
            got,
            CidrSpec::Attach(vec![
                AddrRequest::Exact(net("10.2.0.5/24")),
                AddrRequest::Allocate(net("10.3.0.0/16")),
                AddrRequest::DefaultRange,
                AddrRequest::Exact(net("10.4.0.9/8")),
            ])
        );
    }

    #[test]
    fn slash_31_and_32_have_no_network_or_broadcast() {
        assert!(parse("10.2.0.4/31").is_ok());
        assert!(parse("10.2.0.5/31").is_ok());
        assert!(parse("10.2.0.4/32").is_ok());
    }

    #[test]
    fn refusals_name_the_entry() {
        let cases: &[(&str, CidrError)] = &[
            ("10.2.0.5", CidrError::MissingPrefix("10.2.0.5".into())),
            (
                "10.2.0.256/24",
                CidrError::BadAddress("10.2.0.256/24".into()),
            ),
            ("10.2.0.5/33", CidrError::BadAddress("10.2.0.5/33".into())),
            ("10.2.0.5/-1", CidrError::BadAddress("10.2.0.5/-1".into())),
            ("10.2.0.5/0", CidrError::ZeroPrefix("10.2.0.5/0".into())),
            ("010.2.0.5/24", CidrError::BadAddress("010.2.0.5/24".into())),
            ("10.2.0.٥/24", CidrError::BadAddress("10.2.0.٥/24".into())),
            ("10.2.0.5/２4", CidrError::BadAddress("10.2.0.5/２4".into())),
            ("10.2.0/24", CidrError::BadAddress("10.2.0/24".into())),
            (
                "10.2.0.5/24;reboot",
                CidrError::BadAddress("10.2.0.5/24;reboot".into()),
            ),
            ("$(reboot)", CidrError::BadAddress("$(reboot)".into())),
            (
                "10.2.0.0/24",
                CidrError::NetworkAddress("10.2.0.0/24".into(), net("10.2.0.0/24")),
            ),
            (
                "10.2.0.255/24",
                CidrError::BroadcastAddress("10.2.0.255/24".into(), net("10.2.0.0/24")),
            ),
            (
                "127.0.0.1/8",
                CidrError::NotUnicast("127.0.0.1/8".into(), "127.0.0.1".parse().unwrap()),
            ),
            (
                "224.0.0.1/4",
                CidrError::NotUnicast("224.0.0.1/4".into(), "224.0.0.1".parse().unwrap()),
            ),
            (
                "0.0.0.0/8",
                CidrError::NotUnicast("0.0.0.0/8".into(), "0.0.0.0".parse().unwrap()),
            ),
            (
                "net:10.2.0.5/24",
                CidrError::NotASubnet("net:10.2.0.5/24".into(), net("10.2.0.0/24")),
            ),
            (
                "net:10.2.0.4/31",
                CidrError::SubnetTooSmall("net:10.2.0.4/31".into(), 31),
            ),
            (
                "net:10.2.0.0",
                CidrError::MissingPrefix("net:10.2.0.0".into()),
            ),
            ("net:", CidrError::BadAddress("net:".into())),
            ("ip:", CidrError::BadAddress("ip:".into())),
            (
                "mac:10.2.0.5/24",
                CidrError::UnknownPrefix("mac:10.2.0.5/24".into(), "mac".into()),
            ),
            (
                "NET:10.2.0.0/24",
                CidrError::UnknownPrefix("NET:10.2.0.0/24".into(), "NET".into()),
            ),
            ("fd00::1/64", CidrError::Ipv6("fd00::1/64".into())),
            ("::1/128", CidrError::Ipv6("::1/128".into())),
            (
                "10.2.0.5/24 10.2.0.5/24",
                CidrError::Duplicate("10.2.0.5/24".into()),
            ),
            (
                "net:default net:default",
                CidrError::Duplicate("net:default".into()),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input).as_ref(), Err(want), "input {input:?}");
            assert!(
                want.to_string()
                    .contains(input.split_whitespace().last().unwrap())
                    || matches!(want, CidrError::NoneWithOthers)
            );
        }
    }

    #[test]
    fn bounded_input() {
        let many = (1..=17)
            .map(|i| format!("10.2.0.{i}/24"))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(parse(&many), Err(CidrError::TooMany(17)));
        let thousands = "net:default ".repeat(2000);
        assert_eq!(parse(&thousands), Err(CidrError::TooLong(thousands.len())));
    }
}
