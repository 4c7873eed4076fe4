//! The edit of daemon.json itself, on an in-memory `serde_json::Value`: add or remove
//! `runtimes.<name>` and, on request, `default-runtime`. Every other key is left as it is.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

const RUNTIMES: &str = "runtimes";
const DEFAULT_RUNTIME: &str = "default-runtime";
/// dockerd's default-runtime when daemon.json names none.
const STOCK_RUNTIME: &str = "runc";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MergeError {
    #[error("the top level is not a JSON object")]
    NotAnObject,
    #[error("\"runtimes\" is not a JSON object")]
    RuntimesNotAnObject,
    #[error(
        "runtime \"{name}\" is already defined as {existing}, not {wanted}; \
         pass --force to replace it, or --runtime-name to pick another name"
    )]
    Conflict {
        name: String,
        existing: String,
        wanted: String,
    },
    #[error("\"default-runtime\" is not a string")]
    DefaultRuntimeNotAString,
}

/// One entry of daemon.json's `runtimes` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeEntry {
    pub path: String,
    pub args: Vec<String>,
}

impl RuntimeEntry {
    /// `{"path": ..., "runtimeArgs": [...]}`, without `runtimeArgs` when there are none.
    pub fn to_value(&self) -> Value {
        let mut entry = Map::new();
        entry.insert("path".into(), Value::String(self.path.clone()));
        if !self.args.is_empty() {
            let args = self.args.iter().cloned().map(Value::String).collect();
            entry.insert("runtimeArgs".into(), Value::Array(args));
        }
        Value::Object(entry)
    }

    /// Whether `existing` describes this same runtime: same path and arguments, other keys
    /// (none that dockerd knows of for a path runtime) absent. A missing `runtimeArgs` equals [].
    fn is_same_as(&self, existing: &Value) -> bool {
        let Some(object) = existing.as_object() else {
            return false;
        };
        let args_match = match object.get("runtimeArgs") {
            None => self.args.is_empty(),
            Some(Value::Array(args)) => {
                args.len() == self.args.len()
                    && args
                        .iter()
                        .zip(&self.args)
                        .all(|(a, b)| a.as_str() == Some(b))
            }
            Some(_) => false,
        };
        let no_other_keys = object
            .keys()
            .all(|key| key == "path" || key == "runtimeArgs");
        object.get("path").and_then(Value::as_str) == Some(self.path.as_str())
            && args_match
            && no_other_keys
    }
}

/// What `install` changed, so that `uninstall` can undo exactly that.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    /// `runtimes` did not exist and was created for our entry.
    pub created_runtimes: bool,
    /// Set when we changed `default-runtime`: the value it had before (`None`: it was absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_default: Option<PreviousDefault>,
}

/// The `default-runtime` that `--set-as-default` replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousDefault {
    pub previous: Option<String>,
}

/// Outcome of an install on the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallOutcome {
    /// The document changed (so it must be written).
    pub changed: bool,
    /// What this call changed (the record keeps what earlier installs changed).
    pub installed: Installed,
}

/// Adds `runtimes.<name> = entry` (and `default-runtime = name` when `set_default`).
pub fn install(
    doc: &mut Value,
    name: &str,
    entry: &RuntimeEntry,
    set_default: bool,
    force: bool,
) -> Result<InstallOutcome, MergeError> {
    let top = doc.as_object_mut().ok_or(MergeError::NotAnObject)?;
    let current_default = match top.get(DEFAULT_RUNTIME) {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) if set_default => return Err(MergeError::DefaultRuntimeNotAString),
        Some(_) => None,
    };
    let mut installed = Installed::default();
    let mut changed = false;

    let existing = match top.get(RUNTIMES) {
        None => None,
        Some(Value::Object(runtimes)) => runtimes.get(name),
        Some(_) => return Err(MergeError::RuntimesNotAnObject),
    };
    match existing {
        Some(existing) if entry.is_same_as(existing) => {}
        Some(existing) if !force => {
            return Err(MergeError::Conflict {
                name: name.to_string(),
                existing: existing.to_string(),
                wanted: entry.to_value().to_string(),
            })
        }
        _ => {
            if !top.contains_key(RUNTIMES) {
                installed.created_runtimes = true;
            }
            if let Value::Object(runtimes) = top
                .entry(RUNTIMES)
                .or_insert_with(|| Value::Object(Map::new()))
            {
                runtimes.insert(name.to_string(), entry.to_value());
            }
            changed = true;
        }
    }

    if set_default && current_default.as_deref() != Some(name) {
        top.insert(DEFAULT_RUNTIME.into(), Value::String(name.to_string()));
        installed.replaced_default = Some(PreviousDefault {
            previous: current_default,
        });
        changed = true;
    }
    Ok(InstallOutcome { changed, installed })
}

/// Removes `runtimes.<name>`, the `runtimes` object if install created it and it is now empty,
/// and `default-runtime` if it names our runtime (restoring what `installed` says it was).
/// Returns whether the document changed.
pub fn uninstall(doc: &mut Value, name: &str, installed: &Installed) -> Result<bool, MergeError> {
    let top = doc.as_object_mut().ok_or(MergeError::NotAnObject)?;
    let mut changed = false;

    if let Some(runtimes) = top.get_mut(RUNTIMES) {
        let runtimes = runtimes
            .as_object_mut()
            .ok_or(MergeError::RuntimesNotAnObject)?;
        changed |= runtimes.shift_remove(name).is_some();
        if runtimes.is_empty() && installed.created_runtimes {
            top.shift_remove(RUNTIMES);
            changed = true;
        }
    }

    // dockerd refuses to start with a default-runtime that names no runtime, so ours goes
    // even when no record says we set it.
    if top.get(DEFAULT_RUNTIME).and_then(Value::as_str) == Some(name) {
        let previous = installed
            .replaced_default
            .as_ref()
            .and_then(|d| d.previous.clone())
            .filter(|previous| previous != name);
        match previous {
            Some(previous) => {
                top.insert(DEFAULT_RUNTIME.into(), Value::String(previous));
            }
            None => {
                top.shift_remove(DEFAULT_RUNTIME);
            }
        }
        changed = true;
    }
    Ok(changed)
}

/// On SIGHUP dockerd keeps the current value of every key absent from daemon.json, so after
/// an uninstall removed `runtimes` or `default-runtime` altogether a reload would keep our
/// runtime. This returns the document with those keys spelled out at their defaults
/// (`{}`, `"runc"`) when they are absent: write it, reload, then write the exact document.
pub fn for_live_reload(doc: &Value) -> Option<Value> {
    let top = doc.as_object()?;
    let mut explicit = top.clone();
    if !explicit.contains_key(RUNTIMES) {
        explicit.insert(RUNTIMES.into(), Value::Object(Map::new()));
    }
    if !explicit.contains_key(DEFAULT_RUNTIME) {
        explicit.insert(DEFAULT_RUNTIME.into(), Value::String(STOCK_RUNTIME.into()));
    }
    (explicit != *top).then_some(Value::Object(explicit))
}

/// The default runtime dockerd uses with this daemon.json: `default-runtime`, else runc.
pub fn effective_default(doc: &Value) -> &str {
    doc.get(DEFAULT_RUNTIME)
        .and_then(Value::as_str)
        .unwrap_or(STOCK_RUNTIME)
}

/// What a daemon.json says about one runtime name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    /// `runtimes.<name>`, as written.
    pub entry: Option<Value>,
    /// `default-runtime`, when it is a string.
    pub default_runtime: Option<String>,
}

pub fn current(doc: &Value, name: &str) -> Current {
    Current {
        entry: doc.get(RUNTIMES).and_then(|r| r.get(name)).cloned(),
        default_runtime: doc
            .get(DEFAULT_RUNTIME)
            .and_then(Value::as_str)
            .map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonfmt;

    /// A daemon.json with everything a merge could damage: nested objects, another runtime,
    /// numbers beyond u64 and f64, unicode and escapes, keys in non-alphabetical order.
    const RICH: &str = r#"{
  "zeta-first": true,
  "log-driver": "json-file",
  "log-opts": {
    "max-size": "10m",
    "labels": "a,b",
    "nested": {
      "deeper": [
        1,
        {
          "x": null
        }
      ]
    }
  },
  "runtimes": {
    "nvidia": {
      "path": "/usr/bin/nvidia-container-runtime",
      "runtimeArgs": [
        "--debug"
      ]
    }
  },
  "big": 12345678901234567890,
  "huge": 1e+400,
  "precise": 0.10000000000000000000000001,
  "negative": -98765432109876543210,
  "unicode": "日本語 — ünïcødé 🐳",
  "escaped": "tab\tquote\"backslash\\",
  "alpha-last": []
}
"#;

    fn weave() -> RuntimeEntry {
        RuntimeEntry {
            path: "/usr/local/bin/weave-runtime".into(),
            args: vec!["--bridge=weave".into()],
        }
    }

    fn parse(text: &str) -> Value {
        jsonfmt::parse(text.as_bytes()).unwrap().0
    }

    fn install_rich() -> (Value, InstallOutcome) {
        let mut doc = parse(RICH);
        let outcome = install(&mut doc, "weave", &weave(), false, false).unwrap();
        (doc, outcome)
    }

    #[test]
    fn install_adds_only_our_runtime_and_keeps_everything_else_exactly() {
        let (doc, outcome) = install_rich();
        assert!(outcome.changed);
        assert!(!outcome.installed.created_runtimes);

        let mut expected = parse(RICH);
        expected["runtimes"]
            .as_object_mut()
            .unwrap()
            .insert("weave".into(), weave().to_value());
        assert_eq!(doc, expected);

        let (_, style) = jsonfmt::parse(RICH.as_bytes()).unwrap();
        let text = String::from_utf8(jsonfmt::render(&doc, &style)).unwrap();
        assert!(text.contains("\"big\": 12345678901234567890,"), "{text}");
        assert!(text.contains("\"huge\": 1e+400,"), "{text}");
        assert!(text.contains("\"precise\": 0.10000000000000000000000001,"));
        assert!(text.contains("\"negative\": -98765432109876543210,"));
        assert!(text.contains("\"unicode\": \"日本語 — ünïcødé 🐳\""));
        assert!(text.contains(r#""escaped": "tab\tquote\"backslash\\""#));
        let keys: Vec<&String> = doc.as_object().unwrap().keys().collect();
        assert_eq!(keys[0], "zeta-first");
        assert_eq!(keys[keys.len() - 1], "alpha-last");
        let runtimes: Vec<&String> = doc["runtimes"].as_object().unwrap().keys().collect();
        assert_eq!(runtimes, ["nvidia", "weave"]);
    }

    #[test]
    fn install_then_uninstall_gives_back_the_original_bytes() {
        let (mut doc, outcome) = install_rich();
        assert!(uninstall(&mut doc, "weave", &outcome.installed).unwrap());
        let (_, style) = jsonfmt::parse(RICH.as_bytes()).unwrap();
        assert_eq!(
            String::from_utf8(jsonfmt::render(&doc, &style)).unwrap(),
            RICH
        );
    }

    #[test]
    fn exponent_spelling_is_normalised_but_the_number_is_kept() {
        // serde_json writes every exponent as `e+N`/`e-N`: same number, beyond f64's range too.
        let mut doc = parse(r#"{"huge": 1e400, "tiny": 2E-400}"#);
        install(&mut doc, "weave", &weave(), false, false).unwrap();
        let text = serde_json::to_string(&doc).unwrap();
        assert!(
            text.starts_with(r#"{"huge":1e+400,"tiny":2e-400,"#),
            "{text}"
        );
    }

    #[test]
    fn second_install_changes_nothing() {
        let (mut doc, _) = install_rich();
        let before = doc.clone();
        let second = install(&mut doc, "weave", &weave(), false, false).unwrap();
        assert!(!second.changed);
        assert_eq!(second.installed, Installed::default());
        assert_eq!(doc, before);
    }

    #[test]
    fn install_into_empty_document_creates_runtimes_and_uninstall_removes_it() {
        let mut doc = parse("{}");
        let outcome = install(&mut doc, "weave", &weave(), false, false).unwrap();
        assert!(outcome.installed.created_runtimes);
        assert_eq!(
            doc,
            serde_json::json!({"runtimes": {"weave": {
                "path": "/usr/local/bin/weave-runtime", "runtimeArgs": ["--bridge=weave"]}}})
        );
        uninstall(&mut doc, "weave", &outcome.installed).unwrap();
        assert_eq!(doc, parse("{}"));
    }

    #[test]
    fn uninstall_keeps_an_empty_runtimes_object_the_user_had() {
        let mut doc = parse(r#"{"runtimes": {}}"#);
        let outcome = install(&mut doc, "weave", &weave(), false, false).unwrap();
        uninstall(&mut doc, "weave", &outcome.installed).unwrap();
        assert_eq!(doc, parse(r#"{"runtimes": {}}"#));
    }

    #[test]
    fn entry_without_arguments_has_no_runtime_args_key() {
        let entry = RuntimeEntry {
            path: "/x/weave-runtime".into(),
            args: vec![],
        };
        assert_eq!(
            entry.to_value(),
            serde_json::json!({"path": "/x/weave-runtime"})
        );
        assert!(
            entry.is_same_as(&serde_json::json!({"path": "/x/weave-runtime", "runtimeArgs": []}))
        );
    }

    #[test]
    fn conflicting_runtime_is_refused_without_force_and_replaced_with_it() {
        let text = r#"{"runtimes": {"weave": {"path": "/opt/other-runtime"}}}"#;
        let mut doc = parse(text);
        let err = install(&mut doc, "weave", &weave(), false, false).unwrap_err();
        assert!(matches!(err, MergeError::Conflict { .. }));
        assert!(err.to_string().contains("/opt/other-runtime"), "{err}");
        assert!(err.to_string().contains("--force"), "{err}");
        assert_eq!(
            doc,
            parse(text),
            "a refused merge leaves the document alone"
        );

        let outcome = install(&mut doc, "weave", &weave(), false, true).unwrap();
        assert!(outcome.changed);
        assert_eq!(doc["runtimes"]["weave"], weave().to_value());
    }

    #[test]
    fn same_path_with_other_arguments_is_a_conflict() {
        let mut doc = parse(
            r#"{"runtimes": {"weave": {"path": "/usr/local/bin/weave-runtime", "runtimeArgs": ["--x"]}}}"#,
        );
        let err = install(&mut doc, "weave", &weave(), false, false);
        assert!(matches!(err, Err(MergeError::Conflict { .. })));
    }

    #[test]
    fn set_as_default_remembers_and_uninstall_restores_the_previous_default() {
        let mut doc = parse(r#"{"default-runtime": "runc", "debug": true}"#);
        let first = install(&mut doc, "weave", &weave(), true, false).unwrap();
        assert_eq!(doc["default-runtime"], "weave");
        assert_eq!(
            first.installed.replaced_default,
            Some(PreviousDefault {
                previous: Some("runc".into())
            })
        );
        let second = install(&mut doc, "weave", &weave(), true, false).unwrap();
        assert!(!second.changed);
        assert_eq!(second.installed, Installed::default());

        uninstall(&mut doc, "weave", &first.installed).unwrap();
        assert_eq!(doc, parse(r#"{"default-runtime": "runc", "debug": true}"#));
    }

    #[test]
    fn uninstall_removes_a_default_that_was_absent_before() {
        let mut doc = parse(r#"{"debug": true}"#);
        let outcome = install(&mut doc, "weave", &weave(), true, false).unwrap();
        uninstall(&mut doc, "weave", &outcome.installed).unwrap();
        assert_eq!(doc, parse(r#"{"debug": true}"#));
    }

    #[test]
    fn uninstall_never_restores_the_runtime_it_removes() {
        let mut doc = parse(r#"{"default-runtime": "weave", "debug": true}"#);
        let installed = Installed {
            created_runtimes: false,
            replaced_default: Some(PreviousDefault {
                previous: Some("weave".into()),
            }),
        };
        assert!(uninstall(&mut doc, "weave", &installed).unwrap());
        assert_eq!(doc, parse(r#"{"debug": true}"#));
    }

    #[test]
    fn uninstall_leaves_a_default_the_user_changed_since() {
        let mut doc = parse(r#"{"default-runtime": "runc"}"#);
        let outcome = install(&mut doc, "weave", &weave(), true, false).unwrap();
        doc["default-runtime"] = Value::String("crun".into());
        uninstall(&mut doc, "weave", &outcome.installed).unwrap();
        assert_eq!(doc["default-runtime"], "crun");
    }

    #[test]
    fn live_reload_form_spells_out_absent_keys_only() {
        assert_eq!(
            for_live_reload(&parse(r#"{"debug": true}"#)),
            Some(parse(
                r#"{"debug": true, "runtimes": {}, "default-runtime": "runc"}"#
            ))
        );
        assert_eq!(
            for_live_reload(&parse(r#"{"runtimes": {"a": {"path": "/a"}}}"#)),
            Some(parse(
                r#"{"runtimes": {"a": {"path": "/a"}}, "default-runtime": "runc"}"#
            ))
        );
        assert_eq!(
            for_live_reload(&parse(r#"{"runtimes": {}, "default-runtime": "crun"}"#)),
            None
        );
    }

    #[test]
    fn uninstall_of_nothing_changes_nothing() {
        let mut doc = parse(RICH);
        assert!(!uninstall(&mut doc, "weave", &Installed::default()).unwrap());
        assert_eq!(doc, parse(RICH));
    }

    #[test]
    fn wrong_shapes_are_errors() {
        let ins = |text: &str| install(&mut parse(text), "weave", &weave(), true, false);
        assert_eq!(ins("[]").unwrap_err(), MergeError::NotAnObject);
        assert_eq!(
            ins(r#"{"runtimes": []}"#).unwrap_err(),
            MergeError::RuntimesNotAnObject
        );
        assert_eq!(
            ins(r#"{"default-runtime": 3}"#).unwrap_err(),
            MergeError::DefaultRuntimeNotAString
        );
    }
}
