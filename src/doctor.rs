//! `minictr doctor`: the preflight a student or workshop instructor runs first. One line per
//! requirement of `minictr run` with its defaults — the kernel and the features it probes
//! (src/probe.rs), cgroups (chapter 4), user namespaces and id ranges (chapter 3), the network's
//! netlink sockets (chapter 6) and the filesystem of the data directory (chapter 5) — each OK, WARN
//! or FAIL with the fix. Exit 0 when `minictr run` with its defaults will work here, 1 otherwise.
//! It changes nothing on the host: features are tried in throwaway processes and namespaces, and
//! the only thing it creates (and removes) is an empty directory proving the data directory writable.

use crate::probe::{self, Feature, Probe};
use anyhow::Result;
use clap::Args;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// Options of `minictr doctor`.
#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// The rootfs you will run (its filesystem must allow idmapped mounts) [default: ./rootfs, else .]
    #[arg(value_name = "ROOTFS")]
    pub rootfs: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Ok,
    Warn,
    Fail,
}

/// One line of the report.
struct Line {
    level: Level,
    what: &'static str,
    detail: String,
    fix: Option<String>,
}

impl Line {
    fn ok(what: &'static str, detail: impl Into<String>) -> Line {
        Line {
            level: Level::Ok,
            what,
            detail: detail.into(),
            fix: None,
        }
    }
    fn bad(
        level: Level,
        what: &'static str,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Line {
        Line {
            level,
            what,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    /// An OK line's detail said more precisely than "yes".
    fn when_ok(mut self, detail: &str) -> Line {
        if self.level == Level::Ok {
            self.detail = detail.into();
        }
        self
    }
    fn render(&self) -> String {
        let tag = match self.level {
            Level::Ok => "OK  ",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        let mut s = format!("{tag} {}: {}", self.what, self.detail);
        if let Some(f) = &self.fix {
            s.push_str(&format!(" (fix: {f})"));
        }
        s.replace('\n', " ")
    }
}

/// A probe that says no, as a line: `level` with the feature's version and switch as the fix.
fn feature_line(
    what: &'static str,
    p: &Probe,
    f: Feature,
    level: Level,
    fix: Option<String>,
) -> Line {
    match p {
        Probe::Yes => Line::ok(what, "yes (tried in a throwaway namespace)"),
        Probe::No(why) => Line::bad(
            level,
            what,
            format!("no ({why}); Linux {} and newer have it", f.since()),
            fix.unwrap_or_else(|| f.avoid().to_string()),
        ),
        Probe::Unknown(why) => Line::bad(Level::Warn, what, format!("not tried: {why}"), f.avoid()),
    }
}

pub fn run(args: DoctorArgs) -> Result<i32> {
    let root = nix::unistd::geteuid().is_root();
    let rootfs = args.rootfs.clone().unwrap_or_else(|| {
        if Path::new("rootfs").is_dir() {
            PathBuf::from("rootfs")
        } else {
            PathBuf::from(".")
        }
    });
    let p = probe::fresh_with(Some(&rootfs));
    let mut lines = vec![Line::ok("kernel", format!("Linux {}", p.kernel))];
    if let Some(r) = &args.rootfs {
        if !r.is_dir() {
            lines.push(Line::bad(
                Level::Fail,
                "rootfs",
                format!("{} is not a directory", r.display()),
                "build one with rootfs-scripts/busybox.sh DIR",
            ));
        }
    }

    lines.extend(userns_lines(root, &p));
    lines.extend(overlay_lines(root, &p, &rootfs));
    lines.push(data_dir_line());
    lines.push(runtime_dir_line());
    lines.extend(cgroup_lines(root));
    lines.extend(network_lines(root));

    let worst = lines.iter().map(|l| l.level).max().unwrap_or(Level::Ok);
    let verdict = match worst {
        Level::Fail => "minictr run with its defaults will not work here: fix the FAIL lines above",
        Level::Warn => {
            "minictr run with its defaults works here; the WARN lines name what is missing"
        }
        Level::Ok => "minictr run with its defaults works here",
    };
    // Written, not println!: a closed pipe (`minictr doctor | head`) is no reason to panic.
    let mut out = std::io::stdout().lock();
    for l in &lines {
        let _ = writeln!(out, "{}", l.render());
    }
    let _ = writeln!(out, "{verdict}");
    Ok(if worst == Level::Fail { 1 } else { 0 })
}

/// ch03: the default --userns=private, and rootless minictr's user namespace.
fn userns_lines(root: bool, p: &probe::Probes) -> Vec<Line> {
    let mut lines = Vec::new();
    // ch03: the default --userns=private.
    let sysctl_fix = crate::userns::diagnose_disabled();
    if root {
        lines.push(feature_line(
            "user namespaces",
            &p.userns,
            Feature::UserNs,
            Level::Fail,
            sysctl_fix.clone(),
        ));
        lines.push(
            feature_line(
                "unprivileged user namespaces (rootless minictr)",
                &p.unprivileged_userns,
                Feature::UnprivilegedUserNs,
                Level::Warn,
                sysctl_fix,
            )
            .when_ok("yes (tried as uid 65534)"),
        );
    } else {
        lines.push(feature_line(
            "user namespaces (as your user)",
            &p.userns,
            Feature::UnprivilegedUserNs,
            Level::Fail,
            sysctl_fix,
        ));
    }

    lines.push(id_ranges(root));
    lines
}

/// ch03 + ch05: the image seen through idmapped mounts under the overlay (rootless: overlay in a
/// user namespace).
fn overlay_lines(root: bool, p: &probe::Probes, rootfs: &Path) -> Vec<Line> {
    let mut lines = Vec::new();
    // ch03 + ch05: the image seen through idmapped mounts under the overlay (root only).
    if root {
        let idm = probe::idmap_on_with(rootfs, p.clone(), false);
        let mut l = feature_line(
            "idmapped mounts",
            &idm,
            Feature::IdmappedMounts,
            Level::Fail,
            None,
        );
        l.detail = format!(
            "on {} ({}): {}",
            rootfs.display(),
            fs_name(rootfs),
            l.detail
        );
        lines.push(l);
        lines.push(feature_line(
            "overlayfs over idmapped lower layers",
            &p.overlay_idmapped_lower,
            Feature::OverlayIdmappedLower,
            Level::Fail,
            None,
        ));
        for (what, pr, f) in [
            (
                "overlayfs layers by file descriptor",
                &p.overlay_lower_fd,
                Feature::OverlayLowerFd,
            ),
            (
                "overlayfs layers by O_PATH descriptor",
                &p.overlay_lower_opath_fd,
                Feature::OverlayLowerOPathFd,
            ),
            (
                "throwaway writable layers in memory",
                &p.overlay_upper_in_memory,
                Feature::OverlayUpperInMemory,
            ),
        ] {
            // Both have a fallback that always works: a "no" is information, not a problem.
            let mut l = feature_line(what, pr, f, Level::Ok, None);
            if l.level == Level::Ok && l.fix.is_some() {
                l.detail = format!("{}; fallback: {}", l.detail, f.avoid());
                l.fix = None;
            }
            lines.push(l);
        }
    } else {
        lines.push(feature_line(
            "overlayfs in a user namespace (rootless)",
            &p.overlay_in_userns,
            Feature::OverlayInUserNs,
            Level::Fail,
            None,
        ));
    }
    lines
}

/// ch03: subordinate id ranges (rootless: /etc/subuid, /etc/subgid and newuidmap/newgidmap).
fn id_ranges(root: bool) -> Line {
    let what = "subordinate ids (/etc/subuid, /etc/subgid)";
    let euid = nix::unistd::geteuid().as_raw();
    let name = nix::unistd::User::from_uid(euid.into())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| euid.to_string());
    let read = |f: &str| std::fs::read_to_string(f).unwrap_or_default();
    let want = crate::userns::DEFAULT_LEN;
    let u = crate::userns::subordinate_range(&read("/etc/subuid"), &name, euid, want);
    let g = crate::userns::subordinate_range(&read("/etc/subgid"), &name, euid, want);
    let helpers = ["newuidmap", "newgidmap"].iter().all(|h| {
        ["/usr/bin", "/bin", "/usr/sbin", "/usr/local/bin"]
            .iter()
            .any(|d| Path::new(d).join(h).exists())
    });
    match (u, g) {
        (Some((us, _)), Some((gs, _))) if root || helpers => {
            Line::ok(what, format!("{name}: uids from {us}, gids from {gs} ({want} each)"))
        }
        _ if root => Line::ok(
            what,
            format!("no range for {name}: containers get the default {}:{want}", crate::userns::DEFAULT_HOST_START),
        ),
        (Some(_), Some(_)) => Line::bad(
            Level::Warn,
            what,
            format!("{name} has ranges but newuidmap/newgidmap are not installed: only your own id is mapped"),
            "apt-get install uidmap",
        ),
        _ => Line::bad(
            Level::Warn,
            what,
            format!("no range of {want} ids for {name}: only your own id is mapped (container root only)"),
            format!("sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {name}; install uidmap"),
        ),
    }
}

/// statfs(2)'s f_type of a path (its C type differs between architectures).
#[allow(clippy::unnecessary_cast)]
fn fs_magic(path: &Path) -> Option<i64> {
    nix::sys::statfs::statfs(path)
        .ok()
        .map(|st| st.filesystem_type().0 as i64)
}

/// The filesystem type of a path, by name where it is a common one.
fn fs_name(path: &Path) -> String {
    let Some(magic) = fs_magic(path) else {
        return "unknown filesystem".into();
    };
    if let Some(n) = crate::overlay::unsuitable_upper_fs(magic) {
        return n.to_string();
    }
    match magic {
        0xef53 => "ext4".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683e => "btrfs".into(),
        0x0102_1994 => "tmpfs".into(),
        0x2fc1_2fc1 => "zfs".into(),
        0xf2f5_2010 => "f2fs".into(),
        m => format!("filesystem 0x{m:x}"),
    }
}

/// ch05: the writable layers' directory must be writable and on a filesystem overlayfs accepts as
/// an upper layer (not overlay, NFS, FUSE, …; tmpfs is fine).
fn data_dir_line() -> Line {
    let what = "data directory";
    let dir = crate::overlay::data_dir();
    let fix = "set MINICTR_DATA_DIR to a writable directory on ext4, xfs, btrfs or tmpfs, or run with --no-overlay";
    // The nearest directory that exists: the data directory itself is created by the first run.
    let existing = nearest_existing(&dir);
    let fs = fs_name(existing);
    if let Some(magic) = fs_magic(existing) {
        if crate::overlay::unsuitable_upper_fs(magic).is_some() {
            return Line::bad(
                Level::Fail,
                what,
                format!(
                    "{} is on {fs}, which overlayfs cannot use for a writable layer",
                    dir.display()
                ),
                fix,
            );
        }
    }
    let probe_dir = existing.join(format!(".minictr-doctor-{}", std::process::id()));
    match std::fs::create_dir(&probe_dir) {
        Ok(()) => {
            let _ = std::fs::remove_dir(&probe_dir);
            Line::ok(what, format!("{} ({fs}, writable)", dir.display()))
        }
        Err(e) => Line::bad(
            Level::Fail,
            what,
            format!(
                "cannot create {} in {}: {e}",
                dir.display(),
                existing.display()
            ),
            fix,
        ),
    }
}

/// The nearest directory on the way to `path` that exists (minictr creates the rest on first use).
fn nearest_existing(path: &Path) -> &Path {
    let mut p = path;
    while !p.is_dir() {
        match p.parent() {
            Some(parent) => p = parent,
            None => break,
        }
    }
    p
}

/// ch08: the runtime directory (/run/minictr, rootless $XDG_RUNTIME_DIR/minictr): ours, or creatable.
fn runtime_dir_line() -> Line {
    use std::os::unix::fs::MetadataExt;
    let what = "runtime directory";
    let base = crate::state::base_dir();
    let euid = nix::unistd::geteuid().as_raw();
    let fix = "set XDG_RUNTIME_DIR (or MINICTR_RUN_DIR) to a private directory of yours";
    if let Ok(m) = std::fs::symlink_metadata(&base) {
        return if m.is_dir() && m.uid() == euid && m.mode() & 0o022 == 0 {
            Line::ok(what, format!("{} (yours)", base.display()))
        } else {
            Line::bad(
                Level::Fail,
                what,
                format!(
                    "{} is not a directory owned by uid {euid} and writable only by it",
                    base.display()
                ),
                fix,
            )
        };
    }
    let existing = nearest_existing(&base);
    match nix::unistd::access(
        existing,
        nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
    ) {
        Ok(()) => Line::ok(
            what,
            format!("{} (created by the first run)", base.display()),
        ),
        Err(e) => Line::bad(
            Level::Fail,
            what,
            format!(
                "cannot create {} in {}: {e}",
                base.display(),
                existing.display()
            ),
            fix,
        ),
    }
}

/// ch04: the cgroup version, the controllers minictr's limits use, and (rootless) delegation. Every
/// problem here is a WARN: without limit flags `minictr run` skips the cgroup stage and says so.
fn cgroup_lines(root: bool) -> Vec<Line> {
    use crate::cgroups::{Layout, Version};
    let what = "cgroups";
    let layout = match Layout::detect() {
        Ok(l) => l,
        Err(e) => {
            return vec![Line::bad(
                Level::Warn,
                what,
                crate::error::one_line(&e),
                "mount /proc",
            )]
        }
    };
    let wanted = ["memory", "pids", "cpu", "cpuset"];
    let (have, rootless_line): (Vec<String>, Option<Line>) = match layout.version {
        Version::V1 | Version::Hybrid => {
            let have = layout
                .v1
                .iter()
                .flat_map(|h| h.controllers.clone())
                .collect();
            let l = (!root).then(|| {
                Line::bad(
                    Level::Warn,
                    "cgroups (rootless)",
                    "cgroup v1 cannot be delegated to a normal user: containers run without limits",
                    "run as root, or boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1)",
                )
            });
            (have, l)
        }
        Version::V2 => match &layout.v2 {
            None => {
                return vec![Line::bad(
                    Level::Warn,
                    what,
                    "no cgroup filesystem is mounted: containers run without limits",
                    "mount -t cgroup2 none /sys/fs/cgroup",
                )]
            }
            Some(u) => {
                let have = std::fs::read_to_string(u.own.join("cgroup.controllers"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
                let l = (!root).then(|| {
                    feature_line(
                        "cgroup v2 delegation (rootless)",
                        &probe::cgroup_delegation(&u.own),
                        Feature::CgroupDelegation,
                        Level::Warn,
                        None,
                    )
                });
                (have, l)
            }
        },
    };
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|w| !have.iter().any(|h| h == w))
        .collect();
    let detail = format!("{}; controllers: {}", layout.version, have.join(", "));
    let mut out = vec![if missing.is_empty() {
        Line::ok(what, detail)
    } else {
        Line::bad(
            Level::Warn,
            what,
            format!("{detail}; missing {}: their limit flags cannot be used", missing.join(", ")),
            "enable the controllers (v2: echo +memory > cgroup.subtree_control of the parent cgroup)",
        )
    }];
    out.extend(rootless_line);
    out
}

/// ch06: the bridge network (the default as root) needs rtnetlink, bridges and veth pairs — tried
/// in a throwaway network namespace — and forwarding (which minictr switches on when it creates the
/// bridge). nf_tables netlink is for NAT and published ports: without it a container still starts.
fn network_lines(root: bool) -> Vec<Line> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockProtocol, SockType};
    let opens = |proto| {
        socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            proto,
        )
        .map(drop)
    };
    let mut out = Vec::new();
    let what = "netlink NETLINK_ROUTE (links, addresses, routes)";
    out.push(match opens(SockProtocol::NetlinkRoute) {
        Ok(()) => Line::ok(what, "a socket opens"),
        Err(e) => Line::bad(
            if root { Level::Fail } else { Level::Warn },
            what,
            format!("socket() failed: {e}"),
            "run with --network none",
        ),
    });
    let what = "netlink NETLINK_NETFILTER (nftables)";
    out.push(match opens(SockProtocol::NetlinkNetFilter) {
        Ok(()) => Line::ok(what, "a socket opens"),
        Err(e) => Line::bad(
            Level::Warn,
            what,
            format!("socket() failed: {e}: containers start, but reach nothing beyond the host"),
            "load nf_tables (modprobe nf_tables)",
        ),
    });
    if root {
        out.push(
            feature_line(
                "bridge and veth",
                &bridge_and_veth(),
                Feature::BridgeVeth,
                Level::Fail,
                None,
            )
            .when_ok("yes (created in a throwaway network namespace)"),
        );
    }
    let fwd = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default();
    out.push(match fwd.trim() {
        "1" => Line::ok("ip_forward", "1"),
        v if root => Line::ok(
            "ip_forward",
            format!("{v} (minictr sets net.ipv4.ip_forward=1 when it creates the bridge)"),
        ),
        v => Line::ok(
            "ip_forward",
            format!("{v} (rootless containers default to --network none)"),
        ),
    });
    out
}

/// A bridge and a veth pair on it, made in the network namespace of a child that then exits (which
/// destroys them): what the bridge network needs from the kernel (the bridge and veth modules).
fn bridge_and_veth() -> Probe {
    use crate::network::netlink::Socket;
    probe::in_child(|| {
        let err = |e: anyhow::Error| probe::errno_of(&e);
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| e as i32)?;
        let netns = std::fs::File::open("/proc/self/ns/net")
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
        let mut s = Socket::open(nix::sys::socket::SockProtocol::NetlinkRoute).map_err(err)?;
        s.add_bridge("probe-br", 1500).map_err(err)?;
        let bridge = s.get_link("probe-br").map_err(err)?.ok_or(libc::ENODEV)?;
        s.add_veth(
            "probe-h",
            bridge.index,
            1500,
            "probe-c",
            netns.as_fd(),
            "this one",
        )
        .map(drop)
        .map_err(err)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_one_line_with_its_fix_last() {
        assert_eq!(
            Line::ok("kernel", "Linux 6.1").render(),
            "OK   kernel: Linux 6.1"
        );
        let l = Line::bad(Level::Warn, "cgroups", "v1\nhybrid", "boot with v2");
        assert_eq!(l.render(), "WARN cgroups: v1 hybrid (fix: boot with v2)");
        assert!(Level::Fail > Level::Warn && Level::Warn > Level::Ok);
    }

    #[test]
    fn a_probe_becomes_a_line_of_the_level_asked_for() {
        let no = Probe::No("ENOSPC".into());
        let l = feature_line("user namespaces", &no, Feature::UserNs, Level::Fail, None);
        assert_eq!(l.level, Level::Fail);
        let r = l.render();
        assert!(
            r.contains("no (ENOSPC); Linux 3.8") && r.contains("--userns=host"),
            "{r}"
        );
        let fix = Some("sudo sysctl -w user.max_user_namespaces=15000".to_string());
        let l = feature_line("user namespaces", &no, Feature::UserNs, Level::Fail, fix);
        assert!(l
            .render()
            .ends_with("(fix: sudo sysctl -w user.max_user_namespaces=15000)"));
        // Not tried is never a FAIL: it cannot tell that `minictr run` would fail.
        let unknown = Probe::Unknown("probed as root only".into());
        let l = feature_line("x", &unknown, Feature::IdmappedMounts, Level::Fail, None);
        assert_eq!(l.level, Level::Warn);
        let l = feature_line("x", &Probe::Yes, Feature::IdmappedMounts, Level::Fail, None)
            .when_ok("yes, on ext4");
        assert_eq!(l.render(), "OK   x: yes, on ext4");
    }
}
