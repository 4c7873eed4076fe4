//! The bridge's FORWARD rule on a Docker host's firewall (br_netfilter on, FORWARD policy
//! DROP), each test in a throwaway network namespace of its own: every iptables command
//! below runs there (nf_tables and legacy rulesets are per namespace), never on the host.
//!
//! - the rule comes back after `iptables -F FORWARD` or `iptables -D` of it, at the next
//!   attach and at `weave-hook gc`, and traffic passes again;
//! - the common attach runs no iptables at all (counted through a logging wrapper);
//! - iptables-legacy: verified on every attach;
//! - an iptables stuck on its own lock (/run/xtables.lock) stalls no store operation.
//!
//! Root only: skipped outside CI when not root, a failure in CI.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{bare_host, docker_host, settings, sh, Container};
use weave_core::settings::Settings;
use weave_e2e::root_or_skip;
use weave_hook::attach::attach;
use weave_hook::detach::detach;

const RULE: &str = "FORWARD -i weave -o weave -m comment --comment weave-hook -j ACCEPT";

/// How many copies of weave's rule for `bridge` the FORWARD chain holds.
fn rules(iptables: &str, bridge: &str) -> usize {
    sh(&format!("{iptables} -w -S FORWARD"))
        .lines()
        .filter(|l| l.contains(&format!("-i {bridge} -o {bridge}")))
        .count()
}

/// Two attached containers that reach each other; returns them.
fn two_talking(s: &Settings) -> (Container, Container) {
    let a = Container::start("a");
    let b = Container::start("b");
    attach(s, &a.state("10.2.0.1/24")).unwrap();
    attach(s, &b.state("10.2.0.2/24")).unwrap();
    assert!(b.pings("10.2.0.1"));
    (a, b)
}

/// Takes the rule away with `how`, checks traffic is dropped, then lets `restore` bring it
/// back and checks traffic passes with exactly one copy of the rule.
fn rule_restored(test: &str, how: &str, restore: impl FnOnce(&Settings)) {
    if !root_or_skip(test) {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let (_a, b) = two_talking(&s);
    sh(how);
    assert_eq!(rules("iptables", "weave"), 0, "{how} removes the rule");
    assert!(!b.pings("10.2.0.1"), "without the rule FORWARD DROP drops");
    restore(&s);
    assert_eq!(rules("iptables", "weave"), 1, "the rule is back, once");
    assert!(b.pings("10.2.0.1"), "traffic passes again");
}

fn next_attach(s: &Settings) {
    let c = Container::start("c");
    attach(s, &c.state("10.2.0.3/24")).unwrap();
}

fn gc(s: &Settings) {
    weave_hook::gc::collect(s).unwrap();
}

#[test]
fn the_next_attach_restores_the_rule_after_a_flush() {
    rule_restored(
        "the_next_attach_restores_the_rule_after_a_flush",
        "iptables -w -F FORWARD",
        next_attach,
    );
}

#[test]
fn the_next_attach_restores_the_rule_after_it_is_deleted() {
    rule_restored(
        "the_next_attach_restores_the_rule_after_it_is_deleted",
        &format!("iptables -w -D {RULE}"),
        next_attach,
    );
}

#[test]
fn gc_restores_the_rule_after_a_flush() {
    rule_restored(
        "gc_restores_the_rule_after_a_flush",
        "iptables -w -F FORWARD",
        gc,
    );
}

#[test]
fn gc_restores_the_rule_after_it_is_deleted() {
    rule_restored(
        "gc_restores_the_rule_after_it_is_deleted",
        &format!("iptables -w -D {RULE}"),
        gc,
    );
}

/// A directory holding an `iptables` that logs its arguments to `log` and runs `real`: put
/// first on a hook's PATH, it shows which iptables commands the hook ran.
struct Wrapper {
    dir: tempfile::TempDir,
    log: PathBuf,
}

impl Wrapper {
    fn new(real: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let script = dir.path().join("iptables");
        fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$*\" >> {}\nexec {real} \"$@\"\n",
                log.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        Self { dir, log }
    }

    /// The commands run since the last call: their operation flags (`-V`, `-C`, `-I`).
    fn ran(&self) -> Vec<String> {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let _ = fs::remove_file(&self.log);
        text.lines()
            .map(|l| {
                let op = l
                    .split_whitespace()
                    .find(|w| ["-V", "-C", "-I", "-D"].contains(w));
                op.unwrap_or(l).to_string()
            })
            .collect()
    }

    fn path(&self) -> String {
        format!(
            "{}:{}",
            self.dir.path().display(),
            std::env::var("PATH").unwrap()
        )
    }

    /// Starts `weave-hook <args>` with this wrapper first on PATH and `stdin` as input.
    fn spawn_hook(&self, dir: &Path, bridge: &str, args: &[&str], stdin: &str) -> Child {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weave-hook"))
            .arg("--state-dir")
            .arg(dir)
            .args(["--bridge", bridge])
            .args(args)
            .env("PATH", self.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child
    }

    fn hook(&self, dir: &Path, args: &[&str], stdin: &str) -> Output {
        let out = self
            .spawn_hook(dir, "weave", args, stdin)
            .wait_with_output()
            .unwrap();
        assert!(
            out.status.success(),
            "weave-hook {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

#[test]
fn the_common_attach_runs_no_iptables() {
    if !root_or_skip("the_common_attach_runs_no_iptables") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let w = Wrapper::new("/usr/sbin/iptables-nft");
    let cs: Vec<Container> = (0..4).map(|i| Container::start(&format!("c{i}"))).collect();
    let attach = |c: &Container, ip: &str| w.hook(dir.path(), &["attach"], &c.state_json(ip));

    attach(&cs[0], "10.2.0.1/24");
    assert_eq!(
        w.ran(),
        ["-V", "-C", "-I", "-C"],
        "first attach: detect, add"
    );
    attach(&cs[1], "10.2.0.2/24");
    assert_eq!(
        w.ran(),
        Vec::<String>::new(),
        "unchanged ruleset: no iptables"
    );
    // Any other change to the ruleset means one check, and no insert while the rule stays.
    sh("iptables -w -A FORWARD -i nothing0 -j ACCEPT");
    attach(&cs[2], "10.2.0.3/24");
    assert_eq!(w.ran(), ["-C"]);
    sh("iptables -w -F FORWARD");
    attach(&cs[3], "10.2.0.4/24");
    assert_eq!(w.ran(), ["-C", "-I", "-C"]);
    assert_eq!(rules("iptables", "weave"), 1);
    assert!(cs[3].pings("10.2.0.1"));
    // gc is the repair command: it always checks, and detects the backend anew.
    w.hook(dir.path(), &["gc"], "");
    assert_eq!(w.ran(), ["-V", "-C"]);
}

#[test]
fn two_bridges_attaching_in_turn_run_no_iptables() {
    if !root_or_skip("two_bridges_attaching_in_turn_run_no_iptables") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let w = Wrapper::new("/usr/sbin/iptables-nft");
    let cs: Vec<Container> = (0..6).map(|i| Container::start(&format!("c{i}"))).collect();
    let attach = |c: &Container, bridge: &str, ip: &str| {
        let out = w
            .spawn_hook(dir.path(), bridge, &["attach"], &c.state_json(ip))
            .wait_with_output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    attach(&cs[0], "wvone", "10.3.0.1/24");
    attach(&cs[1], "wvtwo", "10.4.0.1/24");
    w.ran();
    // wvtwo's first attach inserted its rule (and weave's table elements): a real change.
    attach(&cs[2], "wvone", "10.3.0.2/24");
    assert_eq!(w.ran(), ["-C"]);
    // From then on each attach's port guard moves the generation, and the other bridge's
    // marker moves with it.
    for (k, c) in cs[3..].iter().enumerate() {
        let (bridge, net) = if k % 2 == 0 {
            ("wvtwo", 4)
        } else {
            ("wvone", 3)
        };
        attach(c, bridge, &format!("10.{net}.0.{}/24", k + 3));
        assert_eq!(w.ran(), Vec::<String>::new(), "attach {k} on {bridge}");
    }
    // A change of anyone else's still means a check, on each bridge.
    sh("iptables -w -A FORWARD -i nothing0 -j ACCEPT");
    let more: Vec<Container> = (6..8).map(|i| Container::start(&format!("c{i}"))).collect();
    attach(&more[0], "wvone", "10.3.0.9/24");
    assert_eq!(w.ran(), ["-C"]);
    attach(&more[1], "wvtwo", "10.4.0.9/24");
    assert_eq!(w.ran(), ["-C"]);
}

#[test]
fn legacy_iptables_is_checked_on_every_attach() {
    if !root_or_skip("legacy_iptables_is_checked_on_every_attach") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let w = Wrapper::new("/usr/sbin/iptables-legacy");
    let cs: Vec<Container> = (0..3).map(|i| Container::start(&format!("l{i}"))).collect();
    let attach = |c: &Container, ip: &str| w.hook(dir.path(), &["attach"], &c.state_json(ip));

    attach(&cs[0], "10.2.0.1/24");
    assert_eq!(w.ran(), ["-V", "-C", "-I"]);
    attach(&cs[1], "10.2.0.2/24");
    assert_eq!(w.ran(), ["-C"], "legacy changes no generation: one check");
    sh("iptables-legacy -w -F FORWARD");
    attach(&cs[2], "10.2.0.3/24");
    assert_eq!(w.ran(), ["-C", "-I"]);
    assert_eq!(rules("iptables-legacy", "weave"), 1);
    assert_eq!(rules("iptables-nft", "weave"), 0, "only the backend in use");
}

/// Holds iptables' own lock, host-global, so only for `hold`; returns once it is held.
fn hold_xtables_lock(hold: Duration) -> std::thread::JoinHandle<()> {
    let (held, is_held) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/run/xtables.lock")
            .unwrap();
        // SAFETY: flock on a file descriptor we own.
        assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
        held.send(()).unwrap();
        std::thread::sleep(hold);
    });
    is_held.recv().unwrap();
    holder
}

#[test]
fn an_iptables_waiting_for_its_lock_stalls_no_store_operation() {
    if !root_or_skip("an_iptables_waiting_for_its_lock_stalls_no_store_operation") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    // The new bridge's elements of weave's nftables table exist already (as after its
    // first attach): writing them moves the nf_tables generation, and then every bridge's
    // next attach verifies its rule, waiting for the firewall lock the stalled hook holds.
    weave_hook::nftables::ensure(
        "wvstall",
        weave_hook::nftables::Openings {
            dns: s.dns_addr().addr(),
            exposed: &[],
        },
        weave_hook::nftables::Rewrite::Always,
    )
    .unwrap();
    let a = Container::start("a");
    attach(&s, &a.state("10.2.0.1/24")).unwrap();

    // Long enough to see a stall, shorter than the hook's `-w 5`.
    let hold = Duration::from_secs(3);
    let holder = hold_xtables_lock(hold);
    let held_since = Instant::now();
    // A hook on a new bridge with iptables-legacy: its check waits for the lock.
    let legacy = Wrapper::new("/usr/sbin/iptables-legacy");
    let b = Container::start("b");
    let stalled = legacy.spawn_hook(
        dir.path(),
        "wvstall",
        &["attach"],
        &b.state_json("10.3.0.1/24"),
    );
    while !fs::read_to_string(&legacy.log).is_ok_and(|l| l.contains("-C")) {
        assert!(
            held_since.elapsed() < hold,
            "the stalled hook never ran iptables -C"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));

    // Meanwhile an attach whose rule is known (no iptables), a detach and gc all go through.
    let start = Instant::now();
    let c = Container::start("c");
    attach(&s, &c.state("10.2.0.3/24")).unwrap();
    detach(&s, &a.id).unwrap();
    weave_core::store::Store::open(dir.path())
        .unwrap()
        .collect_garbage()
        .unwrap();
    let took = start.elapsed();
    let still_held = held_since.elapsed() < hold;
    assert!(
        took < Duration::from_secs(1) && still_held,
        "store operations took {took:?} while iptables waited for its lock"
    );

    let out = stalled.wait_with_output().unwrap();
    holder.join().unwrap();
    assert!(
        out.status.success(),
        "the stalled attach completes once the lock is free: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(rules("iptables-legacy", "wvstall"), 1);
}

#[test]
fn the_generation_moves_with_rule_changes_not_with_checks() {
    if !root_or_skip("the_generation_moves_with_rule_changes_not_with_checks") {
        return;
    }
    docker_host();
    let generation = || weave_hook::nftgen::generation().unwrap();
    let g0 = generation();
    let check = Command::new("iptables")
        .args(["-w", "-C", "FORWARD", "-i", "nothing0", "-j", "ACCEPT"])
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1));
    assert_eq!(generation(), g0, "a check changes nothing");
    sh("iptables -w -A FORWARD -i nothing0 -j ACCEPT");
    let g1 = generation();
    assert!(g1 > g0, "{g1} > {g0}");
    sh("iptables -w -F FORWARD");
    assert!(generation() > g1);
}

#[test]
fn a_set_change_tells_the_generation_it_made() {
    if !root_or_skip("a_set_change_tells_the_generation_it_made") {
        return;
    }
    bare_host();
    sh("nft add table inet wvgen; nft add set inet wvgen s '{ type ipv4_addr; }'");
    let key = |ip: [u8; 4]| ip.to_vec();
    let change = |op, ip| {
        weave_hook::nftgen::change_elements(
            weave_hook::nftgen::FAMILY_INET,
            "wvgen",
            op,
            &[("s", vec![key(ip)])],
        )
    };
    let before = weave_hook::nftgen::generation().unwrap();
    let made = change(weave_hook::nftgen::ElementOp::Add, [10, 9, 0, 1]).unwrap();
    let now = weave_hook::nftgen::generation().unwrap();
    assert_eq!(made, Some(now), "the echoed generation is the current one");
    assert_eq!(now, before.wrapping_add(1));
    assert!(sh("nft list set inet wvgen s").contains("10.9.0.1"));
    // Another change in between: each transaction still tells its own.
    sh("nft add element inet wvgen s '{ 10.9.0.2 }'");
    let made = change(weave_hook::nftgen::ElementOp::Delete, [10, 9, 0, 1]).unwrap();
    assert_eq!(made, Some(now.wrapping_add(2)));
    // A failed transaction tells nothing and changes nothing.
    let err = change(weave_hook::nftgen::ElementOp::Delete, [10, 9, 0, 1]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    assert_eq!(
        weave_hook::nftgen::generation().unwrap(),
        now.wrapping_add(2)
    );
}

#[test]
fn concurrent_first_attaches_add_one_rule() {
    if !root_or_skip("concurrent_first_attaches_add_one_rule") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let cs: Vec<Container> = (0..8).map(|i| Container::start(&format!("c{i}"))).collect();
    std::thread::scope(|scope| {
        for c in &cs {
            // Threads inherit the creating thread's namespaces, so all share this "host".
            scope.spawn(|| attach(&s, &c.state("net:10.2.0.0/24")).unwrap());
        }
    });
    assert_eq!(rules("iptables", "weave"), 1);
}

#[test]
fn a_marker_from_another_namespace_is_not_trusted() {
    if !root_or_skip("a_marker_from_another_namespace_is_not_trusted") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let a = Container::start("a");
    attach(&s, &a.state("10.2.0.1/24")).unwrap();
    let seen = weave_hook::nftgen::generation().unwrap();
    // The same state dir in a new "host" namespace, whose generation starts over: brought
    // to the very generation the marker recorded, so only the namespace tells them apart.
    docker_host();
    for i in 0.. {
        let now = weave_hook::nftgen::generation().unwrap();
        assert!(now <= seen && i < 100, "generation {now} passed {seen}");
        if now == seen {
            break;
        }
        sh("iptables -w -A FORWARD -i nothing0 -j ACCEPT");
    }
    let b = Container::start("b");
    attach(&s, &b.state("10.2.0.2/24")).unwrap();
    assert_eq!(rules("iptables", "weave"), 1);
}

#[test]
fn a_planted_marker_link_is_replaced_not_followed() {
    if !root_or_skip("a_planted_marker_link_is_replaced_not_followed") {
        return;
    }
    docker_host();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("created-by-root");
    std::os::unix::fs::symlink(&target, dir.path().join("firewall-weave")).unwrap();
    let s = settings(dir.path());
    let (_a, _b) = two_talking(&s);
    assert!(!target.exists(), "root wrote through the planted link");
    let marker = std::fs::symlink_metadata(dir.path().join("firewall-weave")).unwrap();
    assert!(
        marker.is_file(),
        "the link was replaced by a marker of ours"
    );
}
