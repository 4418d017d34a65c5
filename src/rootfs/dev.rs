//! /dev: a fresh tmpfs holding only the default devices of the OCI runtime spec, bind-mounted from
//! the host (mknod is refused in a user namespace; a bind works everywhere), plus its own devpts,
//! /dev/shm and /dev/mqueue.

use super::safepath::Root;
use super::{mount_in, mount_on, CHAPTER};
use anyhow::{Context, Result};
use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sys::stat::Mode;
use std::os::fd::AsFd;
use std::path::Path;

// ANCHOR: devices
/// The default devices (runtime-spec "Default Devices"); nothing else from the host's /dev.
pub const DEFAULT_DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// The links every program expects.
const LINKS: [(&str, &str); 5] = [
    ("/dev/ptmx", "pts/ptmx"),
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
];
// ANCHOR_END: devices

const NOSUID_NOEXEC: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC);

/// A fresh tmpfs on /dev holding the default devices, each bound from the host.
pub fn mount_dev(root: &Root) -> Result<()> {
    // nodev on the tmpfs itself: a device node someone creates later with mknod cannot be opened.
    // The bind-mounted devices below are mounts of their own and keep the host's flags.
    let flags = NOSUID_NOEXEC | MsFlags::MS_NODEV | MsFlags::MS_STRICTATIME;
    let data = Some("mode=755,size=65536k");
    mount_in(root, Path::new("/dev"), "tmpfs", Some("tmpfs"), flags, data)?;
    // The tmpfs is new and empty: open it once and create each mount point in it directly (three
    // system calls a device instead of resolving /dev/NAME inside the root again and again).
    let dev = root
        .resolve(Path::new("/dev"), OFlag::O_DIRECTORY)
        .context("failed to open /dev inside the rootfs")?;
    for name in DEFAULT_DEVICES {
        let inner = Path::new("/dev").join(name);
        let target = nix::fcntl::openat(
            dev.as_fd(),
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .with_context(|| format!("failed to create {} inside the rootfs", inner.display()))?;
        let host = format!("/dev/{name}");
        mount_on(&host, target.as_fd(), &inner, None, MsFlags::MS_BIND, None)?;
    }
    Ok(())
}

/// The container's own devpts: its terminals, not the host's.
pub fn mount_devpts(root: &Root) -> Result<()> {
    let at = Path::new("/dev/pts");
    let opts = "newinstance,ptmxmode=0666,mode=0620";
    let with_tty_group = format!("{opts},gid=5");
    let devpts = |data: &str| {
        mount_in(
            root,
            at,
            "devpts",
            Some("devpts"),
            NOSUID_NOEXEC,
            Some(data),
        )
    };
    if devpts(&with_tty_group).is_err() {
        // gid 5 (tty) is not mapped when a rootless user maps only its own id: retry without it.
        devpts(opts)?;
    }
    Ok(())
}

/// /dev/shm: POSIX shared memory, a tmpfs of the container's own.
pub fn mount_shm(root: &Root) -> Result<()> {
    let flags = NOSUID_NOEXEC | MsFlags::MS_NODEV;
    let data = Some("mode=1777,size=65536k");
    mount_in(
        root,
        Path::new("/dev/shm"),
        "shm",
        Some("tmpfs"),
        flags,
        data,
    )
}

/// /dev/mqueue: the IPC namespace's message queues. `required` with an IPC namespace of our own.
pub fn mount_mqueue(root: &Root, required: bool) -> Result<()> {
    let flags = NOSUID_NOEXEC | MsFlags::MS_NODEV;
    let mq_result = mount_in(
        root,
        Path::new("/dev/mqueue"),
        "mqueue",
        Some("mqueue"),
        flags,
        None,
    );
    if let Err(e) = mq_result {
        // The mqueue filesystem belongs to an IPC namespace: without one of our own (--no-ipc) a
        // user namespace may not mount the host's. POSIX message queues are then unavailable.
        if required {
            return Err(e);
        }
        crate::explain!(
            CHAPTER,
            "skipping /dev/mqueue: no IPC namespace of our own ({e:#})"
        );
    }
    Ok(())
}

/// The links every program expects in /dev.
pub fn links(root: &Root) -> Result<()> {
    root.symlinks(&LINKS)
}
