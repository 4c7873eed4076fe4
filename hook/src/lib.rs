//! weave-hook: what changes the host's network (netlink, namespaces, the bridge, the
//! firewall) and the commands built on it. The rules it shares with weave's other programs
//! (options, ids, settings, the store) are in weave-core.

pub mod attach;
pub mod bridge;
pub mod detach;
pub mod dns;
pub mod dns_scope;
pub mod error;
pub mod expose;
pub mod firewall;
pub mod garp;
pub mod gc;
pub mod mesh;
pub mod netlink;
pub mod netns;
pub mod nftables;
pub mod nftgen;
mod nlmsg;
pub mod overlay;
pub mod portguard;
pub mod privileges;
pub mod reset;
pub mod resolv;
pub mod route;
pub mod tools;
pub mod uts;
