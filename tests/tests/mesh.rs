//! weave mesh end to end (issue 13): three simulated hosts (network namespaces on an underlay
//! of the test's own), each with its weave bridge, state directory, runc root and a real
//! `weave-mesh run` agent, and a real 3-member etcd cluster speaking TLS in a namespace of
//! its own on the same underlay. Containers are real runc containers attached by weave-hook.
//!
//! One test walks the whole life of a mesh, in order, because each step needs the state the
//! previous one left (and a 3-host, 3-member setup costs seconds):
//! 1. a container on A whose first instruction pings a container on B: 20 of 20;
//! 2. 3 x 16 concurrent `net:default` attaches: 48 distinct addresses, each reachable from
//!    every host;
//! 3. an explicit address held on A is refused on B, naming A;
//! 4. the MTU: ethwe has the underlay's 1500 - 50; a 1472-byte DF ping fails with "message
//!    too long" at once, a 1422-byte one passes;
//! 5. one etcd member killed: attaches and pings go on;
//! 6. all of etcd stopped: containers keep talking, `net:` attaches from the host's blocks
//!    work, an explicit address outside them is refused saying etcd is unreachable; etcd back:
//!    the agents recover without a restart and the address is granted;
//! 7. host C killed (its agent SIGKILLed, its namespace deleted): it leaves A's and B's FDB
//!    within lease TTL + 5 s; after the grace its explicit address is allocatable again,
//!    exactly once (A and B race for it);
//! 8. B's container in a one-block subnet stops: B gives the block back after
//!    `--release-empty-after`, and A, refused a block there before, gets it.

use std::net::Ipv4Addr;
use std::process::Output;
use std::time::{Duration, Instant};

use weave_e2e::etcd::EtcdCluster;
use weave_e2e::mesh::{Agent, EtcdNetns, SimHost, Underlay};
use weave_e2e::{
    in_netns_of, root_or_skip, start, text, tool_or_skip, wait_for, Bundle, Rootfs, Runc,
};

/// The agents' lease TTL and reclaim grace in this test (defaults: 10 s and 300 s).
const LEASE_TTL_SECS: u64 = 2;
const RECLAIM_AFTER_SECS: u64 = 10;
/// The agents' delay before an empty block goes back (default 600 s).
const RELEASE_AFTER_SECS: u64 = 3;
/// The etcd members' host numbers on the underlay.
const ETCD_HOSTS: [u8; 3] = [201, 202, 203];

fn bundle(sim: &SimHost, rootfs: &Rootfs, args: &[&str], cidr: &str) -> Bundle {
    let mut b = Bundle::new(rootfs, args);
    b.annotate("weave.cidr", cidr)
        .with_weave_hook(&sim.hook_flags(&[]));
    b
}

/// A host program in the network namespace of a running container.
fn in_container(runc: &Runc, id: &str, args: &[&str]) -> Output {
    in_netns_of(runc.pid(id), args)
}

fn ping_ok(runc: &Runc, from: &str, to: Ipv4Addr) -> bool {
    in_container(runc, from, &["ping", "-c", "1", "-W", "2", &to.to_string()])
        .status
        .success()
}

#[test]
fn three_hosts_one_network_through_etcd_failures_and_a_dead_host() {
    let test = "three_hosts_one_network_through_etcd_failures_and_a_dead_host";
    if !root_or_skip(test)
        || !tool_or_skip(test, "runc")
        || !tool_or_skip(test, "etcd")
        || !tool_or_skip(test, "ping")
    {
        return;
    }
    // Dropped last to first: containers, agents, hosts, etcd, its namespace, the underlay.
    let underlay = Underlay::new();
    let etcd_ns = EtcdNetns::new(&underlay, &ETCD_HOSTS);
    let mut etcd = EtcdCluster::start_in(&etcd_ns.name, &etcd_ns.ips, true);
    let mut hosts: Vec<Option<SimHost>> =
        (1..=3).map(|n| Some(SimHost::new(&underlay, n))).collect();
    let logs = tempfile::tempdir().unwrap();
    let names = ["hosta", "hostb", "hostc"];
    let (ttl, reclaim) = (LEASE_TTL_SECS.to_string(), RECLAIM_AFTER_SECS.to_string());
    let release = RELEASE_AFTER_SECS.to_string();
    let flags = [
        "--lease-ttl",
        &ttl,
        "--reclaim-after",
        &reclaim,
        "--release-empty-after",
        &release,
    ];
    let mut agents: Vec<Agent> = hosts
        .iter()
        .zip(names)
        .map(|(h, name)| Agent::start(h.as_ref().unwrap(), name, &etcd, logs.path(), &flags))
        .collect();
    let rootfs = Rootfs::busybox();
    let a = hosts[0].take().unwrap();
    let b = hosts[1].take().unwrap();
    let c = hosts[2].take().unwrap();
    let (ra, rb) = (a.runc(), b.runc());
    let rc = c.runc();
    let dump = |agents: &[Agent]| -> String {
        agents
            .iter()
            .map(|a| format!("--- {} ---\n{}", a.name, a.log()))
            .collect()
    };

    // Every agent up, every host in the others' FDB.
    for (h, other) in [(&a, [&b, &c]), (&b, [&a, &c]), (&c, [&a, &b])] {
        let ready = wait_for(Duration::from_secs(20), || {
            h.agent_ready()
                && other
                    .iter()
                    .all(|o| h.fdb_remotes().unwrap().contains(&o.addr()))
        });
        assert!(ready.is_some(), "agents not ready:\n{}", dump(&agents));
        assert_eq!(h.mesh_state().unwrap()["mtu"], 1450, "underlay 1500 - 50");
    }

    // 1. First instruction on A pings B: 20 of 20.
    start(
        &rb,
        "srv-b",
        &bundle(&b, &rootfs, &["sleep", "900"], "net:default"),
    );
    let ip_b = b.address_of("srv-b");
    for i in 0..20 {
        let id = format!("pinger{i}");
        let target = ip_b.to_string();
        let out = ra.run(
            &id,
            &bundle(
                &a,
                &rootfs,
                &["ping", "-c", "1", "-W", "3", &target],
                "net:default",
            ),
        );
        assert!(
            out.status.success(),
            "first-instruction ping {i} A -> B {ip_b}: {}\n{}",
            text(&out),
            dump(&agents)
        );
    }

    // 2. 3 x 16 concurrent net:default attaches: 48 distinct addresses, all reachable.
    let ids: Vec<String> = (0..16).map(|i| format!("many{i}")).collect();
    let every = [(&a, &ra), (&b, &rb), (&c, &rc)];
    std::thread::scope(|scope| {
        for (h, r) in every {
            let ids = &ids;
            let rootfs = &rootfs;
            scope.spawn(move || {
                r.run_all_detached(ids, &bundle(h, rootfs, &["sleep", "900"], "net:default"))
            });
        }
    });
    let mut all: Vec<Ipv4Addr> = every
        .iter()
        .flat_map(|(h, _)| ids.iter().map(|id| h.address_of(id)))
        .collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 48, "48 distinct addresses: {all:?}");
    for (h, r) in every {
        let unreachable: Vec<_> = all.iter().filter(|ip| !ping_ok(r, "many0", **ip)).collect();
        assert!(
            unreachable.is_empty(),
            "from {}: unreachable {unreachable:?}",
            h.addr()
        );
    }

    // 3. An explicit address held on A is refused on B, naming A.
    start(
        &ra,
        "fixed-a",
        &bundle(&a, &rootfs, &["sleep", "900"], "10.40.0.9/16"),
    );
    let out = rb.run("fixed-b", &bundle(&b, &rootfs, &["true"], "10.40.0.9/16"));
    assert!(!out.status.success(), "10.40.0.9 given twice");
    assert!(
        text(&out).contains("hosta"),
        "refusal names host A: {}",
        text(&out)
    );
    // B allocating in that subnet never gets it (its block holds A's address), and reaches it.
    start(
        &rb,
        "near-b",
        &bundle(&b, &rootfs, &["sleep", "900"], "net:10.40.0.0/24"),
    );
    let near = b.address_of("near-b");
    assert_ne!(near, "10.40.0.9".parse::<Ipv4Addr>().unwrap());
    assert!(
        ping_ok(&rb, "near-b", "10.40.0.9".parse().unwrap()),
        "B ({near}) cannot reach A's explicit address"
    );

    // 4. MTU: the overlay's 1450 on ethwe; DF at the edge.
    let link = text(&in_container(
        &ra,
        "fixed-a",
        &["ip", "-o", "link", "show", "ethwe"],
    ));
    assert!(link.contains("mtu 1450"), "{link}");
    let fits = in_container(
        &ra,
        "many0",
        &[
            "ping",
            "-M",
            "do",
            "-s",
            "1422",
            "-c",
            "2",
            "-W",
            "2",
            &ip_b.to_string(),
        ],
    );
    assert!(fits.status.success(), "1422-byte DF ping: {}", text(&fits));
    let too_big = in_container(
        &ra,
        "many0",
        &[
            "ping",
            "-M",
            "do",
            "-s",
            "1472",
            "-c",
            "1",
            "-W",
            "2",
            &ip_b.to_string(),
        ],
    );
    assert!(!too_big.status.success());
    assert!(
        text(&too_big).to_lowercase().contains("message too long"),
        "{}",
        text(&too_big)
    );

    // 5. One etcd member killed: nothing notices.
    etcd.kill_member(0);
    start(
        &rb,
        "after-kill",
        &bundle(&b, &rootfs, &["sleep", "900"], "net:default"),
    );
    assert!(ping_ok(&ra, "many0", b.address_of("after-kill")));

    // 6. All of etcd stopped.
    etcd.stop_all();
    let down = wait_for(Duration::from_secs(30), || a.sees_etcd(false));
    assert!(
        down.is_some(),
        "agent A never noticed etcd down:\n{}",
        dump(&agents)
    );
    assert!(ping_ok(&ra, "many0", ip_b), "talking stopped with etcd");
    start(
        &ra,
        "no-etcd",
        &bundle(&a, &rootfs, &["sleep", "900"], "net:default"),
    );
    assert!(ping_ok(&rb, "srv-b", a.address_of("no-etcd")));
    let out = ra.run("outside", &bundle(&a, &rootfs, &["true"], "10.41.0.5/16"));
    assert!(!out.status.success(), "an unprovable address was granted");
    assert!(text(&out).contains("unreachable"), "{}", text(&out));
    etcd.restart_all();
    let back = wait_for(Duration::from_secs(30), || a.sees_etcd(true));
    assert!(
        back.is_some(),
        "agent A never saw etcd back:\n{}",
        dump(&agents)
    );
    let out = ra.run("outside", &bundle(&a, &rootfs, &["true"], "10.41.0.5/16"));
    assert!(
        out.status.success(),
        "after recovery: {}\n{}",
        text(&out),
        dump(&agents)
    );

    // 7. Host C dies with an explicit address: gone from the FDBs within TTL + 5 s; after
    // the grace, the address is handed out once.
    start(
        &rc,
        "fixed-c",
        &bundle(&c, &rootfs, &["sleep", "900"], "10.42.0.7/16"),
    );
    agents[2].kill();
    let killed = Instant::now();
    drop(rc);
    let c_addr = c.addr();
    drop(c);
    for h in [&a, &b] {
        let left = wait_for(Duration::from_secs(LEASE_TTL_SECS + 5), || {
            !h.fdb_remotes().unwrap().contains(&c_addr)
        });
        assert!(
            left.is_some(),
            "C still in {}'s FDB:\n{}",
            h.addr(),
            dump(&agents)
        );
    }
    eprintln!(
        "mesh: dead host left both FDBs {:?} after its agent was killed",
        killed.elapsed()
    );
    // Within the grace C's address is still C's: refused, naming it.
    let early = ra.run("early", &bundle(&a, &rootfs, &["true"], "10.42.0.7/16"));
    if killed.elapsed() < Duration::from_secs(LEASE_TTL_SECS + RECLAIM_AFTER_SECS) {
        assert!(
            !early.status.success(),
            "C's address handed out before the grace"
        );
        assert!(text(&early).contains("hostc"), "{}", text(&early));
    }
    std::thread::sleep(Duration::from_secs(LEASE_TTL_SECS + RECLAIM_AFTER_SECS + 2));
    let (ba, bb) = (
        bundle(&a, &rootfs, &["sleep", "900"], "10.42.0.7/16"),
        bundle(&b, &rootfs, &["sleep", "900"], "10.42.0.7/16"),
    );
    let (oa, ob) = std::thread::scope(|scope| {
        let x = scope.spawn(|| ra.run_detached("reuse-a", &ba));
        let y = scope.spawn(|| rb.run_detached("reuse-b", &bb));
        (x.join().unwrap(), y.join().unwrap())
    });
    assert_eq!(
        [oa.status.success(), ob.status.success()]
            .iter()
            .filter(|s| **s)
            .count(),
        1,
        "exactly one host gets C's address: A {} / B {}\n{}",
        text(&oa),
        text(&ob),
        dump(&agents)
    );

    // 8. A subnet of one block, outside the default range, used on B only: A is refused a
    // block there while B's container holds an address in it. Once that container is gone,
    // B gives the block back (and keeps its default-range block), and A gets it.
    let solo = "10.60.0.0/26";
    let inside = format!("net:{solo}");
    let blocks_of = |h: &SimHost| -> Vec<String> {
        let state = h.mesh_state().unwrap();
        let list = state["blocks"].as_array().unwrap();
        list.iter()
            .map(|b| b.as_str().unwrap().to_string())
            .collect()
    };
    start(
        &rb,
        "solo-b",
        &bundle(&b, &rootfs, &["sleep", "900"], &inside),
    );
    assert!(blocks_of(&b).iter().any(|n| n == solo));
    let out = ra.run("solo-a", &bundle(&a, &rootfs, &["true"], &inside));
    assert!(!out.status.success(), "A allocated in B's block {solo}");
    assert!(text(&out).contains("no free block"), "{}", text(&out));
    rb.remove("solo-b");
    let emptied = Instant::now();
    let gone = wait_for(Duration::from_secs(RELEASE_AFTER_SECS + 10), || {
        !blocks_of(&b).iter().any(|n| n == solo)
    });
    assert!(
        gone.is_some(),
        "B kept its empty block {solo}:\n{}",
        dump(&agents)
    );
    eprintln!(
        "mesh: B gave back its empty block {:?} after its container was removed",
        emptied.elapsed()
    );
    assert!(
        blocks_of(&b).iter().any(|n| n.starts_with("10.4")),
        "B keeps its default-range blocks: {:?}",
        blocks_of(&b)
    );
    let ok = wait_for(Duration::from_secs(10), || {
        ra.run("solo-a", &bundle(&a, &rootfs, &["true"], &inside))
            .status
            .success()
    });
    assert!(
        ok.is_some(),
        "A never got the given-back block {solo}:\n{}",
        dump(&agents)
    );
    assert!(blocks_of(&a).iter().any(|n| n == solo));
}
