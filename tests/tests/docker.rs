//! `docker run --runtime weave` end to end: a real dockerd of the test's own (see
//! `weave_e2e::docker`) calls weave-runtime, which injects weave-hook; the hook attaches the
//! container before its first instruction. Runs under a Docker host's firewall (FORWARD DROP,
//! br_netfilter), which dockerd itself sets up in the throwaway host namespace.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use weave_e2e::docker::{resolv_conf, Dockerd, IMAGE};
use weave_e2e::{bin, root_or_skip, run_ok, tool_or_skip, unique, Rootfs, TestHost, WeaveDns};

const TEST: &str = "docker end-to-end";
/// How many `docker run`s must each see ethwe at their first instruction.
const RUNS: usize = 30;

fn prerequisites() -> bool {
    root_or_skip(TEST)
        && [
            "dockerd", "docker", "runc", "unshare", "nsenter", "timeout", "tar",
        ]
        .iter()
        .all(|tool| tool_or_skip(TEST, tool))
}

struct Weave<'d> {
    dockerd: &'d Dockerd<'d>,
    state: tempfile::TempDir,
}

impl Weave<'_> {
    fn ps(&self) -> String {
        run_ok(
            Command::new(bin("weave-hook"))
                .arg("--state-dir")
                .arg(self.state.path())
                .arg("ps"),
        )
    }

    fn resolv_files(&self) -> Vec<String> {
        std::fs::read_dir(self.state.path().join("resolv"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Nothing of any weave container is left: no host veth, no reservation, no resolv.conf.
    /// Docker removes a container asynchronously after `run --rm` returns, so this waits.
    fn assert_nothing_left(&self, after: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let veths = self.dockerd.host().links("vethwe");
            let ps = self.ps();
            let resolv = self.resolv_files();
            if veths.is_empty() && ps.trim().is_empty() && resolv.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "left after {after}: veths {veths:?}, reservations {ps:?}, resolv.conf files {resolv:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn stdout_of_run(dockerd: &Dockerd, args: &[&str]) -> String {
    let mut all = vec!["run", "--rm", "--runtime", "weave"];
    all.extend(args);
    dockerd.ok(&all)
}

fn first_instruction_sees_address(w: &Weave, option: &[&str], cidr: &str) {
    for i in 0..RUNS {
        let mut args = option.to_vec();
        args.extend([IMAGE, "sh", "-c", "ip -o -4 addr show ethwe"]);
        let out = stdout_of_run(w.dockerd, &args);
        assert!(
            out.contains(&format!("inet {cidr} ")),
            "run {i} of {RUNS} with {option:?}: first instruction saw {out:?}"
        );
    }
    w.assert_nothing_left(&format!("{RUNS} runs with {option:?}"));
}

fn two_containers_ping_each_other(w: &Weave) {
    let d = w.dockerd;
    let a = unique("wva");
    let b = unique("wvb");
    for (name, cidr) in [(&a, "10.2.1.1/24"), (&b, "10.2.1.2/24")] {
        let annotation = format!("weave.cidr={cidr}");
        d.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--runtime",
            "weave",
            "--annotation",
            &annotation,
            IMAGE,
            "sleep",
            "600",
        ]);
    }
    d.ok(&["exec", &a, "ping", "-c", "2", "-W", "5", "10.2.1.2"]);
    d.ok(&["exec", &b, "ping", "-c", "2", "-W", "5", "10.2.1.1"]);
    let ps = w.ps();
    assert_eq!(ps.lines().count(), 2, "two reservations expected: {ps}");
    let id_a = d.ok(&["inspect", "-f", "{{.Id}}", &a]).trim().to_owned();
    assert!(ps.contains(&id_a), "{ps}");
    d.ok(&["rm", "--force", &a, &b]);
    w.assert_nothing_left("docker rm of two running containers");
}

fn weave_dns_gives_the_expected_resolv_conf(w: &Weave) {
    let d = w.dockerd;
    let name = unique("wvdns");
    d.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "--runtime",
        "weave",
        "--annotation",
        "weave.cidr=10.2.2.9/24",
        "--annotation",
        "weave.dns=true",
        IMAGE,
        "sleep",
        "600",
    ]);
    let id = d.ok(&["inspect", "-f", "{{.Id}}", &name]).trim().to_owned();
    let seen = d.ok(&["exec", &name, "cat", "/etc/resolv.conf"]);
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(
        lines[0],
        format!("# Written by weave-runtime for container {id}"),
        "{seen}"
    );
    assert_eq!(lines[1], "nameserver 10.32.0.1", "{seen}");
    assert!(
        lines.iter().any(|l| l.starts_with("search weave.local.")),
        "{seen}"
    );
    // Docker's own resolvers follow weave's, from the file Docker generated.
    let docker_file = d
        .path()
        .join("data/containers")
        .join(&id)
        .join("resolv.conf");
    let docker_resolv = std::fs::read_to_string(&docker_file).unwrap();
    for ns in docker_resolv
        .lines()
        .filter(|l| l.starts_with("nameserver "))
        .take(2)
    {
        assert!(lines.contains(&ns), "{ns} missing from {seen}");
    }
    assert_eq!(
        std::fs::read_to_string(resolv_conf(w.state.path(), &id)).unwrap(),
        seen
    );
    d.ok(&["rm", "--force", &name]);
    w.assert_nothing_left("docker rm of a weave.dns container");

    let out = stdout_of_run(
        d,
        &[
            "--annotation",
            "weave.dns=true",
            "--annotation",
            "weave.dns.server=10.2.2.53",
            "--annotation",
            "weave.dns.search=a.example b.example",
            IMAGE,
            "cat",
            "/etc/resolv.conf",
        ],
    );
    assert!(out.contains("\nnameserver 10.2.2.53\n"), "{out}");
    assert!(
        out.contains("\nsearch weave.local. a.example b.example\n"),
        "{out}"
    );
    w.assert_nothing_left("docker run --rm with weave.dns.server");
}

fn a_container_without_weave_options_has_no_ethwe(w: &Weave) {
    let out = stdout_of_run(w.dockerd, &[IMAGE, "ip", "-o", "link"]);
    assert!(out.contains(": lo:"), "{out}");
    assert!(!out.contains("ethwe"), "{out}");
    let out = stdout_of_run(
        w.dockerd,
        &["--annotation", "weave.cidr=none", IMAGE, "ip", "-o", "link"],
    );
    assert!(!out.contains("ethwe"), "{out}");
    assert!(w.ps().trim().is_empty());
}

fn a_bad_annotation_fails_the_run_with_weave_runtimes_message(w: &Weave) {
    let out = w.dockerd.run(&[
        "run",
        "--rm",
        "--runtime",
        "weave",
        "--annotation",
        "weave.cidr=10.2.0.5",
        IMAGE,
        "true",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("weave-runtime: container "), "{stderr}");
    assert!(stderr.contains("has no prefix"), "{stderr}");
    w.assert_nothing_left("a refused create");
}

/// runc fails this create (the command does not exist) after weave-runtime wrote the
/// resolv.conf: runc's poststop hook must still remove it and anything the hook did.
fn a_failed_create_leaves_nothing(w: &Weave) {
    let out = w.dockerd.run(&[
        "run",
        "--rm",
        "--runtime",
        "weave",
        "--annotation",
        "weave.cidr=10.2.0.8/24",
        "--annotation",
        "weave.dns=true",
        IMAGE,
        "/no/such/command",
    ]);
    assert!(!out.status.success());
    w.assert_nothing_left("a create that runc failed");
}

/// Issue 12: errors about another container name it by its engine name where the bundle says
/// it, else by its id. Docker 26 puts no name in config.json (annotations are only the
/// user's, the hostname and HOSTNAME are the short id), so the line names the holder by id.
fn a_refused_attach_names_the_holder_by_its_id(w: &Weave) {
    let d = w.dockerd;
    let holder = unique("wvh");
    let cidr = "weave.cidr=10.2.3.7/24";
    d.ok(&[
        "run",
        "-d",
        "--name",
        &holder,
        "--runtime",
        "weave",
        "--annotation",
        cidr,
        IMAGE,
        "sleep",
        "600",
    ]);
    let id = d
        .ok(&["inspect", "-f", "{{.Id}}", &holder])
        .trim()
        .to_owned();
    let latecomer = unique("wvl");
    let out = d.run(&[
        "run",
        "--rm",
        "--name",
        &latecomer,
        "--runtime",
        "weave",
        "--annotation",
        cidr,
        IMAGE,
        "true",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the latecomer was refused");
    assert!(
        stderr.contains(&format!("address 10.2.3.7 is in use by container {id}")),
        "{stderr}"
    );
    assert_eq!(w.ps().lines().count(), 1, "only the holder: {}", w.ps());
    d.ok(&["rm", "--force", &holder]);
    w.assert_nothing_left("a refused attach and its holder's rm");
}

/// `docker run --network container:X`: the weave network belongs to X's namespace.
fn a_container_sharing_a_namespace_shares_its_ethwe(w: &Weave) {
    let d = w.dockerd;
    let x = unique("wvx");
    let sharer = unique("wvy");
    let detached = |name: &str, network: Option<&str>, cidr: &str| {
        let annotation = format!("weave.cidr={cidr}");
        let mut args = vec!["run", "-d", "--name", name, "--runtime", "weave"];
        args.extend(network.map(|n| ["--network", n]).into_iter().flatten());
        args.extend(["--annotation", &annotation, IMAGE, "sleep", "600"]);
        d.run(&args)
    };
    assert!(detached(&x, None, "10.2.4.5/24").status.success());
    let id_x = d.ok(&["inspect", "-f", "{{.Id}}", &x]).trim().to_owned();
    let of_x = format!("container:{x}");
    let same = detached(&sharer, Some(&of_x), "net:10.2.4.0/24");
    assert!(
        same.status.success(),
        "{}",
        String::from_utf8_lossy(&same.stderr)
    );
    assert_eq!(w.dockerd.host().links("vethwe").len(), 1, "one interface");
    assert_eq!(w.ps().lines().count(), 2, "{}", w.ps());
    let seen = d.ok(&["exec", &sharer, "ip", "-o", "-4", "addr", "show", "ethwe"]);
    assert!(seen.contains("inet 10.2.4.5/24 "), "{seen}");
    let other = d.run(&[
        "run",
        "--rm",
        "--network",
        &of_x,
        "--runtime",
        "weave",
        "--annotation",
        "weave.cidr=10.2.4.6/24",
        IMAGE,
        "true",
    ]);
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert!(!other.status.success(), "a different request is refused");
    assert!(stderr.contains(&format!("container {id_x}")), "{stderr}");
    // The sharer goes first: x keeps its interface and address.
    d.ok(&["rm", "--force", &sharer]);
    let seen = d.ok(&["exec", &x, "ip", "-o", "-4", "addr", "show", "ethwe"]);
    assert!(seen.contains("inet 10.2.4.5/24 "), "{seen}");
    d.ok(&["rm", "--force", &x]);
    w.assert_nothing_left("containers sharing a namespace");
}

#[test]
fn docker_run_with_runtime_weave() {
    if !prerequisites() {
        return;
    }
    let host = TestHost::new();
    let state = tempfile::tempdir().unwrap();
    let bridge = unique("wvd");
    let dockerd = Dockerd::start(
        &host,
        &[
            format!("--weave-bridge={bridge}"),
            format!("--weave-state-dir={}", state.path().display()),
        ],
    );
    dockerd.import(&Rootfs::busybox());
    let w = Weave {
        dockerd: &dockerd,
        state,
    };
    // The weave.dns containers below make the hook start weave-dns: stopped first on drop.
    let _dns = WeaveDns::started_by_hook(w.state.path());
    check_runtime_is_listed(&dockerd);

    first_instruction_sees_address(
        &w,
        &["--annotation", "weave.cidr=10.2.0.5/24"],
        "10.2.0.5/24",
    );
    first_instruction_sees_address(&w, &["-e", "WEAVE_CIDR=10.2.0.6/24"], "10.2.0.6/24");
    two_containers_ping_each_other(&w);
    weave_dns_gives_the_expected_resolv_conf(&w);
    a_container_without_weave_options_has_no_ethwe(&w);
    a_bad_annotation_fails_the_run_with_weave_runtimes_message(&w);
    a_failed_create_leaves_nothing(&w);
    a_refused_attach_names_the_holder_by_its_id(&w);
    a_container_sharing_a_namespace_shares_its_ethwe(&w);
    assert!(
        host.links(&bridge).len() == 1,
        "the bridge lives in the test host"
    );
}

fn check_runtime_is_listed(dockerd: &Dockerd) {
    let info = dockerd.ok(&["info", "--format", "{{json .Runtimes}}"]);
    assert!(info.contains("\"weave\""), "{info}");
    assert!(Path::new(&bin("weave-hook")).exists());
}
