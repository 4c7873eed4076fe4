//! The mesh's data path on real netlink in real network namespaces (simulated hosts on an
//! underlay of the test's own, `weave_e2e::mesh`): the VXLAN device set up, repaired and
//! refused; the MTU; the flood list and learned entries kept equal to the peers; the
//! underlay filter against a VXLAN sender that is not a peer, also after `nft flush ruleset`.
//! Root only.

mod common;

use std::net::Ipv4Addr;

use common::{settings, Container};
use serde_json::Value;
use weave_core::settings::Settings;
use weave_e2e::mesh::{SimHost, Underlay};
use weave_e2e::root_or_skip;
use weave_hook::attach::attach;
use weave_hook::error::Error;
use weave_hook::nftgen;
use weave_hook::overlay::{self, Overlay};

fn overlay_of(sim: &SimHost) -> Overlay {
    Overlay {
        bridge: "weave".into(),
        vni: 42,
        port: 4789,
        local: sim.addr(),
        mtu: None,
    }
}

/// `ip -d -j link show dev` as JSON.
fn link(sim: &SimHost, dev: &str) -> Value {
    let text = sim.sh(&format!("ip -d -j link show dev {dev}"));
    let links: Value = serde_json::from_str(&text).unwrap();
    links[0].clone()
}

fn has_link(sim: &SimHost, dev: &str) -> bool {
    sim.host.links(dev).iter().any(|l| l == dev)
}

/// The VXLAN device's forwarding entries as "mac dst" lines, sorted.
fn fdb(sim: &SimHost) -> Vec<String> {
    let text = sim.sh("bridge -j fdb show dev vx-weave");
    let entries: Vec<Value> = serde_json::from_str(&text).unwrap();
    let mut out: Vec<String> = entries
        .iter()
        .filter_map(|e| Some(format!("{} {}", e["mac"].as_str()?, e["dst"].as_str()?)))
        .collect();
    out.sort();
    out
}

/// The elements of a set of the mesh's tables, as `nft` prints them.
fn elements(sim: &SimHost, family: &str, set: &str) -> Vec<String> {
    let text = sim.sh(&format!("nft -j list set {family} weave-mesh {set}"));
    let v: Value = serde_json::from_str(&text).unwrap();
    let set = v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|o| o.get("set"))
        .unwrap()
        .clone();
    let mut out: Vec<String> = set["elem"]
        .as_array()
        .map(|a| a.iter().map(|e| e.to_string()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

fn tables(sim: &SimHost) -> String {
    sim.sh("nft list tables")
}

fn settings_of(sim: &SimHost) -> Settings {
    settings(sim.state_dir())
}

#[test]
fn ensure_sets_the_device_up_is_idempotent_repairs_and_refuses_what_is_not_ours() {
    if !root_or_skip("ensure_sets_the_device_up_is_idempotent_repairs_and_refuses_what_is_not_ours")
    {
        return;
    }
    let underlay = Underlay::with_mtu(1400);
    let a = SimHost::new(&underlay, 1);
    let s = settings_of(&a);
    let ov = overlay_of(&a);
    let ensure = |ov: &Overlay| a.in_netns(|| overlay::ensure(&s, ov));

    // MTU: the underlay's 1400 minus 50, on the device and on the bridge.
    assert_eq!(ensure(&ov).unwrap(), 1350);
    let vx = link(&a, "vx-weave");
    let info = &vx["linkinfo"]["info_data"];
    assert_eq!(info["id"], 42);
    assert_eq!(info["local"], "192.168.251.1");
    assert_eq!(info["port"], 4789);
    assert_eq!(info["learning"], true);
    assert_eq!(info["ttl"], 64);
    assert_eq!(vx["mtu"], 1350);
    assert_eq!(vx["master"], "weave");
    assert_ne!(vx["operstate"], "DOWN", "{vx}");
    assert!(vx["flags"].as_array().unwrap().contains(&"UP".into()));
    assert_eq!(link(&a, "weave")["mtu"], 1350);
    let index = vx["ifindex"].clone();
    // Set by hand, the bridge's MTU does not follow a port with a smaller one.
    a.sh("ip link add tv0 mtu 1300 type veth peer name tv1 && ip link set tv0 master weave && ip link set tv0 up");
    assert_eq!(link(&a, "weave")["mtu"], 1350);
    a.sh("ip link del tv0");
    // No IPv6 address of its own: nothing of the host's stack goes to the peers through it.
    assert!(!a.sh("ip -6 addr show dev vx-weave").contains("inet6"));

    // Idempotent: the same device.
    assert_eq!(ensure(&ov).unwrap(), 1350);
    assert_eq!(link(&a, "vx-weave")["ifindex"], index);

    // Repairs: off the bridge, down, another MTU; a bridge MTU changed.
    a.sh("ip link set vx-weave nomaster && ip link set vx-weave down mtu 1300 && ip link set weave mtu 1200");
    assert_eq!(ensure(&ov).unwrap(), 1350);
    let vx = link(&a, "vx-weave");
    assert_eq!(
        (vx["master"].clone(), vx["mtu"].clone()),
        ("weave".into(), 1350.into())
    );
    assert!(vx["flags"].as_array().unwrap().contains(&"UP".into()));
    assert_eq!(vx["ifindex"], index);
    assert_eq!(link(&a, "weave")["mtu"], 1350);

    // Deleted: made again. Tables flushed: written again.
    a.sh("ip link del vx-weave && nft flush ruleset");
    ensure(&ov).unwrap();
    assert!(has_link(&a, "vx-weave"));
    assert!(tables(&a).contains("table inet weave-mesh"));
    assert!(tables(&a).contains("table bridge weave-mesh"));

    // Other settings: the device is made again with them.
    let ov43 = Overlay {
        vni: 43,
        ..ov.clone()
    };
    ensure(&ov43).unwrap();
    assert_eq!(link(&a, "vx-weave")["linkinfo"]["info_data"]["id"], 43);

    // An MTU override.
    let small = Overlay {
        mtu: Some(1200),
        ..ov.clone()
    };
    assert_eq!(ensure(&small).unwrap(), 1200);
    assert_eq!(link(&a, "vx-weave")["mtu"], 1200);
    assert_eq!(link(&a, "weave")["mtu"], 1200);

    // An underlay address no interface holds.
    let nowhere = Overlay {
        local: "192.168.252.1".parse().unwrap(),
        ..ov.clone()
    };
    let err = ensure(&nowhere).unwrap_err();
    assert!(matches!(err, Error::NoUnderlay(_)), "{err}");

    // Removed: device and tables gone; twice is fine.
    a.in_netns(|| overlay::remove(&s, &ov)).unwrap();
    a.in_netns(|| overlay::remove(&s, &ov)).unwrap();
    assert!(!has_link(&a, "vx-weave"));
    assert!(!tables(&a).contains("weave-mesh"), "{}", tables(&a));

    // Not ours: another kind of link, a VXLAN of another state directory.
    a.sh("ip link add vx-weave type bridge");
    let err = ensure(&ov).unwrap_err();
    assert!(matches!(err, Error::VxlanTaken { .. }), "{err}");
    assert!(err.to_string().contains("it is a bridge link"), "{err}");
    a.sh("ip link del vx-weave && ip link add vx-weave type vxlan id 42 dstport 4789 local 192.168.251.1 && ip link set vx-weave alias 'weave-hook /elsewhere'");
    let err = ensure(&ov).unwrap_err();
    assert!(err.to_string().contains("/elsewhere"), "{err}");
    assert!(has_link(&a, "vx-weave"), "a foreign device is left alone");
    a.sh("ip link del vx-weave");
}

#[test]
fn reset_removes_the_overlay_with_the_bridge() {
    if !root_or_skip("reset_removes_the_overlay_with_the_bridge") {
        return;
    }
    let underlay = Underlay::new();
    let a = SimHost::new(&underlay, 1);
    let s = settings_of(&a);
    a.in_netns(|| overlay::ensure(&s, &overlay_of(&a))).unwrap();
    a.in_netns(|| overlay::set_peers(&s, &overlay_of(&a), &["192.168.251.2".parse().unwrap()]))
        .unwrap();
    a.in_netns(|| weave_hook::reset::reset(&s)).unwrap();
    assert!(!has_link(&a, "vx-weave"));
    assert!(!has_link(&a, "weave"));
    assert!(!tables(&a).contains("weave-mesh"), "{}", tables(&a));
}

#[test]
fn set_peers_keeps_flood_list_and_filter_equal_to_the_peers_and_costs_nothing_unchanged() {
    if !root_or_skip(
        "set_peers_keeps_flood_list_and_filter_equal_to_the_peers_and_costs_nothing_unchanged",
    ) {
        return;
    }
    let underlay = Underlay::new();
    let a = SimHost::new(&underlay, 1);
    let s = settings_of(&a);
    let ov = overlay_of(&a);
    let ip = |n: u8| -> Ipv4Addr { format!("192.168.251.{n}").parse().unwrap() };
    let set_peers = |peers: &[Ipv4Addr]| a.in_netns(|| overlay::set_peers(&s, &ov, peers));

    // Before ensure: a clear error.
    let err = set_peers(&[ip(2)]).unwrap_err();
    assert!(matches!(err, Error::OverlayMissing(_)), "{err}");
    a.in_netns(|| overlay::ensure(&s, &ov)).unwrap();

    // Own address and duplicates are left out.
    set_peers(&[ip(2), ip(3), ip(1), ip(3)]).unwrap();
    assert_eq!(
        fdb(&a),
        [
            "00:00:00:00:00:00 192.168.251.2",
            "00:00:00:00:00:00 192.168.251.3"
        ]
    );
    assert_eq!(elements(&a, "inet", "peers").len(), 2);
    assert!(elements(&a, "inet", "peers")[0].contains("192.168.251.2"));

    // A unicast entry via a peer that goes (as learning makes them) goes with it.
    a.sh("bridge fdb add 0a:58:0a:20:00:05 dev vx-weave dst 192.168.251.3");
    a.sh("bridge fdb add 0a:58:0a:20:00:06 dev vx-weave dst 192.168.251.2");
    set_peers(&[ip(2), ip(4)]).unwrap();
    assert_eq!(
        fdb(&a),
        [
            "00:00:00:00:00:00 192.168.251.2",
            "00:00:00:00:00:00 192.168.251.4",
            "0a:58:0a:20:00:06 192.168.251.2"
        ]
    );
    let peers = elements(&a, "inet", "peers");
    assert_eq!(peers.len(), 2, "{peers:?}");
    assert!(peers[1].contains("192.168.251.4"), "{peers:?}");

    // Unchanged: no nf_tables transaction (the ruleset generation stays) and no change.
    let generation = a.in_netns(nftgen::generation).unwrap();
    set_peers(&[ip(4), ip(2)]).unwrap();
    assert_eq!(a.in_netns(nftgen::generation).unwrap(), generation);
    assert_eq!(fdb(&a).len(), 3);
    // What the agent pays every few seconds when nothing changed (debug build).
    let mut times: Vec<_> = (0..50)
        .map(|_| {
            let start = std::time::Instant::now();
            set_peers(&[ip(4), ip(2)]).unwrap();
            start.elapsed()
        })
        .collect();
    times.sort();
    eprintln!(
        "set_peers, nothing changed: median {:?}, max {:?}",
        times[25], times[49]
    );
    assert!(
        times[25] < std::time::Duration::from_millis(100),
        "{times:?}"
    );

    // Host-local set: weave DNS's address, then an exposed one too.
    let local = elements(&a, "bridge", "host_local");
    assert_eq!(local.len(), 1, "{local:?}");
    assert!(local[0].contains("10.32.0.1"), "{local:?}");
    // `expose` and `hide` keep it in step at once.
    let out = a
        .hook()
        .args(["expose", "10.32.0.254/12"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let local = elements(&a, "bridge", "host_local");
    assert_eq!(local.len(), 2, "{local:?}");
    let out = a.hook().args(["hide"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(elements(&a, "bridge", "host_local").len(), 1);
    a.hook()
        .args(["expose", "10.32.0.254/12"])
        .output()
        .unwrap();
    set_peers(&[ip(4), ip(2)]).unwrap();
    assert_eq!(elements(&a, "bridge", "host_local").len(), 2);

    // Flushed: back at the next set_peers.
    a.sh("nft flush ruleset");
    set_peers(&[ip(2)]).unwrap();
    assert_eq!(elements(&a, "inet", "peers").len(), 1);
    assert_eq!(elements(&a, "inet", "ports").len(), 1);
    assert_eq!(elements(&a, "bridge", "host_local").len(), 2);

    // No peers: nothing in the flood list, nothing let in.
    set_peers(&[]).unwrap();
    assert!(fdb(&a).is_empty(), "{:?}", fdb(&a));
    assert!(elements(&a, "inet", "peers").is_empty());
}

/// A "container" on a simulated host: a network namespace attached to its bridge through
/// the hook's own attach.
fn container(sim: &SimHost, id: &str, cidr: &str) -> Container {
    let c = Container::start(id);
    let s = Settings {
        mtu: Some(1450),
        ..settings_of(sim)
    };
    let state = c.state(cidr);
    sim.in_netns(|| attach(&s, &state)).unwrap();
    c
}

/// Whether the bridge of `sim` has seen a frame from `mac` (it learns every source on its
/// ports).
fn bridge_saw(sim: &SimHost, mac: &str) -> bool {
    sim.sh("bridge fdb show br weave").contains(mac)
}

#[test]
fn vxlan_from_a_non_peer_never_reaches_the_bridge_also_after_a_flush() {
    if !root_or_skip("vxlan_from_a_non_peer_never_reaches_the_bridge_also_after_a_flush") {
        return;
    }
    let underlay = Underlay::new();
    let a = SimHost::new(&underlay, 1);
    let b = SimHost::new(&underlay, 2);
    // The intruder: on the underlay at .9, with a VXLAN device of the same VNI and port
    // whose flood list names A, and an address of the weave network on it.
    let x = SimHost::new(&underlay, 9);
    x.sh(
        "ip link add vxx type vxlan id 42 dstport 4789 local 192.168.251.9 nolearning && \
          bridge fdb append 00:00:00:00:00:00 dev vxx dst 192.168.251.1 && \
          ip addr add 10.32.9.9/12 dev vxx && ip link set vxx up",
    );
    for (sim, peer) in [(&a, b.addr()), (&b, a.addr())] {
        let s = settings_of(sim);
        let ov = overlay_of(sim);
        assert_eq!(sim.in_netns(|| overlay::ensure(&s, &ov)).unwrap(), 1450);
        sim.in_netns(|| overlay::set_peers(&s, &ov, &[peer]))
            .unwrap();
    }
    let ca = container(&a, "ca", "10.32.1.1/12");
    let cb = container(&b, "cb", "10.32.2.1/12");

    // Peers talk; B's container's MAC is learned behind B.
    assert!(ca.pings("10.32.2.1"), "a container on A reaches one on B");
    let learned = format!("{} 192.168.251.2", cb.ethwe_mac());
    assert!(fdb(&a).contains(&learned), "{:?}", fdb(&a));

    let x_link: Value = serde_json::from_str(&x.sh("ip -j link show vxx")).unwrap();
    let x_mac = x_link[0]["address"].as_str().unwrap().to_string();
    let x_sends = || {
        let _ = x
            .host
            .command("ping")
            .args(["-c", "3", "-i", "0.2", "-W", "1", "10.32.1.1"])
            .output();
    };
    x_sends();
    assert!(
        !bridge_saw(&a, &x_mac),
        "the intruder's frames reached A's bridge: {}\n{}\n{:?}",
        a.sh("nft list ruleset"),
        a.sh("bridge fdb show"),
        x_mac
    );
    assert!(!fdb(&a).iter().any(|e| e.contains("192.168.251.9")));

    // Without the table (a flush), the intruder gets through: the filter is what stopped it.
    a.sh("nft flush ruleset");
    x_sends();
    assert!(
        bridge_saw(&a, &x_mac),
        "control: the frames arrive without the filter"
    );
    // The next set_peers puts the filter back, and purges what the device learned from X.
    let s = settings_of(&a);
    a.in_netns(|| overlay::set_peers(&s, &overlay_of(&a), &[b.addr()]))
        .unwrap();
    assert!(
        !fdb(&a).iter().any(|e| e.contains("192.168.251.9")),
        "{:?}",
        fdb(&a)
    );
    a.sh(&format!("bridge fdb del {x_mac} dev vx-weave master"));
    x_sends();
    assert!(
        !bridge_saw(&a, &x_mac),
        "the intruder's frames reached A after set_peers"
    );
    assert!(ca.pings("10.32.2.1"), "the peer still gets through");

    // B dies: its flood and learned entries leave A's device with the next set_peers.
    a.in_netns(|| overlay::set_peers(&s, &overlay_of(&a), &[]))
        .unwrap();
    assert!(fdb(&a).is_empty(), "{:?}", fdb(&a));
    assert!(!ca.pings("10.32.2.1"));
}

#[test]
fn a_container_with_a_way_out_cannot_send_vxlan_to_a_peer_as_its_host() {
    if !root_or_skip("a_container_with_a_way_out_cannot_send_vxlan_to_a_peer_as_its_host") {
        return;
    }
    let underlay = Underlay::new();
    let a = SimHost::new(&underlay, 1);
    let b = SimHost::new(&underlay, 2);
    for (sim, peer) in [(&a, b.addr()), (&b, a.addr())] {
        let s = settings_of(sim);
        let ov = overlay_of(sim);
        sim.in_netns(|| overlay::ensure(&s, &ov)).unwrap();
        sim.in_netns(|| overlay::set_peers(&s, &ov, &[peer]))
            .unwrap();
    }
    // A forwards (and its FORWARD policy lets it), the host is exposed, and the container
    // has weave.route=default: its packets to the underlay leave masqueraded as A.
    a.sh("echo 1 > /proc/sys/net/ipv4/ip_forward && iptables -w -P FORWARD ACCEPT");
    let out = a
        .hook()
        .args(["expose", "10.47.255.254/12"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = Container::start("wayout");
    let mut state = c.state("10.32.1.1/12");
    state
        .annotations
        .insert("weave.route".into(), "default".into());
    let s = settings_of(&a);
    a.in_netns(|| attach(&s, &state)).unwrap();
    // The container makes a VXLAN device of its own towards B (same VNI, same port).
    c.run("ip link add vxc type vxlan id 42 dstport 4789 remote 192.168.251.2 nolearning && ip addr add 10.99.0.1/24 dev vxc && ip link set vxc up");
    let vxc: Value = serde_json::from_str(&c.run("ip -j link show vxc")).unwrap();
    let vxc_mac = vxc[0]["address"].as_str().unwrap().to_string();
    let send = || {
        let _ = std::process::Command::new("nsenter")
            .args(["-t", &c.pid().to_string(), "-n"])
            .args([
                "busybox",
                "ping",
                "-c",
                "3",
                "-i",
                "1",
                "-W",
                "1",
                "10.99.0.2",
            ])
            .output();
    };
    send();
    assert!(
        !bridge_saw(&b, &vxc_mac),
        "the container's frames reached B's bridge"
    );

    // Control: without the forward rule they do (masqueraded as A, a peer).
    a.sh("nft flush chain inet weave-mesh forward");
    send();
    assert!(
        bridge_saw(&b, &vxc_mac),
        "control: the frames reach B without the rule"
    );
}
