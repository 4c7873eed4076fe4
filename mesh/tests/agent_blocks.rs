//! Giving empty blocks back, in this process against real etcd: a block that held none of the
//! host's addresses for `--release-empty-after` leaves state.json and etcd, and another host
//! can claim it; a block with an address file stays, so does one empty block of the default
//! range, and nothing is given back while an attach holds the blocks lock. A block whose
//! delete etcd missed stays out of state.json, whatever the view says, and leaves etcd at
//! the next tick once etcd is back. Attaches racing the release (1500, the block given back
//! and claimed again over a hundred times) never see their block given back between their
//! read of state.json and their store write (without the hook's hold, the third one did).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

mod common;

use common::cluster_of;
use ipnet::Ipv4Net;
use weave_core::layout::StateDir;
use weave_core::mesh::{hold_blocks_shared, try_hold_blocks_alone, MeshState};
use weave_e2e::etcd::EtcdCluster;
use weave_e2e::{root_or_skip, tool_or_skip};
use weave_mesh::agent::{Agent, Config};
use weave_mesh::cluster::{Claim, Cluster};
use weave_mesh::datapath::Recorder;

const RELEASE_AFTER: Duration = Duration::from_millis(800);

fn granted(claim: Claim<Ipv4Net>) -> Ipv4Net {
    match claim {
        Claim::Granted(block) => block,
        Claim::Refused(why) => panic!("block refused: {why}"),
    }
}

/// The blocks state.json lists.
fn listed(layout: &StateDir) -> BTreeSet<Ipv4Net> {
    let state = MeshState::read(layout).unwrap().unwrap();
    state.blocks.into_iter().collect()
}

/// The blocks etcd holds for `host`.
fn in_etcd(cluster: &Cluster, host: &str) -> BTreeSet<Ipv4Net> {
    let view = cluster.snapshot().unwrap();
    view.blocks_of(host).into_iter().collect()
}

/// An agent of host "ha" on a state directory in `state`, its blocks given back after
/// `release_after`.
fn agent_of(cluster: &Cluster, state: &std::path::Path, release_after: Duration) -> Arc<Agent> {
    Arc::new(Agent::new(
        Config {
            cluster: cluster.clone(),
            name: "ha".into(),
            advertise: "192.168.250.1".parse().unwrap(),
            state_dir: state.join("s"),
            lease_ttl: Duration::from_secs(5),
            reclaim_after: Duration::from_secs(30),
            max_blocks: 64,
            release_empty_after: release_after,
            default_range: "10.32.0.0/12".parse().unwrap(),
            bridge: "weave".into(),
        },
        Box::new(Arc::new(Recorder::default())),
    ))
}

#[test]
fn empty_blocks_go_back_unless_held_or_the_spare_of_the_default_range() {
    let test = "empty_blocks_go_back_unless_held_or_the_spare_of_the_default_range";
    if !root_or_skip(test) || !tool_or_skip(test, "etcd") {
        return;
    }
    let etcd = EtcdCluster::start(1, false);
    let state = tempfile::tempdir().unwrap();
    let cluster = cluster_of(&etcd);
    let agent = agent_of(&cluster, state.path(), RELEASE_AFTER);
    let layout = StateDir::new(state.path().join("s"));
    etcd.run_in(|| {
        agent.start().unwrap();
        let watch = agent.clone();
        std::thread::spawn(move || watch.watch_loop());
        let default = granted(agent.claim_block("10.32.0.0/12".parse().unwrap()).unwrap());
        let used = granted(agent.claim_block("10.50.0.0/24".parse().unwrap()).unwrap());
        let idle = granted(agent.claim_block("10.60.0.0/26".parse().unwrap()).unwrap());
        let all = BTreeSet::from([default, used, idle]);
        assert_eq!(listed(&layout), all);
        // An address of the store in `used` (as an attach leaves it).
        std::fs::create_dir_all(layout.addrs_dir()).unwrap();
        let addr = used.hosts().nth(3).unwrap();
        std::fs::write(layout.addr(addr), "c1").unwrap();

        // Empty from now on: not before the delay.
        agent.release_empty_blocks();
        assert_eq!(listed(&layout), all, "given back before the delay");
        std::thread::sleep(RELEASE_AFTER + Duration::from_millis(100));
        // An attach holds the blocks lock (between its read of state.json and its
        // addresses in the store): nothing goes.
        let hold = hold_blocks_shared(&layout, Duration::from_secs(1))
            .unwrap()
            .expect("the agent made the lock");
        agent.release_empty_blocks();
        assert_eq!(listed(&layout), all, "given back under an attach's hold");
        assert_eq!(in_etcd(&cluster, "ha"), all);
        drop(hold);

        agent.release_empty_blocks();
        let kept = BTreeSet::from([default, used]);
        assert_eq!(listed(&layout), kept, "the idle block leaves state.json");
        assert_eq!(in_etcd(&cluster, "ha"), kept, "and etcd");
        // A view change does not bring it back.
        agent.resync().unwrap();
        assert_eq!(listed(&layout), kept);

        // Another host can claim it now.
        cluster
            .register("hb", "192.168.250.2".parse().unwrap(), 5, 30_000)
            .unwrap();
        match cluster.claim_block("hb", idle).unwrap() {
            Claim::Granted((block, _)) => assert_eq!(block, idle),
            Claim::Refused(why) => panic!("B cannot claim the given-back block: {why}"),
        }

        // The address goes: its block follows after the delay; the default range's empty
        // block stays, however long it is empty.
        std::fs::remove_file(layout.addr(addr)).unwrap();
        agent.release_empty_blocks();
        assert!(listed(&layout).contains(&used), "given back at once");
        std::thread::sleep(RELEASE_AFTER + Duration::from_millis(100));
        agent.release_empty_blocks();
        let last = BTreeSet::from([default]);
        assert_eq!(listed(&layout), last);
        assert_eq!(in_etcd(&cluster, "ha"), last);
        // A block given back can be claimed again by the host that gave it.
        let again = granted(agent.claim_block(used).unwrap());
        assert_eq!(again, used);
        assert!(listed(&layout).contains(&used));
    });
    agent.stop();
}

#[test]
fn a_block_out_of_state_json_leaves_etcd_once_etcd_is_back() {
    let test = "a_block_out_of_state_json_leaves_etcd_once_etcd_is_back";
    if !root_or_skip(test) || !tool_or_skip(test, "etcd") {
        return;
    }
    let mut etcd = EtcdCluster::start(1, false);
    let state = tempfile::tempdir().unwrap();
    let cluster = cluster_of(&etcd);
    let agent = agent_of(&cluster, state.path(), RELEASE_AFTER);
    let layout = StateDir::new(state.path().join("s"));
    let idle = etcd.run_in(|| {
        agent.start().unwrap();
        let idle = granted(agent.claim_block("10.60.0.0/26".parse().unwrap()).unwrap());
        agent.release_empty_blocks();
        idle
    });
    std::thread::sleep(RELEASE_AFTER + Duration::from_millis(100));
    // etcd goes before the agent has noticed: the block leaves state.json, its delete fails.
    etcd.stop_all();
    etcd.run_in(|| agent.release_empty_blocks());
    assert!(!listed(&layout).contains(&idle), "still in state.json");
    assert!(!agent.etcd_reachable(), "the failed delete went unnoticed");
    etcd.restart_all();
    etcd.run_in(|| {
        // A fresh view still says the block is this host's: it stays out of state.json.
        agent.resync().unwrap();
        assert!(!listed(&layout).contains(&idle), "brought back by the view");
        assert!(in_etcd(&cluster, "ha").contains(&idle));
        // The next tick deletes it.
        agent.release_empty_blocks();
        assert!(!in_etcd(&cluster, "ha").contains(&idle), "left in etcd");
        agent.resync().unwrap();
        assert!(!listed(&layout).contains(&idle));
    });
    agent.stop();
}

/// The files of the store's addresses inside `block`.
fn files_in(layout: &StateDir, block: Ipv4Net) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(layout.addrs_dir()) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|ip| block.contains(ip))
        .map(|ip: std::net::Ipv4Addr| ip.to_string())
        .collect()
}

#[test]
fn attaches_racing_the_release_never_leave_an_address_in_a_given_back_block() {
    let test = "attaches_racing_the_release_never_leave_an_address_in_a_given_back_block";
    if !root_or_skip(test) || !tool_or_skip(test, "etcd") {
        return;
    }
    let etcd = EtcdCluster::start(1, false);
    let state = tempfile::tempdir().unwrap();
    let cluster = cluster_of(&etcd);
    let agent = agent_of(&cluster, state.path(), Duration::from_millis(1));
    let layout = StateDir::new(state.path().join("s"));
    let subnet: Ipv4Net = "10.60.0.0/26".parse().unwrap();
    let (wrote, given_back, checked) = etcd.run_in(|| {
        agent.start().unwrap();
        granted(agent.claim_block(subnet).unwrap());
        std::fs::create_dir_all(layout.addrs_dir()).unwrap();
        std::thread::scope(|scope| {
            // Attaches as the hook makes them: the blocks held (shared) from the read of
            // state.json until the address file is written; the file removed later (the
            // detach), without the lock; a new block asked for when there is none.
            let attaches = scope.spawn(|| {
                let (mut wrote, mut given_back, mut was_listed) = (0, 0, true);
                for i in 0..1500u32 {
                    let hold = hold_blocks_shared(&layout, Duration::from_secs(5)).unwrap();
                    let listed = listed(&layout).contains(&subnet);
                    given_back += u32::from(was_listed && !listed);
                    was_listed = listed;
                    let file = layout.addr(subnet.hosts().nth((i % 60) as usize).unwrap());
                    // The hook's work between its read of state.json and its store write.
                    std::thread::sleep(Duration::from_micros(300));
                    if listed {
                        std::fs::write(&file, format!("c{i}")).unwrap();
                        wrote += 1;
                        let still = self::listed(&layout).contains(&subnet);
                        assert!(still, "block {subnet} given back under attach {i}");
                    }
                    drop(hold);
                    std::thread::sleep(Duration::from_micros(200 * u64::from(i % 4)));
                    match listed {
                        true => std::fs::remove_file(&file).unwrap(),
                        // Refused while the delete is not done: tried again next time.
                        false => drop(agent.claim_block(subnet)),
                    }
                    // Empty for a while now and then: long enough for a release.
                    std::thread::sleep(Duration::from_micros(500 * u64::from(i % 8)));
                }
                (wrote, given_back)
            });
            // The agent's ticks, as fast as they go; after each, with no attach reading
            // (the lock held alone), a block out of state.json holds no address.
            let mut checked = 0;
            while !attaches.is_finished() {
                agent.release_empty_blocks();
                if let Some(_alone) = try_hold_blocks_alone(&layout).unwrap() {
                    if !listed(&layout).contains(&subnet) {
                        checked += 1;
                        let left = files_in(&layout, subnet);
                        assert!(left.is_empty(), "addresses in a given-back block: {left:?}");
                    }
                }
                // The attaches' turn at the lock.
                std::thread::sleep(Duration::from_millis(1));
            }
            let (wrote, given_back) = attaches.join().unwrap();
            (wrote, given_back, checked)
        })
    });
    agent.stop();
    eprintln!(
        "{test}: {wrote} addresses written, the block given back {given_back} times, \
         {checked} checks of a given-back block"
    );
    assert!(
        wrote > 100 && given_back > 10,
        "the race was not run: {wrote} addresses, {given_back} releases"
    );
}
