//! IP address management: which container has which address on the bridge's subnet.
//!
//! One small text file, `<run dir>/network/allocations`, one line per address in use:
//! `ADDRESS <tab> ID <tab> HOSTNAME <tab> RUNTIME-DIR <tab> NETNS`. Every change happens under an
//! exclusive `flock` of that file itself, so 50 minictr processes starting at once still
//! hand out 50 different addresses. The lock is held only for the read-modify-write of this file:
//! a start takes it once, a teardown once. A line whose owner crashed is removed by the next
//! minictr command (its runtime directory records the address); should the subnet run out before
//! that, the lines whose owner is gone (its runtime directory is missing, or nobody holds that
//! directory's lock any more) are dropped then — the liveness of every owner is checked only when
//! it matters, not on every start.

use anyhow::{bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

// ANCHOR: subnet
/// An IPv4 subnet such as 10.213.0.0/16. The bridge takes the first address (the containers'
/// gateway); containers get the following ones; the last (broadcast) is never used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    /// The network that the interface address `addr/prefix` lies in.
    pub fn of(addr: Ipv4Addr, prefix: u8) -> Subnet {
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix.min(32))
        };
        Subnet {
            network: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        }
    }

    pub fn parse(s: &str) -> Result<Subnet> {
        let usage = "give an IPv4 network in CIDR form with a prefix of /8 to /29, e.g. --subnet 10.213.0.0/16";
        let Some((addr, prefix)) = s.split_once('/') else {
            bail!(crate::error::hint(
                format!("invalid subnet {s:?}: no /PREFIX"),
                usage
            ));
        };
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| crate::error::hint(format!("invalid subnet {s:?}: bad address"), usage))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (8..=29).contains(p))
            .ok_or_else(|| {
                crate::error::hint(format!("invalid subnet {s:?}: bad prefix"), usage)
            })?;
        let net = Subnet {
            network: addr,
            prefix,
        };
        if u32::from(addr) & !net.mask() != 0 {
            bail!(crate::error::hint(
                format!("invalid subnet {s:?}: host bits are set"),
                format!(
                    "did you mean {}/{prefix}?",
                    Ipv4Addr::from(u32::from(addr) & net.mask())
                )
            ));
        }
        if addr.is_loopback() || addr.is_multicast() || addr.is_unspecified() {
            bail!(crate::error::hint(
                format!("invalid subnet {s:?}: not a unicast network"),
                usage
            ));
        }
        Ok(net)
    }

    // ANCHOR_END: subnet

    // ANCHOR: subnet_math
    pub fn mask(&self) -> u32 {
        u32::MAX << (32 - self.prefix)
    }

    /// The bridge's own address: the first of the subnet.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    pub fn contains(&self, a: Ipv4Addr) -> bool {
        u32::from(a) & self.mask() == u32::from(self.network)
    }

    /// The addresses containers may get: after the gateway, before the broadcast address.
    fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> {
        let first = u32::from(self.network) + 2;
        let last = u32::from(self.network) | !self.mask(); // broadcast
        (first..last).map(Ipv4Addr::from)
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}
// ANCHOR_END: subnet_math

/// One line of the allocation file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub addr: Ipv4Addr,
    pub id: String,
    pub hostname: String,
    /// `--name`, if given: peers on the bridge reach the container by it too.
    pub name: Option<String>,
    /// The owner's runtime directory: the address is in use while that directory is locked.
    pub rundir: PathBuf,
    /// Inode of the network namespace the container's bridge lives in (containers of other
    /// namespaces are not reachable, so they are left out of /etc/hosts).
    pub netns: u64,
}

impl Entry {
    fn line(&self) -> String {
        format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            self.addr,
            self.id,
            self.hostname,
            self.rundir.display(),
            self.netns,
            self.name.as_deref().unwrap_or("")
        )
    }

    fn parse(line: &str) -> Option<Entry> {
        let f: Vec<&str> = line.split('\t').collect();
        // (5 fields: written by a minictr without names)
        if f.len() != 5 && f.len() != 6 {
            return None;
        }
        Some(Entry {
            addr: f[0].parse().ok()?,
            id: f[1].to_string(),
            hostname: f[2].to_string(),
            rundir: PathBuf::from(f[3]),
            netns: f[4].parse().ok()?,
            name: f.get(5).filter(|n| !n.is_empty()).map(|n| n.to_string()),
        })
    }
}

pub fn parse_file(text: &str) -> Vec<Entry> {
    text.lines().filter_map(Entry::parse).collect()
}

// ANCHOR: pick
/// The lowest free address of `subnet` given the addresses in use.
pub fn pick(subnet: &Subnet, used: &[Entry]) -> Result<Ipv4Addr> {
    let taken: std::collections::HashSet<Ipv4Addr> = used.iter().map(|e| e.addr).collect();
    subnet.hosts().find(|a| !taken.contains(a)).ok_or_else(|| {
        crate::error::hint(
            format!("no free address left in {subnet}"),
            "stop some containers, or use a larger subnet (minictr network rm; --subnet …/16)",
        )
    })
}
// ANCHOR_END: pick

/// Open and lock `<dir>/allocations` — the file that is there once the lock is held: `minictr
/// network rm` unlinks the table (holding its lock), so a waiter that wakes up on an unlinked file
/// tries again.
fn lock_linked(dir: &Path) -> Result<Flock<File>> {
    use std::os::unix::fs::MetadataExt;
    let path = dir.join("allocations");
    loop {
        let file = match File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
        {
            Ok(f) => f,
            // The first address of this run directory (or the first after `network rm`).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("failed to create {}", dir.display()))?;
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("failed to open {}", path.display())),
        };
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .with_context(|| format!("failed to lock {}", path.display()))?;
        let held = lock
            .metadata()
            .with_context(|| format!("failed to inspect {}", path.display()))?;
        if std::fs::metadata(&path).is_ok_and(|m| m.ino() == held.ino()) {
            return Ok(lock);
        }
    }
}

/// The allocation file, locked for as long as this value lives.
pub struct Allocations {
    file: Flock<File>,
    pub entries: Vec<Entry>,
}

impl Allocations {
    // ANCHOR: lock
    /// Lock `<dir>/allocations` (the file is its own lock) and read it.
    pub fn lock(dir: &Path) -> Result<Allocations> {
        crate::explain!(
            super::CHAPTER,
            "flock({}/allocations, LOCK_EX) — the address table, one minictr at a time",
            dir.display()
        );
        let mut file = lock_linked(dir)?;
        let mut text = String::new();
        file.read_to_string(&mut text)
            .with_context(|| format!("failed to read {}/allocations", dir.display()))?;
        let entries = parse_file(&text);
        Ok(Allocations { file, entries })
    }

    /// Drop the lines whose owner is gone (`alive(rundir)` says whether a runtime directory is
    /// still owned by a running minictr); true if there was one. A few system calls per line: only
    /// when the subnet is full, or when the answer matters (`minictr network rm`).
    pub fn drop_dead(&mut self, alive: &dyn Fn(&Path) -> bool) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| alive(&e.rundir));
        before != self.entries.len()
    }
    // ANCHOR_END: lock

    /// Write the entries back, into the locked file itself: no temporary file, no rename, no
    /// inode made and freed per start. The new text is written over the old one, then the file is
    /// cut to its length (a minictr killed in between leaves old lines at the end: lines of
    /// addresses in use or released, never fewer lines than in use). The file stays when the last
    /// address is released, for the next start; `minictr network rm` removes it with the bridge.
    pub fn save(&self) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let text: String = self.entries.iter().map(Entry::line).collect();
        self.file
            .write_all_at(text.as_bytes(), 0)
            .and_then(|()| self.file.set_len(text.len() as u64))
            .context("failed to write the address table (allocations)")
    }

    /// Remove the entries of container `id`; true if there was one.
    pub fn remove(&mut self, id: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.id != id);
        before != self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(a: &str, id: &str) -> Entry {
        Entry {
            addr: a.parse().unwrap(),
            id: id.into(),
            hostname: format!("h{id}"),
            name: None,
            rundir: PathBuf::from(format!("/run/minictr/{id}")),
            netns: 4026531840,
        }
    }

    #[test]
    fn subnets_parse_and_refuse() {
        let s = Subnet::parse("10.213.0.0/16").unwrap();
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 213, 0, 1));
        assert!(s.contains(Ipv4Addr::new(10, 213, 255, 254)));
        assert!(!s.contains(Ipv4Addr::new(10, 214, 0, 1)));
        assert_eq!(s.to_string(), "10.213.0.0/16");
        for bad in [
            "10.213.0.0",
            "10.213.0.1/16",
            "10.213.0.0/30",
            "10.0.0.0/7",
            "300.1.1.0/24",
            "127.0.0.0/8",
            "10.213.0.0/x",
            "",
        ] {
            assert!(Subnet::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn picks_the_lowest_free_address_and_skips_gateway_and_broadcast() {
        let s = Subnet::parse("192.168.50.0/29").unwrap(); // .1 gateway, .2-.6 hosts, .7 broadcast
        assert_eq!(pick(&s, &[]).unwrap(), Ipv4Addr::new(192, 168, 50, 2));
        let used = vec![entry("192.168.50.2", "a"), entry("192.168.50.4", "b")];
        assert_eq!(pick(&s, &used).unwrap(), Ipv4Addr::new(192, 168, 50, 3));
        let full: Vec<Entry> = (2..=6)
            .map(|i| entry(&format!("192.168.50.{i}"), &i.to_string()))
            .collect();
        assert!(pick(&s, &full).is_err());
    }

    #[test]
    fn file_round_trips_and_ignores_garbage() {
        let e = entry("10.213.0.2", "abc");
        let text = format!("{}garbage line\n", e.line());
        assert_eq!(parse_file(&text), vec![e]);
    }

    #[test]
    fn concurrent_allocations_never_collide_and_dead_owners_free_their_address() {
        let dir = std::env::temp_dir().join(format!("minictr-ipam-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let subnet = Subnet::parse("10.213.0.0/24").unwrap();
        let threads: Vec<_> = (0..20)
            .map(|i| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    let mut a = Allocations::lock(&dir).unwrap();
                    let addr = pick(&subnet, &a.entries).unwrap();
                    a.entries.push(entry(&addr.to_string(), &format!("t{i}")));
                    a.save().unwrap();
                    addr
                })
            })
            .collect();
        let mut got: Vec<Ipv4Addr> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 20);
        // Every owner "died": dropping the dead leaves an empty table.
        let mut a = Allocations::lock(&dir).unwrap();
        assert_eq!(a.entries.len(), 20);
        assert!(a.drop_dead(&|_| false));
        assert!(a.entries.is_empty());
        drop(a);
        std::fs::remove_dir_all(&dir).unwrap();
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
        fn any_subnet_is_parsed_or_clearly_refused(s in input(&["10", "0", "213", "255", "256", "999", ".", "/", "16", "24", "31", "32", "33", "-1"])) {
            clear(&Subnet::parse(&s))?;
        }
    }
}
