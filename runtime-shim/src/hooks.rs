//! Adds weave-hook to a config.json's `hooks`: `attach` at createRuntime (after the runtime
//! made the namespaces, before the container process runs) and `detach` at poststop. Every
//! other hook stays where it is, and an existing weave-hook is never added a second time.

use std::path::Path;

use serde_json::{json, Map, Value};

use crate::settings::HookSettings;

/// argv[0] weave-runtime gives the hook; also how an existing entry is recognised.
const HOOK_ARGV0: &str = "weave-hook";

/// Stages at which an existing weave-hook entry already attaches the container.
const ATTACH_STAGES: &[&str] = &[
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HooksError {
    #[error("config.json: \"hooks\" is not an object")]
    HooksNotObject,
    #[error("config.json: \"hooks.{0}\" is not an array")]
    StageNotArray(String),
}

pub fn inject(
    config: &mut Value,
    hook_path: &Path,
    settings: &HookSettings,
) -> Result<(), HooksError> {
    let root = config
        .as_object_mut()
        .expect("caller checked that config.json is an object");
    let hooks = root
        .entry("hooks")
        .or_insert_with(|| Value::Object(Map::new()));
    if hooks.is_null() {
        *hooks = Value::Object(Map::new());
    }
    let hooks = hooks.as_object_mut().ok_or(HooksError::HooksNotObject)?;

    let mut attached = false;
    for stage in ATTACH_STAGES {
        attached |= stage_has_weave(hooks, stage, hook_path)?;
    }
    if !attached {
        add(
            hooks,
            "createRuntime",
            hook_path,
            settings.hook_args("attach"),
        )?;
    }
    if !stage_has_weave(hooks, "poststop", hook_path)? {
        add(hooks, "poststop", hook_path, settings.hook_args("detach"))?;
    }
    Ok(())
}

fn stage_has_weave(
    hooks: &Map<String, Value>,
    stage: &str,
    hook_path: &Path,
) -> Result<bool, HooksError> {
    let entries = match hooks.get(stage) {
        None | Some(Value::Null) => return Ok(false),
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err(HooksError::StageNotArray(stage.to_owned())),
    };
    Ok(entries.iter().any(|e| is_weave_hook(e, hook_path)))
}

fn is_weave_hook(entry: &Value, hook_path: &Path) -> bool {
    let same_path = entry.get("path").and_then(Value::as_str) == hook_path.to_str();
    let argv0 = entry.pointer("/args/0").and_then(Value::as_str);
    same_path || argv0 == Some(HOOK_ARGV0)
}

fn add(
    hooks: &mut Map<String, Value>,
    stage: &str,
    hook_path: &Path,
    args: Vec<String>,
) -> Result<(), HooksError> {
    let entry = json!({ "path": hook_path.to_string_lossy(), "args": args });
    let list = hooks
        .entry(stage)
        .or_insert_with(|| Value::Array(Vec::new()));
    if list.is_null() {
        *list = Value::Array(Vec::new());
    }
    list.as_array_mut()
        .ok_or_else(|| HooksError::StageNotArray(stage.to_owned()))?
        .push(entry);
    Ok(())
}
