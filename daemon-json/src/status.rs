//! `weave-setup status`: what is installed where. Every problem found is reported as a line
//! of the status, not as a failure: status is what one runs when something is wrong.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::atomic;
use crate::cli::{StatusArgs, DEFAULT_HOOKS_DIR};
use crate::containers_conf::{self, HooksDirs};
use crate::daemon_json;
use crate::dockerd;
use crate::jsonfmt;
use crate::podman;
use crate::record;
use crate::runtime_args;

pub fn run(args: &StatusArgs) {
    for line in docker_lines(args)
        .into_iter()
        .chain(dockerd_lines(args))
        .chain(podman_lines(args))
    {
        println!("{line}");
    }
}

fn docker_lines(args: &StatusArgs) -> Vec<String> {
    let name = &args.docker.runtime_name;
    let path = match atomic::resolve(&args.docker.config) {
        Ok(path) => path,
        Err(e) => return vec![format!("docker: {e}")],
    };
    let head = format!("docker: {}:", path.display());
    let bytes = match atomic::read_optional(&path) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            return vec![format!(
                "{head} does not exist (runtime \"{name}\" not installed)"
            )]
        }
        Err(e) => return vec![format!("docker: {e}")],
    };
    let doc = match jsonfmt::parse(&bytes) {
        Ok((doc, _)) => doc,
        Err(e) => {
            return vec![format!(
                "{head} not valid JSON ({e}): dockerd will not start with it"
            )]
        }
    };
    let current = daemon_json::current(&doc, name);
    let mut lines = vec![head];
    match &current.entry {
        Some(entry) => {
            lines.push(format!("  runtime \"{name}\": {}", describe_runtime(entry)));
            lines.extend(runtime_hook_line(entry));
        }
        None => lines.push(format!("  runtime \"{name}\": not installed")),
    }
    lines.push(format!(
        "  default-runtime: {}",
        current
            .default_runtime
            .as_deref()
            .unwrap_or("not set (runc)")
    ));
    lines.push(match record::load(&path) {
        Ok(stored) => record_line(&stored, &path, name),
        Err(e) => format!("  {e}"),
    });
    lines
}

fn record_line(stored: &record::Stored, config: &Path, name: &str) -> String {
    let Some(install) = stored.record().entry(name) else {
        return "  no weave-setup record for this runtime".to_string();
    };
    let restore = match &install.replaced_default {
        Some(d) => format!(
            "; uninstall restores default-runtime {} if it is still \"{name}\"",
            d.previous.as_deref().unwrap_or("(unset)")
        ),
        None => String::new(),
    };
    format!(
        "  installed by weave-setup ({}){restore}",
        record::path_for(config).display()
    )
}

fn describe_runtime(entry: &Value) -> String {
    let Some(path) = entry.get("path").and_then(Value::as_str) else {
        return format!("{entry} (no path)");
    };
    let args = runtime_args_of(entry);
    format!(
        "{}{}",
        command_line(path, &args),
        program_state(Path::new(path))
    )
}

fn runtime_args_of(entry: &Value) -> Vec<String> {
    entry
        .get("runtimeArgs")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Where weave-runtime will look for weave-hook: `--weave-hook-path` in runtimeArgs, else
/// beside its own executable (symlinks resolved, as it finds itself through /proc/self/exe).
fn runtime_hook_line(entry: &Value) -> Option<String> {
    let runtime = entry.get("path").and_then(Value::as_str)?;
    let args = runtime_args_of(entry);
    let (hook, how) = match runtime_args::hook_path(&args) {
        Some(hook) => (PathBuf::from(hook), "--weave-hook-path in runtimeArgs"),
        None => {
            let runtime = fs::canonicalize(runtime).unwrap_or_else(|_| runtime.into());
            (
                runtime.with_file_name("weave-hook"),
                "next to weave-runtime",
            )
        }
    };
    Some(format!(
        "  weave-hook: {} ({how}){}",
        hook.display(),
        program_state(&hook)
    ))
}

fn command_line(path: &str, args: &[String]) -> String {
    std::iter::once(path)
        .chain(args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Empty when a runtime can run `path`, else why it cannot, to end a status line.
fn program_state(path: &Path) -> String {
    if !path.is_absolute() {
        return " (NOT AN ABSOLUTE PATH: the runtime cannot run it)".to_string();
    }
    match fs::metadata(path) {
        Ok(meta) if !meta.is_file() => " (MISSING: not a regular file)".to_string(),
        Ok(meta) if meta.permissions().mode() & 0o111 == 0 => format!(
            " (NOT EXECUTABLE: mode {:04o}; chmod +x it)",
            meta.permissions().mode() & 0o7777
        ),
        Ok(_) => String::new(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            " (MISSING: the program does not exist)".to_string()
        }
        Err(e) => format!(" (cannot check it: {e})"),
    }
}

fn dockerd_lines(args: &StatusArgs) -> Vec<String> {
    let name = &args.docker.runtime_name;
    let found = match dockerd::find(&args.daemon.pidfile, &args.docker.config) {
        Ok(Some(found)) => found,
        Ok(None) => return vec!["dockerd: not running".to_string()],
        Err(e) => return vec![format!("dockerd: {e}")],
    };
    let head = format!(
        "dockerd: pid {} reads {}",
        found.pid,
        found.config.display()
    );
    match dockerd::view(args.daemon.docker_host.as_deref()) {
        Ok(view) => {
            let state = if view.runtimes.iter().any(|r| r == name) {
                "lists"
            } else {
                "does NOT list (reload it: weave-setup docker --reload)"
            };
            vec![format!("{head}; {state} runtime \"{name}\" ({view})")]
        }
        Err(e) => vec![format!("{head}; {e}")],
    }
}

/// The hook file podman will use, and the directories it reads them from (containers.conf).
fn podman_lines(args: &StatusArgs) -> Vec<String> {
    // podman ignores an empty CONTAINERS_CONF.
    let from_env = std::env::var_os("CONTAINERS_CONF")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let conf = args.containers_conf.clone().or(from_env);
    let read = match containers_conf::hooks_dirs(conf.as_deref()) {
        Ok(read) => read,
        Err(e) => {
            let dir = args
                .hooks_dir
                .as_deref()
                .unwrap_or(Path::new(DEFAULT_HOOKS_DIR));
            return vec![format!("podman: {e}"), hook_file_line(dir)];
        }
    };
    let mut lines = vec![format!(
        "podman: reads hooks from {} ({})",
        read.list(),
        read.source
    )];
    match &args.hooks_dir {
        Some(dir) => {
            lines.push(hook_file_line(dir));
            if !read.includes(dir) {
                lines.push(format!(
                    "podman: does NOT read {}: add it to hooks_dir in containers.conf's [engine] \
                     (weave-setup podman --hooks-dir prints how)",
                    dir.display()
                ));
            }
        }
        None => lines.push(effective_hook_file_line(&read)),
    }
    lines
}

/// The weave.json podman uses: a file in a later directory overrides one of the same name.
fn effective_hook_file_line(read: &HooksDirs) -> String {
    let found = read
        .dirs
        .iter()
        .rev()
        .find(|dir| match podman::installed(dir) {
            Ok(found) => found.is_some(),
            Err(_) => false,
        });
    match found {
        Some(dir) => hook_file_line(dir),
        None => format!(
            "podman: no {} in {} (hook not installed)",
            podman::HOOK_FILE,
            read.list()
        ),
    }
}

fn hook_file_line(dir: &Path) -> String {
    match podman::installed(dir) {
        Ok(Some((path, bytes))) => {
            let hook_path = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.pointer("/hook/path")?.as_str().map(PathBuf::from));
            let state = hook_path.as_deref().map_or(String::new(), program_state);
            format!(
                "podman: {}: {}{state}",
                path.display(),
                podman::describe(&bytes)
            )
        }
        Ok(None) => format!(
            "podman: no {} in {} (hook not installed)",
            podman::HOOK_FILE,
            dir.display()
        ),
        Err(e) => format!("podman: {e}"),
    }
}
