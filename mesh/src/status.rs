//! `weave-mesh status`: hosts, their blocks and addresses, as tables.

use std::collections::BTreeSet;
use std::fmt::Write;

use crate::view::View;

/// The tables `weave-mesh status` prints.
pub fn render(view: &View) -> String {
    let mut out = String::new();
    let mut names: BTreeSet<String> = view.hosts.keys().cloned().collect();
    names.extend(view.unregistered_owners());
    let _ = writeln!(
        out,
        "{:<24} {:<16} {:<6} {:>6} {:>9}",
        "HOST", "UNDERLAY", "LEASE", "BLOCKS", "ADDRESSES"
    );
    for name in &names {
        let underlay = view
            .hosts
            .get(name)
            .map(|h| h.value.advertise.to_string())
            .unwrap_or_else(|| "-".into());
        let lease = match view.hosts.contains_key(name) {
            true => "alive",
            false => "gone",
        };
        let _ = writeln!(
            out,
            "{:<24} {:<16} {:<6} {:>6} {:>9}",
            name,
            underlay,
            lease,
            view.blocks_of(name).len(),
            view.addrs_of(name).len()
        );
    }
    let _ = writeln!(out, "\n{:<20} HOST", "BLOCK");
    for (block, owner) in &view.blocks {
        let _ = writeln!(out, "{:<20} {}", block.to_string(), owner.value);
    }
    let _ = writeln!(out, "\n{:<16} {:<24} CONTAINER", "ADDRESS", "HOST");
    for (ip, held) in &view.addrs {
        let _ = writeln!(
            out,
            "{:<16} {:<24} {}",
            ip.to_string(),
            held.value.host,
            held.value.container
        );
    }
    out
}
