//! weave-hook under real crun (Debian trixie's 1.21), in a throwaway host namespace with a
//! Docker host's firewall.
//!
//! crun refuses these VMs' hybrid cgroup layout, so the harness runs every crun command in a
//! private mount namespace with `/sys/fs/cgroup/unified` unmounted ([`Engine::Crun`]); the
//! host's mounts are untouched. crun differs from runc where the hook can see it: the
//! createRuntime state says `"status":"created"` and the poststop state `"pid":0`.

use weave_e2e::runc_env::RuncEnv as Env;
use weave_e2e::{Engine, Runc};

fn crun_env(test: &str) -> Option<Env> {
    Env::using(Engine::Crun, test)
}

#[test]
fn crun_first_instruction_sees_the_address_in_10_of_10_runs() {
    let Some(env) = crun_env("crun_first_instruction_sees_the_address_in_10_of_10_runs") else {
        return;
    };
    let crun = Runc::of(Engine::Crun, &env.host);
    let bundle = env.bundle(&["ip", "-o", "-4", "addr", "show", "ethwe"], "10.2.0.5/24");
    for i in 0..10 {
        let out = crun.run(&format!("first{i}"), &bundle);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "run {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("inet 10.2.0.5/24") && stdout.contains("ethwe"),
            "run {i}: the first instruction saw {stdout:?}"
        );
        assert_eq!(env.ps(), "", "run {i}: poststop released the reservation");
    }
    assert_eq!(env.host.veths_left(), Vec::<String>::new());
    assert_eq!(env.files_in("addrs") + env.files_in("containers"), 0);
}

#[test]
fn crun_containers_ping_each_other_and_delete_leaves_nothing() {
    let Some(env) = crun_env("crun_containers_ping_each_other_and_delete_leaves_nothing") else {
        return;
    };
    let crun = Runc::of(Engine::Crun, &env.host);
    let server = env.bundle(&["sleep", "60"], "10.2.0.1/24");
    let out = crun.run_detached("server", &server);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let client = env.bundle(&["ping", "-c", "2", "-W", "2", "10.2.0.1"], "10.2.0.2/24");
    let out = crun.run("client", &client);
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

    crun.remove("server");
    let listed = crun.command().args(["list", "-q"]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout).trim(),
        "",
        "deleted"
    );
    assert_eq!(env.host.veths_left(), Vec::<String>::new());
    assert_eq!(env.ps(), "");
    assert_eq!(
        env.files_in("addrs") + env.files_in("containers"),
        0,
        "no reservation is left"
    );
}

#[test]
fn crun_refused_attach_shows_the_hook_error_and_leaves_nothing() {
    let Some(env) = crun_env("crun_refused_attach_shows_the_hook_error_and_leaves_nothing") else {
        return;
    };
    let crun = Runc::of(Engine::Crun, &env.host);
    let holder = env.bundle(&["sleep", "60"], "10.2.0.7/24");
    assert!(crun.run_detached("holder", &holder).status.success());
    let before = env.host.links("vethwe");

    // crun sends a hook's stderr nowhere unless the annotation run.oci.hooks.stderr names
    // a file; the README tells crun users so.
    let hook_stderr = env.state.path().join("hook-stderr");
    let mut latecomer = env.bundle(&["true"], "net:10.3.0.0/24 10.2.0.7/24");
    latecomer.annotate("run.oci.hooks.stderr", hook_stderr.to_str().unwrap());
    let out = crun.run("latecomer", &latecomer);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused");
    assert!(
        stderr.contains("error executing hook") && stderr.contains("weave-hook"),
        "crun names the failed hook: {stderr}"
    );
    let line = std::fs::read_to_string(&hook_stderr).unwrap_or_default();
    assert!(
        line.contains(
            "weave-hook: container latecomer: address 10.2.0.7 is in use by container holder"
        ),
        "the hook's line, in run.oci.hooks.stderr: {line:?}"
    );
    assert_eq!(env.host.links("vethwe"), before, "no veth of the latecomer");
    assert_eq!(
        env.files_in("addrs"),
        1,
        "the 10.3.0.x reservation was undone"
    );
    let state = crun
        .command()
        .args(["state", "latecomer"])
        .output()
        .unwrap();
    assert!(
        !state.status.success(),
        "crun did not keep the refused container"
    );

    crun.remove("holder");
    assert_eq!(env.host.veths_left(), Vec::<String>::new());
    assert_eq!(env.files_in("addrs") + env.files_in("containers"), 0);
}
