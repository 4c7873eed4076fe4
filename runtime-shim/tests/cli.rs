//! The weave-runtime binary end to end, without the hook: what reaches the real runtime
//! (a recording fake runtime here, real runc in `passthrough.rs`), what is written to the
//! bundle, and how bad input fails: one `weave-runtime:` line, config.json untouched, no
//! temporary file left, the runtime never started.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};
use tempfile::TempDir;

const SHIM: &str = env!("CARGO_BIN_EXE_weave-runtime");
const ID: &str = "c1";

/// A bundle, a fake runtime that records its pid, argv and environment, a fake weave-hook.
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new(config: &Value) -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("bundle")).unwrap();
        fs::write(dir.path().join("bundle/config.json"), config.to_string()).unwrap();
        write_exe(
            &dir.path().join("runtime"),
            "#!/bin/sh\n{ echo \"$$\"; for a in \"$@\"; do echo \"$a\"; done; } > \"$(dirname \"$0\")/record\"\n\
             cp /proc/$$/environ \"$(dirname \"$0\")/environ\"\nexit 7\n",
        );
        write_exe(&dir.path().join("weave-hook"), "#!/bin/sh\nexit 0\n");
        Fixture { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn bundle(&self) -> PathBuf {
        self.path("bundle")
    }

    fn config_bytes(&self) -> Vec<u8> {
        fs::read(self.bundle().join("config.json")).unwrap()
    }

    fn config(&self) -> Value {
        serde_json::from_slice(&self.config_bytes()).unwrap()
    }

    /// weave-runtime with the fixture's runtime, hook and state dir, and `args`.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(SHIM);
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("WEAVE_RUNTIME", self.path("runtime"))
            .arg(format!(
                "--weave-hook-path={}",
                self.path("weave-hook").display()
            ))
            .arg(format!(
                "--weave-state-dir={}",
                self.path("state").display()
            ))
            .args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// The pid and arguments the fake runtime recorded, if it ran.
    fn record(&self) -> Option<Vec<String>> {
        let text = fs::read_to_string(self.path("record")).ok()?;
        Some(text.lines().map(str::to_owned).collect())
    }

    fn bundle_listing(&self) -> Vec<String> {
        let mut names: Vec<_> = fs::read_dir(self.bundle())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn create_args(&self) -> Vec<String> {
        let b = self.bundle().display().to_string();
        [
            "--root",
            "/r",
            "--log-format",
            "json",
            "create",
            "--bundle",
            &b,
            "--pid-file",
            "/p",
            ID,
        ]
        .map(str::to_owned)
        .to_vec()
    }
}

fn write_exe(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

fn docker_like(annotations: Value) -> Value {
    json!({
        "ociVersion": "1.2.0",
        "process": {"args": ["sh"], "env": ["PATH=/bin"], "cwd": "/"},
        "root": {"path": "rootfs"},
        "mounts": [{"destination": "/etc/resolv.conf", "type": "bind",
                    "source": "/nonexistent/resolv.conf", "options": ["rbind", "rprivate"]}],
        "hooks": {"prestart": [{"path": "/proc/1/exe", "args": ["libnetwork-setkey", "x"]}]},
        "annotations": annotations,
    })
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Runs a failing case and checks everything bad input must guarantee.
fn assert_refused(f: &Fixture, args: &[&str], expect_in_message: &str) {
    let before = f.config_bytes();
    let listing = f.bundle_listing();
    let out = f.run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr}");
    assert!(stderr.starts_with("weave-runtime: "), "{stderr}");
    assert!(
        stderr.contains(expect_in_message),
        "{stderr:?} lacks {expect_in_message:?}"
    );
    assert_eq!(f.config_bytes(), before, "config.json changed");
    assert_eq!(f.bundle_listing(), listing, "a file was left in the bundle");
    assert!(f.record().is_none(), "the runtime ran");
    assert!(!f.path("state/resolv").join(format!("{ID}.conf")).exists());
}

#[test]
fn create_injects_the_hook_and_execs_the_runtime_with_the_same_arguments() {
    let f = Fixture::new(&docker_like(json!({"weave.cidr": "10.2.0.5/24"})));
    let config_path = f.bundle().join("config.json");
    fs::set_permissions(&config_path, fs::Permissions::from_mode(0o600)).unwrap();
    let args = f.create_args();
    let out = f.run(&strs(&args));
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(&f.record().unwrap()[1..], args.as_slice());

    let config = f.config();
    let hook = f.path("weave-hook").display().to_string();
    let state = format!("--state-dir={}", f.path("state").display());
    assert_eq!(
        config["hooks"]["createRuntime"],
        json!([{"path": hook, "args": ["weave-hook", state, "attach"]}])
    );
    assert_eq!(
        config["hooks"]["poststop"],
        json!([{"path": hook, "args": ["weave-hook", state, "detach"]}])
    );
    assert_eq!(
        config["hooks"]["prestart"][0]["args"][0],
        "libnetwork-setkey"
    );
    let mode = fs::metadata(&config_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode not preserved");
    assert_eq!(f.bundle_listing(), ["config.json"]);
}

#[test]
fn a_container_asking_for_nothing_keeps_its_config_json_file_untouched() {
    let f = Fixture::new(&docker_like(json!({"other": "x"})));
    let config_path = f.bundle().join("config.json");
    let before = fs::metadata(&config_path).unwrap();
    let bytes = f.config_bytes();
    let out = f.run(&strs(&f.create_args()));
    assert_eq!(out.status.code(), Some(7));
    let after = fs::metadata(&config_path).unwrap();
    assert_eq!(f.config_bytes(), bytes);
    // Not even rewritten with the same bytes: same inode, same modification time.
    assert_eq!(
        (before.ino(), before.mtime_nsec()),
        (after.ino(), after.mtime_nsec())
    );
    assert!(!f.path("state").exists());
}

#[test]
fn weave_dns_writes_resolv_conf_under_the_state_dir_and_mounts_it() {
    let f = Fixture::new(&docker_like(json!({"weave.dns": "true"})));
    let host_resolv = f.path("host-resolv.conf");
    fs::write(
        &host_resolv,
        "nameserver 10.255.255.53\nsearch corp.example\n",
    )
    .unwrap();
    let mut config = f.config();
    config["mounts"][0]["source"] = json!(host_resolv);
    fs::write(f.bundle().join("config.json"), config.to_string()).unwrap();

    let out = f.run(&strs(&f.create_args()));
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resolv = f.path("state/resolv/c1.conf");
    assert_eq!(
        fs::read_to_string(&resolv).unwrap(),
        "# Written by weave-runtime for container c1\nnameserver 10.32.0.1\n\
         nameserver 10.255.255.53\nsearch weave.local. corp.example\n"
    );
    assert_eq!(
        fs::metadata(&resolv).unwrap().permissions().mode() & 0o777,
        0o644
    );
    // The state directory is private whoever creates it first (weave-hook makes it 0700).
    for dir in ["state", "state/resolv"] {
        let mode = fs::metadata(f.path(dir)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{dir}");
    }
    assert_eq!(f.config()["mounts"][0]["source"], json!(resolv));
    assert_eq!(fs::read_dir(f.path("state/resolv")).unwrap().count(), 1);
}

#[test]
fn a_file_that_already_names_weave_dns_first_is_left_to_the_engine() {
    let f = Fixture::new(&docker_like(json!({"weave.dns": "true"})));
    let docker_resolv = f.path("docker-resolv.conf");
    fs::write(&docker_resolv, "nameserver 10.32.0.1\noptions ndots:0\n").unwrap();
    let mut config = f.config();
    config["mounts"][0]["source"] = json!(docker_resolv);
    fs::write(f.bundle().join("config.json"), config.to_string()).unwrap();

    let out = f.run(&strs(&f.create_args()));
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(f.config()["mounts"][0]["source"], json!(docker_resolv));
    assert!(!f.path("state/resolv/c1.conf").exists());
}

#[test]
fn other_commands_pass_through_with_same_argv_env_and_pid() {
    let f = Fixture::new(&docker_like(json!({"weave.cidr": "10.2.0.5/24"})));
    let before = f.config_bytes();
    for args in [
        vec!["features"],
        vec!["--version"],
        vec!["--root", "/r", "--log", "/l", "state", ID],
        vec!["--root=/r", "delete", "--force", ID],
        vec!["--debug", "exec", "--process", "/p.json", ID],
        vec!["kill", ID, "KILL"],
        vec!["start", ID],
        vec!["arg with spaces", "x\ty", ""],
    ] {
        let mut cmd = f.command(&args);
        cmd.env("ODD_VALUE", "a b\tc=d");
        let child = cmd.stdout(std::process::Stdio::null()).spawn().unwrap();
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(7), "{args:?}");
        let record = f.record().unwrap();
        assert_eq!(record[0], pid.to_string(), "not exec'd in place: {args:?}");
        assert_eq!(strs(&record[1..]), args);

        let mut environ: Vec<String> = fs::read_to_string(f.path("environ"))
            .unwrap()
            .split_terminator('\0')
            .map(str::to_owned)
            .collect();
        environ.sort();
        let mut expected = vec![
            "ODD_VALUE=a b\tc=d".to_owned(),
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
            format!("WEAVE_RUNTIME={}", f.path("runtime").display()),
        ];
        expected.sort();
        assert_eq!(environ, expected);
    }
    assert_eq!(f.config_bytes(), before);
}

#[test]
fn shim_flags_from_runtime_args_are_stripped_wherever_they_sit_among_globals() {
    let f = Fixture::new(&docker_like(json!({"weave.cidr": "10.2.0.5/24"})));
    let b = f.bundle().display().to_string();
    let out = f.run(&[
        "--weave-bridge",
        "wv0",
        "--root",
        "/r",
        "--weave-mtu=1400",
        "create",
        "-b",
        &b,
        ID,
    ]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(
        &f.record().unwrap()[1..],
        ["--root", "/r", "create", "-b", &b, ID]
    );
    let args = &f.config()["hooks"]["createRuntime"][0]["args"];
    assert_eq!(args[1], "--bridge=wv0");
    assert_eq!(args[3], "--mtu=1400");
}

#[test]
fn bad_json_is_refused() {
    let f = Fixture::new(&json!({}));
    fs::write(
        f.bundle().join("config.json"),
        b"{\"annotations\": {\"weave.cidr\": ",
    )
    .unwrap();
    assert_refused(
        &f,
        &strs(&f.create_args()),
        "container c1: config.json is not valid JSON",
    );
}

#[test]
fn a_config_that_is_not_an_object_is_refused() {
    let f = Fixture::new(&json!(["weave.cidr"]));
    assert_refused(&f, &strs(&f.create_args()), "not a JSON object");
}

#[test]
fn a_missing_bundle_is_refused() {
    let f = Fixture::new(&json!({}));
    let missing = f.path("no-such-bundle").display().to_string();
    assert_refused(
        &f,
        &["create", "--bundle", &missing, ID],
        "is --bundle right?",
    );
    fs::remove_file(f.bundle().join("config.json")).unwrap();
    let b = f.bundle().display().to_string();
    let out = f.run(&["create", "-b", &b, ID]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .starts_with("weave-runtime: container c1: cannot read"));
    assert!(f.record().is_none());
}

#[test]
fn bad_annotations_are_refused() {
    for (annotations, message) in [
        (
            json!({"weave.dns": "maybe"}),
            "bad weave.dns annotation \"maybe\": use true or false",
        ),
        (
            json!({"weave.dns": "true", "weave.dns.server": "10.2.0"}),
            "weave.dns.server=\"10.2.0\": not an IP address",
        ),
        (
            json!({"weave.dns": "true", "weave.dns.search": "ok.example bad!name"}),
            "\"bad!name\" is not a domain name",
        ),
        (
            json!({"weave.cidr": 5}),
            "annotation weave.cidr is not a string",
        ),
        (json!(["weave.cidr"]), "\"annotations\" is not an object"),
        (
            json!({"weave.cidr": "10.2.0.5"}),
            "bad annotation weave.cidr \"10.2.0.5\": entry '10.2.0.5' has no prefix",
        ),
        (
            json!({"weave.cidr": "none 10.2.0.5/24"}),
            "'none' cannot be combined",
        ),
    ] {
        let f = Fixture::new(&docker_like(annotations));
        assert_refused(&f, &strs(&f.create_args()), message);
    }
}

#[test]
fn a_bad_weave_cidr_in_the_environment_is_refused() {
    let mut config = docker_like(json!({}));
    config["process"]["env"] = json!(["PATH=/bin", "WEAVE_CIDR=net:10.2.0.1/24"]);
    let f = Fixture::new(&config);
    assert_refused(
        &f,
        &strs(&f.create_args()),
        "container c1: bad environment variable WEAVE_CIDR \"net:10.2.0.1/24\": entry",
    );
}

#[test]
fn malformed_hooks_or_mounts_are_refused() {
    let mut config = docker_like(json!({"weave.cidr": "10.2.0.5/24"}));
    config["hooks"] = json!([]);
    let f = Fixture::new(&config);
    assert_refused(&f, &strs(&f.create_args()), "\"hooks\" is not an object");

    let mut config = docker_like(json!({"weave.dns": "true"}));
    config["mounts"] = json!({});
    let f = Fixture::new(&config);
    assert_refused(&f, &strs(&f.create_args()), "\"mounts\" is not an array");
}

#[test]
fn an_unsafe_container_id_is_refused() {
    let f = Fixture::new(&docker_like(json!({"weave.dns": "true"})));
    let b = f.bundle().display().to_string();
    assert_refused(
        &f,
        &["create", "-b", &b, "../../etc"],
        "invalid container id \"../../etc\"",
    );
    assert_refused(&f, &["create", "-b", &b, ".."], "invalid container id");
}

#[test]
fn a_state_dir_others_can_change_is_refused() {
    let mut config = docker_like(json!({"weave.dns": "true"}));
    config["mounts"] = json!([]);
    let f = Fixture::new(&config);
    fs::create_dir(f.path("state")).unwrap();
    fs::set_permissions(f.path("state"), fs::Permissions::from_mode(0o777)).unwrap();
    assert_refused(
        &f,
        &strs(&f.create_args()),
        "state is writable by its group or others (mode 777)",
    );
    assert!(!f.path("state/resolv").exists());
}

#[test]
fn settings_the_hook_would_refuse_fail_the_create() {
    let f = Fixture::new(&docker_like(json!({"weave.cidr": "10.2.0.5/24"})));
    for (flag, why) in [
        (
            "--weave-ipalloc-range=10.32.5.0/12",
            "has host bits set; the subnet is 10.32.0.0/12",
        ),
        (
            "--weave-log-level=verbose",
            "is not a log level; use one of error, warn",
        ),
        ("--weave-mtu=40", "not an MTU"),
        ("--weave-state-dir=relative", "not an absolute path"),
        ("--weave-dns-addr=10.32.0.7/12", "is inside --ipalloc-range"),
    ] {
        let mut args = vec![flag.to_owned()];
        args.extend(f.create_args());
        assert_refused(&f, &strs(&args), why);
    }
}

#[test]
fn a_repeated_weave_cidr_counts_by_its_last_definition() {
    // As runc gives it to the process: the last one. Here the first alone would opt out.
    let mut config = docker_like(json!({}));
    config["process"]["env"] = json!(["WEAVE_CIDR=none", "WEAVE_CIDR=10.2.0.5/24"]);
    let f = Fixture::new(&config);
    let out = f.run(&strs(&f.create_args()));
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        f.config()["hooks"]["createRuntime"].is_array(),
        "the hook is added"
    );
    let mut config = docker_like(json!({}));
    config["process"]["env"] = json!(["WEAVE_CIDR=10.2.0.5/24", "WEAVE_CIDR=none"]);
    let f = Fixture::new(&config);
    let before = f.config_bytes();
    let out = f.run(&strs(&f.create_args()));
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(f.config_bytes(), before, "opted out: untouched");
}

#[test]
fn ids_past_the_limit_are_refused_by_the_hooks_rule() {
    let f = Fixture::new(&docker_like(json!({"weave.cidr": "10.2.0.5/24"})));
    let b = f.bundle().display().to_string();
    let long = "a".repeat(251);
    assert_refused(
        &f,
        &["create", "-b", &b, &long],
        "is 251 bytes long; weave accepts ids of at most 250 bytes",
    );
    let longest = "a".repeat(250);
    let out = f.run(&["create", "-b", &b, &longest]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_unreadable_resolv_conf_source_is_refused() {
    let f = Fixture::new(&docker_like(json!({"weave.dns": "true"})));
    assert_refused(
        &f,
        &strs(&f.create_args()),
        "cannot read the container's resolv.conf /nonexistent/resolv.conf",
    );
}

#[test]
fn a_missing_hook_binary_is_refused() {
    let f = Fixture::new(&docker_like(json!({"weave.cidr": "10.2.0.5/24"})));
    let mut args = vec!["--weave-hook-path=/nonexistent/weave-hook".to_owned()];
    args.extend(f.create_args());
    assert_refused(
        &f,
        &strs(&args),
        "weave-hook not found at /nonexistent/weave-hook",
    );
}

#[test]
fn bad_shim_flags_are_refused_for_every_command() {
    let f = Fixture::new(&docker_like(json!({"weave.cidr": "10.2.0.5/24"})));
    for (flag, message) in [
        ("--weave-colour=blue", "unknown flag --weave-colour"),
        ("--weave-mtu=9", "--weave-mtu \"9\": \"9\" is not an MTU"),
        (
            "--weave-bridge=much-too-long-name",
            "must be 1 to 15 bytes long",
        ),
        ("--weave-ipalloc-range=10.32.0.0", "is not an IPv4 subnet"),
        ("--weave-state-dir=relative", "is not an absolute path"),
        (
            "--weave-dns-addr=10.2.0.99",
            "not an IPv4 address with prefix",
        ),
        ("--weave-runtime=", "must not be empty"),
    ] {
        assert_refused(&f, &[flag, "features"], message);
        let mut args = vec![flag.to_owned()];
        args.extend(f.create_args());
        assert_refused(&f, &strs(&args), message);
    }
    assert_refused(&f, &["--weave-bridge"], "flag --weave-bridge needs a value");
}

#[test]
fn a_missing_runtime_is_refused_before_anything_is_written() {
    let f = Fixture::new(&docker_like(json!({"weave.cidr": "10.2.0.5/24"})));
    let before = f.config_bytes();
    let out = f
        .command(&strs(&f.create_args()))
        .env("WEAVE_RUNTIME", "no-such-runtime")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.starts_with("weave-runtime: runtime \"no-such-runtime\" not found on PATH"),
        "{stderr}"
    );
    assert_eq!(f.config_bytes(), before);
}

#[test]
fn a_runtime_that_cannot_be_executed_leaves_no_resolv_conf() {
    let f = Fixture::new(&docker_like(json!({"weave.dns": "true"})));
    let host_resolv = f.path("host-resolv.conf");
    fs::write(&host_resolv, "nameserver 10.255.255.53\n").unwrap();
    let mut config = f.config();
    config["mounts"][0]["source"] = json!(host_resolv);
    fs::write(f.bundle().join("config.json"), config.to_string()).unwrap();
    fs::set_permissions(f.path("runtime"), fs::Permissions::from_mode(0o644)).unwrap();

    let out = f.run(&strs(&f.create_args()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.starts_with("weave-runtime: cannot execute runtime"),
        "{stderr}"
    );
    assert_eq!(fs::read_dir(f.path("state/resolv")).unwrap().count(), 0);
}

#[test]
fn weave_runtime_refuses_to_exec_itself() {
    let f = Fixture::new(&json!({}));
    let out = f
        .command(&["features"])
        .env("WEAVE_RUNTIME", SHIM)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("is weave-runtime itself"), "{stderr}");
}

#[test]
fn a_refusal_is_also_written_to_runcs_json_log_where_containerd_reads_it() {
    let f = Fixture::new(&docker_like(json!({"weave.dns": "maybe"})));
    let log = f.path("log.json");
    fs::write(&log, "{\"level\":\"info\",\"msg\":\"earlier\"}\n").unwrap();
    let b = f.bundle().display().to_string();
    let l = log.display().to_string();
    assert_refused(
        &f,
        &[
            "--log",
            &l,
            "--log-format",
            "json",
            "create",
            "--bundle",
            &b,
            ID,
        ],
        "weave.dns",
    );
    let text = fs::read_to_string(&log).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "error");
    let msg = last["msg"].as_str().unwrap();
    assert!(
        msg.starts_with("weave-runtime: container c1: bad weave.dns annotation \"maybe\""),
        "{msg}"
    );
    assert_eq!(text.lines().count(), 2);
}

#[test]
fn weave_help_prints_the_shims_own_usage() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weave-runtime"))
        .arg("--weave-help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--weave-runtime",
        "--weave-hook-path",
        "--weave-bridge",
        "--weave-ipalloc-range",
        "--weave-state-dir",
        "--weave-mtu",
        "--weave-log-level",
        "--weave-dns-addr",
    ] {
        assert!(text.contains(flag), "{flag} missing from --weave-help");
    }
}
