//! The mesh's data path end to end, without the agent: three simulated hosts on an underlay
//! of the test's own (MTU 1550, so the overlay gets 1500), each with the overlay set up by
//! `overlay::ensure` and `overlay::set_peers` inside its namespace, and real runc
//! containers attached by weave-hook. A container on A whose first instruction pings a
//! container on B; the MTU at its edge (1472 bytes with DF pass, 1473 fail loudly); each
//! host's weave DNS address answers its own containers only (ARP never crosses).

use std::net::Ipv4Addr;

use weave_core::settings::Settings;
use weave_e2e::mesh::{SimHost, Underlay};
use weave_e2e::{in_netns_of, root_or_skip, start, text, tool_or_skip, Bundle, Rootfs, WeaveDns};
use weave_hook::overlay::{self, Overlay};

/// weave-dns's upstream: an address of the test's underlay where nothing listens, so no
/// query can ever leave the test's namespaces.
const NO_UPSTREAM: &str = "192.168.251.200";

fn settings_of(sim: &SimHost) -> Settings {
    Settings {
        state_dir: sim.state_dir().to_path_buf(),
        ..Settings::defaults()
    }
}

fn overlay_of(sim: &SimHost) -> Overlay {
    Overlay {
        bridge: "weave".into(),
        vni: 4242,
        port: 4789,
        local: sim.addr(),
        mtu: None,
    }
}

/// The overlay on `sim`, with the others as peers; returns its MTU.
fn set_up(sim: &SimHost, peers: &[Ipv4Addr]) -> u32 {
    let s = settings_of(sim);
    let ov = overlay_of(sim);
    sim.in_netns(|| {
        let mtu = overlay::ensure(&s, &ov)?;
        overlay::set_peers(&s, &ov, peers).map(|()| mtu)
    })
    .unwrap()
}

/// A bundle on `sim` running `args` at `cidr`, the hook given the overlay MTU; a weave DNS
/// container when `dns` names its hostname.
fn bundle(sim: &SimHost, rootfs: &Rootfs, args: &[&str], cidr: &str, dns: Option<&str>) -> Bundle {
    let mut b = Bundle::new(rootfs, args);
    let flags = sim.hook_flags(&["--mtu", "1500", "--dns-upstream", NO_UPSTREAM]);
    b.annotate("weave.cidr", cidr).with_weave_hook(&flags);
    if let Some(hostname) = dns {
        b.annotate("weave.dns", "true");
        b.edit(|c| c["hostname"] = serde_json::json!(hostname));
    }
    b
}

#[test]
fn containers_on_three_hosts_talk_over_the_overlay_at_its_mtu_with_host_local_dns() {
    let test = "containers_on_three_hosts_talk_over_the_overlay_at_its_mtu_with_host_local_dns";
    if !root_or_skip(test) || !tool_or_skip(test, "runc") || !tool_or_skip(test, "ping") {
        return;
    }
    // Dropped last to first: runc (containers) first, then weave-dns, then the hosts.
    let underlay = Underlay::with_mtu(1550);
    let hosts: Vec<SimHost> = (1..=3).map(|n| SimHost::new(&underlay, n)).collect();
    let (a, b, c) = (&hosts[0], &hosts[1], &hosts[2]);
    let _dns: Vec<WeaveDns> = hosts
        .iter()
        .map(|h| WeaveDns::started_by_hook(h.state_dir()))
        .collect();
    let rootfs = Rootfs::busybox();
    let (ra, rb, rc) = (a.runc(), b.runc(), c.runc());

    for h in &hosts {
        let peers: Vec<Ipv4Addr> = hosts
            .iter()
            .map(SimHost::addr)
            .filter(|p| *p != h.addr())
            .collect();
        assert_eq!(set_up(h, &peers), 1500, "underlay 1550 - 50");
    }

    start(
        &rb,
        "bravo",
        &bundle(b, &rootfs, &["sleep", "600"], "10.32.2.1/12", Some("bravo")),
    );
    start(
        &rc,
        "charlie",
        &bundle(c, &rootfs, &["sleep", "600"], "10.32.3.1/12", None),
    );
    start(
        &ra,
        "alpha",
        &bundle(a, &rootfs, &["sleep", "600"], "10.32.1.1/12", Some("alpha")),
    );

    // The first instruction of a container on A pings the one on B: 20 of 20.
    let pinger = bundle(
        a,
        &rootfs,
        &["ping", "-c", "20", "-A", "-W", "5", "10.32.2.1"],
        "10.32.1.2/12",
        None,
    );
    let out = ra.run("pinger", &pinger);
    assert!(
        out.status.success(),
        "first-instruction ping A -> B: {}",
        text(&out)
    );
    assert!(
        text(&out).contains("20 packets transmitted, 20 packets received"),
        "{}",
        text(&out)
    );
    let alpha = ra.pid("alpha");
    let ok = in_netns_of(alpha, &["ping", "-c", "2", "-W", "2", "10.32.3.1"]);
    assert!(ok.status.success(), "A -> C: {}", text(&ok));

    // MTU: ethwe has the overlay's 1500; a 1472-byte DF ping (1500 bytes of IP) crosses,
    // 1473 bytes fail at once with EMSGSIZE instead of vanishing on the way.
    let ethwe = text(&in_netns_of(alpha, &["ip", "-o", "link", "show", "ethwe"]));
    assert!(ethwe.contains("mtu 1500"), "{ethwe}");
    let fits = in_netns_of(
        alpha,
        &[
            "ping",
            "-M",
            "do",
            "-s",
            "1472",
            "-c",
            "3",
            "-W",
            "2",
            "10.32.2.1",
        ],
    );
    assert!(fits.status.success(), "1472-byte DF ping: {}", text(&fits));
    let too_big = in_netns_of(
        alpha,
        &[
            "ping",
            "-M",
            "do",
            "-s",
            "1473",
            "-c",
            "1",
            "-W",
            "2",
            "10.32.2.1",
        ],
    );
    assert!(
        !too_big.status.success(),
        "a 1473-byte DF ping passed: {}",
        text(&too_big)
    );
    assert!(
        text(&too_big).contains("message too long"),
        "the too-big ping says why: {}",
        text(&too_big)
    );

    // Weave DNS at 10.32.0.1 on every host: A's answers A's container (it knows alpha,
    // not bravo, which only B's knows), and A's container's ARP for it never reaches B.
    b.sh("ip neigh flush dev weave");
    let own = in_netns_of(
        alpha,
        &["busybox", "nslookup", "alpha.weave.local", "10.32.0.1"],
    );
    assert!(
        text(&own).contains("10.32.1.1"),
        "A's weave DNS answers A's container: {}",
        text(&own)
    );
    let other = in_netns_of(
        alpha,
        &["busybox", "nslookup", "bravo.weave.local", "10.32.0.1"],
    );
    assert!(
        !text(&other).contains("10.32.2.1"),
        "B's weave DNS answered A's container: {}",
        text(&other)
    );
    let neigh = b.sh("ip neigh show dev weave");
    assert!(
        !neigh.contains("10.32.1.1"),
        "A's container's ARP for 10.32.0.1 reached B: {neigh}"
    );

    // Control: without the host-local tables, the same ARP does reach B's bridge.
    for h in [a, b] {
        h.sh("nft delete table bridge weave-mesh");
    }
    in_netns_of(alpha, &["ip", "neigh", "flush", "all"]);
    in_netns_of(
        alpha,
        &["busybox", "nslookup", "alpha.weave.local", "10.32.0.1"],
    );
    let neigh = b.sh("ip neigh show dev weave");
    assert!(
        neigh.contains("10.32.1.1"),
        "control: B sees A's ARP without the filter: {neigh}"
    );
    // set_peers puts them back.
    let peers_of_a = [b.addr(), c.addr()];
    set_up(a, &peers_of_a);
    assert!(a.sh("nft list tables").contains("table bridge weave-mesh"));

    for (runc, id) in [(&ra, "alpha"), (&rb, "bravo"), (&rc, "charlie")] {
        runc.remove(id);
    }
    for h in &hosts {
        assert_eq!(h.host.veths_left(), Vec::<String>::new());
    }
}
