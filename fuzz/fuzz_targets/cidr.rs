//! weave.cidr: any string either parses into requests that satisfy the documented rules, or
//! is refused; it never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weave_core::cidr::{parse, AddrRequest, CidrSpec, MAX_ENTRIES};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(CidrSpec::Attach(reqs)) = parse(text) {
        assert!(!reqs.is_empty() && reqs.len() <= MAX_ENTRIES);
        for req in reqs {
            match req {
                AddrRequest::Exact(net) => {
                    assert!(net.prefix_len() > 0);
                    if net.prefix_len() <= 30 {
                        assert!(net.addr() != net.network() && net.addr() != net.broadcast());
                    }
                }
                AddrRequest::Allocate(net) => {
                    assert!(net.addr() == net.network() && net.prefix_len() <= 30 && net.prefix_len() > 0)
                }
                AddrRequest::DefaultRange => {}
            }
        }
    }
});
