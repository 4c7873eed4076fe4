//! weave-core: what weave's programs share and that changes no network. One rule, one place:
//! the `weave.cidr` syntax, container ids, the options a container asks with, the settings and
//! their validators, weave-runtime's flags, the state directory's layout, records and the
//! address store, process identity, weave DNS's name rules, its one-server protocol and its
//! containers' resolv.conf, atomic writes; with the `watch` feature, following a directory by
//! inotify (weave-dns, weave-mesh).

pub mod cidr;
pub mod dns;
pub mod dns_instance;
pub mod failpoint;
pub mod fsutil;
pub mod id;
pub mod layout;
#[cfg(feature = "logging")]
pub mod logging;
pub mod mac;
pub mod mesh;
pub mod oci;
pub mod options;
pub mod process;
pub mod resolv;
pub mod runtime_flags;
pub mod settings;
pub mod store;
#[cfg(feature = "watch")]
pub mod watch;
