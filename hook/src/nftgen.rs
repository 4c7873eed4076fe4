//! The nf_tables ruleset generation: a counter the kernel bumps on every committed change to
//! the namespace's nf_tables rules, iptables-nft's included (`iptables -F`, `-D`, a firewalld
//! reload, Docker's own rules). Reading it is one netlink request and no process, so attach
//! can tell "nothing changed since the rule was last seen" without running iptables.
//!
//! The only module that speaks NETLINK_NETFILTER; the message is small enough to build by
//! hand (no crate of the netlink-packet family covers nf_tables' GETGEN).

use std::io;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWGEN: u16 = 15;
const NFT_MSG_GETGEN: u16 = 16;
const NFTA_GEN_ID: u16 = 1;
/// The sequence number of our one request; the socket is private, so any will do.
const SEQ: u32 = 1;

/// The current generation of the calling thread's network namespace (a netlink socket
/// belongs to the namespace of the thread that creates it).
pub fn generation() -> io::Result<u32> {
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    socket.send(&request(), 0)?;
    // The reply is one NEWGEN message of a few dozen bytes (or an error).
    let mut buf = vec![0; 4096];
    let len = socket.recv(&mut &mut buf[..], 0)?;
    parse_reply(&buf[..len])
}

/// nlmsghdr + nfgenmsg (family AF_UNSPEC, version NFNETLINK_V0, res_id 0), no attributes.
fn request() -> [u8; NLMSG_HDRLEN + NFGENMSG_LEN] {
    let mut msg = [0; NLMSG_HDRLEN + NFGENMSG_LEN];
    msg[0..4].copy_from_slice(&((NLMSG_HDRLEN + NFGENMSG_LEN) as u32).to_ne_bytes());
    msg[4..6].copy_from_slice(&(NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETGEN).to_ne_bytes());
    msg[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    msg[8..12].copy_from_slice(&SEQ.to_ne_bytes());
    msg
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("nf_tables generation reply: {what}"),
    )
}

/// Finds NFTA_GEN_ID in the reply's NEWGEN message; a netlink error becomes its errno.
fn parse_reply(mut buf: &[u8]) -> io::Result<u32> {
    while buf.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes(buf[0..4].try_into().unwrap()) as usize;
        let kind = u16::from_ne_bytes(buf[4..6].try_into().unwrap());
        if len < NLMSG_HDRLEN || len > buf.len() {
            return Err(invalid("bad message length"));
        }
        let body = &buf[NLMSG_HDRLEN..len];
        match kind {
            NLMSG_ERROR => {
                let code = body
                    .get(0..4)
                    .map(|c| i32::from_ne_bytes(c.try_into().unwrap()))
                    .ok_or_else(|| invalid("short error message"))?;
                return Err(io::Error::from_raw_os_error(-code));
            }
            k if k == NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWGEN => {
                return gen_id(body.get(NFGENMSG_LEN..).unwrap_or_default());
            }
            _ => {}
        }
        buf = &buf[align(len).min(buf.len())..];
    }
    Err(invalid("no generation message"))
}

/// Walks the attributes (nlattr: u16 length, u16 type, payload padded to 4 bytes).
fn gen_id(mut attrs: &[u8]) -> io::Result<u32> {
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes(attrs[0..2].try_into().unwrap()) as usize;
        // The top bits are the NESTED and BYTEORDER flags, not part of the type.
        let kind = u16::from_ne_bytes(attrs[2..4].try_into().unwrap()) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return Err(invalid("bad attribute length"));
        }
        if kind == NFTA_GEN_ID {
            // nf_tables attributes are big-endian.
            let id: [u8; 4] = attrs[4..len]
                .try_into()
                .map_err(|_| invalid("NFTA_GEN_ID is not 4 bytes"))?;
            return Ok(u32::from_be_bytes(id));
        }
        attrs = &attrs[align(len).min(attrs.len())..];
    }
    Err(invalid("no NFTA_GEN_ID"))
}

fn align(len: usize) -> usize {
    (len + 3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend(((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
        m.extend(kind.to_ne_bytes());
        m.extend([0; 10]);
        m.extend(body);
        m
    }

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend(((4 + payload.len()) as u16).to_ne_bytes());
        a.extend(kind.to_ne_bytes());
        a.extend(payload);
        a.resize(align(a.len()), 0);
        a
    }

    const NEWGEN: u16 = NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWGEN;

    #[test]
    fn the_request_is_a_bare_getgen() {
        let r = request();
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 20);
        assert_eq!(u16::from_ne_bytes(r[4..6].try_into().unwrap()), 0x0a10);
        assert_eq!(&r[16..], &[0, 0, 0, 0]);
    }

    #[test]
    fn the_generation_is_found_among_other_attributes() {
        let mut body = vec![0, 0, 0, 0];
        body.extend(attr(3, b"nft\0\0"));
        body.extend(attr(NFTA_GEN_ID, &7342u32.to_be_bytes()));
        body.extend(attr(2, &1u32.to_be_bytes()));
        assert_eq!(parse_reply(&message(NEWGEN, &body)).unwrap(), 7342);
        // Behind an unrelated message too.
        let mut two = message(0x0a00, &[0, 0, 0, 0]);
        two.extend(message(NEWGEN, &body));
        assert_eq!(parse_reply(&two).unwrap(), 7342);
    }

    #[test]
    fn errors_and_garbage_are_errors_not_panics() {
        let err = parse_reply(&message(NLMSG_ERROR, &(-libc::EPERM).to_ne_bytes())).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM));
        for bad in [
            Vec::new(),
            vec![0; 3],
            message(NEWGEN, &[0, 0, 0, 0]),
            message(NEWGEN, &[0, 0, 0, 0, 200, 0, 1, 0]),
            message(NEWGEN, &[0, 0, 0, 0, 6, 0, 1, 0, 9, 9, 0, 0]),
            message(NLMSG_ERROR, &[1]),
            {
                let mut m = message(NEWGEN, &[0; 4]);
                m[0] = 200;
                m
            },
        ] {
            assert!(parse_reply(&bad).is_err(), "{bad:?}");
        }
    }
}
