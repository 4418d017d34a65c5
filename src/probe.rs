//! Kernel feature probes, used by chapters 3 (user namespaces, idmapped mounts), 4 (cgroup v2
//! delegation) and 5 (overlay), and by `minictr doctor` (also chapter 6: bridge and veth).
//!
//! A kernel version is a hint, never a test: distributions backport features and switch them off
//! with sysctls. So each feature is *tried* — in a forked child that unshares what it needs, mounts
//! a tmpfs in its own mount namespace, tries the call and exits — and the version is kept only for
//! the error message. Nothing a probe does is visible on the host.
//!
//! Results are cached once per boot in `<runtime dir>/probes.json` (/run/minictr as root,
//! $XDG_RUNTIME_DIR/minictr rootless), keyed by the boot id (/proc/sys/kernel/random/boot_id) and by
//! who asked (euid and user namespace): a reboot, another user or a user namespace probes again.
//! `minictr doctor` always probes afresh and refreshes the cache.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "result", content = "why")]
pub enum Probe {
    /// The kernel did it.
    Yes,
    /// The kernel refused it: why (the errno, or the step that failed).
    No(String),
    /// Not tried here (it needs root, or another feature that is missing).
    Unknown(String),
}

impl Probe {
    pub fn is_no(&self) -> bool {
        matches!(self, Probe::No(_))
    }
}

// ANCHOR: features
/// The features minictr probes for, with the kernel release that brought each and the switch that
/// avoids needing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    UserNs,
    UnprivilegedUserNs,
    IdmappedMounts,
    OverlayIdmappedLower,
    OverlayLowerFd,
    OverlayLowerOPathFd,
    OverlayInUserNs,
    OverlayUpperInMemory,
    CgroupDelegation,
    BridgeVeth,
}

impl Feature {
    pub fn describe(self) -> &'static str {
        match self {
            Feature::UserNs => "user namespaces",
            Feature::UnprivilegedUserNs => "unprivileged user namespaces",
            Feature::IdmappedMounts => "idmapped mounts",
            Feature::OverlayIdmappedLower => "overlayfs over idmapped lower layers",
            Feature::OverlayLowerFd => "overlayfs layers given as file descriptors",
            Feature::OverlayLowerOPathFd => "overlayfs layers given as O_PATH descriptors",
            Feature::OverlayInUserNs => "overlayfs mounted in a user namespace (userxattr)",
            Feature::OverlayUpperInMemory => "overlayfs upper layers on a detached tmpfs",
            Feature::CgroupDelegation => "cgroup v2 delegation",
            Feature::BridgeVeth => "bridges and veth pairs",
        }
    }

    /// The first Linux release with the feature (a distribution may switch it off).
    pub fn since(self) -> &'static str {
        match self {
            Feature::UserNs | Feature::UnprivilegedUserNs => "3.8",
            Feature::IdmappedMounts => "5.12 (ext4, xfs; btrfs 5.15, tmpfs 6.3)",
            Feature::OverlayIdmappedLower => "5.19",
            Feature::OverlayLowerFd => "6.13",
            Feature::OverlayLowerOPathFd => "6.15",
            Feature::OverlayInUserNs => "5.11",
            Feature::OverlayUpperInMemory => "6.15",
            Feature::CgroupDelegation => "4.15 (cgroup v2 with systemd's Delegate=yes)",
            Feature::BridgeVeth => "2.6.24 (the bridge and veth modules)",
        }
    }

    /// What to do without it: the switch that avoids the feature, or the fallback minictr takes.
    pub fn avoid(self) -> &'static str {
        match self {
            Feature::UserNs => "run with --userns=host (as root)",
            Feature::UnprivilegedUserNs => {
                "run as root (sudo), or allow unprivileged user namespaces"
            }
            Feature::IdmappedMounts => {
                "put the image on ext4, xfs or btrfs, or run with --userns=host"
            }
            Feature::OverlayIdmappedLower => "run with --no-overlay or --userns=host",
            Feature::OverlayInUserNs => "run with --no-overlay, or as root",
            Feature::OverlayLowerFd | Feature::OverlayLowerOPathFd => {
                "none needed: minictr attaches the layers in a mount namespace of its own instead"
            }
            Feature::OverlayUpperInMemory => {
                "none needed: minictr puts a throwaway writable layer in the data directory instead"
            }
            Feature::BridgeVeth => {
                "run with --network none, or load the modules (modprobe bridge veth)"
            }
            Feature::CgroupDelegation => {
                "run as root, or under systemd-run --user --scope -p Delegate=yes (or --no-cgroup)"
            }
        }
    }
}

/// The one-line error for a missing feature: what, why, the kernel that has it, what to do.
pub fn missing(f: Feature, why: &str) -> anyhow::Error {
    crate::error::hint(
        format!(
            "{} are not available here ({why}); Linux {} and newer have them",
            f.describe(),
            f.since()
        ),
        f.avoid(),
    )
}
// ANCHOR_END: features

/// What the probes found, as cached in probes.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probes {
    pub boot_id: String,
    /// Who probed: euid and user namespace (results differ between them).
    pub context: String,
    pub kernel: String,
    pub userns: Probe,
    pub unprivileged_userns: Probe,
    pub overlay_idmapped_lower: Probe,
    pub overlay_lower_fd: Probe,
    pub overlay_lower_opath_fd: Probe,
    /// What rootless minictr does: overlayfs with `userxattr` inside a user namespace.
    pub overlay_in_userns: Probe,
    /// A throwaway writable layer in a detached tmpfs (Linux 6.15; ch05), as this caller mounts it.
    pub overlay_upper_in_memory: Probe,
    /// Idmapped mounts per filesystem type (statfs magic, hex).
    #[serde(default)]
    pub idmap_fs: BTreeMap<String, Probe>,
}

/// A cache text is valid for this boot and this caller only (pure: unit-tested).
pub fn parse_cache(text: &str, boot_id: &str, context: &str) -> Option<Probes> {
    let p: Probes = serde_json::from_str(text).ok()?;
    (p.boot_id == boot_id && p.context == context).then_some(p)
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn context() -> String {
    use std::os::unix::fs::MetadataExt;
    let ns = std::fs::metadata("/proc/self/ns/user")
        .map(|m| m.ino())
        .unwrap_or(0);
    format!("euid {} in user namespace {ns}", nix::unistd::geteuid())
}

pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

fn cache_path() -> PathBuf {
    crate::state::base_dir().join("probes.json")
}

/// The probes of this boot: from the cache, or tried now (and cached).
pub fn get() -> Probes {
    if let Some(p) = in_process().clone() {
        return p;
    }
    let (boot, ctx) = (boot_id(), context());
    match read_own(&cache_path()).and_then(|t| parse_cache(&t, &boot, &ctx)) {
        Some(p) => {
            *in_process() = Some(p.clone());
            p
        }
        None => refresh(),
    }
}

/// This process's copy: a run asks several times, and the first run of a boot may find no
/// runtime directory to cache in yet.
fn in_process() -> std::sync::MutexGuard<'static, Option<Probes>> {
    static PROBES: std::sync::Mutex<Option<Probes>> = std::sync::Mutex::new(None);
    PROBES.lock().unwrap_or_else(|e| e.into_inner())
}

/// Probe again, ignoring every cache, and cache the result.
fn refresh() -> Probes {
    let p = fresh();
    save(&p);
    *in_process() = Some(p.clone());
    p
}

/// The cache file's text, if this user owns it (nobody else may plant results for us).
fn read_own(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).ok()?;
    if !m.is_file() || m.uid() != nix::unistd::geteuid().as_raw() {
        return None;
    }
    std::fs::read_to_string(path).ok()
}

/// Probe everything now, cache nothing (`minictr doctor` changes nothing on the host).
pub fn fresh() -> Probes {
    fresh_with(None)
}

/// [`fresh`], with the image at hand to idmap where the kernel cannot idmap a tmpfs (before 6.3).
pub fn fresh_with(sample: Option<&Path>) -> Probes {
    let root = nix::unistd::geteuid().is_root();
    let userns = in_child(userns_with_a_mount);
    let unprivileged_userns = if root {
        in_child(|| {
            let nobody = nix::unistd::Uid::from_raw(65534);
            let nogroup = nix::unistd::Gid::from_raw(65534);
            nix::unistd::setgroups(&[]).map_err(|e| e as i32)?;
            nix::unistd::setresgid(nogroup, nogroup, nogroup).map_err(|e| e as i32)?;
            nix::unistd::setresuid(nobody, nobody, nobody).map_err(|e| e as i32)?;
            // Changing credentials made us non-dumpable, which hands /proc/self to root.
            // SAFETY: prctl with integer arguments only.
            if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) } != 0 {
                return Err(nix::errno::Errno::last_raw());
            }
            userns_with_a_mount()
        })
    } else {
        userns.clone()
    };
    let (overlay_lower_fd, overlay_lower_opath_fd, overlay_idmapped_lower) = if root {
        (
            in_child(|| overlay_by_fd(false)),
            in_child(|| overlay_by_fd(true)),
            match throwaway_userns() {
                Ok(ns) => in_child(|| overlay_over_idmapped(ns.as_fd(), sample)),
                Err(why) => Probe::Unknown(format!("no user namespace to map with: {why}")),
            },
        )
    } else {
        let u = Probe::Unknown(
            "probed as root only: rootless containers mount their overlay themselves".into(),
        );
        (u.clone(), u.clone(), u)
    };
    Probes {
        boot_id: boot_id(),
        context: context(),
        kernel: kernel_release(),
        userns,
        unprivileged_userns,
        overlay_idmapped_lower,
        overlay_lower_fd,
        overlay_lower_opath_fd,
        overlay_in_userns: in_child(overlay_in_userns),
        overlay_upper_in_memory: in_child(|| overlay_upper_in_memory(root)),
        idmap_fs: BTreeMap::new(),
    }
}

/// Written under another name and renamed: a reader never sees half a file. Only into a runtime
/// directory that exists already (`minictr run` creates it); a cache that cannot be written only
/// means probing again next time.
fn save(p: &Probes) {
    let path = cache_path();
    let Some(dir) = path.parent() else { return };
    if !dir.is_dir() {
        return;
    }
    let tmp = dir.join(format!("probes.json.{}", std::process::id()));
    let Ok(text) = serde_json::to_vec_pretty(p) else {
        return;
    };
    if std::fs::write(&tmp, text).is_err() || std::fs::rename(&tmp, &path).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// Whether the filesystem `path` lives on can be idmapped (root only), cached per filesystem type.
pub fn idmap_on(path: &Path) -> Probe {
    match idmap_on_with(path, get(), true) {
        // Tried once more before it stops a run (see preflight).
        Probe::No(_) => idmap_on_with(path, refresh(), true),
        r => r,
    }
}

/// [`idmap_on`] on given probes, cached or not (doctor).
pub fn idmap_on_with(path: &Path, mut p: Probes, cache: bool) -> Probe {
    let Ok(st) = nix::sys::statfs::statfs(path) else {
        return Probe::Unknown(format!("cannot statfs {}", path.display()));
    };
    if !nix::unistd::geteuid().is_root() {
        return Probe::Unknown("probed as root only".into());
    }
    let key = format!("{:x}", st.filesystem_type().0);
    if let Some(r) = p.idmap_fs.get(&key) {
        return r.clone();
    }
    let r = match throwaway_userns() {
        Ok(ns) => in_child(|| idmap(path, ns.as_fd()).map(drop)),
        Err(why) => Probe::Unknown(format!("no user namespace to map with: {why}")),
    };
    if cache {
        p.idmap_fs.insert(key, r.clone());
        save(&p);
        *in_process() = Some(p);
    }
    r
}

/// Whether this user may move processes into its own cgroup v2 (`own_v2_cgroup`): delegation.
pub fn cgroup_delegation(own_v2_cgroup: &Path) -> Probe {
    let procs = own_v2_cgroup.join("cgroup.procs");
    match nix::unistd::access(&procs, nix::unistd::AccessFlags::W_OK) {
        Ok(()) => Probe::Yes,
        Err(e) => Probe::No(format!("{} is not writable: {e}", procs.display())),
    }
}

/// The exit status of a probe that could not set up what it needed to try the feature (a scratch
/// tmpfs, a filesystem it may idmap): that says nothing about the feature.
const SETUP_FAILED: i32 = 255;

fn setup<T, E>(r: std::result::Result<T, E>) -> std::result::Result<T, i32> {
    r.map_err(|_| SETUP_FAILED)
}

/// Run `f` in a forked child; its result comes back as the exit status (0, or the errno).
pub(crate) fn in_child(f: impl FnOnce() -> std::result::Result<(), i32>) -> Probe {
    use nix::sys::wait::{waitpid, WaitStatus};
    // SAFETY: minictr is single-threaded when it probes; the child only makes system calls and
    // leaves with _exit, running no destructors of the parent's state.
    match unsafe { nix::unistd::fork() } {
        Err(e) => Probe::Unknown(format!("fork failed: {e}")),
        Ok(nix::unistd::ForkResult::Child) => {
            let code = match f() {
                Ok(()) => 0,
                Err(SETUP_FAILED) => SETUP_FAILED,
                Err(errno) => errno.clamp(1, SETUP_FAILED - 1),
            };
            // SAFETY: _exit ends the child without running the parent's atexit handlers.
            unsafe { libc::_exit(code) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 0)) => Probe::Yes,
            Ok(WaitStatus::Exited(_, SETUP_FAILED)) => Probe::Unknown(
                "the probe could not set up a scratch tmpfs or a filesystem to idmap".into(),
            ),
            Ok(WaitStatus::Exited(_, n)) => Probe::No(errno_text(n)),
            Ok(other) => Probe::Unknown(format!("probe process ended as {other:?}")),
            Err(e) => Probe::Unknown(format!("waitpid failed: {e}")),
        },
    }
}

fn errno_text(n: i32) -> String {
    nix::errno::Errno::from_raw(n).to_string()
}

/// The errno inside an error chain (EIO when there is none).
pub(crate) fn errno_of(e: &anyhow::Error) -> i32 {
    e.chain()
        .find_map(|c| c.downcast_ref::<std::io::Error>())
        .and_then(|io| io.raw_os_error())
        .unwrap_or(libc::EIO)
}

/// A user namespace of our own, usable: its maps written from inside (our own ids only, as an
/// unprivileged user may) and a tmpfs mounted in a mount namespace it owns. Creating it is not
/// enough: Ubuntu 24.04's `kernel.apparmor_restrict_unprivileged_userns` lets unshare succeed and
/// denies the capabilities inside; Debian's `kernel.unprivileged_userns_clone=0` and
/// `user.max_user_namespaces=0` make unshare fail.
fn userns_with_a_mount() -> std::result::Result<(), i32> {
    let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    let io = |e: std::io::Error| e.raw_os_error().unwrap_or(libc::EIO);
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).map_err(|e| e as i32)?;
    std::fs::write("/proc/self/setgroups", "deny").map_err(io)?;
    std::fs::write("/proc/self/uid_map", format!("0 {uid} 1\n")).map_err(io)?;
    std::fs::write("/proc/self/gid_map", format!("0 {gid} 1\n")).map_err(io)?;
    private_tmpfs().map(|_| ()).map_err(|e| e as i32)
}

/// A user namespace with a mapping (0 → 100000, 65536 ids), held only by the returned descriptor:
/// a child unshares it, the parent writes its maps and opens it, and the child exits.
fn throwaway_userns() -> std::result::Result<OwnedFd, String> {
    use nix::unistd::{pipe, read, write};
    let (r1, w1) = pipe().map_err(|e| e.to_string())?;
    let (r2, w2) = pipe().map_err(|e| e.to_string())?;
    // SAFETY: as in in_child; the child only calls unshare, write, read and _exit.
    match unsafe { nix::unistd::fork() }.map_err(|e| e.to_string())? {
        nix::unistd::ForkResult::Child => {
            drop((r1, w2));
            let code = match nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER) {
                Ok(()) => 0u8,
                Err(e) => e as i32 as u8,
            };
            let _ = write(&w1, &[code]);
            let mut b = [0u8; 1];
            let _ = read(r2.as_fd(), &mut b);
            // SAFETY: see in_child.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop((w1, r2));
            let mut b = [0u8; 1];
            let got = read(r1.as_fd(), &mut b);
            let result = match got {
                Ok(1) if b[0] == 0 => (|| -> Result<OwnedFd> {
                    for f in ["uid_map", "gid_map"] {
                        let p = format!("/proc/{child}/{f}");
                        std::fs::write(&p, "0 100000 65536\n")
                            .with_context(|| format!("failed to write {p}"))?;
                    }
                    let p = format!("/proc/{child}/ns/user");
                    Ok(std::fs::File::open(&p)
                        .with_context(|| format!("failed to open {p}"))?
                        .into())
                })()
                .map_err(|e| crate::error::one_line(&e)),
                Ok(1) => Err(format!(
                    "unshare(CLONE_NEWUSER): {}",
                    errno_text(b[0] as i32)
                )),
                _ => Err("the probe process died".into()),
            };
            drop(w2);
            let _ = nix::sys::wait::waitpid(child, None);
            result
        }
    }
}

/// Rootless minictr's overlay: mounted with `userxattr` by the root of a user namespace of our own,
/// over the tmpfs [`userns_with_a_mount`] leaves on [`scratch_dir`].
fn overlay_in_userns() -> std::result::Result<(), i32> {
    setup(userns_with_a_mount())?;
    let dir = scratch_dir();
    for d in ["l", "u", "w", "m"] {
        setup(std::fs::create_dir(dir.join(d)))?;
    }
    mount_overlay(&dir, &dir.join("u"), &dir.join("w"), true)
}

/// mount(2) an overlay of `dir`/l with `upper` and `work` on `dir`/m (the errno on failure).
fn mount_overlay(
    dir: &Path,
    upper: &Path,
    work: &Path,
    userxattr: bool,
) -> std::result::Result<(), i32> {
    let data = format!(
        "lowerdir={},upperdir={},workdir={}{}",
        dir.join("l").display(),
        upper.display(),
        work.display(),
        if userxattr { ",userxattr" } else { "" }
    );
    nix::mount::mount(
        Some("overlay"),
        &dir.join("m"),
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| e as i32)
}

/// ch05's throwaway layer: upper/ and work/ in a tmpfs attached nowhere, named by
/// `/proc/self/fd/N/…` (overlayfs clones the upper layer's mount, which must be attached in our
/// mount namespace before Linux 6.15). Rootless: in a user namespace of our own, with `userxattr`.
fn overlay_upper_in_memory(root: bool) -> std::result::Result<(), i32> {
    let dir = if root {
        scratch()?
    } else {
        setup(userns_with_a_mount())?;
        let dir = scratch_dir();
        for d in ["l", "m"] {
            setup(std::fs::create_dir(dir.join(d)))?;
        }
        dir
    };
    let mem = setup(crate::overlay::MemoryLayer::create_quietly(None))?;
    let m = mem.dir();
    mount_overlay(&dir, &m.join("upper"), &m.join("work"), !root)
}

/// A detached, read-only idmapped copy of the mount at `path`.
fn idmap(path: &Path, userns: BorrowedFd<'_>) -> std::result::Result<OwnedFd, i32> {
    use crate::mountapi::{clone_tree, set_attr, MOUNT_ATTR_IDMAP, MOUNT_ATTR_RDONLY};
    // Cloning the tree is not the feature (it fails for a missing path, or without CAP_SYS_ADMIN).
    let tree = setup(clone_tree(path))?;
    set_attr(
        tree.as_fd(),
        MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY,
        true,
        Some(userns),
    )
    .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    Ok(tree)
}

/// Where a probe mounts its scratch tmpfs (in a mount namespace of its own): the temp directory,
/// or another directory every system has when $TMPDIR names none.
fn scratch_dir() -> PathBuf {
    [
        std::env::temp_dir(),
        "/tmp".into(),
        "/run".into(),
        "/mnt".into(),
    ]
    .into_iter()
    .find(|d| d.is_dir())
    .unwrap_or_else(|| "/tmp".into())
}

/// A private mount namespace of the (child's) own with a tmpfs over [`scratch_dir`]: room to try
/// mounts that the host never sees.
fn private_tmpfs() -> nix::Result<PathBuf> {
    let dir = scratch_dir();
    private_mount_ns()?;
    nix::mount::mount(
        Some("tmpfs"),
        &dir,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )?;
    Ok(dir)
}

/// A mount namespace of the (child's) own whose mounts never propagate back to the host.
fn private_mount_ns() -> nix::Result<()> {
    use nix::mount::{mount, MsFlags};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
}

/// In the (child's) own mount namespace: a tmpfs over [`scratch_dir`] with l/, u/, w/, m/.
fn scratch() -> std::result::Result<PathBuf, i32> {
    let dir = private_tmpfs().map_err(|_| SETUP_FAILED)?;
    for d in ["l", "u", "w", "m"] {
        std::fs::create_dir(dir.join(d)).map_err(|_| SETUP_FAILED)?;
    }
    Ok(dir)
}

/// An overlay with the given lower layers (by `lowers`) over the scratch upper/work, created.
fn overlay_with(
    dir: &Path,
    lowers: impl FnOnce(&crate::mountapi::FsContext) -> Result<()>,
) -> std::result::Result<(), i32> {
    let ctx = crate::mountapi::FsContext::open("overlay").map_err(|e| errno_of(&e))?;
    lowers(&ctx).map_err(|e| errno_of(&e))?;
    for (k, d) in [("upperdir", "u"), ("workdir", "w")] {
        ctx.set_string(k, &dir.join(d).to_string_lossy())
            .map_err(|e| errno_of(&e))?;
    }
    ctx.mount(0).map(drop).map_err(|e| errno_of(&e))
}

/// FSCONFIG_SET_FD "lowerdir+": a plain directory descriptor (6.13), or an O_PATH one (6.15).
fn overlay_by_fd(o_path: bool) -> std::result::Result<(), i32> {
    let dir = scratch()?;
    let mut flags = nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC;
    if o_path {
        flags |= nix::fcntl::OFlag::O_PATH;
    }
    let fd = setup(nix::fcntl::open(
        &dir.join("l"),
        flags,
        nix::sys::stat::Mode::empty(),
    ))?;
    overlay_with(&dir, |ctx| ctx.set_fd("lowerdir+", fd.as_fd()))
}

/// An idmapped lower layer, attached in the child's mount namespace, under an overlay (5.19). The
/// layer: the scratch tmpfs (idmappable from 6.3), else `sample` (the image, when the caller knows
/// it), the current directory or the executable's: on older kernels a disk filesystem is needed.
fn overlay_over_idmapped(
    userns: BorrowedFd<'_>,
    sample: Option<&Path>,
) -> std::result::Result<(), i32> {
    let cwd = std::env::current_dir().ok();
    let exe = std::fs::read_link("/proc/self/exe").ok();
    let dir = scratch()?;
    let mut candidates = vec![dir.join("l")];
    candidates.extend(sample.map(Path::to_path_buf));
    candidates.extend(cwd);
    candidates.extend(exe.as_deref().and_then(Path::parent).map(Path::to_path_buf));
    let tree = setup(
        candidates
            .iter()
            .find_map(|c| idmap(c, userns).ok())
            .ok_or(()),
    )?;
    let m = dir.join("m");
    setup(crate::mountapi::attach(tree.as_fd(), &m))?;
    overlay_with(&dir, |ctx| ctx.set_string("lowerdir", &m.to_string_lossy()))
}

/// Before anything is created: the features this run needs, as one clear error when one is missing.
/// `overlay`: the run mounts an overlay (as root over idmapped layers, rootless in its namespace).
/// A "no" from the cache is tried once more before it stops the run: a sysctl may have changed
/// since, and a probe may have failed for a passing reason.
pub fn preflight(userns: bool, overlay: bool) -> Result<()> {
    if !userns {
        return Ok(());
    }
    match needs(&get(), overlay) {
        Ok(()) => Ok(()),
        Err(_) => needs(&refresh(), overlay),
    }
}

/// The features of [`preflight`] in `p`.
fn needs(p: &Probes, overlay: bool) -> Result<()> {
    let root = nix::unistd::geteuid().is_root();
    if let Probe::No(why) = &p.userns {
        let f = if root {
            Feature::UserNs
        } else {
            Feature::UnprivilegedUserNs
        };
        return Err(missing(f, why));
    }
    if overlay {
        let (probe, feature) = if root {
            (&p.overlay_idmapped_lower, Feature::OverlayIdmappedLower)
        } else {
            (&p.overlay_in_userns, Feature::OverlayInUserNs)
        };
        if let Probe::No(why) = probe {
            return Err(missing(feature, why));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Probes {
        Probes {
            boot_id: "b1".into(),
            context: "euid 0 in user namespace 1".into(),
            kernel: "6.18".into(),
            userns: Probe::Yes,
            unprivileged_userns: Probe::No("EPERM: Operation not permitted".into()),
            overlay_idmapped_lower: Probe::Yes,
            overlay_lower_fd: Probe::Yes,
            overlay_lower_opath_fd: Probe::No("EBADF: Bad file number".into()),
            overlay_in_userns: Probe::Yes,
            overlay_upper_in_memory: Probe::Yes,
            idmap_fs: BTreeMap::from([("ef53".to_string(), Probe::Yes)]),
        }
    }

    #[test]
    fn cache_round_trips_for_the_same_boot_and_caller_only() {
        let p = sample();
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(parse_cache(&text, "b1", &p.context), Some(p.clone()));
        // Another boot, another user or user namespace: probe again.
        assert_eq!(parse_cache(&text, "b2", &p.context), None);
        assert_eq!(
            parse_cache(&text, "b1", "euid 1000 in user namespace 1"),
            None
        );
        // A corrupt or foreign file is no cache.
        assert_eq!(parse_cache("", "b1", &p.context), None);
        assert_eq!(parse_cache("{\"boot_id\":\"b1\"}", "b1", &p.context), None);
        assert_eq!(parse_cache(&text[..text.len() / 2], "b1", &p.context), None);
    }

    #[test]
    fn missing_features_name_the_kernel_and_the_switch() {
        let cases = [
            (Feature::UserNs, "3.8", "--userns=host"),
            (Feature::IdmappedMounts, "5.12", "--userns=host"),
            (Feature::OverlayIdmappedLower, "5.19", "--no-overlay"),
            (Feature::OverlayLowerFd, "6.13", "attaches the layers"),
            (Feature::OverlayLowerOPathFd, "6.15", "attaches the layers"),
            (Feature::OverlayInUserNs, "5.11", "--no-overlay"),
            (Feature::OverlayUpperInMemory, "6.15", "data directory"),
            (Feature::CgroupDelegation, "Delegate=yes", "--no-cgroup"),
            (Feature::BridgeVeth, "2.6.24", "--network none"),
            (Feature::UnprivilegedUserNs, "3.8", "sudo"),
        ];
        for (f, version, switch) in cases {
            let m = crate::error::one_line(&missing(f, "EPERM"));
            assert!(m.contains(f.describe()), "{m}");
            assert!(
                m.contains(&format!("Linux {version}")) || m.contains(version),
                "{m}"
            );
            assert!(m.contains(switch), "{m}");
            assert!(m.contains("(EPERM)") && !m.contains('\n'), "{m}");
        }
    }

    #[test]
    fn probe_results_serialise_readably() {
        let t = serde_json::to_string(&Probe::No("EINVAL".into())).unwrap();
        assert_eq!(t, r#"{"result":"no","why":"EINVAL"}"#);
        assert_eq!(
            serde_json::to_string(&Probe::Yes).unwrap(),
            r#"{"result":"yes"}"#
        );
    }
}
