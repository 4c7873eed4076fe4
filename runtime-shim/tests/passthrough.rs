//! Through weave-runtime, real runc answers exactly as it does when called directly: same
//! stdout, stderr and exit code, for commands that succeed and for one that fails.

use std::process::{Command, Output};

const SHIM: &str = env!("CARGO_BIN_EXE_weave-runtime");

/// runc's path, or `None` outside CI when it is missing (the test then says so loudly).
fn runc() -> Option<String> {
    let found = [
        "/usr/sbin/runc",
        "/usr/bin/runc",
        "/usr/local/sbin/runc",
        "/usr/local/bin/runc",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "runc missing in CI: run scripts/deps-docker.sh"
        );
        eprintln!("SKIPPED: runc not installed (apt-get install runc)");
    }
    found.map(str::to_owned)
}

fn compare(runc: &str, args: &[&str]) -> Output {
    let direct = Command::new(runc).args(args).output().unwrap();
    let shimmed = Command::new(SHIM)
        .env("WEAVE_RUNTIME", runc)
        .args(args)
        .output()
        .unwrap();
    assert_eq!(shimmed.status.code(), direct.status.code(), "{args:?}");
    assert_eq!(shimmed.stdout, direct.stdout, "{args:?}");
    assert_eq!(shimmed.stderr, direct.stderr, "{args:?}");
    direct
}

#[test]
fn runc_version_and_features_are_identical_through_the_shim() {
    let Some(runc) = runc() else { return };
    let version = compare(&runc, &["--version"]);
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("runc version"));
    let features = compare(&runc, &["features"]);
    assert!(features.status.success());
    compare(&runc, &["--help"]);
}

#[test]
fn a_failing_runc_command_fails_identically_through_the_shim() {
    let Some(runc) = runc() else { return };
    let root = tempfile::tempdir().unwrap();
    let root = root.path().to_str().unwrap();
    let out = compare(
        &runc,
        &["--root", root, "state", "weave-runtime-no-such-container"],
    );
    assert!(!out.status.success());
}

#[test]
fn shim_flags_are_invisible_to_runc() {
    let Some(runc) = runc() else { return };
    let direct = Command::new(&runc).arg("--version").output().unwrap();
    let flag = format!("--weave-runtime={runc}");
    let shimmed = Command::new(SHIM)
        .args([flag.as_str(), "--weave-bridge", "wv0", "--version"])
        .output()
        .unwrap();
    assert_eq!(shimmed.stdout, direct.stdout);
    assert_eq!(shimmed.status.code(), Some(0));
}
