//! Chapter 2 — The root filesystem: a private mount namespace, the rootfs as a mount point, the
//! kernel filesystems a program expects (/proc, /sys, /dev), volumes, and `pivot_root` — never chroot.
//!
//! Everything here runs in the container's first process, in its new mount namespace, before exec.
//! Every target is resolved inside the rootfs ([`safepath`]), so a symlink in the image can never
//! redirect a mount onto the host.

pub mod args;
pub use args::RootfsArgs;
mod dev;
mod plan;
pub mod safepath;
mod volumes;

pub use plan::{apply, plan, split_prepared, Other, RootSource};
pub use volumes::{parse_volume, Volume};

use anyhow::{bail, Context, Result};
use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use safepath::{fd_path, Root};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

pub const CHAPTER: &str = "ch02 rootfs";

/// MS_* flags as a student would write them in a mount(2) call.
pub fn describe_ms(flags: MsFlags) -> String {
    const NAMES: [(MsFlags, &str); 10] = [
        (MsFlags::MS_RDONLY, "MS_RDONLY"),
        (MsFlags::MS_NOSUID, "MS_NOSUID"),
        (MsFlags::MS_NODEV, "MS_NODEV"),
        (MsFlags::MS_NOEXEC, "MS_NOEXEC"),
        (MsFlags::MS_REMOUNT, "MS_REMOUNT"),
        (MsFlags::MS_BIND, "MS_BIND"),
        (MsFlags::MS_REC, "MS_REC"),
        (MsFlags::MS_PRIVATE, "MS_PRIVATE"),
        (MsFlags::MS_SLAVE, "MS_SLAVE"),
        (MsFlags::MS_STRICTATIME, "MS_STRICTATIME"),
    ];
    let v: Vec<&str> = NAMES
        .iter()
        .filter(|(f, _)| flags.contains(*f))
        .map(|(_, n)| *n)
        .collect();
    if v.is_empty() {
        "0".into()
    } else {
        v.join("|")
    }
}

// ANCHOR: check
/// Parent, before clone: the rootfs must be a directory, and its /proc, /sys and /dev must not be
/// symlinks — they are mounted on, and a symlink could point anywhere on the host.
pub fn check_rootfs(path: &Path) -> Result<PathBuf> {
    let meta = std::fs::metadata(path).map_err(|e| {
        crate::error::hint(
            format!("rootfs {} cannot be used: {e}", path.display()),
            "build one with `rootfs-scripts/busybox.sh DIR` and pass DIR",
        )
    })?;
    if !meta.is_dir() {
        bail!(crate::error::hint(
            format!("rootfs {} is not a directory", path.display()),
            "pass the directory that holds the container's /bin, /etc, …"
        ));
    }
    let root = path
        .canonicalize()
        .with_context(|| format!("failed to resolve the rootfs path {}", path.display()))?;
    for dir in ["proc", "sys", "dev"] {
        let p = root.join(dir);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => bail!(crate::error::hint(
                format!("refusing rootfs {}: /{dir} is a symlink", root.display()),
                format!("/{dir} is mounted on and a symlink could point out of the rootfs; replace it with an empty directory")
            )),
            Ok(m) if !m.is_dir() => bail!(crate::error::hint(
                format!("refusing rootfs {}: /{dir} is not a directory", root.display()),
                format!("replace {} with an empty directory", p.display())
            )),
            _ => {}
        }
    }
    Ok(root)
}
// ANCHOR_END: check

/// What the root filesystem stage needs in the child.
#[derive(Debug, Clone)]
pub struct Config {
    /// The rootfs (canonical host path): the image.
    pub rootfs: PathBuf,
    /// Where the container's "/" is mounted before pivot_root: the rootfs itself (runc's way: the
    /// mount stacks on the image's own path, visible only in the child's mount namespace). As host
    /// root with a user namespace, the container's runtime directory instead: the child, an
    /// unprivileged host user, may not even be allowed to walk to the image — under /root or a
    /// 0750 home — but it can always reach that directory (and needs nothing in it any more: every
    /// volume comes prepared by the parent then).
    pub mountpoint: PathBuf,
    /// The parent hands the child every volume as a detached mount (host root with a user
    /// namespace), instead of the child binding host paths itself.
    pub volumes_prepared: bool,
    pub volumes: Vec<Volume>,
    pub workdir: PathBuf,
    /// `--read-only`: the root itself is mounted read-only (chapter 5).
    pub readonly: bool,
    /// Whether the container has its own network namespace (sysfs can only be mounted fresh then).
    pub own_netns: bool,
    /// Whether the container has its own IPC namespace (for /dev/mqueue).
    pub own_ipcns: bool,
    /// Whether the container has its own PID namespace (a fresh procfs can only be mounted then).
    pub own_pidns: bool,
}

/// One mount(2) call on a target inside the container, narrated under `--explain`.
pub(crate) fn mount_on(
    src: &str,
    target: BorrowedFd<'_>,
    shown: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<()> {
    crate::explain!(
        CHAPTER,
        "mount({src:?}, {:?}, {}, {}, {})",
        shown,
        fstype
            .map(|t| format!("{t:?}"))
            .unwrap_or_else(|| "NULL".into()),
        describe_ms(flags),
        data.map(|d| format!("{d:?}"))
            .unwrap_or_else(|| "NULL".into())
    );
    mount(Some(src), fd_path(target).as_str(), fstype, flags, data).with_context(|| {
        format!(
            "failed to mount {} on {} ({})",
            fstype.unwrap_or(src),
            shown.display(),
            describe_ms(flags)
        )
    })
}

/// [`mount_on`] a path inside the root, created there first if missing (a directory).
pub(crate) fn mount_in(
    root: &Root,
    inner: &Path,
    src: &str,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<()> {
    let dir = root.mkdir_all(inner)?;
    mount_on(src, dir.as_fd(), inner, fstype, flags, data)
}

// ANCHOR: private
/// First thing in the new mount namespace: stop mount events from propagating back to the host.
pub fn make_private() -> Result<()> {
    // EXERCISE(ch02, "make the mount namespace private", hint = "mount(NULL, "/", NULL, MS_REC|MS_PRIVATE, NULL): nothing mounted later propagates back to the host")
    crate::explain!(
        CHAPTER,
        "mount(NULL, \"/\", NULL, MS_REC|MS_PRIVATE, NULL) — nothing we mount leaks to the host"
    );
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("failed to make / private in the new mount namespace")
    // EXERCISE_END
}
// ANCHOR_END: private

// ANCHOR: root_mount
/// Make the root a mount point — pivot_root needs one. Either a detached mount prepared by the
/// parent (an overlay, or an idmapped bind: chapters 3 and 5) is attached on the mount point, or
/// the rootfs is bound onto itself.
pub fn mount_root(cfg: &Config, prepared: Option<OwnedFd>) -> Result<Root> {
    match prepared {
        Some(fd) => {
            crate::explain!(
                CHAPTER,
                "move_mount(fd {}, \"\", AT_FDCWD, {:?}, MOVE_MOUNT_F_EMPTY_PATH) — attach the prepared root",
                fd.as_raw_fd(),
                cfg.mountpoint
            );
            crate::mountapi::attach(fd.as_fd(), &cfg.mountpoint)?;
        }
        None => {
            let (p, m) = (cfg.rootfs.as_path(), cfg.mountpoint.as_path());
            crate::explain!(
                CHAPTER,
                "mount({p:?}, {m:?}, NULL, MS_BIND|MS_REC, NULL) — the rootfs bound onto itself: a mount point"
            );
            mount(
                Some(p),
                m,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .with_context(|| {
                format!(
                    "failed to bind the rootfs {} onto {}",
                    p.display(),
                    m.display()
                )
            })?;
        }
    }
    // Open it only now, so the fd refers to the new mount and not the directory beneath it.
    Root::open(&cfg.mountpoint)
}
// ANCHOR_END: root_mount

// ANCHOR: kernel_fs
/// /proc: a fresh procfs shows the container's PID namespace.
pub fn mount_proc(root: &Root, fresh: bool) -> Result<()> {
    // EXERCISE(ch02, "mount a fresh /proc", hint = "fresh: mount_in(root, "/proc", "proc", Some("proc"), MS_NOSUID|MS_NOEXEC|MS_NODEV); else bind the host's /proc (MS_BIND|MS_REC)")
    let at = Path::new("/proc");
    if fresh {
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
        return mount_in(root, at, "proc", Some("proc"), flags, None);
    }
    // procfs belongs to a PID namespace: in a user namespace that does not own the host's PID
    // namespace (--no-pid) the kernel refuses a new instance, so bind the host's /proc instead
    // (Podman does the same for --pid=host).
    mount_in(
        root,
        at,
        "/proc",
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    // EXERCISE_END
}

/// /sys, read-only: a fresh sysfs shows the network devices of the namespace that mounts it.
pub fn mount_sys(root: &Root, fresh: bool) -> Result<()> {
    let at = Path::new("/sys");
    if fresh {
        let ro = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
        return mount_in(root, at, "sysfs", Some("sysfs"), ro, None);
    }
    // Without a network namespace of our own the kernel refuses a new sysfs in a user namespace,
    // so runc (and we) bind the host's /sys read-only instead.
    mount_in(
        root,
        at,
        "/sys",
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    let sys_dir = root.resolve(at, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
    make_readonly(sys_dir.as_fd(), at, true)
}
// ANCHOR_END: kernel_fs

/// Read-only for a mount that is already attached (and, with `recursive`, everything below it):
/// mount_setattr(MOUNT_ATTR_RDONLY). Unlike a `MS_REMOUNT|MS_RDONLY` remount it keeps the flags the
/// kernel locked on the mount (nosuid, nodev, … in a user namespace).
pub fn make_readonly(target: BorrowedFd<'_>, shown: &Path, recursive: bool) -> Result<()> {
    crate::explain!(
        CHAPTER,
        "mount_setattr({shown:?}, {}attr_set=MOUNT_ATTR_RDONLY) — read-only",
        if recursive { "AT_RECURSIVE, " } else { "" }
    );
    crate::mountapi::set_attr(target, crate::mountapi::MOUNT_ATTR_RDONLY, recursive, None)
        .with_context(|| format!("failed to make {} read-only", shown.display()))
}

/// A tmpfs at `target` (`--tmpfs`, chapter 5): writable scratch space, also in a read-only root.
pub fn mount_tmpfs(root: &Root, target: &Path, flags: MsFlags, data: &str) -> Result<()> {
    let data = if data.is_empty() { None } else { Some(data) };
    mount_in(root, target, "tmpfs", Some("tmpfs"), flags, data)
}

/// `--read-only`: the root mount itself (not the mounts below it: /proc, /dev, volumes, tmpfs keep
/// their own flags).
pub fn make_root_readonly(root: &Root) -> Result<()> {
    let fd = root.resolve(Path::new("/"), OFlag::O_PATH | OFlag::O_DIRECTORY)?;
    make_readonly(fd.as_fd(), Path::new("/"), false)
}

// ANCHOR: prepare_bind
/// Parent, as host root: a detached copy of `host` (open_tree OPEN_TREE_CLONE, recursive), read-only
/// if asked — the child attaches it without ever resolving the host path itself.
pub fn prepare_bind(host: &Path, readonly: bool) -> Result<OwnedFd> {
    crate::explain!(
        CHAPTER,
        "open_tree({host:?}, OPEN_TREE_CLONE|AT_RECURSIVE){} — a bind mount prepared for the child",
        if readonly {
            " + mount_setattr(MOUNT_ATTR_RDONLY)"
        } else {
            ""
        }
    );
    let tree = crate::mountapi::clone_tree(host)?;
    if readonly {
        crate::mountapi::set_attr(tree.as_fd(), crate::mountapi::MOUNT_ATTR_RDONLY, true, None)
            .with_context(|| format!("failed to make the bind of {} read-only", host.display()))?;
    }
    Ok(tree)
}
// ANCHOR_END: prepare_bind

/// Create the working directory inside the rootfs if it is missing (as Docker does); `chdir` to it
/// happens after pivot_root, when "/" is the rootfs and nothing can resolve outside it.
pub fn prepare_workdir(root: &Root, workdir: &Path) -> Result<()> {
    root.mkdir_all(workdir).with_context(|| {
        format!(
            "failed to prepare the working directory {}",
            workdir.display()
        )
    })?;
    Ok(())
}

// ANCHOR: pivot
/// Swap the root: the rootfs becomes "/" and the host's root is detached, unreachable from now on.
/// The `pivot_root(".", ".")` trick stacks the old root on top of the new one, so no `.oldroot`
/// directory has to be created in the image.
pub fn pivot(root: Root) -> Result<()> {
    // EXERCISE(ch02, "pivot_root into the new root", hint = "fchdir(new root); pivot_root(".", "."); umount2(".", MNT_DETACH); chdir("/") — not chroot")
    crate::explain!(
        CHAPTER,
        "fchdir({:?}); pivot_root(\".\", \".\"); umount2(\".\", MNT_DETACH); chdir(\"/\")",
        root.host_path()
    );
    let dir = nix::fcntl::openat(
        root.fd(),
        ".",
        OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .context("failed to open the new root")?;
    nix::unistd::fchdir(&dir).context("failed to enter the new root")?;
    nix::unistd::pivot_root(".", ".")
        .with_context(|| format!("pivot_root into {} failed", root.host_path().display()))?;
    umount2(".", MntFlags::MNT_DETACH).context("failed to detach the old root")?;
    nix::unistd::chdir("/").context("failed to chdir to the new /")?;
    Ok(())
    // EXERCISE_END
}
// ANCHOR_END: pivot
