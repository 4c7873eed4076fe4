//! Weave DNS end to end with real runc, in a throwaway host namespace with a Docker host's
//! firewall: weave-hook starts weave-dns on demand; containers find each other by name;
//! names go with their containers (also when killed without poststop); other names are
//! forwarded to an upstream resolver of the test's own, in a namespace of its own.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use weave_e2e::runc_env::RuncEnv;
use weave_e2e::{bin, run_ok, tool_or_skip, Bundle, Runc, Upstream, WeaveDns};

/// The bound: after a container is gone, its name fails within this.
const GONE_WITHIN: Duration = Duration::from_secs(2);
const OUTSIDE_NAME: &str = "outside.test";
const OUTSIDE_ADDR: &str = "10.53.0.99";

/// A runc environment with weave DNS: the upstream resolver and a guard on the weave-dns the
/// hook will start. Fields drop in order: weave-dns, the upstream, then the host.
struct Env {
    dns: WeaveDns,
    upstream: Upstream,
    runc: RuncEnv,
    resolv: tempfile::NamedTempFile,
}

impl Env {
    fn new(test: &str) -> Option<Self> {
        let runc = RuncEnv::new(test)?;
        if !tool_or_skip(test, "dnsmasq") {
            return None;
        }
        // With an IPv6 address too: dnsmasq without upstreams refuses what it does not have,
        // and busybox nslookup asks for both.
        let both = format!("{OUTSIDE_ADDR},fd53::99");
        let upstream = Upstream::start(&runc.host, &[(OUTSIDE_NAME, &both)]);
        let resolv = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            resolv.path(),
            "nameserver 10.32.0.1\nsearch weave.local.\noptions timeout:1 attempts:1\n",
        )
        .unwrap();
        Some(Self {
            dns: WeaveDns::started_by_hook(runc.state.path()),
            upstream,
            runc,
            resolv,
        })
    }

    fn flags(&self) -> Vec<String> {
        let mut flags = self.runc.flags();
        flags.extend(["--dns-upstream".into(), Upstream::ADDR.into()]);
        flags
    }

    /// A weave DNS container: `cidr`, hostname `hostname`, extra names, /etc/resolv.conf
    /// pointing at weave DNS (what weave-runtime does for Docker).
    fn bundle(&self, args: &[&str], cidr: &str, hostname: &str, names: Option<&str>) -> Bundle {
        let mut b = Bundle::new(&self.runc.rootfs, args);
        let flags = self.flags();
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        b.annotate("weave.cidr", cidr)
            .annotate("weave.dns", "true")
            .with_weave_hook(&flags);
        if let Some(names) = names {
            b.annotate("weave.dns.names", names);
        }
        let resolv = self.resolv.path().to_path_buf();
        b.edit(|c| {
            c["hostname"] = serde_json::json!(hostname);
            c["mounts"].as_array_mut().unwrap().push(serde_json::json!({
                "destination": "/etc/resolv.conf", "type": "bind",
                "source": resolv, "options": ["rbind", "ro"]
            }));
        });
        b
    }

    fn ps(&self) -> String {
        run_ok(Command::new(bin("weave-hook")).args(self.flags()).arg("ps"))
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn start(runc: &Runc, id: &str, bundle: &Bundle) {
    let out = runc.run_detached(id, bundle);
    assert!(out.status.success(), "runc run {id}: {}", text(&out));
}

/// busybox nslookup of `name` from inside container `from`: its output, Err on failure.
fn lookup(runc: &Runc, from: &str, name: &str) -> Result<String, String> {
    let out = runc.exec(from, &["nslookup", name]);
    match out.status.success() {
        true => Ok(text(&out)),
        false => Err(text(&out)),
    }
}

/// How long after `since` the name stopped resolving: polls until nslookup says NXDOMAIN.
fn time_until_nxdomain(runc: &Runc, from: &str, name: &str, since: Instant) -> Duration {
    loop {
        match lookup(runc, from, name) {
            Err(out) if out.contains("NXDOMAIN") => return since.elapsed(),
            Err(out) => panic!(
                "nslookup {name} failed, but not with NXDOMAIN, {:?} after: {out}",
                since.elapsed()
            ),
            Ok(_) => assert!(
                since.elapsed() < Duration::from_secs(10),
                "{name} still resolves 10 s later"
            ),
        }
    }
}

#[test]
fn containers_find_each_other_by_name_and_names_go_with_them() {
    let Some(env) = Env::new("containers_find_each_other_by_name_and_names_go_with_them") else {
        return;
    };
    let runc = Runc::new(&env.runc.host);
    // `a` is in a subnet the host has no route for, and that does not hold 10.32.0.1: it
    // reaches weave DNS by the /32 route the hook adds, and gets replies through the bridge.
    // Bundles live as long as their containers: runc exec needs them.
    let a = env.bundle(&["sleep", "600"], "10.2.0.1/24", "a", None);
    start(&runc, "a", &a);
    assert!(env.dns.pid().is_some(), "the hook started weave-dns");
    let routes = text(&runc.exec("a", &["ip", "route"]));
    assert!(
        routes.contains("10.32.0.1 dev ethwe scope link"),
        "{routes}"
    );
    assert!(!routes.contains("default"), "{routes}");
    // By hostname and by annotation names; `c` in the default range.
    let b = env.bundle(&["sleep", "600"], "10.2.0.2/24", "b", Some("bee"));
    start(&runc, "b", &b);
    let c = env.bundle(
        &["sleep", "600"],
        "net:default",
        "c-host",
        Some("cache,web"),
    );
    start(&runc, "c", &c);
    let c_addr = address_of(&env, "c");

    let b = lookup(&runc, "a", "b.weave.local").unwrap();
    assert!(b.contains("10.2.0.2"), "{b}");
    for name in ["cache.weave.local", "web.weave.local", "c-host.weave.local"] {
        let out = lookup(&runc, "a", name).unwrap();
        assert!(out.contains(&c_addr), "{name}: {out}");
    }
    // c has no route to 10.32.0.1 to add (its subnet holds it) and resolves too.
    assert!(lookup(&runc, "c", "b.weave.local")
        .unwrap()
        .contains("10.2.0.2"));
    // Short names through the search domain, then ping by name (the libc resolver).
    let ping = runc.exec("a", &["ping", "-c", "1", "-W", "2", "b"]);
    assert!(ping.status.success(), "ping b: {}", text(&ping));
    assert!(text(&ping).contains("10.2.0.2"), "{}", text(&ping));
    let ping = runc.exec("a", &["ping", "-c", "1", "-W", "2", "bee"]);
    assert!(ping.status.success(), "ping bee: {}", text(&ping));
    // Control for what follows: an unknown name fails with NXDOMAIN, not a timeout.
    assert!(lookup(&runc, "a", "nobody.weave.local")
        .unwrap_err()
        .contains("NXDOMAIN"));

    // Removed (poststop ran): the name fails within 2 s, and the others still resolve.
    let bridge_mac = mac_of(&env, "weave");
    runc.remove("b");
    let removed = Instant::now();
    let took = time_until_nxdomain(&runc, "a", "b.weave.local", removed);
    eprintln!("b.weave.local failed {took:?} after runc delete returned");
    assert!(took < GONE_WITHIN, "{took:?}");
    assert!(lookup(&runc, "a", "web.weave.local")
        .unwrap()
        .contains(&c_addr));

    // Killed, and no poststop (never deleted): its record stays, its name goes.
    let k = env.bundle(&["sleep", "600"], "10.2.0.3/24", "k", None);
    start(&runc, "k", &k);
    assert!(lookup(&runc, "a", "k.weave.local")
        .unwrap()
        .contains("10.2.0.3"));
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(runc.pid("k") as i32, libc::SIGKILL) };
    let killed = Instant::now();
    let took = time_until_nxdomain(&runc, "a", "k.weave.local", killed);
    eprintln!("k.weave.local failed {took:?} after SIGKILL");
    assert!(took < GONE_WITHIN, "{took:?}");
    assert!(
        env.ps().lines().any(|l| l.starts_with("k ")),
        "k's record is still there: {}",
        env.ps()
    );

    // The bridge kept its MAC as ports left: containers' ARP entries for 10.32.0.1 hold.
    assert_eq!(mac_of(&env, "weave"), bridge_mac);

    // A name outside weave.local goes to the test's own upstream, in its own namespace.
    let out = lookup(&runc, "a", OUTSIDE_NAME).unwrap();
    assert!(out.contains(OUTSIDE_ADDR), "{out}");

    // Queries that reach the host from another of its networks (here the upstream's, routed
    // to 10.32.0.1 through the host) get no answer: weave-dns is not an open resolver.
    run_ok(
        env.upstream
            .command("ip")
            .args(["route", "add", "10.32.0.1/32", "via", "10.53.0.1"]),
    );
    let out = env
        .upstream
        .command("busybox")
        .args(["nslookup", "web.weave.local", "10.32.0.1"])
        .output()
        .unwrap();
    assert!(
        !out.status.success() && text(&out).contains("timed out"),
        "{}",
        text(&out)
    );
    assert!(lookup(&runc, "a", "web.weave.local")
        .unwrap()
        .contains(&c_addr));
}

/// Issue 11, item 6, through the hook: a later container claiming `web` with
/// `weave.dns.names` (and `weave.dns.shared=true`, and an id that sorts first) gets none of
/// `web`'s answers until its holder is gone; containers that share a name are all answered.
#[test]
fn a_later_container_cannot_take_a_name_over() {
    let Some(env) = Env::new("a_later_container_cannot_take_a_name_over") else {
        return;
    };
    let runc = Runc::new(&env.runc.host);
    let holder = env.bundle(&["sleep", "600"], "10.2.0.11/24", "web", None);
    start(&runc, "holder", &holder);
    let mut intruder = env.bundle(&["sleep", "600"], "10.2.0.12/24", "x", Some("web"));
    intruder.annotate("weave.dns.shared", "true");
    start(&runc, "0intruder", &intruder);
    let mut pools = Vec::new();
    for (id, addr) in [("pool1", "10.2.0.13/24"), ("pool2", "10.2.0.14/24")] {
        let mut b = env.bundle(&["sleep", "600"], addr, id, Some("pool"));
        b.annotate("weave.dns.shared", "true");
        start(&runc, id, &b);
        pools.push(b);
    }
    for _ in 0..5 {
        let web = lookup(&runc, "pool1", "web.weave.local").unwrap();
        assert!(
            web.contains("10.2.0.11") && !web.contains("10.2.0.12"),
            "{web}"
        );
    }
    let pool = lookup(&runc, "holder", "pool.weave.local").unwrap();
    assert!(
        pool.contains("10.2.0.13") && pool.contains("10.2.0.14"),
        "{pool}"
    );
    // The holder goes: the name falls to the next claimant.
    runc.remove("holder");
    let removed = Instant::now();
    loop {
        match lookup(&runc, "pool1", "web.weave.local") {
            Ok(web) if web.contains("10.2.0.12") => break,
            _ => assert!(
                removed.elapsed() < GONE_WITHIN,
                "web did not fall to 0intruder"
            ),
        }
    }
}

#[test]
fn concurrent_first_attaches_start_one_server_and_reset_stops_it() {
    let Some(env) = Env::new("concurrent_first_attaches_start_one_server_and_reset_stops_it")
    else {
        return;
    };
    let runc = Runc::new(&env.runc.host);
    let ids: Vec<String> = (0..8).map(|i| format!("n{i}")).collect();
    let bundles: Vec<Bundle> = ids
        .iter()
        .map(|id| env.bundle(&["sleep", "600"], "net:default", id, None))
        .collect();
    std::thread::scope(|s| {
        for (id, bundle) in ids.iter().zip(&bundles) {
            let runc = &runc;
            s.spawn(move || start(runc, id, bundle));
        }
    });
    let servers = weave_dns_processes(&env);
    assert_eq!(
        servers.len(),
        1,
        "weave-dns processes for this state dir: {servers:?}"
    );
    assert_eq!(Some(servers[0]), env.dns.pid());
    for id in &ids {
        let out = lookup(&runc, "n0", &format!("{id}.weave.local")).unwrap();
        assert!(out.contains(&address_of(&env, id)), "{id}: {out}");
    }
    for id in &ids {
        runc.remove(id);
    }
    let reset = env
        .runc
        .host
        .command(bin("weave-hook"))
        .args(env.flags())
        .arg("reset")
        .output()
        .unwrap();
    assert!(reset.status.success(), "{}", text(&reset));
    let pid = servers[0];
    assert!(
        weave_core::process::has_exited(pid),
        "weave-dns {pid} still runs after reset"
    );
    assert!(!env.runc.state.path().join("dns.pid").exists());
    let left = env.runc.host.links("weave");
    assert!(left.is_empty(), "the bridge went with reset: {left:?}");
}

fn mac_of(env: &Env, link: &str) -> String {
    let out = env.runc.host.sh(&format!("ip -o link show {link}"));
    let after = out.split("link/ether ").nth(1).expect("an ethernet link");
    after.split_whitespace().next().unwrap().to_string()
}

/// The first weave address of an attached container, from `weave-hook ps`.
fn address_of(env: &Env, id: &str) -> String {
    env.ps()
        .lines()
        .find(|l| l.starts_with(&format!("{id} ")))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("{id} is not attached: {}", env.ps()))
        .to_string()
}

/// weave-dns processes whose command line names this environment's state dir.
fn weave_dns_processes(env: &Env) -> Vec<i32> {
    let state = env.runc.state.path().display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            cmdline.contains("weave-dns") && cmdline.contains(&state)
        })
        .collect()
}

#[test]
fn refused_dns_containers_leave_nothing_behind() {
    let Some(env) = Env::new("refused_dns_containers_leave_nothing_behind") else {
        return;
    };
    let runc = Runc::new(&env.runc.host);
    let nothing_left = |after: &str| {
        assert_eq!(env.ps(), "", "reservation left after {after}");
        assert_eq!(env.runc.host.veths_left(), Vec::<String>::new(), "{after}");
        assert_eq!(env.dns.pid(), None, "weave-dns left after {after}");
    };

    // A bad name: refused before anything is done, with the culprit named.
    let bad = env.bundle(&["true"], "10.2.0.9/24", "ok", Some("fine, bad_name"));
    let out = runc.run("bad", &bad);
    assert!(!out.status.success());
    let err = text(&out);
    assert!(
        err.contains("weave-hook: container bad: bad weave.dns.names annotation")
            && err.contains("bad_name")
            && err.contains("may only hold letters, digits and '-'"),
        "{err}"
    );
    nothing_left("a bad name");

    // No weave-dns program: the attach is undone.
    let mut missing = env.bundle(&["true"], "10.2.0.9/24", "m", None);
    let mut flags = env.flags();
    flags.extend(["--dns-server-path".into(), "/nonexistent/weave-dns".into()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    missing.with_weave_hook(&flags);
    let out = runc.run("missing", &missing);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("/nonexistent/weave-dns does not exist"),
        "{}",
        text(&out)
    );
    nothing_left("a missing weave-dns");

    // A server that never serves: killed after 2 s (not left running), attach undone.
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let script = dir.path().join("weave-dns");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho $$ > {}\nexec sleep 60\n",
            pid_file.display()
        ),
    )
    .unwrap();
    run_ok(Command::new("chmod").arg("755").arg(&script));
    let mut stuck = env.bundle(&["true"], "10.2.0.9/24", "s", None);
    let mut flags = env.flags();
    flags.extend(["--dns-server-path".into(), script.display().to_string()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    stuck.with_weave_hook(&flags);
    let started = Instant::now();
    let out = runc.run("stuck", &stuck);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("weave-dns did not start: it did not serve within 2 s"),
        "{}",
        text(&out)
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let pid: i32 = pid.trim().parse().unwrap();
    assert!(
        weave_core::process::has_exited(pid),
        "the stuck server {pid} still runs"
    );
    nothing_left("a server that never served");
}

/// Issue 12: a container joining a network namespace whose wiring container did not ask for
/// weave DNS, with no subnet of ethwe holding weave DNS's address, gets the route to it and
/// resolves from its first instruction; the route stays while ethwe does.
#[test]
fn a_member_asking_for_dns_gets_the_route_its_wiring_container_did_not() {
    let Some(env) = Env::new("a_member_asking_for_dns_gets_the_route_its_wiring_container_did_not")
    else {
        return;
    };
    let runc = Runc::new(&env.runc.host);
    let web = env.bundle(&["sleep", "600"], "10.2.14.2/24", "web", None);
    start(&runc, "web", &web);
    let flags = env.flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut wirer = Bundle::new(&env.runc.rootfs, &["sleep", "600"]);
    wirer
        .annotate("weave.cidr", "10.2.15.5/24")
        .with_weave_hook(&flags);
    start(&runc, "wirer", &wirer);
    let routes = text(&runc.exec("wirer", &["ip", "route"]));
    assert!(!routes.contains("10.32.0.1"), "{routes}");
    let netns = format!("/proc/{}/ns/net", runc.pid("wirer"));
    let mut member = env.bundle(
        &["sh", "-c", "nslookup web.weave.local && ip route"],
        "10.2.15.5/24",
        "member",
        None,
    );
    member.edit(|c| {
        for ns in c["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "network" {
                ns["path"] = serde_json::json!(netns);
            }
        }
    });
    let out = runc.run("member", &member);
    let seen = text(&out);
    assert!(
        out.status.success(),
        "the member's first instruction: {seen}"
    );
    assert!(seen.contains("10.2.14.2"), "{seen}");
    assert!(seen.contains("10.32.0.1 dev ethwe scope link"), "{seen}");
    // The member is gone; the namespace's interface, and the route with it, stay.
    let routes = text(&runc.exec("wirer", &["ip", "route"]));
    assert!(
        routes.contains("10.32.0.1 dev ethwe scope link"),
        "{routes}"
    );
    assert_eq!(env.ps().lines().count(), 2, "web and wirer: {}", env.ps());
}
