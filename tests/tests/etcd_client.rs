//! weave-mesh's etcd client against real etcd members (tests/src/etcd.rs): key-value
//! operations, a transaction race, leases, watches, failover between members, an unreachable
//! cluster, and TLS with client certificates. The client runs on a thread inside the
//! cluster's own network namespace.

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use weave_e2e::etcd::EtcdCluster;
use weave_mesh::etcd::{
    prefix_end, Cmp, Compare, Etcd, EtcdConfig, EtcdError, EventKind, Op, OpResponse,
};

const TIMEOUT: Duration = Duration::from_secs(2);

fn ready(test: &str) -> bool {
    weave_e2e::root_or_skip(test)
        && weave_e2e::tool_or_skip(test, "etcd")
        && weave_e2e::tool_or_skip(test, "etcdctl")
        && weave_e2e::tool_or_skip(test, "openssl")
}

fn config(endpoints: Vec<String>) -> EtcdConfig {
    EtcdConfig {
        endpoints,
        cacert: None,
        cert: None,
        key: None,
        timeout: TIMEOUT,
    }
}

fn client(cluster: &EtcdCluster) -> Etcd {
    Etcd::connect(&config(cluster.endpoints())).unwrap()
}

fn keys(kvs: &[weave_mesh::etcd::Kv]) -> Vec<String> {
    kvs.iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

#[test]
fn put_get_range_delete() {
    if !ready("put_get_range_delete") {
        return;
    }
    let cluster = EtcdCluster::start(1, false);
    cluster.run_in(|| {
        let etcd = client(&cluster);
        assert_eq!(etcd.get(b"/t/none").unwrap(), None);
        let r1 = etcd.put(b"/t/a", b"1", None).unwrap();
        let r2 = etcd.put(b"/t/b", b"", None).unwrap();
        let r3 = etcd.put(b"/t/c\xff", &[0, 255, 7], None).unwrap();
        etcd.put(b"/u", b"other prefix", None).unwrap();
        assert!(r1 < r2 && r2 < r3, "revisions {r1} {r2} {r3}");

        let a = etcd.get(b"/t/a").unwrap().unwrap();
        assert_eq!(
            (a.value.as_slice(), a.create_revision, a.mod_revision),
            (&b"1"[..], r1, r1)
        );
        assert_eq!((a.version, a.lease), (1, 0));
        let b = etcd.get(b"/t/b").unwrap().unwrap();
        assert!(b.value.is_empty(), "an empty value stays empty");
        let r4 = etcd.put(b"/t/a", b"2", None).unwrap();
        let a = etcd.get(b"/t/a").unwrap().unwrap();
        assert_eq!(
            (
                a.value.as_slice(),
                a.create_revision,
                a.mod_revision,
                a.version
            ),
            (&b"2"[..], r1, r4, 2)
        );

        let range = etcd.range(b"/t/", Some(&prefix_end(b"/t/"))).unwrap();
        assert_eq!(keys(&range.kvs), ["/t/a", "/t/b", "/t/c\u{fffd}"]);
        assert_eq!(range.kvs[2].value, [0, 255, 7]);
        assert_eq!(range.revision, etcd.put(b"/x", b"", None).unwrap() - 1);

        assert_eq!(etcd.delete(b"/t/none", None).unwrap(), 0);
        assert_eq!(etcd.delete(b"/t/", Some(&prefix_end(b"/t/"))).unwrap(), 3);
        assert!(etcd
            .range(b"/t/", Some(&prefix_end(b"/t/")))
            .unwrap()
            .kvs
            .is_empty());
        assert!(etcd.get(b"/u").unwrap().is_some());
    });
}

#[test]
fn txn_create_if_absent_is_won_by_exactly_one_of_8() {
    if !ready("txn_create_if_absent_is_won_by_exactly_one_of_8") {
        return;
    }
    let cluster = EtcdCluster::start(1, false);
    cluster.run_in(|| {
        let etcd = client(&cluster);
        let start = Arc::new(Barrier::new(8));
        let key = b"/blocks/10.32.0.0-26".to_vec();
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (etcd, start, key) = (etcd.clone(), start.clone(), key.clone());
                std::thread::spawn(move || {
                    let me = format!("host{i}").into_bytes();
                    start.wait();
                    let r = etcd
                        .txn(
                            &[Compare::CreateRevision {
                                key: key.clone(),
                                op: Cmp::Equal,
                                value: 0,
                            }],
                            &[Op::Put {
                                key: key.clone(),
                                value: me.clone(),
                                lease: None,
                            }],
                            &[Op::Range {
                                key: key.clone(),
                                range_end: None,
                            }],
                        )
                        .unwrap();
                    (me, r)
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners: Vec<_> = results.iter().filter(|(_, r)| r.succeeded).collect();
        assert_eq!(winners.len(), 1, "exactly one txn wins: {results:?}");
        let winner = &winners[0].0;
        assert!(matches!(
            winners[0].1.responses[..],
            [OpResponse::Put { .. }]
        ));
        for (_, r) in results.iter().filter(|(_, r)| !r.succeeded) {
            assert_eq!(
                &r.first_range_kvs()[0].value,
                winner,
                "a loser sees the winner"
            );
        }
        assert_eq!(&etcd.get(&key).unwrap().unwrap().value, winner);

        // Compare on value and version, and a failing compare running the failure ops.
        let kv = etcd.get(&key).unwrap().unwrap();
        let r = etcd
            .txn(
                &[
                    Compare::Value {
                        key: key.clone(),
                        op: Cmp::Equal,
                        value: winner.clone(),
                    },
                    Compare::Version {
                        key: key.clone(),
                        op: Cmp::Equal,
                        value: 1,
                    },
                    Compare::ModRevision {
                        key: key.clone(),
                        op: Cmp::Equal,
                        value: kv.mod_revision,
                    },
                ],
                &[Op::Delete {
                    key: key.clone(),
                    range_end: None,
                }],
                &[],
            )
            .unwrap();
        assert!(r.succeeded);
        assert_eq!(r.responses, [OpResponse::Delete { deleted: 1 }]);
        let r = etcd
            .txn(
                &[Compare::Version {
                    key: key.clone(),
                    op: Cmp::Greater,
                    value: 0,
                }],
                &[],
                &[Op::Range {
                    key: key.clone(),
                    range_end: None,
                }],
            )
            .unwrap();
        assert!(!r.succeeded && r.first_range_kvs().is_empty());
    });
}

#[test]
fn lease_keepalive_revoke_and_expiry() {
    if !ready("lease_keepalive_revoke_and_expiry") {
        return;
    }
    let cluster = EtcdCluster::start(1, false);
    cluster.run_in(|| {
        let etcd = client(&cluster);
        let lease = etcd.lease_grant(5).unwrap();
        etcd.put(b"/hosts/a", b"up", Some(lease)).unwrap();
        assert_eq!(etcd.get(b"/hosts/a").unwrap().unwrap().lease, lease);
        for _ in 0..3 {
            let ttl = etcd.lease_keepalive(lease).unwrap();
            assert!(
                matches!(ttl, Some(4..=5)),
                "keepalive gives the TTL again: {ttl:?}"
            );
        }
        etcd.lease_revoke(lease).unwrap();
        assert_eq!(
            etcd.get(b"/hosts/a").unwrap(),
            None,
            "revoking deletes the lease's keys"
        );
        assert_eq!(
            etcd.lease_keepalive(lease).unwrap(),
            None,
            "a revoked lease is gone"
        );
        etcd.lease_revoke(lease).unwrap(); // twice is fine
        let e = etcd.put(b"/hosts/a", b"up", Some(lease)).unwrap_err();
        assert!(matches!(e, EtcdError::Rejected { .. }), "{e}");
        assert!(e.to_string().contains("lease not found"), "{e}");

        // Without keepalives the key goes when the TTL runs out.
        let lease = etcd.lease_grant(2).unwrap();
        etcd.put(b"/hosts/b", b"up", Some(lease)).unwrap();
        let granted = Instant::now();
        while etcd.get(b"/hosts/b").unwrap().is_some() {
            assert!(
                granted.elapsed() < Duration::from_secs(6),
                "the key outlives its lease"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let gone = granted.elapsed();
        eprintln!("a 2 s lease's key vanished after {gone:?}");
        assert!(
            gone >= Duration::from_millis(1500),
            "gone too early: {gone:?}"
        );
        assert_eq!(etcd.lease_keepalive(lease).unwrap(), None);
    });
}

/// A TCP relay on 127.0.0.1 to `target` that counts the connections it accepts. Its threads
/// end with the test process.
fn counting_relay(target: SocketAddr) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            count.fetch_add(1, Ordering::SeqCst);
            let Ok(server) = TcpStream::connect(target) else {
                continue;
            };
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            for (mut from, mut to) in [(client, s2), (server, c2)] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(Shutdown::Write);
                });
            }
        }
    });
    (port, accepted)
}

#[test]
fn renewals_and_requests_share_one_connection() {
    if !ready("renewals_and_requests_share_one_connection") {
        return;
    }
    let cluster = EtcdCluster::start(1, false);
    cluster.run_in(|| {
        let member: SocketAddr = cluster.endpoints()[0]
            .trim_start_matches("http://")
            .parse()
            .unwrap();
        let (port, accepted) = counting_relay(member);
        let etcd = Etcd::connect(&config(vec![format!("http://127.0.0.1:{port}")])).unwrap();
        let lease = etcd.lease_grant(30).unwrap();
        for n in 0..5 {
            let ttl = etcd.lease_keepalive(lease).unwrap();
            assert!(matches!(ttl, Some(29..=30)), "renewal {n}: {ttl:?}");
            etcd.put(b"/conn/k", n.to_string().as_bytes(), Some(lease))
                .unwrap();
            assert_eq!(
                etcd.get(b"/conn/k").unwrap().unwrap().value,
                n.to_string().as_bytes()
            );
        }
        // A renewal that read only its answer left the rest of the stream unread, and the
        // connection was closed: one connection per renewal.
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "5 renewals, 5 puts and 5 gets over one kept-alive connection"
        );
    });
}

#[test]
fn watch_sees_changes_in_order_and_resumes() {
    if !ready("watch_sees_changes_in_order_and_resumes") {
        return;
    }
    let cluster = EtcdCluster::start(1, false);
    cluster.run_in(|| {
        let etcd = client(&cluster);
        let base = etcd.put(b"/w/before", b"0", None).unwrap();
        let end = prefix_end(b"/w/");
        let mut watch = etcd.watch(b"/w/", Some(&end), base + 1).unwrap();
        let writer = etcd.clone();
        let wrote = std::thread::spawn(move || {
            let mut revs = vec![writer.put(b"/w/a", b"1", None).unwrap()];
            revs.push(writer.put(b"/w/a", b"2", None).unwrap());
            revs.push(writer.put(b"/other", b"x", None).unwrap());
            revs.push(writer.put(b"/w/b", b"3", None).unwrap());
            writer.delete(b"/w/a", None).unwrap();
            revs
        })
        .join()
        .unwrap();
        let mut seen = Vec::new();
        while seen.len() < 4 {
            let batch = watch.next().unwrap().unwrap();
            for e in batch.events {
                assert!(e.kv.mod_revision <= batch.revision);
                seen.push((e.kind, e.kv.key, e.kv.value, e.kv.mod_revision, e.prev.map(|p| p.value)));
            }
        }
        let delete_rev = wrote[3] + 1;
        assert_eq!(
            seen,
            [
                (EventKind::Put, b"/w/a".to_vec(), b"1".to_vec(), wrote[0], None),
                (EventKind::Put, b"/w/a".to_vec(), b"2".to_vec(), wrote[1], Some(b"1".to_vec())),
                (EventKind::Put, b"/w/b".to_vec(), b"3".to_vec(), wrote[3], None),
                (EventKind::Delete, b"/w/a".to_vec(), vec![], delete_rev, Some(b"2".to_vec())),
            ]
        );

        // Resuming from a revision replays what came after it.
        let mut again = etcd.watch(b"/w/", Some(&end), wrote[3]).unwrap();
        let replay: Vec<_> = (0..2)
            .flat_map(|_| again.next().unwrap().unwrap().events)
            .take(2)
            .map(|e| (e.kind, e.kv.mod_revision))
            .collect();
        assert_eq!(replay, [(EventKind::Put, wrote[3]), (EventKind::Delete, delete_rev)]);

        // Once etcd compacted past the start, the watch says so.
        etcd.compact(delete_rev).unwrap();
        let e = match etcd.watch(b"/w/", Some(&end), base) {
            Err(e) => e,
            Ok(mut w) => w.next().unwrap().unwrap_err(),
        };
        assert!(
            matches!(e, EtcdError::Compacted { compact_revision } if compact_revision == delete_rev),
            "{e:?}"
        );
    });
}

#[test]
fn failover_to_live_members_then_unreachable_quickly() {
    if !ready("failover_to_live_members_then_unreachable_quickly") {
        return;
    }
    let mut cluster = EtcdCluster::start(3, false);
    let started = Instant::now();
    let etcd = cluster.run_in(|| {
        let etcd = client(&cluster);
        etcd.put(b"/f/k", b"v", None).unwrap();
        etcd
    });
    eprintln!(
        "3-member cluster healthy; first put done {:?} later",
        started.elapsed()
    );

    // A watch served by member 0 breaks when member 0 dies, and says so.
    let watch = cluster.run_in(|| {
        let only0 = Etcd::connect(&config(vec![cluster.endpoint(0)])).unwrap();
        only0.watch(b"/f/", Some(&prefix_end(b"/f/")), 0).unwrap()
    });
    cluster.kill_member(0);
    let broke = std::thread::spawn(move || watch.into_iter().next());
    let e = broke.join().unwrap().unwrap().unwrap_err();
    assert!(e.is_unreachable(), "{e:?}");

    cluster.run_in(|| {
        let t = Instant::now();
        // A put in flight while the others elect a new leader may wait for the timeout on one
        // member; the client then sends it to the next.
        etcd.put(b"/f/first", b"x", None).unwrap();
        let first = t.elapsed();
        assert!(first < TIMEOUT * 3, "first put after {first:?}");
        for i in 0..20 {
            etcd.put(format!("/f/{i}").as_bytes(), b"x", None).unwrap();
            assert_eq!(etcd.get(b"/f/k").unwrap().unwrap().value, b"v");
        }
        let lease = etcd.lease_grant(10).unwrap();
        assert!(etcd.lease_keepalive(lease).unwrap().is_some());
        let mut w = etcd.watch(b"/f/", Some(&prefix_end(b"/f/")), 1).unwrap();
        assert!(!w.next().unwrap().unwrap().events.is_empty());
        eprintln!(
            "with member 0 killed: first put after {first:?}; then 20 puts+gets, a lease, a watch in {:?}",
            t.elapsed() - first
        );
    });

    cluster.stop_all();
    cluster.run_in(|| {
        let t = Instant::now();
        let e = etcd.get(b"/f/k").unwrap_err();
        let took = t.elapsed();
        eprintln!("all members stopped: {e} (after {took:?})");
        assert!(e.is_unreachable(), "{e:?}");
        assert!(e.to_string().starts_with("etcd is unreachable"), "{e}");
        assert!(took < TIMEOUT * 3, "unreachable only after {took:?}");
        assert!(etcd.put(b"/f/k", b"w", None).unwrap_err().is_unreachable());
        assert!(etcd.watch(b"/f/", None, 0).unwrap_err().is_unreachable());
    });

    cluster.restart_all();
    cluster.run_in(|| {
        assert_eq!(
            etcd.get(b"/f/k").unwrap().unwrap().value,
            b"v",
            "data survives a restart"
        );
    });
}

#[test]
fn unanswering_endpoint_is_bounded_by_the_timeout() {
    if !ready("unanswering_endpoint_is_bounded_by_the_timeout") {
        return;
    }
    let cluster = EtcdCluster::start(1, false);
    cluster.run_in(|| {
        // A listener that accepts and never answers stands for a hung member; the client
        // gives up on it within the timeout and moves on to the live one.
        let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let hung_url = format!("http://{}", hung.local_addr().unwrap());
        let etcd = Etcd::connect(&config(vec![hung_url.clone()])).unwrap();
        let t = Instant::now();
        let e = etcd.get(b"/k").unwrap_err();
        let took = t.elapsed();
        eprintln!("hung endpoint: {e} (after {took:?})");
        assert!(e.is_unreachable(), "{e:?}");
        assert!(
            took >= TIMEOUT && took < TIMEOUT + Duration::from_secs(3),
            "{took:?}"
        );

        // A watch waits for messages only up to its idle time, on a hung endpoint or a quiet
        // live one, and then says to watch again.
        let t = Instant::now();
        let idle = Duration::from_secs(1);
        let e = etcd
            .with_watch_idle(idle)
            .watch(b"/k", None, 0)
            .unwrap_err();
        assert!(e.is_unreachable(), "{e:?}");
        assert!(t.elapsed() < idle + TIMEOUT, "{:?}", t.elapsed());
        let live = Etcd::connect(&config(vec![cluster.endpoint(0)])).unwrap();
        let mut quiet = live.with_watch_idle(idle).watch(b"/k", None, 0).unwrap();
        let t = Instant::now();
        let e = quiet.next().unwrap().unwrap_err();
        eprintln!("quiet watch: {e} (after {:?})", t.elapsed());
        assert!(e.is_unreachable() && t.elapsed() >= idle, "{e:?}");
        assert!(quiet.next().is_none(), "a watch ends after its error");

        let both = Etcd::connect(&config(vec![hung_url, cluster.endpoint(0)])).unwrap();
        assert_eq!(both.get(b"/k").unwrap(), None);
        let t = Instant::now();
        both.put(b"/k", b"v", None).unwrap();
        assert!(
            t.elapsed() < TIMEOUT,
            "the endpoint that answered is remembered"
        );
    });
}

#[test]
fn tls_with_client_certificate_and_refused_without() {
    if !ready("tls_with_client_certificate_and_refused_without") {
        return;
    }
    let cluster = EtcdCluster::start(1, true);
    let (ca, cert, key) = cluster.client_tls();
    cluster.run_in(|| {
        let mut cfg = config(cluster.endpoints());
        assert!(cfg.endpoints[0].starts_with("https://"));
        cfg.cacert = Some(ca.clone());
        cfg.cert = Some(cert.clone());
        cfg.key = Some(key.clone());
        let etcd = Etcd::connect(&cfg).unwrap();
        etcd.put(b"/tls", b"yes", None).unwrap();
        assert_eq!(etcd.get(b"/tls").unwrap().unwrap().value, b"yes");
        let mut w = etcd.watch(b"/tls", None, 1).unwrap();
        assert_eq!(w.next().unwrap().unwrap().events[0].kv.value, b"yes");

        cfg.cert = None;
        cfg.key = None;
        let e = Etcd::connect(&cfg).unwrap().get(b"/tls").unwrap_err();
        eprintln!("without a client certificate: {e}");
        assert!(e.is_unreachable(), "{e:?}");
        assert!(e.to_string().contains("TLS"), "{e}");

        let mut untrusted = config(cluster.endpoints());
        untrusted.cert = Some(cert.clone());
        untrusted.key = Some(key.clone());
        let e = Etcd::connect(&untrusted).unwrap().get(b"/tls").unwrap_err();
        eprintln!("without the CA: {e}");
        assert!(e.to_string().contains("certificate"), "{e}");

        let mut plain = config(cluster.endpoints());
        plain.endpoints = plain
            .endpoints
            .iter()
            .map(|e| e.replace("https", "http"))
            .collect();
        assert!(Etcd::connect(&plain).unwrap().get(b"/tls").is_err());

        let mut missing = cfg.clone();
        missing.cacert = Some("/nonexistent/ca.pem".into());
        let e = Etcd::connect(&missing).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    });
}

/// A namespace of the test's own, deleted when dropped (after the cluster in it).
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

#[test]
fn members_on_the_callers_addresses_with_tls() {
    if !ready("members_on_the_callers_addresses_with_tls") {
        return;
    }
    let netns = Netns(weave_e2e::unique("wve"));
    weave_e2e::sh(&format!(
        "ip netns add {ns} && ip -n {ns} link set lo up && ip -n {ns} link add wvd0 type veth peer name wvd1 \
         && ip -n {ns} addr add 10.47.0.1/24 dev wvd0 && ip -n {ns} addr add 10.47.0.2/24 dev wvd0 \
         && ip -n {ns} addr add 10.47.0.3/24 dev wvd0 && ip -n {ns} link set wvd0 up && ip -n {ns} link set wvd1 up",
        ns = netns.0
    ));
    let ips: Vec<std::net::Ipv4Addr> = ["10.47.0.1", "10.47.0.2", "10.47.0.3"]
        .iter()
        .map(|ip| ip.parse().unwrap())
        .collect();
    let mut cluster = EtcdCluster::start_in(&netns.0, &ips, true);
    assert_eq!(
        cluster.endpoints(),
        [
            "https://10.47.0.1:2379",
            "https://10.47.0.2:2379",
            "https://10.47.0.3:2379"
        ]
    );
    let (ca, cert, key) = cluster.client_tls();
    let cfg = EtcdConfig {
        cacert: Some(ca),
        cert: Some(cert),
        key: Some(key),
        ..config(cluster.endpoints())
    };
    cluster.run_in(|| {
        // Each member's certificate holds its address.
        for ep in cluster.endpoints() {
            let one = Etcd::connect(&EtcdConfig {
                endpoints: vec![ep.clone()],
                ..cfg.clone()
            });
            one.unwrap().put(ep.as_bytes(), b"ok", None).unwrap();
        }
    });
    cluster.kill_member(1);
    let etcd = Etcd::connect(&cfg).unwrap();
    cluster.run_in(|| {
        let all = etcd
            .range(b"https://", Some(&prefix_end(b"https://")))
            .unwrap();
        assert_eq!(all.kvs.len(), 3);
    });
    cluster.restart_all();
    drop(cluster);
    assert!(
        !weave_e2e::sh(&format!("ip netns pids {}", netns.0)).contains(char::is_numeric),
        "every member stopped"
    );
}
