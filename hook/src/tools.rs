//! The programs the hook runs (iptables, nft, systemd-run), found on PATH, or on the
//! standard system path when the hook has none: an OCI hook gets only the environment its
//! configuration gives it, often no PATH, and iptables and nft live in /usr/sbin.

use std::ffi::OsString;
use std::process::Command;

/// The search path when the hook's environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The hook's PATH, or [`DEFAULT_PATH`].
pub fn search_path() -> OsString {
    std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into())
}

/// A command for `program`, looked up on [`search_path`].
pub fn command(program: &str) -> Command {
    let mut cmd = Command::new(program);
    if std::env::var_os("PATH").is_none() {
        // std looks the program up on the PATH given to the child.
        cmd.env("PATH", DEFAULT_PATH);
    }
    cmd
}
