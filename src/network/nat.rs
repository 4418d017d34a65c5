//! NAT with nftables: masquerade for the way out, DNAT for published ports.
//!
//! The rules are made once, when the bridge is created, in one nf_tables transaction over netlink
//! (no `nft` program; not on the per-container path): a table `ip minictr` with
//! - `postrouting`: packets from the subnet leaving by another interface get the host's address
//!   (masquerade); packets from 127.0.0.0/8 sent to the bridge (a published port reached on
//!   127.0.0.1) get the bridge's address, so the container can answer them;
//! - `prerouting` and `output`: packets to one of the host's own addresses jump to `publish`, which
//!   looks the (address, protocol, port) up in two maps and rewrites the destination (DNAT).
//!
//! Publishing a port is then one *map element*, added and deleted per container with a single
//! nf_tables netlink message — no process started, no rule list rewritten.

use super::netlink::{Msg, Socket, NLA_F_NESTED, NLM_F_ACK, NLM_F_CREATE};
use super::Subnet;
use anyhow::{bail, Context, Result};
use nix::sys::socket::SockProtocol;
use std::net::Ipv4Addr;

pub const TABLE: &str = "minictr";

/// A parsed `-p [HOST_IP:]HOST_PORT:CTR_PORT[/tcp|/udp]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish {
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub ctr_port: u16,
    pub udp: bool,
}

// ANCHOR: parse_publish
impl Publish {
    pub fn parse(s: &str) -> Result<Publish> {
        let usage = "use -p HOST_PORT:CONTAINER_PORT[/tcp|/udp] or -p HOST_IP:HOST_PORT:CONTAINER_PORT, e.g. -p 8080:80";
        let (ports, proto) = match s.rsplit_once('/') {
            Some((p, "tcp")) => (p, false),
            Some((p, "udp")) => (p, true),
            Some((_, other)) => bail!(crate::error::hint(
                format!("invalid -p {s:?}: unknown protocol {other:?}"),
                usage
            )),
            None => (s, false),
        };
        let parts: Vec<&str> = ports.split(':').collect();
        let (ip, hp, cp) = match parts.as_slice() {
            [h, c] => (None, *h, *c),
            [i, h, c] => (Some(*i), *h, *c),
            _ => bail!(crate::error::hint(format!("invalid -p {s:?}"), usage)),
        };
        let port = |p: &str| -> Result<u16> {
            p.parse::<u16>().ok().filter(|&n| n > 0).ok_or_else(|| {
                crate::error::hint(
                    format!("invalid -p {s:?}: {p:?} is not a port (1-65535)"),
                    usage,
                )
            })
        };
        let host_ip = match ip {
            None | Some("") | Some("0.0.0.0") => None,
            Some(i) => Some(i.parse::<Ipv4Addr>().map_err(|_| {
                crate::error::hint(
                    format!("invalid -p {s:?}: {i:?} is not an IPv4 address"),
                    usage,
                )
            })?),
        };
        Ok(Publish {
            host_ip,
            host_port: port(hp)?,
            ctr_port: port(cp)?,
            udp: proto,
        })
    }
    // ANCHOR_END: parse_publish

    // ANCHOR: publish_element
    fn proto(&self) -> &'static str {
        if self.udp {
            "udp"
        } else {
            "tcp"
        }
    }

    /// How `nft` would write the map element (for --explain and the chapter).
    pub fn element(&self, ctr: Ipv4Addr) -> String {
        match self.host_ip {
            Some(ip) => format!(
                "publish_ip {{ {ip} . {} . {} : {ctr} . {} }}",
                self.proto(),
                self.host_port,
                self.ctr_port
            ),
            None => format!(
                "publish_any {{ {} . {} : {ctr} . {} }}",
                self.proto(),
                self.host_port,
                self.ctr_port
            ),
        }
    }
}
// ANCHOR_END: publish_element

/// A recorded publish element, as kept in state.json: `tcp:8080:10.213.0.2:80` or with a host
/// address first `192.0.2.1:tcp:8080:10.213.0.2:80`.
pub fn record(p: &Publish, ctr: Ipv4Addr) -> String {
    let base = format!("{}:{}:{ctr}:{}", p.proto(), p.host_port, p.ctr_port);
    match p.host_ip {
        Some(ip) => format!("{ip}:{base}"),
        None => base,
    }
}

pub fn parse_record(s: &str) -> Option<(Publish, Ipv4Addr)> {
    let f: Vec<&str> = s.split(':').collect();
    let (ip, rest) = match f.len() {
        4 => (None, &f[..]),
        5 => (Some(f[0].parse().ok()?), &f[1..]),
        _ => return None,
    };
    Some((
        Publish {
            host_ip: ip,
            udp: rest[0] == "udp",
            host_port: rest[1].parse().ok()?,
            ctr_port: rest[3].parse().ok()?,
        },
        rest[2].parse().ok()?,
    ))
}

// ANCHOR: exprs
/// One nftables expression: a small instruction of the rule's program. Expressions load packet or
/// routing facts into registers (`meta`, `payload`, `fib`), test them (`cmp`, after `bitwise` for a
/// prefix), look them up (`lookup` in a map writes the value into registers) or act (`nat`,
/// `masq`, `immediate` with a verdict such as a jump).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `meta KEY` into register `dreg`.
    Meta { key: u32, dreg: u32 },
    /// `len` bytes at `offset` of the network (1) or transport (2) header into `dreg`.
    Payload {
        base: u32,
        offset: u32,
        len: u32,
        dreg: u32,
    },
    /// `reg &= mask` (a prefix match is a mask, then a compare).
    Bitwise { reg: u32, mask: Vec<u8> },
    /// Continue with the rule only if `reg` equals (or, `eq: false`, differs from) `data`.
    Cmp { reg: u32, eq: bool, data: Vec<u8> },
    /// Look the registers from `sreg` on up in the map `set`; its value goes to `dreg` on.
    Lookup {
        set: &'static str,
        sreg: u32,
        dreg: u32,
    },
    /// Destination NAT to the address in `addr_reg` and the port in `port_reg`.
    Dnat { addr_reg: u32, port_reg: u32 },
    /// The routing type of the destination address (`fib daddr type`) into `dreg`.
    FibDaddrType { dreg: u32 },
    /// Verdict: jump to `chain`.
    Jump(&'static str),
    /// Source NAT to the address of the outgoing interface.
    Masquerade,
}
// ANCHOR_END: exprs

// ANCHOR: expr_helpers
// Registers: 0 holds the verdict; 8.. are 4-byte registers ("NFT_REG32_00"), so that the fields of
// a concatenation (address . protocol . port) sit in consecutive 4-byte cells.
const REG: u32 = 8;
const NFT_META_OIFNAME: u32 = 7;
const NFT_META_L4PROTO: u32 = 16;
const NETWORK_HEADER: u32 = 1;
const TRANSPORT_HEADER: u32 = 2;
const RTN_LOCAL: u32 = 2;

/// `ip saddr PREFIX`: the source address, masked, compared.
fn saddr_in(network: Ipv4Addr, prefix: u8) -> [Expr; 3] {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    [
        Expr::Payload {
            base: NETWORK_HEADER,
            offset: 12,
            len: 4,
            dreg: REG,
        },
        Expr::Bitwise {
            reg: REG,
            mask: mask.to_be_bytes().to_vec(),
        },
        Expr::Cmp {
            reg: REG,
            eq: true,
            data: (u32::from(network) & mask).to_be_bytes().to_vec(),
        },
    ]
}

/// `oifname [!=] NAME`: interface names are compared as 16 bytes (IFNAMSIZ), zero-padded.
fn oifname(name: &str, eq: bool) -> [Expr; 2] {
    let mut data = name.as_bytes().to_vec();
    data.resize(16, 0);
    [
        Expr::Meta {
            key: NFT_META_OIFNAME,
            dreg: REG + 4,
        },
        Expr::Cmp {
            reg: REG + 4,
            eq,
            data,
        },
    ]
}

/// `fib daddr type local jump publish`: a packet to one of the host's own addresses.
fn to_local_jump_publish() -> Vec<Expr> {
    vec![
        Expr::FibDaddrType { dreg: REG },
        Expr::Cmp {
            reg: REG,
            eq: true,
            data: RTN_LOCAL.to_ne_bytes().to_vec(),
        },
        Expr::Jump("publish"),
    ]
}
// ANCHOR_END: expr_helpers

// ANCHOR: ruleset
/// The rules of the table, as (chain, expressions). `nft list table ip minictr` shows the table as
/// ```text
/// table ip minictr {
///   map publish_ip { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }
///   map publish_any { type inet_proto . inet_service : ipv4_addr . inet_service; }
///   chain publish {
///     dnat ip to ip daddr . meta l4proto . th dport map @publish_ip
///     dnat ip to meta l4proto . th dport map @publish_any
///   }
///   chain prerouting {
///     type nat hook prerouting priority dstnat; policy accept;
///     fib daddr type local jump publish
///   }
///   chain output {
///     type nat hook output priority -100; policy accept;
///     fib daddr type local jump publish
///   }
///   chain postrouting {
///     type nat hook postrouting priority srcnat; policy accept;
///     ip saddr 10.213.0.0/16 oifname != "minictr0" masquerade
///     oifname "minictr0" ip saddr 127.0.0.0/8 masquerade
///   }
/// }
/// ```
/// (`nft` prints the l4proto test it adds in front of `th dport`; here the protocol is part of both
/// map keys, so `th dport` of anything but the published tcp/udp ports finds no element).
// ANCHOR_END: ruleset
// ANCHOR: rules
pub fn rules(bridge: &str, subnet: &Subnet) -> Vec<(&'static str, Vec<Expr>)> {
    let l4proto = |dreg| Expr::Meta {
        key: NFT_META_L4PROTO,
        dreg,
    };
    let dport = |dreg| Expr::Payload {
        base: TRANSPORT_HEADER,
        offset: 2,
        len: 2,
        dreg,
    };
    let dnat = Expr::Dnat {
        addr_reg: REG,
        port_reg: REG + 1,
    };
    let daddr = Expr::Payload {
        base: NETWORK_HEADER,
        offset: 16,
        len: 4,
        dreg: REG,
    };
    let lookup = |set| Expr::Lookup {
        set,
        sreg: REG,
        dreg: REG,
    };
    let mut masq_out: Vec<Expr> = saddr_in(subnet.network, subnet.prefix).into();
    masq_out.extend(oifname(bridge, false));
    masq_out.push(Expr::Masquerade);
    let mut masq_local: Vec<Expr> = oifname(bridge, true).into();
    masq_local.extend(saddr_in(Ipv4Addr::new(127, 0, 0, 0), 8));
    masq_local.push(Expr::Masquerade);
    vec![
        (
            "publish",
            vec![
                daddr,
                l4proto(REG + 1),
                dport(REG + 2),
                lookup("publish_ip"),
                dnat.clone(),
            ],
        ),
        (
            "publish",
            vec![l4proto(REG), dport(REG + 1), lookup("publish_any"), dnat],
        ),
        ("prerouting", to_local_jump_publish()),
        ("output", to_local_jump_publish()),
        ("postrouting", masq_out),
        ("postrouting", masq_local),
    ]
}
// ANCHOR_END: rules

// nf_tables over netlink (<linux/netfilter/nfnetlink.h>, <linux/netfilter/nf_tables.h>).
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NLM_F_APPEND: u16 = 0x800;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_DATA_TYPE: u16 = 6;
const NFTA_SET_DATA_LEN: u16 = 7;
const NFTA_SET_ID: u16 = 10;
const NFT_SET_MAP: u32 = 0x8;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
const NFT_JUMP: i32 = -3;
const NF_ACCEPT: u32 = 1;
const NFPROTO_IPV4: u8 = 2;
// nft's data type numbers (what `nft list` prints the keys as); a concatenation is the list of its
// types, 6 bits each.
const TYPE_IPADDR: u32 = 7;
const TYPE_INET_PROTOCOL: u32 = 12;
const TYPE_INET_SERVICE: u32 = 13;

fn concat_type(types: &[u32]) -> u32 {
    types.iter().fold(0, |acc, t| (acc << 6) | t)
}

/// `struct nfgenmsg`: family, version, resource id (big-endian).
fn nfgenmsg(family: u8, res_id: u16) -> [u8; 4] {
    let r = res_id.to_be_bytes();
    [family, 0, r[0], r[1]]
}

/// nftables registers are 4-byte cells: each field of a concatenation is padded to 4 bytes.
fn cell(bytes: &[u8]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v.resize(bytes.len().div_ceil(4) * 4, 0);
    v
}

fn be(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

impl Expr {
    /// The expression as `NFTA_LIST_ELEM { NFTA_EXPR_NAME, NFTA_EXPR_DATA { … } }`; the numbers
    /// are the NFTA_<EXPR>_* attributes of <linux/netfilter/nf_tables.h>, all big-endian.
    fn encode(&self, m: &mut Msg) {
        let (name, attrs): (&str, Vec<(u16, Vec<u8>)>) = match self {
            Expr::Meta { key, dreg } => ("meta", vec![(1, be(*dreg).into()), (2, be(*key).into())]),
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => (
                "payload",
                vec![
                    (1, be(*dreg).into()),
                    (2, be(*base).into()),
                    (3, be(*offset).into()),
                    (4, be(*len).into()),
                ],
            ),
            Expr::Bitwise { reg, mask } => (
                "bitwise",
                vec![
                    (1, be(*reg).into()),
                    (2, be(*reg).into()),
                    (3, be(mask.len() as u32).into()),
                    (4 | NLA_F_NESTED, data_value(mask)),
                    (5 | NLA_F_NESTED, data_value(&vec![0; mask.len()])),
                ],
            ),
            Expr::Cmp { reg, eq, data } => (
                "cmp",
                vec![
                    (1, be(*reg).into()),
                    (2, be(if *eq { 0 } else { 1 }).into()),
                    (3 | NLA_F_NESTED, data_value(data)),
                ],
            ),
            Expr::Lookup { set, sreg, dreg } => (
                "lookup",
                vec![(1, cstr(set)), (2, be(*sreg).into()), (3, be(*dreg).into())],
            ),
            Expr::Dnat { addr_reg, port_reg } => (
                "nat",
                vec![
                    (1, be(1).into()), // NFT_NAT_DNAT
                    (2, be(NFPROTO_IPV4 as u32).into()),
                    (3, be(*addr_reg).into()),
                    (5, be(*port_reg).into()),
                ],
            ),
            Expr::FibDaddrType { dreg } => (
                "fib",
                vec![
                    (1, be(*dreg).into()),
                    (2, be(3).into()), // NFT_FIB_RESULT_ADDRTYPE
                    (3, be(2).into()), // NFTA_FIB_F_DADDR
                ],
            ),
            Expr::Jump(chain) => {
                let mut v = Msg::nested();
                v.begin(NFTA_DATA_VERDICT | NLA_F_NESTED)
                    .attr(NFTA_VERDICT_CODE, &NFT_JUMP.to_be_bytes())
                    .attr_str(NFTA_VERDICT_CHAIN, chain)
                    .end();
                // NFTA_IMMEDIATE_DREG = the verdict register, NFTA_IMMEDIATE_DATA
                (
                    "immediate",
                    vec![(1, be(0).into()), (2 | NLA_F_NESTED, v.bytes())],
                )
            }
            Expr::Masquerade => ("masq", vec![]),
        };
        m.begin(NFTA_LIST_ELEM | NLA_F_NESTED)
            .attr_str(NFTA_EXPR_NAME, name)
            .begin(NFTA_EXPR_DATA | NLA_F_NESTED);
        for (ty, value) in attrs {
            m.attr(ty, &value);
        }
        m.end().end();
    }
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// `NFTA_DATA_VALUE { bytes }`, the inside of a nested data attribute.
fn data_value(bytes: &[u8]) -> Vec<u8> {
    let mut v = Msg::nested();
    v.attr(NFTA_DATA_VALUE, bytes);
    v.bytes()
}

// ANCHOR: batch
/// An nf_tables transaction: BATCH_BEGIN, the messages, BATCH_END, sent in one `send`. The kernel
/// applies all of it or nothing, and answers each message (all carry NLM_F_ACK).
struct Batch {
    sock: Socket,
    bytes: Vec<u8>,
    first: u32,
    last: u32,
    what: Vec<(u32, String)>,
}

impl Batch {
    fn new() -> Result<Batch> {
        let mut sock = Socket::open(SockProtocol::NetlinkNetFilter)?;
        let seq = sock.next_seq();
        let mut begin = Msg::new(NFNL_MSG_BATCH_BEGIN, 0);
        begin.raw(&nfgenmsg(libc::AF_UNSPEC as u8, NFNL_SUBSYS_NFTABLES));
        let bytes = sock.finish(begin, seq);
        Ok(Batch {
            sock,
            bytes,
            first: seq + 1,
            last: seq,
            what: Vec::new(),
        })
    }

    /// Add one NFT_MSG_* for the table `ip minictr`; `fill` adds its attributes.
    fn add(&mut self, msg: u16, flags: u16, what: String, fill: impl FnOnce(&mut Msg)) {
        let mut m = Msg::new((NFNL_SUBSYS_NFTABLES << 8) | msg, flags | NLM_F_ACK);
        m.raw(&nfgenmsg(NFPROTO_IPV4, 0));
        fill(&mut m);
        let seq = self.sock.next_seq();
        self.bytes.extend(self.sock.finish(m, seq));
        self.last = seq;
        self.what.push((seq, what));
    }

    /// Send it; an error names the message the kernel refused.
    fn commit(mut self) -> std::result::Result<(), (String, anyhow::Error)> {
        let seq = self.sock.next_seq();
        let mut end = Msg::new(NFNL_MSG_BATCH_END, 0);
        end.raw(&nfgenmsg(libc::AF_UNSPEC as u8, NFNL_SUBSYS_NFTABLES));
        self.bytes.extend(self.sock.finish(end, seq));
        let what = |seq: u32| {
            self.what
                .iter()
                .find(|(s, _)| *s == seq)
                .map(|(_, w)| w.clone())
                .unwrap_or_default()
        };
        if let Err(e) = self.sock.send(&self.bytes) {
            return Err((what(self.first), e));
        }
        match self.sock.collect_batch(self.first, self.last) {
            Ok(_) => Ok(()),
            Err((seq, e)) => Err((what(seq), e)),
        }
    }
}
// ANCHOR_END: batch

// ANCHOR: install
/// Create the table `ip minictr` with its maps, chains and rules in one nf_tables transaction —
/// what `nft -f` of the table in [`rules`] would send. NEWTABLE, DELTABLE, NEWTABLE first: an older copy of
/// the table is replaced atomically.
pub fn install(bridge: &str, subnet: &Subnet) -> Result<()> {
    crate::explain!(
        super::CHAPTER,
        "BATCH_BEGIN NEWTABLE DELTABLE NEWTABLE, 2×NEWSET, 4×NEWCHAIN, 6×NEWRULE BATCH_END — nft -f: table ip {TABLE}: masquerade {subnet}, DNAT maps for -p (once per bridge)"
    );
    let mut b = Batch::new()?;
    let table = |m: &mut Msg| {
        m.attr_str(NFTA_TABLE_NAME, TABLE);
    };
    b.add(
        NFT_MSG_NEWTABLE,
        NLM_F_CREATE,
        format!("NEWTABLE {TABLE}"),
        table,
    );
    b.add(NFT_MSG_DELTABLE, 0, format!("DELTABLE {TABLE}"), table);
    b.add(
        NFT_MSG_NEWTABLE,
        NLM_F_CREATE,
        format!("NEWTABLE {TABLE}"),
        table,
    );
    add_maps(&mut b);
    add_chains(&mut b);
    add_rules(&mut b, bridge, subnet);
    b.commit().map_err(|(what, e)| {
        let e = e.context(format!("the kernel refused {what}"));
        crate::error::hint(
            format!("cannot create the nftables table ip {TABLE}: {}", crate::error::one_line(&e)),
            "check that the kernel has nf_tables and NAT (modprobe nf_tables nft_nat nft_fib_ipv4 nft_masq)",
        )
    })
}
// ANCHOR_END: install

// ANCHOR: install_chains
/// The two DNAT maps of `-p`: (address, protocol, port) and (protocol, port) → (address, port).
fn add_maps(b: &mut Batch) {
    let (ip, proto, port) = (TYPE_IPADDR, TYPE_INET_PROTOCOL, TYPE_INET_SERVICE);
    let maps = [
        ("publish_ip", concat_type(&[ip, proto, port]), 12),
        ("publish_any", concat_type(&[proto, port]), 8),
    ];
    for (id, (name, key_type, key_len)) in maps.into_iter().enumerate() {
        b.add(
            NFT_MSG_NEWSET,
            NLM_F_CREATE,
            format!("NEWSET {name}"),
            |m| {
                m.attr_str(NFTA_SET_TABLE, TABLE)
                    .attr_str(NFTA_SET_NAME, name)
                    .attr(NFTA_SET_FLAGS, &be(NFT_SET_MAP))
                    .attr(NFTA_SET_KEY_TYPE, &be(key_type))
                    .attr(NFTA_SET_KEY_LEN, &be(key_len))
                    .attr(NFTA_SET_DATA_TYPE, &be(concat_type(&[ip, port])))
                    .attr(NFTA_SET_DATA_LEN, &be(8))
                    .attr(NFTA_SET_ID, &be(id as u32 + 1));
            },
        );
    }
}

/// The chains: `publish` (jumped to) and the three NAT hooks.
fn add_chains(b: &mut Batch) {
    // (name, hook, priority): NF_INET_PRE_ROUTING 0, LOCAL_OUT 3, POST_ROUTING 4; dstnat is -100,
    // srcnat 100. `publish` has no hook: it runs only when jumped to.
    let chains: [(&str, Option<(u32, i32)>); 4] = [
        ("publish", None),
        ("prerouting", Some((0, -100))),
        ("output", Some((3, -100))),
        ("postrouting", Some((4, 100))),
    ];
    for (name, hook) in chains {
        b.add(
            NFT_MSG_NEWCHAIN,
            NLM_F_CREATE,
            format!("NEWCHAIN {name}"),
            |m| {
                m.attr_str(NFTA_CHAIN_TABLE, TABLE)
                    .attr_str(NFTA_CHAIN_NAME, name);
                if let Some((hooknum, priority)) = hook {
                    m.begin(NFTA_CHAIN_HOOK | NLA_F_NESTED)
                        .attr(NFTA_HOOK_HOOKNUM, &be(hooknum))
                        .attr(NFTA_HOOK_PRIORITY, &priority.to_be_bytes())
                        .end()
                        .attr(NFTA_CHAIN_POLICY, &be(NF_ACCEPT))
                        .attr_str(NFTA_CHAIN_TYPE, "nat");
                }
            },
        );
    }
}

// ANCHOR_END: install_chains

/// The rules of [`rules`], appended to their chains.
fn add_rules(b: &mut Batch, bridge: &str, subnet: &Subnet) {
    for (chain, exprs) in rules(bridge, subnet) {
        let what = format!("NEWRULE {chain}: {exprs:?}");
        b.add(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, what, |m| {
            m.attr_str(NFTA_RULE_TABLE, TABLE)
                .attr_str(NFTA_RULE_CHAIN, chain)
                .begin(NFTA_RULE_EXPRESSIONS | NLA_F_NESTED);
            for e in &exprs {
                e.encode(m);
            }
            m.end();
        });
    }
}

/// The one line shown when NAT cannot be set up: the container still starts, with its address on
/// the bridge, but nothing beyond this host is reachable and no port can be published.
pub fn unavailable_note(err: &anyhow::Error) -> String {
    format!(
        "warning: no NAT: {} — containers get their address on {} and reach each other and this host, but no traffic goes beyond the host and -p is refused",
        crate::error::one_line(err),
        super::BRIDGE
    )
}

/// `nft delete table ip minictr` (for `minictr network rm`): one DELTABLE; false if there was none.
pub fn remove() -> Result<bool> {
    crate::explain!(
        super::CHAPTER,
        "NFT_MSG_DELTABLE — nft delete table ip {TABLE}"
    );
    let mut b = Batch::new()?;
    b.add(NFT_MSG_DELTABLE, 0, format!("DELTABLE {TABLE}"), |m| {
        m.attr_str(NFTA_TABLE_NAME, TABLE);
    });
    match b.commit() {
        Ok(()) => Ok(true),
        Err((_, e)) if errno(&e) == Some(libc::ENOENT) => Ok(false),
        // No nf_tables in this kernel: there is no table to remove either.
        Err((_, e)) if errno(&e) == Some(libc::EPROTONOSUPPORT) => Ok(false),
        Err((what, e)) => Err(e.context(format!("{what} failed"))),
    }
}

fn errno(e: &anyhow::Error) -> Option<i32> {
    e.downcast_ref::<std::io::Error>()
        .and_then(|e| e.raw_os_error())
}

/// Write `value` into a sysctl file of the current network namespace (/proc/sys/net is per namespace).
pub fn sysctl(path: &str, value: &str) -> Result<()> {
    crate::explain!(
        super::CHAPTER,
        "write({path}, {value:?}) — in minictr's network namespace"
    );
    std::fs::write(path, value).with_context(|| format!("failed to write {value} to {path}"))
}

/// Whether the table `ip minictr` exists (`nft list table ip minictr`): one NFT_MSG_GETTABLE.
pub fn table_exists() -> Result<bool> {
    let mut sock = Socket::open(SockProtocol::NetlinkNetFilter)?;
    let mut m = Msg::new((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE, NLM_F_ACK);
    m.raw(&nfgenmsg(NFPROTO_IPV4, 0))
        .attr_str(NFTA_TABLE_NAME, TABLE);
    match sock.request(m) {
        Ok(_) => Ok(true),
        Err(e) if errno(&e) == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e).context("NFT_MSG_GETTABLE ip minictr failed"),
    }
}

// ANCHOR: publish
/// Add (or delete) the map element of one published port: one nf_tables batch
/// (BATCH_BEGIN, NEWSETELEM/DELSETELEM, BATCH_END) on a NETLINK_NETFILTER socket.
/// Without the table (NAT could not be set up) that is ENOENT: the hint says so.
pub fn set_element(p: &Publish, ctr: Ipv4Addr, add: bool) -> Result<()> {
    let proto = if p.udp {
        libc::IPPROTO_UDP
    } else {
        libc::IPPROTO_TCP
    } as u8;
    let (set, mut key) = match p.host_ip {
        Some(ip) => ("publish_ip", cell(&ip.octets())),
        None => ("publish_any", Vec::new()),
    };
    key.extend(cell(&[proto]));
    key.extend(cell(&p.host_port.to_be_bytes()));
    let mut data = cell(&ctr.octets());
    data.extend(cell(&p.ctr_port.to_be_bytes()));
    crate::explain!(
        super::CHAPTER,
        "NFT_MSG_{}SETELEM {{table={TABLE}, {}}} — nft {} element ip {TABLE} {}",
        if add { "NEW" } else { "DEL" },
        p.element(ctr),
        if add { "add" } else { "delete" },
        p.element(ctr)
    );
    let ty = if add {
        NFT_MSG_NEWSETELEM
    } else {
        NFT_MSG_DELSETELEM
    };
    let mut batch = Batch::new()?;
    batch.add(
        ty,
        if add { NLM_F_CREATE } else { 0 },
        p.element(ctr),
        |m| {
            m.attr_str(NFTA_SET_ELEM_LIST_TABLE, TABLE)
                .attr_str(NFTA_SET_ELEM_LIST_SET, set)
                .begin(NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED)
                .begin(NFTA_LIST_ELEM | NLA_F_NESTED)
                .begin(NFTA_SET_ELEM_KEY | NLA_F_NESTED)
                .attr(NFTA_DATA_VALUE, &key)
                .end();
            if add {
                m.begin(NFTA_SET_ELEM_DATA | NLA_F_NESTED)
                    .attr(NFTA_DATA_VALUE, &data)
                    .end();
            }
            m.end().end();
        },
    );
    batch.commit().map_err(|(_, e)| {
        let port = format!("{}/{}", p.host_port, p.proto());
        match errno(&e) {
            Some(libc::EEXIST) => crate::error::hint(
                format!("host port {port} is already published by another container"),
                "pick another host port with -p",
            ),
            Some(libc::ENOENT) if add => crate::error::hint(
                format!("cannot publish {port}: the nftables table ip {TABLE} is missing (NAT could not be set up, see the warning above, or it was deleted by hand)"),
                "check that the kernel has nf_tables and NAT (modprobe nf_tables nft_nat nft_fib_ipv4 nft_masq), then run `minictr network rm` and start again",
            ),
            _ => e.context(format!("failed to {} the published port {port}", if add { "add" } else { "delete" })),
        }
    })
}
// ANCHOR_END: publish

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_values() {
        let p = Publish::parse("8080:80").unwrap();
        assert_eq!(
            p,
            Publish {
                host_ip: None,
                host_port: 8080,
                ctr_port: 80,
                udp: false
            }
        );
        let p = Publish::parse("127.0.0.1:53:5353/udp").unwrap();
        assert_eq!(p.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert!(p.udp && p.host_port == 53 && p.ctr_port == 5353);
        assert!(!Publish::parse("1:2/tcp").unwrap().udp);
        for bad in [
            "80",
            "0:80",
            "8080:0",
            "70000:80",
            "a:80",
            "8080:80/sctp",
            "1.2.3:80:80",
            "1:2:3:4",
            "",
            "8080:",
        ] {
            assert!(Publish::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn records_round_trip() {
        let ctr = Ipv4Addr::new(10, 213, 0, 9);
        for s in ["8080:80", "192.0.2.1:8080:80/udp"] {
            let p = Publish::parse(s).unwrap();
            assert_eq!(parse_record(&record(&p, ctr)), Some((p, ctr)));
        }
    }

    #[test]
    fn rules_encode_as_nested_expression_lists() {
        let subnet = Subnet::parse("10.213.0.0/16").unwrap();
        let rules = rules("minictr0", &subnet);
        assert_eq!(rules.len(), 6);
        for (_, exprs) in &rules {
            let mut m = Msg::nested();
            for e in exprs {
                e.encode(&mut m);
            }
            let bytes = m.bytes();
            let names: Vec<String> = super::super::netlink::attrs(&bytes)
                .map(|(ty, elem)| {
                    assert_eq!(ty, NFTA_LIST_ELEM);
                    let (ty, name) = super::super::netlink::attrs(elem).next().unwrap();
                    assert_eq!(ty, NFTA_EXPR_NAME);
                    String::from_utf8_lossy(&name[..name.len() - 1]).into_owned()
                })
                .collect();
            assert_eq!(names.len(), exprs.len(), "every expression parses back");
        }
        // masquerade for the subnet: the source address masked to /16 equals 10.213.0.0
        let (chain, masq) = &rules[4];
        assert_eq!(*chain, "postrouting");
        assert_eq!(
            masq[1],
            Expr::Bitwise {
                reg: REG,
                mask: vec![255, 255, 0, 0]
            }
        );
        assert!(matches!(&masq[2], Expr::Cmp { eq: true, data, .. } if data == &[10, 213, 0, 0]));
        assert_eq!(masq.last(), Some(&Expr::Masquerade));
        // key types as nft prints them: ipv4_addr . inet_proto . inet_service
        assert_eq!(concat_type(&[7, 12, 13]), (7 << 12) | (12 << 6) | 13);
    }

    #[test]
    fn missing_nat_is_one_line_that_says_what_it_means() {
        let e =
            anyhow::anyhow!("cannot create the nftables table ip minictr: Protocol not supported");
        let note = unavailable_note(&e);
        assert!(!note.contains('\n'));
        assert!(note.contains("Protocol not supported") && note.contains("beyond the host"));
    }

    #[test]
    fn concatenated_keys_are_padded_to_4_byte_cells() {
        assert_eq!(cell(&[6]), vec![6, 0, 0, 0]);
        assert_eq!(cell(&8080u16.to_be_bytes()), vec![0x1f, 0x90, 0, 0]);
        assert_eq!(cell(&[10, 0, 0, 1]), vec![10, 0, 0, 1]);
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use crate::error::prop::{clear, input};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::error::prop::config())]
        #[test]
        fn any_publish_spec_is_parsed_or_clearly_refused(s in input(&["8080", "80", "0", "65535", "65536", "-1", ":", "127.0.0.1", "1.2.3", ".", "/", "tcp", "udp", "sctp", "TCP"])) {
            clear(&Publish::parse(&s))?;
        }

        #[test]
        fn every_port_pair_is_accepted(h in 1u16.., c in 1u16.., udp: bool) {
            let p = Publish::parse(&format!("{h}:{c}/{}", if udp { "udp" } else { "tcp" })).unwrap();
            prop_assert_eq!((p.host_port, p.ctr_port, p.udp), (h, c, udp));
        }
    }
}
