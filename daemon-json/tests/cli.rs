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
