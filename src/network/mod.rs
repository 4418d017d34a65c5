//! Chapter 6 — Networking: a bridge on the host, one veth pair per container, an address from the
//! bridge's subnet, a default route, NAT to the outside and published ports — all over netlink.
//!
//! `--network none` keeps the container's own, empty network namespace (only `lo`); `host` shares
//! minictr's namespace (no isolation); `bridge` (the default as root) connects the container to the
//! bridge `minictr0`. Files: [`netlink`] (the rtnetlink messages), [`ipam`] (who has which address),
//! [`nat`] (nftables), [`etc_files`] (/etc/hosts, /etc/hostname, /etc/resolv.conf).
//!
//! minictr sets up the network of the namespace it is *started in*: run it with
//! `ip netns exec NAME minictr …` and the bridge, rules and containers all live in NAME.

pub mod etc_files;
pub mod ipam;
pub mod nat;
pub mod netlink;

pub use ipam::Subnet;
pub use nat::Publish;

use anyhow::{bail, Context, Result};
use netlink::Socket;
use nix::sys::socket::SockProtocol;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const CHAPTER: &str = "ch06 network";

/// The host's bridge that every `--network bridge` container is plugged into.
pub const BRIDGE: &str = "minictr0";
/// The default subnet: 10.213.0.0/16. Docker uses 172.17.0.0/16, podman 10.88.0.0/16, Kubernetes
/// 10.96.0.0/12 and 10.244.0.0/16, libvirt 192.168.122.0/24: this one collides with none of them.
pub const DEFAULT_SUBNET: &str = "10.213.0.0/16";
/// Name of the container's end of the veth pair.
pub const CTR_IF: &str = "eth0";

/// `--network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Own network namespace with only `lo`.
    None,
    /// minictr's own network namespace (`--no-net`).
    Host,
    /// Own namespace plus a veth pair to the bridge.
    Bridge,
}

/// Everything this stage was asked to do, validated (step 1).
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    /// `--subnet`; None: the bridge's current subnet, or [`DEFAULT_SUBNET`] for a new bridge.
    pub subnet: Option<Subnet>,
    pub publish: Vec<Publish>,
}

// ANCHOR: config
impl Config {
    /// Whether the container gets /etc/hosts, /etc/hostname, /etc/resolv.conf of its own (bridge only).
    pub fn has_etc_files(&self) -> bool {
        self.mode == Mode::Bridge
    }

    /// Parse `--network`, `--no-net`, `--subnet` and `-p`. `root`: minictr runs as root.
    pub fn parse(
        network: Option<&str>,
        no_net: bool,
        subnet: Option<&str>,
        publish: &[String],
        root: bool,
    ) -> Result<Config> {
        let mode = match (network, no_net) {
            (Some("host"), _) | (None, true) => Mode::Host,
            (Some(m), true) => bail!(crate::error::hint(
                format!("--no-net (the host's network) conflicts with --network {m:?}"),
                "drop one of them: --no-net is --network host"
            )),
            (Some("none"), _) => Mode::None,
            (Some("bridge"), _) if !root => bail!(crate::error::hint(
                "--network bridge needs root: creating a bridge, veth pairs and NAT rules on the host is a privileged operation",
                "run as root (sudo), or use --network none (private, only lo) or --network host"
            )),
            (Some("bridge"), _) => Mode::Bridge,
            (Some(other), _) => bail!(crate::error::hint(
                format!("invalid --network value {other:?}"),
                "use --network bridge (own address on the bridge minictr0), none (only lo) or host (the host's network)"
            )),
            (None, false) if root => Mode::Bridge,
            (None, false) => {
                default_rootless_note();
                Mode::None
            }
        };
        // ANCHOR_END: config
        // ANCHOR: config_checks
        let subnet = subnet.map(Subnet::parse).transpose()?;
        if subnet.is_some() && mode != Mode::Bridge {
            bail!(crate::error::hint(
                "--subnet only applies to --network bridge",
                "drop --subnet, or use --network bridge"
            ));
        }
        let publish = publish
            .iter()
            .map(|p| Publish::parse(p))
            .collect::<Result<Vec<_>>>()?;
        if !publish.is_empty() && mode != Mode::Bridge {
            bail!(crate::error::hint(
                "-p/--publish needs --network bridge: ports are forwarded to the container's address on the bridge",
                "drop -p, or use --network bridge (as root)"
            ));
        }
        for (i, a) in publish.iter().enumerate() {
            if publish[..i]
                .iter()
                .any(|b| b.host_port == a.host_port && b.udp == a.udp && b.host_ip == a.host_ip)
            {
                bail!(crate::error::hint(
                    format!("host port {} is published twice", a.host_port),
                    "give each -p its own host port"
                ));
            }
        }
        Ok(Config {
            mode,
            subnet,
            publish,
        })
    }

    /// Whether the container gets a network namespace of its own.
    pub fn own_netns(&self) -> bool {
        self.mode != Mode::Host
    }
}
// ANCHOR_END: config_checks

/// Rootless minictr has no bridge: say so once, where someone reads it.
fn default_rootless_note() {
    use std::io::IsTerminal;
    let why = "no network: bridge networking needs root, so rootless containers default to --network none (only lo); --network host shares yours";
    if std::io::stderr().is_terminal() {
        eprintln!("minictr: note: {why}");
    } else {
        crate::explain!(CHAPTER, "{why}");
    }
}

/// The (host file, container path) pairs that the child bind-mounts over /etc/hosts, /etc/hostname
/// and /etc/resolv.conf; the files are written by [`reserve`] into `rundir`. Only with
/// `--network bridge`: with `none` and `host` the image's own files are right as they are.
pub fn etc_binds(cfg: &Config, rundir: &Path) -> Vec<(PathBuf, PathBuf)> {
    if cfg.mode != Mode::Bridge {
        return Vec::new();
    }
    etc_files::FILES
        .iter()
        .map(|(name, target)| (rundir.join(name), PathBuf::from(target)))
        .collect()
}

/// The first of /etc/hosts, /etc/hostname, /etc/resolv.conf that [`etc_binds`] mounts on but that
/// `rootfs` has no regular file for (it would have to be created in the image).
pub fn missing_mount_points(cfg: &Config, rootfs: &Path) -> Option<String> {
    etc_binds(cfg, Path::new(""))
        .into_iter()
        .map(|(_, target)| target)
        .find(|t| {
            !rootfs
                .join(t.strip_prefix("/").unwrap_or(t))
                .symlink_metadata()
                .is_ok_and(|m| m.is_file())
        })
        .map(|t| t.display().to_string())
}

/// Inode of the network namespace minictr runs in: the identity of "this host" for the bridge.
fn current_netns() -> Result<u64> {
    Ok(std::fs::metadata("/proc/self/ns/net")
        .context("failed to stat /proc/self/ns/net")?
        .ino())
}

/// Name of the host end of a container's veth pair: `mc` + the container id (at most 15 bytes).
pub fn host_ifname(id: &str) -> String {
    let mut n = format!("mc{id}");
    n.truncate(15);
    n
}

/// What the network stage reserved for one container. Dropping it undoes everything: published
/// ports, the veth pair, the address.
pub struct Network {
    id: String,
    netdir: PathBuf,
    /// Set for `--network bridge` only.
    bridge: Option<BridgeLease>,
}

/// What state.json records of a bridge network (before the veth exists): enough for a later
/// minictr to undo it after a crash, and the address `minictr ps` shows.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Lease {
    pub addr: Ipv4Addr,
    /// The allocation's key in the address table (the container id).
    pub id: String,
    /// The host end of the veth pair.
    pub veth: String,
    /// The inode of the network namespace minictr ran in (where the veth and the rules live).
    pub netns: u64,
    /// Published ports, as `[HOST_IP:]PROTO:HOST_PORT:CTR_IP:CTR_PORT`.
    pub publish: Vec<String>,
}

struct BridgeLease {
    sock: Socket,
    bridge_index: i32,
    mtu: u32,
    subnet: Subnet,
    addr: Ipv4Addr,
    host_if: String,
    netns: u64,
    publish: Vec<Publish>,
    veth_made: bool,
    published: Vec<Publish>,
}

// ANCHOR: reserve
/// Step 2 (parent, before clone): make sure the bridge and its NAT rules exist, take an address,
/// write the container's /etc files into its runtime directory, owned by `owner` (the host uid/gid
/// of the container's root, so that it may edit them as Docker's containers can), and tell the
/// other containers on the bridge its name — one hold of the address table's lock for the table
/// and the /etc/hosts files; /etc/hostname and /etc/resolv.conf are written after it.
/// state.json has the [`pending_lease`] already: a crash from here on is undone.
#[allow(clippy::too_many_arguments)]
pub fn reserve(
    cfg: &Config,
    id: &str,
    hostname: &str,
    name: Option<&str>,
    rundir: &Path,
    netdir: &Path,
    alive: fn(&Path) -> bool,
    owner: (u32, u32),
) -> Result<Network> {
    let mut net = Network {
        id: id.to_string(),
        netdir: netdir.to_path_buf(),
        bridge: None,
    };
    if cfg.mode != Mode::Bridge {
        return Ok(net);
    }
    let netns = current_netns()?;
    let mut sock = Socket::open(SockProtocol::NetlinkRoute)?;
    // Every start but the first finds the bridge complete: check that (read-only) before taking
    // the lock that every other start waits for; anything missing — a bridge another minictr is
    // making right now, its address, its rules, another subnet — is made or reported under the
    // lock. (A `minictr network rm` in between makes this start fail when it plugs in the veth.)
    let ready = bridge_ready(&mut sock, cfg.subnet);
    let mut table = ipam::Allocations::lock(netdir)?;
    let (bridge_index, mtu, subnet) = match ready {
        Some(b) => b,
        None => ensure_bridge(&mut sock, cfg.subnet)?,
    };
    let addr = match ipam::pick(&subnet, &table.entries) {
        Ok(a) => a,
        // Full: only now are the owners of all addresses checked (some may have died).
        Err(_) if table.drop_dead(&|p| alive(p)) => ipam::pick(&subnet, &table.entries)?,
        Err(e) => return Err(e),
    };
    crate::explain!(
        CHAPTER,
        "allocate {addr}/{} for {id} in {}/allocations (lowest free address of {subnet})",
        subnet.prefix,
        netdir.display()
    );
    let entry = ipam::Entry {
        addr,
        id: id.to_string(),
        hostname: hostname.to_string(),
        name: name.map(str::to_string),
        rundir: rundir.to_path_buf(),
        netns,
    };
    table.entries.push(entry);
    net.bridge = Some(BridgeLease {
        sock,
        bridge_index,
        mtu,
        subnet,
        addr,
        host_if: host_ifname(id),
        netns,
        publish: cfg.publish.clone(),
        veth_made: false,
        published: Vec::new(),
    });
    table.save()?;
    // Its /etc/hosts, then the other containers' (they learn its name; it answers a few
    // milliseconds later, once attached) under the lock: the next start rewrites them all.
    let peers = peers_of(&table.entries, id, netns, &subnet);
    let own = etc_files::names(hostname, name, id);
    let hosts = etc_files::hosts(Some(addr), &own, &peers);
    etc_files::write(rundir, "hosts", &hosts, owner)?;
    update_peer_hosts(&table.entries, id, netns, &subnet);
    drop(table);
    // /etc/hostname and /etc/resolv.conf are this container's alone: after the lock.
    etc_files::write(rundir, "hostname", &format!("{hostname}\n"), owner)?;
    etc_files::write(
        rundir,
        "resolv.conf",
        &etc_files::host_resolv_conf(false),
        owner,
    )?;
    Ok(net)
}
// ANCHOR_END: reserve

/// The other containers of this namespace's bridge, for /etc/hosts.
fn peers_of(
    entries: &[ipam::Entry],
    id: &str,
    netns: u64,
    subnet: &Subnet,
) -> Vec<(Ipv4Addr, String)> {
    entries
        .iter()
        .filter(|e| e.id != id && e.netns == netns && subnet.contains(e.addr))
        .map(|e| (e.addr, entry_names(e)))
        .collect()
}

fn entry_names(e: &ipam::Entry) -> String {
    etc_files::names(&e.hostname, e.name.as_deref(), &e.id)
}

/// Rewrite the /etc/hosts of every other running container on this bridge (they learn the new
/// one's name, or forget a stopped one's); `except` is the container that changed.
fn update_peer_hosts(entries: &[ipam::Entry], except: &str, netns: u64, subnet: &Subnet) {
    for e in entries
        .iter()
        .filter(|e| e.id != except && e.netns == netns && subnet.contains(e.addr))
    {
        let peers = peers_of(entries, &e.id, netns, subnet);
        let text = etc_files::hosts(Some(e.addr), &entry_names(e), &peers);
        // A container that is just exiting may have lost its runtime directory: not an error.
        let _ = etc_files::rewrite_in_place(&e.rundir.join("hosts"), &text);
    }
}

// ANCHOR: ensure_bridge
/// The bridge `minictr0` with the gateway address, IP forwarding and the NAT table. The fast path —
/// the bridge exists — is [`bridge_ready`], before the lock; this is the slow path, under it.
fn ensure_bridge(sock: &mut Socket, want: Option<Subnet>) -> Result<(i32, u32, Subnet)> {
    crate::explain!(
        CHAPTER,
        "RTM_GETLINK {{ifname={BRIDGE:?}}} + RTM_GETADDR + NFT_MSG_GETTABLE — ip -4 addr show {BRIDGE}; nft list table ip {}: do the bridge and its rules exist, with which subnet?",
        nat::TABLE
    );
    if let Some(link) = sock.get_link(BRIDGE)? {
        let subnet = match sock.get_addr(link.index)? {
            Some((a, prefix)) => Subnet::of(a, prefix),
            None => bail!(crate::error::hint(
                format!("the bridge {BRIDGE} exists but has no IPv4 address"),
                "remove it with `minictr network rm` and start again"
            )),
        };
        if let Some(w) = want {
            if w != subnet {
                bail!(crate::error::hint(
                    format!("the bridge {BRIDGE} already uses {subnet}, not {w}"),
                    "drop --subnet, or stop its containers and run `minictr network rm` first"
                ));
            }
        }
        if !link.up {
            sock.set_up(BRIDGE, link.index)?;
        }
        // The rules are made with the bridge; if they are gone (a crash between the two, or
        // `nft flush ruleset` by hand), make them again.
        if !nat::table_exists().unwrap_or(false) {
            nat::sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
            install_nat(&subnet);
        }
        return Ok((link.index, link.mtu, subnet));
    }
    let subnet = match want {
        Some(s) => s,
        None => Subnet::parse(DEFAULT_SUBNET)?,
    };
    // MTU: the uplink's (the interface of the default route), or 1500 without one.
    let mtu = match sock.default_route_oif()? {
        Some(oif) => sock.link_mtu(oif)?.unwrap_or(1500),
        None => 1500,
    };
    sock.add_bridge(BRIDGE, mtu)?;
    let made = (|| -> Result<(i32, u32, Subnet)> {
        let link = sock
            .get_link(BRIDGE)?
            .with_context(|| format!("the bridge {BRIDGE} vanished right after its creation"))?;
        sock.add_addr(BRIDGE, link.index, subnet.gateway(), subnet.prefix)?;
        nat::sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
        nat::sysctl(
            &format!("/proc/sys/net/ipv4/conf/{BRIDGE}/route_localnet"),
            "1",
        )?;
        install_nat(&subnet);
        Ok((link.index, mtu, subnet))
    })();
    if made.is_err() {
        let _ = sock.del_link(BRIDGE); // half a bridge would make every later start fail
    }
    made
}
// ANCHOR_END: ensure_bridge

/// The bridge's index, MTU and subnet if it exists, is up, has its address (of the subnet `want`,
/// if given) and its NAT table: nothing to make. Read-only; any error or gap is None.
/// (The link by ioctl, the address by an RTM_GETADDR dump, the table by NFT_MSG_GETTABLE: none of
/// them waits for the rtnl lock that other starts hold while they make their veths.)
fn bridge_ready(sock: &mut Socket, want: Option<Subnet>) -> Option<(i32, u32, Subnet)> {
    let link = sock.link_unlocked(BRIDGE).ok()??;
    let (a, prefix) = sock.get_addr(link.index).ok()??;
    let subnet = Subnet::of(a, prefix);
    let complete = link.up && want.is_none_or(|w| w == subnet) && nat::table_exists().ok()?;
    complete.then_some((link.index, link.mtu, subnet))
}

/// The NAT table, or — where nf_tables or its NAT expressions are missing — one line that says
/// so: the container still starts with its address on the bridge.
fn install_nat(subnet: &Subnet) {
    if let Err(e) = nat::install(BRIDGE, subnet) {
        eprintln!("minictr: {}", nat::unavailable_note(&e));
    }
}

/// What state.json records before [`reserve`] takes an address (`None` unless `--network
/// bridge`): the address table's key and the veth's name, enough to undo the reservation after a
/// crash; [`Network::record`] adds the address once it is known.
pub fn pending_lease(cfg: &Config, id: &str) -> Result<Option<Lease>> {
    if cfg.mode != Mode::Bridge {
        return Ok(None);
    }
    Ok(Some(Lease {
        addr: Ipv4Addr::UNSPECIFIED,
        id: id.to_string(),
        veth: host_ifname(id),
        netns: current_netns()?,
        publish: Vec::new(),
    }))
}

impl Network {
    /// What to record in state.json before [`Network::attach`] creates anything on the host
    /// (`None` unless `--network bridge`).
    pub fn record(&self) -> Option<Lease> {
        let b = self.bridge.as_ref()?;
        Some(Lease {
            addr: b.addr,
            id: self.id.clone(),
            veth: b.host_if.clone(),
            netns: b.netns,
            publish: b.publish.iter().map(|p| nat::record(p, b.addr)).collect(),
        })
    }

    // ANCHOR: attach
    /// Step 5 (parent, after the uid maps, before "go"): the veth pair, eth0's address, MTU and
    /// default route inside the container's namespace, and the published ports.
    pub fn attach(&mut self, pid: i32) -> Result<()> {
        let Some(b) = self.bridge.as_mut() else {
            return Ok(());
        };
        let ns_path = format!("/proc/{pid}/ns/net");
        let ns =
            std::fs::File::open(&ns_path).with_context(|| format!("failed to open {ns_path}"))?;
        b.veth_made = true; // from here on teardown deletes it (ENODEV is fine)
        let peer = b.sock.add_veth(
            &b.host_if,
            b.bridge_index,
            b.mtu,
            CTR_IF,
            ns.as_fd(),
            &ns_path,
        )?;
        let mut inside = Socket::open_route_in(ns.as_fd(), &ns_path)?;
        let eth0 = match peer {
            Some(index) => index,
            // (A kernel before 6.3 does not echo the new link: ask for eth0 inside.)
            None => {
                inside
                    .get_link(CTR_IF)?
                    .with_context(|| format!("{CTR_IF} did not appear in {ns_path}"))?
                    .index
            }
        };
        // Its address, up, the default route: three requests in one sendmsg, three acks. (Setting
        // IFF_UP on the peer inside the creation request fails with ENOTCONN: the peer is brought
        // up on its own, in its namespace.)
        crate::explain!(
            CHAPTER,
            "sendmsg(RTM_NEWADDR + RTM_NEWLINK + RTM_NEWROUTE) — one round trip, three acks"
        );
        inside.request_all(vec![
            netlink::addr_msg(CTR_IF, eth0, b.addr, b.subnet.prefix),
            netlink::up_msg(CTR_IF, eth0),
            netlink::default_route_msg(CTR_IF, eth0, b.subnet.gateway()),
        ])?;
        for p in b.publish.clone() {
            nat::set_element(&p, b.addr, true)?;
            b.published.push(p);
        }
        Ok(())
    }
    // ANCHOR_END: attach
}

// ANCHOR: teardown
impl Drop for Network {
    /// Teardown: published ports, then the host end of the veth (by a helper process, see
    /// [`delete_link_in_background`]), then the address.
    fn drop(&mut self) {
        let Some(b) = self.bridge.as_mut() else {
            return;
        };
        for p in std::mem::take(&mut b.published) {
            if let Err(e) = nat::set_element(&p, b.addr, false) {
                eprintln!("minictr: warning: {}", crate::error::one_line(&e));
            }
        }
        if b.veth_made {
            delete_link_in_background(&b.host_if);
        }
        match ipam::Allocations::lock(&self.netdir) {
            Ok(mut table) => {
                crate::explain!(
                    CHAPTER,
                    "release {} in {}/allocations",
                    b.addr,
                    self.netdir.display()
                );
                table.remove(&self.id);
                if let Err(e) = table.save() {
                    eprintln!("minictr: warning: {}", crate::error::one_line(&e));
                }
                update_peer_hosts(&table.entries, &self.id, b.netns, &b.subnet);
            }
            Err(e) => eprintln!("minictr: warning: {}", crate::error::one_line(&e)),
        }
    }
}

// ANCHOR_END: teardown

// ANCHOR: delete_link
/// How long the helper of [`delete_link_in_background`] gives the kernel to delete the veth.
const KERNEL_DELETES_WITHIN: Duration = Duration::from_secs(1);

/// The host end of the veth goes with the container's network namespace: when its last process
/// has exited, the kernel destroys the namespace in a work queue, a moment later, and with it the
/// pair — many namespaces in one batch, under one hold of the rtnl lock and one RCU grace period.
/// An `RTM_DELLINK` of our own does the same work alone, and waits for RCU grace periods inside
/// the rtnl lock that every other start needs. So a short-lived helper process, which minictr
/// does not wait for, only watches: it deletes the link itself if the kernel has not within
/// [`KERNEL_DELETES_WITHIN`] (something keeps the namespace alive — a bind mount, a process that
/// entered it). Once minictr has exited, the kernel hands the helper to init, which reaps it.
fn delete_link_in_background(name: &str) {
    crate::explain!(
        CHAPTER,
        "fork() — a helper process waits for the kernel to delete {name} with the container's namespace, else runs `ip link del {name}`"
    );
    let delete = || {
        if let Ok(mut s) = Socket::open(SockProtocol::NetlinkRoute) {
            let _ = s.del_link(name);
        }
    };
    // SAFETY: minictr is single-threaded here; the child only watches or deletes a link and _exits.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => {}
        Ok(nix::unistd::ForkResult::Child) => {
            // Hold nothing of minictr's: not its lock, not the pipe someone reads its output from.
            let _ = crate::fds::close_from(0);
            if !gone_within(name, KERNEL_DELETES_WITHIN) {
                delete();
            }
            // SAFETY: leave the forked process without running minictr's destructors.
            unsafe { libc::_exit(0) }
        }
        Err(_) => delete(),
    }
}

/// Whether the interface `name` is gone — deleted by anyone, the kernel included — within
/// `timeout`. It looks after 10, 20, 40, … ms with `if_nametoindex` (an `ioctl(SIOCGIFINDEX)`: the
/// name is looked up under RCU, no lock that other starts need). Not a netlink subscription to link
/// changes: every start's veth would wake every helper that is still waiting.
fn gone_within(name: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        if nix::net::if_::if_nametoindex(name) == Err(nix::errno::Errno::ENODEV) {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        std::thread::sleep(pause.min(left));
        pause *= 2;
    }
}
// ANCHOR_END: delete_link

// ANCHOR: stale
/// Undo what a crashed minictr recorded (the [`Lease`] from [`Network::record`]): its published ports,
/// its veth and its address. They live in the network namespace that minictr ran in; if that is not
/// ours, a named namespace (`ip netns add`, bind-mounted at /run/netns/NAME) with the recorded inode
/// is entered for the cleanup. A namespace that no longer exists took its veth and rules with it.
pub fn cleanup_stale(lease: &Lease, netdir: &Path) {
    let undo = || {
        for rec in &lease.publish {
            if let Some((p, addr)) = nat::parse_record(rec) {
                let _ = nat::set_element(&p, addr, false);
            }
        }
        if let Ok(mut sock) = Socket::open(SockProtocol::NetlinkRoute) {
            let _ = sock.del_link(&lease.veth);
        }
    };
    if current_netns().ok() == Some(lease.netns) {
        undo();
    } else if let Some(path) = named_netns(lease.netns) {
        crate::explain!(
            CHAPTER,
            "setns({}, CLONE_NEWNET) — the stale container's network lives there",
            path.display()
        );
        if let Err(e) = in_netns(&path, undo) {
            eprintln!("minictr: warning: {}", crate::error::one_line(&e));
        }
    }
    if let Ok(mut table) = ipam::Allocations::lock(netdir) {
        if table.remove(&lease.id) {
            let _ = table.save();
            // The others on this bridge forget it (if the bridge is the one minictr runs on).
            if let (Ok(ns), Some(subnet)) = (current_netns(), bridge_subnet()) {
                update_peer_hosts(&table.entries, &lease.id, ns, &subnet);
            }
        }
    }
}
// ANCHOR_END: stale

// ANCHOR: stale_netns
/// The subnet of the bridge in the current network namespace, if there is one.
fn bridge_subnet() -> Option<Subnet> {
    let mut sock = Socket::open(SockProtocol::NetlinkRoute).ok()?;
    let link = sock.get_link(BRIDGE).ok()??;
    let (a, prefix) = sock.get_addr(link.index).ok()??;
    Some(Subnet::of(a, prefix))
}

/// The /run/netns/NAME whose namespace has inode `ino`, if any.
fn named_netns(ino: u64) -> Option<PathBuf> {
    std::fs::read_dir("/run/netns")
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.ino() == ino))
}

/// Run `f` inside the network namespace at `path`, then return to ours (single-threaded: nothing
/// else runs meanwhile).
fn in_netns(path: &Path, f: impl FnOnce()) -> Result<()> {
    let home =
        std::fs::File::open("/proc/self/ns/net").context("failed to open /proc/self/ns/net")?;
    let target =
        std::fs::File::open(path).with_context(|| format!("failed to open {}", path.display()))?;
    nix::sched::setns(target.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("failed to enter {}", path.display()))?;
    f();
    nix::sched::setns(home.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
        .context("failed to return to minictr's network namespace")
}
// ANCHOR_END: stale_netns

/// `minictr network rm`: delete the bridge and its NAT table in the current network namespace,
/// unless containers still use them.
pub fn remove(netdir: &Path, alive: fn(&Path) -> bool) -> Result<()> {
    let netns = current_netns()?;
    let mut table = ipam::Allocations::lock(netdir)?;
    if table.drop_dead(&|p| alive(p)) {
        table.save()?;
    }
    let users: Vec<&str> = table
        .entries
        .iter()
        .filter(|e| e.netns == netns)
        .map(|e| e.id.as_str())
        .collect();
    if !users.is_empty() {
        bail!(crate::error::hint(
            format!(
                "the bridge {BRIDGE} is used by running containers: {}",
                users.join(", ")
            ),
            "stop them first"
        ));
    }
    let mut sock = Socket::open(SockProtocol::NetlinkRoute)?;
    let had_bridge = sock.del_link(BRIDGE)?;
    let had_table = nat::remove()?;
    let mut gone = Vec::new();
    if had_bridge {
        gone.push(format!("the bridge {BRIDGE}"));
    }
    if had_table {
        gone.push(format!("the nftables table ip {}", nat::TABLE));
    }
    if gone.is_empty() {
        println!("no bridge {BRIDGE} and no table ip {} here", nat::TABLE);
    } else {
        println!("removed {}", gone.join(" and "));
    }
    // No container left in any namespace: the address table itself goes too.
    if table.entries.is_empty() {
        crate::explain!(
            CHAPTER,
            "rm -r {netdir:?} — no addresses are allocated anywhere"
        );
        // Unlinked while still locked: a minictr waiting for the lock then finds its file gone and
        // makes a new one (see `ipam::Allocations::lock`), instead of sharing the table with one
        // that opened the new file meanwhile.
        let _ = std::fs::remove_file(netdir.join("allocations"));
        let _ = std::fs::remove_file(netdir.join("lock")); // the lock file of an older minictr
        let _ = std::fs::remove_dir(netdir);
        drop(table);
    }
    Ok(())
}

/// Chapter 6's flags of `minictr run`.
#[derive(clap::Args, Debug, Default, Clone)]
#[command(next_help_heading = "Network (chapter 6)")]
pub struct NetworkArgs {
    /// Network: bridge (own address on the bridge minictr0; default as root), none (only lo; default
    /// rootless) or host (the host's network, like --no-net)
    #[arg(long, value_name = "MODE")]
    pub network: Option<String>,
    /// The bridge's subnet when minictr creates it [default: 10.213.0.0/16]
    #[arg(long, value_name = "CIDR")]
    pub subnet: Option<String>,
    /// Publish a container port: [HOST_IP:]HOST_PORT:CTR_PORT[/tcp|/udp]; repeatable (bridge only)
    #[arg(short = 'p', long = "publish", value_name = "[IP:]HOST:CTR[/PROTO]")]
    pub publish: Vec<String>,
}

impl NetworkArgs {
    /// Step 1: this stage's config. `no_net` is chapter 1's `--no-net` (the host's network);
    /// `default` the mode when neither it nor `--network` is given (the host's MINICTR_NETWORK);
    /// `root`: minictr runs as root.
    pub fn config(&self, no_net: bool, default: Option<&str>, root: bool) -> Result<Config> {
        let mode = self
            .network
            .as_deref()
            .or(if no_net { None } else { default });
        Config::parse(mode, no_net, self.subnet.as_deref(), &self.publish, root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_modes() {
        let p =
            |n: Option<&str>, no_net: bool, root: bool| Config::parse(n, no_net, None, &[], root);
        assert_eq!(p(None, false, true).unwrap().mode, Mode::Bridge);
        assert_eq!(p(None, false, false).unwrap().mode, Mode::None);
        assert_eq!(p(None, true, true).unwrap().mode, Mode::Host);
        assert_eq!(p(Some("host"), true, false).unwrap().mode, Mode::Host);
        assert_eq!(p(Some("none"), false, true).unwrap().mode, Mode::None);
        assert!(p(Some("bridge"), false, false).is_err());
        assert!(p(Some("bridge"), true, true).is_err());
        assert!(p(Some("nat"), false, true).is_err());
        let pubs = vec!["8080:80".to_string()];
        assert!(Config::parse(Some("none"), false, None, &pubs, true).is_err());
        assert!(Config::parse(None, false, None, &pubs, true).is_ok());
        let twice = vec!["8080:80".to_string(), "8080:81".to_string()];
        assert!(Config::parse(None, false, None, &twice, true).is_err());
        assert!(Config::parse(Some("host"), false, Some("10.1.0.0/16"), &[], true).is_err());
        assert!(Config::parse(None, false, Some("10.1.0.0/16"), &[], true).is_ok());
    }

    #[test]
    fn veth_names_fit_ifnamsiz() {
        assert_eq!(host_ifname("0123456789ab"), "mc0123456789ab");
        assert!(host_ifname("0123456789abcdef").len() <= 15);
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
        fn any_network_flags_are_accepted_or_clearly_refused(
            mode in proptest::option::of(input(&["bridge", "none", "host", "container:", "x"])),
            no_net: bool,
            subnet in proptest::option::of(input(&["10", ".", "0", "213", "/", "16", "33"])),
            publish in proptest::collection::vec(input(&["8080", ":", "80", "/udp", "1.2.3.4"]), 0..3),
            root: bool,
        ) {
            clear(&Config::parse(mode.as_deref(), no_net, subnet.as_deref(), &publish, root))?;
        }
    }
}
