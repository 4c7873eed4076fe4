//! Every kind of bad input the hook can be handed, through the real binary: each is refused
//! with exit 1 and one stderr line starting `weave-hook:`, and nothing changes: no bridge,
//! no veth, no reservation, no record. Root only (it runs in a private network namespace).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use weave_e2e::root_or_skip;

use nix::sched::{unshare, CloneFlags};

struct Case {
    name: &'static str,
    state: String,
    /// What the single stderr line must contain.
    expect: &'static str,
}

fn state_with_cidr(cidr: &str, pid: u32) -> String {
    serde_json::json!({
        "ociVersion": "1.0.2", "id": "bad", "status": "creating", "pid": pid,
        "bundle": "/nonexistent", "annotations": {"weave.cidr": cidr}
    })
    .to_string()
}

fn cases(container_pid: u32, host_ns_pid: u32, bundles: &Bundles) -> Vec<Case> {
    let mut cases = vec![
        Case { name: "empty state", state: String::new(), expect: "is empty" },
        Case { name: "whitespace state", state: " \n\t".into(), expect: "is empty" },
        Case { name: "not JSON", state: "creating".into(), expect: "not valid JSON" },
        Case { name: "JSON array", state: "[1,2]".into(), expect: "not valid JSON" },
        Case { name: "no id", state: r#"{"status":"creating","pid":1}"#.into(), expect: "not valid JSON" },
        Case {
            name: "truncated state",
            state: r#"{"ociVersion":"1.0.2-dev","id":"t1","status":"creating","pid":23"#.into(),
            expect: "not valid JSON",
        },
        Case {
            name: "huge state",
            state: format!(r#"{{"id":"t1","status":"creating","x":"{}"}}"#, "a".repeat(2 << 20)),
            expect: "larger than",
        },
        Case { name: "id escaping the state dir", state: r#"{"id":"../../etc/passwd","status":"creating","pid":1}"#.into(), expect: "invalid container id" },
        Case { name: "id ..", state: r#"{"id":"..","status":"creating","pid":1}"#.into(), expect: "invalid container id" },
        Case { name: "id with slash", state: r#"{"id":"a/b","status":"creating","pid":1}"#.into(), expect: "invalid container id" },
        Case { name: "id with NUL", state: r#"{"id":"a\u0000b","status":"creating","pid":1}"#.into(), expect: "invalid container id" },
        Case { name: "id with newline", state: r#"{"id":"a\nb","status":"creating","pid":1}"#.into(), expect: "invalid container id" },
        Case { name: "empty id", state: r#"{"id":"","status":"creating","pid":1}"#.into(), expect: "invalid container id" },
        Case { name: "huge id", state: format!(r#"{{"id":"{}","status":"creating","pid":1}}"#, "a".repeat(300)), expect: "weave accepts ids of at most 250 bytes" },
        // runc accepts ids up to NAME_MAX; the store's file names need 5 bytes more.
        Case { name: "id of 251 bytes", state: format!(r#"{{"id":"{}","status":"creating","pid":1}}"#, "a".repeat(251)), expect: "251 bytes long" },
        Case {
            name: "wrong stage",
            state: r#"{"id":"t1","status":"running","pid":1,"annotations":{"weave.cidr":"10.2.0.5/24"}}"#.into(),
            expect: "status \"running\"",
        },
        Case {
            name: "no pid at creating",
            state: r#"{"id":"t1","status":"creating","annotations":{"weave.cidr":"10.2.0.5/24"}}"#.into(),
            expect: "has no pid",
        },
        Case {
            name: "pid 0",
            state: r#"{"id":"t1","status":"creating","pid":0,"annotations":{"weave.cidr":"10.2.0.5/24"}}"#.into(),
            expect: "has no pid",
        },
        Case { name: "pid that is gone", state: state_with_cidr("10.2.0.5/24", 999_999_999), expect: "network namespace of pid 999999999" },
        Case { name: "process in the host's network namespace", state: state_with_cidr("10.2.0.5/24", host_ns_pid), expect: "host's network namespace" },
        Case {
            name: "missing bundle",
            state: r#"{"id":"t1","status":"creating","pid":1,"bundle":"/nonexistent-bundle"}"#.into(),
            expect: "cannot read /nonexistent-bundle/config.json",
        },
        Case {
            name: "no bundle and no annotation",
            state: r#"{"id":"t1","status":"creating","pid":1}"#.into(),
            expect: "names no bundle",
        },
        Case {
            name: "unreadable config.json",
            state: format!(r#"{{"id":"t1","status":"creating","pid":1,"bundle":"{}"}}"#, bundles.unreadable),
            expect: "config.json",
        },
        Case {
            name: "config.json not JSON",
            state: format!(r#"{{"id":"t1","status":"creating","pid":1,"bundle":"{}"}}"#, bundles.garbage),
            expect: "is not valid JSON",
        },
        Case {
            name: "bad WEAVE_CIDR in the environment",
            state: format!(r#"{{"id":"t1","status":"creating","pid":{container_pid},"bundle":"{}"}}"#, bundles.bad_env),
            expect: "environment variable WEAVE_CIDR",
        },
        Case {
            name: "bad weave.dns",
            state: serde_json::json!({"id":"t1","status":"creating","pid":container_pid,"annotations":{"weave.cidr":"10.2.0.5/24","weave.dns":"yes"}}).to_string(),
            expect: "bad weave.dns",
        },
    ];
    let bad_cidrs: &[(&str, &str)] = &[
        ("10.2.0.256/24", "not an IPv4 address"),
        ("10.2.0.5/33", "not an IPv4 address"),
        ("10.2.0.5/", "not an IPv4 address"),
        ("10.2.0.5/0", "/0"),
        ("10.2.0.5", "no prefix length"),
        ("10.2.0/24", "not an IPv4 address"),
        ("10.2.0.0/24", "network address"),
        ("10.2.0.255/24", "broadcast address"),
        ("0.0.0.0/8", "not a unicast"),
        ("127.0.0.1/8", "not a unicast"),
        ("239.1.1.1/8", "not a unicast"),
        ("255.255.255.255/32", "not a unicast"),
        ("010.2.0.5/24", "not an IPv4 address"),
        ("10.2.0.٥/24", "not an IPv4 address"),
        ("１0.2.0.5/24", "not an IPv4 address"),
        ("10.2.0.5/24;reboot", "not an IPv4 address"),
        ("$(reboot)", "not an IPv4 address"),
        ("`id`", "not an IPv4 address"),
        ("10.2.0.5/24|sh", "not an IPv4 address"),
        ("../../etc/passwd", "not an IPv4 address"),
        ("net:10.2.0.5/24", "host bits set"),
        ("net:10.2.0.0/31", "no address to allocate"),
        ("net:", "not an IPv4 address"),
        ("ip:", "not an IPv4 address"),
        ("mac:10.2.0.5/24", "unknown prefix"),
        ("fd00::5/64", "IPv6"),
        ("none 10.2.0.5/24", "'none' cannot be combined"),
        ("10.2.0.5/24 10.2.0.5/24", "listed twice"),
    ];
    for (cidr, expect) in bad_cidrs {
        cases.push(Case {
            name: "malformed weave.cidr",
            state: state_with_cidr(cidr, container_pid),
            expect,
        });
    }
    let thousands = (0..2000)
        .map(|i| format!("10.2.{}.{}/16", i / 250, i % 250 + 1))
        .collect::<Vec<_>>()
        .join(",");
    cases.push(Case {
        name: "thousands of entries",
        state: state_with_cidr(&thousands, container_pid),
        expect: "at most 1024",
    });
    let seventeen = (1..=17)
        .map(|i| format!("10.2.0.{i}/24"))
        .collect::<Vec<_>>()
        .join(" ");
    cases.push(Case {
        name: "too many entries",
        state: state_with_cidr(&seventeen, container_pid),
        expect: "at most 16",
    });
    cases
}

struct Bundles {
    _dir: tempfile::TempDir,
    unreadable: String,
    garbage: String,
    bad_env: String,
}

impl Bundles {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mk = |name: &str| {
            let p = dir.path().join(name);
            std::fs::create_dir(&p).unwrap();
            p
        };
        let unreadable = mk("unreadable");
        std::fs::create_dir(unreadable.join("config.json")).unwrap(); // a directory: EISDIR
        let garbage = mk("garbage");
        std::fs::write(garbage.join("config.json"), "{\"annotations\": {").unwrap();
        let bad_env = mk("badenv");
        std::fs::write(
            bad_env.join("config.json"),
            r#"{"process":{"env":["WEAVE_CIDR=10.2.0.5/99"]}}"#,
        )
        .unwrap();
        let s = |p: std::path::PathBuf| p.display().to_string();
        Self {
            unreadable: s(unreadable),
            garbage: s(garbage),
            bad_env: s(bad_env),
            _dir: dir,
        }
    }
}

/// Runs `hook` (weave-hook, or a command that execs it) on `state_dir` with `state` on its
/// stdin, as a runtime does.
fn run_hook(mut hook: Command, state_dir: &Path, state: &str) -> Output {
    let mut child = hook
        .arg("--state-dir")
        .arg(state_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A refusal may come before the whole state is read: a broken pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(state.as_bytes());
    child.wait_with_output().unwrap()
}

/// What a refused attach left behind: weave links in the test's namespace, records or
/// reservations in `state_dir`.
fn left_behind(state_dir: &Path) -> Vec<String> {
    let mut left = Vec::new();
    let links = Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap()
        .stdout;
    let links = String::from_utf8(links).unwrap();
    if links.contains("weave") || links.contains("vethwe") {
        left.push(format!("left links behind: {links}"));
    }
    for sub in ["containers", "addrs"] {
        let count = std::fs::read_dir(state_dir.join(sub))
            .map(|d| d.count())
            .unwrap_or(0);
        if count != 0 {
            left.push(format!("left {count} file(s) in {sub}/"));
        }
    }
    left
}

#[test]
fn every_bad_input_is_refused_and_changes_nothing() {
    if !root_or_skip("every_bad_input_is_refused_and_changes_nothing") {
        return;
    }
    // A private "host" namespace: nothing the hook could wrongly create reaches the machine.
    unshare(CloneFlags::CLONE_NEWNET).unwrap();
    let mut container = weave_e2e::spawn_in_new_netns();
    let mut host_proc = Command::new("sleep").arg("300").spawn().unwrap();
    let state_dir = tempfile::tempdir().unwrap();
    let bundles = Bundles::new();
    let mut failures = Vec::new();
    for case in cases(container.id(), host_proc.id(), &bundles) {
        let hook = Command::new(env!("CARGO_BIN_EXE_weave-hook"));
        let out = run_hook(hook, state_dir.path(), &case.state);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let ok = out.status.code() == Some(1)
            && out.stdout.is_empty()
            && stderr.lines().count() == 1
            && stderr.starts_with("weave-hook: ")
            && stderr.contains(case.expect);
        if !ok {
            failures.push(format!(
                "{}: exit {:?}, stderr {stderr:?}, want {:?}",
                case.name,
                out.status.code(),
                case.expect
            ));
        }
        failures.extend(
            left_behind(state_dir.path())
                .into_iter()
                .map(|left| format!("{}: {left}", case.name)),
        );
    }
    let _ = container.kill();
    let _ = host_proc.kill();
    let _ = container.wait();
    let _ = host_proc.wait();
    assert!(
        failures.is_empty(),
        "{} bad inputs mishandled:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Run without one of the capabilities it needs (dropped from the bounding set, so root's
/// exec does not get it), the hook names it and changes nothing.
#[test]
fn a_missing_capability_is_named_and_changes_nothing() {
    if !root_or_skip("a_missing_capability_is_named_and_changes_nothing") {
        return;
    }
    unshare(CloneFlags::CLONE_NEWNET).unwrap();
    let mut container = weave_e2e::spawn_in_new_netns();
    let state_dir = tempfile::tempdir().unwrap();
    let state = state_with_cidr("10.2.0.9/24", container.id());
    let mut failures = Vec::new();
    for (drop, name) in [
        ("-net_admin", "CAP_NET_ADMIN"),
        ("-sys_admin", "CAP_SYS_ADMIN"),
        ("-net_raw", "CAP_NET_RAW"),
    ] {
        let mut hook = Command::new("setpriv");
        hook.args(["--bounding-set", drop, "--inh-caps", drop])
            .arg(env!("CARGO_BIN_EXE_weave-hook"));
        let out = run_hook(hook, state_dir.path(), &state);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(1) || !stderr.contains(&format!("missing capability {name}")) {
            failures.push(format!(
                "without {name}: exit {:?}, {stderr:?}",
                out.status.code()
            ));
        }
    }
    failures.extend(
        left_behind(state_dir.path())
            .into_iter()
            .map(|left| format!("after the refusals: {left}")),
    );
    let _ = container.kill();
    let _ = container.wait();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
