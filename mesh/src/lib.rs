//! weave-mesh: one weave network across hosts (issue 13).
//!
//! - `etcd`: a small blocking client for etcd's v3 JSON gateway.
//! - `keys`: the key layout under the prefix (documented there).
//! - `view`: the mesh as read from etcd; `cluster`: the transactions on it.
//! - `agent`, `server`, `local`, `datapath` (and `kernel`, the real one): `weave-mesh run`.
//! - `status`: `weave-mesh status`.

pub mod agent;
pub mod cluster;
pub mod datapath;
pub mod etcd;
#[cfg(feature = "overlay")]
pub mod kernel;
pub mod keys;
pub mod local;
pub mod server;
pub mod status;
pub mod view;
