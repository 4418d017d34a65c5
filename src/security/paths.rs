//! Masked and read-only paths (chapter 7): the parts of /proc and /sys that describe or control the
//! *host's* kernel, hidden (masked) or frozen (read-only), exactly as runc does for Docker.
//!
//! Runs in the child after /proc and /sys are mounted and before pivot_root. Every target is resolved
//! inside the rootfs with `openat2(RESOLVE_IN_ROOT)` and mounted on through /proc/self/fd/N, so a
//! symlink planted in the image cannot redirect a mount onto the host.

use crate::rootfs::safepath::Root;
use crate::rootfs::{make_readonly, mount_on};
use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sys::stat::{fstat, SFlag};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

// ANCHOR: lists
/// Hidden: a file becomes /dev/null, a directory an empty read-only tmpfs. They leak host
/// information (kcore is the host's memory, keys the host's keyring, timer_list and sched_debug
/// other processes' activity) or drive host hardware.
pub const MASKED: [&str; 12] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Read-only: readable, but a write is refused by the mount (EROFS) — /proc/sys is every sysctl
/// of the host, /proc/sysrq-trigger reboots it.
pub const READONLY: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];
// ANCHOR_END: lists

/// The path inside the root, opened without following a last symlink; `None` if this kernel has none.
fn existing(root: &Root, inner: &Path) -> Result<Option<OwnedFd>> {
    match root.resolve(inner, OFlag::O_PATH | OFlag::O_NOFOLLOW) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => {
            Err(e).with_context(|| format!("failed to resolve {} in the rootfs", inner.display()))
        }
    }
}

// ANCHOR: mask
/// Mask every path of [`MASKED`] that exists in this kernel's /proc and /sys; returns how many.
pub fn mask(root: &Root) -> Result<usize> {
    let mut n = 0;
    for p in MASKED {
        let inner = Path::new(p);
        let Some(fd) = existing(root, inner)? else {
            continue; // not in this kernel: nothing to hide
        };
        let st = fstat(fd.as_fd()).with_context(|| format!("failed to stat {p}"))?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
            mount_on(
                "tmpfs",
                fd.as_fd(),
                inner,
                Some("tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                None,
            )?;
        } else {
            mount_on("/dev/null", fd.as_fd(), inner, None, MsFlags::MS_BIND, None)?;
        }
        n += 1;
    }
    Ok(n)
}
// ANCHOR_END: mask

// ANCHOR: readonly
/// Bind every path of [`READONLY`] onto itself, then make that bind read-only; returns how many.
pub fn make_readonly_paths(root: &Root) -> Result<usize> {
    let mut n = 0;
    for p in READONLY {
        let inner = Path::new(p);
        let Some(fd) = existing(root, inner)? else {
            continue;
        };
        let src = crate::rootfs::safepath::fd_path(fd.as_fd());
        mount_on(
            &src,
            fd.as_fd(),
            inner,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )?;
        // The fd still names the file *under* the new bind: resolve again to reach the bind itself.
        let top = root
            .resolve(inner, OFlag::O_PATH | OFlag::O_NOFOLLOW)
            .with_context(|| format!("failed to re-open {p} after binding it"))?;
        make_readonly(top.as_fd(), inner, true)?;
        n += 1;
    }
    Ok(n)
}
// ANCHOR_END: readonly
