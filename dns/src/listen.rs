//! The listening sockets, and the UDP receive/send that keeps replies on the interface the
//! query came in on.
//!
//! Containers may have addresses in subnets the host has no route for (`10.2.0.0/24` on the
//! bridge while weave DNS is `10.32.0.1`). A reply routed the normal way would then go out
//! of the default route, or nowhere. So:
//! - UDP: each query is received with `IP_PKTINFO` and the reply sent with the same
//!   interface index; the kernel then takes the destination as on-link on that interface.
//! - TCP: the listener is bound to `--device` (the bridge), which gives its connections the
//!   same treatment (the kernel's handshake reply follows the bound device).
//!
//! Both sockets use `IP_FREEBIND`, so weave-dns can start before the bridge carries its
//! address (as under systemd at boot).

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    SockaddrIn,
};
use socket2::{Domain, Protocol, Socket, Type};
use thiserror::Error;

/// Pending TCP connections the kernel keeps for us.
const TCP_BACKLOG: i32 = 128;

#[derive(Debug, Error)]
pub enum ListenError {
    #[error("{proto} port {addr}: {source}")]
    Bind {
        proto: &'static str,
        addr: SocketAddrV4,
        #[source]
        source: io::Error,
    },
    #[error("bind TCP to device {device}: {source} (does the bridge exist yet?)")]
    Device {
        device: String,
        #[source]
        source: io::Error,
    },
}

impl ListenError {
    /// The address is taken (by another weave-dns, or by another program).
    pub fn in_use(&self) -> bool {
        matches!(self, Self::Bind { source, .. } if source.kind() == io::ErrorKind::AddrInUse)
    }
}

pub struct Listeners {
    pub udp: UdpSocket,
    pub tcp: TcpListener,
}

/// Binds UDP and TCP on `addr`. UDP is not shared (no SO_REUSEADDR), so a second
/// weave-dns fails here.
pub fn bind(addr: SocketAddrV4, device: Option<&str>) -> Result<Listeners, ListenError> {
    let bind_err = |proto| {
        move |source| ListenError::Bind {
            proto,
            addr,
            source,
        }
    };
    let udp =
        Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(bind_err("UDP"))?;
    udp.set_freebind_v4(true).map_err(bind_err("UDP"))?;
    setsockopt(&udp, sockopt::Ipv4PacketInfo, &true)
        .map_err(|e| bind_err("UDP")(io::Error::from(e)))?;
    udp.set_nonblocking(true).map_err(bind_err("UDP"))?;
    udp.bind(&addr.into()).map_err(bind_err("UDP"))?;

    let tcp =
        Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).map_err(bind_err("TCP"))?;
    // A restarted server must not wait for the old connections' TIME_WAIT.
    tcp.set_reuse_address(true).map_err(bind_err("TCP"))?;
    tcp.set_freebind_v4(true).map_err(bind_err("TCP"))?;
    if let Some(device) = device {
        tcp.bind_device(Some(device.as_bytes()))
            .map_err(|source| ListenError::Device {
                device: device.to_string(),
                source,
            })?;
    }
    tcp.set_nonblocking(true).map_err(bind_err("TCP"))?;
    tcp.bind(&addr.into()).map_err(bind_err("TCP"))?;
    tcp.listen(TCP_BACKLOG).map_err(bind_err("TCP"))?;
    Ok(Listeners {
        udp: udp.into(),
        tcp: tcp.into(),
    })
}

/// Where a datagram came from and on which interface, to send its reply the same way.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    pub peer: SocketAddrV4,
    pub ifindex: i32,
    pub local: Ipv4Addr,
}

/// Receives one datagram without blocking. `Ok(None)`: it did not fit in `buf` (dropped).
pub fn recv(socket: &impl AsRawFd, buf: &mut [u8]) -> io::Result<Option<(usize, Origin)>> {
    let mut cmsg = nix::cmsg_space!(libc::in_pktinfo);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrIn>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    if msg.flags.contains(MsgFlags::MSG_TRUNC) {
        return Ok(None);
    }
    let Some(peer) = msg.address else {
        return Ok(None);
    };
    let mut origin = Origin {
        peer: SocketAddrV4::new(peer.ip(), peer.port()),
        ifindex: 0,
        local: Ipv4Addr::UNSPECIFIED,
    };
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::Ipv4PacketInfo(info) = c {
                origin.ifindex = info.ipi_ifindex;
                origin.local = Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr));
            }
        }
    }
    Ok(Some((msg.bytes, origin)))
}

/// Sends a reply without blocking, out of the interface the query came in on and from the
/// address it was sent to.
pub fn send(socket: &impl AsRawFd, reply: &[u8], to: &Origin) -> io::Result<()> {
    let info = libc::in_pktinfo {
        ipi_ifindex: to.ifindex,
        ipi_spec_dst: libc::in_addr {
            s_addr: u32::from(to.local).to_be(),
        },
        ipi_addr: libc::in_addr { s_addr: 0 },
    };
    let cmsgs = [ControlMessage::Ipv4PacketInfo(&info)];
    let dest = SockaddrIn::from(to.peer);
    sendmsg(
        socket.as_raw_fd(),
        &[IoSlice::new(reply)],
        &cmsgs,
        MsgFlags::MSG_DONTWAIT,
        Some(&dest),
    )
    .map(drop)
    .map_err(io::Error::from)
}
