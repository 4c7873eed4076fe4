//! weave-hook under real runc, in a throwaway host namespace with a Docker host's firewall.

use std::collections::HashSet;

use weave_e2e::runc_env::RuncEnv as Env;
use weave_e2e::{Bundle, Runc};

#[test]
fn first_instruction_sees_the_address_in_50_runs() {
    let Some(env) = Env::new("first_instruction_sees_the_address_in_50_runs") else {
        return;
    };
    let runc = Runc::new(&env.host);
    let bundle = env.bundle(&["ip", "-o", "-4", "addr", "show", "ethwe"], "10.2.0.5/24");
    for i in 0..50 {
        let out = runc.run(&format!("first{i}"), &bundle);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "run {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("inet 10.2.0.5/24"),
            "run {i}: the first instruction saw {stdout:?}"
        );
        assert_eq!(env.ps(), "", "run {i}: poststop released the reservation");
    }
    assert_eq!(env.host.veths_left(), Vec::<String>::new());
}

#[test]
fn containers_ping_each_other_and_delete_leaves_nothing() {
    let Some(env) = Env::new("containers_ping_each_other_and_delete_leaves_nothing") else {
        return;
    };
    let runc = Runc::new(&env.host);
    let server = env.bundle(&["sleep", "60"], "10.2.0.1/24");
    let out = runc.run_detached("server", &server);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let client = env.bundle(&["ping", "-c", "2", "-W", "2", "10.2.0.1"], "10.2.0.2/24");
    let out = runc.run("client", &client);
    assert!(
        out.status.success(),
        "ping over the bridge: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        env.host.links("vethwe").len(),
        1,
        "only the server's veth is left"
    );
    assert!(env.ps().starts_with("server "), "{}", env.ps());

    runc.remove("server");
    assert_eq!(env.host.veths_left(), Vec::<String>::new());
    assert_eq!(env.ps(), "");
    let addrs = std::fs::read_dir(env.state.path().join("addrs"))
        .unwrap()
        .count();
    assert_eq!(addrs, 0, "no address file is left");
}

#[test]
fn thirty_two_concurrent_containers_get_distinct_reachable_addresses() {
    let Some(env) = Env::new("thirty_two_concurrent_containers_get_distinct_reachable_addresses")
    else {
        return;
    };
    let runc = Runc::new(&env.host);
    let bundle = env.bundle(&["sleep", "120"], "net:default");
    let ids: Vec<String> = (0..32).map(|i| format!("many{i}")).collect();
    runc.run_all_detached(&ids, &bundle);
    let ps = env.ps();
    let addrs: Vec<String> = ps
        .lines()
        .map(|l| {
            l.split_whitespace()
                .nth(2)
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(addrs.len(), 32, "{ps}");
    assert_eq!(
        addrs.iter().collect::<HashSet<_>>().len(),
        32,
        "duplicates in {ps}"
    );

    let script = addrs
        .iter()
        .map(|a| format!("ping -c 1 -W 2 {a} >/dev/null || {{ echo unreachable {a}; exit 1; }}"))
        .collect::<Vec<_>>()
        .join("; ");
    let pinger = env.bundle(&["sh", "-c", &script], "net:default");
    let out = runc.run("pinger", &pinger);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    runc.remove_all(&ids);
    assert_eq!(env.ps(), "");
    assert_eq!(env.host.veths_left(), Vec::<String>::new());
}

#[test]
fn refused_attach_shows_the_hook_error_and_leaves_nothing() {
    let Some(env) = Env::new("refused_attach_shows_the_hook_error_and_leaves_nothing") else {
        return;
    };
    let runc = Runc::new(&env.host);
    let holder = env.bundle(&["sleep", "60"], "10.2.0.7/24");
    assert!(runc.run_detached("holder", &holder).status.success());
    let before = env.host.links("vethwe");

    let latecomer = env.bundle(&["true"], "net:10.3.0.0/24, 10.2.0.7/24");
    let out = runc.run("latecomer", &latecomer);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(
            "weave-hook: container latecomer: address 10.2.0.7 is in use by container holder"
        ),
        "runc's error shows the hook's line: {stderr}"
    );
    assert_eq!(env.host.links("vethwe"), before, "no veth of the latecomer");
    assert!(
        env.ps().starts_with("holder ") && env.ps().lines().count() == 1,
        "{}",
        env.ps()
    );
    let addrs = std::fs::read_dir(env.state.path().join("addrs"))
        .unwrap()
        .count();
    assert_eq!(addrs, 1, "the latecomer's 10.3.0.x reservation was undone");
    let state = runc
        .command()
        .args(["state", "latecomer"])
        .output()
        .unwrap();
    assert!(
        !state.status.success(),
        "runc did not keep the refused container"
    );
}

#[test]
fn malformed_cidr_refuses_the_container() {
    let Some(env) = Env::new("malformed_cidr_refuses_the_container") else {
        return;
    };
    let runc = Runc::new(&env.host);
    let bundle = env.bundle(&["true"], "10.2.0.300/24");
    let out = runc.run("bad", &bundle);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    // runc quotes the hook's stderr, escaping its quotes.
    assert!(
        stderr.contains("weave-hook: container bad: bad annotation weave.cidr"),
        "{stderr}"
    );
    assert!(stderr.contains("10.2.0.300/24"), "{stderr}");
    assert_eq!(env.host.veths_left(), Vec::<String>::new());
    assert_eq!(
        env.host.links("weave"),
        Vec::<String>::new(),
        "nothing was created"
    );
}

#[test]
fn env_fallback_and_opt_out() {
    let Some(env) = Env::new("env_fallback_and_opt_out") else {
        return;
    };
    let runc = Runc::new(&env.host);
    let mut bundle = Bundle::new(&env.rootfs, &["ip", "-o", "-4", "addr"]);
    let flags = env.flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    bundle.with_weave_hook(&flags);
    bundle.config["process"]["env"]
        .as_array_mut()
        .unwrap()
        .push("WEAVE_CIDR=10.2.0.40/24".into());
    std::fs::write(
        bundle.path().join("config.json"),
        serde_json::to_vec(&bundle.config).unwrap(),
    )
    .unwrap();
    let out = runc.run("envcidr", &bundle);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("inet 10.2.0.40/24"),
        "{out:?}"
    );

    bundle.annotate("weave.cidr", "none");
    let out = runc.run("optout", &bundle);
    assert!(out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("ethwe"),
        "weave.cidr=none wins over the env"
    );
}

#[test]
fn the_longest_ids_attach_and_detach_and_longer_ones_are_refused_cleanly() {
    let Some(env) =
        Env::new("the_longest_ids_attach_and_detach_and_longer_ones_are_refused_cleanly")
    else {
        return;
    };
    let runc = Runc::new(&env.host);
    let bundle = env.bundle(&["ip", "-o", "-4", "addr", "show", "ethwe"], "10.2.0.8/24");
    // runc accepts ids up to 255 bytes (its state directory's name); weave up to 250.
    let longest = "l".repeat(250);
    let out = runc.run(&longest, &bundle);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("inet 10.2.0.8/24"));
    assert_eq!(env.ps(), "", "detach released it");
    assert_eq!(env.files_in("addrs"), 0);
    assert_eq!(env.host.veths_left(), Vec::<String>::new());
    for len in [251, 255] {
        let id = "l".repeat(len);
        let out = runc.run(&id, &bundle);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{len}: refused");
        assert!(
            stderr.contains(&format!(
                "is {len} bytes long; weave accepts ids of at most 250"
            )),
            "{len}: {stderr}"
        );
        runc.remove(&id);
        assert_eq!(env.ps(), "", "{len}");
        assert_eq!(
            env.files_in("addrs") + env.files_in("containers"),
            0,
            "{len}"
        );
        assert_eq!(env.host.veths_left(), Vec::<String>::new(), "{len}");
    }
}
