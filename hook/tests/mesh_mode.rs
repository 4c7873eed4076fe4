//! Attach in mesh mode against the real kernel (throwaway network namespaces, as in
//! netlink.rs), with a fake weave-mesh: a thread serving `mesh/agent.sock` with canned
//! replies and a `mesh/state.json` the test writes. The hook's logic is the subject here;
//! the real agent is proven by the end-to-end tests of the mesh.
//! Root only: skipped outside CI when not root, a failure in CI.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use ipnet::Ipv4Net;

use common::{docker_host, host_links, settings, sh, Container};
use weave_core::id::ContainerId;
use weave_core::layout::StateDir;
use weave_core::mesh::{self, HeldAddr, MeshState, Peers, Reply, Request};
use weave_core::settings::{host_veth_name, Settings};
use weave_core::store::Store;
use weave_e2e::root_or_skip;
use weave_hook::attach::attach;
use weave_hook::detach;

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn addr(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// Writes this host's `mesh/state.json` as the agent would: `blocks`, valid for
/// `valid_for_ms` from now (negative: expired), the overlay's `mtu`.
fn write_state(dir: &Path, blocks: &[Ipv4Net], valid_for_ms: i64, mtu: Option<u32>) {
    let layout = StateDir::new(dir);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(layout.mesh_dir())
        .unwrap();
    let state = MeshState {
        version: mesh::VERSION,
        host: "hosta".into(),
        blocks: blocks.to_vec(),
        block_prefix: mesh::DEFAULT_BLOCK_PREFIX,
        valid_until_ms: (mesh::boottime_ms() as i64 + valid_for_ms) as u64,
        etcd_reachable: true,
        mtu,
    };
    let tmp = layout.mesh_dir().join(".state.tmp");
    fs::write(&tmp, serde_json::to_vec(&state).unwrap()).unwrap();
    fs::rename(tmp, layout.mesh_state()).unwrap();
}

/// Valid for a minute.
const VALID: i64 = 60_000;

/// A fake weave-mesh: answers each request line with `respond`'s reply, and remembers the
/// requests. Stopped (and its socket removed) when dropped.
struct FakeAgent {
    socket: PathBuf,
    seen: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeAgent {
    fn start(dir: &Path, respond: impl Fn(&Request) -> Reply + Send + 'static) -> Self {
        let layout = StateDir::new(dir);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(layout.mesh_dir())
            .unwrap();
        let socket = layout.mesh_socket();
        let listener = UnixListener::bind(&socket).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(mut stream) = stream else { continue };
                    let mut line = String::new();
                    if BufReader::new(&stream).read_line(&mut line).is_err() {
                        continue;
                    }
                    let Ok(request) = serde_json::from_str::<Request>(&line) else {
                        continue;
                    };
                    let reply = respond(&request);
                    seen.lock().unwrap().push(request);
                    let mut text = serde_json::to_vec(&reply).unwrap();
                    text.push(b'\n');
                    let _ = stream.write_all(&text);
                }
            })
        };
        Self {
            socket,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = UnixStream::connect(&self.socket);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = fs::remove_file(&self.socket);
    }
}

/// An agent that grants `block` (writing it into state.json first, as the contract says)
/// and proves every exact address.
fn granting(dir: &Path, block: Ipv4Net) -> impl Fn(&Request) -> Reply + Send + 'static {
    let dir = dir.to_path_buf();
    move |request| match request {
        Request::ClaimBlock { .. } => {
            write_state(&dir, &[block], VALID, None);
            Reply::Block { block }
        }
        _ => Reply::Ok,
    }
}

fn claim_addr(a: &str, id: &str) -> Request {
    Request::ClaimAddr {
        addr: addr(a),
        id: id.into(),
    }
}

fn release_addr(a: &str, id: &str) -> Request {
    Request::ReleaseAddr {
        addr: addr(a),
        id: id.into(),
    }
}

/// Nothing of an attach is left: no veth, no record, no address file.
fn assert_nothing_left(dir: &Path, id: &ContainerId) {
    assert!(
        !host_links().contains(&host_veth_name(id)),
        "{}",
        host_links()
    );
    assert!(Store::existing(dir).records().unwrap().records.is_empty());
    let addrs = fs::read_dir(StateDir::new(dir).addrs_dir())
        .unwrap()
        .count();
    assert_eq!(addrs, 0, "address files left");
}

fn detach(s: &Settings, id: &ContainerId) {
    detach::delete_now(&detach::detach(s, id).unwrap()).unwrap();
}

/// Runs the weave-hook binary in the calling thread's namespaces (its "host").
fn hook_bin(state_dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_weave-hook"))
        .arg("--state-dir")
        .arg(state_dir)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_host_without_blocks_claims_one_and_allocates_in_it() {
    if !root_or_skip("a_host_without_blocks_claims_one_and_allocates_in_it") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    write_state(dir.path(), &[], VALID, None);
    let block = net("10.32.0.64/26");
    let agent = FakeAgent::start(dir.path(), granting(dir.path(), block));
    let c1 = Container::start("c1");
    let c2 = Container::start("c2");
    let first = attach(&s, &c1.state("net:default")).unwrap().unwrap();
    assert!(block.contains(&first.addrs[0].addr()), "{:?}", first.addrs);
    assert_eq!(first.addrs[0].prefix_len(), 12);
    assert_eq!(
        agent.requests(),
        vec![Request::ClaimBlock {
            subnet: net("10.32.0.0/12")
        }]
    );
    // The next one allocates from the block without asking.
    let second = attach(&s, &c2.state("")).unwrap().unwrap();
    assert!(block.contains(&second.addrs[0].addr()));
    assert_ne!(first.addrs, second.addrs);
    assert_eq!(agent.requests().len(), 1);
    assert!(c2.pings(&first.addrs[0].addr().to_string()));
}

#[test]
fn an_exact_address_outside_the_blocks_is_claimed_and_one_inside_is_not() {
    if !root_or_skip("an_exact_address_outside_the_blocks_is_claimed_and_one_inside_is_not") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let block = net("10.32.0.64/26");
    write_state(dir.path(), &[block], VALID, None);
    let agent = FakeAgent::start(dir.path(), granting(dir.path(), block));
    let c = Container::start("ex");
    let inside = Container::start("in");
    let r = attach(&s, &c.state("10.2.0.5/24")).unwrap().unwrap();
    assert_eq!(r.addrs, vec![net("10.2.0.5/24")]);
    assert_eq!(agent.requests(), vec![claim_addr("10.2.0.5", "ex")]);
    assert!(c.run("ip -o -4 addr show ethwe").contains("10.2.0.5/24"));
    attach(&s, &inside.state("10.32.0.70/12")).unwrap();
    assert_eq!(agent.requests().len(), 1, "{:?}", agent.requests());
    // Held by a container of this host: refused here, naming it, and weave-mesh not asked.
    let again = Container::start("again");
    let err = attach(&s, &again.state("10.2.0.5/24"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("in use by container ex"), "{err}");
    assert_eq!(agent.requests().len(), 1, "{:?}", agent.requests());
}

#[test]
fn an_address_another_host_holds_is_refused_naming_it_and_nothing_is_left() {
    if !root_or_skip("an_address_another_host_holds_is_refused_naming_it_and_nothing_is_left") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    write_state(dir.path(), &[net("10.32.0.64/26")], VALID, None);
    let agent = FakeAgent::start(dir.path(), |_| Reply::Refused {
        reason: "address 10.2.0.5 is held by container web on host hostb".into(),
    });
    let c = Container::start("dup");
    let err = attach(&s, &c.state("10.2.0.5/24")).unwrap_err().to_string();
    assert!(
        err.contains("weave-mesh refused") && err.contains("host hostb"),
        "{err}"
    );
    assert_nothing_left(dir.path(), &c.id);
    // Nothing was claimed, so nothing is given back.
    assert_eq!(agent.requests(), vec![claim_addr("10.2.0.5", "dup")]);
}

#[test]
fn with_etcd_unreachable_an_unprovable_address_is_refused_and_blocks_still_serve() {
    if !root_or_skip(
        "with_etcd_unreachable_an_unprovable_address_is_refused_and_blocks_still_serve",
    ) {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let block = net("10.32.0.64/26");
    write_state(dir.path(), &[block], VALID, None);
    let _agent = FakeAgent::start(dir.path(), |_| Reply::Unreachable {
        reason: "no etcd member answered within 2 s".into(),
    });
    let c = Container::start("cut");
    let err = attach(&s, &c.state("10.2.0.5/24")).unwrap_err().to_string();
    assert!(
        err.contains("etcd is unreachable") && err.contains("10.2.0.5"),
        "{err}"
    );
    assert_nothing_left(dir.path(), &c.id);
    // The host's own block needs no etcd.
    let r = attach(&s, &c.state("net:default")).unwrap().unwrap();
    assert!(block.contains(&r.addrs[0].addr()));
}

#[test]
fn expired_blocks_are_refused_with_the_reason() {
    if !root_or_skip("expired_blocks_are_refused_with_the_reason") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    write_state(dir.path(), &[net("10.32.0.64/26")], -5_000, None);
    let agent = FakeAgent::start(dir.path(), |_| Reply::Ok);
    let c = Container::start("late");
    for cidr in ["net:default", "10.32.0.70/12"] {
        let err = attach(&s, &c.state(cidr)).unwrap_err().to_string();
        assert!(
            err.contains("no longer provably its own")
                && err.contains("not renewed its lease")
                && err.contains("weave-mesh run"),
            "{err}"
        );
        assert_nothing_left(dir.path(), &c.id);
    }
    assert!(agent.requests().is_empty());
}

#[test]
fn without_an_agent_a_claim_is_refused_naming_the_socket() {
    if !root_or_skip("without_an_agent_a_claim_is_refused_naming_the_socket") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    write_state(dir.path(), &[], VALID, None);
    let c = Container::start("alone");
    for cidr in ["net:default", "10.2.0.5/24"] {
        let err = attach(&s, &c.state(cidr)).unwrap_err().to_string();
        let socket = StateDir::new(dir.path()).mesh_socket();
        assert!(
            err.contains("not running")
                && err.contains(&socket.display().to_string())
                && err.contains("weave-mesh run"),
            "{err}"
        );
        assert_nothing_left(dir.path(), &c.id);
    }
}

#[test]
fn a_failed_attach_gives_its_claimed_addresses_back() {
    if !root_or_skip("a_failed_attach_gives_its_claimed_addresses_back") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    write_state(dir.path(), &[net("10.32.0.64/26")], VALID, None);
    // The second of two addresses is refused: the first, claimed, goes back.
    let agent = FakeAgent::start(dir.path(), |r| match r {
        Request::ClaimAddr { addr, .. } if *addr == Ipv4Addr::new(10, 3, 0, 5) => Reply::Refused {
            reason: "address 10.3.0.5 is held on host hostb".into(),
        },
        _ => Reply::Ok,
    });
    let c = Container::start("two");
    let err = attach(&s, &c.state("10.2.0.5/24 10.3.0.5/24")).unwrap_err();
    assert!(err.to_string().contains("hostb"), "{err}");
    assert_eq!(
        agent.requests(),
        vec![
            claim_addr("10.2.0.5", "two"),
            claim_addr("10.3.0.5", "two"),
            release_addr("10.2.0.5", "two")
        ]
    );
    assert_nothing_left(dir.path(), &c.id);
    drop(agent);
    // Wiring fails after the claim (a link of another program has the veth's name).
    let agent = FakeAgent::start(dir.path(), |_| Reply::Ok);
    let veth = host_veth_name(&c.id);
    sh(&format!("ip link add {veth} type veth peer name notours"));
    let err = attach(&s, &c.state("10.2.0.5/24")).unwrap_err();
    assert!(err.to_string().contains(&veth), "{err}");
    assert_eq!(
        agent.requests(),
        vec![
            claim_addr("10.2.0.5", "two"),
            release_addr("10.2.0.5", "two")
        ]
    );
    sh(&format!("ip link del {veth}"));
    assert_nothing_left(dir.path(), &c.id);
}

#[test]
fn the_overlay_mtu_applies_without_the_flag_and_the_flag_wins() {
    if !root_or_skip("the_overlay_mtu_applies_without_the_flag_and_the_flag_wins") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    write_state(dir.path(), &[net("10.32.0.64/26")], VALID, Some(1450));
    let c = Container::start("mtu");
    attach(&s, &c.state("net:default")).unwrap();
    assert!(sh("ip -o link show weave").contains("mtu 1450"));
    assert!(sh(&format!("ip -o link show {}", host_veth_name(&c.id))).contains("mtu 1450"));
    assert!(c.run("ip -o link show ethwe").contains("mtu 1450"));
    let flagged = Settings {
        mtu: Some(1400),
        ..settings(dir.path())
    };
    let d = Container::start("flag");
    attach(&flagged, &d.state("net:default")).unwrap();
    assert!(d.run("ip -o link show ethwe").contains("mtu 1400"));
}

#[test]
fn a_restarted_container_and_a_pods_second_container_need_no_claim() {
    if !root_or_skip("a_restarted_container_and_a_pods_second_container_need_no_claim") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let block = net("10.32.0.64/26");
    write_state(dir.path(), &[block], VALID, None);
    let agent = FakeAgent::start(dir.path(), |_| Reply::Ok);
    let first = Container::start("web");
    let before = attach(&s, &first.state("net:default")).unwrap().unwrap();
    let others: Vec<Container> = (0..10)
        .map(|i| {
            let o = Container::start(&format!("o{i}"));
            attach(&s, &o.state("net:default")).unwrap();
            o
        })
        .collect();
    drop(first);
    detach(&s, &ContainerId::parse("web").unwrap());
    let again = Container::start("web");
    let after = attach(&s, &again.state("net:default")).unwrap().unwrap();
    assert_eq!(before.addrs, after.addrs);
    assert!(agent.requests().is_empty(), "{:?}", agent.requests());
    // A pod: its first container's exact address is claimed once; the second joins.
    let pod = Container::start("pod-a");
    let child = Command::new("nsenter")
        .args(["-t", &pod.pid().to_string(), "-n", "sleep", "300"])
        .spawn()
        .unwrap();
    let ns = |pid: u32| fs::read_link(format!("/proc/{pid}/ns/net")).ok();
    while ns(child.id()) != ns(pod.pid() as u32) {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let member = Container {
        id: ContainerId::parse("pod-b").unwrap(),
        child,
    };
    attach(&s, &pod.state("10.2.0.9/24")).unwrap();
    let joined = attach(&s, &member.state("10.2.0.9/24")).unwrap().unwrap();
    assert_eq!(joined.addrs, vec![net("10.2.0.9/24")]);
    assert_eq!(agent.requests(), vec![claim_addr("10.2.0.9", "pod-a")]);
    drop(others);
}

#[test]
fn ps_names_the_host_of_each_container() {
    if !root_or_skip("ps_names_the_host_of_each_container") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    write_state(dir.path(), &[net("10.32.0.64/26")], VALID, None);
    let c = Container::start("local");
    attach(&s, &c.state("10.32.0.70/12")).unwrap();
    let peers = Peers {
        version: mesh::VERSION,
        peers: vec![],
        addrs: vec![HeldAddr {
            addr: addr("10.32.1.5"),
            host: "hostb".into(),
            container: "remote".into(),
        }],
    };
    fs::write(
        StateDir::new(dir.path()).mesh_peers(),
        serde_json::to_vec(&peers).unwrap(),
    )
    .unwrap();
    let veth = host_veth_name(&c.id);
    let mine = format!("hosta local {veth} 10.32.0.70/12\n");
    assert_eq!(hook_bin(dir.path(), &["ps"]), mine);
    assert_eq!(
        hook_bin(dir.path(), &["ps", "--all"]),
        format!("{mine}hostb remote - 10.32.1.5\n")
    );
}

#[test]
fn without_state_json_the_hook_is_the_single_host_hook() {
    if !root_or_skip("without_state_json_the_hook_is_the_single_host_hook") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    // An agent socket without a state: never asked.
    let agent = FakeAgent::start(dir.path(), |_| Reply::Refused {
        reason: "asked".into(),
    });
    let c = Container::start("single");
    let d = Container::start("other");
    let r = attach(&s, &c.state("10.2.0.5/24 net:10.9.0.0/24"))
        .unwrap()
        .unwrap();
    assert_eq!(r.addrs[0], net("10.2.0.5/24"));
    attach(&s, &d.state("net:default")).unwrap();
    assert!(agent.requests().is_empty());
    assert!(c.run("ip -o link show ethwe").contains("mtu 1500"));
    let ps = hook_bin(dir.path(), &["ps", "--all"]);
    let veth = host_veth_name(&c.id);
    assert!(
        ps.contains(&format!("single {veth} 10.2.0.5/24 10.9.0.")),
        "{ps}"
    );
    assert!(!ps.contains("hosta"), "{ps}");
}

#[test]
fn concurrent_first_attaches_on_a_new_host_share_the_blocks_claimed() {
    if !root_or_skip("concurrent_first_attaches_on_a_new_host_share_the_blocks_claimed") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    write_state(dir.path(), &[], VALID, None);
    // Each claim grants the next /27 of the default range.
    let granted = Arc::new(Mutex::new(Vec::<Ipv4Net>::new()));
    let agent = {
        let (dir, granted) = (dir.path().to_path_buf(), granted.clone());
        FakeAgent::start(dir.clone().as_path(), move |_| {
            let mut granted = granted.lock().unwrap();
            let block = mesh::blocks_of(net("10.32.0.0/12"), 27)
                .nth(granted.len())
                .unwrap();
            granted.push(block);
            write_state(&dir, &granted, VALID, None);
            Reply::Block { block }
        })
    };
    let containers: Vec<Container> = (0..16)
        .map(|i| Container::start(&format!("c{i}")))
        .collect();
    let addrs: Vec<Ipv4Addr> = std::thread::scope(|scope| {
        let handles: Vec<_> = containers
            .iter()
            .map(|c| {
                let s = s.clone();
                // Threads inherit the creating thread's namespaces, so all share this "host".
                scope.spawn(move || {
                    attach(&s, &c.state("net:default")).unwrap().unwrap().addrs[0].addr()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let distinct: std::collections::HashSet<_> = addrs.iter().collect();
    assert_eq!(distinct.len(), 16, "{addrs:?}");
    let granted = granted.lock().unwrap().clone();
    assert!(
        addrs.iter().all(|a| granted.iter().any(|b| b.contains(a))),
        "{addrs:?} outside {granted:?}"
    );
    // One asked; the others waited on the claim lock and found its block.
    assert_eq!(agent.requests().len(), 1, "{:?}", agent.requests());
}
