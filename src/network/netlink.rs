//! rtnetlink by hand: the messages `ip link`, `ip addr` and `ip route` send, built byte by byte.
//!
//! A netlink message is a 16-byte `nlmsghdr` (length, type, flags, sequence, port), a fixed header
//! for the message family (`ifinfomsg` for links, `ifaddrmsg` for addresses, `rtmsg` for routes) and
//! then attributes: `rtattr { len: u16, type: u16 }` followed by the value, padded to 4 bytes.
//! Attributes can nest (a veth's peer is a whole `ifinfomsg` + attributes inside one attribute).
//! The kernel answers every request that carries `NLM_F_ACK` with an `NLMSG_ERROR` whose error code
//! is 0 on success or `-errno`.
//!
//! The same builder also speaks nf_tables (chapter section "NAT"): only the family header differs.

use anyhow::{Context, Result};
use nix::sys::socket::{socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

// <linux/netlink.h>
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
/// Send the request back, as the kernel applied it (rtnetlink honours it for RTM_NEWLINK since 6.3).
pub const NLM_F_ECHO: u16 = 0x8;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLA_F_NESTED: u16 = 0x8000;

// <linux/rtnetlink.h>
pub const RTM_NEWLINK: u16 = 16;
pub const RTM_DELLINK: u16 = 17;
pub const RTM_GETLINK: u16 = 18;
pub const RTM_NEWADDR: u16 = 20;
pub const RTM_GETADDR: u16 = 22;
pub const RTM_NEWROUTE: u16 = 24;
pub const RTM_GETROUTE: u16 = 26;

// <linux/if_link.h>, <linux/veth.h>
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINK: u16 = 5;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_NET_NS_FD: u16 = 28;
const VETH_INFO_PEER: u16 = 1;
// <linux/if_addr.h>
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
// <linux/rtnetlink.h> route attributes and values
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RTN_UNICAST: u8 = 1;

const AF_INET: u8 = libc::AF_INET as u8;
const IFF_UP: u32 = libc::IFF_UP as u32;

// ANCHOR: msg
/// A netlink message under construction.
pub struct Msg {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

impl Msg {
    /// `nlmsghdr` with `type` and `flags` (NLM_F_REQUEST is always added); length and sequence are
    /// filled in when it is sent.
    pub fn new(ty: u16, flags: u16) -> Msg {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len, patched in `finish`
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_seq
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: 0 = the kernel
        Msg {
            buf,
            nests: Vec::new(),
        }
    }

    /// Attributes without a message header: the value of a nested attribute built apart.
    pub fn nested() -> Msg {
        Msg {
            buf: Vec::new(),
            nests: Vec::new(),
        }
    }

    /// What was built so far (for [`Msg::nested`]).
    pub fn bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Raw bytes (a family header such as `ifinfomsg`), padded to 4.
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Msg {
        self.buf.extend_from_slice(bytes);
        self.buf.resize(pad4(self.buf.len()), 0);
        self
    }
    // ANCHOR_END: msg

    // ANCHOR: msg_attrs
    /// One attribute: `rtattr` + value + padding.
    pub fn attr(&mut self, ty: u16, value: &[u8]) -> &mut Msg {
        let len = 4 + value.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.raw(value)
    }

    pub fn attr_u32(&mut self, ty: u16, v: u32) -> &mut Msg {
        self.attr(ty, &v.to_ne_bytes())
    }

    /// A string attribute, NUL-terminated as the kernel expects for names.
    pub fn attr_str(&mut self, ty: u16, s: &str) -> &mut Msg {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(ty, &v)
    }

    /// Open a nested attribute; its length is patched by [`Msg::end`].
    pub fn begin(&mut self, ty: u16) -> &mut Msg {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self
    }

    pub fn end(&mut self) -> &mut Msg {
        if let Some(start) = self.nests.pop() {
            let len = (self.buf.len() - start) as u16;
            self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}
// ANCHOR_END: msg_attrs

/// `struct ifinfomsg`: family, type, index, flags, change mask.
fn ifinfomsg(index: i32, flags: u32, change: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0] = libc::AF_UNSPEC as u8;
    b[4..8].copy_from_slice(&index.to_ne_bytes());
    b[8..12].copy_from_slice(&flags.to_ne_bytes());
    b[12..16].copy_from_slice(&change.to_ne_bytes());
    b
}

/// One answer of the kernel: the bytes after its `nlmsghdr`.
pub struct Reply {
    pub body: Vec<u8>,
}

/// Iterate the attributes in `data` as (type without flags, value).
pub fn attrs(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if data.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([data[0], data[1]]) as usize;
        let ty = u16::from_ne_bytes([data[2], data[3]]) & 0x3fff;
        if len < 4 || len > data.len() {
            return None;
        }
        let value = &data[4..len];
        data = &data[pad4(len).min(data.len())..];
        Some((ty, value))
    })
}

/// The messages in what one `recv` on a netlink socket returned: (type, sequence number, body).
fn messages(mut data: &[u8]) -> impl Iterator<Item = Result<(u16, u32, &[u8])>> {
    std::iter::from_fn(move || {
        if data.len() < 16 {
            return None;
        }
        let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
        if len < 16 || len > data.len() {
            data = &[];
            return Some(Err(anyhow::anyhow!("malformed netlink answer")));
        }
        let ty = u16::from_ne_bytes([data[4], data[5]]);
        let seq = u32::from_ne_bytes([data[8], data[9], data[10], data[11]]);
        let body = &data[16..len];
        data = &data[pad4(len).min(data.len())..];
        Some(Ok((ty, seq, body)))
    })
}

/// A netlink socket of one protocol (NETLINK_ROUTE for links/addresses/routes, NETLINK_NETFILTER for
/// nf_tables), bound to the network namespace it was created in — for its whole life.
pub struct Socket {
    fd: OwnedFd,
    seq: u32,
}

impl Socket {
    /// socket(AF_NETLINK, SOCK_RAW|SOCK_CLOEXEC, protocol) in the current network namespace.
    pub fn open(protocol: SockProtocol) -> Result<Socket> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            protocol,
        )
        .context("failed to open a netlink socket")?;
        Ok(Socket { fd, seq: 1 })
    }

    // ANCHOR: open_in
    /// A NETLINK_ROUTE socket inside another network namespace (the container's): enter it with
    /// setns, create the socket — a socket stays in the namespace it was created in — and go back.
    /// minictr is single-threaded, so nothing else runs in the foreign namespace meanwhile.
    pub fn open_route_in(netns: BorrowedFd<'_>, shown: &str) -> Result<Socket> {
        let home = std::fs::File::open("/proc/self/ns/net")
            .context("failed to open /proc/self/ns/net (minictr's own network namespace)")?;
        crate::explain!(
            super::CHAPTER,
            "setns({shown}, CLONE_NEWNET); socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE); setns(back) \
             — a netlink socket that talks to the container's network namespace"
        );
        nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("failed to enter the network namespace {shown}"))?;
        let sock = Socket::open(SockProtocol::NetlinkRoute);
        let back = nix::sched::setns(&home, nix::sched::CloneFlags::CLONE_NEWNET);
        // Going back must work: minictr cannot keep running in the container's namespace.
        back.context("failed to return to minictr's network namespace")?;
        sock
    }
    // ANCHOR_END: open_in

    /// Send one request and collect the answers until its ACK (or DONE for a dump).
    pub fn request(&mut self, msg: Msg) -> Result<Vec<Reply>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let bytes = msg.finish(seq);
        self.send(&bytes)?;
        self.collect(seq)
    }

    /// Send raw bytes (a batch of finished messages, for nf_tables).
    pub fn send(&self, bytes: &[u8]) -> Result<()> {
        // The kernel is the destination (pid 0): a plain send on the unconnected socket.
        nix::sys::socket::send(self.fd.as_raw_fd(), bytes, MsgFlags::empty())
            .context("netlink send failed")?;
        Ok(())
    }

    pub fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    // ANCHOR: request_all
    /// Send several requests in ONE `sendmsg` and read their acks: one round trip instead of one
    /// each. The kernel runs the messages of a buffer in order, each to its end, and acks each
    /// (`NLM_F_ACK`); the first error is returned with the `what` of the request it answers.
    pub fn request_all(&mut self, requests: Vec<Request>) -> Result<()> {
        let first = self.seq.wrapping_add(1);
        let (bytes, whats) = self.batch_bytes(requests);
        let last = self.seq;
        self.send(&bytes)?;
        self.collect_batch(first, last)
            .map(drop)
            .map_err(|(seq, e)| {
                let what = whats.get(seq.wrapping_sub(first) as usize);
                e.context(
                    what.cloned()
                        .unwrap_or_else(|| "netlink request failed".into()),
                )
            })
    }

    /// The finished messages of `requests`, numbered from the next sequence number on, one
    /// after the other in one buffer; and what each one does, for its error.
    fn batch_bytes(&mut self, requests: Vec<Request>) -> (Vec<u8>, Vec<String>) {
        let mut bytes = Vec::new();
        let mut whats = Vec::new();
        for r in requests {
            let seq = self.next_seq();
            bytes.extend(r.msg.finish(seq));
            whats.push(r.what);
        }
        (bytes, whats)
    }
    // ANCHOR_END: request_all

    /// Read answers for `seq` until the ACK (NLMSG_ERROR with 0), an error, or NLMSG_DONE.
    pub fn collect(&self, seq: u32) -> Result<Vec<Reply>> {
        self.collect_batch(seq, seq).map_err(|(_, e)| e)
    }

    /// Read the answers to a batch of messages numbered `first..=last` (each sent with NLM_F_ACK)
    /// until the ACK of `last`; the first error ends it, with the sequence number it answers.
    pub fn collect_batch(
        &self,
        first: u32,
        last: u32,
    ) -> std::result::Result<Vec<Reply>, (u32, anyhow::Error)> {
        let fail = |e: anyhow::Error| (last, e);
        let mut out = Vec::new();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = match nix::sys::socket::recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(fail(anyhow::Error::new(e).context("netlink recv failed"))),
            };
            for m in messages(&buf[..n]) {
                let (ty, rseq, body) = m.map_err(fail)?;
                if rseq < first || rseq > last {
                    continue; // an answer to an earlier request we stopped reading
                }
                match ty {
                    NLMSG_ERROR => {
                        if body.len() < 4 {
                            return Err(fail(anyhow::anyhow!("malformed netlink error message")));
                        }
                        let code = i32::from_ne_bytes([body[0], body[1], body[2], body[3]]);
                        if code != 0 {
                            return Err((rseq, std::io::Error::from_raw_os_error(-code).into()));
                        }
                        if rseq == last {
                            return Ok(out);
                        }
                    }
                    NLMSG_DONE if rseq == last => return Ok(out),
                    NLMSG_DONE => {}
                    _ => out.push(Reply {
                        body: body.to_vec(),
                    }),
                }
            }
        }
    }

    pub fn finish(&mut self, msg: Msg, seq: u32) -> Vec<u8> {
        msg.finish(seq)
    }
}

/// One rtnetlink change and what it does, said in its error ("failed to add … to eth0").
pub struct Request {
    pub msg: Msg,
    pub what: String,
}

/// What `ip link show NAME` tells us about an interface.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub index: i32,
    pub mtu: u32,
    pub up: bool,
}

fn parse_link(body: &[u8]) -> Option<Link> {
    if body.len() < 16 {
        return None;
    }
    let index = i32::from_ne_bytes([body[4], body[5], body[6], body[7]]);
    let flags = u32::from_ne_bytes([body[8], body[9], body[10], body[11]]);
    let mut mtu = 1500;
    for (ty, v) in attrs(&body[16..]) {
        if ty == IFLA_MTU && v.len() >= 4 {
            mtu = u32::from_ne_bytes([v[0], v[1], v[2], v[3]]);
        }
    }
    Some(Link {
        index,
        mtu,
        up: flags & IFF_UP != 0,
    })
}

/// The interface index of a veth's peer, in the peer's namespace: `IFLA_LINK` of the host end.
fn peer_index(body: &[u8]) -> Option<i32> {
    attrs(body.get(16..)?)
        .find(|(ty, v)| *ty == IFLA_LINK && v.len() == 4)
        .map(|(_, v)| i32::from_ne_bytes([v[0], v[1], v[2], v[3]]))
        .filter(|&i| i > 0)
}

fn errno_of(e: &anyhow::Error) -> Option<i32> {
    e.downcast_ref::<std::io::Error>()
        .and_then(|io| io.raw_os_error())
}

// ANCHOR: requests
impl Socket {
    /// `ip link show NAME` — RTM_GETLINK with IFLA_IFNAME; None if there is no such interface.
    pub fn get_link(&mut self, name: &str) -> Result<Option<Link>> {
        let mut m = Msg::new(RTM_GETLINK, NLM_F_ACK);
        m.raw(&ifinfomsg(0, 0, 0)).attr_str(IFLA_IFNAME, name);
        match self.request(m) {
            Ok(replies) => Ok(replies.iter().find_map(|r| parse_link(&r.body))),
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("RTM_GETLINK {name} failed")),
        }
    }

    /// `ip link add NAME type bridge mtu MTU && ip link set NAME up`.
    pub fn add_bridge(&mut self, name: &str, mtu: u32) -> Result<()> {
        crate::explain!(
            super::CHAPTER,
            "RTM_NEWLINK {{ifname={name:?}, kind=\"bridge\", mtu={mtu}, flags=IFF_UP}} — ip link add {name} type bridge mtu {mtu}; ip link set {name} up"
        );
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK);
        m.raw(&ifinfomsg(0, IFF_UP, IFF_UP))
            .attr_str(IFLA_IFNAME, name)
            .attr_u32(IFLA_MTU, mtu)
            .begin(IFLA_LINKINFO)
            .attr_str(IFLA_INFO_KIND, "bridge")
            .end();
        self.request(m)
            .with_context(|| format!("failed to create the bridge {name}"))?;
        Ok(())
    }
    // ANCHOR_END: requests

    // ANCHOR: requests_veth
    /// `ip link add HOST mtu MTU master BRIDGE up type veth peer name PEER netns NETNS`: both ends in
    /// one request — the peer is created directly inside the container's namespace, already named.
    /// With `NLM_F_ECHO` the kernel answers with the new host end, whose `IFLA_LINK` is the peer's
    /// interface index in the container's namespace: no `RTM_GETLINK` there. None from kernels
    /// older than 6.3, which do not echo a new link.
    #[allow(clippy::too_many_arguments)]
    pub fn add_veth(
        &mut self,
        host: &str,
        bridge_index: i32,
        mtu: u32,
        peer: &str,
        netns: BorrowedFd<'_>,
        netns_shown: &str,
    ) -> Result<Option<i32>> {
        // EXERCISE(ch06, "create the veth pair", hint = "RTM_NEWLINK: ifname, mtu, IFLA_MASTER = bridge, IFF_UP, linkinfo kind veth, peer { ifname, mtu, IFLA_NET_NS_FD }")
        crate::explain!(
            super::CHAPTER,
            "RTM_NEWLINK {{ifname={host:?}, kind=\"veth\", mtu={mtu}, master=#{bridge_index}, flags=IFF_UP, peer={{ifname={peer:?}, IFLA_NET_NS_FD={netns_shown}}}}} \
             — ip link add {host} mtu {mtu} master {} up type veth peer name {peer} netns {netns_shown}",
            super::BRIDGE
        );
        let mut m = Msg::new(
            RTM_NEWLINK,
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK | NLM_F_ECHO,
        );
        m.raw(&ifinfomsg(0, IFF_UP, IFF_UP))
            .attr_str(IFLA_IFNAME, host)
            .attr_u32(IFLA_MTU, mtu)
            .attr_u32(IFLA_MASTER, bridge_index as u32)
            .begin(IFLA_LINKINFO)
            .attr_str(IFLA_INFO_KIND, "veth")
            .begin(IFLA_INFO_DATA)
            .begin(VETH_INFO_PEER)
            .raw(&ifinfomsg(0, 0, 0))
            .attr_str(IFLA_IFNAME, peer)
            .attr_u32(IFLA_MTU, mtu)
            .attr_u32(IFLA_NET_NS_FD, netns.as_raw_fd() as u32)
            .end()
            .end()
            .end();
        let replies = self
            .request(m)
            .with_context(|| format!("failed to create the veth pair {host} <-> {peer}"))?;
        Ok(replies.iter().find_map(|r| peer_index(&r.body)))
        // EXERCISE_END
    }

    /// `ip link set NAME up` (by index).
    pub fn set_up(&mut self, name: &str, index: i32) -> Result<()> {
        let r = up_msg(name, index);
        self.request(r.msg).context(r.what)?;
        Ok(())
    }
    // ANCHOR_END: requests_veth

    // ANCHOR: requests_addr
    /// `ip link del NAME`. Deleting one end of a veth pair deletes both.
    pub fn del_link(&mut self, name: &str) -> Result<bool> {
        crate::explain!(
            super::CHAPTER,
            "RTM_DELLINK {{ifname={name:?}}} — ip link del {name}"
        );
        let mut m = Msg::new(RTM_DELLINK, NLM_F_ACK);
        m.raw(&ifinfomsg(0, 0, 0)).attr_str(IFLA_IFNAME, name);
        match self.request(m) {
            Ok(_) => Ok(true),
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e).with_context(|| format!("failed to delete the interface {name}")),
        }
    }

    /// `ip addr add ADDR/PREFIX dev NAME`.
    pub fn add_addr(&mut self, name: &str, index: i32, addr: Ipv4Addr, prefix: u8) -> Result<()> {
        let r = addr_msg(name, index, addr, prefix);
        self.request(r.msg).context(r.what)?;
        Ok(())
    }

    /// The first IPv4 address of an interface (`ip -4 addr show dev NAME`): RTM_GETADDR dump.
    pub fn get_addr(&mut self, index: i32) -> Result<Option<(Ipv4Addr, u8)>> {
        let mut hdr = [0u8; 8];
        hdr[0] = AF_INET;
        let mut m = Msg::new(RTM_GETADDR, NLM_F_DUMP);
        m.raw(&hdr);
        for r in self.request(m).context("RTM_GETADDR failed")? {
            if r.body.len() < 8 {
                continue;
            }
            let idx = u32::from_ne_bytes([r.body[4], r.body[5], r.body[6], r.body[7]]) as i32;
            if idx != index {
                continue;
            }
            for (ty, v) in attrs(&r.body[8..]) {
                if ty == IFA_LOCAL && v.len() == 4 {
                    return Ok(Some((Ipv4Addr::new(v[0], v[1], v[2], v[3]), r.body[1])));
                }
            }
        }
        Ok(None)
    }
    // ANCHOR_END: requests_addr

    // ANCHOR: requests_route
    /// The interface of the default route (`ip route show default`), if there is one.
    pub fn default_route_oif(&mut self) -> Result<Option<i32>> {
        let mut hdr = [0u8; 12];
        hdr[0] = AF_INET;
        let mut m = Msg::new(RTM_GETROUTE, NLM_F_DUMP);
        m.raw(&hdr);
        for r in self.request(m).context("RTM_GETROUTE failed")? {
            if r.body.len() < 12 || r.body[1] != 0 || r.body[4] != RT_TABLE_MAIN {
                continue; // not a /0 route of the main table
            }
            let mut has_dst = false;
            let mut oif = None;
            for (ty, v) in attrs(&r.body[12..]) {
                match ty {
                    RTA_DST => has_dst = true,
                    RTA_OIF if v.len() == 4 => {
                        oif = Some(u32::from_ne_bytes([v[0], v[1], v[2], v[3]]) as i32)
                    }
                    _ => {}
                }
            }
            if !has_dst && oif.is_some() {
                return Ok(oif);
            }
        }
        Ok(None)
    }

    /// `ip link show` by index → its MTU.
    pub fn link_mtu(&mut self, index: i32) -> Result<Option<u32>> {
        let mut m = Msg::new(RTM_GETLINK, NLM_F_ACK);
        m.raw(&ifinfomsg(index, 0, 0));
        match self.request(m) {
            Ok(replies) => Ok(replies
                .iter()
                .find_map(|r| parse_link(&r.body))
                .map(|l| l.mtu)),
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e).context("RTM_GETLINK failed"),
        }
    }
}
// ANCHOR_END: requests_route

// ANCHOR: link_unlocked
impl Socket {
    /// What [`Socket::get_link`] says (index, MTU, up), without the rtnl lock: the ioctls
    /// SIOCGIFINDEX, SIOCGIFFLAGS and SIOCGIFMTU look the device up under RCU only
    /// (`dev_ifsioc_locked` in net/core/dev_ioctl.c), while `RTM_GETLINK` waits for the rtnl lock —
    /// which every other start holds while it makes its veth: 10–40 ms per start with 25 starting
    /// at once. Any socket takes them (this netlink one: its namespace is the one asked about).
    /// None if there is no such interface.
    pub fn link_unlocked(&self, name: &str) -> Result<Option<Link>> {
        // SAFETY: ifreq is plain old data; all-zero is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        if name.len() >= req.ifr_name.len() {
            return Ok(None);
        }
        for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        let fd = self.fd.as_raw_fd();
        if !ifreq_ioctl(fd, libc::SIOCGIFINDEX, &mut req, name)? {
            return Ok(None);
        }
        // SAFETY: the union field SIOCGIFINDEX just wrote.
        let index = unsafe { req.ifr_ifru.ifru_ifindex };
        if !ifreq_ioctl(fd, libc::SIOCGIFFLAGS, &mut req, name)? {
            return Ok(None);
        }
        // SAFETY: the union field SIOCGIFFLAGS just wrote.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        if !ifreq_ioctl(fd, libc::SIOCGIFMTU, &mut req, name)? {
            return Ok(None);
        }
        // SAFETY: the union field SIOCGIFMTU just wrote.
        let mtu = unsafe { req.ifr_ifru.ifru_mtu };
        Ok(Some(Link {
            index,
            mtu: mtu as u32,
            up: flags & libc::IFF_UP as libc::c_short != 0,
        }))
    }
}
// ANCHOR_END: link_unlocked

/// One SIOCGIF* ioctl on `req`; false if the interface does not exist (ENODEV).
fn ifreq_ioctl(fd: i32, request: libc::c_ulong, req: &mut libc::ifreq, name: &str) -> Result<bool> {
    // SAFETY: the SIOCGIF* requests fill in the ifreq we pass, which outlives the call.
    if unsafe { libc::ioctl(fd, request as _, req as *mut libc::ifreq) } == 0 {
        return Ok(true);
    }
    match std::io::Error::last_os_error() {
        e if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
        e => Err(e).with_context(|| format!("ioctl on the interface {name} failed")),
    }
}

// ANCHOR: builders
/// `ip link set NAME up` (by index): RTM_NEWLINK with IFF_UP in flags and change mask.
pub fn up_msg(name: &str, index: i32) -> Request {
    crate::explain!(
        super::CHAPTER,
        "RTM_NEWLINK {{index={index}, flags=IFF_UP, change=IFF_UP}} — ip link set {name} up"
    );
    let mut msg = Msg::new(RTM_NEWLINK, NLM_F_ACK);
    msg.raw(&ifinfomsg(index, IFF_UP, IFF_UP));
    Request {
        msg,
        what: format!("failed to bring {name} up"),
    }
}

/// `ip addr add ADDR/PREFIX dev NAME`: RTM_NEWADDR.
pub fn addr_msg(name: &str, index: i32, addr: Ipv4Addr, prefix: u8) -> Request {
    // EXERCISE(ch06, "give eth0 its address", hint = "RTM_NEWADDR with struct ifaddrmsg { AF_INET, prefixlen, index } and IFA_LOCAL = IFA_ADDRESS = the address")
    crate::explain!(
        super::CHAPTER,
        "RTM_NEWADDR {{index={index}, IFA_LOCAL={addr}, prefixlen={prefix}}} — ip addr add {addr}/{prefix} dev {name}"
    );
    let mut hdr = [0u8; 8]; // struct ifaddrmsg
    hdr[0] = AF_INET;
    hdr[1] = prefix;
    hdr[4..8].copy_from_slice(&(index as u32).to_ne_bytes());
    let mut msg = Msg::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK);
    msg.raw(&hdr)
        .attr(IFA_LOCAL, &addr.octets())
        .attr(IFA_ADDRESS, &addr.octets());
    Request {
        msg,
        what: format!("failed to add {addr}/{prefix} to {name}"),
    }
    // EXERCISE_END
}

/// `ip route add default via GATEWAY dev NAME`: RTM_NEWROUTE.
pub fn default_route_msg(name: &str, index: i32, gateway: Ipv4Addr) -> Request {
    crate::explain!(
        super::CHAPTER,
        "RTM_NEWROUTE {{dst=0.0.0.0/0, RTA_GATEWAY={gateway}, RTA_OIF={index}, table=main}} — ip route add default via {gateway} dev {name}"
    );
    let mut msg = Msg::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK);
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
    let mut hdr = [0u8; 12];
    hdr[0] = AF_INET;
    hdr[4] = RT_TABLE_MAIN;
    hdr[5] = RTPROT_BOOT;
    hdr[6] = 0; // RT_SCOPE_UNIVERSE
    hdr[7] = RTN_UNICAST;
    msg.raw(&hdr)
        .attr(RTA_GATEWAY, &gateway.octets())
        .attr_u32(RTA_OIF, index as u32);
    Request {
        msg,
        what: format!("failed to add the default route via {gateway}"),
    }
}
// ANCHOR_END: builders

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_padded_and_nested_lengths_patched() {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_ACK);
        m.raw(&ifinfomsg(0, 0, 0))
            .attr_str(IFLA_IFNAME, "eth0")
            .begin(IFLA_LINKINFO)
            .attr_str(IFLA_INFO_KIND, "veth")
            .end();
        let b = m.finish(7);
        assert_eq!(b.len() % 4, 0);
        assert_eq!(
            u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize,
            b.len()
        );
        assert_eq!(u32::from_ne_bytes(b[8..12].try_into().unwrap()), 7);
        let a: Vec<(u16, Vec<u8>)> = attrs(&b[32..]).map(|(t, v)| (t, v.to_vec())).collect();
        assert_eq!(a[0], (IFLA_IFNAME, b"eth0\0".to_vec()));
        assert_eq!(a[1].0, IFLA_LINKINFO);
        let inner: Vec<(u16, Vec<u8>)> = attrs(&a[1].1).map(|(t, v)| (t, v.to_vec())).collect();
        assert_eq!(inner, vec![(IFLA_INFO_KIND, b"veth\0".to_vec())]);
    }
    /// `nlmsghdr` in native byte order, as the kernel reads it.
    fn nlhdr(len: u32, ty: u16, flags: u16, seq: u32) -> Vec<u8> {
        let mut v = len.to_ne_bytes().to_vec();
        v.extend(ty.to_ne_bytes());
        v.extend(flags.to_ne_bytes());
        v.extend(seq.to_ne_bytes());
        v.extend(0u32.to_ne_bytes());
        v
    }

    #[test]
    fn the_attach_batch_is_three_messages_back_to_back_as_ip_would_send_them() {
        // What `ip addr add 10.213.0.2/16 dev eth0`, `ip link set eth0 up` and `ip route add
        // default via 10.213.0.1 dev eth0` send (strace -e sendmsg), eth0 being interface 2.
        let mut want = nlhdr(40, RTM_NEWADDR, 0x605, 2);
        want.extend([2, 16, 0, 0]); // ifaddrmsg: AF_INET, /16, flags, scope
        want.extend(2u32.to_ne_bytes()); // index
        want.extend(8u16.to_ne_bytes().iter().chain(&2u16.to_ne_bytes())); // IFA_LOCAL
        want.extend([10, 213, 0, 2]);
        want.extend(8u16.to_ne_bytes().iter().chain(&1u16.to_ne_bytes())); // IFA_ADDRESS
        want.extend([10, 213, 0, 2]);
        want.extend(nlhdr(32, RTM_NEWLINK, 0x5, 3));
        want.extend([0, 0, 0, 0]); // ifinfomsg: AF_UNSPEC, pad, type
        want.extend(2i32.to_ne_bytes()); // index
        want.extend(1u32.to_ne_bytes()); // flags: IFF_UP
        want.extend(1u32.to_ne_bytes()); // change: IFF_UP
        want.extend(nlhdr(44, RTM_NEWROUTE, 0x605, 4));
        want.extend([2, 0, 0, 0, 254, 3, 0, 1, 0, 0, 0, 0]); // rtmsg: AF_INET … main, boot, universe, unicast
        want.extend(8u16.to_ne_bytes().iter().chain(&5u16.to_ne_bytes())); // RTA_GATEWAY
        want.extend([10, 213, 0, 1]);
        want.extend(8u16.to_ne_bytes().iter().chain(&4u16.to_ne_bytes())); // RTA_OIF
        want.extend(2u32.to_ne_bytes());

        let mut sock = Socket::open(SockProtocol::NetlinkRoute).unwrap(); // unprivileged is fine
        let (bytes, whats) = sock.batch_bytes(vec![
            addr_msg("eth0", 2, Ipv4Addr::new(10, 213, 0, 2), 16),
            up_msg("eth0", 2),
            default_route_msg("eth0", 2, Ipv4Addr::new(10, 213, 0, 1)),
        ]);
        assert_eq!(bytes, want);
        assert_eq!(whats[0], "failed to add 10.213.0.2/16 to eth0");
        assert_eq!(sock.seq, 4, "the next request is numbered after the batch");
    }

    #[test]
    fn the_peer_index_is_the_echoed_host_ends_iflink() {
        let mut m = Msg::new(RTM_NEWLINK, 0);
        m.raw(&ifinfomsg(40, IFF_UP, 0))
            .attr_str(IFLA_IFNAME, "mc0123")
            .attr_u32(IFLA_MTU, 1500)
            .attr_u32(IFLA_LINK, 2);
        let b = m.finish(1);
        assert_eq!(peer_index(&b[16..]), Some(2));
        let mut plain = Msg::new(RTM_NEWLINK, 0);
        plain.raw(&ifinfomsg(3, 0, 0)).attr_str(IFLA_IFNAME, "lo");
        assert_eq!(peer_index(&plain.finish(1)[16..]), None);
    }

    #[test]
    fn the_link_by_ioctl_is_the_link_by_netlink() {
        // lo exists in every network namespace, and neither question needs privileges.
        let mut sock = Socket::open(SockProtocol::NetlinkRoute).unwrap();
        let by_ioctl = sock.link_unlocked("lo").unwrap().expect("lo by ioctl");
        let by_netlink = sock.get_link("lo").unwrap().expect("lo by RTM_GETLINK");
        assert_eq!(
            (by_ioctl.index, by_ioctl.mtu, by_ioctl.up),
            (by_netlink.index, by_netlink.mtu, by_netlink.up)
        );
        assert!(sock.link_unlocked("nosuchlink0").unwrap().is_none());
        assert!(sock
            .link_unlocked("a-name-longer-than-ifnamsiz")
            .unwrap()
            .is_none());
    }

    /// The kernel's side of a batch, in a network namespace of the test's own (root only; skipped
    /// otherwise): the requests run in order, and the error names the request that failed.
    #[test]
    fn a_failing_request_in_a_batch_is_named_and_the_ones_before_it_are_applied() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root for a network namespace of its own");
            return;
        }
        std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let mut sock = Socket::open(SockProtocol::NetlinkRoute).unwrap();
            let err = sock
                .request_all(vec![
                    up_msg("lo", 1),
                    addr_msg("eth7", 7777, Ipv4Addr::new(10, 213, 0, 2), 16),
                    default_route_msg("eth7", 7777, Ipv4Addr::new(10, 213, 0, 1)),
                ])
                .unwrap_err();
            assert_eq!(format!("{err}"), "failed to add 10.213.0.2/16 to eth7");
            assert_eq!(errno_of(&err), Some(libc::ENODEV), "{err:#}");
            assert!(
                sock.get_link("lo").unwrap().unwrap().up,
                "lo was brought up first"
            );
            // The socket still works: the answers of the batch's rest are skipped.
            assert!(sock.get_link("eth7").unwrap().is_none());
        })
        .join()
        .unwrap();
    }
}
