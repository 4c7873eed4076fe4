//! `weave-setup podman` and `weave-setup uninstall podman`: the OCI hooks.d file that makes
//! podman (and CRI-O) run weave-hook for containers that ask for the weave network.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use thiserror::Error;

use crate::atomic::{self, AtomicError};
use crate::cli::{HookOptions, PodmanInstall, PodmanUninstall, DEFAULT_HOOKS_DIR};
use crate::paths::{self, PathError, Program};

/// One file: podman reads every `*.json` in the hooks directories.
pub const HOOK_FILE: &str = "weave.json";
/// In schema 1.0.0 all `when` conditions must hold, but one annotation entry matches when
/// *any* annotation has a matching key and value: so one key pattern covers both annotations.
/// `.*` also matches the empty value (weave.cidr="" means "allocate from the default range").
pub const WHEN_ANNOTATION: &str = r"^weave\.(cidr|dns)$";
/// createRuntime: after the namespaces exist, before the process runs. poststop: release.
const STAGES: [&str; 2] = ["createRuntime", "poststop"];

#[derive(Debug, Error)]
pub enum PodmanError {
    #[error(transparent)]
    Path(#[from] PathError),
    #[error(transparent)]
    File(#[from] AtomicError),
    #[error("cannot create {0}: {1}")]
    CreateDir(PathBuf, #[source] io::Error),
    #[error(
        "{path} already exists with other contents ({found}); pass --force to replace it \
         (the old file is kept as {path}.weave-backup)"
    )]
    Conflict { path: PathBuf, found: String },
    #[error("{0} was not written by weave-setup ({1}); pass --force to remove it anyway")]
    NotOurs(PathBuf, String),
}

/// The hook file's contents for weave-hook at `program` with `options`.
pub fn hook_file(program: &Program, options: &HookOptions) -> Value {
    let mut args = vec!["weave-hook".to_string()];
    let mut push = |flag: &str, value: Option<String>| {
        if let Some(value) = value {
            args.push(flag.to_string());
            args.push(value);
        }
    };
    push("--bridge", options.bridge.clone());
    push("--ipalloc-range", options.ipalloc_range.clone());
    push(
        "--state-dir",
        options
            .state_dir
            .as_ref()
            .map(|d| d.to_string_lossy().into_owned()),
    );
    push("--mtu", options.mtu.map(|m| m.to_string()));
    push("--log-level", options.log_level.clone());
    json!({
        "version": "1.0.0",
        "hook": { "path": program.to_str_lossy(), "args": args },
        "when": { "annotations": { WHEN_ANNOTATION: ".*" } },
        "stages": STAGES,
    })
}

fn render(file: &Value) -> Vec<u8> {
    let mut text = serde_json::to_vec_pretty(file).expect("a JSON value always serializes");
    text.push(b'\n');
    text
}

/// Whether `bytes` is a hook file weave-setup wrote (any options).
fn is_ours(bytes: &[u8]) -> bool {
    serde_json::from_slice::<Value>(bytes).is_ok_and(|v| {
        v.pointer("/when/annotations")
            .and_then(Value::as_object)
            .is_some_and(|a| a.contains_key(WHEN_ANNOTATION))
    })
}

/// A short description of a hook file for messages: its command line, or that it is not one.
pub fn describe(bytes: &[u8]) -> String {
    let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
        return "not valid JSON".to_string();
    };
    let path = value.pointer("/hook/path").and_then(Value::as_str);
    let args = value.pointer("/hook/args").and_then(Value::as_array);
    match (path, args) {
        (Some(path), Some(args)) => {
            let rest: Vec<&str> = args.iter().skip(1).filter_map(Value::as_str).collect();
            format!("runs {path} {}", rest.join(" "))
                .trim_end()
                .to_string()
        }
        (Some(path), None) => format!("runs {path}"),
        _ => "no hook.path".to_string(),
    }
}

/// Installs, then warns if weave-hook is missing (a failed run shows only its error).
pub fn install(args: &PodmanInstall) -> Result<(), PodmanError> {
    let program = paths::locate(args.hook_path.as_deref(), "--hook-path", "weave-hook")?;
    install_pointing_to(args, &program)?;
    if let Some(warning) = program.warning() {
        eprintln!("weave-setup: warning: {warning}");
    }
    Ok(())
}

fn install_pointing_to(args: &PodmanInstall, program: &Program) -> Result<(), PodmanError> {
    let dir = &args.target.hooks_dir;
    let path = dir.join(HOOK_FILE);
    let new = render(&hook_file(program, &args.options));
    if args.dry_run {
        print!("{}", String::from_utf8_lossy(&new));
        eprintln!("weave-setup: dry run: {} not written", path.display());
        return Ok(());
    }
    if dir == Path::new(DEFAULT_HOOKS_DIR) {
        // podman's package does not always create its default directory.
        fs::create_dir_all(dir).map_err(|e| PodmanError::CreateDir(dir.clone(), e))?;
    }
    let old = atomic::read_optional(&path)?;
    match &old {
        Some(old) if *old == new => {
            println!(
                "weave-setup: {} is already in place; nothing changed",
                path.display()
            );
        }
        Some(old) if !args.force => {
            return Err(PodmanError::Conflict {
                path,
                found: describe(old),
            })
        }
        _ => {
            let backup = atomic::replace(&path, old.as_deref(), &new)?;
            let note = backup.map_or(String::new(), |b| {
                format!("; previous version kept as {}", b.display())
            });
            println!(
                "weave-setup: wrote {} ({}){note}",
                path.display(),
                describe(&new)
            );
        }
    }
    explain_hooks_dir(dir);
    Ok(())
}

/// podman reads only its default directory unless containers.conf lists others.
fn explain_hooks_dir(dir: &Path) {
    if dir == Path::new(DEFAULT_HOOKS_DIR) {
        println!(
            "weave-setup: podman runs the hook for `podman run --annotation weave.cidr=10.32.0.5/12 ...` \
             (rootful podman only: the hook needs CAP_NET_ADMIN)"
        );
        return;
    }
    println!(
        "weave-setup: podman reads hooks from {DEFAULT_HOOKS_DIR} only, unless containers.conf \
         (/etc/containers/containers.conf, or the file in $CONTAINERS_CONF) says:\n  \
         [engine]\n  hooks_dir = [\"{}\"]\n\
         weave-setup: that list replaces the default; add \"{DEFAULT_HOOKS_DIR}\" to it to keep \
         hooks installed there. CRI-O: hooks_dir in crio.conf's [crio.runtime].",
        dir.display()
    );
}

pub fn uninstall(args: &PodmanUninstall) -> Result<(), PodmanError> {
    let path = args.target.hooks_dir.join(HOOK_FILE);
    let Some(old) = read_if_dir_exists(&path)? else {
        println!(
            "weave-setup: {} does not exist; nothing changed",
            path.display()
        );
        return Ok(());
    };
    if !is_ours(&old) && !args.force {
        return Err(PodmanError::NotOurs(path, describe(&old)));
    }
    if args.dry_run {
        println!(
            "weave-setup: would remove {} ({})",
            path.display(),
            describe(&old)
        );
        eprintln!("weave-setup: dry run: nothing removed");
        return Ok(());
    }
    let backup = atomic::remove(&path, &old)?;
    println!(
        "weave-setup: removed {}; previous version kept as {}",
        path.display(),
        backup.display()
    );
    Ok(())
}

/// The file's contents; `None` when it or its directory does not exist (nothing to uninstall).
fn read_if_dir_exists(path: &Path) -> Result<Option<Vec<u8>>, AtomicError> {
    match atomic::read_optional(path) {
        Err(AtomicError::MissingDir(_)) => Ok(None),
        other => other,
    }
}

/// The hook file in `dir`, if any: `(path, contents)`.
pub fn installed(dir: &Path) -> Result<Option<(PathBuf, Vec<u8>)>, AtomicError> {
    let path = dir.join(HOOK_FILE);
    Ok(read_if_dir_exists(&path)?.map(|bytes| (path, bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program() -> Program {
        Program {
            path: PathBuf::from("/usr/local/bin/weave-hook"),
            exists: true,
        }
    }

    fn no_options() -> HookOptions {
        HookOptions {
            bridge: None,
            ipalloc_range: None,
            state_dir: None,
            mtu: None,
            log_level: None,
        }
    }

    #[test]
    fn hook_file_has_schema_stages_and_trigger() {
        let file = hook_file(&program(), &no_options());
        assert_eq!(
            file,
            json!({
                "version": "1.0.0",
                "hook": {"path": "/usr/local/bin/weave-hook", "args": ["weave-hook"]},
                "when": {"annotations": {"^weave\\.(cidr|dns)$": ".*"}},
                "stages": ["createRuntime", "poststop"]
            })
        );
        assert!(is_ours(&render(&file)));
    }

    #[test]
    fn given_options_are_passed_to_the_hook_in_order() {
        let options = HookOptions {
            bridge: Some("wvtest0".into()),
            ipalloc_range: Some("10.40.0.0/16".into()),
            state_dir: Some(PathBuf::from("/tmp/state")),
            mtu: Some(1400),
            log_level: Some("debug".into()),
        };
        let file = hook_file(&program(), &options);
        assert_eq!(
            file["hook"]["args"],
            json!([
                "weave-hook",
                "--bridge",
                "wvtest0",
                "--ipalloc-range",
                "10.40.0.0/16",
                "--state-dir",
                "/tmp/state",
                "--mtu",
                "1400",
                "--log-level",
                "debug"
            ])
        );
        assert_eq!(
            describe(&render(&file)),
            "runs /usr/local/bin/weave-hook --bridge wvtest0 --ipalloc-range 10.40.0.0/16 \
             --state-dir /tmp/state --mtu 1400 --log-level debug"
        );
    }

    #[test]
    fn foreign_hook_files_are_not_ours() {
        assert!(!is_ours(
            b"{\"version\":\"1.0.0\",\"hook\":{\"path\":\"/x\"}}"
        ));
        assert!(!is_ours(b"garbage"));
        assert_eq!(describe(b"garbage"), "not valid JSON");
    }
}
