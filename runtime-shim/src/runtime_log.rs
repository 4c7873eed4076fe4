//! Reporting a failure where runc's callers look for it. containerd does not show a
//! runtime's stderr: it reads the last `"level":"error"` line of the `--log` file (JSON with
//! `--log-format json`), so weave-runtime's own refusals are appended there too, and `docker
//! run` prints them instead of "unable to retrieve OCI runtime error".

use std::fs::OpenOptions;
use std::io::Write;

use serde_json::json;

use crate::runc_args::RuntimeLog;

/// Appends `message` to the runtime log, best effort: stderr already carries it.
pub fn append(log: &RuntimeLog, message: &str) {
    let line = if log.json {
        json!({"level": "error", "msg": message}).to_string()
    } else {
        message.to_owned()
    };
    if let Ok(mut file) = OpenOptions::new().create(true).append(true).open(&log.path) {
        let _ = writeln!(file, "{line}");
    }
}
