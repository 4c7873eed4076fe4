//! Argument scanning for every form of runc command line weave-runtime must understand.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use weave_runtime::runc_args::{scan, CreateTarget, ScanError, ShimFlag};

fn args(line: &str) -> Vec<OsString> {
    line.split_whitespace().map(OsString::from).collect()
}

fn target(line: &str) -> Option<(String, String)> {
    scan(args(line))
        .unwrap()
        .create
        .map(|CreateTarget { bundle, id }| {
            (bundle.display().to_string(), id.into_string().unwrap())
        })
}

fn some(bundle: &str, id: &str) -> Option<(String, String)> {
    Some((bundle.to_owned(), id.to_owned()))
}

#[test]
fn dockers_create_line_is_understood() {
    let line = "--root /var/run/docker/runtime-runc/moby --log /b/log.json --log-format json \
                create --bundle /b --pid-file /b/init.pid 0123abc";
    assert_eq!(target(line), some("/b", "0123abc"));
    assert_eq!(scan(args(line)).unwrap().runtime_args, args(line));
}

#[test]
fn every_bundle_form_is_found() {
    assert_eq!(target("create --bundle /b c1"), some("/b", "c1"));
    assert_eq!(target("create --bundle=/b c1"), some("/b", "c1"));
    assert_eq!(target("create -b /b c1"), some("/b", "c1"));
    assert_eq!(target("create -b=/b c1"), some("/b", "c1"));
    assert_eq!(target("create -bundle /b c1"), some("/b", "c1"));
    assert_eq!(target("create --b /b c1"), some("/b", "c1"));
    assert_eq!(target("create c1"), some(".", "c1"));
    assert_eq!(target("create --bundle= c1"), some(".", "c1"));
    assert_eq!(target("run -b rel/dir c1"), some("rel/dir", "c1"));
}

#[test]
fn flags_may_follow_the_id_as_urfave_cli_reorders_them() {
    assert_eq!(target("create c1 --bundle /b"), some("/b", "c1"));
    assert_eq!(target("run c1 -d --pid-file /p -b /b"), some("/b", "c1"));
}

#[test]
fn value_taking_create_flags_do_not_hide_or_fake_the_id() {
    let line = "create --console-socket /s --pid-file /p --preserve-fds 2 --no-pivot \
                --no-new-keyring -b /b c1";
    assert_eq!(target(line), some("/b", "c1"));
    let line = "run --detach --keep --no-subreaper --console-socket=/s -d c1";
    assert_eq!(target(line), some(".", "c1"));
    assert_eq!(target("create --detach=true c1"), some(".", "c1"));
}

#[test]
fn every_global_flag_form_is_skipped() {
    for globals in [
        "--root /r",
        "--root=/r",
        "-root /r",
        "--log /l --log-format json",
        "--log=/l --log-format=text",
        "--debug",
        "--debug=true",
        "--systemd-cgroup",
        "--rootless true",
        "--rootless=auto",
        "--criu /usr/sbin/criu",
        "--criu=/c --debug --root /r",
    ] {
        let line = format!("{globals} create -b /b c1");
        assert_eq!(target(&line), some("/b", "c1"), "{line}");
        assert_eq!(
            scan(args(&line)).unwrap().runtime_args,
            args(&line),
            "{line}"
        );
    }
}

#[test]
fn a_global_value_named_create_is_not_the_subcommand() {
    assert_eq!(target("--root create state c1"), None);
    assert_eq!(target("--log run create c1"), some(".", "c1"));
}

#[test]
fn double_dash_ends_flags() {
    assert_eq!(target("create -b /b -- -c1"), some("/b", "-c1"));
    assert_eq!(target("--debug -- create c1"), some(".", "c1"));
}

#[test]
fn command_lines_runc_rejects_are_passed_through() {
    assert_eq!(target("create"), None);
    assert_eq!(target("create a b"), None);
    assert_eq!(target("create -b"), None);
    assert_eq!(target("create c1 --bundle"), None);
    assert_eq!(target("create --help c1"), None);
    assert_eq!(target("run -h c1"), None);
}

#[test]
fn other_commands_are_passed_through_unchanged() {
    for line in [
        "features",
        "--version",
        "-v",
        "--help",
        "--root /r state c1",
        "--root /r start c1",
        "--root /r delete c1",
        "--root /r delete --force c1",
        "--root /r kill c1 9",
        "--root /r exec --process /p.json c1",
        "--root /r ps --format json c1",
        "--root /r update --resources - c1",
        "spec",
        "",
    ] {
        let s = scan(args(line)).unwrap();
        assert_eq!(s.create, None, "{line}");
        assert_eq!(s.runtime_args, args(line), "{line}");
        assert!(s.shim_flags.is_empty(), "{line}");
    }
}

#[test]
fn shim_flags_are_taken_out_before_the_subcommand_in_both_forms() {
    let s = scan(args(
        "--weave-bridge br0 --root /r --weave-state-dir=/s --debug create --weave-x 1 c1",
    ))
    .unwrap();
    assert_eq!(
        s.shim_flags,
        vec![
            ShimFlag {
                name: "bridge".into(),
                value: "br0".into()
            },
            ShimFlag {
                name: "state-dir".into(),
                value: "/s".into()
            },
        ]
    );
    // After the subcommand a --weave- argument belongs to runc (which will reject it).
    assert_eq!(
        s.runtime_args,
        args("--root /r --debug create --weave-x 1 c1")
    );
    // runc sees two positionals ("1" and "c1") and will refuse: nothing to prepare.
    assert_eq!(s.create, None);
}

#[test]
fn shim_flags_before_features_are_taken_out_too() {
    let s = scan(args("--weave-runtime /usr/sbin/runc features")).unwrap();
    assert_eq!(s.runtime_args, args("features"));
    assert_eq!(s.shim_flags.len(), 1);
}

#[test]
fn a_shim_flag_without_value_is_an_error() {
    assert_eq!(
        scan(args("--weave-bridge")).unwrap_err(),
        ScanError::MissingValue("--weave-bridge".into())
    );
}

#[test]
fn non_utf8_arguments_are_kept_as_bytes() {
    let id = OsString::from_vec(b"c\xff1".to_vec());
    let s = scan(vec!["create".into(), id.clone()]).unwrap();
    assert_eq!(s.create.unwrap().id, id);
}

#[test]
fn the_runtime_log_and_its_format_are_noticed() {
    use weave_runtime::runc_args::RuntimeLog;
    let log = |line: &str| scan(args(line)).unwrap().log;
    let json = Some(RuntimeLog {
        path: "/b/log.json".into(),
        json: true,
    });
    assert_eq!(log("--log /b/log.json --log-format json create c1"), json);
    assert_eq!(log("--log-format=json --log=/b/log.json state c1"), json);
    let text = Some(RuntimeLog {
        path: "/l".into(),
        json: false,
    });
    assert_eq!(log("--log /l create c1"), text);
    assert_eq!(log("--root /r create --log /l c1"), None);
}
