//! The two nf_tables questions attach asks on every run, each one netlink request and no
//! process:
//! - the ruleset generation: a counter the kernel bumps on every committed change to the
//!   namespace's nf_tables rules, iptables-nft's included (`iptables -F`, `-D`, a firewalld
//!   reload, Docker's own rules), so attach can tell "nothing changed since the rule was
//!   last seen" without running iptables;
//! - whether one element is in a set (weave's own table: a flush took it away);
//!
//! and the one change it makes: a container port's elements, added or deleted in one
//! transaction, which also tells the generation that transaction made.
//!
//! The only module that speaks NETLINK_NETFILTER; the messages are small enough to build by
//! hand (no crate of the netlink-packet family covers nf_tables).

use std::io;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use crate::nlmsg::{
    align, attributes, header, recv, HEADER_LEN as NLMSG_HDRLEN, NLMSG_DONE, NLMSG_ERROR,
};

const NFGENMSG_LEN: usize = 4;
const NLM_F_REQUEST: u16 = 1;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWGEN: u16 = 15;
const NFT_MSG_GETGEN: u16 = 16;
const NFT_MSG_GETSETELEM: u16 = 13;
const NFTA_GEN_ID: u16 = 1;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_DATA_VALUE: u16 = 1;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NLM_F_ACK: u16 = 4;
const NLM_F_ECHO: u16 = 8;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_CREATE: u16 = 0x400;
const NLA_F_NESTED: u16 = 0x8000;
/// `NFPROTO_INET`: the family of weave's own table.
pub const FAMILY_INET: u8 = 1;
/// `NFPROTO_BRIDGE`: the family of the table that guards container ports.
pub const FAMILY_BRIDGE: u8 = 7;

/// What [`change_elements`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementOp {
    Add,
    Delete,
}
/// The sequence number of our one request; the socket is private, so any will do.
const SEQ: u32 = 1;

/// The current generation of the calling thread's network namespace (a netlink socket
/// belongs to the namespace of the thread that creates it).
pub fn generation() -> io::Result<u32> {
    // The reply is one NEWGEN message of a few dozen bytes (or an error).
    parse_reply(&ask(&request())?)
}

/// Whether the set `set` of table `table` (of `family`) holds the element `key` (the key's
/// bytes as nf_tables stores them). `false` when the table, the set or the element is
/// missing.
pub fn has_element(family: u8, table: &str, set: &str, key: &[u8]) -> io::Result<bool> {
    match parse_element_reply(&ask(&element_request(family, table, set, key))?) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Adds (or deletes) the elements `keys` of each set of `table`, in one transaction: all of
/// them or none. Returns the ruleset generation that transaction made, as [`apply`] does.
/// Deleting an element that is not there fails the transaction with ENOENT.
pub fn change_elements(
    family: u8,
    table: &str,
    op: ElementOp,
    sets: &[(&str, Vec<Vec<u8>>)],
) -> io::Result<Option<u32>> {
    let changes: Vec<SetChange> = sets
        .iter()
        .map(|(set, keys)| SetChange {
            family,
            table,
            set,
            op,
            keys: keys.clone(),
        })
        .collect();
    apply(&changes)
}

/// Elements added to or deleted from one set, as part of an [`apply`] transaction.
#[derive(Debug, Clone)]
pub struct SetChange<'a> {
    pub family: u8,
    pub table: &'a str,
    pub set: &'a str,
    pub op: ElementOp,
    pub keys: Vec<Vec<u8>>,
}

/// Applies `changes` (of any tables and families) in one transaction: all or none. A
/// change without keys is left out; nothing to change sends nothing. Returns the ruleset
/// generation the transaction made: the commit sends it to this socket alone, before the
/// acknowledgements, when the batch's first message (the kernel's view of the batch once
/// BEGIN is taken off) asks for echoes (NLM_F_ECHO). That message holds one element, as
/// each element it holds is echoed too (a restore of a thousand ports would otherwise
/// overrun the socket). `None` when nothing was sent or no echo came (an older kernel).
pub fn apply(changes: &[SetChange]) -> io::Result<Option<u32>> {
    let changes: Vec<&SetChange> = changes.iter().filter(|c| !c.keys.is_empty()).collect();
    let Some((first, _)) = changes.split_first() else {
        return Ok(None);
    };
    let (echoed, rest) = first.keys.split_at(1);
    let messages = std::iter::once((*first, echoed, NLM_F_ECHO))
        .chain(std::iter::once((*first, rest, 0)))
        .chain(changes[1..].iter().map(|c| (*c, &c.keys[..], 0)))
        .filter(|(_, keys, _)| !keys.is_empty());
    let mut batch = batch_marker(NFNL_MSG_BATCH_BEGIN, 0, 1);
    let mut seq = 1;
    for (change, keys, echo) in messages {
        let (kind, flags) = match change.op {
            ElementOp::Add => (NFT_MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_ACK),
            ElementOp::Delete => (NFT_MSG_DELSETELEM, NLM_F_ACK),
        };
        seq += 1;
        let mut body = vec![change.family, 0, 0, 0];
        body.extend(attr(NFTA_SET_ELEM_LIST_TABLE, &c_string(change.table)));
        body.extend(attr(NFTA_SET_ELEM_LIST_SET, &c_string(change.set)));
        let elements: Vec<u8> = keys.iter().flat_map(|k| element(k)).collect();
        body.extend(attr(NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED, &elements));
        batch.extend(message(
            NFNL_SUBSYS_NFTABLES << 8 | kind,
            flags | echo,
            seq,
            &body,
        ));
    }
    let messages = seq - 1;
    batch.extend(batch_marker(NFNL_MSG_BATCH_END, 0, seq + 1));
    let socket = open()?;
    socket.send(&batch, 0)?;
    // Every set message is answered (ACK or error) once the transaction is over; the
    // generation's echo comes before.
    let mut generation = None;
    let mut answered = 0;
    let mut buf = Vec::with_capacity(8192);
    while answered < messages {
        let len = recv(&socket, &mut buf)?;
        let mut rest = &buf[..len];
        while rest.len() >= NLMSG_HDRLEN {
            let (mlen, kind) = header(rest).map(|h| (h.len, h.kind))?;
            let body = &rest[NLMSG_HDRLEN..mlen];
            match kind {
                NLMSG_ERROR => match error_of(body) {
                    e if e.raw_os_error() == Some(0) => answered += 1,
                    e => return Err(e),
                },
                k if k == NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWGEN => {
                    generation = gen_id(body.get(NFGENMSG_LEN..).unwrap_or_default()).ok();
                }
                _ => {}
            }
            rest = &rest[align(mlen).min(rest.len())..];
        }
    }
    Ok(generation)
}

/// Every element key of a set (a dump).
pub fn elements(family: u8, table: &str, set: &str) -> io::Result<Vec<Vec<u8>>> {
    let mut body = vec![family, 0, 0, 0];
    body.extend(attr(NFTA_SET_ELEM_LIST_TABLE, &c_string(table)));
    body.extend(attr(NFTA_SET_ELEM_LIST_SET, &c_string(set)));
    let socket = open()?;
    socket.send(
        &message(
            NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETSETELEM,
            NLM_F_DUMP,
            SEQ,
            &body,
        ),
        0,
    )?;
    let mut keys = Vec::new();
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        let len = recv(&socket, &mut buf)?;
        let mut rest = &buf[..len];
        while rest.len() >= NLMSG_HDRLEN {
            let (mlen, kind) = header(rest).map(|h| (h.len, h.kind))?;
            let body = &rest[NLMSG_HDRLEN..mlen];
            match kind {
                NLMSG_DONE => return Ok(keys),
                NLMSG_ERROR => return Err(error_of(body)),
                _ => keys.extend(keys_of(body.get(NFGENMSG_LEN..).unwrap_or_default())),
            }
            rest = &rest[align(mlen).min(rest.len())..];
        }
    }
}

/// The keys of a NEWSETELEM message's attributes: ELEMENTS > LIST_ELEM > KEY > DATA_VALUE.
fn keys_of(attrs: &[u8]) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    for (kind, elements) in attributes(attrs) {
        if kind != NFTA_SET_ELEM_LIST_ELEMENTS {
            continue;
        }
        for (_, elem) in attributes(elements) {
            let key = attributes(elem)
                .find(|(k, _)| *k == NFTA_SET_ELEM_KEY)
                .and_then(|(_, key)| attributes(key).find(|(k, _)| *k == NFTA_DATA_VALUE));
            if let Some((_, value)) = key {
                keys.push(value.to_vec());
            }
        }
    }
    keys
}

/// One LIST_ELEM holding `key`.
fn element(key: &[u8]) -> Vec<u8> {
    let value = attr(NFTA_DATA_VALUE, key);
    attr(
        NFTA_LIST_ELEM | NLA_F_NESTED,
        &attr(NFTA_SET_ELEM_KEY | NLA_F_NESTED, &value),
    )
}

/// BATCH_BEGIN or BATCH_END: an nfgenmsg whose res_id names the nf_tables subsystem.
fn batch_marker(kind: u16, flags: u16, seq: u32) -> Vec<u8> {
    let mut body = vec![0, 0];
    body.extend(NFNL_SUBSYS_NFTABLES.to_be_bytes());
    message(kind, flags, seq, &body)
}

fn message(kind: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(NLMSG_HDRLEN + body.len());
    msg.extend(((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
    msg.extend(kind.to_ne_bytes());
    msg.extend((NLM_F_REQUEST | flags).to_ne_bytes());
    msg.extend(seq.to_ne_bytes());
    msg.extend(0u32.to_ne_bytes());
    msg.extend(body);
    msg
}

fn open() -> io::Result<Socket> {
    let socket = Socket::new(NETLINK_NETFILTER)?;
    // connect(2) binds the socket to a free port id as well.
    socket.connect(&SocketAddr::new(0, 0))?;
    Ok(socket)
}

/// Sends one request on a fresh socket of the calling thread's namespace; returns the reply.
fn ask(request: &[u8]) -> io::Result<Vec<u8>> {
    let socket = open()?;
    socket.send(request, 0)?;
    let mut buf = Vec::with_capacity(4096);
    recv(&socket, &mut buf)?;
    Ok(buf)
}

/// GETSETELEM for one key: table and set by name, the key nested as
/// ELEMENTS > LIST_ELEM > KEY > DATA_VALUE.
fn element_request(family: u8, table: &str, set: &str, key: &[u8]) -> Vec<u8> {
    let mut body = vec![family, 0, 0, 0];
    body.extend(attr(NFTA_SET_ELEM_LIST_TABLE, &c_string(table)));
    body.extend(attr(NFTA_SET_ELEM_LIST_SET, &c_string(set)));
    body.extend(attr(
        NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED,
        &element(key),
    ));
    message(
        NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETSETELEM,
        0,
        SEQ,
        &body,
    )
}

fn c_string(s: &str) -> Vec<u8> {
    let mut bytes = s.as_bytes().to_vec();
    bytes.push(0);
    bytes
}

/// One nlattr, padded to 4 bytes.
fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(align(4 + payload.len()));
    a.extend(((4 + payload.len()) as u16).to_ne_bytes());
    a.extend(kind.to_ne_bytes());
    a.extend(payload);
    a.resize(align(a.len()), 0);
    a
}

/// The element came back (NEWSETELEM), or the error the kernel answered (ENOENT: absent).
fn parse_element_reply(buf: &[u8]) -> io::Result<()> {
    let (len, kind) = header(buf).map(|h| (h.len, h.kind))?;
    match kind {
        NLMSG_ERROR => Err(error_of(&buf[NLMSG_HDRLEN..len])),
        k if k >> 8 == NFNL_SUBSYS_NFTABLES => Ok(()),
        _ => Err(invalid("unexpected reply to GETSETELEM")),
    }
}

/// The errno of an NLMSG_ERROR body (0 would be an ACK, which no request here asks for).
fn error_of(body: &[u8]) -> io::Error {
    match body.get(0..4) {
        Some(c) => io::Error::from_raw_os_error(-i32::from_ne_bytes(c.try_into().unwrap())),
        None => invalid("short error message"),
    }
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
        let (len, kind) = header(buf).map(|h| (h.len, h.kind))?;
        let body = &buf[NLMSG_HDRLEN..len];
        match kind {
            NLMSG_ERROR => return Err(error_of(body)),
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
    fn an_element_request_nests_the_key_under_table_and_set() {
        let r = element_request(FAMILY_INET, "t", "s", &[1, 2, 3, 4]);
        assert_eq!(
            u32::from_ne_bytes(r[0..4].try_into().unwrap()) as usize,
            r.len()
        );
        assert_eq!(u16::from_ne_bytes(r[4..6].try_into().unwrap()), 0x0a0d);
        assert_eq!(&r[16..20], &[FAMILY_INET, 0, 0, 0]);
        let mut expected = attr(1, b"t\0");
        expected.extend(attr(2, b"s\0"));
        let key = attr(1 | NLA_F_NESTED, &attr(1, &[1, 2, 3, 4]));
        expected.extend(attr(3 | NLA_F_NESTED, &attr(1 | NLA_F_NESTED, &key)));
        assert_eq!(&r[20..], &expected[..]);
    }

    #[test]
    fn an_element_reply_is_present_absent_or_an_error() {
        let newsetelem = NFNL_SUBSYS_NFTABLES << 8 | 12;
        assert!(parse_element_reply(&message(newsetelem, &[1, 0, 0, 0])).is_ok());
        let absent = parse_element_reply(&message(NLMSG_ERROR, &(-libc::ENOENT).to_ne_bytes()));
        assert_eq!(absent.unwrap_err().raw_os_error(), Some(libc::ENOENT));
        assert!(parse_element_reply(&[0; 3]).is_err());
        assert!(parse_element_reply(&message(0x10, &[])).is_err());
    }

    #[test]
    fn keys_are_found_in_a_dumped_element_list() {
        let mut elements = element(&[3, 0, 0, 0]);
        elements.extend(element(&[7, 0, 0, 0]));
        let mut attrs = attr(1, b"weave-hook\0");
        attrs.extend(attr(3 | NLA_F_NESTED, &elements));
        assert_eq!(keys_of(&attrs), vec![vec![3, 0, 0, 0], vec![7, 0, 0, 0]]);
        // Truncated: what can be read is, nothing panics.
        assert_eq!(keys_of(&attrs[..attrs.len() - 2]).len(), 0);
    }

    #[test]
    fn a_batch_marker_names_the_nftables_subsystem() {
        let m = batch_marker(NFNL_MSG_BATCH_BEGIN, 0, 1);
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), 16);
        assert_eq!(&m[16..20], &[0, 0, 0, 10]);
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
