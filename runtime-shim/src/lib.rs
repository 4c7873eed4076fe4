//! weave-runtime: a runc-compatible wrapper. For `create` and `run` of a container that asks
//! for weave (annotations `weave.cidr`/`weave.dns`, or `WEAVE_CIDR` in its environment) it adds
//! weave-hook to the bundle's config.json, and for weave DNS points /etc/resolv.conf at a file
//! of its own; then, for every command, it execs the real runtime with the same arguments
//! (minus its own `--weave-*` flags) and environment.

pub mod exec;
pub mod files;
pub mod hooks;
pub mod mounts;
pub mod plan;
pub mod request;
pub mod runc_args;
pub mod runtime_log;
pub mod settings;
pub mod shim;
