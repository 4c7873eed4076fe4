//! weave-mesh agents against real etcd (Debian's etcd, in a network namespace of the test's
//! own): registration, block and address claims, death and reclaim, rmhost, etcd outages.
//! The agents run `--no-overlay` here (the data path has tests of its own).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use weave_core::mesh::{self, Reply, Request};
use weave_e2e::etcd::EtcdCluster;
use weave_e2e::{root_or_skip, tool_or_skip};
use weave_mesh::cluster::Claim;

mod common;
use common::{cluster_of, ip, net, wait_for, AgentProc, BIN};

fn can_run(test: &str) -> bool {
    root_or_skip(test) && tool_or_skip(test, "etcd")
}

fn claim_block(agent: &AgentProc, subnet: &str) -> Reply {
    agent.ask(&Request::ClaimBlock {
        subnet: net(subnet),
    })
}

#[test]
fn an_agent_registers_and_a_second_of_the_same_name_is_refused() {
    if !can_run("an_agent_registers_and_a_second_of_the_same_name_is_refused") {
        return;
    }
    let etcd = EtcdCluster::start(1, false);
    let a = AgentProc::start(&etcd, "ha", "192.168.250.1");
    let check = cluster_of(&etcd);
    let view = etcd.run_in(|| check.snapshot().unwrap());
    assert_eq!(
        view.hosts["ha"].value.advertise,
        ip("192.168.250.1"),
        "{view:?}"
    );
    let state = a.state();
    assert_eq!(state.host, "ha");
    assert!(state.etcd_reachable);
    assert!(state.blocks_valid(mesh::boottime_ms()));
    let mode = |p: PathBuf| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
            & 0o777
    };
    assert_eq!(mode(a.layout().mesh_socket()), 0o600);
    assert_eq!(mode(a.layout().mesh_dir()), 0o700);

    // Same name, another underlay address: refused, naming the other agent's address.
    let mut b = AgentProc::spawn(&etcd, "ha", "192.168.250.2", None);
    let (ok, log) = b.wait_exit(Duration::from_secs(10));
    assert!(!ok, "{log}");
    assert!(
        log.contains("weave-mesh: host name \"ha\" is registered by another live agent (underlay address 192.168.250.1)"),
        "{log}"
    );
    assert!(!b.layout().mesh_socket().exists());
    assert!(
        !b.layout().mesh_state().exists(),
        "a refused start leaves nothing"
    );

    // Another block length than the network's: refused.
    let Reply::Block { .. } = claim_block(&a, "10.47.0.0/24") else {
        panic!()
    };
    let endpoints = etcd.endpoints().join(",");
    let mut p = AgentProc::spawn_with(
        etcd.netns(),
        &endpoints,
        "hp",
        "192.168.250.5",
        None,
        &["--no-overlay", "--block-prefix", "24"],
    );
    let (ok, log) = p.wait_exit(Duration::from_secs(10));
    assert!(
        !ok && log
            .contains("etcd holds blocks of /26 under this key prefix, and this agent claims /24"),
        "{log}"
    );

    // Same state directory: refused while the first answers on its socket.
    let mut c = AgentProc::spawn(&etcd, "hc", "192.168.250.3", None);
    c.wait_registered();
    let mut d = AgentProc::spawn(&etcd, "hd", "192.168.250.4", Some(a.state.clone()));
    let (ok, log) = d.wait_exit(Duration::from_secs(10));
    assert!(
        !ok && log.contains("another weave-mesh already serves"),
        "{log}"
    );
    assert!(
        a.layout().mesh_socket().exists(),
        "the live agent's socket stays"
    );
    // weave-hook reset refuses while an agent serves the state directory (it would put the
    // bridge back), and goes ahead once the agent has stopped. In etcd's namespace: the
    // test's own, where the bridge named here does not exist.
    let reset = |state: &std::path::Path| {
        std::process::Command::new("ip")
            .args(["netns", "exec", etcd.netns()])
            .arg(weave_e2e::bin("weave-hook"))
            .args(["--bridge", "wvtreset", "--state-dir"])
            .arg(state)
            .arg("reset")
            .output()
            .unwrap()
    };
    let refused = reset(&c.state);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && stderr.contains("weave-mesh serves this state directory")
            && stderr.contains("stop it first"),
        "{stderr}"
    );
    assert!(
        c.signal(libc::SIGTERM),
        "SIGTERM: exit status 0\n{}",
        c.log()
    );
    assert!(
        !c.layout().mesh_socket().exists(),
        "SIGTERM removes the socket"
    );
    let done = reset(&c.state);
    assert!(
        done.status.success(),
        "reset after the agent stopped: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(c.layout().mesh_state().exists(), "and keeps state.json");
    // A stopped agent keeps its registration until the lease expires.
    let view = etcd.run_in(|| check.snapshot().unwrap());
    assert!(view.hosts.contains_key("hc"));
}

#[test]
fn concurrent_block_claims_never_give_one_block_twice() {
    if !can_run("concurrent_block_claims_never_give_one_block_twice") {
        return;
    }
    let etcd = EtcdCluster::start(1, false);
    // Through two agents' sockets: 2 x 8 claims on a subnet of 8 blocks.
    let a = Arc::new(AgentProc::start(&etcd, "ha", "192.168.250.1"));
    let b = Arc::new(AgentProc::start(&etcd, "hb", "192.168.250.2"));
    let replies: Vec<Reply> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let agent = if i % 2 == 0 { a.clone() } else { b.clone() };
                s.spawn(move || claim_block(&agent, "10.44.0.0/23"))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut blocks: Vec<Ipv4Net> = replies
        .iter()
        .filter_map(|r| match r {
            Reply::Block { block } => Some(*block),
            _ => None,
        })
        .collect();
    let refused = replies
        .iter()
        .filter(|r| matches!(r, Reply::Refused { reason } if reason.contains("no free block")))
        .count();
    blocks.sort();
    let before = blocks.len();
    blocks.dedup();
    assert_eq!((before, blocks.len(), refused), (8, 8, 8), "{replies:?}");
    let (sa, sb) = (a.state().blocks, b.state().blocks);
    assert_eq!(sa.len() + sb.len(), 8);
    assert!(sa.iter().all(|x| !sb.contains(x)), "{sa:?} {sb:?}");

    // Straight at etcd: 16 hosts racing for 4 blocks, 4 claims each.
    let check = cluster_of(&etcd);
    let granted: Vec<(String, Ipv4Net)> = etcd.run_in(|| {
        for h in 0..16 {
            check
                .register(
                    &format!("r{h}"),
                    ip(&format!("192.168.249.{}", h + 1)),
                    30,
                    0,
                )
                .unwrap();
        }
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..64)
                .map(|i| {
                    let (check, host) = (check.clone(), format!("r{}", i % 16));
                    s.spawn(
                        move || match check.claim_block(&host, net("10.45.0.0/24")).unwrap() {
                            Claim::Granted((block, _)) => Some((host, block)),
                            Claim::Refused(_) => None,
                        },
                    )
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().unwrap())
                .collect()
        })
    });
    let mut only_blocks: Vec<Ipv4Net> = granted.iter().map(|(_, b)| *b).collect();
    only_blocks.sort();
    only_blocks.dedup();
    assert_eq!((granted.len(), only_blocks.len()), (4, 4), "{granted:?}");
    let view = etcd.run_in(|| check.snapshot().unwrap());
    for (host, block) in &granted {
        assert_eq!(&view.blocks[block].value, host);
    }
}

#[test]
fn an_address_held_on_one_host_is_refused_on_another_naming_it() {
    if !can_run("an_address_held_on_one_host_is_refused_on_another_naming_it") {
        return;
    }
    let etcd = EtcdCluster::start(1, false);
    let a = AgentProc::start(&etcd, "ha", "192.168.250.1");
    let b = AgentProc::start(&etcd, "hb", "192.168.250.2");
    let claim = |agent: &AgentProc, addr: &str, id: &str| {
        agent.ask(&Request::ClaimAddr {
            addr: ip(addr),
            id: id.into(),
        })
    };
    // Outside every block: the first claim wins, the other host is refused naming it.
    assert_eq!(claim(&a, "10.2.0.5", "ctr-a"), Reply::Ok);
    assert_eq!(claim(&a, "10.2.0.5", "ctr-a"), Reply::Ok, "idempotent");
    match claim(&b, "10.2.0.5", "ctr-b") {
        Reply::Refused { reason } => assert!(
            reason.contains("in use by container ctr-a on host ha"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    // Inside a block of A's: refused on B, naming A.
    let Reply::Block { block } = claim_block(&a, "10.46.0.0/24") else {
        panic!()
    };
    let inside = Ipv4Addr::from(u32::from(block.network()) + 9).to_string();
    match claim(&b, &inside, "ctr-b") {
        Reply::Refused { reason } => {
            assert!(reason.contains("belongs to host ha"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // A block holding another host's address is never claimed: 10.2.0.0/26 holds A's.
    match claim_block(&b, "10.2.0.0/26") {
        Reply::Refused { reason } => assert!(reason.contains("no free block"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // A bad container id is refused.
    assert!(matches!(
        claim(&b, "10.2.0.6", "../x"),
        Reply::Refused { .. }
    ));
    // Released: free for B.
    let release = Request::ReleaseAddr {
        addr: ip("10.2.0.5"),
        id: "ctr-a".into(),
    };
    assert_eq!(a.ask(&release), Reply::Ok);
    assert_eq!(claim(&b, "10.2.0.5", "ctr-b"), Reply::Ok);

    // The hook's store on A is published, and taken back when the file goes.
    let store = a.layout();
    std::fs::create_dir_all(store.addrs_dir()).unwrap();
    std::fs::write(store.addr(ip(&inside)), "ctr-local").unwrap();
    let check = cluster_of(&etcd);
    let held = |addr: &str| {
        etcd.run_in(|| check.snapshot().unwrap())
            .addrs
            .get(&ip(addr))
            .map(|a| (a.value.host.clone(), a.value.container.clone()))
    };
    wait_for("publication", Duration::from_secs(5), || {
        held(&inside) == Some(("ha".into(), "ctr-local".into()))
    });
    std::fs::remove_file(store.addr(ip(&inside))).unwrap();
    wait_for("withdrawal", Duration::from_secs(5), || {
        held(&inside).is_none()
    });
    // B's own claim is not taken back by its publisher (pending for the hook's store).
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(held("10.2.0.5"), Some(("hb".into(), "ctr-b".into())));
    let peers = weave_core::mesh::Peers::read(&a.layout());
    assert_eq!(peers.peers.len(), 1, "{peers:?}");
    assert_eq!(peers.peers[0].name, "hb");
    assert!(peers
        .addrs
        .iter()
        .any(|h| h.host == "hb" && h.addr == ip("10.2.0.5")));
}

#[test]
fn a_killed_host_leaves_and_its_blocks_are_reclaimed_once_after_the_grace() {
    if !can_run("a_killed_host_leaves_and_its_blocks_are_reclaimed_once_after_the_grace") {
        return;
    }
    let etcd = EtcdCluster::start(1, false);
    let mut a = AgentProc::start(&etcd, "ha", "192.168.250.1");
    let b = AgentProc::start(&etcd, "hb", "192.168.250.2");
    let c = AgentProc::start(&etcd, "hc", "192.168.250.3");
    // A host with a longer grace of its own is reclaimed only after it.
    let endpoints = etcd.endpoints().join(",");
    let flags = ["--no-overlay", "--reclaim-after", "7"];
    let mut l = AgentProc::spawn_with(
        etcd.netns(),
        &endpoints,
        "hl",
        "192.168.250.4",
        None,
        &flags,
    );
    l.wait_registered();
    assert_eq!(
        claim_block(&l, "10.62.0.0/26"),
        Reply::Block {
            block: net("10.62.0.0/26")
        }
    );
    assert_eq!(
        claim_block(&a, "10.60.0.0/26"),
        Reply::Block {
            block: net("10.60.0.0/26")
        }
    );
    assert_eq!(
        a.ask(&Request::ClaimAddr {
            addr: ip("10.61.0.7"),
            id: "ctr-a".into()
        }),
        Reply::Ok
    );
    let check = cluster_of(&etcd);
    let view = || etcd.run_in(|| check.snapshot().unwrap());
    wait_for("B sees A", Duration::from_secs(5), || {
        weave_core::mesh::Peers::read(&b.layout())
            .peers
            .iter()
            .any(|p| p.name == "ha" && p.alive)
    });
    let _ = a.signal(libc::SIGKILL);
    let _ = l.signal(libc::SIGKILL);
    let gone = wait_for("A's host key expiring", Duration::from_secs(2 + 3), || {
        !view().hosts.contains_key("ha")
    });
    eprintln!("A's registration vanished {gone:?} after SIGKILL (lease TTL 2 s)");
    let v = view();
    assert!(
        v.blocks.contains_key(&net("10.60.0.0/26")),
        "reclaimed before the grace"
    );
    let reclaimed = wait_for("reclaim of A", Duration::from_secs(3 + 5), || {
        let v = view();
        !v.blocks.contains_key(&net("10.60.0.0/26")) && !v.addrs.contains_key(&ip("10.61.0.7"))
    });
    eprintln!("A's block and address reclaimed {reclaimed:?} after its key vanished (grace 3 s)");
    assert!(reclaimed >= Duration::from_millis(2500), "{reclaimed:?}");
    assert!(
        view().blocks.contains_key(&net("10.62.0.0/26")),
        "a host with a 7 s grace reclaimed after 3 s"
    );
    let long = reclaimed
        + wait_for("reclaim of L", Duration::from_secs(4 + 5), || {
            !view().blocks.contains_key(&net("10.62.0.0/26"))
        });
    eprintln!("L's block (grace 7 s, the others' 3 s) reclaimed {long:?} after A's key vanished");
    assert!(long >= Duration::from_millis(6500), "{long:?}");
    // Exactly one of B and C gets the freed block.
    let replies: Vec<Reply> = std::thread::scope(|s| {
        let hb = s.spawn(|| claim_block(&b, "10.60.0.0/26"));
        let hc = s.spawn(|| claim_block(&c, "10.60.0.0/26"));
        vec![hb.join().unwrap(), hc.join().unwrap()]
    });
    let won = replies
        .iter()
        .filter(|r| matches!(r, Reply::Block { .. }))
        .count();
    assert_eq!(won, 1, "{replies:?}");
    // And A's address is free for another host.
    assert_eq!(
        c.ask(&Request::ClaimAddr {
            addr: ip("10.61.0.7"),
            id: "ctr-c".into()
        }),
        Reply::Ok
    );
    // peers.json on B no longer lists A as alive.
    wait_for("B forgets A", Duration::from_secs(3), || {
        !weave_core::mesh::Peers::read(&b.layout())
            .peers
            .iter()
            .any(|p| p.name == "ha")
    });
}

fn rmhost(etcd: &EtcdCluster, host: &str, force: bool) -> (bool, String) {
    let mut cmd = etcd.command(BIN);
    cmd.arg("--etcd")
        .arg(etcd.endpoints().join(","))
        .args(["rmhost", host]);
    if force {
        cmd.arg("--force");
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn rmhost_frees_a_host_at_once_and_twice_is_fine() {
    if !can_run("rmhost_frees_a_host_at_once_and_twice_is_fine") {
        return;
    }
    let etcd = EtcdCluster::start(1, false);
    let a = AgentProc::start(&etcd, "ha", "192.168.250.1");
    let b = AgentProc::start(&etcd, "hb", "192.168.250.2");
    let Reply::Block { block } = claim_block(&a, "10.70.0.0/24") else {
        panic!()
    };
    assert_eq!(a.state().blocks, vec![block]);
    let (ok, out) = rmhost(&etcd, "ha", false);
    assert!(
        !ok && out.contains("weave-mesh: host \"ha\" is alive"),
        "{out}"
    );
    let (ok, out) = rmhost(&etcd, "ha", true);
    assert!(ok && out.contains("removed 1 block(s)"), "{out}");
    let (ok, out) = rmhost(&etcd, "ha", true);
    assert!(ok && out.contains("nothing left to remove"), "{out}");
    let (ok, out) = rmhost(&etcd, "never-was", false);
    assert!(ok && out.contains("nothing left to remove"), "{out}");
    // A's agent registers again and never hands out the block it lost.
    wait_for("A dropping its lost block", Duration::from_secs(5), || {
        a.state().blocks.is_empty()
    });
    assert!(a.log().contains("no longer this host's"), "{}", a.log());
    let check = cluster_of(&etcd);
    wait_for("A registered again", Duration::from_secs(5), || {
        etcd.run_in(|| check.snapshot().unwrap())
            .hosts
            .contains_key("ha")
    });
    // The block is free: B gets it.
    assert_eq!(claim_block(&b, &block.to_string()), Reply::Block { block });
    let out = run_status(&etcd);
    assert!(
        out.contains("hb") && out.contains(&block.to_string()),
        "{out}"
    );
}

fn run_status(etcd: &EtcdCluster) -> String {
    let out = etcd
        .command(BIN)
        .arg("--etcd")
        .arg(etcd.endpoints().join(","))
        .arg("status")
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn etcd_down_answers_unreachable_and_the_agent_recovers_without_a_restart() {
    if !can_run("etcd_down_answers_unreachable_and_the_agent_recovers_without_a_restart") {
        return;
    }
    let mut etcd = EtcdCluster::start(1, false);
    let mut a = AgentProc::start(&etcd, "ha", "192.168.250.1");
    let Reply::Block { block } = claim_block(&a, "10.80.0.0/24") else {
        panic!()
    };
    etcd.stop_all();
    let start = Instant::now();
    match claim_block(&a, "10.80.0.0/24") {
        Reply::Unreachable { reason } => {
            assert!(reason.contains("etcd is unreachable"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    match a.ask(&Request::ClaimAddr {
        addr: ip("10.3.0.1"),
        id: "c1".into(),
    }) {
        Reply::Unreachable { reason } => {
            assert!(reason.contains("etcd is unreachable"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    eprintln!("two refusals with etcd down took {:?}", start.elapsed());
    // An agent started while etcd is down serves its socket, refuses claims, waits, and
    // stops on SIGTERM.
    let mut z = AgentProc::spawn(&etcd, "hz", "192.168.250.9", None);
    z.wait_serving();
    match claim_block(&z, "10.81.0.0/24") {
        Reply::Unreachable { reason } => {
            assert!(reason.contains("etcd is unreachable"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(z.signal(libc::SIGTERM), "{}", z.log());
    assert!(z.log().contains("etcd is unreachable"), "{}", z.log());
    wait_for(
        "state.json saying etcd is unreachable",
        Duration::from_secs(5),
        || !a.state().etcd_reachable,
    );
    // The blocks stay listed; their validity lapses on its own.
    assert_eq!(a.state().blocks, vec![block]);
    // Restarted while etcd is down, the agent keeps what its previous run wrote.
    assert!(a.signal(libc::SIGTERM), "{}", a.log());
    let valid_until = a.state().valid_until_ms;
    let a = AgentProc::spawn(&etcd, "ha", "192.168.250.1", Some(a.state.clone()));
    a.wait_serving();
    assert_eq!(a.state().blocks, vec![block]);
    assert_eq!(a.state().valid_until_ms, valid_until);
    etcd.restart_all();
    let back = wait_for("recovery", Duration::from_secs(15), || {
        a.state().etcd_reachable && a.state().blocks_valid(mesh::boottime_ms())
    });
    eprintln!("the agent recovered {back:?} after etcd was healthy again");
    // etcd, just back, may still turn a request away (a loaded machine): the claim is
    // retried for a few seconds while it says so, never after anything else.
    let mut reply = claim_block(&a, "10.80.0.0/24");
    let deadline = Instant::now() + Duration::from_secs(10);
    while matches!(reply, Reply::Unreachable { .. }) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        reply = claim_block(&a, "10.80.0.0/24");
    }
    assert!(
        matches!(reply, Reply::Block { .. }),
        "{reply:?}\n{}",
        a.log()
    );
    assert!(a.state().blocks.contains(&block));
}

#[test]
fn the_agent_and_status_speak_tls_with_the_client_certificate() {
    if !can_run("the_agent_and_status_speak_tls_with_the_client_certificate") {
        return;
    }
    let etcd = EtcdCluster::start(1, true);
    let (ca, cert, key) = etcd.client_tls();
    let tls_flags = |cmd: &mut std::process::Command| {
        cmd.arg("--etcd-cacert")
            .arg(&ca)
            .arg("--etcd-cert")
            .arg(&cert)
            .arg("--etcd-key")
            .arg(&key);
    };
    let mut status = etcd.command(BIN);
    status.arg("--etcd").arg(etcd.endpoints().join(","));
    tls_flags(&mut status);
    let out = status.arg("status").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the client certificate: refused, with a line that says so.
    let out = etcd
        .command(BIN)
        .arg("--etcd")
        .arg(etcd.endpoints().join(","))
        .arg("--etcd-cacert")
        .arg(&ca)
        .arg("status")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.starts_with("weave-mesh: "),
        "{err}"
    );
    // An agent over TLS registers and claims.
    let endpoints = etcd.endpoints().join(",");
    let flags = [
        "--no-overlay".to_string(),
        "--etcd-cacert".into(),
        ca.display().to_string(),
        "--etcd-cert".into(),
        cert.display().to_string(),
        "--etcd-key".into(),
        key.display().to_string(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let a = AgentProc::spawn_with(
        etcd.netns(),
        &endpoints,
        "ha",
        "192.168.250.1",
        None,
        &flags,
    );
    a.wait_registered();
    let reply = claim_block(&a, "10.90.0.0/24");
    assert!(matches!(reply, Reply::Block { .. }), "{reply:?}");
}

#[test]
fn one_etcd_member_killed_goes_unnoticed() {
    if !can_run("one_etcd_member_killed_goes_unnoticed") {
        return;
    }
    let mut etcd = EtcdCluster::start(3, false);
    let a = AgentProc::start(&etcd, "ha", "192.168.250.1");
    assert!(matches!(
        claim_block(&a, "10.91.0.0/24"),
        Reply::Block { .. }
    ));
    // The member every client tries first (and A's watch most likely uses).
    etcd.kill_member(0);
    let b = AgentProc::start(&etcd, "hb", "192.168.250.2");
    wait_for("A's peers.json listing B", Duration::from_secs(10), || {
        weave_core::mesh::Peers::read(&a.layout())
            .peers
            .iter()
            .any(|p| p.name == "hb" && p.alive)
    });
    let reply = claim_block(&a, "10.91.0.0/24");
    assert!(matches!(reply, Reply::Block { .. }), "{reply:?}");
    assert!(matches!(
        claim_block(&b, "10.91.0.0/24"),
        Reply::Block { .. }
    ));
    std::thread::sleep(Duration::from_secs(3));
    let state = a.state();
    assert!(state.etcd_reachable && state.blocks_valid(mesh::boottime_ms()));
    assert_eq!(state.blocks.len(), 2);
}

#[test]
fn a_host_claims_no_more_blocks_than_max_blocks() {
    if !can_run("a_host_claims_no_more_blocks_than_max_blocks") {
        return;
    }
    let etcd = EtcdCluster::start(1, false);
    let agent = AgentProc::spawn_with(
        etcd.netns(),
        &etcd.endpoints().join(","),
        "capped",
        "192.168.250.1",
        None,
        &["--no-overlay", "--max-blocks", "2"],
    );
    agent.wait_registered();
    // Annotations choose the subnets: each new one would cost a block.
    let replies: Vec<Reply> = ["10.46.0.0/24", "10.46.1.0/24", "10.46.2.0/24"]
        .iter()
        .map(|s| claim_block(&agent, s))
        .collect();
    assert!(matches!(replies[0], Reply::Block { .. }), "{replies:?}");
    assert!(matches!(replies[1], Reply::Block { .. }), "{replies:?}");
    match &replies[2] {
        Reply::Refused { reason } => assert!(
            reason.contains("capped owns 2 blocks already") && reason.contains("--max-blocks"),
            "{reason}"
        ),
        other => panic!("a third block was not refused: {other:?}"),
    }
    assert_eq!(agent.state().blocks.len(), 2);
    let view = etcd.run_in(|| cluster_of(&etcd).snapshot().unwrap());
    assert_eq!(
        view.blocks.len(),
        2,
        "nothing claimed in etcd for the refusal"
    );
}
