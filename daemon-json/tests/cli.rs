//! weave-setup as a user runs it: the real binary on real files, including the failure paths
//! (invalid JSON, a conflicting runtime, an unwritable directory, a read-only filesystem, a
//! missing directory) where nothing may change and no temporary file may be left behind.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

const BIN: &str = env!("CARGO_BIN_EXE_weave-setup");
const RUNTIME: &str = "/opt/weave/bin/weave-runtime";

const RICH: &str = r#"{
  "log-opts": {
    "max-size": "10m",
    "nested": {
      "list": [
        1,
        2.50,
        {
          "deep": null
        }
      ]
    }
  },
  "runtimes": {
    "nvidia": {
      "path": "/usr/bin/nvidia-container-runtime"
    }
  },
  "big": 12345678901234567890,
  "huge": 1e+400,
  "name": "ключ 🐳",
  "a-last-key": false
}
"#;

fn weave_setup(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs weave-setup expecting failure with a single `weave-setup:` line mentioning `needle`.
fn assert_fails(output: &Output, needle: &str) {
    let stderr = text(&output.stderr);
    assert!(
        !output.status.success(),
        "succeeded: {}",
        text(&output.stdout)
    );
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr}");
    assert!(stderr.starts_with("weave-setup: "), "{stderr}");
    assert!(stderr.contains(needle), "no {needle:?} in: {stderr}");
}

/// Every file of `dir` with its contents and modification time.
fn snapshot(dir: &Path) -> BTreeMap<String, (Vec<u8>, SystemTime)> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            let contents = if meta.is_file() {
                fs::read(e.path()).unwrap()
            } else {
                Vec::new()
            };
            (
                e.file_name().to_string_lossy().into_owned(),
                (contents, meta.modified().unwrap()),
            )
        })
        .collect()
}

fn docker_install(config: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "docker",
        "--config",
        config.to_str().unwrap(),
        "--runtime-path",
        RUNTIME,
        "--pidfile",
        "/nonexistent/docker.pid",
    ];
    args.extend_from_slice(extra);
    weave_setup(&args)
}

fn setup_with(contents: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("daemon.json");
    fs::write(&config, contents).unwrap();
    (dir, config)
}

fn is_root() -> bool {
    fs::metadata("/proc/self").unwrap().uid() == 0
}

/// Root-only checks run in CI (CI=true) and fail there if we are not root; elsewhere they skip
/// loudly.
fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test} needs root, and CI must run it"
    );
    eprintln!("SKIPPED: {test}: needs root");
    false
}

#[test]
fn install_merges_into_a_rich_file_and_uninstall_restores_it_byte_for_byte() {
    let (dir, config) = setup_with(RICH);
    let out = docker_install(&config, &["--runtime-arg", "--weave-bridge=wv0"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("--reload"),
        "no next step: {}",
        text(&out.stdout)
    );

    let merged = fs::read_to_string(&config).unwrap();
    let expected = RICH.replace(
        "    \"nvidia\": {\n      \"path\": \"/usr/bin/nvidia-container-runtime\"\n    }\n",
        "    \"nvidia\": {\n      \"path\": \"/usr/bin/nvidia-container-runtime\"\n    },\n    \
         \"weave\": {\n      \"path\": \"/opt/weave/bin/weave-runtime\",\n      \
         \"runtimeArgs\": [\n        \"--weave-bridge=wv0\"\n      ]\n    }\n",
    );
    assert_ne!(expected, RICH);
    assert_eq!(merged, expected);
    assert_eq!(
        fs::read_to_string(dir.path().join("daemon.json.weave-backup")).unwrap(),
        RICH
    );

    let out = weave_setup(&["uninstall", "docker", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(fs::read_to_string(&config).unwrap(), RICH);
    assert!(!dir.path().join("daemon.json.weave-state").exists());
}

#[test]
fn second_install_and_second_uninstall_change_nothing_not_even_mtime() {
    let (dir, config) = setup_with(RICH);
    let args = ["--runtime-arg=--weave-bridge=wv0", "--set-as-default"];
    assert!(docker_install(&config, &args).status.success());
    let before = snapshot(dir.path());
    std::thread::sleep(std::time::Duration::from_millis(20));
    let out = docker_install(&config, &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("nothing changed"));
    assert_eq!(snapshot(dir.path()), before);

    let uninstall = ["uninstall", "docker", "--config", config.to_str().unwrap()];
    assert!(weave_setup(&uninstall).status.success());
    let before = snapshot(dir.path());
    std::thread::sleep(std::time::Duration::from_millis(20));
    let out = weave_setup(&uninstall);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("nothing changed"));
    assert_eq!(snapshot(dir.path()), before);
    assert_eq!(fs::read_to_string(&config).unwrap(), RICH);
}

#[test]
fn missing_file_is_created_and_uninstall_leaves_it_empty() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("daemon.json");
    assert!(docker_install(&config, &[]).status.success());
    let created: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(
        created,
        serde_json::json!({"runtimes": {"weave": {"path": RUNTIME}}})
    );
    assert_eq!(fs::metadata(&config).unwrap().mode() & 0o777, 0o644);

    let out = weave_setup(&["uninstall", "docker", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Kept: a dockerd started with --config-file cannot reload or restart without its file.
    assert_eq!(fs::read_to_string(&config).unwrap(), "{}\n");
}

#[test]
fn set_as_default_is_undone_by_uninstall() {
    let original = "{\n  \"default-runtime\": \"runc\"\n}\n";
    let (_dir, config) = setup_with(original);
    assert!(docker_install(&config, &["--set-as-default"])
        .status
        .success());
    assert!(fs::read_to_string(&config)
        .unwrap()
        .contains("\"default-runtime\": \"weave\""));
    assert!(
        weave_setup(&["uninstall", "docker", "--config", config.to_str().unwrap()])
            .status
            .success()
    );
    assert_eq!(fs::read_to_string(&config).unwrap(), original);
}

#[test]
fn invalid_json_is_refused_and_nothing_changes() {
    let (dir, config) = setup_with("{\n  \"debug\": true,\n}\n");
    let before = snapshot(dir.path());
    let out = docker_install(&config, &[]);
    assert_fails(&out, "is not valid JSON");
    assert!(
        text(&out.stderr).contains("line 3"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn conflicting_runtime_is_refused_unless_forced() {
    let original = r#"{"runtimes": {"weave": {"path": "/usr/bin/some-other-runtime"}}}"#;
    let (dir, config) = setup_with(original);
    let before = snapshot(dir.path());
    assert_fails(&docker_install(&config, &[]), "--force");
    assert_eq!(snapshot(dir.path()), before);

    let out = docker_install(&config, &["--force"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(fs::read_to_string(&config).unwrap().contains(RUNTIME));
    assert_eq!(
        fs::read_to_string(dir.path().join("daemon.json.weave-backup")).unwrap(),
        original
    );
}

#[test]
fn dry_run_prints_the_result_and_writes_nothing() {
    let (dir, config) = setup_with(RICH);
    let before = snapshot(dir.path());
    let out = docker_install(&config, &["--dry-run", "--set-as-default"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["runtimes"]["weave"]["path"], RUNTIME);
    assert_eq!(printed["default-runtime"], "weave");
    assert_eq!(snapshot(dir.path()), before);

    let absent = dir.path().join("absent.json");
    assert!(docker_install(&absent, &["--dry-run"]).status.success());
    assert!(!absent.exists());
}

#[test]
fn missing_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("etc/docker/daemon.json");
    assert_fails(&docker_install(&config, &[]), "does not exist");
    assert!(snapshot(dir.path()).is_empty());
}

#[test]
fn relative_runtime_path_is_refused() {
    let (dir, config) = setup_with("{}");
    let before = snapshot(dir.path());
    let out = weave_setup(&[
        "docker",
        "--config",
        config.to_str().unwrap(),
        "--runtime-path",
        "bin/weave-runtime",
    ]);
    assert_fails(&out, "not an absolute path");
    assert_eq!(snapshot(dir.path()), before);
}

/// `--runtime-arg` values weave-runtime would refuse (each line: the arguments, a piece of the
/// one-line error). Installing them would make every `docker run --runtime weave` fail.
const BAD_RUNTIME_ARGS: &[(&[&str], &str)] = &[
    // The example of weave-setup's own --help before the fix: a hook flag without the prefix.
    (
        &["--runtime-arg=--bridge=weave"],
        "use --runtime-arg=--weave-bridge=weave",
    ),
    (
        &[
            "--runtime-arg",
            "--ipalloc-range",
            "--runtime-arg",
            "10.40.0.0/16",
        ],
        "use --runtime-arg=--weave-ipalloc-range",
    ),
    (
        &["--runtime-arg=-weave-mtu=1400"],
        "use --runtime-arg=--weave-mtu=1400",
    ),
    (
        &["--runtime-arg=--weave-ipalloc-range=10.32.5.0/12"],
        "has host bits set; the subnet is 10.32.0.0/12",
    ),
    (
        &["--runtime-arg=--weave-log-level=verbose"],
        "is not a log level",
    ),
    (
        &["--runtime-arg=--weave-mtu", "--runtime-arg=9"],
        "\"9\" is not an MTU from 68 to 65535",
    ),
    (
        &["--runtime-arg=--weave-bridge=much-too-long-name"],
        "1 to 15 bytes",
    ),
    (
        &["--runtime-arg=--weave-state-dir=run/weave"],
        "is not an absolute path",
    ),
    (
        &["--runtime-arg=--weave-dns-addr=10.2.0.99"],
        "not an IPv4 address with prefix",
    ),
    (
        &["--runtime-arg=--weave-dns-addr=10.32.0.7/12"],
        "use 10.32.0.1 (kept free for weave)",
    ),
    (
        &[
            "--runtime-arg=--weave-ipalloc-range=10.40.0.0/16",
            "--runtime-arg=--weave-dns-addr=10.40.3.3/16",
        ],
        "use 10.40.0.1",
    ),
    (
        &["--runtime-arg=--weave-hook-path=bin/weave-hook"],
        "absolute",
    ),
    (&["--runtime-arg=--weave-runtime="], "must not be empty"),
    (&["--runtime-arg=--weave-bridge"], "needs a value"),
    (
        &["--runtime-arg=--weave-colour=blue"],
        "known: --weave-runtime, --weave-hook-path, --weave-bridge, --weave-ipalloc-range",
    ),
    (&["--runtime-arg=--weave-help"], "known: --weave-runtime"),
    (&["--runtime-arg=--debug"], "known: --weave-runtime"),
];

#[test]
fn bad_runtime_args_are_refused_and_nothing_is_written() {
    let (dir, config) = setup_with(RICH);
    let before = snapshot(dir.path());
    for (args, needle) in BAD_RUNTIME_ARGS {
        for dry_run in [false, true] {
            let mut all = args.to_vec();
            if dry_run {
                all.push("--dry-run");
            }
            let out = docker_install(&config, &all);
            assert_fails(&out, needle);
            assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
            assert_eq!(snapshot(dir.path()), before, "{args:?} changed files");
        }
    }
}

#[test]
fn good_runtime_args_are_installed_as_given() {
    let (_dir, config) = setup_with(RICH);
    let args = [
        "--weave-bridge",
        "wv0",
        "--weave-ipalloc-range=10.40.0.0/16",
        "--weave-dns-addr=10.40.0.1/16",
        "--weave-state-dir",
        "/run/weave-wv0",
        "--weave-mtu=1400",
        "--weave-log-level=DEBUG",
        "--weave-runtime=runc",
        "--weave-hook-path=/opt/weave/bin/weave-hook",
    ];
    let flags: Vec<String> = args.iter().map(|a| format!("--runtime-arg={a}")).collect();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    ok(docker_install(&config, &flags), "install");
    let doc: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(
        doc["runtimes"]["weave"]["runtimeArgs"],
        serde_json::json!(args)
    );
    // A DNS address outside the range is the other accepted combination.
    let (_dir, config) = setup_with("{}");
    ok(
        docker_install(&config, &["--runtime-arg=--weave-dns-addr=10.2.0.53/24"]),
        "install",
    );
}

#[test]
fn install_keeps_owner_and_mode_of_the_file_and_its_backup() {
    if !require_root("install_keeps_owner_and_mode_of_the_file_and_its_backup") {
        return;
    }
    let (dir, config) = setup_with(RICH);
    std::os::unix::fs::chown(&config, Some(65534), Some(65534)).unwrap();
    fs::set_permissions(&config, fs::Permissions::from_mode(0o640)).unwrap();
    let out = docker_install(&config, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for path in [config, dir.path().join("daemon.json.weave-backup")] {
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (65534, 65534, 0o640),
            "{}",
            path.display()
        );
    }
}

#[test]
fn usage_errors_are_one_line_too() {
    assert_fails(
        &weave_setup(&["podman", "--bridge", "has space", "--dry-run"]),
        "invalid value 'has space' for '--bridge <NAME>'",
    );
    assert_fails(
        &weave_setup(&["docker", "--no-such-flag"]),
        "--no-such-flag",
    );
    assert_eq!(
        weave_setup(&["podman", "--mtu", "1"]).status.code(),
        Some(2)
    );
    assert!(weave_setup(&["--help"]).status.success());
}

#[test]
fn unwritable_directory_fails_cleanly_for_an_unprivileged_user() {
    if !require_root("unwritable_directory_fails_cleanly_for_an_unprivileged_user") {
        return;
    }
    // A directory every user can enter, holding a copy of the binary and a root-owned config.
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("weave-setup");
    fs::copy(BIN, &bin).unwrap();
    let config = dir.path().join("daemon.json");
    fs::write(&config, RICH).unwrap();
    let before = snapshot(dir.path());

    let out = Command::new(&bin)
        .args(["docker", "--config", config.to_str().unwrap()])
        .args(["--runtime-path", RUNTIME])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_fails(&out, "Permission denied");
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn read_only_filesystem_fails_cleanly() {
    if !require_root("read_only_filesystem_fails_cleanly") {
        return;
    }
    let (dir, _config) = setup_with(RICH);
    let before = snapshot(dir.path());
    // A private mount namespace, so the read-only bind mount vanishes with the command.
    let script = r#"mount --bind -o ro "$1" "$1" && exec "$2" docker --config "$1/daemon.json" --runtime-path "$3""#;
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(dir.path())
        .arg(BIN)
        .arg(RUNTIME)
        .output()
        .unwrap();
    assert_fails(&out, "Read-only file system");
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn podman_hook_file_install_is_idempotent_and_uninstall_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = dir.path().to_str().unwrap();
    let install = [
        "podman",
        "--hooks-dir",
        hooks,
        "--hook-path",
        "/opt/weave/bin/weave-hook",
        "--bridge",
        "wvtest0",
        "--state-dir",
        "/run/weave-test",
    ];
    let out = weave_setup(&install);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("hooks_dir"),
        "no containers.conf hint"
    );
    let file: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.path().join("weave.json")).unwrap()).unwrap();
    assert_eq!(
        file,
        serde_json::json!({
            "version": "1.0.0",
            "hook": {
                "path": "/opt/weave/bin/weave-hook",
                "args": ["weave-hook", "--bridge", "wvtest0", "--state-dir", "/run/weave-test"]
            },
            "when": {"annotations": {"^weave\\.(cidr|dns)$": ".*"}},
            "stages": ["createRuntime", "poststop"]
        })
    );

    let before = snapshot(dir.path());
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(text(&weave_setup(&install).stdout).contains("nothing changed"));
    assert_eq!(snapshot(dir.path()), before);

    // Other options are a different file: refused without --force.
    let mut other = install.to_vec();
    other[6] = "wvother0";
    assert_fails(&weave_setup(&other), "--force");
    assert_eq!(snapshot(dir.path()), before);

    let out = weave_setup(&["uninstall", "podman", "--hooks-dir", hooks]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!dir.path().join("weave.json").exists());
    let out = weave_setup(&["uninstall", "podman", "--hooks-dir", hooks]);
    assert!(text(&out.stdout).contains("nothing changed"));
}

#[test]
fn podman_uninstall_leaves_a_foreign_weave_json_alone() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = br#"{"version":"1.0.0","hook":{"path":"/usr/bin/other"},"when":{"always":true},"stages":["prestart"]}"#;
    fs::write(dir.path().join("weave.json"), foreign).unwrap();
    let before = snapshot(dir.path());
    let out = weave_setup(&[
        "uninstall",
        "podman",
        "--hooks-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_fails(&out, "not written by weave-setup");
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn status_reports_what_is_installed() {
    let (dir, config) = setup_with(RICH);
    assert!(docker_install(&config, &[]).status.success());
    let out = weave_setup(&[
        "status",
        "--config",
        config.to_str().unwrap(),
        "--hooks-dir",
        dir.path().to_str().unwrap(),
        "--pidfile",
        "/nonexistent/docker.pid",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("runtime \"weave\": /opt/weave/bin/weave-runtime (MISSING"),
        "{stdout}"
    );
    assert!(stdout.contains("installed by weave-setup"), "{stdout}");
    assert!(stdout.contains("podman: no weave.json"), "{stdout}");
}

/// `weave-setup status` with `CONTAINERS_CONF=conf`, no daemon.json and no dockerd: its
/// stdout, once it succeeded.
fn status_with(conf: &Path, extra: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["status", "--config", "/nonexistent/daemon.json"])
        .args(["--pidfile", "/nonexistent/docker.pid"])
        .args(extra)
        .env("CONTAINERS_CONF", conf)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

/// A program file at `path` with `mode`.
fn program(path: &Path, mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, "#!/bin/sh\n").unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// weave-setup podman into `hooks_dir`, pointing at `hook`.
fn install_podman_hook(hooks_dir: &Path, hook: &Path) {
    fs::create_dir_all(hooks_dir).unwrap();
    ok(
        weave_setup(&[
            "podman",
            "--hooks-dir",
            hooks_dir.to_str().unwrap(),
            "--hook-path",
            hook.to_str().unwrap(),
        ]),
        "weave-setup podman",
    );
}

fn line_with<'a>(stdout: &'a str, needle: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{stdout}"))
}

/// Issue 12: status looked for weave.json in /usr/share/containers/oci/hooks.d only, although
/// podman reads the directories containers.conf's hooks_dir names ($CONTAINERS_CONF's).
#[test]
fn status_finds_the_hook_file_in_the_hooks_dir_of_containers_conf() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = dir.path().join("hooks.d");
    let hook = dir.path().join("bin/weave-hook");
    program(&hook, 0o755);
    install_podman_hook(&hooks, &hook);
    let conf = dir.path().join("containers.conf");
    fs::write(
        &conf,
        format!(
            "[containers]\ndefault_ulimits=[\"nofile=1024:1024\"]\n[engine]\nruntime=\"runc\"\n\
             hooks_dir=[\"/nonexistent/hooks.d\", \"{}\"]\n",
            hooks.display()
        ),
    )
    .unwrap();
    let stdout = status_with(&conf, &[]);
    assert!(
        stdout.contains(&format!(
            "podman: reads hooks from /nonexistent/hooks.d, {} (hooks_dir in {})",
            hooks.display(),
            conf.display()
        )),
        "{stdout}"
    );
    let line = line_with(&stdout, "weave.json");
    assert_eq!(
        line,
        format!(
            "podman: {}/weave.json: runs {}",
            hooks.display(),
            hook.display()
        )
    );
}

/// Issue 12: a hook file in a directory podman does not read was reported as installed.
#[test]
fn status_says_when_podman_does_not_read_the_hooks_dir() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = dir.path().join("hooks.d");
    let hook = dir.path().join("bin/weave-hook");
    program(&hook, 0o755);
    install_podman_hook(&hooks, &hook);
    let conf = dir.path().join("containers.conf");
    fs::write(&conf, "[engine]\nruntime=\"runc\"\n").unwrap();
    let stdout = status_with(&conf, &["--hooks-dir", hooks.to_str().unwrap()]);
    assert!(
        stdout.contains(
            "podman: reads hooks from /usr/share/containers/oci/hooks.d (podman's default: \
             no containers.conf sets hooks_dir)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "podman: does NOT read {}: add it",
            hooks.display()
        )),
        "{stdout}"
    );

    fs::write(
        &conf,
        format!("[engine]\nhooks_dir=[\"{}\"]\n", hooks.display()),
    )
    .unwrap();
    let stdout = status_with(&conf, &["--hooks-dir", hooks.to_str().unwrap()]);
    assert!(!stdout.contains("does NOT read"), "{stdout}");

    fs::write(&conf, "[engine\nhooks_dir=").unwrap();
    let stdout = status_with(&conf, &[]);
    assert!(
        stdout.contains("is not valid containers.conf TOML"),
        "{stdout}"
    );
    let missing = dir.path().join("missing.conf");
    let stdout = status_with(&missing, &[]);
    assert!(
        stdout.contains(&format!(
            "CONTAINERS_CONF={} does not exist",
            missing.display()
        )),
        "{stdout}"
    );
}

/// Issue 12: status said nothing when the weave-hook the hook file names cannot be run.
#[test]
fn status_checks_the_weave_hook_the_hook_file_names() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = dir.path().join("hooks.d");
    let hook = dir.path().join("bin/weave-hook");
    program(&hook, 0o644);
    install_podman_hook(&hooks, &hook);
    let conf = dir.path().join("containers.conf");
    fs::write(
        &conf,
        format!("[engine]\nhooks_dir=[\"{}\"]\n", hooks.display()),
    )
    .unwrap();
    let status = || status_with(&conf, &[]);
    assert!(
        line_with(&status(), "weave.json").ends_with("(NOT EXECUTABLE: mode 0644; chmod +x it)"),
        "{}",
        status()
    );
    fs::remove_file(&hook).unwrap();
    assert!(
        line_with(&status(), "weave.json").ends_with("(MISSING: the program does not exist)"),
        "{}",
        status()
    );
    program(&hook, 0o755);
    assert!(
        line_with(&status(), "weave.json").ends_with(&format!("runs {}", hook.display())),
        "{}",
        status()
    );
}

/// Issue 12: status did not check the weave-hook weave-runtime runs: the one next to it
/// (symlinks resolved), or its --weave-hook-path.
#[test]
fn status_checks_weave_hook_where_weave_runtime_looks() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    program(&bin.join("weave-runtime"), 0o755);
    let link = dir.path().join("link");
    fs::create_dir(&link).unwrap();
    std::os::unix::fs::symlink(bin.join("weave-runtime"), link.join("weave-runtime")).unwrap();
    let config = dir.path().join("daemon.json");
    let runtime = link.join("weave-runtime");
    ok(
        weave_setup(&[
            "docker",
            "--config",
            config.to_str().unwrap(),
            "--runtime-path",
            runtime.to_str().unwrap(),
            "--pidfile",
            "/nonexistent/docker.pid",
        ]),
        "weave-setup docker",
    );
    let status = |config: &Path| {
        let out = weave_setup(&[
            "status",
            "--config",
            config.to_str().unwrap(),
            "--pidfile",
            "/nonexistent/docker.pid",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let hook = fs::canonicalize(&bin).unwrap().join("weave-hook");
    let stdout = status(&config);
    assert!(
        stdout.contains(&format!(
            "  weave-hook: {} (next to weave-runtime) (MISSING: the program does not exist)",
            hook.display()
        )),
        "{stdout}"
    );
    program(&hook, 0o755);
    let stdout = status(&config);
    assert!(
        stdout.contains(&format!(
            "  weave-hook: {} (next to weave-runtime)\n",
            hook.display()
        )),
        "{stdout}"
    );

    let other = dir.path().join("other.json");
    ok(
        weave_setup(&[
            "docker",
            "--config",
            other.to_str().unwrap(),
            "--runtime-path",
            runtime.to_str().unwrap(),
            "--runtime-arg=--weave-hook-path=/nonexistent/weave-hook",
            "--pidfile",
            "/nonexistent/docker.pid",
        ]),
        "weave-setup docker --runtime-arg",
    );
    let stdout = status(&other);
    assert!(
        stdout.contains(
            "  weave-hook: /nonexistent/weave-hook (--weave-hook-path in runtimeArgs) (MISSING"
        ),
        "{stdout}"
    );
}

fn uninstall_docker(config: &Path, name: &str) -> Output {
    weave_setup(&[
        "uninstall",
        "docker",
        "--config",
        config.to_str().unwrap(),
        "--runtime-name",
        name,
    ])
}

fn default_runtime(config: &Path) -> Option<String> {
    let doc: serde_json::Value = serde_json::from_slice(&fs::read(config).unwrap()).unwrap();
    doc["default-runtime"].as_str().map(str::to_string)
}

fn ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// Issue 10, bug 11: a second runtime name used to overwrite the first one's record.
#[test]
fn second_runtime_name_keeps_the_first_ones_replaced_default() {
    let original = "{\n  \"default-runtime\": \"runc2\"\n}\n";
    let (dir, config) = setup_with(original);
    ok(
        docker_install(&config, &["--set-as-default"]),
        "install weave",
    );
    ok(
        docker_install(&config, &["--runtime-name", "weave2"]),
        "install weave2",
    );
    ok(uninstall_docker(&config, "weave2"), "uninstall weave2");
    assert_eq!(default_runtime(&config).as_deref(), Some("weave"));
    ok(uninstall_docker(&config, "weave"), "uninstall weave");
    assert_eq!(fs::read_to_string(&config).unwrap(), original);
    assert!(!dir.path().join("daemon.json.weave-state").exists());
}

/// weave set over runc2, then weave2 set over weave: each uninstall order ends at runc2, and
/// the default never goes back to runc2 while weave2 is still installed as the default.
#[test]
fn nested_defaults_are_restored_in_either_uninstall_order() {
    let original = "{\n  \"default-runtime\": \"runc2\",\n  \"debug\": true\n}\n";
    for order in [["weave", "weave2"], ["weave2", "weave"]] {
        let (dir, config) = setup_with(original);
        ok(
            docker_install(&config, &["--set-as-default"]),
            "install weave",
        );
        ok(
            docker_install(&config, &["--runtime-name", "weave2", "--set-as-default"]),
            "install weave2",
        );
        assert_eq!(default_runtime(&config).as_deref(), Some("weave2"));

        ok(uninstall_docker(&config, order[0]), order[0]);
        let expected_between = if order[0] == "weave" {
            "weave2"
        } else {
            "weave"
        };
        assert_eq!(
            default_runtime(&config).as_deref(),
            Some(expected_between),
            "after uninstalling {} first",
            order[0]
        );
        ok(uninstall_docker(&config, order[1]), order[1]);
        assert_eq!(
            fs::read_to_string(&config).unwrap(),
            original,
            "order {order:?}"
        );
        assert!(!dir.path().join("daemon.json.weave-state").exists());
    }
}

/// A record written before weave-setup kept one entry per runtime name still works.
#[test]
fn single_entry_record_of_earlier_versions_is_read() {
    let (dir, config) = setup_with(&format!(
        "{{\n  \"default-runtime\": \"weave\",\n  \"runtimes\": {{\n    \"weave\": {{\n      \"path\": \"{RUNTIME}\"\n    }}\n  }}\n}}\n"
    ));
    fs::write(
        dir.path().join("daemon.json.weave-state"),
        r#"{"runtime": "weave", "created_runtimes": true, "replaced_default": {"previous": "runc2"}}"#,
    )
    .unwrap();
    ok(
        docker_install(&config, &["--runtime-name", "weave2", "--set-as-default"]),
        "install weave2",
    );
    ok(uninstall_docker(&config, "weave2"), "uninstall weave2");
    ok(uninstall_docker(&config, "weave"), "uninstall weave");
    assert_eq!(
        fs::read_to_string(&config).unwrap(),
        "{\n  \"default-runtime\": \"runc2\"\n}\n"
    );
}

/// A process of our own standing in for dockerd: its comm is `dockerd`, it reads the test's
/// daemon.json (`--config-file`), and it records every SIGHUP. On SIGHUP it "loads" the view
/// that the stand-in `docker` CLI (first in PATH) then reports, as `docker info` would.
struct FakeDockerd {
    dir: tempfile::TempDir,
    child: std::process::Child,
}

impl FakeDockerd {
    fn start(config: &Path, view_after_reload: &str) -> FakeDockerd {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("dockerd");
        fs::write(
            &script,
            "#!/bin/sh\nd=$(dirname \"$0\")\n\
             trap 'echo hup >> \"$d/hups\"; cp \"$d/view-after-reload\" \"$d/view.new\"; \
             mv \"$d/view.new\" \"$d/view\"' HUP\n\
             echo ready > \"$d/ready\"\nwhile :; do sleep 1 & wait $!; done\n",
        )
        .unwrap();
        let docker = dir.path().join("docker");
        // The view is two lines, the answers to `{{json .Runtimes}}` and `{{json .DefaultRuntime}}`.
        fs::write(
            &docker,
            "#!/bin/sh\nv=\"$(dirname \"$0\")/view\"\n\
             case \"$*\" in *DefaultRuntime*) cat \"$v\";; *) head -n 1 \"$v\";; esac\n",
        )
        .unwrap();
        for exe in [&script, &docker] {
            fs::set_permissions(exe, fs::Permissions::from_mode(0o755)).unwrap();
        }
        fs::write(
            dir.path().join("view"),
            r#"{"runc":{"path":"runc"}}
"runc""#,
        )
        .unwrap();
        fs::write(dir.path().join("view-after-reload"), view_after_reload).unwrap();
        let mut command = Command::new(&script);
        command.arg("--config-file").arg(config);
        // A shell cannot trap a signal that was ignored when it started (POSIX), and a test
        // run under `nohup` inherits SIGHUP ignored: the stand-in starts with it at default,
        // as dockerd (Go, which takes SIGHUP back when it asks for it) effectively does.
        // SAFETY: only signal(2), async-signal-safe, between fork and exec.
        unsafe {
            command.pre_exec(|| {
                nix::sys::signal::signal(
                    nix::sys::signal::Signal::SIGHUP,
                    nix::sys::signal::SigHandler::SigDfl,
                )
                .map(drop)
                .map_err(std::io::Error::from)
            });
        }
        let child = command.spawn().unwrap();
        fs::write(dir.path().join("docker.pid"), child.id().to_string()).unwrap();
        let ready = dir.path().join("ready");
        for _ in 0..200 {
            if ready.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(ready.exists(), "the stand-in dockerd did not start");
        FakeDockerd { dir, child }
    }

    /// SIGHUPs received; waits a moment first, since a signal is handled after kill(2) returns.
    fn hups(&self) -> usize {
        std::thread::sleep(std::time::Duration::from_millis(300));
        fs::read_to_string(self.dir.path().join("hups"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// Replaced whole (a rename), like the trap does: the stand-in CLI may be reading it.
    fn set_view(&self, view: &str) {
        let new = self.dir.path().join("view.new");
        fs::write(&new, view).unwrap();
        fs::rename(new, self.dir.path().join("view")).unwrap();
    }

    /// weave-setup with `--reload` aimed at this process, the stand-in docker CLI first in PATH.
    fn weave_setup(&self, args: &[&str]) -> Output {
        let path = format!(
            "{}:{}",
            self.dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new(BIN)
            .args(args)
            .arg("--reload")
            .arg("--pidfile")
            .arg(self.dir.path().join("docker.pid"))
            .env("PATH", path)
            .env_remove("DOCKER_HOST")
            .output()
            .unwrap()
    }
}

impl Drop for FakeDockerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn second_identical_install_does_not_signal_dockerd() {
    let (dir, config) = setup_with(RICH);
    let loaded = r#"{"runc":{"path":"runc"},"weave":{"path":"/x"}}
"weave""#;
    let dockerd = FakeDockerd::start(&config, loaded);
    let cfg = config.to_str().unwrap();
    let install = [
        "docker",
        "--config",
        cfg,
        "--runtime-path",
        RUNTIME,
        "--set-as-default",
    ];
    ok(dockerd.weave_setup(&install), "first install");
    assert_eq!(dockerd.hups(), 1, "the first install reloads dockerd");

    let before = snapshot(dir.path());
    std::thread::sleep(std::time::Duration::from_millis(20));
    let out = ok(dockerd.weave_setup(&install), "second install");
    assert_eq!(dockerd.hups(), 1, "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("not reloaded"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(snapshot(dir.path()), before);

    // dockerd restarted without the runtime loaded (say, an install made without --reload):
    // the same, unchanged install with --reload does reload it.
    dockerd.set_view(
        r#"{"runc":{"path":"runc"}}
"runc""#,
    );
    ok(dockerd.weave_setup(&install), "install when dockerd lags");
    assert_eq!(dockerd.hups(), 2);
}

#[test]
fn second_uninstall_does_not_signal_dockerd() {
    let (_dir, config) = setup_with(RICH);
    let cfg = config.to_str().unwrap();
    ok(docker_install(&config, &[]), "install");
    let dockerd = FakeDockerd::start(
        &config,
        r#"{"runc":{"path":"runc"}}
"runc""#,
    );
    dockerd.set_view(
        r#"{"runc":{"path":"runc"},"weave":{"path":"/x"}}
"runc""#,
    );
    ok(
        dockerd.weave_setup(&["uninstall", "docker", "--config", cfg]),
        "uninstall",
    );
    assert_eq!(dockerd.hups(), 1);
    ok(
        dockerd.weave_setup(&["uninstall", "docker", "--config", cfg]),
        "second uninstall",
    );
    assert_eq!(dockerd.hups(), 1);
    assert_eq!(fs::read_to_string(&config).unwrap(), RICH);
}

#[test]
fn bad_runtime_arg_does_not_signal_dockerd() {
    let (dir, config) = setup_with(RICH);
    let dockerd = FakeDockerd::start(
        &config,
        r#"{"runc":{"path":"runc"},"weave":{"path":"/x"}}
"runc""#,
    );
    let before = snapshot(dir.path());
    let cfg = config.to_str().unwrap();
    for dry_run in [&[][..], &["--dry-run"]] {
        let mut args = vec![
            "docker",
            "--config",
            cfg,
            "--runtime-path",
            RUNTIME,
            "--runtime-arg=--bridge=weave",
        ];
        args.extend_from_slice(dry_run);
        assert_fails(&dockerd.weave_setup(&args), "--weave-bridge=weave");
    }
    assert_eq!(dockerd.hups(), 0);
    assert_eq!(snapshot(dir.path()), before);
}

/// How a dry-run/real-run pair is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunAs {
    Root,
    /// With the directory bind-mounted read-only (in a private mount namespace).
    ReadOnlyDir,
    /// As user nobody, who cannot write the directory.
    Nobody,
}

struct ParityCase {
    name: &'static str,
    uninstall: bool,
    /// daemon.json's path inside the test directory.
    config: &'static str,
    daemon_json: Option<&'static str>,
    record: Option<&'static str>,
    backup_is_a_directory: bool,
    args: &'static [&'static str],
    run_as: RunAs,
    succeeds: bool,
}

const PARITY_CASE: ParityCase = ParityCase {
    name: "",
    uninstall: false,
    config: "daemon.json",
    daemon_json: Some(RICH),
    record: None,
    backup_is_a_directory: false,
    args: &[],
    run_as: RunAs::Root,
    succeeds: true,
};

const INSTALLED: &str = r#"{"runtimes": {"weave": {"path": "/opt/weave/bin/weave-runtime"}}}"#;

fn parity_cases() -> Vec<ParityCase> {
    vec![
        ParityCase {
            name: "new runtime",
            ..PARITY_CASE
        },
        ParityCase {
            name: "set as default",
            args: &["--set-as-default"],
            ..PARITY_CASE
        },
        ParityCase {
            name: "no daemon.json yet",
            daemon_json: None,
            ..PARITY_CASE
        },
        ParityCase {
            name: "directory missing",
            config: "etc/docker/daemon.json",
            daemon_json: None,
            succeeds: false,
            ..PARITY_CASE
        },
        ParityCase {
            name: "invalid JSON",
            daemon_json: Some("{,}"),
            succeeds: false,
            ..PARITY_CASE
        },
        ParityCase {
            name: "top level not an object",
            daemon_json: Some("[]"),
            succeeds: false,
            ..PARITY_CASE
        },
        ParityCase {
            name: "default-runtime not a string",
            daemon_json: Some(r#"{"default-runtime": 3}"#),
            args: &["--set-as-default"],
            succeeds: false,
            ..PARITY_CASE
        },
        ParityCase {
            name: "conflicting runtime",
            daemon_json: Some(r#"{"runtimes": {"weave": {"path": "/other"}}}"#),
            succeeds: false,
            ..PARITY_CASE
        },
        ParityCase {
            name: "conflicting runtime, --force",
            daemon_json: Some(r#"{"runtimes": {"weave": {"path": "/other"}}}"#),
            args: &["--force"],
            ..PARITY_CASE
        },
        ParityCase {
            name: "record not JSON",
            record: Some("not json"),
            succeeds: false,
            ..PARITY_CASE
        },
        ParityCase {
            name: "record of another shape",
            record: Some(r#"{"installs": 3}"#),
            succeeds: false,
            ..PARITY_CASE
        },
        ParityCase {
            name: "backup path is a directory",
            backup_is_a_directory: true,
            succeeds: false,
            ..PARITY_CASE
        },
        ParityCase {
            name: "--reload without a running dockerd",
            args: &["--reload"],
            succeeds: false,
            ..PARITY_CASE
        },
        ParityCase {
            name: "read-only directory",
            run_as: RunAs::ReadOnlyDir,
            succeeds: false,
            ..PARITY_CASE
        },
        ParityCase {
            name: "read-only directory, already installed",
            daemon_json: Some(INSTALLED),
            run_as: RunAs::ReadOnlyDir,
            ..PARITY_CASE
        },
        ParityCase {
            name: "directory not writable by the user",
            run_as: RunAs::Nobody,
            succeeds: false,
            ..PARITY_CASE
        },
        ParityCase {
            name: "uninstall",
            uninstall: true,
            daemon_json: Some(INSTALLED),
            ..PARITY_CASE
        },
        ParityCase {
            name: "uninstall of nothing",
            uninstall: true,
            ..PARITY_CASE
        },
        ParityCase {
            name: "uninstall, invalid JSON",
            uninstall: true,
            daemon_json: Some("{,}"),
            succeeds: false,
            ..PARITY_CASE
        },
        ParityCase {
            name: "uninstall, record not JSON",
            uninstall: true,
            daemon_json: Some(INSTALLED),
            record: Some("not json"),
            succeeds: false,
            ..PARITY_CASE
        },
        ParityCase {
            name: "uninstall, read-only directory",
            uninstall: true,
            daemon_json: Some(INSTALLED),
            run_as: RunAs::ReadOnlyDir,
            succeeds: false,
            ..PARITY_CASE
        },
        ParityCase {
            name: "uninstall of nothing, read-only directory",
            uninstall: true,
            run_as: RunAs::ReadOnlyDir,
            ..PARITY_CASE
        },
        ParityCase {
            name: "uninstall, --reload without a running dockerd",
            uninstall: true,
            daemon_json: Some(INSTALLED),
            args: &["--reload"],
            succeeds: false,
            ..PARITY_CASE
        },
    ]
}

/// Runs `case` in a fresh directory; returns the output and whether a dry run left the
/// directory exactly as it was.
fn run_parity_case(case: &ParityCase, dry_run: bool) -> (Output, bool) {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join(case.config);
    if let Some(contents) = case.daemon_json {
        fs::write(&config, contents).unwrap();
    }
    if let Some(contents) = case.record {
        fs::write(dir.path().join("daemon.json.weave-state"), contents).unwrap();
    }
    if case.backup_is_a_directory {
        fs::create_dir(dir.path().join("daemon.json.weave-backup")).unwrap();
    }
    // nobody must be able to run it: the build directory may not be open to everyone.
    let bin = dir.path().join("weave-setup");
    fs::copy(BIN, &bin).unwrap();

    let mut args: Vec<&str> = if case.uninstall {
        vec!["uninstall", "docker"]
    } else {
        vec!["docker", "--runtime-path", RUNTIME]
    };
    args.extend(["--config", config.to_str().unwrap()]);
    args.extend(["--pidfile", "/nonexistent/docker.pid"]);
    args.extend(case.args);
    if dry_run {
        args.push("--dry-run");
    }

    let before = snapshot(dir.path());
    let mut command = match case.run_as {
        RunAs::Root | RunAs::Nobody => Command::new(&bin),
        RunAs::ReadOnlyDir => {
            let mut unshare = Command::new("unshare");
            unshare
                .args(["--mount", "--propagation", "private", "sh", "-c"])
                .arg(r#"mount --bind -o ro "$1" "$1" && shift && exec "$@""#)
                .arg("sh")
                .arg(dir.path())
                .arg(&bin);
            unshare
        }
    };
    command.args(&args).env_remove("DOCKER_HOST");
    if case.run_as == RunAs::Nobody {
        command.uid(65534).gid(65534);
    }
    let out = command.output().unwrap();
    (out, snapshot(dir.path()) == before)
}

#[test]
fn dry_run_fails_exactly_when_the_real_run_fails() {
    let root = require_root("dry_run_fails_exactly_when_the_real_run_fails");
    let mut mismatches = Vec::new();
    for case in parity_cases() {
        if case.run_as != RunAs::Root && !root {
            continue;
        }
        let (dry, untouched) = run_parity_case(&case, true);
        let (real, _) = run_parity_case(&case, false);
        assert!(untouched, "{}: the dry run changed files", case.name);
        if real.status.success() != case.succeeds {
            mismatches.push(format!(
                "{}: real run exit {:?}, expected success: {} ({})",
                case.name,
                real.status.code(),
                case.succeeds,
                text(&real.stderr).trim()
            ));
        }
        if dry.status.code() != real.status.code() {
            mismatches.push(format!(
                "{}: dry run exit {:?} ({}), real run exit {:?} ({})",
                case.name,
                dry.status.code(),
                text(&dry.stderr).trim(),
                real.status.code(),
                text(&real.stderr).trim()
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
