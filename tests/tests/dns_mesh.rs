//! Weave DNS across hosts end to end (issue 14): two simulated hosts (network namespaces on
//! an underlay of the test's own), each with its weave bridge, state directory, runc root, a
//! real `weave-mesh run` agent and the weave-dns its hook starts, and a real etcd (TLS) in a
//! namespace of its own. Containers are real runc containers attached by weave-hook.
//!
//! One test walks the steps in order (each needs the previous one's state):
//! 1. a weave DNS container attached on B resolves on A within 1 s of its attach (measured
//!    by querying A's weave-dns from A's host namespace);
//! 2. a container on A resolves and pings `b.weave.local` from its first instruction, 5 of 5;
//! 3. PTR of B's container's address, asked on A;
//! 4. a shared name on both hosts answers both addresses, on both hosts; an exclusive name
//!    claimed on both is held by the first claimant everywhere;
//! 5. `runc delete` of B's container: its name fails on A within 2 s;
//! 6. etcd stopped: local names and the remote names known keep being answered; back;
//! 7. host B killed (agent SIGKILL, its weave-dns and namespace gone): B's names fail on A
//!    within lease TTL + 5 s.

use std::net::{Ipv4Addr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use weave_e2e::etcd::EtcdCluster;
use weave_e2e::mesh::{in_netns, Agent, EtcdNetns, SimHost, Underlay};
use weave_e2e::{
    root_or_skip, run_ok, start, text, tool_or_skip, wait_for, Bundle, Rootfs, WeaveDns,
};

const LEASE_TTL_SECS: u64 = 2;
/// The etcd member's host number on the underlay.
const ETCD_HOST: u8 = 211;
/// weave DNS's address on every host's bridge (the hook's default).
const DNS: &str = "10.32.0.1";

/// One A query for `<name>.weave.local` to weave-dns, from `sim`'s host namespace: the
/// addresses answered (empty for NXDOMAIN or no answer).
fn resolve(sim: &SimHost, name: &str) -> Vec<Ipv4Addr> {
    in_netns(&sim.host.name, || query_a(&format!("{name}.weave.local")))
}

fn query_a(name: &str) -> Vec<Ipv4Addr> {
    let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let id = (std::process::id() & 0xffff) as u16;
    let mut q = id.to_be_bytes().to_vec();
    q.extend([1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend(label.as_bytes());
    }
    q.extend([0, 0, 1, 0, 1]);
    if socket.send_to(&q, (DNS, 53)).is_err() {
        return Vec::new();
    }
    let mut buf = [0u8; 1500];
    let Ok(n) = socket.recv(&mut buf) else {
        return Vec::new();
    };
    parse_a(&buf[..n], q.len())
}

/// The A records of an answer whose question is `question_end` bytes into it.
fn parse_a(reply: &[u8], question_end: usize) -> Vec<Ipv4Addr> {
    let count = u16::from_be_bytes([reply[6], reply[7]]);
    let mut at = question_end;
    let mut addrs = Vec::new();
    for _ in 0..count {
        // The name: a compression pointer, or labels.
        while reply[at] != 0 && reply[at] & 0xc0 == 0 {
            at += 1 + reply[at] as usize;
        }
        at += if reply[at] == 0 { 1 } else { 2 };
        let kind = u16::from_be_bytes([reply[at], reply[at + 1]]);
        let len = u16::from_be_bytes([reply[at + 8], reply[at + 9]]) as usize;
        at += 10;
        if kind == 1 && len == 4 {
            addrs.push(Ipv4Addr::new(
                reply[at],
                reply[at + 1],
                reply[at + 2],
                reply[at + 3],
            ));
        }
        at += len;
    }
    addrs
}

/// A weave DNS container of `sim`: hostname `hostname`, extra names, resolv.conf pointing at
/// weave DNS (what weave-runtime does for Docker).
fn dns_bundle(
    sim: &SimHost,
    rootfs: &Rootfs,
    resolv: &Path,
    args: &[&str],
    hostname: &str,
    names: Option<(&str, bool)>,
) -> Bundle {
    let mut b = Bundle::new(rootfs, args);
    b.annotate("weave.cidr", "net:default")
        .annotate("weave.dns", "true")
        .with_weave_hook(&sim.hook_flags(&[]));
    if let Some((names, shared)) = names {
        b.annotate("weave.dns.names", names);
        if shared {
            b.annotate("weave.dns.shared", "true");
        }
    }
    b.edit(|c| {
        c["hostname"] = serde_json::json!(hostname);
        c["mounts"].as_array_mut().unwrap().push(serde_json::json!({
            "destination": "/etc/resolv.conf", "type": "bind",
            "source": resolv, "options": ["rbind", "ro"]
        }));
    });
    b
}

#[test]
fn names_resolve_across_hosts_and_go_with_their_containers_and_hosts() {
    let test = "names_resolve_across_hosts_and_go_with_their_containers_and_hosts";
    if !root_or_skip(test) || !tool_or_skip(test, "runc") || !tool_or_skip(test, "etcd") {
        return;
    }
    // Dropped last to first.
    let underlay = Underlay::new();
    let etcd_ns = EtcdNetns::new(&underlay, &[ETCD_HOST]);
    let mut etcd = EtcdCluster::start_in(&etcd_ns.name, &etcd_ns.ips, true);
    let a = SimHost::new(&underlay, 1);
    let b = SimHost::new(&underlay, 2);
    let logs = tempfile::tempdir().unwrap();
    let resolv = logs.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        format!("nameserver {DNS}\nsearch weave.local.\noptions timeout:1 attempts:2\n"),
    )
    .unwrap();
    let _dns_a = WeaveDns::started_by_hook(a.state_dir());
    let dns_b = WeaveDns::started_by_hook(b.state_dir());
    let ttl = LEASE_TTL_SECS.to_string();
    let flags = ["--lease-ttl", ttl.as_str()];
    let mut agent_a = Agent::start(&a, "hosta", &etcd, logs.path(), &flags);
    let mut agent_b = Agent::start(&b, "hostb", &etcd, logs.path(), &flags);
    let rootfs = Rootfs::busybox();
    let ra = a.runc();
    let sim_b = &b;
    let rb = b.runc();
    let dump = |a: &Agent, b: &Agent| format!("--- A ---\n{}\n--- B ---\n{}", a.log(), b.log());

    let ready = wait_for(Duration::from_secs(20), || {
        a.fdb_remotes().unwrap().contains(&sim_b.addr())
            && sim_b.fdb_remotes().unwrap().contains(&a.addr())
    });
    assert!(
        ready.is_some(),
        "agents not ready:\n{}",
        dump(&agent_a, &agent_b)
    );

    // 1. Attached on B: resolves on A within 1 s.
    // Kept: `runc exec` runs in the bundle's directory.
    let client = dns_bundle(&a, &rootfs, &resolv, &["sleep", "900"], "clienta", None);
    start(&ra, "client-a", &client);
    let rb_ = &rb;
    let attached = Instant::now();
    start(
        rb_,
        "srv-b",
        &dns_bundle(sim_b, &rootfs, &resolv, &["sleep", "900"], "b", None),
    );
    let ip_b = sim_b.address_of("srv-b");
    let seen =
        wait_for(Duration::from_secs(5), || resolve(&a, "b") == [ip_b]).map(|_| attached.elapsed());
    let seen = seen.unwrap_or_else(|| {
        panic!(
            "b.weave.local ({ip_b}) never resolved on A:\n{}",
            dump(&agent_a, &agent_b)
        )
    });
    eprintln!("dns-mesh: a name attached on B resolved on A {seen:?} after runc run began");
    if std::env::var_os("DNS_MESH_LOGS").is_some() {
        eprintln!("{}", dump(&agent_a, &agent_b));
    }
    assert!(
        seen <= Duration::from_secs(1),
        "issue 14: within 1 s of its attach"
    );
    let ip_client = a.address_of("client-a");
    let on_b = wait_for(Duration::from_secs(2), || {
        resolve(sim_b, "clienta") == [ip_client]
    });
    assert!(
        on_b.is_some(),
        "clienta on B: {:?}; B's mirror: {:?}; B's weave-dns: {}\n{}",
        resolve(sim_b, "clienta"),
        std::fs::read_dir(sim_b.state_dir().join("mesh/names")).map(|d| d
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect::<Vec<_>>()),
        std::fs::read_to_string(sim_b.state_dir().join("dns.log")).unwrap_or_default(),
        dump(&agent_a, &agent_b)
    );

    // 2. From the first instruction: resolve and ping b (busybox ping resolves through
    // resolv.conf: weave.local. is the search domain).
    for i in 0..5 {
        let out = ra.run(
            &format!("first{i}"),
            &dns_bundle(
                &a,
                &rootfs,
                &resolv,
                &["ping", "-c", "1", "-W", "3", "b.weave.local"],
                &format!("first{i}"),
                None,
            ),
        );
        assert!(
            out.status.success(),
            "first-instruction ping {i}: {}",
            text(&out)
        );
    }

    // 3. PTR of B's address, on A.
    let out = ra.exec("client-a", &["nslookup", &ip_b.to_string()]);
    assert!(
        text(&out).contains("b.weave.local"),
        "PTR {ip_b} on A: {}",
        text(&out)
    );

    // 4. A shared name on both hosts: both addresses, on both. An exclusive name: the first
    // claimant's (A's, started first), on both.
    start(
        &ra,
        "web-a",
        &dns_bundle(
            &a,
            &rootfs,
            &resolv,
            &["sleep", "900"],
            "weba",
            Some(("web solo", true)),
        ),
    );
    std::thread::sleep(Duration::from_millis(50));
    start(
        rb_,
        "web-b",
        &dns_bundle(
            sim_b,
            &rootfs,
            &resolv,
            &["sleep", "900"],
            "webb",
            Some(("web", true)),
        ),
    );
    let late = dns_bundle(
        sim_b,
        &rootfs,
        &resolv,
        &["sleep", "900"],
        "late",
        Some(("solo", false)),
    );
    start(rb_, "solo-b", &late);
    let (wa, wb) = (a.address_of("web-a"), sim_b.address_of("web-b"));
    for h in [&a, sim_b] {
        let both = wait_for(Duration::from_secs(2), || {
            let mut got = resolve(h, "web");
            got.sort();
            let mut want = vec![wa, wb];
            want.sort();
            got == want
        });
        assert!(
            both.is_some(),
            "web on {}: {:?}",
            h.addr(),
            resolve(h, "web")
        );
        assert_eq!(
            resolve(h, "solo"),
            [wa],
            "the first claimant holds solo everywhere"
        );
    }

    // 5. runc delete of b: the name fails on A within 2 s.
    let deleted = Instant::now();
    run_ok(rb_.command().args(["delete", "--force", "srv-b"]));
    let gone = wait_for(Duration::from_secs(5), || resolve(&a, "b").is_empty());
    let gone = gone.map(|_| deleted.elapsed());
    eprintln!("dns-mesh: b failed on A {gone:?} after runc delete began");
    assert!(
        gone.is_some_and(|g| g <= Duration::from_secs(2)),
        "b still resolves on A:\n{}",
        dump(&agent_a, &agent_b)
    );

    // etcd unavailable: local names keep working, known remote names stay answered.
    etcd.stop_all();
    let down = wait_for(Duration::from_secs(30), || a.sees_etcd(false));
    assert!(down.is_some(), "agent A never noticed etcd down");
    assert_eq!(
        resolve(&a, "clienta"),
        [ip_client],
        "a local name without etcd"
    );
    let mut both = resolve(&a, "web");
    both.sort();
    assert_eq!(both.len(), 2, "a known remote name without etcd: {both:?}");
    etcd.restart_all();
    let back = wait_for(Duration::from_secs(30), || a.sees_etcd(true));
    assert!(
        back.is_some(),
        "agent A never saw etcd back:\n{}",
        dump(&agent_a, &agent_b)
    );

    // 7. Host B killed: its names fail on A within TTL + 5 s.
    start(
        rb_,
        "srv2-b",
        &dns_bundle(sim_b, &rootfs, &resolv, &["sleep", "900"], "b2", None),
    );
    let ip_b2 = sim_b.address_of("srv2-b");
    assert!(
        wait_for(Duration::from_secs(2), || resolve(&a, "b2") == [ip_b2]).is_some(),
        "b2 never resolved on A"
    );
    agent_b.kill();
    let killed = Instant::now();
    drop(rb);
    drop(dns_b);
    drop(b);
    let gone = wait_for(Duration::from_secs(LEASE_TTL_SECS + 10), || {
        resolve(&a, "b2").is_empty() && resolve(&a, "webb").is_empty()
    })
    .map(|_| killed.elapsed());
    eprintln!("dns-mesh: a dead host's names failed on A {gone:?} after its agent was killed");
    assert!(
        gone.is_some_and(|g| g <= Duration::from_secs(LEASE_TTL_SECS + 5)),
        "B's names outlived it on A:\n{}",
        agent_a.log()
    );
    // A's own names are unaffected; web now answers A's alone.
    assert_eq!(resolve(&a, "web"), [wa]);
    assert_eq!(resolve(&a, "clienta"), [a.address_of("client-a")]);
    agent_a.kill();
}
