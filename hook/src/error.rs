//! The crate's error: every variant says what went wrong and, where there is one, the fix.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use weave_core::dns::NamesError;
use weave_core::oci::OciError;
use weave_core::options::OptionsError;
use weave_core::store::StoreError;

use crate::dns::DnsError;
use crate::firewall::FirewallError;
use crate::nftables::NftError;
use crate::resolv::ResolvError;

#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Oci(#[from] OciError),
    #[error(transparent)]
    Options(#[from] OptionsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error(transparent)]
    Dns(#[from] DnsError),
    #[error(transparent)]
    Names(#[from] NamesError),
    #[error(transparent)]
    Resolv(#[from] ResolvError),
    #[error("the OCI state has no pid: attach runs as a createRuntime (or prestart) hook, while the container's process exists")]
    NoPid,
    #[error("the OCI state says status {0:?}: weave-hook runs at createRuntime or prestart (status creating) and poststop (status stopped)")]
    WrongStage(String),
    #[error(
        "cannot open the network namespace of pid {pid} (has the container exited?): {source}"
    )]
    Netns {
        pid: i32,
        #[source]
        source: io::Error,
    },
    #[error("the container shares the host's network namespace (as with --network host); weave can only attach a container that has its own")]
    HostNetns,
    #[error(
        "{0} exists but is not a bridge (it is a {1} link); choose another name with --bridge"
    )]
    NotABridge(String, String),
    #[error("the container already has an interface named ethwe (attached twice?)")]
    AlreadyAttached,
    #[error("bridge {bridge} belongs to weave state directory {owner}; use that --state-dir, or another --bridge")]
    BridgeOwnedElsewhere { bridge: String, owner: String },
    #[error("host interface {veth} exists and is not this container's (veth names are a hash of the container id, and another container's id has the same hash, or another program made it); rename the container, or run `weave-hook gc` if it is left over")]
    VethNameTaken { veth: String },
    #[error("bridge {bridge} has ports weave-hook did not make ({ports}); not deleting it")]
    ForeignPorts { bridge: String, ports: String },
    #[error("{op}: {source}")]
    Netlink {
        op: String,
        #[source]
        source: io::Error,
    },
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: io::Error,
    },
    #[error("missing capability {0} in the host namespaces: weave-hook must run as root (rootless containers are not supported)")]
    MissingCapability(&'static str),
    #[error("running in a user namespace (rootless container?): weave-hook needs CAP_NET_ADMIN in the host's network namespace, and rootless containers are not supported")]
    Rootless,
    #[error("weave-mesh serves this state directory (its socket {} answers) and would put the bridge back: stop it first", .0.display())]
    MeshServes(std::path::PathBuf),
    #[error("{count} container(s) still attached to bridge {bridge} ({ids}); stop them first")]
    StillAttached {
        bridge: String,
        count: usize,
        ids: String,
    },
    #[error(
        "weave.route=default needs the host exposed on bridge {0}: run `weave-hook expose` first"
    )]
    NotExposed(String),
    #[error("weave.route=default: the host does not forward IPv4 (net.ipv4.ip_forward is 0); enable it, weave does not")]
    NoForwarding,
    #[error("weave.route=default is for a container without a network of its own, and this one has a default route already")]
    HasDefaultRoute,
    #[error("{0} is weave DNS's address; expose the host at another one")]
    ExposeDns(std::net::Ipv4Addr),
    #[error("cannot read {} (weave-mesh's view of this host, so weave-hook will not allocate without it): {source}; restart `weave-mesh run`, which writes it anew", .path.display())]
    MeshState {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{what} needs weave-mesh, and it is not running (nothing listens on {}): start `weave-mesh run`", .socket.display())]
    AgentNotRunning { what: String, socket: PathBuf },
    #[error("{what} needs weave-mesh, and it did not answer on {}: {source}", .socket.display())]
    Agent {
        what: String,
        socket: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("weave-mesh refused: {reason}")]
    MeshRefused { reason: String },
    #[error("{what} cannot be proven unique across the mesh: etcd is unreachable ({reason}); retry once etcd is back (net: allocations from this host's own blocks need no etcd)")]
    EtcdUnreachable { what: String, reason: String },
    #[error("weave-mesh's answer about {what} is not usable: {why}")]
    AgentReply { what: String, why: String },
    #[error("the address blocks of host {host} are no longer provably its own (their validity ended {ago_secs} s ago): weave-mesh has not renewed its lease, because it is not running or etcd has been unreachable for longer than the lease TTL plus the reclaim grace; start `weave-mesh run` or restore its connection to etcd, then retry")]
    BlocksExpired { host: String, ago_secs: u64 },
    #[error("{device} exists and is not the mesh's VXLAN device of bridge {bridge}: {what}; delete it, or choose another --bridge")]
    VxlanTaken {
        device: String,
        bridge: String,
        what: String,
    },
    #[error("no interface of this host has the underlay address {0} (weave-mesh --advertise): the VXLAN device sends from it")]
    NoUnderlay(std::net::Ipv4Addr),
    #[error("the underlay interface {underlay} has MTU {mtu}, too small to carry VXLAN (it adds 50 bytes; the overlay needs at least 68)")]
    UnderlayMtu { underlay: String, mtu: u32 },
    #[error("the mesh overlay's VXLAN device {0} is missing or has other settings: weave-mesh sets it up (overlay::ensure) first")]
    OverlayMissing(String),
    #[error("bad mesh overlay settings: {0}")]
    BadOverlay(String),
    #[error("{op}: {source}")]
    MeshNft {
        op: String,
        #[source]
        source: io::Error,
    },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Several(Vec<Error>),
}

impl Error {
    pub fn netlink(op: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let op = op.into();
        move |source| Self::Netlink { op, source }
    }

    pub fn io(op: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let op = op.into();
        move |source| Self::Io { op, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
