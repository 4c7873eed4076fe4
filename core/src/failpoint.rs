//! Test-only failpoints, to prove that a hook killed at any step leaves nothing that the next
//! attach or `weave-hook gc` cannot clean up.
//!
//! Built only with the `failpoints` feature; without it `hit` is an empty inline function.
//! With it, `WEAVE_HOOK_FAILPOINT=<step>` makes the hook SIGKILL itself when it reaches
//! `<step>`, and `WEAVE_HOOK_FAILPOINT=<step>:hang` makes it hang there (until the runtime's
//! hook timeout kills it).

/// The steps, in the order an attach reaches them.
pub const STEPS: &[&str] = &[
    "claimed",     // an address file written, no record yet
    "record-temp", // the record's temp file written, not renamed into place
    "reserved",    // addresses and record in place
    "bridge",      // bridge exists and is up
    "veth",        // veth pair created, peer in the container
    "addresses",   // addresses on ethwe, ethwe still down (inside the container's namespace)
    "attached",    // everything done, not yet exited
];

#[cfg(feature = "failpoints")]
pub fn hit(step: &str) {
    let Ok(spec) = std::env::var("WEAVE_HOOK_FAILPOINT") else {
        return;
    };
    let (name, action) = spec.split_once(':').unwrap_or((spec.as_str(), "kill"));
    if name != step {
        return;
    }
    if action == "hang" {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_step: &str) {}
