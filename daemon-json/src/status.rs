//! `weave-setup status`: what is installed where. Every problem found is reported as a line
//! of the status, not as a failure: status is what one runs when something is wrong.

use std::path::Path;

use serde_json::Value;

use crate::atomic;
use crate::cli::StatusArgs;
use crate::daemon_json;
use crate::dockerd;
use crate::jsonfmt;
use crate::podman;
use crate::record;

pub fn run(args: &StatusArgs) {
    for line in docker_lines(args)
        .into_iter()
        .chain(dockerd_lines(args))
        .chain(podman_lines(&args.hooks.hooks_dir))
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
    lines.push(match &current.entry {
        Some(entry) => format!("  runtime \"{name}\": {}", describe_runtime(entry)),
        None => format!("  runtime \"{name}\": not installed"),
    });
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
    let args: Vec<&str> = entry
        .get("runtimeArgs")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    format!("{}{}", command_line(path, &args), program_state(path))
}

fn command_line(path: &str, args: &[&str]) -> String {
    std::iter::once(path)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}

fn program_state(path: &str) -> &'static str {
    if Path::new(path).is_file() {
        ""
    } else {
        " (MISSING: the program does not exist)"
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

fn podman_lines(dir: &Path) -> Vec<String> {
    match podman::installed(dir) {
        Ok(Some((path, bytes))) => {
            let hook_path = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.pointer("/hook/path")?.as_str().map(str::to_string));
            let state = hook_path.as_deref().map_or("", program_state);
            vec![format!(
                "podman: {}: {}{state}",
                path.display(),
                podman::describe(&bytes)
            )]
        }
        Ok(None) => vec![format!(
            "podman: no {} in {} (hook not installed)",
            podman::HOOK_FILE,
            dir.display()
        )],
        Err(e) => vec![format!("podman: {e}")],
    }
}
