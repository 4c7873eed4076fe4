//! Which interfaces queries may come in on. With `--device`, only the bridge's and the
//! loopback's: a host that forwards IP packets would otherwise deliver queries for weave
//! DNS's address from any network it is on, and weave-dns would be an open resolver there.

use std::ffi::CString;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::Instant;

/// How often the bridge's index is looked up again when a query comes in on another
/// interface (the bridge may have been deleted and made again, with a new index).
const RECHECK_MS: u64 = 1000;
const LOOPBACK_INDEX: i32 = 1;

pub struct Device {
    name: CString,
    index: AtomicI32,
    born: Instant,
    checked_ms: AtomicU64,
}

impl Device {
    pub fn new(name: &str) -> Option<Self> {
        let device = Self {
            name: CString::new(name).ok()?,
            index: AtomicI32::new(0),
            born: Instant::now(),
            checked_ms: AtomicU64::new(0),
        };
        device.refresh();
        Some(device)
    }

    fn refresh(&self) -> i32 {
        // 0 (no index) while the interface does not exist.
        let index = nix::net::if_::if_nametoindex(self.name.as_c_str()).map_or(0, |i| i as i32);
        self.index.store(index, Ordering::Relaxed);
        index
    }

    /// Whether a query that came in on interface `ifindex` is answered.
    pub fn allows(&self, ifindex: i32) -> bool {
        if ifindex == LOOPBACK_INDEX || ifindex == self.index.load(Ordering::Relaxed) {
            return true;
        }
        let now = self.born.elapsed().as_millis() as u64 + RECHECK_MS;
        let last = self.checked_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < RECHECK_MS
            || self
                .checked_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return false;
        }
        self.refresh() == ifindex
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_the_device_only() {
        let lo = Device::new("lo").unwrap();
        assert!(lo.allows(1));
        assert!(!lo.allows(999_999));
        let missing = Device::new("no-such-dev0").unwrap();
        assert!(missing.allows(1));
        assert!(!missing.allows(2));
        assert!(Device::new("nul\0").is_none());
    }
}
