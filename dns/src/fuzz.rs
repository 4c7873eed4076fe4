//! The responder under arbitrary bytes: the entry point of the fuzz target
//! (`fuzz/fuzz_targets/dns_query.rs`, libFuzzer) and of the test that runs it in every
//! `cargo test` over the committed corpus and mutations of it (`dns/tests/fuzz_query.rs`).

use hickory_proto::op::{Message, MessageType};
use weave_core::process::ProcessId;
use weave_core::store::Record;

use crate::answer::{Action, Responder, Transport, EDNS_PAYLOAD, MAX_ANSWERS};
use crate::records::Table;

/// The largest UDP reply to a query without EDNS (RFC 1035).
const UDP_PLAIN_MAX: usize = 512;

/// A responder and a table with every kind of entry: names with one and several
/// addresses, a name shared by 40 containers (answers that must be cut), a dead owner.
pub struct QueryFuzz {
    responder: Responder,
    table: Table,
}

impl Default for QueryFuzz {
    fn default() -> Self {
        Self::new()
    }
}

impl QueryFuzz {
    pub fn new() -> Self {
        // Owned by this very process, so that liveness checks find them alive.
        let me = ProcessId::of(std::process::id() as i32).ok();
        let dead = me.map(|p| ProcessId {
            start_time: p.start_time + 1,
            ..p
        });
        let mut records = vec![
            record("a", &["10.32.0.2/12"], &["a"], me),
            record("b", &["10.32.0.3/12", "10.2.0.3/24"], &["b", "web"], me),
            record("dead", &["10.32.0.9/12"], &["dead"], dead),
        ];
        for i in 0..40 {
            records.push(record(
                &format!("m{i}"),
                &[&format!("10.32.1.{i}/12")],
                &["many"],
                me,
            ));
        }
        Self {
            responder: Responder::new(),
            table: Table::from_records(&records),
        }
    }

    /// Hands one datagram (or TCP message) to the responder over both transports. Never
    /// panics for any bytes unless a reply breaks a rule: every reply decodes, answers a
    /// query that decodes with its id, carries at most one question and [`MAX_ANSWERS`]
    /// answers, and fits the client's UDP size; every forwarded query has one question.
    pub fn run(&self, packet: &[u8]) {
        for transport in [Transport::Udp, Transport::Tcp] {
            match self.responder.handle(packet, &self.table, transport) {
                Action::Reply(bytes) => check_reply(packet, &bytes, transport),
                Action::Forward(query) => assert_eq!(query.queries.len(), 1, "forwarded"),
                Action::Drop => {}
            }
        }
    }
}

fn check_reply(packet: &[u8], bytes: &[u8], transport: Transport) {
    let reply = Message::from_vec(bytes).expect("a reply decodes");
    let query = Message::from_vec(packet).expect("only a query that decodes is answered");
    assert_eq!(reply.metadata.id, query.metadata.id, "the reply's id");
    assert_eq!(reply.metadata.message_type, MessageType::Response);
    assert!(
        reply.queries.len() <= 1,
        "{} questions",
        reply.queries.len()
    );
    assert!(reply.answers.len() <= MAX_ANSWERS);
    if transport == Transport::Udp {
        let limit = match query.edns {
            Some(_) => usize::from(EDNS_PAYLOAD),
            None => UDP_PLAIN_MAX,
        };
        assert!(bytes.len() <= limit, "{} bytes over UDP", bytes.len());
    }
}

fn record(id: &str, addrs: &[&str], names: &[&str], owner: Option<ProcessId>) -> Record {
    Record {
        id: id.into(),
        veth_index: None,
        netns: None,
        mac: None,
        bridge: "weave".into(),
        veth: "vethwe0".into(),
        addrs: addrs
            .iter()
            .map(|a| a.parse().expect("a valid address"))
            .collect(),
        owner,
        names: names.iter().map(|n| n.to_string()).collect(),
        // `many` is shared by its 40 containers: answers that must be cut.
        shared: names == ["many"],
        route: false,
    }
}
