//! The `/etc/resolv.conf` entries of a config.json's `mounts`: where the container's original
//! resolv.conf comes from, and pointing that mount at weave's file (or adding one).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use weave_core::resolv;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MountsError {
    #[error("config.json: \"mounts\" is not an array")]
    NotArray,
}

fn mounts(config: &Value) -> Result<&[Value], MountsError> {
    match config.get("mounts") {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(m)) => Ok(m),
        Some(_) => Err(MountsError::NotArray),
    }
}

/// Host path of the file the container would see as /etc/resolv.conf, resolved against the
/// bundle when relative as OCI says.
pub fn resolv_source(config: &Value, bundle: &Path) -> Result<Option<PathBuf>, MountsError> {
    Ok(resolv::mount_source(mounts(config)?).map(|s| bundle.join(s)))
}

/// Makes every /etc/resolv.conf mount take its file from `source`, keeping its options; adds a
/// read-only bind mount when there is none (a bare `runc spec` bundle).
pub fn point_resolv_at(config: &mut Value, source: &Path) -> Result<(), MountsError> {
    mounts(config)?;
    let root = config
        .as_object_mut()
        .expect("caller checked that config.json is an object");
    let list = root
        .entry("mounts")
        .or_insert_with(|| Value::Array(Vec::new()));
    if list.is_null() {
        *list = Value::Array(Vec::new());
    }
    let list = list.as_array_mut().ok_or(MountsError::NotArray)?;
    let source = source.to_string_lossy();
    let mut found = false;
    for mount in list.iter_mut().filter(|m| resolv::is_resolv_mount(m)) {
        mount["source"] = Value::String(source.clone().into_owned());
        found = true;
    }
    if !found {
        list.push(json!({
            "destination": resolv::PATH,
            "type": "bind",
            "source": source,
            "options": ["rbind", "ro"],
        }));
    }
    Ok(())
}
