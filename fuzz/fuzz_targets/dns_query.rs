//! weave-dns's responder, the code that sees every datagram a container sends to port 53:
//! any bytes either get a well-formed reply, are forwarded as one question, or are dropped;
//! it never panics. The same entry point runs in `cargo test` (dns/tests/fuzz_query.rs).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use weave_dns::fuzz::QueryFuzz;

fuzz_target!(|data: &[u8]| {
    static FUZZ: OnceLock<QueryFuzz> = OnceLock::new();
    FUZZ.get_or_init(QueryFuzz::new).run(data);
});
