//! weave-runtime's config.json edit: never a panic; an edit always yields valid JSON that
//! carries the hook; a bundle that asks for nothing is left unchanged.
#![no_main]

use std::ffi::OsStr;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use weave_runtime::plan::{plan, Inputs};
use weave_runtime::settings::Settings;

fuzz_target!(|data: &[u8]| {
    let settings = Settings::new(Vec::new(), |_| None).expect("default settings");
    let inputs = Inputs {
        id: OsStr::new("fuzz"),
        bundle: Path::new("/nonexistent-bundle"),
        settings: &settings,
        hook_path: Path::new("/usr/local/bin/weave-hook"),
    };
    let read = |_: &Path| Ok("nameserver 192.0.2.1\nsearch example.org\n".to_string());
    if let Ok(p) = plan(data, &inputs, read) {
        if let Some(config) = p.config {
            let v: serde_json::Value = serde_json::from_slice(&config).expect("edited config is JSON");
            assert!(v["hooks"]["createRuntime"].is_array() && v["hooks"]["poststop"].is_array());
        }
    }
});
