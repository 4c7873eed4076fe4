//! The host closed to the bridge: weave's own nftables table, `inet weave-hook`.
//!
//! Without it, a container reaches every host service listening on 0.0.0.0 through weave
//! DNS's address on the bridge, and (with CAP_NET_ADMIN and a default route via the bridge)
//! every network the host forwards to. The table lets in, from a weave bridge, only what its
//! set `host_open` lists (weave DNS: udp and tcp 53 on its address), the host's addresses
//! the administrator exposed (`host_exposed`, `weave-hook expose`: everything on them) and
//! replies to connections the host opened; it forwards from a weave bridge only between that bridge's
//! own ports (bridged traffic, which br_netfilter shows to the forward hook).
//!
//! Everything a bridge adds is an element: the bridge in `bridges`, the pair (bridge,
//! bridge) in `bridged`, (bridge, address, protocol, port) in `host_open`. The rules refer
//! only to the sets, so one table serves every bridge and state directory, and opening the
//! host further (an exposed address, a masqueraded way out) is one element more, not a new
//! rule set.
//!
//! The same transaction writes the table `bridge weave-hook` that guards container ports
//! (its rules; the ports' elements are `portguard`'s).
//!
//! The tables are written by `nft -f -`, a process, only when the bridge's DNS element is
//! missing: at a bridge's first attach, after a flush (`nft flush ruleset`, a firewalld
//! reload) and when the DNS address changed. The common attach asks the kernel one netlink
//! question instead ([`nftgen::has_element`]). `weave-hook gc` writes it whatever is there.

use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::process::Stdio;
use std::time::Duration;

use thiserror::Error;

use crate::firewall::exits_within;
use crate::nftgen::{self, FAMILY_INET};

/// The table's name (family `inet`).
pub const TABLE: &str = "weave-hook";
/// How long one `nft` process may run before it is killed.
const DEADLINE: Duration = Duration::from_secs(10);
/// The kernel's interface name size (IFNAMSIZ): an `ifname` key is this many bytes.
const IFNAMSIZ: usize = 16;

#[derive(Debug, Error)]
pub enum NftError {
    #[error("cannot run nft (weave closes the host to its bridge with nftables; install the `nftables` package): {0}")]
    Spawn(#[source] io::Error),
    #[error("`nft -f -` failed for bridge {bridge}: {stderr}")]
    Failed { bridge: String, stderr: String },
    #[error("`nft -f -` for bridge {bridge} did not finish within {}s and was killed", DEADLINE.as_secs())]
    TimedOut { bridge: String },
    #[error("running `nft -f -` for bridge {bridge}")]
    Io {
        bridge: String,
        #[source]
        source: io::Error,
    },
    #[error("bridge name {0:?} cannot be written in an nftables rule (it holds '\"', '*' or '\\'); choose another --bridge")]
    Unquotable(String),
    #[error("asking nf_tables whether table inet {TABLE} is in place")]
    Query(#[source] io::Error),
}

/// When the table is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewrite {
    /// Only when the bridge's DNS element is missing (attach).
    WhenMissing,
    /// Always (`weave-hook gc`, the repair command: a rule may be gone with its elements
    /// still there).
    Always,
}

/// What of the host a bridge reaches: weave DNS's address (its port 53), and the host's
/// exposed addresses (everything on them).
#[derive(Debug, Clone, Copy)]
pub struct Openings<'a> {
    pub dns: Ipv4Addr,
    pub exposed: &'a [Ipv4Addr],
}

/// Makes sure the table closes the host to `bridge` but for its `openings`. Returns
/// whether `nft` ran.
pub fn ensure(bridge: &str, openings: Openings, rewrite: Rewrite) -> Result<bool, NftError> {
    quotable(bridge)?;
    if rewrite == Rewrite::WhenMissing && has_dns_element(bridge, openings.dns)? {
        return Ok(false);
    }
    run_nft(bridge, &script(bridge, openings, Change::Add))?;
    Ok(true)
}

/// Closes exposed addresses of `bridge` again (`weave-hook hide`), keeping the rest of
/// its `openings`.
pub fn withdraw(bridge: &str, openings: Openings, hidden: &[Ipv4Addr]) -> Result<(), NftError> {
    quotable(bridge)?;
    let mut s = script(bridge, openings, Change::Add);
    for ip in hidden {
        let e = format!("inet {TABLE} host_exposed {{ \"{bridge}\" . {ip} }}");
        s.push_str(&format!("add element {e}\ndelete element {e}\n"));
    }
    run_nft(bridge, &s)
}

/// Removes what `bridge` added (when the bridge goes away). The table and its rules stay:
/// other bridges may use them, and without elements they let everything pass.
pub fn remove(bridge: &str, openings: Openings) -> Result<(), NftError> {
    quotable(bridge)?;
    let in_place = nftgen::has_element(FAMILY_INET, TABLE, "bridges", &ifname_key(bridge))
        .map_err(NftError::Query)?;
    if in_place || has_dns_element(bridge, openings.dns)? {
        run_nft(bridge, &script(bridge, openings, Change::Remove))?;
    }
    Ok(())
}

/// A name goes into the script between double quotes, where nft knows no escapes, and a
/// trailing `*` would make it a wildcard.
pub(crate) fn quotable(bridge: &str) -> Result<(), NftError> {
    match bridge.contains(['"', '*', '\\']) {
        true => Err(NftError::Unquotable(bridge.to_string())),
        false => Ok(()),
    }
}

fn has_dns_element(bridge: &str, dns: Ipv4Addr) -> Result<bool, NftError> {
    nftgen::has_element(
        FAMILY_INET,
        TABLE,
        "host_open",
        &open_key(bridge, dns, 17, 53),
    )
    .map_err(NftError::Query)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Add,
    Remove,
}

/// One nft transaction: the table's structure (every `add` is a no-op when it exists; the
/// chains are flushed and their rules written again, so a run never duplicates a rule),
/// then the bridge's elements added, or added and deleted (an element must exist to be
/// deleted, and nft 1.0.6 has no `destroy`). All of it applies, or none.
fn script(bridge: &str, openings: Openings, change: Change) -> String {
    let dns = openings.dns;
    let t = format!("inet {TABLE}");
    let mut s = format!(
        "add table {t}\n\
         add set {t} bridges {{ type ifname; comment \"weave bridges: the host is closed to them\"; }}\n\
         add set {t} bridged {{ type ifname . ifname; comment \"forwarded: between the ports of one bridge\"; }}\n\
         add set {t} host_open {{ type ifname . ipv4_addr . inet_proto . inet_service; comment \"what a bridge reaches on the host\"; }}\n\
         add set {t} host_exposed {{ type ifname . ipv4_addr; comment \"the host's exposed addresses: everything on them\"; }}\n\
         add set {t} masq {{ type ipv4_addr; comment \"containers with a way out (weave.route=default), masqueraded\"; }}\n\
         add chain {t} input {{ type filter hook input priority filter; policy accept; }}\n\
         add chain {t} forward {{ type filter hook forward priority filter; policy accept; }}\n\
         add chain {t} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}\n\
         flush chain {t} input\n\
         flush chain {t} forward\n\
         flush chain {t} postrouting\n\
         add rule {t} input iifname != @bridges accept\n\
         add rule {t} input ct state established,related accept\n\
         add rule {t} input iifname . ip daddr . meta l4proto . th dport @host_open accept\n\
         add rule {t} input iifname . ip daddr @host_exposed accept\n\
         add rule {t} input drop\n\
         add rule {t} forward iifname != @bridges accept\n\
         add rule {t} forward iifname . oifname @bridged accept\n\
         add rule {t} forward ip saddr @masq accept\n\
         add rule {t} forward drop\n\
         add rule {t} postrouting ip saddr @masq oifname != @bridges masquerade\n"
    );
    // The guard of the container ports (see `portguard`): its elements are the ports'.
    let g = format!("bridge {TABLE}");
    s.push_str(&format!(
        "add table {g}\n\
         add set {g} ports {{ type iface_index; comment \"container ports: frames only from the container itself\"; }}\n\
         add set {g} macs {{ type iface_index . ether_addr; comment \"each port's own MAC\"; }}\n\
         add set {g} ips {{ type iface_index . ipv4_addr; comment \"each port's own addresses\"; }}\n\
         add chain {g} prerouting {{ type filter hook prerouting priority filter; policy accept; }}\n\
         flush chain {g} prerouting\n\
         add rule {g} prerouting meta iif != @ports accept\n\
         add rule {g} prerouting meta iif . ether saddr != @macs drop\n\
         add rule {g} prerouting ether type ip meta iif . ip saddr @ips accept\n\
         add rule {g} prerouting ether type arp arp hlen 6 arp plen 4 meta iif . arp saddr ether @macs meta iif . arp saddr ip @ips accept\n\
         add rule {g} prerouting drop\n"
    ));
    let b = format!("\"{bridge}\"");
    let mut elements = vec![
        format!("{t} bridges {{ {b} }}"),
        format!("{t} bridged {{ {b} . {b} }}"),
        format!("{t} host_open {{ {b} . {dns} . udp . 53, {b} . {dns} . tcp . 53 }}"),
    ];
    elements.extend(
        openings
            .exposed
            .iter()
            .map(|ip| format!("{t} host_exposed {{ {b} . {ip} }}")),
    );
    for e in &elements {
        s.push_str(&format!("add element {e}\n"));
    }
    if change == Change::Remove {
        for e in &elements {
            s.push_str(&format!("delete element {e}\n"));
        }
    }
    s
}

/// An `ifname` key: the name, NUL-padded to IFNAMSIZ.
pub(crate) fn ifname_key(name: &str) -> Vec<u8> {
    let mut key = name.as_bytes().to_vec();
    key.resize(IFNAMSIZ, 0);
    key
}

/// A `host_open` key: ifname . ipv4_addr . inet_proto . inet_service, each field padded to
/// 4 bytes (nf_tables registers), the address and port in network order.
fn open_key(bridge: &str, addr: Ipv4Addr, proto: u8, port: u16) -> Vec<u8> {
    let mut key = ifname_key(bridge);
    key.extend(addr.octets());
    key.extend([proto, 0, 0, 0]);
    key.extend(port.to_be_bytes());
    key.extend([0, 0]);
    key
}

/// Runs `nft -f -` with `script` on stdin, killed after [`DEADLINE`].
pub(crate) fn run_nft(bridge: &str, script: &str) -> Result<(), NftError> {
    let io_err = |source| NftError::Io {
        bridge: bridge.to_string(),
        source,
    };
    let mut child = crate::tools::command("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    // A few kilobytes: within a pipe's buffer, so the write cannot block on nft.
    let written = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(script.as_bytes()))
        .unwrap_or(Ok(()));
    let exited = written.and_then(|()| exits_within(&child, DEADLINE));
    match exited {
        Ok(true) => {}
        other => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(match other {
                Err(e) => io_err(e),
                _ => NftError::TimedOut {
                    bridge: bridge.to_string(),
                },
            });
        }
    }
    let out = child.wait_with_output().map_err(io_err)?;
    match out.status.success() {
        true => Ok(()),
        false => Err(NftError::Failed {
            bridge: bridge.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_laid_out_as_nf_tables_stores_them() {
        // As `nft --debug=netlink get element inet weave-hook host_open
        // { "weave" . 10.32.0.1 . udp . 53 }` shows them.
        let key = open_key("weave", "10.32.0.1".parse().unwrap(), 17, 53);
        assert_eq!(key.len(), 28);
        assert_eq!(&key[..6], b"weave\0");
        assert_eq!(&key[16..], &[10, 32, 0, 1, 17, 0, 0, 0, 0, 53, 0, 0]);
    }

    #[test]
    fn removing_adds_first_so_the_transaction_never_fails_on_a_missing_element() {
        let openings = Openings {
            dns: "10.32.0.1".parse().unwrap(),
            exposed: &["10.32.0.254".parse().unwrap()],
        };
        let s = script("br0", openings, Change::Remove);
        let add = s.find("add element inet weave-hook bridges").unwrap();
        let delete = s.find("delete element inet weave-hook bridges").unwrap();
        assert!(add < delete);
        assert!(s.contains("\"br0\" . 10.32.0.1 . tcp . 53"));
        assert!(s.contains("delete element inet weave-hook host_exposed { \"br0\" . 10.32.0.254 }"));
        assert!(!script("br0", openings, Change::Add).contains("delete"));
    }
}
