//! Chapter 3 — User namespaces: the container's root is an unprivileged user on the host.
//!
//! The parent writes `/proc/PID/uid_map`, `setgroups` and `gid_map` for the blocked child, then the
//! child becomes uid/gid 0 *inside*. Image files stay owned by host root: the rootfs is seen through
//! an idmapped mount (`mount_setattr(MOUNT_ATTR_IDMAP)`), which shifts owners on the fly.

use anyhow::{bail, Context, Result};
use nix::unistd::Pid;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

pub const CHAPTER: &str = "ch03 userns";

/// The host range used when /etc/subuid has none for the invoking user (as root).
pub const DEFAULT_HOST_START: u32 = 100_000;
/// How many ids a container gets: 0–65535.
pub const DEFAULT_LEN: u32 = 65_536;

// ANCHOR: idmap
/// One line of uid_map/gid_map: ids `inside..inside+len` in the container are
/// `outside..outside+len` on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub inside: u32,
    pub outside: u32,
    pub len: u32,
}

impl IdMap {
    /// Parse `CTR:HOST:LEN` as given to `--uidmap`/`--gidmap`.
    pub fn parse(s: &str) -> Result<IdMap> {
        let usage = "use CONTAINER_ID:HOST_ID:LENGTH, e.g. --uidmap 0:100000:65536";
        let nums: Vec<&str> = s.split(':').collect();
        let [a, b, c] = nums.as_slice() else {
            bail!(crate::error::hint(format!("invalid id map {s:?}"), usage));
        };
        let p = |x: &str| {
            x.parse::<u32>().map_err(|_| {
                crate::error::hint(
                    format!("invalid id map {s:?}: {x:?} is not a number from 0 to 4294967295"),
                    usage,
                )
            })
        };
        Ok(IdMap {
            inside: p(a)?,
            outside: p(b)?,
            len: p(c)?,
        })
    }

    fn end_inside(&self) -> u64 {
        self.inside as u64 + self.len as u64
    }
    fn end_outside(&self) -> u64 {
        self.outside as u64 + self.len as u64
    }
}
// ANCHOR_END: idmap

// ANCHOR: validate
/// The checks the kernel makes (and one it does not): lengths > 0, ranges within 32 bits, no
/// overlap inside or outside, at most 340 lines — and never the identity map of every id, which is no
/// isolation at all.
pub fn validate(maps: &[IdMap], what: &str) -> Result<()> {
    let hint = |m: String| crate::error::hint(m, format!("fix the --{what}map values"));
    if maps.is_empty() {
        bail!(hint(format!("no {what} map given")));
    }
    if maps.len() > 340 {
        bail!(hint(format!(
            "{} {what} map lines; the kernel accepts at most 340",
            maps.len()
        )));
    }
    for m in maps {
        if m.len == 0 {
            bail!(hint(format!(
                "{what} map {}:{}:0 has length 0",
                m.inside, m.outside
            )));
        }
        if m.end_inside() > u32::MAX as u64 || m.end_outside() > u32::MAX as u64 {
            bail!(hint(format!(
                "{what} map {}:{}:{} goes past the largest id 4294967294",
                m.inside, m.outside, m.len
            )));
        }
        if m.inside == 0 && m.outside == 0 && m.len >= u32::MAX - 1 {
            bail!(hint(format!(
                "{what} map 0:0:{} is the identity of all ids: container root would be host root",
                m.len
            )));
        }
    }
    // The container's first process becomes root (step 7): container id 0 must be mapped.
    if !maps.iter().any(|m| m.inside == 0) {
        bail!(hint(format!(
            "no {what} map for container {what} 0: the container's root would not exist"
        )));
    }
    for (i, a) in maps.iter().enumerate() {
        for b in &maps[i + 1..] {
            if (a.inside as u64) < b.end_inside() && (b.inside as u64) < a.end_inside() {
                bail!(hint(format!(
                    "{what} map ranges overlap inside the container: {}:{}:{} and {}:{}:{}",
                    a.inside, a.outside, a.len, b.inside, b.outside, b.len
                )));
            }
            if (a.outside as u64) < b.end_outside() && (b.outside as u64) < a.end_outside() {
                bail!(hint(format!(
                    "{what} map ranges overlap on the host: {}:{}:{} and {}:{}:{}",
                    a.inside, a.outside, a.len, b.inside, b.outside, b.len
                )));
            }
        }
    }
    Ok(())
}

/// The text written to /proc/PID/uid_map.
pub fn map_text(maps: &[IdMap]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.inside, m.outside, m.len))
        .collect()
}
// ANCHOR_END: validate

/// The first subordinate range of `user` (name or uid) in /etc/subuid-style `content` that holds at
/// least `want` ids.
pub fn subordinate_range(content: &str, user: &str, uid: u32, want: u32) -> Option<(u32, u32)> {
    content.lines().find_map(|l| {
        let f: Vec<&str> = l.trim().split(':').collect();
        if f.len() != 3 || (f[0] != user && f[0] != uid.to_string()) {
            return None;
        }
        let start = f[1].parse::<u32>().ok()?;
        let count = f[2].parse::<u32>().ok()?;
        (count >= want).then_some((start, count))
    })
}

/// How the maps get written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Writer {
    /// We are host root: write the files ourselves.
    Direct,
    /// Rootless with subordinate ranges: the setuid helpers newuidmap/newgidmap write them.
    Helpers,
    /// Rootless without helpers: only our own id, and setgroups must be denied first.
    OwnIdOnly,
}

/// The user-namespace plan, decided before clone.
#[derive(Debug, Clone)]
pub struct Plan {
    pub uid_maps: Vec<IdMap>,
    pub gid_maps: Vec<IdMap>,
    pub writer: Writer,
    /// Where the default came from, for --explain.
    pub origin: String,
}

impl Plan {
    /// Whether the container may call setgroups(2) (false after writing "deny").
    pub fn setgroups_allowed(&self) -> bool {
        self.writer != Writer::OwnIdOnly
    }
}

/// The name of `uid` in /etc/passwd-style `content`, or the uid itself. Read from the file rather than
/// through NSS (getpwuid): NSS costs a connect to nscd and a read of nsswitch.conf on every start, and
/// a statically linked minictr must not load NSS modules. /etc/subuid is matched by uid as well, so a
/// user known only to a directory service still finds a range listed under its uid.
fn user_name(content: &str, uid: u32) -> String {
    let uid_s = uid.to_string();
    content
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            (f.nth(1)? == uid_s).then(|| name.to_string())
        })
        .unwrap_or(uid_s)
}

fn helpers_installed() -> bool {
    ["newuidmap", "newgidmap"].iter().all(|h| {
        ["/usr/bin", "/bin", "/usr/sbin", "/usr/local/bin"]
            .iter()
            .any(|d| Path::new(d).join(h).exists())
    })
}

// ANCHOR: plan
/// Decide the maps: explicit `--uidmap/--gidmap`, else the invoking user's range from /etc/subuid and
/// /etc/subgid, else (as root) 100000–165535; rootless without a range maps only its own ids.
pub fn plan(uidmaps: &[IdMap], gidmaps: &[IdMap]) -> Result<Plan> {
    let euid = nix::unistd::geteuid().as_raw();
    let egid = nix::unistd::getegid().as_raw();
    let root = euid == 0;
    let name = user_name(
        &std::fs::read_to_string("/etc/passwd").unwrap_or_default(),
        euid,
    );
    let sub_uid = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
    let sub_gid = std::fs::read_to_string("/etc/subgid").unwrap_or_default();
    let ranges = (
        subordinate_range(&sub_uid, &name, euid, DEFAULT_LEN),
        subordinate_range(&sub_gid, &name, euid, DEFAULT_LEN),
    );
    if !uidmaps.is_empty() || !gidmaps.is_empty() {
        return explicit_plan(uidmaps, gidmaps, root);
    }
    if root {
        return Ok(root_plan(ranges, &name));
    }
    Ok(rootless_plan(ranges, &name, euid, egid))
}
// ANCHOR_END: plan

/// `--uidmap/--gidmap`: one list given stands for both.
fn explicit_plan(uidmaps: &[IdMap], gidmaps: &[IdMap], root: bool) -> Result<Plan> {
    let u = if uidmaps.is_empty() { gidmaps } else { uidmaps }.to_vec();
    let g = if gidmaps.is_empty() { uidmaps } else { gidmaps }.to_vec();
    validate(&u, "uid")?;
    validate(&g, "gid")?;
    let writer = if root {
        Writer::Direct
    } else {
        Writer::Helpers
    };
    if writer == Writer::Helpers && !helpers_installed() {
        bail!(crate::error::hint(
            "custom --uidmap/--gidmap as a normal user needs newuidmap and newgidmap",
            "install them (`apt-get install uidmap`) and give your user ranges in /etc/subuid and /etc/subgid"
        ));
    }
    Ok(Plan {
        uid_maps: u,
        gid_maps: g,
        writer,
        origin: "--uidmap/--gidmap".into(),
    })
}

type Ranges = (Option<(u32, u32)>, Option<(u32, u32)>);

/// As root: the user's subordinate ranges, else 100000–165535.
fn root_plan(ranges: Ranges, name: &str) -> Plan {
    // EXERCISE(ch03, "choose the id maps", hint = "container 0..65536 -> host uid/gid of the subordinate range (else 100000), never host 0")
    let (u, g, origin) = match ranges {
        (Some((us, _)), Some((gs, _))) => (us, gs, format!("the {name} ranges of /etc/subuid and /etc/subgid")),
        _ => (
            DEFAULT_HOST_START,
            DEFAULT_HOST_START,
            format!("the default {DEFAULT_HOST_START}:{DEFAULT_LEN} (no range for {name} in /etc/subuid and /etc/subgid)"),
        ),
    };
    Plan {
        uid_maps: vec![IdMap {
            inside: 0,
            outside: u,
            len: DEFAULT_LEN,
        }],
        gid_maps: vec![IdMap {
            inside: 0,
            outside: g,
            len: DEFAULT_LEN,
        }],
        writer: Writer::Direct,
        origin,
    }
    // EXERCISE_END
}

/// Rootless: our own id becomes root; with helpers, 1–65536 come from our subordinate range.
fn rootless_plan(ranges: Ranges, name: &str, euid: u32, egid: u32) -> Plan {
    let own_u = IdMap {
        inside: 0,
        outside: euid,
        len: 1,
    };
    let own_g = IdMap {
        inside: 0,
        outside: egid,
        len: 1,
    };
    if let (Some((us, uc)), Some((gs, gc)), true) = (ranges.0, ranges.1, helpers_installed()) {
        let ulen = uc.min(DEFAULT_LEN - 1);
        let glen = gc.min(DEFAULT_LEN - 1);
        return Plan {
            uid_maps: vec![own_u, IdMap { inside: 1, outside: us, len: ulen }],
            gid_maps: vec![own_g, IdMap { inside: 1, outside: gs, len: glen }],
            writer: Writer::Helpers,
            origin: format!("your own ids plus the {name} ranges of /etc/subuid and /etc/subgid, through newuidmap/newgidmap"),
        };
    }
    Plan {
        uid_maps: vec![own_u],
        gid_maps: vec![own_g],
        writer: Writer::OwnIdOnly,
        origin:
            "your own uid and gid only (install uidmap and add /etc/subuid ranges for 65536 ids)"
                .into(),
    }
}

// ANCHOR: write_maps
/// Parent, after clone and before "go": write the maps of the blocked child.
pub fn write_maps(pid: Pid, plan: &Plan) -> Result<()> {
    // EXERCISE(ch03, "write the uid and gid maps", hint = "write /proc/PID/uid_map, "deny" to setgroups when only your own id is mapped, then gid_map; or run newuidmap/newgidmap")
    crate::explain!(CHAPTER, "id maps from {}", plan.origin);
    let proc_dir = format!("/proc/{pid}");
    match plan.writer {
        Writer::Direct | Writer::OwnIdOnly => {
            let write = |file: &str, text: &str| -> Result<()> {
                crate::explain!(CHAPTER, "write({proc_dir}/{file}, {:?})", text.trim_end());
                std::fs::write(format!("{proc_dir}/{file}"), text).with_context(|| {
                    format!("failed to write {proc_dir}/{file} ({})", text.trim_end())
                })
            };
            write("uid_map", &map_text(&plan.uid_maps))?;
            // An unprivileged writer must deny setgroups(2) before it may write gid_map: otherwise the
            // container could drop a supplementary group that was keeping it *out* of a file.
            if plan.writer == Writer::OwnIdOnly {
                write("setgroups", "deny")?;
            }
            write("gid_map", &map_text(&plan.gid_maps))?;
        }
        Writer::Helpers => {
            for (tool, maps) in [("newuidmap", &plan.uid_maps), ("newgidmap", &plan.gid_maps)] {
                let mut args = vec![pid.to_string()];
                for m in maps {
                    args.extend([
                        m.inside.to_string(),
                        m.outside.to_string(),
                        m.len.to_string(),
                    ]);
                }
                crate::explain!(CHAPTER, "{tool} {}", args.join(" "));
                let out = std::process::Command::new(tool)
                    .args(&args)
                    .output()
                    .with_context(|| format!("failed to run {tool}"))?;
                if !out.status.success() {
                    bail!(crate::error::hint(
                        format!(
                            "{tool} {} failed: {}",
                            args.join(" "),
                            String::from_utf8_lossy(&out.stderr).trim()
                        ),
                        "check your ranges in /etc/subuid and /etc/subgid"
                    ));
                }
            }
        }
    }
    Ok(())
    // EXERCISE_END
}
// ANCHOR_END: write_maps

// ANCHOR: become_root
/// Child, after the maps exist: become uid/gid 0 inside the user namespace.
pub fn become_root(setgroups_allowed: bool) -> Result<()> {
    // EXERCISE(ch03, "become root inside", hint = "setresgid(0,0,0), setgroups([]) if allowed, setresuid(0,0,0) — in that order")
    crate::explain!(
        CHAPTER,
        "setresgid(0, 0, 0); {}setresuid(0, 0, 0) — root, inside only",
        if setgroups_allowed {
            "setgroups(0, []); "
        } else {
            ""
        }
    );
    let zero_g = nix::unistd::Gid::from_raw(0);
    let zero_u = nix::unistd::Uid::from_raw(0);
    nix::unistd::setresgid(zero_g, zero_g, zero_g)
        .context("failed to become gid 0 in the user namespace")?;
    if setgroups_allowed {
        nix::unistd::setgroups(&[]).context("failed to clear supplementary groups")?;
    }
    nix::unistd::setresuid(zero_u, zero_u, zero_u)
        .context("failed to become uid 0 in the user namespace")?;
    Ok(())
    // EXERCISE_END
}
// ANCHOR_END: become_root

// ANCHOR: idmapped_mount
/// Parent, after the maps are written: a detached copy of `path` whose file owners are shifted into
/// the child's user namespace (host 0 appears as 0 inside, and what container root writes is stored
/// as host 0). `readonly` for a layer that must never change (the overlay's lower layer).
pub fn idmapped_mount(pid: Pid, path: &Path, readonly: bool) -> Result<OwnedFd> {
    use crate::mountapi::{self, MOUNT_ATTR_IDMAP, MOUNT_ATTR_RDONLY};
    let userns = std::fs::File::open(format!("/proc/{pid}/ns/user"))
        .with_context(|| format!("failed to open the user namespace of {pid}"))?;
    crate::explain!(CHAPTER, "open_tree({path:?}, OPEN_TREE_CLONE|OPEN_TREE_CLOEXEC|AT_RECURSIVE) — a detached copy of the mount");
    let tree = mountapi::clone_tree(path)?;
    crate::explain!(
        CHAPTER,
        "mount_setattr(tree, \"\", AT_EMPTY_PATH|AT_RECURSIVE, {{attr_set=MOUNT_ATTR_IDMAP{}, userns_fd=/proc/{pid}/ns/user}})",
        if readonly { "|MOUNT_ATTR_RDONLY" } else { "" }
    );
    let attrs = MOUNT_ATTR_IDMAP | if readonly { MOUNT_ATTR_RDONLY } else { 0 };
    mountapi::set_attr(tree.as_fd(), attrs, true, Some(userns.as_fd())).with_context(|| {
        format!(
            "mount_setattr(MOUNT_ATTR_IDMAP) on {} failed",
            path.display()
        )
    })?;
    Ok(tree)
}
// ANCHOR_END: idmapped_mount

/// Why unprivileged user namespaces fail on this machine, if a known setting says so.
pub fn diagnose_disabled() -> Option<String> {
    diagnose_from(|p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    })
}

/// [`diagnose_disabled`] with the sysctl files read by `read` (a test can fake them).
fn diagnose_from(read: impl Fn(&str) -> Option<String>) -> Option<String> {
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Some("kernel.unprivileged_userns_clone is 0: enable with `sudo sysctl -w kernel.unprivileged_userns_clone=1`".into());
    }
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Some("user.max_user_namespaces is 0: enable with `sudo sysctl -w user.max_user_namespaces=15000`".into());
    }
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return Some("Ubuntu's kernel.apparmor_restrict_unprivileged_userns is 1: allow with `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` (or an AppArmor profile for minictr)".into());
    }
    None
}

/// Chapter 3's flags of `minictr run`.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "User namespace (chapter 3)")]
pub struct UsernsArgs {
    /// User namespace: "private" (default: container root is an unprivileged host user) or "host" (off)
    #[arg(long, value_name = "MODE", default_value = "private")]
    pub userns: String,
    /// Map container uids to host uids: CTR:HOST:LEN; repeatable (default: from /etc/subuid)
    #[arg(long, value_name = "CTR:HOST:LEN")]
    pub uidmap: Vec<String>,
    /// Map container gids to host gids: CTR:HOST:LEN; repeatable (default: from /etc/subgid)
    #[arg(long, value_name = "CTR:HOST:LEN")]
    pub gidmap: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_a_uid_from_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nal:x:1000:1000::/home/al:/bin/sh\nbad line\n";
        assert_eq!(user_name(passwd, 0), "root");
        assert_eq!(user_name(passwd, 1000), "al");
        assert_eq!(user_name(passwd, 1001), "1001");
        assert_eq!(user_name("", 5), "5");
    }

    #[test]
    fn parses_maps() {
        assert_eq!(
            IdMap::parse("0:100000:65536").unwrap(),
            IdMap {
                inside: 0,
                outside: 100000,
                len: 65536
            }
        );
        for bad in ["", "0:1", "0:1:2:3", "a:1:1", "-1:0:1", "0:0:4294967296"] {
            assert!(IdMap::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validates_maps() {
        let m = |i, o, l| IdMap {
            inside: i,
            outside: o,
            len: l,
        };
        assert!(validate(&[m(0, 100000, 65536)], "uid").is_ok());
        assert!(validate(&[m(0, 1000, 1), m(1, 100000, 65535)], "uid").is_ok());
        // identity of all ids
        assert!(validate(&[m(0, 0, 4294967295)], "uid").is_err());
        assert!(validate(&[m(0, 0, 4294967294)], "uid").is_err());
        // overlaps
        assert!(validate(&[m(0, 100000, 10), m(5, 200000, 10)], "uid").is_err());
        assert!(validate(&[m(0, 100000, 10), m(100, 100005, 10)], "uid").is_err());
        // out of range, zero length, empty
        assert!(validate(&[m(4294967290, 0, 10)], "uid").is_err());
        assert!(validate(&[m(0, 4294967290, 10)], "uid").is_err());
        assert!(validate(&[m(0, 1, 0)], "uid").is_err());
        assert!(validate(&[], "uid").is_err());
        // container root unmapped
        assert!(validate(&[m(1, 100000, 10)], "uid").is_err());
        assert_eq!(
            map_text(&[m(0, 100000, 65536), m(65536, 5, 1)]),
            "0 100000 65536\n65536 5 1\n"
        );
    }

    #[test]
    fn names_the_setting_that_disables_user_namespaces() {
        let with = |file: &'static str, value: &'static str| {
            move |p: &str| (p == file).then(|| value.to_string())
        };
        assert_eq!(diagnose_from(|_| None), None);
        assert_eq!(
            diagnose_from(with("/proc/sys/kernel/unprivileged_userns_clone", "1")),
            None
        );
        let m = diagnose_from(with("/proc/sys/kernel/unprivileged_userns_clone", "0")).unwrap();
        assert!(
            m.contains("sysctl -w kernel.unprivileged_userns_clone=1"),
            "{m}"
        );
        let m = diagnose_from(with("/proc/sys/user/max_user_namespaces", "0")).unwrap();
        assert!(m.contains("user.max_user_namespaces"), "{m}");
        let m = diagnose_from(with(
            "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            "1",
        ))
        .unwrap();
        assert!(m.contains("apparmor_restrict_unprivileged_userns=0"), "{m}");
    }

    #[test]
    fn finds_subordinate_ranges() {
        let sub = "alice:100000:65536\nbob:165536:1000\n1001:300000:65536\n";
        assert_eq!(
            subordinate_range(sub, "alice", 1000, 65536),
            Some((100000, 65536))
        );
        assert_eq!(subordinate_range(sub, "bob", 1002, 65536), None);
        assert_eq!(
            subordinate_range(sub, "carol", 1001, 65536),
            Some((300000, 65536))
        );
        assert_eq!(subordinate_range(sub, "dave", 7, 1), None);
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
        fn any_id_map_is_parsed_or_clearly_refused(s in input(&["0", "1", "100000", "65536", "4294967295", "4294967296", ":", "-", "+", " ", "x"])) {
            let r = IdMap::parse(&s);
            clear(&r)?;
            if let Ok(m) = r {
                clear(&validate(&[m], "uid"))?;
            }
        }

        #[test]
        fn every_triple_of_ids_round_trips(a: u32, b: u32, c: u32) {
            let m = IdMap::parse(&format!("{a}:{b}:{c}")).unwrap();
            prop_assert_eq!(m, IdMap { inside: a, outside: b, len: c });
        }
    }
}
