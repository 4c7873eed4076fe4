//! Forwarding to the upstream resolvers. Each query leaves from a fresh socket (a random
//! source port) with a fresh random id, and only a reply from that server with that id and
//! the same question is taken; the client's id is put back. Bounded in time per server and
//! in how many queries are under way at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Header, MessageType, Query};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::timeout;

use crate::answer::Transport;
use crate::upstreams::Upstreams;

/// How long one upstream server gets to answer.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// At most this many forwarded queries at once; beyond, clients get SERVFAIL at once.
pub const MAX_IN_FLIGHT: usize = 256;

pub struct Forwarder {
    upstreams: Upstreams,
    permits: Arc<Semaphore>,
}

impl Forwarder {
    pub fn new(upstreams: Upstreams) -> Self {
        Self {
            upstreams,
            permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }
    }

    /// Leave to forward one more query, or `None` when [`MAX_IN_FLIGHT`] are under way.
    pub fn permit(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// Asks the upstream servers in turn; the first valid reply, with the client's id.
    pub async fn forward(
        &self,
        packet: &[u8],
        question: &Query,
        transport: Transport,
    ) -> Option<Vec<u8>> {
        let client_id = u16::from_be_bytes([*packet.first()?, *packet.get(1)?]);
        for server in self.upstreams.current().iter() {
            let id: u16 = rand::random();
            let mut query = packet.to_vec();
            query[..2].copy_from_slice(&id.to_be_bytes());
            let asked = match transport {
                Transport::Udp => timeout(TIMEOUT, ask_udp(*server, &query, id, question)).await,
                Transport::Tcp => timeout(TIMEOUT, ask_tcp(*server, &query, id, question)).await,
            };
            match asked {
                Ok(Ok(mut reply)) => {
                    reply[..2].copy_from_slice(&client_id.to_be_bytes());
                    return Some(reply);
                }
                Ok(Err(e)) => tracing::debug!(%server, error = %e, "upstream failed"),
                Err(_) => tracing::debug!(%server, "upstream timed out"),
            }
        }
        None
    }
}

async fn ask_udp(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    question: &Query,
) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        SocketAddr::V6(_) => ([0u16; 8], 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    // Connected: the kernel drops datagrams from any other address.
    socket.connect(server).await?;
    socket.send(query).await?;
    let mut buf = vec![0; usize::from(u16::MAX)];
    loop {
        let len = socket.recv(&mut buf).await?;
        if is_reply_to(&buf[..len], id, question) {
            buf.truncate(len);
            return Ok(buf);
        }
    }
}

async fn ask_tcp(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    question: &Query,
) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(server).await?;
    let len = u16::try_from(query.len()).map_err(std::io::Error::other)?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let len = stream.read_u16().await?;
    let mut reply = vec![0; usize::from(len)];
    stream.read_exact(&mut reply).await?;
    match is_reply_to(&reply, id, question) {
        true => Ok(reply),
        false => Err(std::io::Error::other("reply does not match the query")),
    }
}

/// A response with our id and the question we asked (names compared case-insensitively).
pub fn is_reply_to(packet: &[u8], id: u16, question: &Query) -> bool {
    let mut decoder = BinDecoder::new(packet);
    let Ok(header) = Header::read(&mut decoder) else {
        return false;
    };
    if header.metadata.id != id
        || header.metadata.message_type != MessageType::Response
        || header.counts.queries != 1
    {
        return false;
    }
    Query::read(&mut decoder).is_ok_and(|q| {
        q.name() == question.name()
            && q.query_type() == question.query_type()
            && q.query_class() == question.query_class()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Message;
    use hickory_proto::rr::{Name, RecordType};

    fn question(name: &str) -> Query {
        Query::query(Name::from_ascii(name).unwrap(), RecordType::A)
    }

    #[test]
    fn only_a_response_with_our_id_and_question_is_a_reply() {
        let q = question("example.com.");
        let mut reply = Message::response(7, hickory_proto::op::OpCode::Query);
        reply.add_query(question("EXAMPLE.com."));
        let bytes = reply.to_vec().unwrap();
        assert!(is_reply_to(&bytes, 7, &q));
        assert!(!is_reply_to(&bytes, 8, &q));
        assert!(!is_reply_to(&bytes, 7, &question("example.org.")));
        assert!(!is_reply_to(&bytes[..10], 7, &q));
        let mut query = reply.clone();
        query.metadata.message_type = MessageType::Query;
        assert!(!is_reply_to(&query.to_vec().unwrap(), 7, &q));
    }

    #[tokio::test]
    async fn forwards_to_the_first_server_that_answers_and_restores_the_id() {
        let dead = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let servers = vec![dead.local_addr().unwrap(), server.local_addr().unwrap()];
        let upstream = tokio::spawn(async move {
            let mut buf = [0; 512];
            let (len, from) = server.recv_from(&mut buf).await.unwrap();
            let query = Message::from_vec(&buf[..len]).unwrap();
            // A spoofed-looking reply with a wrong id first: it must be ignored.
            let mut wrong = Message::response(query.metadata.id ^ 1, query.metadata.op_code);
            wrong.add_queries(query.queries.clone());
            server
                .send_to(&wrong.to_vec().unwrap(), from)
                .await
                .unwrap();
            let mut right = Message::response(query.metadata.id, query.metadata.op_code);
            right.add_queries(query.queries.clone());
            server
                .send_to(&right.to_vec().unwrap(), from)
                .await
                .unwrap();
        });
        let forwarder = Forwarder::new(Upstreams::fixed(servers));
        let mut query = Message::query();
        query.metadata.id = 4242;
        query.add_query(question("outside.test."));
        let started = std::time::Instant::now();
        let reply = forwarder
            .forward(&query.to_vec().unwrap(), &query.queries[0], Transport::Udp)
            .await
            .expect("the second server answers");
        // The first server never answers: its timeout passed before the second was asked.
        assert!(started.elapsed() >= TIMEOUT);
        assert_eq!(Message::from_vec(&reply).unwrap().metadata.id, 4242);
        upstream.await.unwrap();
    }

    #[test]
    fn in_flight_forwards_are_bounded() {
        let forwarder = Forwarder::new(Upstreams::fixed(Vec::new()));
        let permits: Vec<_> = (0..MAX_IN_FLIGHT).map(|_| forwarder.permit()).collect();
        assert!(permits.iter().all(Option::is_some));
        assert!(forwarder.permit().is_none());
        drop(permits);
        assert!(forwarder.permit().is_some());
    }
}
