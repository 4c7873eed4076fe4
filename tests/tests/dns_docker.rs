//! Weave DNS with `docker run --runtime weave`: a real dockerd of the test's own (see
//! `weave_e2e::docker`) in a throwaway host, weave-dns run the way a service manager would
//! (started before any container, so the hook finds it serving and starts none), and an
//! upstream resolver of the test's own in a namespace of its own.

use std::time::{Duration, Instant};

use weave_e2e::docker::{Dockerd, IMAGE};
use weave_e2e::{root_or_skip, tool_or_skip, Rootfs, TestHost, Upstream, WeaveDns};

const TEST: &str = "docker weave DNS";
const DNS: &str = "10.32.0.1";

fn prerequisites() -> bool {
    root_or_skip(TEST)
        && [
            "dockerd", "docker", "runc", "unshare", "nsenter", "timeout", "tar", "dnsmasq",
        ]
        .iter()
        .all(|tool| tool_or_skip(TEST, tool))
}

fn run_weave_dns_container(d: &Dockerd, name: &str, cidr: &str, extra: &[&str]) -> String {
    let cidr = format!("weave.cidr={cidr}");
    let mut args = vec!["run", "-d", "--name", name, "--runtime", "weave"];
    args.extend(["--annotation", &cidr, "--annotation", "weave.dns=true"]);
    args.extend(extra);
    args.extend([IMAGE, "sleep", "600"]);
    d.ok(&args);
    d.ok(&["inspect", "-f", "{{.Id}}", name]).trim().to_owned()
}

/// nslookup `name` at weave DNS from inside container `from` (the server named, so that a
/// failure never falls through to Docker's nameservers).
fn lookup(d: &Dockerd, from: &str, name: &str) -> Result<String, String> {
    let out = d.run(&["exec", from, "nslookup", name, DNS]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match out.status.success() {
        true => Ok(text),
        false => Err(text),
    }
}

#[test]
fn docker_containers_find_each_other_by_name() {
    if !prerequisites() {
        return;
    }
    let host = TestHost::new();
    let state = tempfile::tempdir().unwrap();
    let _upstream = Upstream::start(&host, &[("outside.test", "10.53.0.99,fd53::99")]);
    let dns = WeaveDns::start(
        &host,
        state.path(),
        &["--listen", DNS, "--upstream", Upstream::ADDR],
    );
    let ours = dns.pid().expect("weave-dns serves");
    let dockerd = Dockerd::start(
        &host,
        &[format!("--weave-state-dir={}", state.path().display())],
    );
    dockerd.import(&Rootfs::busybox());
    let d = &dockerd;

    // wvb by --hostname b, wva by the weave.dns.names annotation.
    run_weave_dns_container(d, "wvb", "10.2.5.2/24", &["--hostname", "b"]);
    run_weave_dns_container(
        d,
        "wva",
        "10.2.5.1/24",
        &["--annotation", "weave.dns.names=alpha"],
    );
    assert_eq!(dns.pid(), Some(ours), "the hook found weave-dns serving");
    let out = lookup(d, "wva", "b.weave.local").unwrap();
    assert!(out.contains("10.2.5.2"), "{out}");
    let out = lookup(d, "wvb", "alpha.weave.local").unwrap();
    assert!(out.contains("10.2.5.1"), "{out}");
    // Through weave-runtime's resolv.conf (weave.local. searched first) and the libc resolver.
    let ping = d.run(&["exec", "wva", "ping", "-c", "1", "-W", "2", "b"]);
    assert!(
        ping.status.success() && String::from_utf8_lossy(&ping.stdout).contains("10.2.5.2"),
        "ping b: {}{}",
        String::from_utf8_lossy(&ping.stdout),
        String::from_utf8_lossy(&ping.stderr)
    );

    // Without --hostname, Docker 26 puts the first 12 hex digits of the id in config.json's
    // hostname, not the --name: that is the name the container gets.
    let id = run_weave_dns_container(d, "wvnamed", "10.2.5.3/24", &[]);
    let out = lookup(d, "wva", &format!("{}.weave.local", &id[..12])).unwrap();
    assert!(out.contains("10.2.5.3"), "{out}");
    let err = lookup(d, "wva", "wvnamed.weave.local").unwrap_err();
    assert!(err.contains("NXDOMAIN"), "{err}");

    // Other names go to the test's own upstream.
    let out = lookup(d, "wva", "outside.test").unwrap();
    assert!(out.contains("10.53.0.99"), "{out}");

    d.ok(&["rm", "--force", "wvb"]);
    let removed = Instant::now();
    loop {
        match lookup(d, "wva", "b.weave.local") {
            Err(out) if out.contains("NXDOMAIN") => break,
            Err(out) => panic!("not NXDOMAIN, {:?} after rm: {out}", removed.elapsed()),
            Ok(_) => assert!(
                removed.elapsed() < Duration::from_secs(10),
                "b still resolves 10 s after docker rm"
            ),
        }
    }
    let took = removed.elapsed();
    eprintln!("b.weave.local failed {took:?} after docker rm --force returned");
    assert!(took < Duration::from_secs(2), "{took:?}");
    // The server still answers: the failure was the name's.
    assert!(lookup(d, "wva", "alpha.weave.local")
        .unwrap()
        .contains("10.2.5.1"));
}

/// Issue 12: on a user-defined network (every compose project's default) a weave DNS
/// container started with `--dns <weave DNS>` keeps Docker's embedded DNS (127.0.0.11, which
/// forwards the names it does not know to weave DNS) and Docker's options: a Docker name and
/// a weave name both resolve from one container.
#[test]
fn docker_names_and_weave_names_on_a_user_defined_network() {
    if !prerequisites() {
        return;
    }
    let host = TestHost::new();
    let state = tempfile::tempdir().unwrap();
    let _dns = WeaveDns::start(&host, state.path(), &["--listen", DNS]);
    let dockerd = Dockerd::start(
        &host,
        &[format!("--weave-state-dir={}", state.path().display())],
    );
    dockerd.import(&Rootfs::busybox());
    let d = &dockerd;
    d.ok(&["network", "create", "--subnet", "10.89.8.0/24", "proj"]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "plainsvc",
        "--network",
        "proj",
        IMAGE,
        "sleep",
        "600",
    ]);
    let on_proj = ["--network", "proj", "--dns", DNS];
    let mut web = vec!["--hostname", "web"];
    web.extend(on_proj);
    run_weave_dns_container(d, "wvweb", "10.2.5.2/24", &web);
    run_weave_dns_container(d, "wvcl", "10.2.5.3/24", &on_proj);

    let resolv = d.ok(&["exec", "wvcl", "cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("nameserver 127.0.0.11\n"), "{resolv}");
    assert!(resolv.contains("ndots:0"), "{resolv}");
    for name in ["plainsvc", "web.weave.local"] {
        let ping = d.run(&["exec", "wvcl", "ping", "-c", "1", "-W", "2", name]);
        assert!(
            ping.status.success(),
            "ping {name}: {}{}\n{resolv}",
            String::from_utf8_lossy(&ping.stdout),
            String::from_utf8_lossy(&ping.stderr)
        );
    }
}
