//! A hostile container against the host (issue 11, item 4), each test in throwaway network
//! namespaces: the test thread unshares its own "host", every "container" and every other
//! "network" is a process in a namespace of its own, and traffic goes only between them.
//!
//! - a host service on 0.0.0.0 is closed to the bridge; weave DNS's port on its address is
//!   open, over UDP and TCP;
//! - the host forwards nothing from the bridge to another of its networks, even for a
//!   container that routes through it; bridged traffic between containers still passes;
//! - after `nft flush ruleset` the next attach and `weave-hook gc` close the host again;
//!   `reset` takes the bridge's elements away.
//!
//! Root only: skipped outside CI when not root, a failure in CI.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Containers and other networks alike: processes in network namespaces of their own.
use common::Container as Netns;
use common::{bare_host, settings, sh};
use weave_core::settings::Settings;
use weave_e2e::root_or_skip;
use weave_hook::attach::attach;

/// Moves the calling test thread into a fresh network namespace of its own, forwarding
/// IPv4 as a router (or a Docker host) does.
fn private_host() {
    bare_host();
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").unwrap();
}

impl Netns {
    /// Whether a TCP connection to `ip:port` is accepted within a second.
    fn connects(&self, ip: &str, port: u16) -> bool {
        self.python_ok(TCP_CONNECT, &[ip, &port.to_string()])
    }

    /// Whether a UDP datagram to `ip:port` is answered within a second.
    fn udp_answered(&self, ip: &str, port: u16) -> bool {
        self.python_ok(UDP_ASK, &[ip, &port.to_string()])
    }
}

const TCP_CONNECT: &str = r#"
import socket, sys
socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
"#;

const UDP_ASK: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
s.sendto(b"ping", (sys.argv[1], int(sys.argv[2])))
s.recvfrom(64)
"#;

/// A host service on 0.0.0.0: TCP (accepting through its backlog) and a UDP echo, on one
/// port. Killed when dropped.
const SERVE: &str = r#"
import socket, sys
port = int(sys.argv[1])
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", port))
t.listen(64)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("0.0.0.0", port))
print("ready", flush=True)
while True:
    data, peer = u.recvfrom(64)
    u.sendto(data, peer)
"#;

struct Service(Child);

impl Service {
    /// Listens in the calling thread's namespace; returns once it does.
    fn start(port: u16) -> Self {
        let mut child = Command::new("python3")
            .args(["-c", SERVE, &port.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "ready");
        Self(child)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a `weave.dns=true` attach does to the host: weave DNS's address on the bridge.
/// (Without starting weave-dns: the test's own service stands in for it.)
fn dns_address_on_bridge(s: &Settings) {
    sh(&format!("ip addr add {} dev {}", s.dns_addr(), s.bridge));
}

/// A container at 10.32.0.5 on a bridge that holds weave DNS's address, and services on
/// 0.0.0.0 port 8080 and 53.
fn host_with_services(s: &Settings) -> (Netns, Service, Service) {
    let c = Netns::start("curious");
    attach(s, &c.state("10.32.0.5/12")).unwrap();
    dns_address_on_bridge(s);
    (c, Service::start(8080), Service::start(53))
}

#[test]
fn a_host_service_on_all_addresses_is_closed_to_containers_but_dns_is_open() {
    if !root_or_skip("a_host_service_on_all_addresses_is_closed_to_containers_but_dns_is_open") {
        return;
    }
    private_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let (c, _web, _dns) = host_with_services(&s);
    assert!(
        !c.connects("10.32.0.1", 8080),
        "a host service on 0.0.0.0 is reached through weave DNS's address"
    );
    assert!(!c.udp_answered("10.32.0.1", 8080));
    assert!(!c.pings("10.32.0.1"));
    assert!(c.connects("10.32.0.1", 53), "weave DNS over TCP");
    assert!(c.udp_answered("10.32.0.1", 53), "weave DNS over UDP");
    // Only on weave DNS's address: port 53 on another host address is closed too.
    sh("ip addr add 10.32.0.9/32 dev weave");
    assert!(!c.connects("10.32.0.9", 53));
    // Replies to what the host itself opens still come in.
    assert!(Command::new("busybox")
        .args(["ping", "-c", "1", "-W", "1", "10.32.0.5"])
        .output()
        .unwrap()
        .status
        .success());
}

/// Another network of the host: a veth `whout` to a namespace at 10.99.0.2 that routes
/// weave's range back through the host.
fn other_network() -> Netns {
    let outside = Netns::start("outside");
    sh(&format!(
        "ip link add whout type veth peer name eth0 netns /proc/{}/ns/net",
        outside.pid()
    ));
    sh("ip addr add 10.99.0.1/24 dev whout && ip link set whout up");
    outside.run(
        "ip addr add 10.99.0.2/24 dev eth0 && ip link set eth0 up && ip link set lo up \
         && ip route add 10.32.0.0/12 via 10.99.0.1",
    );
    outside
}

#[test]
fn the_host_forwards_nothing_from_the_bridge_to_its_other_networks() {
    if !root_or_skip("the_host_forwards_nothing_from_the_bridge_to_its_other_networks") {
        return;
    }
    private_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let outside = other_network();
    let a = Netns::start("router-user");
    let b = Netns::start("neighbour");
    attach(&s, &a.state("10.32.0.5/12")).unwrap();
    attach(&s, &b.state("10.32.0.6/12")).unwrap();
    dns_address_on_bridge(&s);
    // What a container with CAP_NET_ADMIN can do: route everything through the host.
    a.run("ip route add default via 10.32.0.1");
    assert!(sh("ip route get 10.99.0.2").contains("whout"));
    assert!(!a.pings("10.99.0.2"), "forwarded to another network");
    assert!(!a.connects("10.99.0.2", 22));
    // Between the bridge's own ports traffic still passes, br_netfilter on or off.
    assert!(a.pings("10.32.0.6"));
    std::fs::write("/proc/sys/net/bridge/bridge-nf-call-iptables", "1").unwrap();
    assert!(a.pings("10.32.0.6"));
    assert!(!a.pings("10.99.0.2"));
    drop(outside);
}

/// How many of the bridge's elements `inet weave-hook` holds (bridges, bridged, host_open).
fn elements_of(bridge: &str) -> usize {
    let listing = Command::new("nft")
        .args(["list", "table", "inet", "weave-hook"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&listing.stdout)
        .matches(&format!("\"{bridge}\""))
        .count()
}

/// Flushes the whole ruleset (what a firewalld reload or `nft flush ruleset` does), shows
/// the host open again, lets `restore` close it, and checks it is closed.
fn closed_again_after_a_flush(test: &str, restore: impl FnOnce(&Settings)) {
    if !root_or_skip(test) {
        return;
    }
    private_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let (c, _web, _dns) = host_with_services(&s);
    assert!(!c.connects("10.32.0.1", 8080));
    sh("nft flush ruleset");
    assert!(c.connects("10.32.0.1", 8080), "a flush opens the host");
    restore(&s);
    assert!(!c.connects("10.32.0.1", 8080), "closed again");
    assert!(c.connects("10.32.0.1", 53));
}

#[test]
fn the_next_attach_closes_the_host_again_after_a_flush() {
    closed_again_after_a_flush("the_next_attach_closes_the_host_again_after_a_flush", |s| {
        let next = Netns::start("next");
        attach(s, &next.state("10.32.0.7/12")).unwrap();
    });
}

#[test]
fn gc_closes_the_host_again_after_a_flush() {
    closed_again_after_a_flush("gc_closes_the_host_again_after_a_flush", |s| {
        weave_hook::gc::collect(s).unwrap();
    });
}

#[test]
fn the_common_attach_runs_no_nft_and_reset_takes_the_elements_away() {
    if !root_or_skip("the_common_attach_runs_no_nft_and_reset_takes_the_elements_away") {
        return;
    }
    private_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let a = Netns::start("first");
    attach(&s, &a.state("10.32.0.5/12")).unwrap();
    assert_eq!(
        elements_of("weave"),
        5,
        "bridges (1), bridged (2 names), host_open (2)"
    );
    // Another bridge's elements are its own: reset of one leaves the other's.
    sh("nft add element inet weave-hook bridges '{ \"other\" }'");
    // The common attach asks the kernel, and writes nothing: the table's handle of
    // its rules stays the same.
    let before = sh("nft -a list chain inet weave-hook input");
    let b = Netns::start("second");
    let started = Instant::now();
    attach(&s, &b.state("10.32.0.6/12")).unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(sh("nft -a list chain inet weave-hook input"), before);
    for c in [&a, &b] {
        let left = weave_hook::detach::detach(&s, &c.id).unwrap();
        weave_hook::detach::delete_now(&left).unwrap();
    }
    drop((a, b));
    // The veths go with their namespaces; reset refuses while a port is left.
    let deadline = Instant::now() + Duration::from_secs(5);
    while sh("ip -o link show master weave").contains("vethwe") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    weave_hook::reset::reset(&s).unwrap();
    assert_eq!(elements_of("weave"), 0);
    assert_eq!(elements_of("other"), 1);
}

#[test]
fn a_guard_change_tells_the_generation_it_made() {
    if !root_or_skip("a_guard_change_tells_the_generation_it_made") {
        return;
    }
    private_host();
    weave_hook::nftables::ensure(
        "weave",
        weave_hook::nftables::Openings {
            dns: "10.32.0.1".parse().unwrap(),
            exposed: &[],
        },
        weave_hook::nftables::Rewrite::Always,
    )
    .unwrap();
    sh("ip link add wgtest type veth peer name wgtest1");
    let index: u32 = sh("ip -o link show wgtest")
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let port = weave_hook::portguard::Port {
        index,
        mac: weave_core::mac::Mac([0x0a, 0x58, 10, 2, 0, 5]),
        addrs: vec!["10.2.0.5".parse().unwrap()],
    };
    let before = weave_hook::nftgen::generation().unwrap();
    let made = weave_hook::portguard::add(&port).unwrap();
    assert_eq!(made, Some(before.wrapping_add(1)));
    assert_eq!(
        weave_hook::nftgen::generation().unwrap(),
        before.wrapping_add(1)
    );
    let listing = sh("nft list set bridge weave-hook ips");
    assert!(listing.contains("\"wgtest\" . 10.2.0.5"), "{listing}");
    assert!(weave_hook::portguard::remove(&port).unwrap().is_some());
    assert_eq!(
        weave_hook::portguard::remove(&port).unwrap(),
        None,
        "already gone"
    );
}

// Item 3: a container sends only as itself, and the bridge learns only what weave made.

/// Sends three gratuitous ARP replies claiming `ip` for ethwe's own MAC (or `mac`).
const GARP: &str = r#"
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("ethwe", 0))
mac = bytes.fromhex(sys.argv[2].replace(":", "")) if len(sys.argv) > 2 else s.getsockname()[4]
ip = socket.inet_aton(sys.argv[1])
arp = b"\x00\x01\x08\x00\x06\x04\x00\x02" + mac + ip + b"\xff" * 6 + ip
for _ in range(3):
    s.send(b"\xff" * 6 + mac + b"\x08\x06" + arp + b"\x00" * 18)
"#;

/// Sends `n` broadcast frames from random (locally administered, unicast) source MACs, of
/// the local experimental ethertype (br_netfilter drops a bogus IPv4 frame before the
/// bridge learns from it, and a flood needs no IPv4).
const FLOOD: &str = r#"
import os, socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("ethwe", 0))
for _ in range(int(sys.argv[1])):
    src = bytes([0x02]) + os.urandom(5)
    s.send(b"\xff" * 6 + src + b"\x88\xb5" + b"\x00" * 46)
"#;

fn python(c: &Netns, script: &str, args: &[&str]) {
    assert!(c.python_ok(script, args), "python3 in {} failed", c.id);
}

impl Netns {
    fn neighbour(&self, ip: &str) -> String {
        self.run(&format!("ip neigh show {ip}"))
    }
}

/// Three containers on one bridge: a victim at .2, a client at .1 that knows the victim's
/// MAC, and an attacker at .3.
fn victim_client_attacker(s: &Settings) -> (Netns, Netns, Netns) {
    let client = Netns::start("client");
    let victim = Netns::start("victim");
    let attacker = Netns::start("attacker");
    attach(s, &client.state("10.2.0.1/24")).unwrap();
    attach(s, &victim.state("10.2.0.2/24")).unwrap();
    attach(s, &attacker.state("10.2.0.3/24")).unwrap();
    assert!(client.pings("10.2.0.2"));
    assert!(attacker.pings("10.2.0.1"));
    (client, victim, attacker)
}

/// The attacker takes the victim's address and announces it; true when the client's
/// traffic for the victim then goes to the attacker (its neighbour entry names the
/// attacker's MAC).
fn ip_spoof_works(client: &Netns, victim: &Netns, attacker: &Netns) -> bool {
    attacker.run("ip addr add 10.2.0.2/32 dev ethwe 2>/dev/null || true");
    // Past the neighbour entry's locktime (1 s), within which an update is ignored.
    std::thread::sleep(Duration::from_millis(1100));
    python(attacker, GARP, &["10.2.0.2"]);
    std::thread::sleep(Duration::from_millis(200));
    let entry = client.neighbour("10.2.0.2");
    let taken = entry.contains(&attacker.ethwe_mac());
    assert!(taken || entry.contains(&victim.ethwe_mac()), "{entry}");
    taken
}

#[test]
fn a_container_cannot_take_another_containers_address() {
    if !root_or_skip("a_container_cannot_take_another_containers_address") {
        return;
    }
    private_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let (client, victim, attacker) = victim_client_attacker(&s);
    assert!(!ip_spoof_works(&client, &victim, &attacker));
    assert!(client.neighbour("10.2.0.2").contains(&victim.ethwe_mac()));
    assert!(client.pings("10.2.0.2"), "the victim is still reached");
}

#[test]
fn a_container_cannot_take_another_containers_mac() {
    if !root_or_skip("a_container_cannot_take_another_containers_mac") {
        return;
    }
    private_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let (client, victim, attacker) = victim_client_attacker(&s);
    let victim_mac = victim.ethwe_mac();
    let victim_port = weave_core::settings::host_veth_name(&victim.id);
    attacker.run(&format!("ip link set ethwe address {victim_mac}"));
    // Frames from the victim's MAC (its own address, then the victim's) teach the bridge
    // the victim is behind the attacker's port.
    python(&attacker, GARP, &["10.2.0.3", &victim_mac]);
    python(&attacker, GARP, &["10.2.0.2", &victim_mac]);
    std::thread::sleep(Duration::from_millis(200));
    let fdb = sh(&format!(
        "bridge fdb show br weave | grep -i {victim_mac} || true"
    ));
    assert!(
        fdb.lines().all(|l| l.contains(&victim_port)),
        "the bridge learned the victim's MAC elsewhere: {fdb}"
    );
    assert!(client.pings("10.2.0.2"), "the victim is still reached");
}

/// Learned (not permanent) FDB entries on a port.
fn learned(port: &str) -> usize {
    sh(&format!("bridge fdb show brport {port}"))
        .lines()
        .filter(|l| !l.contains("permanent"))
        .count()
}

#[test]
fn a_source_mac_flood_does_not_fill_the_bridge() {
    if !root_or_skip("a_source_mac_flood_does_not_fill_the_bridge") {
        return;
    }
    private_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let (_client, _victim, attacker) = victim_client_attacker(&s);
    let port = weave_core::settings::host_veth_name(&attacker.id);
    python(&attacker, FLOOD, &["2000"]);
    std::thread::sleep(Duration::from_millis(200));
    let n = learned(&port);
    assert!(n <= 1, "the bridge learned {n} MACs on the attacker's port");
}

/// How many elements `bridge weave-hook`'s `ports` set holds.
fn guarded_ports() -> usize {
    let out = sh("nft -j list set bridge weave-hook ports");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    json["nftables"][1]["set"]["elem"]
        .as_array()
        .map_or(0, Vec::len)
}

#[test]
fn guards_go_with_their_ports_and_come_back_after_a_flush() {
    if !root_or_skip("guards_go_with_their_ports_and_come_back_after_a_flush") {
        return;
    }
    private_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let (client, victim, attacker) = victim_client_attacker(&s);
    assert_eq!(guarded_ports(), 3);
    // A flush takes the guards away: the next attach puts back every port's.
    sh("nft flush ruleset");
    let late = Netns::start("late");
    attach(&s, &late.state("10.2.0.4/24")).unwrap();
    assert_eq!(guarded_ports(), 4);
    assert!(!ip_spoof_works(&client, &victim, &attacker));
    // Detach removes a port's elements; gc those of ports that are gone.
    let left = weave_hook::detach::detach(&s, &late.id).unwrap();
    weave_hook::detach::delete_now(&left).unwrap();
    assert_eq!(guarded_ports(), 3);
    drop(victim);
    let deadline = Instant::now() + Duration::from_secs(5);
    while sh("ip -o link show master weave").matches("vethwe").count() > 2
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let report = weave_hook::gc::collect(&s).unwrap();
    assert_eq!(report.unguarded_ports, 1);
    assert_eq!(guarded_ports(), 2);
}

#[test]
fn the_binarys_detach_removes_the_guard_in_the_background() {
    if !root_or_skip("the_binarys_detach_removes_the_guard_in_the_background") {
        return;
    }
    private_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let c = Netns::start("leaving");
    attach(&s, &c.state("10.2.0.8/24")).unwrap();
    assert_eq!(guarded_ports(), 1);
    let mut hook = Command::new(env!("CARGO_BIN_EXE_weave-hook"))
        .arg("--state-dir")
        .arg(dir.path())
        .arg("detach")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let state = serde_json::json!({
        "ociVersion": "1.0.2", "id": "leaving", "status": "stopped", "annotations": {}
    });
    std::io::Write::write_all(hook.stdin.as_mut().unwrap(), state.to_string().as_bytes()).unwrap();
    drop(hook.stdin.take());
    assert!(hook.wait().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(5);
    while guarded_ports() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(guarded_ports(), 0, "the background child removed the guard");
}

#[test]
fn an_exposed_host_is_reached_whole_until_hidden() {
    if !root_or_skip("an_exposed_host_is_reached_whole_until_hidden") {
        return;
    }
    private_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let (c, _web, _dns) = host_with_services(&s);
    let host = "10.47.255.254";
    let net = weave_hook::expose::expose(&s, None).unwrap();
    assert_eq!(net.to_string(), format!("{host}/12"));
    assert!(
        c.connects(host, 8080),
        "the exposed address is reached whole"
    );
    assert!(c.pings(host));
    assert!(
        !c.connects("10.32.0.1", 8080),
        "weave DNS's address stays closed"
    );
    // Idempotent, and no container gets the host's address.
    assert_eq!(weave_hook::expose::expose(&s, None).unwrap(), net);
    assert_eq!(sh("ip -o -4 addr show dev weave").matches(host).count(), 1);
    let d = Netns::start("wants-it");
    let err = attach(&s, &d.state(&format!("{host}/12")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("kept by weave itself"), "{err}");
    // It survives gc, and gc puts it back after a firewall reload.
    weave_hook::gc::collect(&s).unwrap();
    assert!(c.connects(host, 8080));
    sh("nft flush ruleset");
    weave_hook::gc::collect(&s).unwrap();
    assert!(c.connects(host, 8080));
    assert!(!c.connects("10.32.0.1", 8080));
    // Hidden: closed again, and off the bridge.
    assert_eq!(weave_hook::expose::hide(&s, None).unwrap(), vec![net]);
    assert!(!c.connects(host, 8080));
    assert!(!sh("ip -o -4 addr show dev weave").contains(host));
    assert!(weave_hook::expose::hide(&s, None).unwrap().is_empty());
}

/// Another network of the host with no route back to weave's range: only masqueraded
/// traffic from the bridge is answered there.
fn network_without_route_back() -> Netns {
    let outside = Netns::start("outside-nat");
    sh(&format!(
        "ip link add whnat type veth peer name eth0 netns /proc/{}/ns/net",
        outside.pid()
    ));
    sh("ip addr add 10.98.0.1/24 dev whnat && ip link set whnat up");
    outside.run("ip addr add 10.98.0.2/24 dev eth0 && ip link set eth0 up && ip link set lo up");
    outside
}

#[test]
fn a_weave_only_container_gets_out_masqueraded_only_when_it_asks() {
    if !root_or_skip("a_weave_only_container_gets_out_masqueraded_only_when_it_asks") {
        return;
    }
    private_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let _outside = network_without_route_back();
    let with_route = |c: &Netns, cidr: &str| {
        let mut state = c.state(cidr);
        state
            .annotations
            .insert("weave.route".into(), "default".into());
        state
    };
    // Asking before the host is exposed: refused, and nothing is left.
    let early = Netns::start("early");
    let err = attach(&s, &with_route(&early, "10.32.0.8/12"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("run `weave-hook expose` first"), "{err}");
    assert!(weave_core::store::Store::existing(dir.path())
        .records()
        .unwrap()
        .records
        .is_empty());
    weave_hook::expose::expose(&s, None).unwrap();
    let out = Netns::start("goes-out");
    attach(&s, &with_route(&out, "10.32.0.5/12")).unwrap();
    assert!(out
        .run("ip route show default")
        .contains("via 10.47.255.254 dev ethwe"));
    assert!(out.pings("10.98.0.2"), "out through the host, masqueraded");
    // A container that did not ask has no way out, even routing through the host itself.
    let stays = Netns::start("stays");
    attach(&s, &stays.state("10.32.0.6/12")).unwrap();
    stays.run("ip route add default via 10.47.255.254");
    assert!(
        !stays.pings("10.98.0.2"),
        "only the asking container is let out"
    );
    // One with a network of its own already is refused.
    let routed = Netns::start("routed");
    routed.run("ip link set lo up && ip route add default dev lo");
    let err = attach(&s, &with_route(&routed, "10.32.0.7/12"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("has a default route already"), "{err}");
    // Its detach takes the way out away.
    weave_hook::detach::detach(&s, &out.id).unwrap();
    assert!(weave_hook::route::allowed().unwrap().is_empty());
}
