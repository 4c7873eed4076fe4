//! The OCI state on the hook's stdin, and option resolution from it: never a panic, and an
//! accepted container id is always safe as a file name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weave_core::oci::State;

fuzz_target!(|data: &[u8]| {
    if let Ok(state) = State::parse(data) {
        let id = state.id.as_str();
        assert!(!id.is_empty() && !id.contains('/') && id != "." && id != "..");
        // Resolution may read a bundle; the fuzzer's bundles do not exist, which is an error.
        let _ = weave_core::options::resolve(&state);
    }
});
