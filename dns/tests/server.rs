//! The weave-dns binary on loopback (no root needed: a port above 1024 on a 127.x address of
//! each test's own): records picked up without restart, UDP and TCP, forwarding to an
//! upstream the test runs on loopback, one instance per state directory, SIGTERM, and a
//! flood of malformed packets and connections that must leave it serving.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::Query;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use weave_core::process::ProcessId;
use weave_core::store::Record as Attached;

const PORT: u16 = 5300;

/// weave-dns, killed when dropped.
struct Dns {
    child: Child,
    addr: SocketAddr,
}

impl Dns {
    fn start(state: &Path, ip: Ipv4Addr, upstream: Option<SocketAddr>) -> Self {
        let child = command(state, ip, upstream).spawn().unwrap();
        let dns = Self {
            child,
            addr: SocketAddr::from((ip, PORT)),
        };
        wait_until("weave-dns serves", || state.join("dns.pid").exists());
        dns
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(state: &Path, ip: Ipv4Addr, upstream: Option<SocketAddr>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weave-dns"));
    cmd.arg("--state-dir")
        .arg(state)
        .args(["--listen", &ip.to_string(), "--port", &PORT.to_string()])
        .stdin(Stdio::null());
    if let Some(up) = upstream {
        cmd.args(["--upstream", &up.to_string()]);
    }
    cmd
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Registers a live container (this test process) with names and one address.
fn attach(state: &Path, id: &str, addr: &str, names: &[&str]) {
    let record = Attached {
        id: id.into(),
        veth_index: None,
        mac: None,
        bridge: "weave".into(),
        veth: "vethwe0".into(),
        addrs: vec![addr.parse().unwrap()],
        owner: Some(ProcessId::of(std::process::id() as i32).unwrap()),
        names: names.iter().map(|n| n.to_string()).collect(),
        shared: false,
        route: false,
        netns: None,
    };
    let dir = state.join("containers");
    std::fs::create_dir_all(&dir).unwrap();
    let tmp = dir.join(format!("{id}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec(&record).unwrap()).unwrap();
    std::fs::rename(&tmp, dir.join(format!("{id}.json"))).unwrap();
}

fn query(name: &str) -> Vec<u8> {
    let mut q = Message::query();
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    q.to_vec().unwrap()
}

fn ask_udp(server: SocketAddr, name: &str) -> Message {
    ask_udp_from(Ipv4Addr::LOCALHOST, server, name)
}

fn ask_udp_from(client: Ipv4Addr, server: SocketAddr, name: &str) -> Message {
    let socket = UdpSocket::bind((client, 0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let q = query(name);
    let mut buf = [0; 4096];
    // Sent again after each second of silence, as resolvers do: a datagram may be lost
    // (in a flood, the server's socket buffer is full when it arrives).
    let len = (0..5)
        .find_map(|_| {
            socket.send_to(&q, server).unwrap();
            socket.recv(&mut buf).ok()
        })
        .expect("a reply within 5 s");
    let reply = Message::from_vec(&buf[..len]).unwrap();
    assert_eq!(
        reply.metadata.id,
        Message::from_vec(&q).unwrap().metadata.id
    );
    reply
}

fn ask_tcp(server: SocketAddr, name: &str) -> Message {
    ask_tcp_from(Ipv4Addr::LOCALHOST, server, name)
}

/// A TCP connection from this client address.
fn connect_from(client: Ipv4Addr, server: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((client, 0)).into()).unwrap();
    socket.connect(&server.into()).unwrap();
    socket.into()
}

fn ask_tcp_from(client: Ipv4Addr, server: SocketAddr, name: &str) -> Message {
    let mut stream = connect_from(client, server);
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let q = query(name);
    stream.write_all(&(q.len() as u16).to_be_bytes()).unwrap();
    stream.write_all(&q).unwrap();
    let mut len = [0; 2];
    stream.read_exact(&mut len).unwrap();
    let mut buf = vec![0; u16::from_be_bytes(len).into()];
    stream.read_exact(&mut buf).unwrap();
    Message::from_vec(&buf).unwrap()
}

fn addresses(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(A(ip)) => Some(*ip),
            _ => None,
        })
        .collect()
}

/// An upstream resolver on loopback, over UDP and TCP: `outside.test.` is 192.0.2.7, every
/// other name NXDOMAIN. Runs until the test process ends.
fn upstream(ip: Ipv4Addr) -> SocketAddr {
    counting_upstream(ip).0
}

/// [`upstream`], with the number of queries it received.
fn counting_upstream(ip: Ipv4Addr) -> (SocketAddr, Arc<AtomicUsize>) {
    let asked = Arc::new(AtomicUsize::new(0));
    let (udp_asked, tcp_asked) = (asked.clone(), asked.clone());
    let udp = UdpSocket::bind((ip, 0)).unwrap();
    let addr = udp.local_addr().unwrap();
    let tcp = TcpListener::bind(addr).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0; 4096];
        while let Ok((len, from)) = udp.recv_from(&mut buf) {
            udp_asked.fetch_add(1, Ordering::Relaxed);
            if let Some(reply) = upstream_answer(&buf[..len]) {
                let _ = udp.send_to(&reply, from);
            }
        }
    });
    std::thread::spawn(move || {
        for mut stream in tcp.incoming().flatten() {
            let mut len = [0; 2];
            if stream.read_exact(&mut len).is_err() {
                continue;
            }
            let mut buf = vec![0; u16::from_be_bytes(len).into()];
            if stream.read_exact(&mut buf).is_err() {
                continue;
            }
            tcp_asked.fetch_add(1, Ordering::Relaxed);
            if let Some(reply) = upstream_answer(&buf) {
                let _ = stream.write_all(&(reply.len() as u16).to_be_bytes());
                let _ = stream.write_all(&reply);
            }
        }
    });
    (addr, asked)
}

fn upstream_answer(packet: &[u8]) -> Option<Vec<u8>> {
    let q = Message::from_vec(packet).ok()?;
    let mut reply = Message::response(q.metadata.id, q.metadata.op_code);
    reply.add_queries(q.queries.clone());
    let name = q.queries.first()?.name().clone();
    if name == Name::from_ascii("outside.test.").unwrap() {
        reply.add_answer(Record::from_rdata(
            name,
            60,
            RData::A(A("192.0.2.7".parse().unwrap())),
        ));
    } else {
        reply.metadata.response_code = ResponseCode::NXDomain;
    }
    reply.to_vec().ok()
}

#[test]
fn answers_names_from_records_over_udp_and_tcp_and_forwards_the_rest() {
    let state = tempfile::tempdir().unwrap();
    let ip = Ipv4Addr::new(127, 53, 0, 1);
    let up = upstream(Ipv4Addr::new(127, 53, 0, 101));
    attach(state.path(), "early", "10.32.0.6/12", &["early"]);
    let dns = Dns::start(state.path(), ip, Some(up));

    // Records there before it started, and one added while it runs.
    assert_eq!(
        addresses(&ask_udp(dns.addr, "early.weave.local.")),
        ["10.32.0.6".parse::<Ipv4Addr>().unwrap()]
    );
    let missing = ask_udp(dns.addr, "web.weave.local.");
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    attach(state.path(), "c1", "10.32.0.7/12", &["web"]);
    wait_until("the new name", || {
        !addresses(&ask_udp(dns.addr, "web.weave.local.")).is_empty()
    });
    let udp = ask_udp(dns.addr, "WEB.weave.local.");
    assert_eq!(addresses(&udp), ["10.32.0.7".parse::<Ipv4Addr>().unwrap()]);
    assert_eq!(udp.answers[0].ttl, 1);
    let tcp = ask_tcp(dns.addr, "web.weave.local.");
    assert_eq!(addresses(&tcp), addresses(&udp));

    // Removed: gone at once.
    std::fs::remove_file(state.path().join("containers/c1.json")).unwrap();
    wait_until("the removal", || {
        ask_udp(dns.addr, "web.weave.local.").metadata.response_code == ResponseCode::NXDomain
    });

    // Everything else goes upstream, over the transport the client used.
    let outside = ask_udp(dns.addr, "outside.test.");
    assert_eq!(
        addresses(&outside),
        ["192.0.2.7".parse::<Ipv4Addr>().unwrap()]
    );
    assert_eq!(
        addresses(&ask_tcp(dns.addr, "outside.test.")),
        addresses(&outside)
    );
    assert_eq!(
        ask_udp(dns.addr, "nothing.test.").metadata.response_code,
        ResponseCode::NXDomain
    );
}

#[test]
fn without_upstream_outside_names_get_servfail() {
    let state = tempfile::tempdir().unwrap();
    let resolv = state.path().join("resolv.conf");
    std::fs::write(&resolv, "# no nameserver\n").unwrap();
    let ip = Ipv4Addr::new(127, 53, 0, 2);
    let mut cmd = command(state.path(), ip, None);
    cmd.arg("--resolv-conf").arg(&resolv);
    let _dns = Dns {
        child: cmd.spawn().unwrap(),
        addr: SocketAddr::from((ip, PORT)),
    };
    wait_until("weave-dns serves", || state.path().join("dns.pid").exists());
    assert_eq!(
        ask_udp(SocketAddr::from((ip, PORT)), "outside.test.")
            .metadata
            .response_code,
        ResponseCode::ServFail
    );
}

fn exit_of(mut cmd: Command) -> (ExitStatus, String) {
    let out = cmd.stderr(Stdio::piped()).output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn one_instance_per_state_directory_and_sigterm_cleans_up() {
    let state = tempfile::tempdir().unwrap();
    let ip = Ipv4Addr::new(127, 53, 0, 3);
    let mut dns = Dns::start(state.path(), ip, None);
    let pid = std::fs::read_to_string(state.path().join("dns.pid")).unwrap();
    assert_eq!(pid.trim(), dns.child.id().to_string());

    // Same address: cannot bind, sees the lock held, exits 0 quietly.
    let (status, stderr) = exit_of(command(state.path(), ip, None));
    assert!(status.success(), "{stderr}");
    // Same state directory on another address: binds, cannot lock, exits 0.
    let (status, stderr) = exit_of(command(state.path(), Ipv4Addr::new(127, 53, 0, 4), None));
    assert!(status.success(), "{stderr}");
    // Another state directory on the taken address: someone else's port, an error.
    let other = tempfile::tempdir().unwrap();
    let (status, stderr) = exit_of(command(other.path(), ip, None));
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.starts_with("weave-dns: UDP port 127.53.0.3:5300"),
        "{stderr}"
    );
    assert!(stderr.contains("another program serves there"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // The first one was not disturbed.
    assert_eq!(
        std::fs::read_to_string(state.path().join("dns.pid")).unwrap(),
        pid
    );

    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(dns.child.id() as i32, libc::SIGTERM) };
    let status = dns.child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!state.path().join("dns.pid").exists());
}

#[test]
fn bad_flags_are_one_line_errors() {
    let state = tempfile::tempdir().unwrap();
    let mut cmd = command(state.path(), Ipv4Addr::new(127, 53, 0, 5), None);
    cmd.args(["--upstream", "resolver.example"]);
    let (status, stderr) = exit_of(cmd);
    assert_eq!(status.code(), Some(2));
    assert!(
        stderr.contains("\"resolver.example\" is not an IP address"),
        "{stderr}"
    );
    let mut cmd = command(state.path(), Ipv4Addr::new(127, 53, 0, 5), None);
    cmd.args(["--upstream", "127.53.0.5:5300"]);
    let (status, stderr) = exit_of(cmd);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("is weave-dns itself"), "{stderr}");
    assert!(!state.path().join("dns.pid").exists());
}

/// Not a benchmark: garbage over UDP and TCP, as fast as one thread sends it, then the
/// server must still answer correctly.
#[test]
fn a_flood_of_malformed_packets_and_connections_leaves_it_serving() {
    let state = tempfile::tempdir().unwrap();
    let ip = Ipv4Addr::new(127, 53, 0, 6);
    attach(state.path(), "c1", "10.32.0.8/12", &["web"]);
    let dns = Dns::start(state.path(), ip, None);
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // From an address of its own: the checks below, from 127.0.0.1, are not over its rate.
    let flooder = Ipv4Addr::new(127, 53, 0, 206);
    let socket = UdpSocket::bind((flooder, 0)).unwrap();
    let good = query("web.weave.local.");
    for i in 0..30_000 {
        let packet: Vec<u8> = match i % 4 {
            0 => (0..next() % 600).map(|_| next() as u8).collect(),
            1 => good[..(next() as usize % good.len())].to_vec(),
            2 => {
                let mut p = good.clone();
                let at = next() as usize % p.len();
                p[at] = next() as u8;
                p
            }
            // Larger than any query it accepts.
            _ => vec![0xc0; 9000],
        };
        let _ = socket.send_to(&packet, dns.addr);
    }
    let mut conns = Vec::new();
    for i in 0..200 {
        let mut s = connect_from(flooder, dns.addr);
        let _ = match i % 3 {
            // A length prefix promising more than ever comes.
            0 => s.write_all(&[0xff, 0xff, 1, 2, 3]),
            1 => s.write_all(&(0..300).map(|_| next() as u8).collect::<Vec<_>>()),
            _ => Ok(()),
        };
        conns.push(s);
    }
    drop(conns);
    assert_eq!(
        addresses(&ask_udp(dns.addr, "web.weave.local.")),
        ["10.32.0.8".parse::<Ipv4Addr>().unwrap()]
    );
    assert_eq!(
        addresses(&ask_tcp(dns.addr, "web.weave.local.")),
        ["10.32.0.8".parse::<Ipv4Addr>().unwrap()]
    );
    let mut dns = dns;
    assert!(dns.child.try_wait().unwrap().is_none(), "weave-dns exited");
}

#[test]
fn a_log_file_gets_no_colour_codes() {
    let state = tempfile::tempdir().unwrap();
    let log = state.path().join("dns.log");
    let mut cmd = command(state.path(), Ipv4Addr::new(127, 53, 0, 7), None);
    cmd.args(["--log-level", "debug"])
        .stderr(std::fs::File::create(&log).unwrap());
    let mut child = cmd.spawn().unwrap();
    wait_until("weave-dns serves", || state.path().join("dns.pid").exists());
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.is_empty(), "debug logs something at start");
    assert!(!text.contains('\u{1b}'), "colour codes in a file: {text:?}");
}

/// Processes started one after the other (in attach order), killed when dropped.
struct Procs(Vec<Child>);

impl Procs {
    fn start(n: usize) -> Self {
        Self(
            (0..n)
                .map(|_| Command::new("sleep").arg("60").spawn().unwrap())
                .collect(),
        )
    }

    fn kill(&mut self, i: usize) {
        self.0[i].kill().unwrap();
        self.0[i].wait().unwrap();
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Registers the container of process `pid` as the hook writes its record (JSON written
/// here, so that the test also runs against weave-dns versions without `shared`).
fn attach_process(state: &Path, id: &str, pid: u32, addr: &str, names: &[&str], shared: bool) {
    let owner = ProcessId::of(pid as i32).unwrap();
    let mut record = serde_json::json!({
        "id": id, "bridge": "weave", "veth": "vethwe0", "addrs": [addr],
        "owner": owner, "names": names,
    });
    if shared {
        record["shared"] = true.into();
    }
    let dir = state.join("containers");
    std::fs::create_dir_all(&dir).unwrap();
    let tmp = dir.join(format!("{id}.tmp"));
    std::fs::write(&tmp, record.to_string()).unwrap();
    std::fs::rename(&tmp, dir.join(format!("{id}.json"))).unwrap();
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// Issue 11, item 6: a later container claiming `web` (its id sorting first) gets none of
/// `web`'s answers, also after a restart of weave-dns, until the holder is gone; shared
/// names are answered in a rotating order.
#[test]
fn a_name_cannot_be_taken_over_and_shared_names_rotate() {
    let state = tempfile::tempdir().unwrap();
    let addr = Ipv4Addr::new(127, 53, 0, 9);
    let mut procs = Procs::start(4);
    let pid = |i: usize| procs.0[i].id();
    attach_process(
        state.path(),
        "victim",
        pid(0),
        "10.32.0.20/12",
        &["web"],
        false,
    );
    attach_process(state.path(), "s1", pid(2), "10.32.0.22/12", &["pool"], true);
    attach_process(state.path(), "s2", pid(3), "10.32.0.23/12", &["pool"], true);
    let dns = Dns::start(state.path(), addr, None);
    assert_eq!(
        addresses(&ask_udp(dns.addr, "web.weave.local.")),
        [ip("10.32.0.20")]
    );
    // The attacker comes later, with an id that sorts first.
    attach_process(
        state.path(),
        "0attacker",
        pid(1),
        "10.32.0.21/12",
        &["web"],
        true,
    );
    // Records are applied within milliseconds (inotify).
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..20 {
        assert_eq!(
            addresses(&ask_udp(dns.addr, "web.weave.local.")),
            [ip("10.32.0.20")]
        );
    }
    drop(dns);
    std::fs::remove_file(state.path().join("dns.pid")).ok();
    let dns = Dns::start(state.path(), addr, None);
    for _ in 0..20 {
        assert_eq!(
            addresses(&ask_udp(dns.addr, "web.weave.local.")),
            [ip("10.32.0.20")]
        );
    }
    let mut firsts = std::collections::HashSet::new();
    for _ in 0..100 {
        let pool = addresses(&ask_udp(dns.addr, "pool.weave.local."));
        assert_eq!(pool.len(), 2);
        firsts.insert(pool[0]);
    }
    assert_eq!(
        firsts.len(),
        2,
        "the first address never changed: {firsts:?}"
    );
    // The holder goes: the name falls to the next claimant.
    procs.kill(0);
    wait_until("the next claimant holds web", || {
        addresses(&ask_udp(dns.addr, "web.weave.local.")) == [ip("10.32.0.21")]
    });
}

/// The documented defaults of weave-dns (written out, so that this test also runs against
/// versions without limits).
const CLIENT_QPS: f64 = 1000.0;
const CLIENT_FORWARD_QPS: f64 = 200.0;
const CLIENT_TCP: usize = 8;

/// Issue 11, item 7: one client floods (names of weave.local and outside names, as fast as
/// one thread sends): what it gets answered and what reaches the upstream stay within its
/// rates, and another client is answered meanwhile.
#[test]
fn a_flood_from_one_client_is_limited_and_another_is_answered() {
    let state = tempfile::tempdir().unwrap();
    attach(state.path(), "c1", "10.32.0.30/12", &["web"]);
    let (up, asked) = counting_upstream(Ipv4Addr::new(127, 53, 0, 110));
    let dns = Dns::start(state.path(), Ipv4Addr::new(127, 53, 0, 10), Some(up));
    let flooder = UdpSocket::bind((Ipv4Addr::new(127, 53, 0, 210), 0)).unwrap();
    let reader = flooder.try_clone().unwrap();
    reader
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let stop = done.clone();
    let replies = std::thread::spawn(move || {
        let mut buf = [0; 4096];
        let mut count = 0usize;
        while !stop.load(Ordering::Relaxed) {
            if reader.recv(&mut buf).is_ok() {
                count += 1;
            }
        }
        count
    });
    let (inside, outside) = (query("web.weave.local."), query("outside.test."));
    let started = Instant::now();
    let sent = 20_000;
    for i in 0..sent {
        let packet = if i % 2 == 0 { &inside } else { &outside };
        let _ = flooder.send_to(packet, dns.addr);
    }
    // The flooder is over its rates now; another client is not.
    let other = Ipv4Addr::new(127, 53, 0, 211);
    assert_eq!(
        addresses(&ask_udp_from(other, dns.addr, "web.weave.local.")),
        ["10.32.0.30".parse::<Ipv4Addr>().unwrap()]
    );
    assert_eq!(
        addresses(&ask_udp_from(other, dns.addr, "outside.test.")),
        ["192.0.2.7".parse::<Ipv4Addr>().unwrap()]
    );
    std::thread::sleep(Duration::from_millis(500));
    done.store(true, Ordering::Relaxed);
    let answered = replies.join().unwrap();
    let seconds = started.elapsed().as_secs_f64();
    // One second's worth at once, then the rate (the other client's query counts upstream).
    let forwarded = asked.load(Ordering::Relaxed) - 1;
    eprintln!("{sent} queries in {seconds:.2} s: {answered} answered, {forwarded} forwarded");
    assert!(
        answered as f64 <= CLIENT_QPS * (seconds + 1.0),
        "{answered} answers to one client in {seconds:.2} s"
    );
    assert!(
        forwarded as f64 <= CLIENT_FORWARD_QPS * (seconds + 1.0),
        "{forwarded} of one client's queries forwarded in {seconds:.2} s"
    );
    assert!(answered >= 500, "limited, not shut out: {answered} answers");
}

/// Issue 11, item 7: idle TCP connections of one client, more than the server holds in
/// all, leave it its own few, and another client's TCP query is answered.
#[test]
fn idle_tcp_connections_of_one_client_do_not_lock_out_another() {
    let state = tempfile::tempdir().unwrap();
    attach(state.path(), "c1", "10.32.0.31/12", &["web"]);
    let dns = Dns::start(state.path(), Ipv4Addr::new(127, 53, 0, 11), None);
    let hog = Ipv4Addr::new(127, 53, 0, 212);
    let idle: Vec<TcpStream> = (0..300).map(|_| connect_from(hog, dns.addr)).collect();
    assert_eq!(
        addresses(&ask_tcp_from(
            Ipv4Addr::new(127, 53, 0, 213),
            dns.addr,
            "web.weave.local."
        )),
        ["10.32.0.31".parse::<Ipv4Addr>().unwrap()]
    );
    // The ones over the client's share were closed at once; its share stays open.
    std::thread::sleep(Duration::from_millis(300));
    let open = idle
        .iter()
        .filter(|s| {
            s.set_nonblocking(true).unwrap();
            matches!((&**s).read(&mut [0; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count();
    assert_eq!(open, CLIENT_TCP, "open connections of one client");
}
