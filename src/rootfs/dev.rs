//! /dev: a fresh tmpfs holding only the default devices of the OCI runtime spec, bind-mounted from
//! the host (mknod is refused in a user namespace; a bind works everywhere), plus its own devpts,
//! /dev/shm and /dev/mqueue.

use super::safepath::Root;
use super::{mount_on, CHAPTER};
use anyhow::Result;
use nix::mount::MsFlags;
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
    let dev = root.mkdir_all(Path::new("/dev"))?;
    mount_on(
        "tmpfs",
        dev.as_fd(),
        Path::new("/dev"),
        Some("tmpfs"),
        NOSUID_NOEXEC | MsFlags::MS_NODEV | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    for name in DEFAULT_DEVICES {
        let inner = Path::new("/dev").join(name);
        let target = root.mkfile(&inner)?;
        let host = format!("/dev/{name}");
        mount_on(&host, target.as_fd(), &inner, None, MsFlags::MS_BIND, None)?;
    }
    Ok(())
}

/// The container's own devpts: its terminals, not the host's.
pub fn mount_devpts(root: &Root) -> Result<()> {
    let pts = root.mkdir_all(Path::new("/dev/pts"))?;
    let at = Path::new("/dev/pts");
    let opts = "newinstance,ptmxmode=0666,mode=0620";
    let with_tty_group = format!("{opts},gid=5");
    if mount_on(
        "devpts",
        pts.as_fd(),
        at,
        Some("devpts"),
        NOSUID_NOEXEC,
        Some(&with_tty_group),
    )
    .is_err()
    {
        // gid 5 (tty) is not mapped when a rootless user maps only its own id: retry without it.
        mount_on(
            "devpts",
            pts.as_fd(),
            at,
            Some("devpts"),
            NOSUID_NOEXEC,
            Some(opts),
        )?;
    }
    Ok(())
}

/// /dev/shm: POSIX shared memory, a tmpfs of the container's own.
pub fn mount_shm(root: &Root) -> Result<()> {
    let shm = root.mkdir_all(Path::new("/dev/shm"))?;
    mount_on(
        "shm",
        shm.as_fd(),
        Path::new("/dev/shm"),
        Some("tmpfs"),
        NOSUID_NOEXEC | MsFlags::MS_NODEV,
        Some("mode=1777,size=65536k"),
    )
}

/// /dev/mqueue: the IPC namespace's message queues. `required` with an IPC namespace of our own.
pub fn mount_mqueue(root: &Root, required: bool) -> Result<()> {
    let mq = root.mkdir_all(Path::new("/dev/mqueue"))?;
    let mq_result = mount_on(
        "mqueue",
        mq.as_fd(),
        Path::new("/dev/mqueue"),
        Some("mqueue"),
        NOSUID_NOEXEC | MsFlags::MS_NODEV,
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
    for (link, target) in LINKS {
        root.symlink(target, Path::new(link))?;
    }
    Ok(())
}
