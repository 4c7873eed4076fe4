//! podman running weave-hook from the hooks.d file that `weave-setup podman` wrote: the
//! container's first instruction sees its address, and nothing is left once it is removed.

use std::path::Path;
use std::process::Command;

use weave_e2e::podman::{Podman, IMAGE};
use weave_e2e::{bin, root_or_skip, run_ok, tool_or_skip, unique, Rootfs, TestHost, WeaveDns};

/// Everything one test needs: a throwaway host, hook state and hooks dir of its own, and a
/// bridge name of its own, all passed through weave-setup's flags.
struct Env {
    host: TestHost,
    state: tempfile::TempDir,
    hooks: tempfile::TempDir,
    bridge: String,
}

impl Env {
    fn new(test: &str) -> Option<Self> {
        if !root_or_skip(test) || !tool_or_skip(test, "podman") || !tool_or_skip(test, "runc") {
            return None;
        }
        let env = Self {
            host: TestHost::new(),
            state: tempfile::tempdir().unwrap(),
            hooks: tempfile::tempdir().unwrap(),
            bridge: unique("wvp"),
        };
        env.weave_setup(&["podman"]);
        Some(env)
    }

    fn weave_setup(&self, args: &[&str]) -> String {
        run_ok(
            Command::new(bin("weave-setup"))
                .args(args)
                .arg("--hooks-dir")
                .arg(self.hooks.path())
                .args(self.hook_flags(args)),
        )
    }

    /// weave-setup podman's pass-through flags (uninstall takes none).
    fn hook_flags(&self, args: &[&str]) -> Vec<String> {
        if args.first() != Some(&"podman") {
            return Vec::new();
        }
        vec![
            "--hook-path".into(),
            bin("weave-hook").display().to_string(),
            "--bridge".into(),
            self.bridge.clone(),
            "--state-dir".into(),
            self.state.path().display().to_string(),
        ]
    }

    fn ps(&self) -> String {
        run_ok(
            Command::new(bin("weave-hook"))
                .arg("--state-dir")
                .arg(self.state.path())
                .arg("ps"),
        )
    }

    fn podman(&self) -> Podman<'_> {
        let podman = Podman::new(&self.host, self.hooks.path());
        podman.import(&Rootfs::busybox());
        podman
    }
}

fn ok_stdout(out: &std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn first_instruction_sees_the_address_20_of_20_and_nothing_is_left() {
    let Some(env) = Env::new("first_instruction_sees_the_address_20_of_20_and_nothing_is_left")
    else {
        return;
    };
    let hook_file = env.hooks.path().join("weave.json");
    assert!(hook_file.is_file(), "weave-setup podman wrote no hook file");
    let podman = env.podman();

    for i in 0..20 {
        let cidr = format!("10.2.7.{}/24", 10 + i);
        let out = podman.run(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--annotation",
            &format!("weave.cidr={cidr}"),
            IMAGE,
            "sh",
            "-c",
            "ip -o -4 addr show ethwe",
        ]);
        let stdout = ok_stdout(&out, &format!("run {i}"));
        assert!(
            stdout.contains(&format!("inet {cidr} ")),
            "run {i}: the first instruction saw {stdout:?}"
        );
        assert_eq!(env.ps(), "", "run {i}: poststop released the container");
    }
    assert_eq!(env.host.veths_left(), Vec::<String>::new());
    assert_eq!(
        env.host.links(&env.bridge),
        std::slice::from_ref(&env.bridge)
    );
}

#[test]
fn removed_container_leaves_nothing_and_unannotated_ones_are_not_touched() {
    let Some(env) =
        Env::new("removed_container_leaves_nothing_and_unannotated_ones_are_not_touched")
    else {
        return;
    };
    let podman = env.podman();
    let name = unique("wvpc");
    ok_stdout(
        &podman.run(&[
            "run",
            "--detach",
            "--name",
            &name,
            "--network",
            "none",
            "--annotation",
            "weave.cidr=10.2.6.9/24",
            IMAGE,
            "sleep",
            "300",
        ]),
        "run --detach",
    );
    let ps = env.ps();
    assert!(ps.contains("10.2.6.9"), "not attached: {ps:?}");
    assert_eq!(env.host.links("vethwe").len(), 1);
    let inside = ok_stdout(
        &podman.run(&["exec", &name, "ip", "-o", "-4", "addr", "show", "ethwe"]),
        "exec",
    );
    assert!(inside.contains("inet 10.2.6.9/24"), "{inside:?}");

    ok_stdout(&podman.run(&["rm", "--force", "--time", "0", &name]), "rm");
    assert_eq!(env.ps(), "", "podman rm left a reservation");
    assert_eq!(env.host.veths_left(), Vec::<String>::new());

    // The `when` condition: no weave annotation, no hook.
    let out = podman.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        IMAGE,
        "ip",
        "-o",
        "link",
    ]);
    let links = ok_stdout(&out, "unannotated run");
    assert!(
        !links.contains("ethwe"),
        "hook ran without annotation: {links}"
    );
}

#[test]
fn uninstall_podman_turns_the_hook_off() {
    let Some(env) = Env::new("uninstall_podman_turns_the_hook_off") else {
        return;
    };
    let podman = env.podman();
    env.weave_setup(&["uninstall", "podman"]);
    assert!(!Path::new(&env.hooks.path().join("weave.json")).exists());
    let out = podman.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--annotation",
        "weave.cidr=10.2.5.5/24",
        IMAGE,
        "ip",
        "-o",
        "link",
    ]);
    let links = ok_stdout(&out, "run after uninstall");
    assert!(!links.contains("ethwe"), "hook still ran: {links}");
    assert_eq!(env.ps(), "");
}

/// Issue 12: errors about another container name it by its engine name where the bundle says
/// it, else by its id. podman 4.3 puts no name in config.json or in the state's annotations
/// (looked at: `io.podman.annotations.*`, cri-o's `Created`/`TTY`, and under `kube play`
/// `SandboxID`, the pod's id), so the line names the holder by its full id.
#[test]
fn a_refused_attach_names_the_holder_by_its_id() {
    let Some(env) = Env::new("a_refused_attach_names_the_holder_by_its_id") else {
        return;
    };
    let podman = env.podman();
    let holder = unique("wvph");
    let cidr = "weave.cidr=10.2.4.7/24";
    ok_stdout(
        &podman.run(&[
            "run",
            "--detach",
            "--name",
            &holder,
            "--network",
            "none",
            "--annotation",
            cidr,
            IMAGE,
            "sleep",
            "300",
        ]),
        "run the holder",
    );
    let id = ok_stdout(
        &podman.run(&["inspect", "--format", "{{.Id}}", &holder]),
        "inspect",
    );

    let latecomer = unique("wvpl");
    let args = [
        "run",
        "--rm",
        "--name",
        &latecomer,
        "--network",
        "none",
        "--annotation",
        cidr,
        IMAGE,
        "true",
    ];
    let out = podman.run(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the latecomer was refused");
    assert!(
        stderr.contains(&format!(
            "address 10.2.4.7 is in use by container {}",
            id.trim()
        )),
        "{stderr}"
    );
    let ps = env.ps();
    assert_eq!(ps.lines().count(), 1, "only the holder is attached: {ps}");
    assert_eq!(
        env.host.links("vethwe").len(),
        1,
        "no veth of the latecomer"
    );
}

#[test]
fn failed_starts_leave_their_addresses_free_without_gc() {
    let Some(env) = Env::new("failed_starts_leave_their_addresses_free_without_gc") else {
        return;
    };
    let podman = env.podman();
    // podman runs no poststop when `runc create` fails: the hook attached, the container
    // never started, and nothing detaches it. A /30 has two addresses.
    for i in 0..3 {
        let out = podman.run(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--annotation",
            "weave.cidr=net:10.2.8.0/30",
            IMAGE,
            "/no/such/command",
        ]);
        assert!(!out.status.success(), "failed start {i} failed");
    }
    // The hook did attach them (a record is left: each start may take over, and release, a
    // gone one's address).
    assert!(!env.ps().is_empty(), "the failed starts were attached");
    let out = podman.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--annotation",
        "weave.cidr=net:10.2.8.0/30",
        IMAGE,
        "sh",
        "-c",
        "ip -o -4 addr show ethwe",
    ]);
    let stdout = ok_stdout(&out, "the fourth run, with no gc in between");
    assert!(stdout.contains("inet 10.2.8."), "{stdout}");
    assert_eq!(env.host.veths_left(), Vec::<String>::new());
    run_ok(
        Command::new(bin("weave-hook"))
            .arg("--state-dir")
            .arg(env.state.path())
            .args(["--bridge", &env.bridge, "gc"]),
    );
    assert_eq!(env.ps(), "", "gc collects the failed starts' records");
}

/// Issue 12: weave.dns=true from hooks.d alone gives a podman container weave's resolv.conf
/// (weave DNS first, `weave.local.` searched first, the engine's settings after), read by
/// the container's first instruction, and the file goes with the container.
fn weave_dns_from_the_first_instruction(test: &str, netavark_subnet: Option<&str>) {
    let Some(env) = Env::new(test) else {
        return;
    };
    let _dns = WeaveDns::started_by_hook(env.state.path());
    let podman = env.podman();
    // podman mounts a resolv.conf of its own only with a network; none: the image's file.
    let net_name = unique("wvpn");
    if let Some(subnet) = netavark_subnet {
        let create = [
            "network",
            "create",
            "--disable-dns",
            "--subnet",
            subnet,
            &net_name,
        ];
        ok_stdout(&podman.run(&create), "network create");
    }
    let network = ["--network", netavark_subnet.map_or("none", |_| &net_name)];
    let web = unique("wvpw");
    let mut args = vec!["run", "--detach", "--name", &web, "--hostname", "web"];
    args.extend(&network);
    args.extend([
        "--annotation",
        "weave.cidr=10.2.9.2/24",
        "--annotation",
        "weave.dns=true",
        IMAGE,
        "sleep",
        "300",
    ]);
    ok_stdout(&podman.run(&args), "run web");
    let resolv_path = ok_stdout(
        &podman.run(&["inspect", "--format", "{{.ResolvConfPath}}", &web]),
        "inspect",
    );

    let mut args = vec!["run", "--rm"];
    args.extend(&network);
    args.extend([
        "--annotation",
        "weave.cidr=10.2.9.3/24",
        "--annotation",
        "weave.dns=true",
        IMAGE,
        "sh",
        "-c",
        "nslookup web.weave.local && echo ---- && cat /etc/resolv.conf",
    ]);
    let out = ok_stdout(&podman.run(&args), "the client's first instruction");
    let (lookup, resolv) = out.split_once("----\n").expect("both parts printed");
    assert!(lookup.contains("10.2.9.2"), "{lookup}");
    let mut lines = resolv.lines().filter(|l| !l.starts_with('#'));
    assert_eq!(lines.next(), Some("nameserver 10.32.0.1"), "{resolv}");
    assert!(
        resolv.contains("search weave.local.\n") || resolv.contains("search weave.local. "),
        "{resolv}"
    );

    ok_stdout(&podman.run(&["rm", "--force", "--time", "0", &web]), "rm");
    assert_eq!(env.ps(), "", "podman rm left a reservation");
    assert_eq!(env.host.veths_left(), Vec::<String>::new());
    let resolv_path = resolv_path.trim();
    assert!(
        resolv_path.is_empty() || !Path::new(resolv_path).exists(),
        "{resolv_path} outlived the container"
    );
}

#[test]
fn weave_dns_without_a_network() {
    weave_dns_from_the_first_instruction("weave_dns_without_a_network", None);
}

#[test]
fn weave_dns_on_a_netavark_network() {
    weave_dns_from_the_first_instruction("weave_dns_on_a_netavark_network", Some("10.89.7.0/24"));
}

/// `podman kube play` copies a pod's annotations to every container of the pod: the three
/// share one ethwe, which stays until the pod is removed, even when the container that wired
/// it is SIGKILLed.
#[test]
fn a_kube_play_pod_of_three_shares_one_ethwe_until_it_is_removed() {
    let Some(env) = Env::new("a_kube_play_pod_of_three_shares_one_ethwe_until_it_is_removed")
    else {
        return;
    };
    if !tool_or_skip("kube play", "catatonit") {
        return;
    }
    let podman = env.podman();
    let pod = unique("wvkube");
    let container = |name: &str| {
        format!("  - name: {name}\n    image: {IMAGE}\n    command: [\"sleep\", \"300\"]\n    env:\n    - name: PATH\n      value: /bin:/sbin:/usr/bin:/usr/sbin\n")
    };
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod}\n  annotations:\n    weave.cidr: 10.2.6.5/24\nspec:\n  containers:\n{}{}{}",
        container("a"),
        container("b"),
        container("c")
    );
    let file = env.state.path().join("pod.yaml");
    std::fs::write(&file, yaml).unwrap();
    let file = file.display().to_string();
    ok_stdout(
        &podman.run(&["kube", "play", "--network", "none", &file]),
        "kube play",
    );
    let ps = env.ps();
    assert_eq!(ps.lines().count(), 3, "three containers attached: {ps}");
    assert_eq!(env.host.links("vethwe").len(), 1, "one interface");
    for name in ["a", "b", "c"] {
        let seen = ok_stdout(
            &podman.run(&[
                "exec",
                &format!("{pod}-{name}"),
                "ip",
                "-o",
                "-4",
                "addr",
                "show",
                "ethwe",
            ]),
            "exec",
        );
        assert!(seen.contains("inet 10.2.6.5/24 "), "{name}: {seen}");
    }
    // SIGKILL the container that wired the namespace: no one else may get its address.
    let entries = std::fs::read_dir(env.state.path().join("netns")).unwrap();
    let entry = std::fs::read_to_string(entries.flatten().next().unwrap().path()).unwrap();
    let wirer = entry.split('"').nth(3).unwrap().to_string();
    ok_stdout(&podman.run(&["kill", "--signal", "KILL", &wirer]), "kill");
    run_ok(
        Command::new(bin("weave-hook"))
            .arg("--state-dir")
            .arg(env.state.path())
            .arg("--bridge")
            .arg(&env.bridge)
            .arg("gc"),
    );
    let other = podman.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--annotation",
        "weave.cidr=10.2.6.5/24",
        IMAGE,
        "true",
    ]);
    assert!(!other.status.success(), "the pod's address is still held");
    let id_of = |name: &str| {
        ok_stdout(
            &podman.run(&["inspect", "--format", "{{.Id}}", name]),
            "inspect",
        )
        .trim()
        .to_string()
    };
    let survivor = ["a", "b", "c"]
        .iter()
        .map(|n| format!("{pod}-{n}"))
        .find(|n| id_of(n) != wirer)
        .unwrap();
    let seen = ok_stdout(
        &podman.run(&["exec", &survivor, "ip", "-o", "-4", "addr", "show", "ethwe"]),
        "exec after the kill",
    );
    assert!(seen.contains("inet 10.2.6.5/24 "), "{seen}");
    ok_stdout(&podman.run(&["pod", "rm", "--force", &pod]), "pod rm");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !(env.ps().trim().is_empty() && env.host.links("vethwe").is_empty()) {
        assert!(
            std::time::Instant::now() < deadline,
            "left after pod rm: {} {:?}",
            env.ps(),
            env.host.links("vethwe")
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Issue 12: a pod's containers have `"hostname": null` in config.json and join the pod's
/// UTS namespace: their weave DNS name is the pod's hostname, which another weave container
/// resolves to the pod's address.
#[test]
fn a_kube_play_pod_is_found_by_its_hostname() {
    let test = "a_kube_play_pod_is_found_by_its_hostname";
    let Some(env) = Env::new(test) else {
        return;
    };
    if !tool_or_skip(test, "catatonit") {
        return;
    }
    let _dns = WeaveDns::started_by_hook(env.state.path());
    let podman = env.podman();
    let pod = unique("wvkdns");
    let container = |name: &str| {
        format!("  - name: {name}\n    image: {IMAGE}\n    command: [\"sleep\", \"300\"]\n    env:\n    - name: PATH\n      value: /bin:/sbin:/usr/bin:/usr/sbin\n")
    };
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod}\n  annotations:\n    weave.cidr: 10.2.11.5/24\n    weave.dns: \"true\"\nspec:\n  hostname: PodWeb\n  containers:\n{}{}",
        container("a"),
        container("b"),
    );
    let file = env.state.path().join("pod.yaml");
    std::fs::write(&file, yaml).unwrap();
    let file = file.display().to_string();
    ok_stdout(
        &podman.run(&["kube", "play", "--network", "none", &file]),
        "kube play",
    );
    let ps = env.ps();
    assert_eq!(ps.lines().count(), 2, "both containers attached: {ps}");
    for record in std::fs::read_dir(env.state.path().join("containers")).unwrap() {
        let text = std::fs::read_to_string(record.unwrap().path()).unwrap();
        assert!(text.contains("\"podweb\""), "the pod's hostname: {text}");
    }
    let out = podman.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--annotation",
        "weave.cidr=10.2.11.9/24",
        "--annotation",
        "weave.dns=true",
        IMAGE,
        "nslookup",
        "podweb.weave.local",
    ]);
    let lookup = ok_stdout(&out, "nslookup from another weave container");
    assert!(lookup.contains("10.2.11.5"), "{lookup}");
    ok_stdout(&podman.run(&["pod", "rm", "--force", &pod]), "pod rm");
    assert_eq!(env.ps(), "", "pod rm left a reservation");
}
