//! Chapter 1 — Namespaces: one `clone` gives the container's first process its own view of process
//! ids, mounts, hostname, IPC objects, network devices and cgroups.
//!
//! This module owns the clone itself (with the namespace flags), the hostname, and bringing `lo` up.
//! Each namespace can be switched off (`--no-pid`, `--no-net`, …) to see what it adds.

use crate::clone3::{self, Forked, CLONE_INTO_CGROUP};
use anyhow::{bail, Context, Result};
use nix::sched::CloneFlags;
use nix::unistd::Pid;
use std::os::fd::RawFd;

pub const CHAPTER: &str = "ch01 namespaces";

// ANCHOR: kind
/// One row per namespace: everything minictr knows about it, in one place.
pub struct Kind {
    /// Its file under /proc/PID/ns/ (and its name in state.json).
    pub name: &'static str,
    /// The flag that creates it (clone3, unshare) or names it (setns).
    pub flag: CloneFlags,
    pub flag_name: &'static str,
    /// The switch that leaves the container in the host's namespace (`None`: always new).
    pub switch: Option<&'static str>,
    /// What the container sees of its own.
    pub isolates: &'static str,
    /// Whether a container has it.
    on: fn(&Namespaces) -> bool,
}
// ANCHOR_END: kind

// ANCHOR: table

/// The namespaces minictr creates, in the order clone3's flags are shown.
pub const TABLE: [Kind; 7] = [
    Kind {
        name: "user",
        flag: CloneFlags::CLONE_NEWUSER,
        flag_name: "CLONE_NEWUSER",
        switch: None,
        isolates: "user and group ids, capabilities (chapter 3)",
        on: |n| n.user,
    },
    Kind {
        name: "mnt",
        flag: CloneFlags::CLONE_NEWNS,
        flag_name: "CLONE_NEWNS",
        switch: None,
        isolates: "the mount table (chapter 2)",
        on: |_| true,
    },
    Kind {
        name: "pid",
        flag: CloneFlags::CLONE_NEWPID,
        flag_name: "CLONE_NEWPID",
        switch: Some("--no-pid"),
        isolates: "process ids: the command is pid 1",
        on: |n| n.pid,
    },
    Kind {
        name: "uts",
        flag: CloneFlags::CLONE_NEWUTS,
        flag_name: "CLONE_NEWUTS",
        switch: Some("--no-uts"),
        isolates: "the hostname",
        on: |n| n.uts,
    },
    Kind {
        name: "ipc",
        flag: CloneFlags::CLONE_NEWIPC,
        flag_name: "CLONE_NEWIPC",
        switch: Some("--no-ipc"),
        isolates: "System V IPC objects and POSIX message queues",
        on: |n| n.ipc,
    },
    Kind {
        name: "net",
        flag: CloneFlags::CLONE_NEWNET,
        flag_name: "CLONE_NEWNET",
        switch: Some("--no-net"),
        isolates: "network devices, addresses, routes, ports (chapter 6)",
        on: |n| n.net,
    },
    Kind {
        name: "cgroup",
        flag: CloneFlags::CLONE_NEWCGROUP,
        flag_name: "CLONE_NEWCGROUP",
        switch: Some("--no-cgroupns"),
        isolates: "the cgroup tree: its own cgroup is / (chapter 4)",
        on: |n| n.cgroup,
    },
];
// ANCHOR_END: table

impl Kind {
    fn bits(&self) -> u64 {
        self.flag.bits() as u64
    }
}

// ANCHOR: namespaces
/// Which namespaces the container gets. The mount namespace is always new: the root filesystem
/// (chapter 2) is built in it. The user namespace belongs to chapter 3 and is set by the orchestrator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Namespaces {
    pub user: bool,
    pub pid: bool,
    pub net: bool,
    pub uts: bool,
    pub ipc: bool,
    pub cgroup: bool,
}

impl Namespaces {
    /// The rows of [`TABLE`] this container has of its own.
    pub fn kinds(&self) -> impl Iterator<Item = &'static Kind> + '_ {
        TABLE.iter().filter(|k| (k.on)(self))
    }

    /// The `CLONE_NEW*` flags for these namespaces (mount always included).
    pub fn clone_flags(&self) -> u64 {
        self.kinds().fold(0, |f, k| f | k.bits())
    }

    /// The names under /proc/PID/ns/ of the namespaces the container has of its own.
    pub fn proc_names(&self) -> Vec<String> {
        self.kinds().map(|k| k.name.to_string()).collect()
    }
}
// ANCHOR_END: namespaces

/// `CLONE_NEWNS|CLONE_NEWPID|…` — the flags as a student would write them.
pub fn describe_flags(flags: u64) -> String {
    let mut parts: Vec<&str> = TABLE
        .iter()
        .filter(|k| flags & k.bits() != 0)
        .map(|k| k.flag_name)
        .collect();
    if flags & CLONE_INTO_CGROUP != 0 {
        parts.push("CLONE_INTO_CGROUP");
    }
    parts.join("|")
}

// ANCHOR: clone
/// Start the container's first process in new namespaces. Like `fork`, it returns twice: in the
/// parent with the child's pid, and in the child, which runs `child` and never returns from it.
///
/// `cgroup_fd` (cgroup v2 only) makes the child start inside its cgroup atomically.
pub fn clone_child(
    flags: u64,
    cgroup_fd: Option<RawFd>,
    child: impl FnOnce() -> i32,
) -> Result<Pid> {
    // EXERCISE(ch01, "clone3 the child into its namespaces", hint = "clone3(flags, cgroup_fd): 0 = parent, the child runs child() and leaves with exit_child; EPERM/EINVAL -> clone_error")
    let shown = flags | cgroup_fd.map_or(0, |_| CLONE_INTO_CGROUP);
    crate::explain!(
        CHAPTER,
        "clone3(flags={}, exit_signal=SIGCHLD) — the child starts in its new namespaces",
        describe_flags(shown)
    );
    // SAFETY: minictr is single-threaded on the start path, and the child only runs `child` and
    // then leaves with exit_child: it never returns into the parent's stack frames.
    match unsafe { clone3::clone3(flags, cgroup_fd) } {
        Err(errno) => Err(clone_error(errno, flags)),
        Ok(Forked::Child) => clone3::exit_child(child()),
        Ok(Forked::Parent(pid)) => Ok(pid),
    }
    // EXERCISE_END
}
// ANCHOR_END: clone

fn clone_error(errno: nix::errno::Errno, flags: u64) -> anyhow::Error {
    use nix::errno::Errno;
    let what = format!("clone3({}) failed: {errno}", describe_flags(flags));
    match errno {
        Errno::EPERM if flags & CloneFlags::CLONE_NEWUSER.bits() as u64 != 0 => crate::error::hint(
            what,
            "unprivileged user namespaces look disabled: check `sysctl user.max_user_namespaces` \
             (must be > 0), `kernel.unprivileged_userns_clone` (Debian, must be 1) and \
             `kernel.apparmor_restrict_unprivileged_userns` (Ubuntu, must be 0)",
        ),
        Errno::EPERM => crate::error::hint(what, "creating namespaces needs root (or a user namespace)"),
        Errno::ENOSPC => crate::error::hint(
            what,
            "a namespace limit was reached: raise `sysctl user.max_user_namespaces` (or the other user.max_*_namespaces)",
        ),
        Errno::EINVAL => {
            let off: Vec<String> = TABLE
                .iter()
                .filter(|k| flags & k.bits() != 0)
                .filter_map(|k| k.switch.map(|s| format!("{s} ({})", k.isolates)))
                .collect();
            crate::error::hint(
                what,
                format!(
                    "the kernel lacks one of these namespaces: try without it: {}",
                    off.join(", ")
                ),
            )
        }
        _ => anyhow::anyhow!(what),
    }
}

/// What [`join`] entered.
pub struct Joined {
    pub user: bool,
}

// ANCHOR: join
/// `minictr exec`: enter the namespaces of a running container's first process. The user namespace
/// first (it owns the others, so joining it grants the rights to join them), the mount namespace last
/// (it changes our root, and /proc/PID/ns/* must be opened before).
pub fn join(pid: Pid, names: &[String]) -> Result<Joined> {
    // User first, mount last, the others in table order.
    let mut order: Vec<&Kind> = TABLE
        .iter()
        .filter(|k| names.iter().any(|n| n == k.name))
        .collect();
    order.sort_by_key(|k| match k.name {
        "user" => 0,
        "mnt" => 2,
        _ => 1,
    });
    let mut files = Vec::new();
    for k in order {
        let path = format!("/proc/{pid}/ns/{}", k.name);
        let f = std::fs::File::open(&path).with_context(|| format!("failed to open {path}"))?;
        files.push((k, f, path));
    }
    let mut joined = Joined { user: false };
    for (k, f, path) in files {
        crate::explain!(CHAPTER, "setns({path}, {})", k.flag_name);
        nix::sched::setns(&f, k.flag)
            .with_context(|| format!("failed to enter the {} namespace of {pid}", k.name))?;
        joined.user |= k.flag == CloneFlags::CLONE_NEWUSER;
    }
    Ok(joined)
}
// ANCHOR_END: join

/// `sethostname` in the new UTS namespace.
pub fn set_hostname(name: &str) -> Result<()> {
    crate::explain!(CHAPTER, "sethostname({name:?}) in the new UTS namespace");
    nix::unistd::sethostname(name)
        .with_context(|| format!("failed to set the hostname to {name:?}"))
}

/// Check a hostname as the kernel and RFC 1123 would: 1–63 characters of letters, digits, '-' and
/// '.', not starting or ending with '-' or '.'.
pub fn validate_hostname(name: &str) -> Result<()> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if name.is_empty()
        || name.len() > 63
        || !ok_chars
        || name.starts_with(['-', '.'])
        || name.ends_with(['-', '.'])
        || name.contains("..")
    {
        bail!(crate::error::hint(
            format!("invalid hostname {name:?}"),
            "use 1 to 63 letters, digits, '-' and '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

// ANCHOR: loopback
/// Bring `lo` up in the new network namespace (it starts down): `ip link set lo up`.
pub fn loopback_up() -> Result<()> {
    crate::explain!(
        CHAPTER,
        "ioctl(SIOCSIFFLAGS, lo, IFF_UP) — ip link set lo up"
    );
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    use std::os::fd::AsRawFd;
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("failed to open a socket to configure lo")?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we pass, which outlives the call.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) < 0 {
            return Err(std::io::Error::last_os_error()).context("failed to read the flags of lo");
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) < 0 {
            return Err(std::io::Error::last_os_error()).context("failed to bring lo up");
        }
    }
    Ok(())
}
// ANCHOR_END: loopback

/// Chapter 1's flags of `minictr run`: the stage switches, and the UTS namespace's hostname.
#[derive(clap::Args, Debug, Default, Clone)]
#[command(next_help_heading = "Namespaces (chapter 1)")]
pub struct NamespacesArgs {
    /// The container's hostname [default: the container id]
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Stage switch (ch01): keep the host's PID namespace
    #[arg(long)]
    pub no_pid: bool,
    /// Stage switch (ch01): keep the host's network namespace (same as --network host)
    #[arg(long)]
    pub no_net: bool,
    /// Stage switch (ch01): keep the host's UTS namespace (hostname)
    #[arg(long)]
    pub no_uts: bool,
    /// Stage switch (ch01): keep the host's IPC namespace
    #[arg(long)]
    pub no_ipc: bool,
    /// Stage switch (ch01): keep the host's cgroup namespace
    #[arg(long)]
    pub no_cgroupns: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_always_include_the_mount_namespace() {
        let none = Namespaces {
            user: false,
            pid: false,
            net: false,
            uts: false,
            ipc: false,
            cgroup: false,
        };
        assert_eq!(none.clone_flags(), CloneFlags::CLONE_NEWNS.bits() as u64);
        let all = Namespaces {
            user: true,
            pid: true,
            net: true,
            uts: true,
            ipc: true,
            cgroup: true,
        };
        assert_eq!(
            describe_flags(all.clone_flags()),
            "CLONE_NEWUSER|CLONE_NEWNS|CLONE_NEWPID|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWNET|CLONE_NEWCGROUP"
        );
    }

    #[test]
    fn one_row_per_namespace() {
        let mut all = 0;
        for k in &TABLE {
            assert_eq!(all & k.bits(), 0, "{} shares a flag", k.name);
            all |= k.bits();
            assert_eq!(k.flag_name, describe_flags(k.bits()));
            assert!(
                std::path::Path::new("/proc/self/ns").join(k.name).exists(),
                "{}",
                k.name
            );
        }
        let some = Namespaces {
            user: false,
            pid: true,
            net: false,
            uts: true,
            ipc: false,
            cgroup: false,
        };
        assert_eq!(some.proc_names(), ["mnt", "pid", "uts"]);
    }

    #[test]
    fn hostnames() {
        for ok in ["a", "box1", "web-1.local", &"x".repeat(63)] {
            assert!(validate_hostname(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "a b", "a_b", "a..b", &"x".repeat(64), "ä"] {
            assert!(validate_hostname(bad).is_err(), "{bad}");
        }
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
        fn any_hostname_is_accepted_or_clearly_refused(
            s in input(&["box", "a", "-", ".", "_", "1", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "é"])
        ) {
            clear(&validate_hostname(&s))?;
        }
    }
}
