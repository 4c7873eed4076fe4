//! Attach, detach and gc against the real kernel, each test in throwaway network
//! namespaces: the test thread unshares its own "host" namespace, and every "container" is
//! a `sleep` in a namespace of its own. Nothing touches the machine's real network.
//! Root only: skipped outside CI when not root, a failure in CI.

mod common;

use std::path::Path;
use std::process::Command;

use common::{docker_host, host_links, settings, sh, Container};
use weave_core::id::ContainerId;
use weave_core::settings::{host_veth_name, Settings};
use weave_core::store::Store;
use weave_e2e::root_or_skip;
use weave_hook::attach::attach;
use weave_hook::detach;

/// Detach as the binary does it, the veth deleted in the foreground (a test process has
/// several threads, so the binary's background deletion would not fork here either).
fn detach(s: &Settings, id: &ContainerId) -> weave_hook::error::Result<()> {
    detach::delete_now(&detach::detach(s, id)?)
}

/// Detach deletes the host veth from a background child: waits up to 2 s for `name` to go.
fn link_gone(name: &str) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while host_links().contains(name) {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    true
}

#[test]
fn attach_wires_bridge_veth_and_addresses() {
    if !root_or_skip("attach_wires_bridge_veth_and_addresses") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let c = Container::start("c1");
    let record = attach(&s, &c.state("10.2.0.5/24, net:10.3.0.0/24"))
        .unwrap()
        .unwrap();
    assert_eq!(record.addrs[0].to_string(), "10.2.0.5/24");
    assert!(record.addrs[1].to_string().starts_with("10.3.0."));

    let veth = host_veth_name(&c.id);
    let bridge = sh("ip -o link show weave");
    assert!(
        bridge.contains("state UP") || bridge.contains(",UP"),
        "{bridge}"
    );
    let link = sh(&format!("ip -o link show {veth}"));
    assert!(
        link.contains("master weave") && link.contains(",UP"),
        "{link}"
    );
    assert!(sh("iptables -w -S FORWARD").contains("-A FORWARD -i weave -o weave"));

    let inside = c.run("ip -o -4 addr show ethwe");
    assert!(inside.contains("inet 10.2.0.5/24"), "{inside}");
    assert!(
        inside.contains(&format!("inet {}", record.addrs[1])),
        "{inside}"
    );
    assert!(c.run("ip -o link show ethwe").contains(",UP"));
    assert!(c.run("ip -o link show lo").contains(",UP"));
    assert_eq!(
        c.run("cat /proc/sys/net/ipv4/conf/ethwe/arp_notify").trim(),
        "1"
    );
    let routes = c.run("ip -4 route");
    assert!(
        routes.contains("10.2.0.0/24 dev ethwe") && !routes.contains("default"),
        "{routes}"
    );

    detach(&s, &c.id).unwrap();
    assert!(link_gone(&veth), "detach deletes the host veth");
    assert!(Store::existing(dir.path())
        .records()
        .unwrap()
        .records
        .is_empty());
    detach(&s, &c.id).expect("detach is idempotent");
    detach(&s, &ContainerId::parse("never-attached").unwrap()).expect("never attached is fine");
}

#[test]
fn containers_reach_each_other_through_a_dropping_firewall() {
    if !root_or_skip("containers_reach_each_other_through_a_dropping_firewall") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let a = Container::start("a");
    let b = Container::start("b");
    attach(&s, &a.state("10.2.0.1/24")).unwrap();
    attach(&s, &b.state("10.2.0.2/24")).unwrap();
    b.run("busybox ping -c 1 -W 2 10.2.0.1");
    // The control: without weave's rule this host drops the traffic, so the test means something.
    sh("iptables -w -D FORWARD -i weave -o weave -m comment --comment weave-hook -j ACCEPT");
    let dropped = Command::new("nsenter")
        .args([
            "-t",
            &b.pid().to_string(),
            "-n",
            "busybox",
            "ping",
            "-c",
            "1",
            "-W",
            "1",
            "10.2.0.1",
        ])
        .output()
        .unwrap();
    assert!(
        !dropped.status.success(),
        "FORWARD DROP must drop bridged traffic without the rule"
    );
}

#[test]
fn concurrent_first_attaches_all_succeed_with_distinct_addresses() {
    if !root_or_skip("concurrent_first_attaches_all_succeed_with_distinct_addresses") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let containers: Vec<Container> = (0..16)
        .map(|i| Container::start(&format!("c{i}")))
        .collect();
    let addrs: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = containers
            .iter()
            .map(|c| {
                let s = s.clone();
                // Threads inherit the creating thread's namespaces, so all share this "host".
                scope.spawn(move || {
                    attach(&s, &c.state("net:default")).unwrap().unwrap().addrs[0].to_string()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let distinct: std::collections::HashSet<_> = addrs.iter().collect();
    assert_eq!(distinct.len(), 16, "{addrs:?}");
    assert_eq!(sh("ip -o link show master weave").lines().count(), 16);
}

#[test]
fn refused_attach_leaves_nothing_behind() {
    if !root_or_skip("refused_attach_leaves_nothing_behind") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let a = Container::start("holder");
    let b = Container::start("latecomer");
    attach(&s, &a.state("10.2.0.7/24")).unwrap();
    let err = attach(&s, &b.state("net:10.9.0.0/24 10.2.0.7/24"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("10.2.0.7") && err.contains("holder"), "{err}");
    assert!(!host_links().contains(&host_veth_name(&b.id)));
    assert!(!b.run("ip -o link").contains("ethwe"));
    let ids: Vec<String> = Store::existing(dir.path())
        .records()
        .unwrap()
        .records
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, vec!["holder"]);
    assert_eq!(
        std::fs::read_dir(dir.path().join("addrs")).unwrap().count(),
        1,
        "the 10.9.0.x reservation was undone"
    );
}

#[test]
fn failure_after_the_veth_undoes_veth_and_reservation() {
    if !root_or_skip("failure_after_the_veth_undoes_veth_and_reservation") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let c = Container::start("clash");
    c.run("ip link add ethwe type veth peer name ethwepeer");
    let err = attach(&s, &c.state("10.2.0.8/24")).unwrap_err().to_string();
    assert!(err.contains("ethwe"), "{err}");
    assert!(!host_links().contains(&host_veth_name(&c.id)));
    assert!(Store::existing(dir.path())
        .records()
        .unwrap()
        .records
        .is_empty());
    assert_eq!(
        std::fs::read_dir(dir.path().join("addrs")).unwrap().count(),
        0
    );
}

#[test]
fn host_network_namespace_is_refused() {
    if !root_or_skip("host_network_namespace_is_refused") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let c = Container::start_in_host_ns("hostnet");
    let err = attach(&settings(dir.path()), &c.state("10.2.0.9/24"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("host's network namespace"), "{err}");
    assert!(!host_links().contains("vethwe"));
    assert!(Store::existing(dir.path())
        .records()
        .unwrap()
        .records
        .is_empty());
}

#[test]
fn gone_pid_is_refused() {
    if !root_or_skip("gone_pid_is_refused") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let mut c = Container::start("gone");
    let state = c.state("10.2.0.9/24");
    c.kill();
    let err = attach(&settings(dir.path()), &state)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("pid {}", state.pid.unwrap())),
        "{err}"
    );
    assert!(Store::existing(dir.path())
        .records()
        .unwrap()
        .records
        .is_empty());
}

#[test]
fn gc_collects_killed_containers_and_orphan_veths() {
    if !root_or_skip("gc_collects_killed_containers_and_orphan_veths") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let mut dead = Container::start("dead");
    let live = Container::start("live");
    attach(&s, &dead.state("10.2.0.10/24")).unwrap();
    attach(&s, &live.state("10.2.0.11/24")).unwrap();
    dead.kill(); // no poststop: its record and address stay behind
                 // A veth left by a hook killed before it wrote a record:
    sh("ip link add vethwe00000000f type veth peer name orphanpeer && ip link set vethwe00000000f master weave");
    let report = weave_hook::gc::collect(&s).unwrap();
    assert_eq!(report.released, vec!["dead"]);
    assert!(
        report
            .deleted_veths
            .contains(&"vethwe00000000f".to_string()),
        "{report:?}"
    );
    let ids: Vec<String> = Store::existing(dir.path())
        .records()
        .unwrap()
        .records
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, vec!["live"]);
    assert!(
        host_links().contains(&host_veth_name(&live.id)),
        "a live container's veth stays"
    );
    assert!(!host_links().contains("vethwe00000000f"));
    // resolv.conf files of weave-runtime: an old one without a record goes, a fresh one
    // (its container may be being created right now) and a live container's stay.
    let resolv = dir.path().join("resolv");
    std::fs::create_dir_all(&resolv).unwrap();
    for name in ["old.conf", "fresh.conf", "live.conf"] {
        std::fs::write(resolv.join(name), "nameserver 10.32.0.1\n").unwrap();
    }
    let two_minutes_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(120);
    for name in ["old.conf", "live.conf"] {
        std::fs::File::options()
            .write(true)
            .open(resolv.join(name))
            .unwrap()
            .set_modified(two_minutes_ago)
            .unwrap();
    }
    let report = weave_hook::gc::collect(&s).unwrap();
    assert_eq!(report.stale_resolv_files, 1);
    let mut left: Vec<_> = std::fs::read_dir(&resolv)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, vec!["fresh.conf", "live.conf"]);
    // The dead container's explicit address is free again.
    let again = Container::start("again");
    attach(&s, &again.state("10.2.0.10/24")).unwrap();
}

/// A watcher learns a container's MAC for 10.2.0.21; the container goes, and another takes
/// 10.2.0.21 as its second address (under another MAC). Err when the watcher, which sends
/// nothing, has not learnt the new MAC from the announcement within about a second.
fn reused_second_address_reaches_a_watcher() -> Result<(), String> {
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let watcher = Container::start("watcher");
    attach(&s, &watcher.state("10.2.0.20/24")).unwrap();
    let mut first = Container::start("first");
    attach(&s, &first.state("10.2.0.21/24")).unwrap();
    watcher.run("busybox ping -c 1 -W 2 10.2.0.21");
    let old_mac = first.ethwe_mac();
    assert!(
        watcher.run("ip neigh show 10.2.0.21").contains(&old_mac),
        "the watcher knows the old MAC"
    );
    first.kill();
    detach(&s, &first.id).unwrap();
    // ethwe's MAC follows the first address (a reused first address keeps its MAC, so a
    // stale entry stays right): the reused address comes second here, under another MAC.
    let second = Container::start("second");
    attach(&s, &second.state("10.2.0.22/24 10.2.0.21/24")).unwrap();
    let new_mac = second.ethwe_mac();
    assert_ne!(old_mac, new_mac);
    // The watcher sends nothing: only the gratuitous ARP can have updated its entry.
    let mut neigh = String::new();
    for _ in 0..100 {
        neigh = watcher.run("ip neigh show 10.2.0.21");
        if neigh.contains(&new_mac) {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err(format!("watcher still has {neigh:?}, expected {new_mac}"))
}

#[test]
fn reused_address_is_announced_to_neighbours() {
    if !root_or_skip("reused_address_is_announced_to_neighbours") {
        return;
    }
    reused_second_address_reaches_a_watcher().unwrap();
}

/// The announcement waits for the bridge to forward the port. Sent as ethwe came up (the
/// kernel's `arp_notify`), it was dropped at the bridge whenever the link watch ran late:
/// with six of these at once, 20 of 48 failed.
#[test]
fn announcements_survive_a_busy_host() {
    if !root_or_skip("announcements_survive_a_busy_host") {
        return;
    }
    let threads: Vec<_> = (0..6)
        .map(|_| std::thread::spawn(reused_second_address_reaches_a_watcher))
        .collect();
    let failed: Vec<String> = threads
        .into_iter()
        .filter_map(|t| t.join().unwrap().err())
        .collect();
    assert!(failed.is_empty(), "{} of 6 lost: {failed:?}", failed.len());
}

/// The packet-socket announcement (what the hook sends when the kernel did not): a
/// neighbour whose entry names another MAC takes the container's from it.
#[test]
fn a_gratuitous_arp_from_a_packet_socket_corrects_a_neighbour() {
    if !root_or_skip("a_gratuitous_arp_from_a_packet_socket_corrects_a_neighbour") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let watcher = Container::start("watcher");
    attach(&s, &watcher.state("10.2.0.60/24")).unwrap();
    let c = Container::start("sender");
    attach(&s, &c.state("10.2.0.61/24")).unwrap();
    watcher.run("ip neigh replace 10.2.0.61 lladdr 02:00:00:00:00:01 dev ethwe nud stale");
    let mac = c.ethwe_mac();
    let bytes: Vec<u8> = mac
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    let ns = std::fs::File::open(format!("/proc/{}/ns/net", c.pid())).unwrap();
    std::thread::spawn(move || {
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        // SAFETY: a NUL-terminated name.
        let index = unsafe { libc::if_nametoindex(c"ethwe".as_ptr()) };
        assert_ne!(index, 0, "no ethwe");
        weave_hook::garp::announce(
            index,
            weave_core::mac::Mac(bytes.try_into().unwrap()),
            &["10.2.0.61".parse().unwrap()],
        )
        .unwrap();
    })
    .join()
    .unwrap();
    let mut neigh = String::new();
    for _ in 0..100 {
        neigh = watcher.run("ip neigh show 10.2.0.61");
        if neigh.contains(&mac) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("watcher still has {neigh:?}, expected {mac}");
}

#[test]
fn mtu_applies_to_bridge_and_both_veth_ends() {
    if !root_or_skip("mtu_applies_to_bridge_and_both_veth_ends") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = Settings {
        mtu: Some(1400),
        ..settings(dir.path())
    };
    let c = Container::start("mtu");
    attach(&s, &c.state("10.2.0.30/24")).unwrap();
    assert!(sh("ip -o link show weave").contains("mtu 1400"));
    assert!(sh(&format!("ip -o link show {}", host_veth_name(&c.id))).contains("mtu 1400"));
    assert!(c.run("ip -o link show ethwe").contains("mtu 1400"));
}

#[test]
fn existing_non_bridge_link_is_refused() {
    if !root_or_skip("existing_non_bridge_link_is_refused") {
        return;
    }
    docker_host();
    sh("ip link add weave type veth peer name weavepeer");
    let dir = tempfile::tempdir().unwrap();
    let c = Container::start("nb");
    let err = attach(&settings(dir.path()), &c.state("10.2.0.31/24"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a bridge"), "{err}");
    assert!(Store::existing(dir.path())
        .records()
        .unwrap()
        .records
        .is_empty());
}

#[test]
fn restart_right_after_detach_keeps_the_new_veth() {
    if !root_or_skip("restart_right_after_detach_keeps_the_new_veth") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let first = Container::start("restarted");
    attach(&s, &first.state("10.2.0.40/24")).unwrap();
    let veth = host_veth_name(&first.id);
    let old = sh(&format!("ip -o link show {veth}"));
    // `docker restart`: poststop of the old process, at once createRuntime of the new one,
    // same id, before detach's background child deleted the old veth...
    let left = detach::detach(&s, &first.id).unwrap();
    assert!(left.veth.is_some(), "the old veth is left");
    let second = Container::start("restarted");
    attach(&s, &second.state("10.2.0.40/24")).unwrap();
    // ... which it then does, by the old index.
    detach::delete_now(&left).unwrap();
    let new = sh(&format!("ip -o link show {veth}"));
    assert_ne!(
        old.split(':').next(),
        new.split(':').next(),
        "a new veth, with a new index"
    );
    assert!(new.contains("master weave") && new.contains(",UP"), "{new}");
    assert!(second
        .run("ip -o -4 addr show ethwe")
        .contains("inet 10.2.0.40/24"));
}

/// Runs the weave-hook binary in the calling thread's namespaces (its "host").
fn hook_bin(state_dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_weave-hook"))
        .arg("--state-dir")
        .arg(state_dir)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_bridge_belongs_to_one_state_dir() {
    if !root_or_skip("a_bridge_belongs_to_one_state_dir") {
        return;
    }
    docker_host();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (sa, sb) = (settings(a.path()), settings(b.path()));
    let c1 = Container::start("in-a");
    attach(&sa, &c1.state("10.2.0.1/24")).unwrap();
    // Another state directory on the same bridge would hand out 10.2.0.1 again.
    let c2 = Container::start("in-b");
    let err = attach(&sb, &c2.state("10.2.0.1/24"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bridge weave belongs to weave state directory")
            && err.contains(&a.path().display().to_string()),
        "{err}"
    );
    assert!(Store::existing(b.path())
        .records()
        .unwrap()
        .records
        .is_empty());
    // The other directory's reset neither deletes the bridge nor cuts c1 off.
    let err = weave_hook::reset::reset(&sb).unwrap_err().to_string();
    assert!(err.contains("belongs to weave state directory"), "{err}");
    assert!(host_links().contains(": weave:"));
    assert!(c1.run("ip -o link show ethwe").contains(",UP"));
    // Its own reset refuses while c1 is attached, and when a port is not weave's.
    assert!(weave_hook::reset::reset(&sa).is_err());
    detach(&sa, &c1.id).unwrap();
    sh("ip link add wvforeign type veth peer name wvforeign-p && ip link set wvforeign master weave");
    let err = weave_hook::reset::reset(&sa).unwrap_err().to_string();
    assert!(
        err.contains("ports weave-hook did not make (wvforeign)"),
        "{err}"
    );
    sh("ip link del wvforeign");
    weave_hook::reset::reset(&sa).unwrap();
    assert!(!host_links().contains(": weave:"));
}

#[test]
fn a_link_that_is_not_the_containers_is_never_deleted() {
    if !root_or_skip("a_link_that_is_not_the_containers_is_never_deleted") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let c = Container::start("collides");
    // Another program's link (or another container's: the name is a 36-bit hash of the id).
    let veth = host_veth_name(&c.id);
    sh(&format!(
        "ip link add {veth} type veth peer name wvcollide-p"
    ));
    let err = attach(&s, &c.state("10.2.0.9/24")).unwrap_err().to_string();
    assert!(
        err.contains(&format!("host interface {veth} exists")),
        "{err}"
    );
    assert!(host_links().contains(&format!("{veth}:")));
    assert!(Store::existing(dir.path())
        .records()
        .unwrap()
        .records
        .is_empty());
    // Without a record nothing proves the link the container's: detach leaves it too.
    detach(&s, &c.id).unwrap();
    let out = hook_bin(dir.path(), &["--bridge", "weave", "gc"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(host_links().contains(&format!("{veth}:")));
    sh(&format!("ip link del {veth}"));
}

#[test]
fn a_corrupt_record_is_skipped_by_gc_ps_and_reset() {
    if !root_or_skip("a_corrupt_record_is_skipped_by_gc_ps_and_reset") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let c = Container::start("good");
    attach(&s, &c.state("10.2.0.11/24")).unwrap();
    let bad = dir.path().join("containers/bad.json");
    std::fs::write(&bad, "{torn").unwrap();
    let bad = bad.display().to_string();
    for cmd in ["ps", "gc"] {
        let out = hook_bin(dir.path(), &[cmd]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{cmd}: {stderr}");
        assert!(stderr.contains(&bad), "{cmd} names the file: {stderr}");
    }
    let ps = String::from_utf8(hook_bin(dir.path(), &["ps"]).stdout).unwrap();
    assert!(ps.starts_with("good "), "{ps}");
    // gc kept the live container's veth and record.
    assert!(c.run("ip -o link show ethwe").contains(",UP"));
    detach(&s, &c.id).unwrap();
    let out = hook_bin(dir.path(), &["reset"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&bad), "reset names the file: {stderr}");
    assert!(!host_links().contains(": weave:"));
}

#[test]
fn weave_dns_address_is_never_allocated_to_a_container() {
    if !root_or_skip("weave_dns_address_is_never_allocated_to_a_container") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = Settings {
        ipalloc_range: "10.47.0.0/16".parse().unwrap(),
        ..settings(dir.path())
    };
    // weave DNS is 10.47.0.1 (the range's first host); a /30 holding it has one other host.
    let a = Container::start("first");
    let record = attach(&s, &a.state("net:10.47.0.0/30")).unwrap().unwrap();
    assert_eq!(record.addrs, vec!["10.47.0.2/30".parse().unwrap()]);
    let b = Container::start("second");
    let err = attach(&s, &b.state("net:10.47.0.0/30"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no free address left in 10.47.0.0/30"),
        "{err}"
    );
    let err = attach(&s, &b.state("10.47.0.1/16"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("kept by weave itself"), "{err}");
}

/// A router advertisement for 2001:db8:47::/64 (autonomous), sent from inside the container
/// to all nodes through ethwe, as any container with CAP_NET_RAW (Docker's default) can.
const SEND_RA: &str = r#"
import socket, struct
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
ra = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0)
prefix = struct.pack("!BBBBIII16s", 3, 4, 64, 0xC0, 86400, 14400, 0,
                     socket.inet_pton(socket.AF_INET6, "2001:db8:47::"))
for _ in range(3):
    s.sendto(ra + prefix, ("ff02::1", 0, 0, socket.if_nametoindex("ethwe")))
"#;

#[test]
fn router_advertisements_from_a_container_do_not_configure_the_host() {
    if !root_or_skip("router_advertisements_from_a_container_do_not_configure_the_host") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let c = Container::start("advertiser");
    attach(&s, &c.state("10.2.0.60/24")).unwrap();
    // ethwe's own link-local address must be usable (past DAD, ~1 s) to send from.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !c.run("ip -6 addr show dev ethwe").contains("scope link \n")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let veth = host_veth_name(&c.id);
    let out = Command::new("nsenter")
        .args(["-t", &c.pid().to_string(), "-n", "python3", "-c", SEND_RA])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        sh("ip -6 route show default"),
        "",
        "no default route from the RA"
    );
    assert!(
        !sh("ip -6 addr").contains("2001:db8:47"),
        "{}",
        sh("ip -6 addr")
    );
    // Neither the bridge nor the host veth has an IPv6 address a container could reach.
    assert_eq!(sh("ip -6 addr show dev weave"), "");
    assert_eq!(sh(&format!("ip -6 addr show dev {veth}")), "");
}

#[test]
fn a_state_dir_others_can_change_is_refused() {
    if !root_or_skip("a_state_dir_others_can_change_is_refused") {
        return;
    }
    docker_host();
    let base = tempfile::tempdir().unwrap();
    let c = Container::start("trusting");
    let attach_in = |dir: &Path| {
        attach(&settings(dir), &c.state("10.2.0.70/24"))
            .unwrap_err()
            .to_string()
    };
    let open = base.path().join("open");
    std::fs::create_dir(&open).unwrap();
    sh(&format!("chmod 0777 {}", open.display()));
    assert!(attach_in(&open).contains("writable by its group or others (mode 777)"));
    let foreign = base.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    sh(&format!("chown 65534 {}", foreign.display()));
    assert!(attach_in(&foreign).contains("is owned by uid 65534"));
    // A sub-directory planted as a link to somewhere else.
    let planted = base.path().join("planted");
    std::fs::create_dir(&planted).unwrap();
    std::os::unix::fs::symlink(base.path(), planted.join("addrs")).unwrap();
    assert!(attach_in(&planted).contains("addrs is a symbolic link"));
    assert!(!host_links().contains("vethwe"), "nothing was wired");
}

#[test]
fn a_planted_dns_log_link_is_not_followed() {
    if !root_or_skip("a_planted_dns_log_link_is_not_followed") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("elsewhere");
    std::os::unix::fs::symlink(&target, dir.path().join("dns.log")).unwrap();
    let mut s = settings(dir.path());
    s.dns.server_path = Some("/bin/true".into());
    let c = Container::start("dns-link");
    let mut state = c.state("10.2.0.71/24");
    state.annotations.insert("weave.dns".into(), "true".into());
    let b = tempfile::tempdir().unwrap();
    std::fs::write(b.path().join("config.json"), "{}").unwrap();
    state.bundle = Some(b.path().to_path_buf());
    let err = attach(&s, &state).unwrap_err().to_string();
    assert!(err.contains("dns.log"), "{err}");
    assert!(!target.exists(), "root created a file through the link");
    assert!(Store::existing(dir.path())
        .records()
        .unwrap()
        .records
        .is_empty());
}

#[test]
fn two_ids_with_one_veth_name_do_not_hurt_each_other() {
    if !root_or_skip("two_ids_with_one_veth_name_do_not_hurt_each_other") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    // Found by search: FNV-1a of both ids agrees in the 36 bits the veth name keeps.
    let first = Container::start("c119668");
    let second = Container::start("c2231100");
    assert_eq!(host_veth_name(&first.id), host_veth_name(&second.id));
    attach(&s, &first.state("10.2.0.80/24")).unwrap();
    let before = sh(&format!("ip -o link show {}", host_veth_name(&first.id)));
    let err = attach(&s, &second.state("10.2.0.81/24"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("exists and is not this container's"), "{err}");
    assert_eq!(
        sh(&format!("ip -o link show {}", host_veth_name(&first.id))),
        before,
        "the first container's veth is untouched"
    );
    assert!(first.run("ip -o link show ethwe").contains(",UP"));
    let ps: Vec<String> = Store::existing(dir.path())
        .records()
        .unwrap()
        .records
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ps, ["c119668"]);
    assert!(!dir.path().join("addrs/10.2.0.81").exists());
}

/// ethwe's `arp_notify`, inside the container: whether the kernel announces its addresses.
fn announces(c: &Container) -> bool {
    c.run("cat /proc/sys/net/ipv4/conf/ethwe/arp_notify").trim() == "1"
}

#[test]
fn a_neighbour_with_a_stale_entry_reaches_a_reused_first_address_without_an_announcement() {
    if !root_or_skip(
        "a_neighbour_with_a_stale_entry_reaches_a_reused_first_address_without_an_announcement",
    ) {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let watcher = Container::start("watcher");
    attach(&s, &watcher.state("10.2.0.30/24")).unwrap();
    let mut first = Container::start("first");
    attach(&s, &first.state("10.2.0.31/24")).unwrap();
    watcher.run("busybox ping -c 1 -W 2 10.2.0.31");
    let old_mac = first.ethwe_mac();
    assert!(watcher.run("ip neigh show 10.2.0.31").contains(&old_mac));
    first.kill();
    detach(&s, &first.id).unwrap();
    // The reused address comes first: ethwe gets the same MAC, and nothing is broadcast.
    let second = Container::start("second");
    attach(&s, &second.state("10.2.0.31/24")).unwrap();
    assert_eq!(second.ethwe_mac(), old_mac);
    assert!(!announces(&second), "no gratuitous ARP for a derived MAC");
    // The bridge forwards the MAC to the new port before the container sends anything.
    let veth = host_veth_name(&second.id);
    assert!(
        sh(&format!("bridge fdb show dev {veth}")).contains(&old_mac),
        "the bridge's entry for {old_mac} points at {veth}"
    );
    // The watcher's entry, learned from the old holder, takes it to the new one at once.
    assert!(watcher.run("ip neigh show 10.2.0.31").contains(&old_mac));
    assert!(watcher.pings("10.2.0.31"), "the new holder answers");
}

#[test]
fn an_address_once_held_second_is_announced_when_it_comes_back_first() {
    if !root_or_skip("an_address_once_held_second_is_announced_when_it_comes_back_first") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let watcher = Container::start("watcher");
    attach(&s, &watcher.state("10.2.0.40/24")).unwrap();
    let mut pair = Container::start("pair");
    attach(&s, &pair.state("10.2.0.41/24 10.2.0.42/24")).unwrap();
    assert!(announces(&pair), "a second address is announced");
    watcher.run("busybox ping -c 1 -W 2 10.2.0.42");
    let old_mac = pair.ethwe_mac();
    assert!(watcher.run("ip neigh show 10.2.0.42").contains(&old_mac));
    pair.kill();
    detach(&s, &pair.id).unwrap();
    // 10.2.0.42 now comes first, under its own derived MAC: neighbours must be told.
    let alone = Container::start("alone");
    attach(&s, &alone.state("10.2.0.42/24")).unwrap();
    let new_mac = alone.ethwe_mac();
    assert_ne!(new_mac, old_mac);
    assert!(
        announces(&alone),
        "an address once held under another MAC is announced"
    );
    let mut neigh = String::new();
    for _ in 0..100 {
        neigh = watcher.run("ip neigh show 10.2.0.42");
        if neigh.contains(&new_mac) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("watcher still has {neigh:?}, expected {new_mac}");
}

/// The bridge's `mcast_snooping` as `ip -d link` prints it.
fn snooping(bridge: &str) -> String {
    let out = sh(&format!("ip -d link show {bridge}"));
    let at = out
        .find("mcast_snooping ")
        .expect("ip -d prints mcast_snooping");
    out[at..].split_whitespace().nth(1).unwrap().to_string()
}

#[test]
fn weave_bridges_do_no_multicast_snooping() {
    if !root_or_skip("weave_bridges_do_no_multicast_snooping") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let c = Container::start("mcnew");
    attach(&settings(dir.path()), &c.state("10.2.0.51/24")).unwrap();
    assert_eq!(snooping("weave"), "0", "a bridge weave-hook creates");
    // A bridge made by hand (snooping on, the kernel's default) is turned off when marked.
    sh("ip link add weave2 type bridge");
    assert_eq!(snooping("weave2"), "1");
    let dir2 = tempfile::tempdir().unwrap();
    let mut s2 = settings(dir2.path());
    s2.bridge = "weave2".into();
    let c2 = Container::start("mcold");
    attach(&s2, &c2.state("10.2.0.52/24")).unwrap();
    assert_eq!(snooping("weave2"), "0", "a bridge weave-hook adopts");
    // A bridge weave-hook marked before it turned snooping off: off at the next attach.
    sh("ip link set weave type bridge mcast_snooping 1");
    assert_eq!(snooping("weave"), "1");
    let c3 = Container::start("mcmarked");
    attach(&settings(dir.path()), &c3.state("10.2.0.53/24")).unwrap();
    assert_eq!(snooping("weave"), "0", "a bridge weave-hook marked before");
}

#[test]
fn bridge_ports_have_no_ipv6() {
    if !root_or_skip("bridge_ports_have_no_ipv6") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let c = Container::start("nov6");
    let record = attach(&s, &c.state("10.2.0.50/24")).unwrap().unwrap();
    let disabled = std::fs::read_to_string(format!(
        "/proc/sys/net/ipv6/conf/{}/disable_ipv6",
        record.veth
    ))
    .unwrap();
    assert_eq!(disabled.trim(), "1");
    // With a carrier (ethwe is up) still no IPv6 address and no route on the port.
    assert!(sh(&format!("ip -6 addr show dev {}", record.veth))
        .trim()
        .is_empty());
    assert!(
        sh(&format!("ip -6 route show table all dev {}", record.veth))
            .trim()
            .is_empty()
    );
}

#[test]
fn ethwe_gets_the_mac_of_its_first_address_and_the_record_keeps_it() {
    if !root_or_skip("ethwe_gets_the_mac_of_its_first_address_and_the_record_keeps_it") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let c = Container::start("macd");
    let record = attach(&s, &c.state("10.2.0.77/24 10.3.0.9/24"))
        .unwrap()
        .unwrap();
    assert_eq!(c.ethwe_mac(), "0a:58:0a:02:00:4d");
    let stored = Store::open(dir.path())
        .unwrap()
        .record(&c.id)
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.mac.map(|m| m.to_string()).as_deref(),
        Some("0a:58:0a:02:00:4d")
    );
    assert_eq!(record.mac, stored.mac);
    // A later container with the same first address gets the same MAC.
    drop(c);
    detach(&s, &ContainerId::parse("macd").unwrap()).unwrap();
    let again = Container::start("macd2");
    attach(&s, &again.state("10.2.0.77/24")).unwrap();
    assert_eq!(again.ethwe_mac(), "0a:58:0a:02:00:4d");
}

impl Container {
    /// Another container of this one's network namespace (a pod's, `--network container:X`).
    fn start_sharing(&self, id: &str) -> Self {
        let child = Command::new("nsenter")
            .args(["-t", &self.pid().to_string(), "-n", "sleep", "300"])
            .spawn()
            .unwrap();
        let ns = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
        while ns(child.id()) != ns(self.pid() as u32) {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        Self {
            id: ContainerId::parse(id).unwrap(),
            child,
        }
    }
}

#[test]
fn containers_of_one_netns_share_one_ethwe_until_the_last_is_gone() {
    if !root_or_skip("containers_of_one_netns_share_one_ethwe_until_the_last_is_gone") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let mut a = Container::start("pod-a");
    let b = a.start_sharing("pod-b");
    let c = a.start_sharing("pod-c");
    attach(&s, &a.state("10.2.0.5/24")).unwrap();
    let joined = attach(&s, &b.state("net:10.2.0.0/24")).unwrap().unwrap();
    assert_eq!(joined.addrs, vec!["10.2.0.5/24".parse().unwrap()]);
    let err = attach(&s, &c.state("10.2.0.6/24")).unwrap_err().to_string();
    assert!(err.contains("container pod-a"), "{err}");
    let veths = || host_links().matches("vethwe").count();
    assert_eq!(veths(), 1, "{}", host_links());
    assert_eq!(b.run("ip -o -4 addr show ethwe | wc -l").trim(), "1");
    // The container that wired the netns is killed (no poststop); b keeps the netns, and
    // gc keeps its interface and address.
    let a_veth = host_veth_name(&a.id);
    a.kill();
    let report = weave_hook::gc::collect(&s).unwrap();
    assert!(report.deleted_veths.is_empty(), "{report:?}");
    assert!(host_links().contains(&a_veth));
    let other = Container::start("other");
    let taken = attach(&s, &other.state("10.2.0.5/24")).unwrap_err();
    assert!(
        taken.to_string().contains("in use by container pod-b"),
        "{taken}"
    );
    assert!(b.run("ip -o -4 addr show ethwe").contains("10.2.0.5/24"));
    // The last one's poststop releases everything.
    detach(&s, &b.id).unwrap();
    assert!(link_gone(&a_veth), "{}", host_links());
    attach(&s, &other.state("10.2.0.5/24")).unwrap();
}
