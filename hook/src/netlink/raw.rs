//! rtnetlink replies read by hand where the crate's parser costs more than the request: a
//! link message. The crate parses every attribute of a link, the bridge's forty-odd
//! `IFLA_LINKINFO` ones among them, and formats an error context for each as it goes,
//! failure or not; a bridge lookup spent most of its time there (perf, BENCHMARKS.md).
//! Only the header and the attributes [`Link`] holds are read here.

use super::Link;
use crate::nlmsg::{attributes, header, u32_at, u8_attribute, HEADER_LEN};

const RTM_NEWLINK: u16 = 16;
/// `struct ifinfomsg`.
const IFINFO_LEN: usize = 16;
const IFF_UP: u32 = 1;

const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_IFALIAS: u16 = 20;
const IFLA_STATS64: u16 = 23;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_BR_MCAST_SNOOPING: u16 = 23;
const IFLA_INFO_SLAVE_KIND: u16 = 4;
const IFLA_INFO_SLAVE_DATA: u16 = 5;
const IFLA_BRPORT_STATE: u16 = 1;
/// `BR_STATE_FORWARDING` in `IFLA_BRPORT_STATE`.
const BR_STATE_FORWARDING: u8 = 3;

/// A whole `RTM_NEWLINK` message as [`Link`]; `None` for any other message, or a link
/// without a name.
pub(super) fn link(msg: &[u8]) -> Option<Link> {
    let body = newlink_body(msg)?;
    let info = body.get(..IFINFO_LEN)?;
    let mut link = Link {
        index: u32_at(info, 4),
        name: String::new(),
        up: u32_at(info, 8) & IFF_UP != 0,
        kind: None,
        master: None,
        alias: None,
        forwarding: false,
        mtu: 0,
        snooping: false,
    };
    let mut named = false;
    for (kind, value) in attributes(&body[IFINFO_LEN..]) {
        match kind {
            IFLA_IFNAME => {
                link.name = string(value);
                named = true;
            }
            IFLA_MTU if value.len() >= 4 => link.mtu = u32_at(value, 0),
            IFLA_MASTER if value.len() >= 4 => link.master = Some(u32_at(value, 0)),
            IFLA_IFALIAS => link.alias = Some(string(value)).filter(|a| !a.is_empty()),
            IFLA_LINKINFO => {
                let mut bridge_port = false;
                let mut state = None;
                let mut snooping = None;
                for (k, v) in attributes(value) {
                    match k {
                        IFLA_INFO_KIND => link.kind = Some(string(v)),
                        IFLA_INFO_DATA => snooping = u8_attribute(v, IFLA_BR_MCAST_SNOOPING),
                        IFLA_INFO_SLAVE_KIND => bridge_port = string(v) == "bridge",
                        IFLA_INFO_SLAVE_DATA => state = u8_attribute(v, IFLA_BRPORT_STATE),
                        _ => {}
                    }
                }
                link.forwarding = bridge_port && state == Some(BR_STATE_FORWARDING);
                // Another kind's attribute 23 is not the bridge's.
                link.snooping = link.kind.as_deref() == Some("bridge") && snooping == Some(1);
            }
            _ => {}
        }
    }
    named.then_some(link)
}

/// The packets a link has sent (`tx_packets` of `IFLA_STATS64`), from a whole
/// `RTM_NEWLINK` message; `None` for another message or one without the statistics.
pub(super) fn tx_packets(msg: &[u8]) -> Option<u64> {
    attributes(newlink_body(msg)?.get(IFINFO_LEN..)?)
        .find(|(kind, _)| *kind == IFLA_STATS64)
        .and_then(|(_, stats)| Some(u64::from_ne_bytes(stats.get(8..16)?.try_into().ok()?)))
}

/// The body (`ifinfomsg` and attributes) of a whole `RTM_NEWLINK` message; `None` for any
/// other message or a cut one.
fn newlink_body(msg: &[u8]) -> Option<&[u8]> {
    let hdr = header(msg).ok()?;
    if hdr.kind != RTM_NEWLINK {
        return None;
    }
    msg.get(HEADER_LEN..hdr.len)
}

/// A NUL-terminated (or not) string attribute.
fn string(value: &[u8]) -> String {
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nlmsg::align;

    fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
        out.extend(kind.to_ne_bytes());
        out.extend(value);
        out.resize(align(out.len()), 0);
        out
    }

    fn message(kind: u16, index: u32, flags: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut body = vec![0u8; IFINFO_LEN];
        body[4..8].copy_from_slice(&index.to_ne_bytes());
        body[8..12].copy_from_slice(&flags.to_ne_bytes());
        for a in attrs {
            body.extend(a);
        }
        let mut msg = ((HEADER_LEN + body.len()) as u32).to_ne_bytes().to_vec();
        msg.extend(kind.to_ne_bytes());
        msg.extend(0u16.to_ne_bytes());
        msg.extend(7u32.to_ne_bytes());
        msg.extend(0u32.to_ne_bytes());
        msg.extend(body);
        msg
    }

    #[test]
    fn reads_the_fields_a_link_holds() {
        let port = [nla(2, &[0]), nla(IFLA_BRPORT_STATE, &[BR_STATE_FORWARDING])].concat();
        let info = [
            nla(IFLA_INFO_KIND, b"veth\0"),
            nla(2, &[1, 2, 3, 4, 5]),
            nla(IFLA_INFO_SLAVE_KIND, b"bridge\0"),
            nla(IFLA_INFO_SLAVE_DATA | 0x8000, &port),
        ]
        .concat();
        let msg = message(
            RTM_NEWLINK,
            42,
            IFF_UP,
            &[
                nla(IFLA_IFNAME, b"weave\0"),
                nla(IFLA_MTU, &1450u32.to_ne_bytes()),
                nla(IFLA_MASTER, &7u32.to_ne_bytes()),
                nla(IFLA_IFALIAS, b"weave-hook:/run/weave\0"),
                nla(IFLA_LINKINFO | 0x8000, &info),
            ],
        );
        assert_eq!(
            link(&msg),
            Some(Link {
                index: 42,
                name: "weave".into(),
                up: true,
                kind: Some("veth".into()),
                master: Some(7),
                alias: Some("weave-hook:/run/weave".into()),
                forwarding: true,
                mtu: 1450,
                snooping: false,
            })
        );
    }

    #[test]
    fn a_bridge_snoops_only_when_its_own_attribute_says_so() {
        let with = |kind: &[u8], snooping: u8| {
            let data = [nla(22, &[1]), nla(IFLA_BR_MCAST_SNOOPING, &[snooping])].concat();
            let info = [
                nla(IFLA_INFO_KIND, kind),
                nla(IFLA_INFO_DATA | 0x8000, &data),
            ]
            .concat();
            let msg = message(
                RTM_NEWLINK,
                9,
                IFF_UP,
                &[nla(IFLA_IFNAME, b"weave\0"), nla(IFLA_LINKINFO, &info)],
            );
            link(&msg).unwrap().snooping
        };
        assert!(with(b"bridge\0", 1));
        assert!(!with(b"bridge\0", 0));
        assert!(!with(b"vxlan\0", 1), "another kind's attribute 23");
    }

    #[test]
    fn other_messages_truncated_ones_and_nameless_links_are_not_links() {
        let named = [nla(IFLA_IFNAME, b"x\0")];
        assert_eq!(link(&message(RTM_NEWLINK + 4, 1, 0, &named)), None);
        assert_eq!(link(&message(RTM_NEWLINK, 1, 0, &[])), None);
        let whole = message(RTM_NEWLINK, 1, 0, &named);
        for cut in 0..whole.len() {
            // Never a panic; a cut message is refused by its length.
            assert_eq!(link(&whole[..cut]), None, "cut at {cut}");
        }
        // An attribute claiming more than there is ends the walk.
        let mut bad = message(RTM_NEWLINK, 1, 0, &[nla(IFLA_MTU, &[0; 4])]);
        bad[HEADER_LEN + IFINFO_LEN] = 200;
        assert_eq!(link(&bad), None);
    }

    #[test]
    fn empty_alias_is_none_and_down_is_down() {
        let msg = message(
            RTM_NEWLINK,
            3,
            0,
            &[nla(IFLA_IFNAME, b"lo\0"), nla(IFLA_IFALIAS, b"\0")],
        );
        let l = link(&msg).unwrap();
        assert_eq!(
            (l.up, l.forwarding, l.alias, l.kind),
            (false, false, None, None)
        );
    }

    #[test]
    fn reads_the_sent_packets_of_the_64_bit_statistics() {
        let mut stats = vec![0u8; 24 * 8];
        stats[0..8].copy_from_slice(&5u64.to_ne_bytes()); // rx_packets
        stats[8..16].copy_from_slice(&42u64.to_ne_bytes()); // tx_packets
        let msg = message(
            RTM_NEWLINK,
            5,
            IFF_UP,
            &[nla(IFLA_IFNAME, b"ethwe\0"), nla(IFLA_STATS64, &stats)],
        );
        assert_eq!(tx_packets(&msg), Some(42));
        let without = message(RTM_NEWLINK, 5, IFF_UP, &[nla(IFLA_IFNAME, b"ethwe\0")]);
        assert_eq!(tx_packets(&without), None);
        let short = message(RTM_NEWLINK, 5, 0, &[nla(IFLA_STATS64, &[0; 12])]);
        assert_eq!(tx_packets(&short), None);
    }

    #[test]
    fn a_port_forwards_only_in_the_forwarding_state_of_a_bridge() {
        let with = |slave_kind: &[u8], state: u8| {
            let port = nla(IFLA_BRPORT_STATE, &[state]);
            let info = [
                nla(IFLA_INFO_SLAVE_KIND, slave_kind),
                nla(IFLA_INFO_SLAVE_DATA, &port),
            ]
            .concat();
            let msg = message(
                RTM_NEWLINK,
                5,
                IFF_UP,
                &[nla(IFLA_IFNAME, b"vethwe\0"), nla(IFLA_LINKINFO, &info)],
            );
            link(&msg).unwrap().forwarding
        };
        assert!(with(b"bridge\0", BR_STATE_FORWARDING));
        // Disabled (0), listening (1), learning (2), blocking (4).
        for state in [0, 1, 2, 4] {
            assert!(!with(b"bridge\0", state), "state {state}");
        }
        // Another controller's attribute 1 is not the bridge port's state.
        assert!(!with(b"bond\0", BR_STATE_FORWARDING));
    }
}
