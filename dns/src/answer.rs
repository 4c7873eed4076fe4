//! What to do with one packet from a client: answer it from the name table (names in
//! `weave.local.`, and reverse lookups of weave addresses), forward it upstream, or drop it.
//!
//! A pure function of the bytes and the table, so it is tested (and fuzzed: `crate::fuzz`)
//! without sockets.
//! Whatever the bytes, it never panics: hickory-proto decodes with bounds checks, and a
//! packet it cannot decode is dropped.

use std::net::Ipv4Addr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::records::Table;

/// TTL of every answer: names come and go with containers (weave used 1 s too).
pub const TTL: u32 = 1;
/// The largest UDP reply to a client that did not advertise more (RFC 1035).
const UDP_PLAIN_MAX: usize = 512;
/// What we advertise with EDNS and the most we send over UDP (the DNS flag day 2020 size).
pub const EDNS_PAYLOAD: u16 = 1232;
/// At most this many addresses in one answer.
pub const MAX_ANSWERS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

#[derive(Debug)]
pub enum Action {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Not ours: ask upstream. The decoded query, for building an error reply if that fails.
    Forward(Message),
    /// Nothing sensible to send (undecodable, or a response rather than a query).
    Drop,
}

/// Answers for the weave domain.
pub struct Responder {
    zone: Name,
    soa: Record,
}

impl Default for Responder {
    fn default() -> Self {
        Self::new()
    }
}

impl Responder {
    pub fn new() -> Self {
        let zone = Name::from_ascii("weave.local.").expect("a valid name");
        let soa = SOA::new(
            Name::from_ascii("ns.weave.local.").expect("a valid name"),
            Name::from_ascii("hostmaster.weave.local.").expect("a valid name"),
            1,
            3600,
            600,
            86400,
            // Negative answers are cached this long (RFC 2308): a name may appear any time.
            TTL,
        );
        let soa = Record::from_rdata(zone.clone(), TTL, RData::SOA(soa));
        Self { zone, soa }
    }

    /// Decides what to do with one packet from a client.
    pub fn handle(&self, packet: &[u8], table: &Table, transport: Transport) -> Action {
        let Ok(query) = Message::from_vec(packet) else {
            return Action::Drop;
        };
        if query.metadata.message_type != MessageType::Query {
            // Never answer an answer: two servers could bounce it forever.
            return Action::Drop;
        }
        if query.metadata.op_code != OpCode::Query {
            return self.error(&query, ResponseCode::NotImp, transport);
        }
        let [question] = &query.queries[..] else {
            return self.error(&query, ResponseCode::FormErr, transport);
        };
        let name = question.name();
        if self.zone.zone_of(name) {
            return self.authoritative(&query, table, transport);
        }
        if question.query_type() == RecordType::PTR {
            if let Some(addr) = reverse_v4(name) {
                let names = table.names(addr);
                if !names.is_empty() {
                    return self.ptr(&query, &names, transport);
                }
            }
        }
        Action::Forward(query)
    }

    /// The reply to send when forwarding `query` failed.
    pub fn servfail(&self, query: &Message, transport: Transport) -> Option<Vec<u8>> {
        match self.error(query, ResponseCode::ServFail, transport) {
            Action::Reply(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// A reply saying the query did not fit: the client retries over TCP.
    pub fn truncated(&self, query: &Message) -> Option<Vec<u8>> {
        let mut reply = reply_to(query);
        reply.metadata.truncation = true;
        reply.to_vec().ok()
    }

    fn authoritative(&self, query: &Message, table: &Table, transport: Transport) -> Action {
        let question = &query.queries[0];
        if !matches!(question.query_class(), DNSClass::IN | DNSClass::ANY) {
            return self.error(query, ResponseCode::Refused, transport);
        }
        let mut reply = reply_to(query);
        reply.metadata.authoritative = true;
        let name = question.name();
        let depth = name.num_labels() - self.zone.num_labels();
        let addrs = match depth {
            0 => {
                // The zone's apex exists, with its SOA and nothing else.
                if question.query_type() == RecordType::SOA {
                    reply.add_answer(self.soa.clone());
                } else {
                    reply.add_authority(self.soa.clone());
                }
                return encode(reply, query, transport);
            }
            1 => name
                .iter()
                .next()
                .and_then(|l| std::str::from_utf8(l).ok())
                .map(|l| table.addresses(&l.to_ascii_lowercase()))
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        if addrs.is_empty() {
            reply.metadata.response_code = ResponseCode::NXDomain;
            reply.add_authority(self.soa.clone());
        } else if matches!(question.query_type(), RecordType::A | RecordType::ANY) {
            for addr in rotated(&addrs).take(MAX_ANSWERS) {
                reply.add_answer(Record::from_rdata(name.clone(), TTL, RData::A(A(addr))));
            }
        } else {
            // The name exists, without records of this type (AAAA, MX, ...): NODATA, so
            // that a resolver asking A and AAAA together keeps the A answer.
            reply.add_authority(self.soa.clone());
        }
        encode(reply, query, transport)
    }

    fn ptr(&self, query: &Message, names: &[&str], transport: Transport) -> Action {
        let mut reply = reply_to(query);
        reply.metadata.authoritative = true;
        let owner = query.queries[0].name().clone();
        for name in names.iter().take(MAX_ANSWERS) {
            let Ok(target) = Name::from_ascii(name).and_then(|n| n.append_domain(&self.zone))
            else {
                continue;
            };
            reply.add_answer(Record::from_rdata(
                owner.clone(),
                TTL,
                RData::PTR(PTR(target)),
            ));
        }
        encode(reply, query, transport)
    }

    fn error(&self, query: &Message, code: ResponseCode, transport: Transport) -> Action {
        let mut reply = reply_to(query);
        reply.metadata.response_code = code;
        encode(reply, query, transport)
    }
}

/// A response carrying the query's id, question, flags and (answered) EDNS.
fn reply_to(query: &Message) -> Message {
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.checking_disabled = query.metadata.checking_disabled;
    reply.add_queries(query.queries.iter().take(1).cloned());
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        reply.set_edns(edns);
    }
    reply
}

/// The most a reply to this query may take on this transport.
fn reply_limit(query: &Message, transport: Transport) -> usize {
    match (transport, &query.edns) {
        (Transport::Tcp, _) => usize::from(u16::MAX),
        (Transport::Udp, None) => UDP_PLAIN_MAX,
        (Transport::Udp, Some(edns)) => {
            usize::from(edns.max_payload()).clamp(UDP_PLAIN_MAX, usize::from(EDNS_PAYLOAD))
        }
    }
}

fn encode(reply: Message, query: &Message, transport: Transport) -> Action {
    let Ok(bytes) = reply.to_vec() else {
        return Action::Drop;
    };
    if bytes.len() <= reply_limit(query, transport) {
        return Action::Reply(bytes);
    }
    let mut cut = reply.truncate();
    cut.metadata.truncation = true;
    cut.to_vec().map_or(Action::Drop, Action::Reply)
}

/// The addresses from a random one on, wrapping around: a shared name's containers each
/// come first as often (clients mostly take the first), and the cut at [`MAX_ANSWERS`]
/// leaves out different ones each time.
fn rotated(addrs: &[Ipv4Addr]) -> impl Iterator<Item = Ipv4Addr> + '_ {
    let start = match addrs.len() {
        0 | 1 => 0,
        n => rand::random_range(0..n),
    };
    addrs[start..].iter().chain(&addrs[..start]).copied()
}

/// The IPv4 address of a full `d.c.b.a.in-addr.arpa.` name.
fn reverse_v4(name: &Name) -> Option<Ipv4Addr> {
    match name.parse_arpa_name().ok()? {
        ipnet::IpNet::V4(net) if net.prefix_len() == 32 => Some(net.addr()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::tests::{gone, me, record, sharing};
    use hickory_proto::op::Query;

    fn table() -> Table {
        Table::from_records(&[
            record("a", &["10.32.0.2/12"], &["a"], me()),
            record("b", &["10.32.0.3/12", "10.2.0.3/24"], &["b", "web"], me()),
            record("dead", &["10.32.0.9/12"], &["dead"], gone()),
        ])
    }

    fn ask(name: &str, kind: RecordType) -> Vec<u8> {
        let mut q = Message::query();
        q.metadata.recursion_desired = true;
        q.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        q.to_vec().unwrap()
    }

    fn reply(packet: &[u8], table: &Table) -> Message {
        match Responder::new().handle(packet, table, Transport::Udp) {
            Action::Reply(bytes) => Message::from_vec(&bytes).unwrap(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn a_records(m: &Message) -> Vec<Ipv4Addr> {
        m.answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(A(ip)) => Some(*ip),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_query_gets_every_address_with_ttl_1() {
        let packet = ask("B.Weave.Local.", RecordType::A);
        let m = reply(&packet, &table());
        assert_eq!(
            m.metadata.id,
            Message::from_vec(&packet).unwrap().metadata.id
        );
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative && m.metadata.recursion_desired);
        let mut addrs = a_records(&m);
        addrs.sort();
        assert_eq!(
            addrs,
            [
                "10.2.0.3".parse::<Ipv4Addr>().unwrap(),
                "10.32.0.3".parse().unwrap()
            ]
        );
        assert!(m.answers.iter().all(|r| r.ttl == TTL));
        assert_eq!(m.queries, Message::from_vec(&packet).unwrap().queries);
    }

    #[test]
    fn a_shared_name_is_answered_in_a_rotating_order() {
        let records: Vec<_> = (0..40)
            .map(|i| {
                sharing(
                    &format!("c{i}"),
                    &[&format!("10.32.1.{i}/12")],
                    &["many"],
                    me(),
                )
            })
            .collect();
        let t = Table::from_records(&records);
        let packet = ask("many.weave.local.", RecordType::A);
        let mut firsts = std::collections::HashSet::new();
        let mut answered = std::collections::HashSet::new();
        for _ in 0..2000 {
            let m = match Responder::new().handle(&packet, &t, Transport::Tcp) {
                Action::Reply(b) => Message::from_vec(&b).unwrap(),
                other => panic!("{other:?}"),
            };
            let addrs = a_records(&m);
            assert_eq!(addrs.len(), MAX_ANSWERS);
            // A rotation: consecutive addresses, wrapping around.
            for pair in addrs.windows(2) {
                assert_eq!(
                    (u32::from(pair[0]) + 1 - 0x0a20_0100) % 40,
                    u32::from(pair[1]) - 0x0a20_0100
                );
            }
            firsts.insert(addrs[0]);
            answered.extend(addrs);
        }
        // Every container comes first, and the cut leaves none out for good.
        assert_eq!((firsts.len(), answered.len()), (40, 40));
    }

    #[test]
    fn unknown_and_dead_names_are_nxdomain_with_the_soa() {
        for name in [
            "nobody.weave.local.",
            "dead.weave.local.",
            "x.a.weave.local.",
        ] {
            let m = reply(&ask(name, RecordType::A), &table());
            assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
            assert!(m.answers.is_empty());
            assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
        }
    }

    #[test]
    fn other_types_of_a_known_name_are_nodata() {
        let m = reply(&ask("a.weave.local.", RecordType::AAAA), &table());
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        assert_eq!(m.authorities.len(), 1);
        let m = reply(&ask("weave.local.", RecordType::SOA), &table());
        assert_eq!(m.answers[0].record_type(), RecordType::SOA);
        let m = reply(&ask("a.weave.local.", RecordType::ANY), &table());
        assert_eq!(a_records(&m).len(), 1);
    }

    #[test]
    fn reverse_lookups_of_weave_addresses() {
        let m = reply(&ask("3.0.2.10.in-addr.arpa.", RecordType::PTR), &table());
        let targets: Vec<String> = m
            .answers
            .iter()
            .map(|r| match &r.data {
                RData::PTR(PTR(n)) => n.to_string(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(targets, ["b.weave.local.", "web.weave.local."]);
        // A dead container's address, or another one, is not ours to answer.
        for name in [
            "9.0.32.10.in-addr.arpa.",
            "1.1.168.192.in-addr.arpa.",
            "0.32.10.in-addr.arpa.",
        ] {
            let packet = ask(name, RecordType::PTR);
            assert!(matches!(
                Responder::new().handle(&packet, &table(), Transport::Udp),
                Action::Forward(_)
            ));
        }
    }

    #[test]
    fn names_outside_weave_local_are_forwarded() {
        for (name, kind) in [
            ("example.com.", RecordType::A),
            ("weave.local.example.com.", RecordType::A),
            ("localweave.local.", RecordType::A),
        ] {
            assert!(matches!(
                Responder::new().handle(&ask(name, kind), &table(), Transport::Udp),
                Action::Forward(_)
            ));
        }
    }

    #[test]
    fn responses_are_never_answered_and_odd_queries_get_errors() {
        let mut m = Message::from_vec(&ask("a.weave.local.", RecordType::A)).unwrap();
        m.metadata.message_type = MessageType::Response;
        assert!(matches!(
            Responder::new().handle(&m.to_vec().unwrap(), &table(), Transport::Udp),
            Action::Drop
        ));
        let mut m = Message::from_vec(&ask("a.weave.local.", RecordType::A)).unwrap();
        m.metadata.op_code = OpCode::Update;
        assert_eq!(
            reply(&m.to_vec().unwrap(), &table()).metadata.response_code,
            ResponseCode::NotImp
        );
        let mut m = Message::from_vec(&ask("a.weave.local.", RecordType::A)).unwrap();
        m.add_query(Query::query(
            Name::from_ascii("b.weave.local.").unwrap(),
            RecordType::A,
        ));
        assert_eq!(
            reply(&m.to_vec().unwrap(), &table()).metadata.response_code,
            ResponseCode::FormErr
        );
        let mut m = Message::query();
        m.add_query(Query::query(
            Name::from_ascii("a.weave.local.").unwrap(),
            RecordType::A,
        ));
        m.queries[0].set_query_class(DNSClass::CH);
        assert_eq!(
            reply(&m.to_vec().unwrap(), &table()).metadata.response_code,
            ResponseCode::Refused
        );
    }

    #[test]
    fn edns_is_answered_and_big_answers_are_truncated_over_udp() {
        let records: Vec<_> = (0..40)
            .map(|i| {
                sharing(
                    &format!("c{i}"),
                    &[&format!("10.32.1.{i}/12")],
                    &["many"],
                    me(),
                )
            })
            .collect();
        let t = Table::from_records(&records);
        let plain = ask("many.weave.local.", RecordType::A);
        let m = reply(&plain, &t);
        assert!(m.metadata.truncation && m.answers.is_empty(), "{m:?}");
        let tcp = match Responder::new().handle(&plain, &t, Transport::Tcp) {
            Action::Reply(b) => Message::from_vec(&b).unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(a_records(&tcp).len(), MAX_ANSWERS);
        let mut q = Message::from_vec(&plain).unwrap();
        let mut edns = Edns::new();
        edns.set_max_payload(4096);
        q.set_edns(edns);
        let m = reply(&q.to_vec().unwrap(), &t);
        assert!(!m.metadata.truncation);
        assert_eq!(a_records(&m).len(), MAX_ANSWERS);
        assert_eq!(m.edns.unwrap().max_payload(), EDNS_PAYLOAD);
    }
}
