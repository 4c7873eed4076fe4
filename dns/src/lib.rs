//! weave-dns: answers `<name>.weave.local.` with the weave addresses of live containers,
//! from the hook's records, and forwards every other query to upstream resolvers.

pub mod answer;
pub mod device;
pub mod forward;
pub mod fuzz;
pub mod instance;
pub mod limit;
pub mod listen;
pub mod records;
pub mod remote;
pub mod server;
pub mod upstreams;
pub mod watch;
