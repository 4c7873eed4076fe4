//! A hook killed at any step of attach (SIGKILL through a test-only failpoint, or by the
//! runtime's hook timeout) leaves nothing that the next attach of the same container or
//! `weave-hook gc` cannot clean up, and never a torn store.
//! Needs the `failpoints` feature: `cargo test -p weave-hook --features failpoints --test faults`.
#![cfg(feature = "failpoints")]

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use weave_e2e::root_or_skip;

use nix::sched::{unshare, CloneFlags};
use weave_core::failpoint::STEPS;

const HOOK: &str = env!("CARGO_BIN_EXE_weave-hook");

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A process in a network namespace of its own, killed when dropped.
struct Container(Child);

impl Container {
    fn start() -> Self {
        let child = weave_e2e::spawn_in_new_netns();
        Self(child)
    }

    fn inside(&self, cmd: &str) -> String {
        sh(&format!("nsenter -t {} -n {cmd}", self.0.id()))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hook(
    state_dir: &Path,
    bridge: &str,
    args: &[&str],
    stdin: &str,
    failpoint: Option<&str>,
) -> Output {
    let mut cmd = Command::new(HOOK);
    cmd.args([
        "--state-dir",
        state_dir.to_str().unwrap(),
        "--bridge",
        bridge,
    ])
    .args(args)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .env_remove("WEAVE_HOOK_FAILPOINT");
    if let Some(fp) = failpoint {
        cmd.env("WEAVE_HOOK_FAILPOINT", fp);
    }
    let mut child = cmd.spawn().unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

/// Every file under the state dir's store directories (records, addresses, temp files).
fn store_files(state_dir: &Path) -> Vec<String> {
    ["containers", "addrs"]
        .iter()
        .flat_map(|d| {
            std::fs::read_dir(state_dir.join(d))
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|e| e.path().display().to_string())
        .collect()
}

#[test]
fn killed_at_every_step_then_reattached_then_collected() {
    if !root_or_skip("killed_at_every_step_then_reattached_then_collected") {
        return;
    }
    unshare(CloneFlags::CLONE_NEWNET).unwrap();
    sh("echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables && iptables -w -P FORWARD DROP");
    for (i, step) in STEPS.iter().enumerate() {
        let bridge = format!("wvf{i}");
        let dir = tempfile::tempdir().unwrap();
        let c = Container::start();
        let state = format!(
            r#"{{"ociVersion":"1.0.2","id":"victim","status":"creating","pid":{},"annotations":{{"weave.cidr":"10.2.{i}.5/24 net:10.3.{i}.0/24"}}}}"#,
            c.0.id()
        );
        let killed = hook(dir.path(), &bridge, &["attach"], &state, Some(step));
        assert_eq!(
            killed.status.signal(),
            Some(9),
            "{step}: the failpoint kills the hook"
        );

        // The store is never torn: it can be read right after the kill.
        let ps = hook(dir.path(), &bridge, &["ps"], "", None);
        assert!(
            ps.status.success(),
            "{step}: ps after the kill: {}",
            String::from_utf8_lossy(&ps.stderr)
        );

        // The runtime starts the same container again (same id): that attach succeeds.
        let again = hook(dir.path(), &bridge, &["attach"], &state, None);
        assert!(
            again.status.success(),
            "{step}: re-attach: {}",
            String::from_utf8_lossy(&again.stderr)
        );
        let addrs = c.inside("ip -o -4 addr show ethwe");
        assert!(
            addrs.contains(&format!("inet 10.2.{i}.5/24")),
            "{step}: {addrs}"
        );
        assert_eq!(
            addrs.lines().count(),
            2,
            "{step}: exactly the two addresses: {addrs}"
        );
        let ps = String::from_utf8(hook(dir.path(), &bridge, &["ps"], "", None).stdout).unwrap();
        assert_eq!(ps.lines().count(), 1, "{step}: one record: {ps}");

        // The container dies without its poststop hook: gc leaves zero leaks.
        drop(c);
        let gc = hook(dir.path(), &bridge, &["gc"], "", None);
        assert!(
            gc.status.success(),
            "{step}: gc: {}",
            String::from_utf8_lossy(&gc.stderr)
        );
        assert_eq!(
            store_files(dir.path()),
            Vec::<String>::new(),
            "{step}: store files left"
        );
        let veths = sh(&format!("ip -o link show master {bridge}"));
        assert_eq!(veths, "", "{step}: veths left on the bridge");
    }
}

#[test]
fn killed_between_claim_and_record_is_collected_without_a_reattach() {
    if !root_or_skip("killed_between_claim_and_record_is_collected_without_a_reattach") {
        return;
    }
    unshare(CloneFlags::CLONE_NEWNET).unwrap();
    for step in ["claimed", "record-temp", "reserved", "veth"] {
        let dir = tempfile::tempdir().unwrap();
        let c = Container::start();
        let state = format!(
            r#"{{"id":"lost","status":"creating","pid":{},"annotations":{{"weave.cidr":"10.2.9.5/24"}}}}"#,
            c.0.id()
        );
        let killed = hook(dir.path(), "wvfg", &["attach"], &state, Some(step));
        assert_eq!(killed.status.signal(), Some(9), "{step}");
        drop(c); // the runtime kills the container whose hook failed
        let gc = hook(dir.path(), "wvfg", &["gc"], "", None);
        assert!(
            gc.status.success(),
            "{step}: {}",
            String::from_utf8_lossy(&gc.stderr)
        );
        assert_eq!(
            store_files(dir.path()),
            Vec::<String>::new(),
            "{step}: store files left"
        );
        // The address is free for another container at once.
        let other = Container::start();
        let state = format!(
            r#"{{"id":"other","status":"creating","pid":{},"annotations":{{"weave.cidr":"10.2.9.5/24"}}}}"#,
            other.0.id()
        );
        let out = hook(dir.path(), "wvfg", &["attach"], &state, None);
        assert!(
            out.status.success(),
            "{step}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(hook(
            dir.path(),
            "wvfg",
            &["detach"],
            &state.replace("creating", "stopped"),
            None
        )
        .status
        .success());
        // The bridge is this state directory's: the next round's directory needs its own.
        let reset = hook(dir.path(), "wvfg", &["reset"], "", None);
        assert!(
            reset.status.success(),
            "{step}: {}",
            String::from_utf8_lossy(&reset.stderr)
        );
    }
}

#[test]
fn runtime_hook_timeout_then_the_same_container_starts() {
    let Some(env) =
        weave_e2e::runc_env::RuncEnv::new("runtime_hook_timeout_then_the_same_container_starts")
    else {
        return;
    };
    let runc = weave_e2e::Runc::new(&env.host);
    let mut bundle = env.bundle(&["ip", "-o", "-4", "addr", "show", "ethwe"], "10.2.0.5/24");
    let create = &mut bundle.config["hooks"]["createRuntime"][0];
    create["path"] = HOOK.into();
    create["timeout"] = 1.into();
    create["env"] = serde_json::json!(["WEAVE_HOOK_FAILPOINT=veth:hang"]);
    std::fs::write(
        bundle.path().join("config.json"),
        serde_json::to_vec(&bundle.config).unwrap(),
    )
    .unwrap();
    let out = runc.run("slow", &bundle);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "runc kills a hook past its timeout and refuses the container"
    );
    assert!(
        stderr.contains("timed out") || stderr.contains("timeout"),
        "{stderr}"
    );

    bundle.config["hooks"]["createRuntime"][0]["env"] = serde_json::json!([]);
    std::fs::write(
        bundle.path().join("config.json"),
        serde_json::to_vec(&bundle.config).unwrap(),
    )
    .unwrap();
    let out = runc.run("slow", &bundle);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("inet 10.2.0.5/24"));

    let gc = Command::new(HOOK)
        .args(env.flags())
        .arg("gc")
        .env_remove("WEAVE_HOOK_FAILPOINT")
        .output()
        .unwrap();
    assert!(gc.status.success());
    assert_eq!(env.ps(), "");
    assert_eq!(env.files_in("addrs"), 0);
    assert_eq!(env.files_in("containers"), 0);
    assert_eq!(env.host.veths_left(), Vec::<String>::new());
}
