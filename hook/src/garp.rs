//! Gratuitous ARP: an ARP request for an address of the sender's own (sender and target
//! address alike), broadcast, so that every neighbour holding an entry for the address
//! takes the sender's MAC (the kernel lets a gratuitous ARP override a recent entry).

use std::io;
use std::mem;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use weave_core::mac::Mac;

const ARP_REQUEST: u16 = 1;
const HARDWARE_ETHERNET: u16 = 1;
const PROTOCOL_IPV4: u16 = 0x0800;

/// Sends one gratuitous ARP per address from link `index` of the calling thread's network
/// namespace, with `mac` as the sender's hardware address.
///
/// The socket receives nothing (protocol 0, so no receive hook to register and remove); its
/// close still waits for an RCU grace period (`packet_release`).
pub fn announce(index: u32, mac: Mac, addrs: &[Ipv4Addr]) -> io::Result<()> {
    let protocol = (libc::ETH_P_ARP as u16).to_be();
    // SAFETY: socket(2) with constant arguments; the descriptor is owned at once.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data, valid when zeroed.
    let mut to: libc::sockaddr_ll = unsafe { mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = protocol;
    to.sll_ifindex =
        i32::try_from(index).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    for addr in addrs {
        let packet = request(mac, *addr);
        // SAFETY: the buffer and the address are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                socket.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&to as *const libc::sockaddr_ll).cast(),
                mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The ARP payload (RFC 826) of a gratuitous request for `addr` from `mac`; the kernel adds
/// the Ethernet header (to the broadcast address).
fn request(mac: Mac, addr: Ipv4Addr) -> [u8; 28] {
    let mut p = [0u8; 28];
    p[0..2].copy_from_slice(&HARDWARE_ETHERNET.to_be_bytes());
    p[2..4].copy_from_slice(&PROTOCOL_IPV4.to_be_bytes());
    p[4] = 6;
    p[5] = 4;
    p[6..8].copy_from_slice(&ARP_REQUEST.to_be_bytes());
    p[8..14].copy_from_slice(&mac.0);
    p[14..18].copy_from_slice(&addr.octets());
    // The target hardware address stays zero, as in the kernel's own (arp_notify).
    p[24..28].copy_from_slice(&addr.octets());
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gratuitous_request_names_the_address_as_sender_and_target() {
        let mac = Mac([0x0a, 0x58, 0x0a, 0x02, 0x00, 0x15]);
        let p = request(mac, Ipv4Addr::new(10, 2, 0, 21));
        assert_eq!(
            p,
            [
                0, 1, 8, 0, 6, 4, 0, 1, // Ethernet, IPv4, lengths 6 and 4, request
                0x0a, 0x58, 0x0a, 0x02, 0x00, 0x15, 10, 2, 0, 21, // sender
                0, 0, 0, 0, 0, 0, 10, 2, 0, 21, // target
            ]
        );
    }
}
