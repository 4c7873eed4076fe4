//! The agent's membership logic in this process, against real etcd, with a data path that
//! only records what it is asked: peers follow registrations, and a host whose agent stops
//! renewing leaves the peers within its lease TTL + 5 s.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::{cluster_of, wait_for};
use weave_core::layout::StateDir;
use weave_core::mesh::{MeshState, Peers};
use weave_e2e::etcd::EtcdCluster;
use weave_e2e::{root_or_skip, tool_or_skip};
use weave_mesh::agent::{Agent, Config};
use weave_mesh::datapath::Recorder;

fn last_peers(rec: &Recorder) -> Option<Vec<Ipv4Addr>> {
    rec.calls.lock().unwrap().last().cloned()
}

#[test]
fn peers_follow_registrations_and_a_silent_host_leaves_within_ttl_plus_5s() {
    if !root_or_skip("peers_follow_registrations") || !tool_or_skip("peers_follow", "etcd") {
        return;
    }
    let etcd = EtcdCluster::start(1, false);
    let state = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let cluster = cluster_of(&etcd);
    let agent = Arc::new(Agent::new(
        Config {
            cluster: cluster.clone(),
            name: "ha".into(),
            advertise: "192.168.250.1".parse().unwrap(),
            state_dir: state.path().join("s"),
            lease_ttl: Duration::from_secs(2),
            reclaim_after: Duration::from_secs(3),
            max_blocks: 64,
            release_empty_after: Duration::from_secs(600),
            default_range: "10.32.0.0/12".parse().unwrap(),
            bridge: "weave".into(),
        },
        Box::new(recorder.clone()),
    ));
    let layout = StateDir::new(state.path().join("s"));
    etcd.run_in(|| {
        agent.start().unwrap();
        for f in [
            Agent::watch_loop,
            Agent::keepalive_loop,
            Agent::maintenance_loop,
        ] {
            let agent = agent.clone();
            std::thread::spawn(move || f(&agent));
        }
        assert_eq!(last_peers(&recorder), Some(vec![]));
        let st: MeshState = MeshState::read(&layout).unwrap().unwrap();
        assert_eq!(st.mtu, Some(1450), "the data path's MTU reaches state.json");

        let hb: Ipv4Addr = "192.168.250.2".parse().unwrap();
        let granted = Instant::now();
        cluster.register("hb", hb, 2, 3000).unwrap();
        wait_for("B in the peers", Duration::from_secs(2), || {
            last_peers(&recorder) == Some(vec![hb])
        });
        // peers.json is written after the data path is told (failed once in a fresh-clone
        // run when read at once).
        wait_for("B alive in peers.json", Duration::from_secs(2), || {
            Peers::read(&layout)
                .peers
                .iter()
                .any(|p| p.name == "hb" && p.alive)
        });
        // B's agent never renews: its lease ends 2 s after the grant.
        wait_for("B leaving the peers", Duration::from_secs(2 + 5), || {
            last_peers(&recorder) == Some(vec![])
        });
        eprintln!(
            "B left the peers {:?} after its lease was granted (TTL 2 s, never renewed)",
            granted.elapsed()
        );
        // peers.json follows the data path (written after it is told), as above.
        wait_for("B gone from peers.json", Duration::from_secs(2), || {
            Peers::read(&layout).peers.is_empty()
        });
        // The repair tick gives the data path the same peers again every few seconds.
        let calls = recorder.calls.lock().unwrap().len();
        wait_for("a repair", Duration::from_secs(7), || {
            recorder.calls.lock().unwrap().len() > calls
        });
    });
    agent.stop();
}
