//! weave-runtime: see the library documentation; this only reports the error, if any.

fn main() {
    let err = weave_runtime::shim::run(std::env::args_os().skip(1).collect());
    eprintln!("weave-runtime: {err}");
    std::process::exit(1);
}
