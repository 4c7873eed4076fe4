//! Checks that the hook can change the host's network before it tries to.

use caps::{CapSet, Capability};

use crate::error::{Error, Result};

/// Needs CAP_NET_ADMIN (links, addresses), CAP_SYS_ADMIN (setns into the container's
/// network namespace) and CAP_NET_RAW (the packet socket of a gratuitous ARP), in the
/// initial user namespace.
pub fn check() -> Result<()> {
    if in_child_user_namespace() {
        return Err(Error::Rootless);
    }
    // One capget(2) for the three.
    let effective = caps::read(None, CapSet::Effective).unwrap_or_default();
    for (cap, name) in [
        (Capability::CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        (Capability::CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
        (Capability::CAP_NET_RAW, "CAP_NET_RAW"),
    ] {
        if !effective.contains(&cap) {
            return Err(Error::MissingCapability(name));
        }
    }
    Ok(())
}

/// The initial user namespace maps every uid: "0 0 4294967295".
fn in_child_user_namespace() -> bool {
    weave_core::fsutil::read_proc(std::path::Path::new("/proc/self/uid_map")).is_ok_and(|map| {
        let fields: Vec<&str> = map.split_whitespace().collect();
        fields != ["0", "0", "4294967295"]
    })
}
