//! Load through real runc: 10 rounds of 64 containers started at once and stopped again.
//! Every round: 64 distinct addresses, and afterwards 0 veths, 0 reservations, 0 records;
//! across rounds the state dir stays the same size and the hook's peak memory stays steady.

use std::collections::HashSet;

use weave_e2e::runc_env::RuncEnv;
use weave_e2e::Runc;

const ROUNDS: usize = 10;
const CONTAINERS: usize = 64;

/// Runs every hook under /usr/bin/time, which appends the hook's peak RSS (KiB) to `log`.
fn measure_hooks(bundle: &mut weave_e2e::Bundle, log: &std::path::Path) {
    for stage in ["createRuntime", "poststop"] {
        let hook = &mut bundle.config["hooks"][stage][0];
        let mut args = vec![
            serde_json::json!("time"),
            "-a".into(),
            "-o".into(),
            log.display().to_string().into(),
            "-f".into(),
            "%M".into(),
            hook["path"].clone(),
        ];
        args.extend(hook["args"].as_array().unwrap().iter().skip(1).cloned());
        *hook = serde_json::json!({"path": "/usr/bin/time", "args": args});
    }
    std::fs::write(
        bundle.path().join("config.json"),
        serde_json::to_vec(&bundle.config).unwrap(),
    )
    .unwrap();
}

/// Takes the peak RSS figures logged since the last call, and returns their maximum.
fn take_peak_kib(log: &std::path::Path) -> u64 {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    std::fs::write(log, "").unwrap();
    text.lines()
        .filter_map(|l| l.trim().parse().ok())
        .max()
        .expect("the hooks logged their RSS")
}

#[test]
fn ten_rounds_of_64_concurrent_start_stop_cycles_leak_nothing() {
    let Some(env) = RuncEnv::new("ten_rounds_of_64_concurrent_start_stop_cycles_leak_nothing")
    else {
        return;
    };
    let runc = Runc::new(&env.host);
    if !weave_e2e::tool_or_skip(
        "ten_rounds_of_64_concurrent_start_stop_cycles_leak_nothing",
        "/usr/bin/time",
    ) {
        return;
    }
    let mut bundle = env.bundle(&["sleep", "300"], "net:10.40.0.0/24");
    let rss_log = env.state.path().join("hook-rss.log");
    measure_hooks(&mut bundle, &rss_log);
    // The same ids every round, as with a stack restarted by `docker compose`.
    let ids: Vec<String> = (0..CONTAINERS).map(|i| format!("load{i}")).collect();
    let mut peaks = Vec::new();
    for round in 0..ROUNDS {
        runc.run_all_detached(&ids, &bundle);
        let ps = env.ps();
        let addrs: HashSet<&str> = ps
            .lines()
            .filter_map(|l| l.split_whitespace().nth(2))
            .collect();
        assert_eq!(ps.lines().count(), CONTAINERS, "round {round}: {ps}");
        assert_eq!(
            addrs.len(),
            CONTAINERS,
            "round {round}: duplicate addresses in {ps}"
        );
        assert_eq!(env.host.links("vethwe").len(), CONTAINERS);

        runc.remove_all(&ids);
        assert_eq!(env.ps(), "", "round {round}: reservations left");
        assert_eq!(
            env.host.veths_left(),
            Vec::<String>::new(),
            "round {round}: veths left"
        );
        assert_eq!(
            env.files_in("addrs"),
            0,
            "round {round}: address files left"
        );
        assert_eq!(env.files_in("containers"), 0, "round {round}: records left");
        // One memory of each id's last addresses, however many rounds.
        assert_eq!(env.files_in("released"), CONTAINERS, "round {round}");
        peaks.push(take_peak_kib(&rss_log));
        eprintln!("round {round}: the hooks' peak RSS {} KiB", peaks[round]);
    }
    // Steady: the last round's hooks need no more memory than the first round's (+10%), so
    // nothing the hook reads or keeps grows with the containers that came and went.
    let (first, last) = (peaks[0], *peaks.last().unwrap());
    assert!(
        last <= first + first / 10,
        "peak RSS grew from {first} to {last} KiB: {peaks:?}"
    );
}
