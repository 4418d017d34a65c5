//! NAT with nftables: masquerade for the way out, DNAT for published ports.
//!
//! The rules are made once, when the bridge is created, with the `nft` tool (one `nft -f -` call, not
//! on the per-container path): a table `ip minictr` with
//! - `postrouting`: packets from the subnet leaving by another interface get the host's address
//!   (masquerade); packets from 127.0.0.0/8 sent to the bridge (a published port reached on
//!   127.0.0.1) get the bridge's address, so the container can answer them;
//! - `prerouting` and `output`: packets to one of the host's own addresses jump to `publish`, which
//!   looks the (address, protocol, port) up in two maps and rewrites the destination (DNAT).
//!
//! Publishing a port is then one *map element*, added and deleted per container with a single
//! nf_tables netlink message — no process started, no rule list rewritten.

use super::netlink::{Msg, Socket, NLA_F_NESTED, NLM_F_ACK, NLM_F_CREATE};
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
// ANCHOR_END: parse_publish

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

// ANCHOR: ruleset
/// The table made with the bridge. `table …; delete table …; table … {…}` in one transaction
/// replaces any older copy atomically.
pub fn ruleset(bridge: &str, subnet: &str) -> String {
    format!(
        "table ip {TABLE}
delete table ip {TABLE}
table ip {TABLE} {{
  map publish_ip {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}
  map publish_any {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}
  chain publish {{
    meta l4proto {{ tcp, udp }} dnat ip to ip daddr . meta l4proto . th dport map @publish_ip
    meta l4proto {{ tcp, udp }} dnat ip to meta l4proto . th dport map @publish_any
  }}
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    fib daddr type local jump publish
  }}
  chain output {{
    type nat hook output priority -100; policy accept;
    fib daddr type local jump publish
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr {subnet} oifname != \"{bridge}\" masquerade
    oifname \"{bridge}\" ip saddr 127.0.0.0/8 masquerade
  }}
}}
"
    )
}
// ANCHOR_END: ruleset

/// Load the ruleset with `nft -f -` (once per bridge creation).
pub fn install(bridge: &str, subnet: &str) -> Result<()> {
    use std::io::Write;
    let script = ruleset(bridge, subnet);
    crate::explain!(
        super::CHAPTER,
        "nft -f - <<'EOF' … EOF — table ip {TABLE}: masquerade {subnet}, DNAT maps for -p (once per bridge)"
    );
    let mut child = std::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            crate::error::hint(
                format!("cannot run nft: {e}"),
                "install nftables (apt-get install nftables), or use --network none|host",
            )
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .context("failed to send the ruleset to nft")?;
    }
    let out = child.wait_with_output().context("failed to wait for nft")?;
    if !out.status.success() {
        bail!(crate::error::hint(
            format!(
                "nft refused minictr's NAT rules: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            "check that the kernel has nf_tables and nf_nat (modprobe nf_tables nft_nat nft_fib_ipv4)"
        ));
    }
    Ok(())
}

/// `nft delete table ip minictr` (for `minictr network rm`); false if there was none.
pub fn remove() -> Result<bool> {
    crate::explain!(super::CHAPTER, "nft delete table ip {TABLE}");
    let out = std::process::Command::new("nft")
        .args(["delete", "table", "ip", TABLE])
        .output()
        .context("cannot run nft (apt-get install nftables)")?;
    Ok(out.status.success())
}

/// Write `value` into a sysctl file of the current network namespace (/proc/sys/net is per namespace).
pub fn sysctl(path: &str, value: &str) -> Result<()> {
    crate::explain!(
        super::CHAPTER,
        "write({path}, {value:?}) — in minictr's network namespace"
    );
    std::fs::write(path, value).with_context(|| format!("failed to write {value} to {path}"))
}

// nf_tables over netlink (<linux/netfilter/nfnetlink.h>, <linux/netfilter/nf_tables.h>).
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_GETTABLE: u16 = 1;
const NFTA_TABLE_NAME: u16 = 1;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFPROTO_IPV4: u8 = 2;

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

/// Whether the table `ip minictr` exists (`nft list table ip minictr`): one NFT_MSG_GETTABLE.
pub fn table_exists() -> Result<bool> {
    let mut sock = Socket::open(SockProtocol::NetlinkNetFilter)?;
    let mut m = Msg::new((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE, NLM_F_ACK);
    m.raw(&nfgenmsg(NFPROTO_IPV4, 0))
        .attr_str(NFTA_TABLE_NAME, TABLE);
    match sock.request(m) {
        Ok(_) => Ok(true),
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .and_then(|e| e.raw_os_error())
                == Some(libc::ENOENT) =>
        {
            Ok(false)
        }
        Err(e) => Err(e).context("NFT_MSG_GETTABLE ip minictr failed"),
    }
}

// ANCHOR: publish
/// Add (or delete) the map element of one published port: one nf_tables batch
/// (BATCH_BEGIN, NEWSETELEM/DELSETELEM, BATCH_END) on a NETLINK_NETFILTER socket.
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
    let mut sock = Socket::open(SockProtocol::NetlinkNetFilter)?;
    let mut batch = Vec::new();
    let seq0 = sock.next_seq();
    let mut begin = Msg::new(NFNL_MSG_BATCH_BEGIN, 0);
    begin.raw(&nfgenmsg(libc::AF_UNSPEC as u8, NFNL_SUBSYS_NFTABLES));
    batch.extend(sock.finish(begin, seq0));
    let seq = sock.next_seq();
    let ty = (NFNL_SUBSYS_NFTABLES << 8)
        | if add {
            NFT_MSG_NEWSETELEM
        } else {
            NFT_MSG_DELSETELEM
        };
    let mut m = Msg::new(ty, NLM_F_ACK | if add { NLM_F_CREATE } else { 0 });
    m.raw(&nfgenmsg(NFPROTO_IPV4, 0))
        .attr_str(NFTA_SET_ELEM_LIST_TABLE, TABLE)
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
    batch.extend(sock.finish(m, seq));
    let seq1 = sock.next_seq();
    let mut end = Msg::new(NFNL_MSG_BATCH_END, 0);
    end.raw(&nfgenmsg(libc::AF_UNSPEC as u8, NFNL_SUBSYS_NFTABLES));
    batch.extend(sock.finish(end, seq1));
    sock.send(&batch)?;
    sock.collect(seq).map(|_| ()).map_err(|e| {
        let port = format!("{}/{}", p.host_port, p.proto());
        match e
            .downcast_ref::<std::io::Error>()
            .and_then(|e| e.raw_os_error())
        {
            Some(libc::EEXIST) => crate::error::hint(
                format!("host port {port} is already published by another container"),
                "pick another host port with -p",
            ),
            Some(libc::ENOENT) if add => crate::error::hint(
                format!("cannot publish {port}: the nftables table ip {TABLE} is missing"),
                "run `minictr network rm` and start again: the bridge and its rules are made together",
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
    fn concatenated_keys_are_padded_to_4_byte_cells() {
        assert_eq!(cell(&[6]), vec![6, 0, 0, 0]);
        assert_eq!(cell(&8080u16.to_be_bytes()), vec![0x1f, 0x90, 0, 0]);
        assert_eq!(cell(&[10, 0, 0, 1]), vec![10, 0, 0, 1]);
    }
}
