//! The serving loops: UDP (replies leave through the interface the query came in on) and
//! TCP (bounded connections, idle timeout). Local answers are computed inline; forwarded
//! queries run as tasks, bounded by the forwarder. Every client address is held to its
//! limits ([`crate::limit`]): a query over its rate is dropped (over TCP, its connection
//! closed), a forward over its rate gets SERVFAIL.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::time::timeout;

use crate::answer::{Action, Responder, Transport};
use crate::device::Device;
use crate::forward::Forwarder;
use crate::limit::{Clients, TcpSlots};
use crate::listen::{self, Origin};
use crate::records::Names;

/// Queries larger than this (over UDP) are dropped: real ones are far smaller.
pub const MAX_UDP_QUERY: usize = 4096;
/// A TCP client silent for this long is closed.
pub const TCP_IDLE: Duration = Duration::from_secs(10);
/// After a socket error, wait this long before the next try, so a persistent error does
/// not spin a core.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

pub struct Server {
    pub responder: Responder,
    pub names: Names,
    pub forwarder: Forwarder,
    /// With `--device`: UDP queries from other interfaces are dropped (TCP is bound to it).
    pub device: Option<Device>,
    /// Query and forward rates per client address.
    pub clients: Clients,
    /// TCP connections per client address and in all.
    pub tcp: Arc<TcpSlots>,
}

impl Server {
    /// What to send back for a query: an answer of our own, or the upstream's (or SERVFAIL
    /// when forwarding fails or too many forwards are under way).
    async fn reply(
        &self,
        packet: &[u8],
        transport: Transport,
        client: Ipv4Addr,
    ) -> Option<Vec<u8>> {
        // The table's read lock is released before any await.
        let action = self
            .responder
            .handle(packet, &self.names.current(), transport);
        match action {
            Action::Reply(bytes) => Some(bytes),
            Action::Drop => None,
            Action::Forward(query) => {
                let permit = self.forwarder.permit();
                let Some(_permit) = permit.filter(|_| self.clients.forward(client)) else {
                    return self.responder.servfail(&query, transport);
                };
                self.forward(packet, &query, transport).await
            }
        }
    }

    async fn forward(
        &self,
        packet: &[u8],
        query: &Message,
        transport: Transport,
    ) -> Option<Vec<u8>> {
        match self
            .forwarder
            .forward(packet, &query.queries[0], transport)
            .await
        {
            // Upstream servers keep to the client's size; should one not, the client still
            // gets what it can read, and retries over TCP.
            Some(reply)
                if transport == Transport::Udp
                    && reply.len() > usize::from(query.max_payload()) =>
            {
                self.responder.truncated(query)
            }
            Some(reply) => Some(reply),
            None => self.responder.servfail(query, transport),
        }
    }
}

/// Serves UDP forever. Several of these may share one socket.
pub async fn serve_udp(server: Arc<Server>, socket: Arc<UdpSocket>) {
    let mut buf = vec![0; MAX_UDP_QUERY];
    loop {
        let received = socket
            .async_io(Interest::READABLE, || {
                listen::recv(socket.as_ref(), &mut buf)
            })
            .await;
        let (len, origin) = match received {
            Ok(Some((len, origin)))
                if server
                    .device
                    .as_ref()
                    .is_none_or(|d| d.allows(origin.ifindex)) =>
            {
                (len, origin)
            }
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "UDP receive");
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        let client = *origin.peer.ip();
        // Over its rate: dropped unread, and nothing is sent (not even to a spoofed source).
        if !server.clients.query(client) {
            continue;
        }
        let action = server
            .responder
            .handle(&buf[..len], &server.names.current(), Transport::Udp);
        match action {
            Action::Reply(bytes) => send(&socket, &bytes, &origin).await,
            Action::Drop => {}
            Action::Forward(query) => {
                let permit = server.forwarder.permit();
                let Some(permit) = permit.filter(|_| server.clients.forward(client)) else {
                    if let Some(bytes) = server.responder.servfail(&query, Transport::Udp) {
                        send(&socket, &bytes, &origin).await;
                    }
                    continue;
                };
                let packet = buf[..len].to_vec();
                let (server, socket) = (server.clone(), socket.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Some(bytes) = server.forward(&packet, &query, Transport::Udp).await {
                        send(&socket, &bytes, &origin).await;
                    }
                });
            }
        }
    }
}

async fn send(socket: &UdpSocket, reply: &[u8], to: &Origin) {
    let sent = socket
        .async_io(Interest::WRITABLE, || listen::send(socket, reply, to))
        .await;
    if let Err(e) = sent {
        tracing::debug!(peer = %to.peer, error = %e, "UDP send");
    }
}

/// Serves TCP forever: at most the per-client and total numbers of connections of
/// [`TcpSlots`], each closed after [`TCP_IDLE`] of silence.
pub async fn serve_tcp(server: Arc<Server>, listener: TcpListener) {
    loop {
        let (stream, client) = match listener.accept().await {
            Ok((stream, peer)) => (stream, peer.ip()),
            Err(e) => {
                tracing::debug!(error = %e, "TCP accept");
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        // The listener is IPv4; a full client (or server) drops the stream, which closes it.
        let IpAddr::V4(client) = client else {
            continue;
        };
        let Some(slot) = server.tcp.take(client) else {
            continue;
        };
        let server = server.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = serve_connection(&server, stream, client).await {
                tracing::debug!(error = %e, "TCP connection");
            }
        });
    }
}

async fn serve_connection(
    server: &Server,
    mut stream: TcpStream,
    client: Ipv4Addr,
) -> io::Result<()> {
    // Sized per message: an idle connection holds no 64 KiB buffer.
    let mut buf = Vec::new();
    loop {
        let Ok(len) = timeout(TCP_IDLE, stream.read_u16()).await else {
            return Ok(());
        };
        let len = usize::from(len?);
        buf.resize(len, 0);
        timeout(TCP_IDLE, stream.read_exact(&mut buf))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        if !server.clients.query(client) {
            return Ok(());
        }
        let Some(reply) = server.reply(&buf, Transport::Tcp, client).await else {
            return Ok(());
        };
        let Ok(reply_len) = u16::try_from(reply.len()) else {
            return Ok(());
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&reply_len.to_be_bytes());
        framed.extend_from_slice(&reply);
        timeout(TCP_IDLE, stream.write_all(&framed))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    }
}
