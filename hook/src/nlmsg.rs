//! Reading netlink messages by hand, for the replies weave reads without a parser crate
//! (nf_tables, and rtnetlink's link replies): the fixed header, netlink's 4-byte alignment
//! and runs of attributes. Nothing here panics on what the kernel (or anyone) sends.

use std::io;

/// `struct nlmsghdr`.
pub(crate) const HEADER_LEN: usize = 16;
pub(crate) const NLMSG_ERROR: u16 = 2;
pub(crate) const NLMSG_DONE: u16 = 3;
/// The flag bits of an attribute's type (`NLA_F_NESTED`, `NLA_F_NET_BYTEORDER`).
const NLA_TYPE_MASK: u16 = 0x3fff;

/// The fixed part of a netlink message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub len: usize,
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
}

/// The header of the message at the start of `buf`, whose length it checks against `buf`.
pub(crate) fn header(buf: &[u8]) -> io::Result<Header> {
    let invalid = || io::Error::new(io::ErrorKind::InvalidData, "truncated netlink message");
    let fixed = buf.get(..HEADER_LEN).ok_or_else(invalid)?;
    let header = Header {
        len: u32_at(fixed, 0) as usize,
        kind: u16_at(fixed, 4),
        flags: u16_at(fixed, 6),
        seq: u32_at(fixed, 8),
    };
    if header.len < HEADER_LEN || header.len > buf.len() {
        return Err(invalid());
    }
    Ok(header)
}

/// An `NLMSG_ERROR` message's code: 0 for an ACK, else a negative errno.
pub(crate) fn error_code(msg: &[u8]) -> io::Result<i32> {
    msg.get(HEADER_LEN..HEADER_LEN + 4)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "truncated netlink error"))
}

/// Netlink's 4-byte alignment.
pub(crate) fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// The (type, payload) pairs of a run of attributes, the type's flag bits masked off;
/// stops at the first malformed one.
pub(crate) fn attributes(mut attrs: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if attrs.len() < 4 {
            return None;
        }
        let len = usize::from(u16_at(attrs, 0));
        let kind = u16_at(attrs, 2) & NLA_TYPE_MASK;
        if len < 4 || len > attrs.len() {
            return None;
        }
        let payload = &attrs[4..len];
        attrs = &attrs[align(len).min(attrs.len())..];
        Some((kind, payload))
    })
}

pub(crate) fn u16_at(buf: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([buf[at], buf[at + 1]])
}

pub(crate) fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

/// One datagram from `socket` into `buf`'s reserved room (its earlier content dropped; pages
/// the reply does not reach stay untouched); returns its length.
pub(crate) fn recv(socket: &netlink_sys::Socket, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.clear();
    socket.recv(buf, 0)?;
    Ok(buf.len())
}

/// The first byte of attribute `kind` among `attrs` (a u8 attribute).
pub(crate) fn u8_attribute(attrs: &[u8], kind: u16) -> Option<u8> {
    attributes(attrs)
        .find(|(k, _)| *k == kind)
        .and_then(|(_, v)| v.first().copied())
}
