//! config.json edits against golden files: each directory under tests/golden holds
//! - `config.json`: the bundle's config as Docker (or `runc spec`) wrote it,
//! - `args` (optional): weave-runtime's own flags for the case,
//! - `host-resolv.conf` (optional): the file Docker's /etc/resolv.conf mount points at,
//! - `expected.json`: the edited config, pretty-printed (key order counts), or
//!   `expected-unchanged`: config.json must be left byte-for-byte alone,
//! - `expected-resolv.conf` (optional): the resolv.conf weave-runtime writes.
//!
//! `UPDATE_GOLDEN=1 cargo test --test golden` rewrites the expected files; review the diff.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use weave_runtime::plan::{plan, Inputs, Plan};
use weave_runtime::runc_args::scan;
use weave_runtime::settings::Settings;

const ID: &str = "0a1dfebe780d2245151b9481e90ae3baf03ed9935836a10d2a46fa8120903ae5";
const HOOK: &str = "/usr/local/bin/weave-hook";
const DOCKER_RESOLV: &str =
    "/var/lib/docker/containers/0a1dfebe780d2245151b9481e90ae3baf03ed9935836a10d2a46fa8120903ae5/resolv.conf";

fn settings(case: &Path) -> Settings {
    let line = fs::read_to_string(case.join("args")).unwrap_or_default();
    let flags = scan(line.split_whitespace().map(Into::into).collect())
        .unwrap()
        .shim_flags;
    Settings::new(flags, |_| None).unwrap()
}

fn run_case(case: &Path) -> Plan {
    let config = fs::read(case.join("config.json")).unwrap();
    let settings = settings(case);
    let inputs = Inputs {
        id: ID.as_ref(),
        bundle: Path::new("/bundle"),
        settings: &settings,
        hook_path: Path::new(HOOK),
    };
    let host_resolv = case.join("host-resolv.conf");
    plan(&config, &inputs, |p| {
        assert_eq!(p, Path::new(DOCKER_RESOLV), "read an unexpected file");
        fs::read_to_string(&host_resolv)
    })
    .unwrap_or_else(|e| panic!("{}: {e}", case.display()))
}

fn check(expected: &Path, actual: Option<String>) -> Result<(), String> {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        match &actual {
            Some(text) => fs::write(expected, text).unwrap(),
            None => drop(fs::remove_file(expected)),
        }
        return Ok(());
    }
    let want = match fs::read_to_string(expected) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => panic!("{}: {e}", expected.display()),
    };
    if want == actual {
        Ok(())
    } else {
        Err(format!(
            "{}:\n--- expected\n{}\n--- actual\n{}",
            expected.display(),
            want.unwrap_or_else(|| "(no file)".into()),
            actual.unwrap_or_else(|| "(no file)".into())
        ))
    }
}

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut cases: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    cases
}

#[test]
fn config_edits_match_golden_files() {
    let cases = cases();
    assert!(cases.len() >= 10, "golden cases missing");
    let mut failures = Vec::new();
    for case in &cases {
        let plan = run_case(case);
        let edited = plan.config.as_ref().map(|bytes| {
            let value: serde_json::Value = serde_json::from_slice(bytes).unwrap();
            serde_json::to_string_pretty(&value).unwrap() + "\n"
        });
        let unchanged = plan.config.is_none().then(String::new);
        let resolv = plan.resolv.as_ref().map(|r| {
            assert_eq!(
                r.path,
                weave_core::layout::StateDir::new(settings(case).state_dir()).resolv(&id())
            );
            r.contents.clone()
        });
        for (file, actual) in [
            ("expected.json", edited),
            ("expected-unchanged", unchanged),
            ("expected-resolv.conf", resolv),
        ] {
            if let Err(e) = check(&case.join(file), actual) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn id() -> weave_core::id::ContainerId {
    weave_core::id::ContainerId::parse(ID).unwrap()
}

#[test]
fn editing_twice_changes_nothing_more() {
    for case in cases() {
        let Some(once) = run_case(&case).config else {
            continue;
        };
        let settings = settings(&case);
        let inputs = Inputs {
            id: ID.as_ref(),
            bundle: Path::new("/bundle"),
            settings: &settings,
            hook_path: Path::new(HOOK),
        };
        // The second pass finds the resolv.conf mount already pointing at weave's own file.
        let again = plan(&once, &inputs, |_| Err(io::ErrorKind::NotFound.into())).unwrap();
        assert_eq!(again.config, None, "{}", case.display());
    }
}
