//! The serving loops: UDP (replies leave through the interface the query came in on) and
//! TCP (bounded connections, idle timeout). Local answers are computed inline; forwarded
//! queries run as tasks, bounded by the forwarder.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::time::timeout;

use crate::answer::{Action, Responder, Transport};
use crate::device::Device;
use crate::forward::Forwarder;
use crate::listen::{self, Origin};
use crate::records::Names;

/// Queries larger than this (over UDP) are dropped: real ones are far smaller.
pub const MAX_UDP_QUERY: usize = 4096;
/// At most this many TCP clients at once; more are closed at once.
pub const MAX_TCP_CLIENTS: usize = 64;
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
}

impl Server {
    /// What to send back for a query: an answer of our own, or the upstream's (or SERVFAIL
    /// when forwarding fails or too many forwards are under way).
    async fn reply(&self, packet: &[u8], transport: Transport) -> Option<Vec<u8>> {
        // The table's read lock is released before any await.
        let action = self
            .responder
            .handle(packet, &self.names.current(), transport);
        match action {
            Action::Reply(bytes) => Some(bytes),
            Action::Drop => None,
            Action::Forward(query) => {
                let Some(_permit) = self.forwarder.permit() else {
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
        let action = server
            .responder
            .handle(&buf[..len], &server.names.current(), Transport::Udp);
        match action {
            Action::Reply(bytes) => send(&socket, &bytes, &origin).await,
            Action::Drop => {}
            Action::Forward(query) => {
                let Some(permit) = server.forwarder.permit() else {
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

/// Serves TCP forever: at most [`MAX_TCP_CLIENTS`] connections, each closed after
/// [`TCP_IDLE`] of silence.
pub async fn serve_tcp(server: Arc<Server>, listener: TcpListener) {
    let slots = Arc::new(Semaphore::new(MAX_TCP_CLIENTS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "TCP accept");
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        // Full: dropping the stream closes it.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let server = server.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = serve_connection(&server, stream).await {
                tracing::debug!(error = %e, "TCP connection");
            }
        });
    }
}

async fn serve_connection(server: &Server, mut stream: TcpStream) -> io::Result<()> {
    let mut buf = vec![0; usize::from(u16::MAX)];
    loop {
        let Ok(len) = timeout(TCP_IDLE, stream.read_u16()).await else {
            return Ok(());
        };
        let len = usize::from(len?);
        timeout(TCP_IDLE, stream.read_exact(&mut buf[..len]))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        let Some(reply) = server.reply(&buf[..len], Transport::Tcp).await else {
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
