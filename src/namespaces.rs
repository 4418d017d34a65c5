//! Chapter 1 — Namespaces: one `clone` gives the container's first process its own view of process
//! ids, mounts, hostname, IPC objects, network devices and cgroups.
//!
//! This module owns the clone itself (with the namespace flags), the hostname, and bringing `lo` up.
//! Each namespace can be switched off (`--no-pid`, `--no-net`, …) to see what it adds.

use anyhow::{bail, Context, Result};
use nix::unistd::Pid;
use std::os::fd::RawFd;

pub const CHAPTER: &str = "ch01 namespaces";

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
    /// The `CLONE_NEW*` flags for these namespaces (mount always included).
    pub fn clone_flags(&self) -> u64 {
        let mut f = libc::CLONE_NEWNS as u64;
        let pairs = [
            (self.user, libc::CLONE_NEWUSER),
            (self.pid, libc::CLONE_NEWPID),
            (self.uts, libc::CLONE_NEWUTS),
            (self.ipc, libc::CLONE_NEWIPC),
            (self.net, libc::CLONE_NEWNET),
            (self.cgroup, libc::CLONE_NEWCGROUP),
        ];
        for (on, flag) in pairs {
            if on {
                f |= flag as u64;
            }
        }
        f
    }

    /// The names under /proc/PID/ns/ of the namespaces the container has of its own.
    pub fn proc_names(&self) -> Vec<String> {
        let mut v = vec!["mnt"];
        for (on, name) in [
            (self.user, "user"),
            (self.pid, "pid"),
            (self.uts, "uts"),
            (self.ipc, "ipc"),
            (self.net, "net"),
            (self.cgroup, "cgroup"),
        ] {
            if on {
                v.push(name);
            }
        }
        v.into_iter().map(String::from).collect()
    }
}
// ANCHOR_END: namespaces

/// `CLONE_NEWNS|CLONE_NEWPID|…` — the flags as a student would write them.
pub fn describe_flags(flags: u64) -> String {
    const NAMES: [(i32, &str); 7] = [
        (libc::CLONE_NEWUSER, "CLONE_NEWUSER"),
        (libc::CLONE_NEWNS, "CLONE_NEWNS"),
        (libc::CLONE_NEWPID, "CLONE_NEWPID"),
        (libc::CLONE_NEWUTS, "CLONE_NEWUTS"),
        (libc::CLONE_NEWIPC, "CLONE_NEWIPC"),
        (libc::CLONE_NEWNET, "CLONE_NEWNET"),
        (libc::CLONE_NEWCGROUP, "CLONE_NEWCGROUP"),
    ];
    let mut parts: Vec<&str> = NAMES
        .iter()
        .filter(|(f, _)| flags & (*f as u64) != 0)
        .map(|(_, n)| *n)
        .collect();
    if flags & CLONE_INTO_CGROUP != 0 {
        parts.push("CLONE_INTO_CGROUP");
    }
    parts.join("|")
}

/// clone3's CLONE_INTO_CGROUP (Linux 5.7): start the child directly in a cgroup v2 directory.
pub const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` of clone3(2), version 2 (with the cgroup field).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
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
    let mut args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if let Some(fd) = cgroup_fd {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    crate::explain!(
        CHAPTER,
        "clone3(flags={}, exit_signal=SIGCHLD) — the child starts in its new namespaces",
        describe_flags(args.flags)
    );
    // SAFETY: clone3 without CLONE_VM and without a stack behaves like fork(): the child gets a copy
    // of this (single-threaded) address space. The child only runs `child` and then `_exit`s, so it
    // never returns into the parent's stack frames.
    let mut ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret == -1 && nix::errno::Errno::last() == nix::errno::Errno::ENOSYS && cgroup_fd.is_none() {
        // Kernels before 5.3 (or a seccomp filter that hides clone3): classic clone, same semantics.
        // SAFETY: as above; a NULL stack means "share the parent's stack pointer", i.e. fork semantics.
        ret = unsafe {
            libc::syscall(
                libc::SYS_clone,
                flags | libc::SIGCHLD as u64,
                0usize,
                0usize,
                0usize,
                0usize,
            )
        };
    }
    match ret {
        -1 => Err(clone_error(nix::errno::Errno::last(), flags)),
        0 => {
            let code = child();
            // SAFETY: _exit ends the child without running the parent's atexit handlers or
            // destructors that belong to the parent's copy of the state.
            unsafe { libc::_exit(code) }
        }
        pid => Ok(Pid::from_raw(pid as i32)),
    }
}
// ANCHOR_END: clone

fn clone_error(errno: nix::errno::Errno, flags: u64) -> anyhow::Error {
    use nix::errno::Errno;
    let what = format!("clone3({}) failed: {errno}", describe_flags(flags));
    match errno {
        Errno::EPERM if flags & libc::CLONE_NEWUSER as u64 != 0 => crate::error::hint(
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
        Errno::EINVAL => crate::error::hint(what, "the kernel lacks one of these namespaces"),
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
    const ORDER: [(&str, libc::c_int); 7] = [
        ("user", libc::CLONE_NEWUSER),
        ("ipc", libc::CLONE_NEWIPC),
        ("uts", libc::CLONE_NEWUTS),
        ("net", libc::CLONE_NEWNET),
        ("pid", libc::CLONE_NEWPID),
        ("cgroup", libc::CLONE_NEWCGROUP),
        ("mnt", libc::CLONE_NEWNS),
    ];
    let mut files = Vec::new();
    for (name, flag) in ORDER {
        if names.iter().any(|n| n == name) {
            let path = format!("/proc/{pid}/ns/{name}");
            let f = std::fs::File::open(&path).with_context(|| format!("failed to open {path}"))?;
            files.push((name, flag, f, path));
        }
    }
    let mut joined = Joined { user: false };
    for (name, flag, f, path) in files {
        crate::explain!(CHAPTER, "setns({path}, CLONE_NEW{})", name.to_uppercase());
        nix::sched::setns(&f, nix::sched::CloneFlags::from_bits_truncate(flag))
            .with_context(|| format!("failed to enter the {name} namespace of {pid}"))?;
        if name == "user" {
            joined.user = true;
        }
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
    // SAFETY: plain socket(2); the fd is wrapped in OwnedFd right away.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error())
            .context("failed to open a socket to configure lo");
    }
    // SAFETY: raw is a fresh, valid descriptor owned by nobody else.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    use std::os::fd::AsRawFd;
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
        assert_eq!(none.clone_flags(), libc::CLONE_NEWNS as u64);
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
