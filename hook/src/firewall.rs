//! Letting traffic between the bridge's ports through hosts whose firewall drops it.
//!
//! Docker loads br_netfilter (bridged frames then traverse iptables' FORWARD chain) and sets
//! that chain's policy to DROP, so two containers on another bridge resolve each other's MAC
//! but every IP packet between them is dropped. The per-bridge `nf_call_iptables` option does
//! not help (the global sysctl wins); an ACCEPT rule for the bridge does.

use std::fs;
use std::io;
use std::process::{Command, Stdio};

use thiserror::Error;

const BRIDGE_NF_SYSCTL: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";

#[derive(Debug, Error)]
pub enum FirewallError {
    #[error("cannot run iptables (needed because bridged traffic passes iptables here): {0}")]
    Spawn(#[source] io::Error),
    #[error("`iptables {args}` failed: {stderr}")]
    Failed { args: String, stderr: String },
}

/// Whether bridged IPv4 traffic currently passes through iptables in this namespace.
pub fn bridged_traffic_filtered() -> bool {
    fs::read_to_string(BRIDGE_NF_SYSCTL).is_ok_and(|v| v.trim() == "1")
}

fn rule(bridge: &str) -> [String; 10] {
    [
        "FORWARD",
        "-i",
        bridge,
        "-o",
        bridge,
        "-m",
        "comment",
        "--comment",
        "weave-hook",
        "-j",
    ]
    .map(str::to_string)
}

fn iptables(op: &str, bridge: &str, position: Option<&str>) -> Result<bool, FirewallError> {
    let mut args = vec!["-w".to_string(), op.to_string()];
    let mut spec = rule(bridge).to_vec();
    spec.push("ACCEPT".to_string());
    args.push(spec.remove(0));
    if let Some(p) = position {
        args.push(p.to_string());
    }
    args.extend(spec);
    let out = Command::new("iptables")
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .map_err(FirewallError::Spawn)?;
    match out.status.code() {
        Some(0) => Ok(true),
        // -C and -D answer 1 when no such rule exists.
        Some(1) if op != "-I" => Ok(false),
        _ => Err(FirewallError::Failed {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }),
    }
}

/// Puts the ACCEPT rule for `bridge` at the top of FORWARD unless it is there already.
/// Returns whether it had to be added.
pub fn ensure_accept(bridge: &str) -> Result<bool, FirewallError> {
    if iptables("-C", bridge, None)? {
        return Ok(false);
    }
    iptables("-I", bridge, Some("1"))?;
    Ok(true)
}

/// Removes every copy of the ACCEPT rule for `bridge`. Returns how many were removed.
pub fn remove_accept(bridge: &str) -> Result<usize, FirewallError> {
    let mut removed = 0;
    while iptables("-D", bridge, None)? {
        removed += 1;
    }
    Ok(removed)
}
