//! `weave-mesh run` with the kernel data path, on simulated hosts (network namespaces on an
//! underlay bridge of the test's own) with etcd on the underlay: the VXLAN flood list follows
//! the live hosts, a killed host leaves the others' FDB within TTL + 5 s, and the agent
//! repairs a deleted device and a flushed ruleset.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use weave_e2e::etcd::EtcdCluster;
use weave_e2e::mesh::{SimHost, Underlay, UNDERLAY_NET};
use weave_e2e::{root_or_skip, tool_or_skip};

mod common;
use common::{wait_for, AgentProc};

const VXLAN: &str = "vx-weave";

/// The remotes of the flood entry (all-zero MAC) of the host's VXLAN device.
fn flood_dsts(host: &SimHost) -> Vec<Ipv4Addr> {
    host.fdb()
        .unwrap()
        .iter()
        .filter(|e| e.mac == [0; 6])
        .map(|e| e.dst)
        .collect()
}

fn agent_on(host: &SimHost, endpoint: &str, name: &str) -> AgentProc {
    let agent = AgentProc::spawn_with(
        &host.host.name,
        endpoint,
        name,
        &host.addr().to_string(),
        Some(host.state_dir().to_path_buf()),
        &["--vni", "42"],
    );
    agent.wait_registered();
    agent
}

#[test]
fn the_flood_list_follows_live_hosts_and_the_agent_repairs_the_overlay() {
    let test = "the_flood_list_follows_live_hosts_and_the_agent_repairs_the_overlay";
    if !root_or_skip(test) || !tool_or_skip(test, "etcd") {
        return;
    }
    let underlay = Underlay::new();
    let etcd_ip: Ipv4Addr = format!("{UNDERLAY_NET}.250").parse().unwrap();
    underlay.sh(&format!(
        "ip addr add {etcd_ip}/24 dev {}",
        Underlay::BRIDGE
    ));
    let etcd = EtcdCluster::start_in(&underlay.netns, &[etcd_ip], false);
    let endpoint = etcd.endpoint(0);
    let hosts: Vec<SimHost> = (1..=3).map(|n| SimHost::new(&underlay, n)).collect();
    // An underlay address the host does not have: refused, and its registration undone.
    let mut bad = AgentProc::spawn_with(
        &hosts[0].host.name,
        &endpoint,
        "hx",
        "192.168.251.77",
        Some(hosts[0].state_dir().to_path_buf()),
        &[],
    );
    let (ok, log) = bad.wait_exit(Duration::from_secs(15));
    assert!(
        !ok && log.contains("no interface of this host has the underlay address 192.168.251.77"),
        "{log}"
    );
    assert!(
        !hosts[0].state_dir().join("mesh/state.json").exists(),
        "a failed first start leaves no state.json"
    );
    let status = etcd
        .command(common::BIN)
        .args(["--etcd", &endpoint, "status"])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(!status.contains("hx"), "{status}");
    let mut agents: Vec<AgentProc> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| agent_on(h, &endpoint, &format!("h{i}")))
        .collect();
    let (a, b, c) = (&hosts[0], &hosts[1], &hosts[2]);
    wait_for(
        "A's flood list holding B and C",
        Duration::from_secs(5),
        || {
            let mut dsts = flood_dsts(a);
            dsts.sort();
            dsts == vec![b.addr(), c.addr()]
        },
    );
    assert_eq!(agents[0].state().mtu, Some(1450), "underlay 1500 - 50");

    // C's agent dies: C leaves A's and B's FDB within TTL (2 s) + 5 s.
    agents[2].signal(libc::SIGKILL);
    let killed = Instant::now();
    for h in [a, b] {
        wait_for("C leaving the FDB", Duration::from_secs(2 + 5), || {
            !flood_dsts(h).contains(&c.addr())
        });
    }
    eprintln!(
        "C left A's and B's flood lists {:?} after its agent was killed (TTL 2 s)",
        killed.elapsed()
    );
    assert_eq!(flood_dsts(a), vec![b.addr()]);

    // The device deleted, the ruleset flushed: the agent puts both back.
    a.sh(&format!("ip link del {VXLAN} && nft flush ruleset"));
    let repaired = wait_for("the overlay repaired", Duration::from_secs(10), || {
        flood_dsts(a) == vec![b.addr()]
            && a.host
                .command("nft")
                .args(["list", "table", "inet", "weave-mesh"])
                .output()
                .is_ok_and(|o| o.status.success())
    });
    eprintln!("the agent repaired a deleted device and a flushed ruleset in {repaired:?}");
    assert!(
        agents[0].log().contains("overlay peers"),
        "{}",
        agents[0].log()
    );
}
