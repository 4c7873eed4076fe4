//! The only module that speaks rtnetlink: a small blocking socket and the handful of
//! link, address and route requests attach, detach and gc need.
//!
//! Blocking on purpose: a hook is a short-lived process, and an async runtime would cost
//! more to start than every request below takes in the kernel.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE,
    NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_ECHO, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, InfoBridge, InfoData, InfoKind, InfoVeth, InfoVxlan, LinkAttribute,
    LinkExtentMask, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use weave_core::mac::Mac;

use crate::nlmsg;

mod raw;

/// A link as the kernel reports it: what the callers need and nothing more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub up: bool,
    pub kind: Option<String>,
    /// The index of the bridge (or other controller) the link is enslaved to.
    pub master: Option<u32>,
    /// Its ifalias (weave-hook marks the bridges it owns with one).
    pub alias: Option<String>,
    /// A bridge port in the forwarding state (`IFLA_BRPORT_STATE`). A new port gets there
    /// asynchronously: once the kernel's link watch has seen its carrier and told the
    /// bridge (at once with STP off, as on weave's bridge).
    pub forwarding: bool,
    pub mtu: u32,
    /// A bridge that does IGMP/MLD snooping (`IFLA_BR_MCAST_SNOOPING` 1); false for
    /// anything else.
    pub snooping: bool,
}

/// What identifies a VXLAN device of weave-mesh's (the kernel cannot change these on an
/// existing device).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vxlan {
    pub vni: u32,
    pub local: Ipv4Addr,
    /// The UDP destination port (and the port the device listens on).
    pub port: u16,
    pub learning: bool,
}

/// How a new VXLAN device is set up besides what identifies it.
#[derive(Debug, Clone, Copy)]
pub struct VxlanRequest<'a> {
    pub name: &'a str,
    pub vxlan: Vxlan,
    pub mtu: u32,
    /// The outer header's TTL (0: the route's default).
    pub ttl: u8,
    /// The outer header's TOS (1: inherited from the inner packet).
    pub tos: u8,
    /// Seconds a learned entry lives without traffic.
    pub ageing: u32,
}

/// One forwarding entry of a VXLAN device: frames to `mac` go to the VTEP `dst`
/// (all-zero `mac`: the flood list, for broadcast and unknown unicast).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FdbEntry {
    pub mac: [u8; 6],
    pub dst: Ipv4Addr,
    /// Added by hand (permanent), not learned from a received frame.
    pub permanent: bool,
}

/// What a veth pair looks like when it is created in one request.
pub struct VethRequest<'a> {
    pub host_name: &'a str,
    pub bridge_index: u32,
    pub peer_name: &'a str,
    /// The peer is created directly in this network namespace: moving an interface into
    /// a namespace after creation costs 10-30 ms in the kernel, creating it there ~0.5 ms.
    pub peer_netns: BorrowedFd<'a>,
    /// The peer's MAC, set in the same request.
    pub peer_mac: Option<Mac>,
    pub mtu: Option<u32>,
}

/// A blocking rtnetlink socket, bound to the network namespace it was created in.
pub struct Netlink {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// Opens a socket in the caller's current network namespace.
    pub fn open() -> io::Result<Self> {
        let socket = Socket::new(NETLINK_ROUTE)?;
        // connect(2) binds the socket to a free port id as well.
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Self {
            socket,
            seq: 0,
            // Room for a dump's replies, filled by recv(2) alone: pages a reply never
            // reaches are never touched.
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// Looks a link up by name; `None` when no such link exists.
    pub fn link_by_name(&mut self, name: &str) -> io::Result<Option<Link>> {
        let mut msg = get_link();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request_links(RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(replies) => Ok(replies.into_iter().next()),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Looks a link up by index; `None` when no such link exists.
    pub fn link_by_index(&mut self, index: u32) -> io::Result<Option<Link>> {
        let mut msg = get_link();
        msg.header.index = index;
        match self.request_links(RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(replies) => Ok(replies.into_iter().next()),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Polls (every 100 µs) until the bridge reports its port `index` forwarding, for at
    /// most `patience`. Returns the lookups it took, or `None` when the patience ran out.
    pub fn wait_forwarding(&mut self, index: u32, patience: Duration) -> io::Result<Option<u32>> {
        let deadline = Instant::now() + patience;
        let mut polls = 0;
        loop {
            polls += 1;
            if self.link_by_index(index)?.is_some_and(|l| l.forwarding) {
                return Ok(Some(polls));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// The packets link `index` has sent; `None` when it does not exist or the kernel gave
    /// no 64-bit statistics.
    pub fn tx_packets(&mut self, index: u32) -> io::Result<Option<u64>> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        match self.request_with(RouteNetlinkMessage::GetLink(msg), 0, |m| {
            Ok(raw::tx_packets(m))
        }) {
            Ok(replies) => Ok(replies.into_iter().next()),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sets a link's MAC address. Set to the address it has, the kernel still tells its
    /// listeners the address changed (`NETDEV_CHANGEADDR`; a few kernels returned early
    /// instead): with `arp_notify` that sends a gratuitous ARP for each of its addresses.
    pub fn set_mac(&mut self, index: u32, mac: Mac) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
        self.request(RouteNetlinkMessage::SetLink(msg), 0).map(drop)
    }

    /// The link of index `index`, if it still carries the name `name`: how weave proves a
    /// recorded veth still exists (an index is not reused at once, a name may be).
    pub fn link_with(&mut self, index: u32, name: &str) -> io::Result<Option<Link>> {
        Ok(self.link_by_index(index)?.filter(|l| l.name == name))
    }

    /// Gives a link no IPv6 address of its own, link-local included (addr_gen_mode none).
    /// The kernel takes this only for an existing link, before it gets a carrier.
    pub fn no_ipv6_addresses(&mut self, index: u32) -> io::Result<()> {
        /// IN6_ADDR_GEN_MODE_NONE.
        const NONE: u8 = 1;
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes
            .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
                vec![AfSpecInet6::AddrGenMode(NONE)],
            )]));
        self.request(RouteNetlinkMessage::SetLink(msg), 0).map(drop)
    }

    /// Points the bridge's forwarding entry for `mac` at its port `index`: frames for the MAC
    /// go to the new port at once, even where an earlier holder's port still has the entry.
    /// A static entry (`NUD_NOARP`): the kernel takes a learnt-like (dynamic) one only on a
    /// port that already forwards, and the port forwards only once the container's end is
    /// up; the entry goes with the port.
    pub fn forward_mac_to(&mut self, index: u32, mac: Mac) -> io::Result<()> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Bridge;
        msg.header.ifindex = index;
        msg.header.state = NeighbourState::Noarp;
        msg.header.flags = NeighbourFlags::Controller;
        msg.attributes
            .push(NeighbourAttribute::LinkLocalAddress(mac.0.to_vec()));
        self.request(
            RouteNetlinkMessage::NewNeighbour(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map(drop)
    }

    /// Sets a link's ifalias.
    pub fn set_alias(&mut self, index: u32, alias: &str) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes
            .push(LinkAttribute::IfAlias(alias.to_string()));
        self.request(RouteNetlinkMessage::SetLink(msg), 0).map(drop)
    }

    /// Lists every link of the namespace.
    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        self.request_links(RouteNetlinkMessage::GetLink(get_link()), NLM_F_DUMP)
    }

    /// Creates a bridge, without multicast snooping (see `no_snooping`). Fails with `EEXIST`
    /// when a link of that name exists already.
    ///
    /// Its MAC address is set, not left to the kernel: a bridge without one takes the lowest
    /// MAC of its ports and changes it when that port leaves, and then every container's ARP
    /// entry for the bridge's own address (weave DNS's) points nowhere until it expires.
    pub fn create_bridge(&mut self, name: &str, mtu: Option<u32>) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes
            .push(LinkAttribute::Address(bridge_mac(name).to_vec()));
        if let Some(mtu) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        msg.attributes.push(no_snooping());
        self.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
            .map(drop)
    }

    /// Turns IGMP/MLD snooping off on an existing bridge (see `no_snooping`). A NEWLINK
    /// without NLM_F_CREATE, as `ip link set type bridge` sends it: SETLINK ignores link info.
    pub fn no_multicast_snooping(&mut self, index: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(no_snooping());
        self.request(RouteNetlinkMessage::NewLink(msg), 0).map(drop)
    }

    /// Creates a veth pair in one request: the host end enslaved to the bridge and up,
    /// the peer created inside `peer_netns` (down; the caller configures it there). Returns
    /// the host end's index.
    pub fn create_veth(&mut self, req: &VethRequest) -> io::Result<u32> {
        let mut peer = LinkMessage::default();
        peer.attributes
            .push(LinkAttribute::IfName(req.peer_name.to_string()));
        peer.attributes
            .push(LinkAttribute::NetNsFd(req.peer_netns.as_raw_fd()));
        if let Some(mac) = req.peer_mac {
            peer.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
        }
        let mut msg = LinkMessage::default();
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes
            .push(LinkAttribute::IfName(req.host_name.to_string()));
        msg.attributes
            .push(LinkAttribute::Controller(req.bridge_index));
        if let Some(mtu) = req.mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
            peer.attributes.push(LinkAttribute::Mtu(mtu));
        }
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        // NLM_F_ECHO: the kernel sends the new link back, index included (since Linux 6.3);
        // older kernels do not, and then one lookup by name finds it.
        let replies = self.request_links(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO,
        )?;
        let echoed = replies.into_iter().find(|l| l.name == req.host_name);
        match echoed {
            Some(link) => Ok(link.index),
            None => self
                .link_by_name(req.host_name)?
                .map(|l| l.index)
                .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV)),
        }
    }

    /// Brings a link up.
    pub fn set_up(&mut self, index: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::SetLink(msg), 0).map(drop)
    }

    /// Deletes a link by name. Returns `false` when it did not exist.
    pub fn delete_link(&mut self, name: &str) -> io::Result<bool> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::DelLink(msg), 0) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes a link by index: unlike a name, an index is not reused at once, so this never
    /// deletes a newer link that took the name. Returns `false` when it did not exist.
    pub fn delete_link_index(&mut self, index: u32) -> io::Result<bool> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        match self.request(RouteNetlinkMessage::DelLink(msg), 0) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Adds an IPv4 address; the kernel adds the subnet route with it.
    pub fn add_address(&mut self, index: u32, addr: Ipv4Net) -> io::Result<()> {
        self.request(
            RouteNetlinkMessage::NewAddress(address_message(index, addr)),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Deletes an IPv4 address. Returns `false` when the link did not have it.
    pub fn delete_address(&mut self, index: u32, addr: Ipv4Net) -> io::Result<bool> {
        match self.request(
            RouteNetlinkMessage::DelAddress(address_message(index, addr)),
            0,
        ) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Adds a route to `dest` that says it is on the link `index` (scope link, no gateway).
    pub fn add_link_route(&mut self, index: u32, dest: Ipv4Net) -> io::Result<()> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.destination_prefix_length = dest.prefix_len();
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = RouteScope::Link;
        msg.header.kind = RouteType::Unicast;
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(
                dest.network(),
            )));
        msg.attributes.push(RouteAttribute::Oif(index));
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Adds the default route via `gateway` on link `index`.
    pub fn add_default_route(&mut self, index: u32, gateway: Ipv4Addr) -> io::Result<()> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.destination_prefix_length = 0;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        msg.attributes.push(RouteAttribute::Oif(index));
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Whether the main table has an IPv4 default route.
    pub fn has_default_route(&mut self) -> io::Result<bool> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        let replies = self.request(RouteNetlinkMessage::GetRoute(msg), NLM_F_DUMP)?;
        Ok(replies.iter().any(|reply| {
            matches!(reply, RouteNetlinkMessage::NewRoute(r)
                if r.header.destination_prefix_length == 0
                    && r.header.table == RouteHeader::RT_TABLE_MAIN)
        }))
    }

    /// Lists the IPv4 addresses of one link.
    pub fn addresses(&mut self, index: u32) -> io::Result<Vec<Ipv4Net>> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        let replies = self.request(RouteNetlinkMessage::GetAddress(msg), NLM_F_DUMP)?;
        Ok(replies
            .into_iter()
            .filter_map(|reply| match reply {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == index => {
                    a.attributes.iter().find_map(|attr| match attr {
                        AddressAttribute::Local(IpAddr::V4(ip)) => {
                            Ipv4Net::new(*ip, a.header.prefix_len).ok()
                        }
                        _ => None,
                    })
                }
                _ => None,
            })
            .collect())
    }

    /// Creates a VXLAN device, down, with explicit id, local address, port, learning, TTL,
    /// TOS, ageing and MTU. Fails with `EEXIST` when a link of that name exists already.
    pub fn create_vxlan(&mut self, req: &VxlanRequest) -> io::Result<()> {
        let v = req.vxlan;
        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::IfName(req.name.to_string()));
        msg.attributes.push(LinkAttribute::Mtu(req.mtu));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Vxlan),
            LinkInfo::Data(InfoData::Vxlan(vec![
                InfoVxlan::Id(v.vni),
                InfoVxlan::Local(v.local),
                // IFLA_VXLAN_PORT is big-endian; the crate writes it so.
                InfoVxlan::Port(v.port),
                InfoVxlan::Learning(v.learning),
                InfoVxlan::Ttl(req.ttl),
                InfoVxlan::Tos(req.tos),
                InfoVxlan::Ageing(req.ageing),
            ])),
        ]));
        self.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
            .map(drop)
    }

    /// The VXLAN settings of link `index`; `None` when it is not a VXLAN device (or gone).
    pub fn vxlan_of(&mut self, index: u32) -> io::Result<Option<Vxlan>> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        let replies = match self.request(RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(replies) => replies,
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(replies.into_iter().find_map(vxlan_from_reply))
    }

    /// Sets a link's MTU.
    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        self.request(RouteNetlinkMessage::SetLink(msg), 0).map(drop)
    }

    /// Enslaves a link to a bridge.
    pub fn set_master(&mut self, index: u32, master: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::Controller(master));
        self.request(RouteNetlinkMessage::SetLink(msg), 0).map(drop)
    }

    /// The link that holds the IPv4 address `ip`, if any.
    pub fn link_holding(&mut self, ip: Ipv4Addr) -> io::Result<Option<Link>> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        let replies = self.request(RouteNetlinkMessage::GetAddress(msg), NLM_F_DUMP)?;
        let index = replies.into_iter().find_map(|reply| match reply {
            RouteNetlinkMessage::NewAddress(a)
                if a.attributes
                    .contains(&AddressAttribute::Local(IpAddr::V4(ip))) =>
            {
                Some(a.header.index)
            }
            _ => None,
        });
        match index {
            Some(index) => self.link_by_index(index),
            None => Ok(None),
        }
    }

    /// The forwarding entries of VXLAN device `index` (one per MAC and remote).
    pub fn fdb(&mut self, index: u32) -> io::Result<Vec<FdbEntry>> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Bridge;
        let replies = self.request(RouteNetlinkMessage::GetNeighbour(msg), NLM_F_DUMP)?;
        Ok(replies
            .into_iter()
            .filter_map(|reply| match reply {
                RouteNetlinkMessage::NewNeighbour(n) if n.header.ifindex == index => {
                    fdb_from_reply(&n)
                }
                _ => None,
            })
            .collect())
    }

    /// Adds the remote `dst` for `mac` on VXLAN device `index`, beside those it has
    /// (NLM_F_APPEND: how the all-zero flood entry lists several peers). `EEXIST` when that
    /// very entry exists.
    pub fn fdb_append(&mut self, index: u32, mac: [u8; 6], dst: Ipv4Addr) -> io::Result<()> {
        let mut msg = fdb_message(index, mac, dst);
        msg.header.state = NeighbourState::Other(NUD_PERMANENT | NUD_NOARP);
        self.request(
            RouteNetlinkMessage::NewNeighbour(msg),
            NLM_F_CREATE | NLM_F_APPEND,
        )
        .map(drop)
    }

    /// Deletes the remote `dst` of `mac` on VXLAN device `index` (the entry's other remotes
    /// stay). Returns `false` when there was no such entry.
    pub fn fdb_delete(&mut self, index: u32, mac: [u8; 6], dst: Ipv4Addr) -> io::Result<bool> {
        let msg = fdb_message(index, mac, dst);
        match self.request(RouteNetlinkMessage::DelNeighbour(msg), 0) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Sends one request and collects the replies, parsed by the crate, until the kernel's
    /// ACK or DONE.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.request_with(msg, flags, parse_reply)
    }

    /// The same for a link request: the replies read as [`Link`]s by hand (see [`raw`]).
    fn request_links(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<Vec<Link>> {
        self.request_with(msg, flags, |m| Ok(raw::link(m)))
    }

    /// Sends one request and collects the replies until the kernel's ACK or DONE, each
    /// whole message given to `parse`. A dump that the kernel marks interrupted
    /// (NLM_F_DUMP_INTR: the table changed meanwhile, so entries may be missing) is asked
    /// again, a few times.
    fn request_with<T>(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        parse: fn(&[u8]) -> io::Result<Option<T>>,
    ) -> io::Result<Vec<T>> {
        const DUMP_TRIES: usize = 5;
        let mut tries = 0;
        loop {
            tries += 1;
            self.send(msg.clone(), flags)?;
            match self.collect_replies(flags & NLM_F_DUMP == NLM_F_DUMP, parse)? {
                (replies, false) => return Ok(replies),
                (replies, true) if tries >= DUMP_TRIES => {
                    tracing::warn!("netlink dump interrupted {tries} times; using the last one");
                    return Ok(replies);
                }
                (_, true) => {}
            }
        }
    }

    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut out = vec![0; packet.buffer_len()];
        packet.serialize(&mut out);
        self.socket.send(&out, 0).map(drop)
    }

    /// The replies to the last request, and whether a dump was interrupted.
    fn collect_replies<T>(
        &mut self,
        dump: bool,
        parse: fn(&[u8]) -> io::Result<Option<T>>,
    ) -> io::Result<(Vec<T>, bool)> {
        let mut replies = Vec::new();
        let mut interrupted = false;
        loop {
            let len = nlmsg::recv(&self.socket, &mut self.buf)?;
            let mut offset = 0;
            while offset < len {
                let header = nlmsg::header(&self.buf[offset..len])?;
                let msg = &self.buf[offset..offset + header.len];
                offset += nlmsg::align(header.len);
                if header.seq != self.seq {
                    continue;
                }
                interrupted |= header.flags & NLM_F_DUMP_INTR != 0;
                match header.kind {
                    nlmsg::NLMSG_ERROR => match nlmsg::error_code(msg)? {
                        0 if dump => continue,
                        // With NLM_F_ACK every request ends in an ACK, a dump in DONE.
                        0 => return Ok((replies, interrupted)),
                        code => return Err(io::Error::from_raw_os_error(-code)),
                    },
                    nlmsg::NLMSG_DONE => return Ok((replies, interrupted)),
                    _ => replies.extend(parse(msg)?),
                }
            }
        }
    }
}

/// A reply as the crate parses it; `None` for what is not a route message.
fn parse_reply(msg: &[u8]) -> io::Result<Option<RouteNetlinkMessage>> {
    let packet = NetlinkMessage::<RouteNetlinkMessage>::deserialize(msg)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    Ok(match packet.payload {
        NetlinkPayload::InnerMessage(m) => Some(m),
        _ => None,
    })
}

/// A bridge's link info with IGMP/MLD snooping off. With snooping on (the kernel's
/// default), every port added or removed re-arms two multicast query timers on every
/// forwarding port (`br_port_state_selection` -> `br_multicast_enable_port`), so each attach
/// and detach costs work in proportion to the containers already on the bridge, and 2 timer
/// expirations per port follow in softirq. It buys nothing on a weave network: without an
/// IGMP querier on the bridge (weave runs none) the kernel floods multicast to every port
/// anyway; a container that sent queries could only make delivery depend on its reports,
/// and fill the bridge's group table. Off, multicast is flooded like broadcast, always.
fn no_snooping() -> LinkAttribute {
    LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Bridge),
        LinkInfo::Data(InfoData::Bridge(vec![InfoBridge::MulticastSnooping(0)])),
    ])
}

/// A link request whose reply leaves the link's statistics out (RTEXT_FILTER_SKIP_STATS;
/// older kernels ignore the flag): nothing here reads them, and parsing them (the parser
/// formats every statistics block it reads into an error context, failure or not) was a
/// measurable part of each lookup.
fn get_link() -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    msg
}

/// The message that adds or deletes `addr` on link `index`.
fn address_message(index: u32, addr: Ipv4Net) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.prefix_len = addr.prefix_len();
    msg.header.index = index;
    let ip = IpAddr::V4(addr.addr());
    msg.attributes.push(AddressAttribute::Local(ip));
    msg.attributes.push(AddressAttribute::Address(ip));
    if addr.prefix_len() < 31 {
        msg.attributes
            .push(AddressAttribute::Broadcast(addr.broadcast()));
    }
    msg
}

const NUD_NOARP: u16 = 0x40;
const NUD_PERMANENT: u16 = 0x80;

/// An AF_BRIDGE neighbour message for the VXLAN device's own table (NTF_SELF).
fn fdb_message(index: u32, mac: [u8; 6], dst: Ipv4Addr) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Bridge;
    msg.header.ifindex = index;
    msg.header.flags = NeighbourFlags::Own;
    msg.attributes
        .push(NeighbourAttribute::LinkLocalAddress(mac.to_vec()));
    // In an AF_BRIDGE message the crate does not know the remote's family: raw bytes.
    msg.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Other(
            dst.octets().to_vec(),
        )));
    msg
}

/// A VXLAN device's own entry (it has a remote); the bridge's entries for the port do not.
fn fdb_from_reply(n: &NeighbourMessage) -> Option<FdbEntry> {
    let mut mac = None;
    let mut dst = None;
    for attr in &n.attributes {
        match attr {
            NeighbourAttribute::LinkLocalAddress(m) => mac = <[u8; 6]>::try_from(&m[..]).ok(),
            NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
                dst = <[u8; 4]>::try_from(&b[..]).ok().map(Ipv4Addr::from)
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => dst = Some(*ip),
            _ => {}
        }
    }
    Some(FdbEntry {
        mac: mac?,
        dst: dst?,
        permanent: u16::from(n.header.state) & NUD_PERMANENT != 0,
    })
}

fn vxlan_from_reply(reply: RouteNetlinkMessage) -> Option<Vxlan> {
    let RouteNetlinkMessage::NewLink(msg) = reply else {
        return None;
    };
    let data = msg.attributes.iter().find_map(|attr| match attr {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Data(InfoData::Vxlan(data)) => Some(data),
            _ => None,
        }),
        _ => None,
    })?;
    let (mut vni, mut local, mut port, mut learning) = (None, None, None, false);
    for attr in data {
        match attr {
            InfoVxlan::Id(id) => vni = Some(*id),
            InfoVxlan::Local(ip) => local = Some(*ip),
            InfoVxlan::Port(p) => port = Some(*p),
            InfoVxlan::Learning(l) => learning = *l,
            _ => {}
        }
    }
    Some(Vxlan {
        vni: vni?,
        local: local.unwrap_or(Ipv4Addr::UNSPECIFIED),
        port: port?,
        learning,
    })
}

/// A stable MAC for a bridge name: locally administered, unicast, the same after a reset.
pub fn bridge_mac(name: &str) -> [u8; 6] {
    let hash = weave_core::settings::fnv1a(name.as_bytes()).to_be_bytes();
    let mut mac = [0; 6];
    mac.copy_from_slice(&hash[..6]);
    mac[0] = (mac[0] & 0xfc) | 0x02;
    mac
}
