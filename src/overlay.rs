//! Chapter 5 — Overlay: copy-on-write layers. The image (ROOTFS, plus any `--layer`) is a stack of
//! read-only lower layers; each container gets its own writable upper layer; overlayfs merges them
//! into the container's root and copies a file up the first time it is modified. The image on the
//! host never changes, and two containers on one image never see each other's writes.

use crate::mountapi::{self, FsContext};
use anyhow::{bail, Context, Result};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

pub const CHAPTER: &str = "ch05 overlay";

// ANCHOR: data_dir
/// Where writable layers live: `/var/lib/minictr/containers/<id>/{upper,work}` as root (on disk, like
/// Docker's /var/lib/docker/overlay2: a container may write gigabytes, and a kept layer must survive
/// a reboot), `$XDG_DATA_HOME/minictr` (or ~/.local/share/minictr) rootless. `MINICTR_DATA_DIR`
/// overrides both.
pub fn data_dir() -> PathBuf {
    if let Ok(d) = std::env::var("MINICTR_DATA_DIR") {
        return PathBuf::from(d);
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/minictr");
    }
    match (std::env::var("XDG_DATA_HOME"), std::env::var("HOME")) {
        (Ok(x), _) if !x.is_empty() => Path::new(&x).join("minictr"),
        (_, Ok(h)) if !h.is_empty() => Path::new(&h).join(".local/share/minictr"),
        _ => std::env::temp_dir().join(format!("minictr-data-{}", nix::unistd::geteuid())),
    }
}
// ANCHOR_END: data_dir

pub fn containers_dir() -> PathBuf {
    data_dir().join("containers")
}

fn names_dir() -> PathBuf {
    data_dir().join("names")
}

/// `--tmpfs PATH[:OPTIONS]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tmpfs {
    pub path: PathBuf,
    pub flags: nix::mount::MsFlags,
    /// size=…, mode=… passed to the kernel.
    pub data: String,
}

/// Parse `--tmpfs /tmp[:size=64m,mode=1777,exec]`. Docker's defaults: nosuid,nodev,noexec.
pub fn parse_tmpfs(spec: &str) -> Result<Tmpfs> {
    use nix::mount::MsFlags;
    let usage = "use --tmpfs PATH[:size=64m,mode=1777,exec,…], PATH absolute inside the container";
    let (path, opts) = spec.split_once(':').unwrap_or((spec, ""));
    let path = PathBuf::from(path);
    if !path.is_absolute() || path == Path::new("/") {
        bail!(crate::error::hint(
            format!("invalid --tmpfs {spec:?}: the path must be absolute and not /"),
            usage
        ));
    }
    let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let mut data = Vec::new();
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => flags.remove(MsFlags::MS_RDONLY),
            "exec" => flags.remove(MsFlags::MS_NOEXEC),
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "suid" => flags.remove(MsFlags::MS_NOSUID),
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "dev" => flags.remove(MsFlags::MS_NODEV),
            "nodev" => flags |= MsFlags::MS_NODEV,
            o if o.starts_with("size=") && valid_size(&o[5..]) => data.push(o.to_string()),
            o if o.starts_with("mode=")
                && o.len() > 5
                && o[5..].len() <= 4
                && o[5..].bytes().all(|b| (b'0'..=b'7').contains(&b)) =>
            {
                data.push(o.to_string())
            }
            other => bail!(crate::error::hint(
                format!("invalid --tmpfs option {other:?} in {spec:?}"),
                usage
            )),
        }
    }
    Ok(Tmpfs {
        path,
        flags,
        data: data.join(","),
    })
}

fn valid_size(s: &str) -> bool {
    let digits = s.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G', '%']);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && s.len() - digits.len() <= 1
}

/// A container name as Docker allows it: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 64 characters.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if !ok {
        bail!(crate::error::hint(
            format!("invalid container name {name:?}"),
            "use letters, digits, '_', '.' and '-', starting with a letter or digit (at most 64)"
        ));
    }
    Ok(())
}

/// The overlay stage's part of the spec.
#[derive(Debug, Clone)]
pub struct Config {
    /// The read-only layers, top first: the last `--layer` … the first `--layer`, then ROOTFS.
    pub lowers: Vec<PathBuf>,
    /// `--read-only`: no writable layer at all.
    pub readonly: bool,
    /// `--keep` or `--name`: the writable layer outlives the container (`minictr diff`, `minictr rm`).
    pub keep: bool,
    pub name: Option<String>,
    /// `--disk-layer`: a throwaway writable layer goes to the data directory, not into memory.
    pub disk_layer: bool,
}

// ANCHOR: check_layers
/// Before clone: each `--layer` must be a directory; returns the lower stack, top first: the
/// `--layer`s, then an image's own layers (`image_layers`, bottom first, above its base), then
/// ROOTFS (or the image's base layer).
pub fn lower_stack(
    rootfs: &Path,
    image_layers: &[PathBuf],
    layers: &[PathBuf],
) -> Result<Vec<PathBuf>> {
    let mut stack = Vec::with_capacity(layers.len() + image_layers.len() + 1);
    for l in layers.iter().rev() {
        let canon = l.canonicalize().map_err(|e| {
            crate::error::hint(
                format!("layer {} cannot be used: {e}", l.display()),
                "pass an existing directory to --layer",
            )
        })?;
        if !canon.is_dir() {
            bail!(crate::error::hint(
                format!("layer {} is not a directory", l.display()),
                "pass a directory to --layer"
            ));
        }
        stack.push(canon);
    }
    stack.extend(image_layers.iter().rev().cloned());
    stack.push(rootfs.to_path_buf());
    for l in &stack {
        let s = l.to_string_lossy();
        if s.contains([':', ',']) {
            bail!(crate::error::hint(
                format!("layer path {s} contains ':' or ','"),
                "overlayfs separates layers and options with these characters: move or link the layer to a plain path"
            ));
        }
    }
    Ok(stack)
}
// ANCHOR_END: check_layers

/// Filesystems that cannot hold an overlay upper layer (no d_type, no xattrs, or overlay itself).
pub fn unsuitable_upper_fs(magic: i64) -> Option<&'static str> {
    match magic {
        0x794c_7630 => Some("overlayfs"),
        0x6969 => Some("NFS"),
        0x4d44 => Some("FAT"),
        0x6573_5546 => Some("FUSE"),
        0xff53_4d42 | 0xfe53_4d42 => Some("CIFS/SMB"),
        0x5346_544e => Some("NTFS"),
        _ => None,
    }
}

/// The writable layer of one container: `upper/` receives every write, `work/` is overlayfs's
/// scratch space (it must be on the same filesystem as upper). Dropping it deletes both unless the
/// container is kept.
pub struct WritableLayer {
    /// On disk: `<data>/containers/<id>`. In memory: `/proc/self/fd/N`, the detached tmpfs.
    pub dir: PathBuf,
    /// A throwaway layer's tmpfs (see [`MemoryLayer`]); `None` on disk.
    memory: Option<MemoryLayer>,
    /// Set by [`WritableLayer::commit`] once the container has started: a layer whose container
    /// never ran is discarded even with --keep, so a failed start leaves nothing behind.
    keep: bool,
    name: Option<String>,
}

/// What `<data>/containers/<id>/container.json` records about a kept container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Kept {
    pub id: String,
    pub name: Option<String>,
    pub lowers: Vec<PathBuf>,
    pub command: Vec<String>,
    pub created: u64,
    /// The command's exit status and when it ended (`minictr ps -a`); none while it runs, or if
    /// its minictr died.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<u64>,
}

// ANCHOR: writable_layer
impl WritableLayer {
    /// Parent, before clone: create upper/ and work/, owned by the user that is root inside the
    /// container (host uid 100000 with the default user namespace), so container root can write.
    pub fn create(dir: PathBuf, owner: (u32, u32), name: Option<String>) -> Result<WritableLayer> {
        let parent = dir.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(parent).map_err(|e| {
            crate::error::hint(
                format!("failed to create {}: {e}", parent.display()),
                "writable layers go to /var/lib/minictr (root) or $XDG_DATA_HOME/minictr, ~/.local/share/minictr (rootless): set MINICTR_DATA_DIR to a directory you can write, or run with --no-overlay",
            )
        })?;
        let st = nix::sys::statfs::statfs(parent)
            .with_context(|| format!("failed to statfs {}", parent.display()))?;
        if let Some(fs) = unsuitable_upper_fs(st.filesystem_type().0 as i64) {
            bail!(crate::error::hint(
                format!("{} is on {fs}, which overlayfs cannot use for a writable layer", parent.display()),
                "set MINICTR_DATA_DIR to a directory on ext4, xfs, btrfs or tmpfs, or run with --no-overlay"
            ));
        }
        crate::explain!(
            CHAPTER,
            "mkdir({:?}/upper, work); chown({}:{}) — the container's writable layer",
            dir,
            owner.0,
            owner.1
        );
        if let Some(n) = &name {
            let id = dir
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            claim_name(n, &id)?;
        }
        // From here on, Drop undoes everything (the name included) until commit().
        let layer = WritableLayer {
            dir,
            memory: None,
            keep: false,
            name,
        };
        std::fs::create_dir(&layer.dir).with_context(|| {
            format!(
                "failed to create the writable layer {}",
                layer.dir.display()
            )
        })?;
        for sub in ["upper", "work"] {
            let p = layer.dir.join(sub);
            std::fs::create_dir(&p).with_context(|| format!("failed to create {}", p.display()))?;
            if owner != (0, 0) {
                std::os::unix::fs::chown(&p, Some(owner.0), Some(owner.1)).with_context(|| {
                    format!("failed to chown {} to {}:{}", p.display(), owner.0, owner.1)
                })?;
            }
        }
        Ok(layer)
    }

    // ANCHOR_END: writable_layer

    // ANCHOR: writable_layer_in_memory
    /// Parent, before clone, for a container that is removed at exit: upper/ and work/ in a
    /// private tmpfs instead of the data directory — nothing is created on (or deleted from) the
    /// host's disk. Never kept, so never named.
    pub fn in_memory(owner: (u32, u32)) -> Result<WritableLayer> {
        let memory = MemoryLayer::create(Some(owner))?;
        Ok(WritableLayer {
            dir: memory.dir(),
            memory: Some(memory),
            keep: false,
            name: None,
        })
    }
    // ANCHOR_END: writable_layer_in_memory

    // ANCHOR: writable_layer_use
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }

    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }

    /// Name the runtime directory that owns this layer (see [`remove_orphans`]).
    pub fn set_owner(&self, runtime_dir: &Path) -> Result<()> {
        // A symbolic link: symlink(2) creates it with its target in one step, so a concurrent
        // remove_orphans() never sees a half-written owner — no temporary file and rename needed.
        let f = self.dir.join("owner");
        std::os::unix::fs::symlink(runtime_dir, &f)
            .with_context(|| format!("failed to write {}", f.display()))
    }

    /// The container started: from now on a kept layer outlives it.
    pub fn commit(&mut self, keep: bool) {
        self.keep = keep;
    }

    /// A kept container ended: its record gets the exit status (`minictr ps -a` shows it).
    pub fn record_exit(&self, code: i32, finished: u64) -> Result<()> {
        let f = self.dir.join("container.json");
        let Ok(data) = std::fs::read(&f) else {
            return Ok(()); // not kept by name or --keep (-d alone): its runtime directory says it
        };
        let mut kept: Kept =
            serde_json::from_slice(&data).with_context(|| format!("{} is corrupt", f.display()))?;
        kept.exit_code = Some(code);
        kept.finished = Some(finished);
        self.save_kept(&kept)
    }

    /// Record a kept container so `minictr diff` and `minictr rm` can find it.
    pub fn save_kept(&self, kept: &Kept) -> Result<()> {
        let data = serde_json::to_vec_pretty(kept).context("failed to serialise container.json")?;
        let tmp = self.dir.join("container.json.tmp");
        std::fs::write(&tmp, data).with_context(|| format!("failed to write {}", tmp.display()))?;
        std::fs::rename(&tmp, self.dir.join("container.json"))
            .with_context(|| format!("failed to write {}/container.json", self.dir.display()))
    }
}

impl Drop for WritableLayer {
    fn drop(&mut self) {
        if self.memory.is_some() {
            crate::explain!(
                CHAPTER,
                "close(tmpfs) — the in-memory writable layer goes with the overlay, its last user"
            );
        } else if !self.keep {
            crate::explain!(
                CHAPTER,
                "rm -r {:?} — discarding the writable layer",
                self.dir
            );
            let _ = remove_layer(&self.dir);
            if let Some(n) = &self.name {
                release_name(n);
            }
        }
    }
}
// ANCHOR_END: writable_layer_use

// ANCHOR: memory_layer
/// The tmpfs of a throwaway writable layer: made with fsopen + fsmount and attached nowhere, so no
/// other process can see it and nothing is left on the host however minictr ends — the kernel
/// frees it (and its pages) with the last reference, the overlay's. overlayfs takes `upperdir` and
/// `workdir` inside it by the path `/proc/self/fd/N/upper`: since Linux 6.15 it accepts an upper
/// layer on a detached mount (fs/namespace.c `clone_private_mount`, "fs: allow detached mounts in
/// clone_private_mount()"). Its pages are charged to the memory cgroup of the task that writes
/// them — the container's, so `--memory` limits the layer too.
pub struct MemoryLayer {
    fd: OwnedFd,
}

impl MemoryLayer {
    /// A fresh tmpfs holding upper/ and work/, both owned by `owner` (the container's root on the
    /// host) when given. No `size=`: tmpfs's default, half of RAM, bounded by the memory cgroup.
    pub fn create(owner: Option<(u32, u32)>) -> Result<MemoryLayer> {
        let (uid, gid) = owner.unwrap_or((0, 0));
        crate::explain!(
            CHAPTER,
            "fsopen(\"tmpfs\"); fsmount() — a private tmpfs for the writable layer, attached nowhere"
        );
        crate::explain!(
            CHAPTER,
            "mkdirat(tmpfs, upper, work), owned by {uid}:{gid} — the container's writable layer, in memory"
        );
        Self::create_quietly(owner)
    }

    /// [`MemoryLayer::create`] without explaining (the probe).
    pub fn create_quietly(owner: Option<(u32, u32)>) -> Result<MemoryLayer> {
        use nix::sys::stat::Mode;
        let ctx = FsContext::open("tmpfs")?;
        ctx.set_string("mode", "0700")?;
        let fd = ctx
            .mount(0)
            .context("failed to create the writable layer's tmpfs")?;
        for sub in ["upper", "work"] {
            // 0755 like a directory made with the usual umask: upper/ is the container's "/".
            nix::sys::stat::mkdirat(&fd, sub, Mode::from_bits_truncate(0o755))
                .with_context(|| format!("failed to create {sub}/ in the layer's tmpfs"))?;
            if let Some((uid, gid)) = owner.filter(|o| *o != (0, 0)) {
                nix::unistd::fchownat(
                    &fd,
                    sub,
                    Some(uid.into()),
                    Some(gid.into()),
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .with_context(|| format!("failed to chown {sub}/ to {uid}:{gid}"))?;
            }
        }
        Ok(MemoryLayer { fd })
    }

    /// `/proc/self/fd/N`: the tmpfs's root for this process.
    pub fn dir(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }
}
// ANCHOR_END: memory_layer

/// Remove a writable layer. Rootless, overlayfs leaves its scratch directory `work/work` with mode
/// 000: its owner cannot list it, so cannot remove it — but may chmod it first.
fn remove_layer(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(
        dir.join("work/work"),
        std::fs::Permissions::from_mode(0o700),
    );
    std::fs::remove_dir_all(dir)
}

/// Claim a container name: `<data>/names/<name>` → the container's directory, created atomically
/// (symlink(2) fails with EEXIST when the name is taken). A link whose container is gone is reclaimed.
pub fn claim_name(name: &str, id: &str) -> Result<()> {
    let dir = names_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let link = dir.join(name);
    for _ in 0..2 {
        match std::os::unix::fs::symlink(format!("../containers/{id}"), &link) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if link.join("container.json").exists() || link.join("upper").exists() {
                    let owner = std::fs::read_link(&link)
                        .ok()
                        .and_then(|t| t.file_name().map(|f| f.to_string_lossy().into_owned()));
                    bail!(crate::error::hint(
                        format!(
                            "the name {name:?} is already in use by container {}",
                            owner.unwrap_or_default()
                        ),
                        format!("remove it with `minictr rm {name}` or choose another --name")
                    ));
                }
                let _ = std::fs::remove_file(&link);
            }
            Err(e) => {
                return Err(e).with_context(|| format!("failed to create {}", link.display()))
            }
        }
    }
    bail!("failed to claim the name {name:?}")
}

pub fn release_name(name: &str) {
    let _ = std::fs::remove_file(names_dir().join(name));
}

// ANCHOR: mount_detached
/// Parent, after the uid/gid maps are written: build the overlay as a detached mount (fsopen →
/// fsconfig → fsmount) for the child to attach as its root. With a user namespace every lower layer
/// is first turned into a read-only idmapped mount, so image files owned by host root appear as root
/// inside while the image itself stays untouchable.
pub fn mount_detached(
    lowers: &[PathBuf],
    layer: Option<&WritableLayer>,
    userns_of: Option<Pid>,
    staging: &Path,
) -> Result<OwnedFd> {
    let userns = userns_of
        .map(|pid| {
            std::fs::File::open(format!("/proc/{pid}/ns/user"))
                .with_context(|| format!("failed to open /proc/{pid}/ns/user"))
        })
        .transpose()?;
    let Some(ns) = &userns else {
        let joined = lowers
            .iter()
            .map(|l| l.to_string_lossy())
            .collect::<Vec<_>>()
            .join(":");
        return create(layer, |ctx| {
            crate::explain!(
                CHAPTER,
                "fsconfig(FSCONFIG_SET_STRING, \"lowerdir\", {joined:?}) — top layer first"
            );
            ctx.set_string("lowerdir", &joined)
        });
    };
    // ANCHOR_END: mount_detached
    // ANCHOR: mount_detached_idmapped
    // The detached idmapped trees must stay open until FSCONFIG_CMD_CREATE: closing the last fd of a
    // detached mount unmounts it, and overlayfs clones the lower layers only at create time.
    let trees = idmapped_lowers(lowers, ns.as_fd())?;
    // Linux 6.15+: hand overlayfs the detached trees themselves ("lowerdir+" takes an O_PATH fd,
    // which is what open_tree returns). Where the probe found that refused, go straight to staging.
    let by_fd = std::env::var_os("MINICTR_OVERLAY_LEGACY").is_none()
        && !crate::probe::get().overlay_lower_opath_fd.is_no();
    if by_fd {
        let result = create(layer, |ctx| {
            for (lower, tree) in lowers.iter().zip(&trees) {
                crate::explain!(
                    CHAPTER,
                    "fsconfig(FSCONFIG_SET_FD, \"lowerdir+\", idmapped {lower:?})"
                );
                ctx.set_fd("lowerdir+", tree.as_fd())?;
            }
            Ok(())
        });
        match result {
            Err(e) if is_unknown_parameter(&e) => {}
            other => return other,
        }
    }
    // Older kernels know only "lowerdir=PATH": the trees must be attached somewhere. We attach them
    // in a mount namespace of minictr's own, so the host never sees them, and detach them as soon as
    // overlayfs has its private clones.
    let staged = Staged::attach(&trees, staging)?;
    let joined = staged
        .dirs
        .iter()
        .map(|d| d.to_string_lossy())
        .collect::<Vec<_>>()
        .join(":");
    create(layer, |ctx| {
        crate::explain!(CHAPTER, "fsconfig(FSCONFIG_SET_STRING, \"lowerdir\", {joined:?}) — the staged idmapped layers, top first");
        ctx.set_string("lowerdir", &joined)
    })
}
// ANCHOR_END: mount_detached_idmapped

// ANCHOR: idmapped_lowers
/// Each lower layer as a detached, read-only, idmapped tree of the container's user namespace `ns`.
fn idmapped_lowers(lowers: &[PathBuf], ns: std::os::fd::BorrowedFd<'_>) -> Result<Vec<OwnedFd>> {
    let mut trees = Vec::with_capacity(lowers.len());
    for (i, lower) in lowers.iter().enumerate() {
        // Probed once per filesystem type and boot: a clear error before anything is cloned.
        if let crate::probe::Probe::No(why) = crate::probe::idmap_on(lower) {
            return Err(crate::probe::missing(
                crate::probe::Feature::IdmappedMounts,
                &why,
            ))
            .with_context(|| format!("cannot idmap the layer {}", lower.display()));
        }
        crate::explain!(
            CHAPTER,
            "open_tree({lower:?}, OPEN_TREE_CLONE) + mount_setattr(MOUNT_ATTR_IDMAP|MOUNT_ATTR_RDONLY) — lower layer {i} (0 = top), idmapped"
        );
        let tree = mountapi::clone_tree(lower)?;
        mountapi::set_attr(tree.as_fd(), mountapi::MOUNT_ATTR_IDMAP | mountapi::MOUNT_ATTR_RDONLY, true, Some(ns))
            .map_err(|e| {
                crate::error::hint(
                    format!("cannot idmap the layer {}: {e}", lower.display()),
                    "its filesystem cannot be idmapped by this kernel (tmpfs needs Linux 6.3, most network filesystems cannot): put the image on ext4, xfs or btrfs, or run with --userns=host",
                )
            })?;
        trees.push(tree);
    }
    Ok(trees)
}
// ANCHOR_END: idmapped_lowers

// ANCHOR: overlay_create
/// fsopen, the lower layers (by `lowers`), upper and work, create, fsmount.
fn create(
    layer: Option<&WritableLayer>,
    lowers: impl FnOnce(&FsContext) -> Result<()>,
) -> Result<OwnedFd> {
    // EXERCISE(ch05, "build the overlay: fsopen, fsconfig, fsmount", hint = "FsContext::open("overlay"), lowers(&ctx), upperdir and workdir of the layer, ctx.mount(read-only without a layer)")
    crate::explain!(
        CHAPTER,
        "fsopen(\"overlay\") — a new overlay filesystem context"
    );
    let ctx = FsContext::open("overlay")?;
    lowers(&ctx)?;
    if let Some(layer) = layer {
        let (upper, work) = (layer.upper(), layer.work());
        crate::explain!(
            CHAPTER,
            "fsconfig(\"upperdir\", {upper:?}); fsconfig(\"workdir\", {work:?})"
        );
        ctx.set_string("upperdir", &upper.to_string_lossy())?;
        ctx.set_string("workdir", &work.to_string_lossy())?;
    }
    crate::explain!(
        CHAPTER,
        "fsconfig(FSCONFIG_CMD_CREATE); fsmount() — the merged view, attached nowhere yet"
    );
    let attrs = if layer.is_none() {
        mountapi::MOUNT_ATTR_RDONLY
    } else {
        0
    };
    ctx.mount(attrs)
        .context("failed to create the overlay root")
    // EXERCISE_END
}

/// The kernel's overlayfs does not take this lower layer by fd: EINVAL for an unknown parameter or a
/// string-only "lowerdir+" (before Linux 6.13), EOPNOTSUPP where overlayfs still parses options the
/// old way (6.1), EBADF for an O_PATH descriptor (6.13 and 6.14; accepted since 6.15).
fn is_unknown_parameter(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| {
            matches!(
                io.raw_os_error(),
                Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) | Some(libc::EBADF)
            )
        })
}

// ANCHOR_END: overlay_create

// ANCHOR: staged
/// Idmapped lower layers attached at `<staging>/lowerN` in minictr's private mount namespace;
/// detached and removed again on drop.
struct Staged {
    dirs: Vec<PathBuf>,
}

impl Staged {
    fn attach(trees: &[OwnedFd], staging: &Path) -> Result<Staged> {
        enter_private_mount_namespace()?;
        let mut staged = Staged { dirs: Vec::new() };
        for (i, tree) in trees.iter().enumerate() {
            let dir = staging.join(format!("lower{i}"));
            std::fs::create_dir(&dir)
                .with_context(|| format!("failed to create {}", dir.display()))?;
            staged.dirs.push(dir.clone());
            crate::explain!(CHAPTER, "move_mount(idmapped layer {i}, {dir:?}) — staged for a kernel without \"lowerdir+\"");
            mountapi::attach(tree.as_fd(), &dir)?;
        }
        Ok(staged)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        for d in &self.dirs {
            let _ = nix::mount::umount2(d, nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// unshare(CLONE_NEWNS) for minictr itself (once), with "/" made private: mounts minictr makes for
/// its own use are invisible to the host and vanish with the process, however it dies.
fn enter_private_mount_namespace() -> Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.swap(true, Ordering::Relaxed) {
        return Ok(());
    }
    crate::explain!(CHAPTER, "unshare(CLONE_NEWNS); mount(NULL, \"/\", NULL, MS_REC|MS_PRIVATE) — minictr's own mount namespace");
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .context("failed to give minictr a mount namespace of its own")?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("failed to make minictr's mount namespace private")
}
// ANCHOR_END: staged

/// Rootless: the child mounts the overlay itself, inside its user namespace (Linux 5.11+), with
/// `userxattr` so overlayfs keeps its bookkeeping in user.* xattrs it may write.
pub fn mount_in_child(lowers: &[PathBuf], layer_dir: Option<&Path>, target: &Path) -> Result<()> {
    let mut data = format!(
        "lowerdir={}",
        lowers
            .iter()
            .map(|l| l.to_string_lossy())
            .collect::<Vec<_>>()
            .join(":")
    );
    if let Some(d) = layer_dir {
        data.push_str(&format!(
            ",upperdir={},workdir={}",
            d.join("upper").display(),
            d.join("work").display()
        ));
    }
    data.push_str(",userxattr");
    let flags = if layer_dir.is_none() {
        nix::mount::MsFlags::MS_RDONLY
    } else {
        nix::mount::MsFlags::empty()
    };
    crate::explain!(
        CHAPTER,
        "mount(\"overlay\", {target:?}, \"overlay\", {flags:?}, {data:?})"
    );
    nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        flags,
        Some(data.as_str()),
    )
    .map_err(|e| {
        crate::error::hint(
            format!("failed to mount the overlay on {}: {e}", target.display()),
            "unprivileged overlayfs needs Linux 5.11 or newer: run with --no-overlay",
        )
    })
}

// ANCHOR: diff
/// `minictr diff`: what the writable layer changed, like `docker diff`. `A` added, `C` changed,
/// `D` deleted. Deletions are whiteouts (character devices 0:0) and, for an opaque directory (one
/// created where a lower directory was deleted), every lower entry it hides.
pub fn diff(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<(char, String)>> {
    let mut out = Vec::new();
    walk(upper, upper, lowers, &mut out)?;
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

fn in_lowers(lowers: &[PathBuf], rel: &Path) -> bool {
    lowers
        .iter()
        .any(|l| std::fs::symlink_metadata(l.join(rel)).is_ok())
}

fn is_opaque(p: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| {
            let mut buf = [0u8; 4];
            let (Ok(path), Ok(name)) = (
                std::ffi::CString::new(p.as_os_str().as_encoded_bytes()),
                std::ffi::CString::new(*name),
            ) else {
                return false;
            };
            // SAFETY: lgetxattr writes at most buf.len() bytes into buf; both strings are NUL-terminated.
            let n = unsafe {
                libc::lgetxattr(
                    path.as_ptr(),
                    name.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            n == 1 && buf[0] == b'y'
        })
}

// ANCHOR_END: diff

// ANCHOR: diff_walk
fn walk(upper: &Path, dir: &Path, lowers: &[PathBuf], out: &mut Vec<(char, String)>) -> Result<()> {
    // EXERCISE(ch05, "walk the upper layer for diff", hint = "each entry: a 0:0 char device is D; else C if a lower layer has it, A if not; recurse into directories (an opaque one hides the lowers' entries)")
    let rd = std::fs::read_dir(dir).with_context(|| format!("failed to read {}", dir.display()))?;
    for entry in rd {
        let entry = entry.with_context(|| format!("failed to read {}", dir.display()))?;
        let path = entry.path();
        let rel = path.strip_prefix(upper).unwrap_or(&path).to_path_buf();
        let shown = format!("/{}", rel.display());
        let meta = entry
            .metadata()
            .with_context(|| format!("failed to stat {}", path.display()))?;
        if meta.file_type().is_char_device() && meta.rdev() == 0 {
            out.push(('D', shown));
            continue;
        }
        let existed = in_lowers(lowers, &rel);
        out.push((if existed { 'C' } else { 'A' }, shown.clone()));
        if meta.is_dir() {
            if existed && is_opaque(&path) {
                // Everything the lower layers had here is hidden: deleted, unless re-created above.
                for lower in lowers {
                    if let Ok(rd) = std::fs::read_dir(lower.join(&rel)) {
                        for e in rd.flatten() {
                            if std::fs::symlink_metadata(path.join(e.file_name())).is_err() {
                                out.push((
                                    'D',
                                    format!("{}/{}", shown, e.file_name().to_string_lossy()),
                                ));
                            }
                        }
                    }
                }
            }
            walk(upper, &path, lowers, out)?;
        }
    }
    Ok(())
    // EXERCISE_END
}
// ANCHOR_END: diff_walk

/// Find a kept container by id, unique id prefix, or name.
pub fn find_kept(what: &str) -> Result<(PathBuf, Kept)> {
    let by_name = names_dir().join(what);
    let dir = if by_name.join("container.json").exists() {
        by_name
            .canonicalize()
            .with_context(|| format!("failed to resolve {}", by_name.display()))?
    } else {
        let mut matches: Vec<PathBuf> = std::fs::read_dir(containers_dir())
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        matches.retain(|p| {
            p.file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with(what))
                && !what.is_empty()
        });
        match matches.len() {
            1 => matches.remove(0),
            0 => bail!(crate::error::hint(
                format!("no such container: {what}"),
                "list containers with `minictr ps -a`"
            )),
            _ => bail!(crate::error::hint(
                format!("{what:?} matches several containers"),
                "give more of the id"
            )),
        }
    };
    let data = std::fs::read(dir.join("container.json")).map_err(|e| {
        crate::error::hint(
            format!(
                "container {what} has no record ({}): {e}",
                dir.join("container.json").display()
            ),
            "it is still running, or was not started with --keep/--name",
        )
    })?;
    let kept: Kept = serde_json::from_slice(&data)
        .with_context(|| format!("{}/container.json is corrupt", dir.display()))?;
    Ok((dir, kept))
}

/// Every kept container's layer directory and record (`minictr ps -a`), oldest first.
pub fn list_kept() -> Vec<(PathBuf, Kept)> {
    let Ok(rd) = std::fs::read_dir(containers_dir()) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, Kept)> = rd
        .flatten()
        .filter_map(|e| {
            let data = std::fs::read(e.path().join("container.json")).ok()?;
            Some((e.path(), serde_json::from_slice(&data).ok()?))
        })
        .collect();
    out.sort_by_key(|(_, k)| k.created);
    out
}

/// `minictr rm` of a kept container: its writable layer and its name.
pub fn remove_kept(dir: &Path, kept: &Kept) -> Result<()> {
    crate::explain!(CHAPTER, "rm -r {dir:?} — removing the kept writable layer");
    remove_layer(dir).with_context(|| format!("failed to remove {}", dir.display()))?;
    if let Some(n) = &kept.name {
        release_name(n);
    }
    Ok(())
}

/// Writable layers that belong to no container: not kept, and the runtime directory named in their
/// `owner` file is gone (removed by hand, or by a minictr of another version). A layer without an
/// `owner` file is being created right now and is left alone.
pub fn remove_orphans(owned: &dyn Fn(&str) -> bool) {
    let Ok(rd) = std::fs::read_dir(containers_dir()) else {
        return;
    };
    for e in rd.flatten() {
        // A layer named after a runtime directory that exists is owned: no need to read its link.
        if owned(&e.file_name().to_string_lossy()) {
            continue;
        }
        let f = e.path().join("owner");
        // A symbolic link to the runtime directory (a regular file before: layers of older runs).
        let Ok(owner) = std::fs::read_link(&f)
            .map(|p| p.to_string_lossy().into_owned())
            .or_else(|_| std::fs::read_to_string(&f))
        else {
            continue;
        };
        if !owner.trim().is_empty()
            && !Path::new(owner.trim()).exists()
            && !e.path().join("container.json").exists()
        {
            crate::explain!(
                CHAPTER,
                "rm -r {:?} — a writable layer no container owns",
                e.path()
            );
            let _ = remove_layer(&e.path());
        }
    }
}

/// What state.json records of a container's writable layer (before it is created).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LayerRecord {
    pub dir: PathBuf,
    /// Kept past the container's end (`--keep`, `--name`, `-d` once running); otherwise a later
    /// minictr removes it when the run that made it died.
    pub keep: bool,
    #[serde(default)]
    pub name: Option<String>,
}

/// Stale cleanup: a crashed run's writable layer, unless it was to be kept.
pub fn cleanup_stale(rec: &LayerRecord) {
    if rec.keep {
        return;
    }
    let _ = remove_layer(&rec.dir);
    if let Some(name) = &rec.name {
        // Only if the name still points at this (now removed) container.
        let link = names_dir().join(name);
        let id = rec.dir.file_name().unwrap_or_default();
        if std::fs::read_link(&link).is_ok_and(|t| t.file_name() == Some(id)) {
            release_name(name);
        }
    }
}

/// Chapter 5's flags of `minictr run`.
#[derive(clap::Args, Debug, Default, Clone)]
#[command(next_help_heading = "Overlay: layers and the writable layer (chapter 5)")]
pub struct OverlayArgs {
    /// Extra read-only layer stacked above ROOTFS (repeatable; a later --layer lies above an earlier one)
    #[arg(long = "layer", value_name = "DIR")]
    pub layers: Vec<PathBuf>,
    /// Keep the writable layer after exit (see `minictr diff`, `minictr rm`)
    #[arg(long)]
    pub keep: bool,
    /// Name the container (unique; implies --keep)
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Mount the container's root read-only (no writable layer)
    #[arg(long)]
    pub read_only: bool,
    /// Put the writable layer of a container removed at exit on disk (the data directory), not in memory
    #[arg(long)]
    pub disk_layer: bool,
    /// Mount a tmpfs: PATH[:size=64m,mode=1777,exec,…] (default nosuid,nodev,noexec); repeatable
    #[arg(long, value_name = "PATH[:OPTS]")]
    pub tmpfs: Vec<String>,
    /// Stage switch (ch05): no overlay — the rootfs itself is the container's root, writes go to the image
    #[arg(long)]
    pub no_overlay: bool,
}

impl OverlayArgs {
    /// Step 1: the layer stack, or `None` with `--no-overlay` (or `--read-only` with nothing to
    /// stack and no mount points to make: the image itself is then mounted read-only).
    /// `mount_points`: files will be mounted on paths the image may lack (the network's /etc
    /// files); with `--read-only` they are made in a writable layer that is thrown away.
    /// `image_layers`: an image's layers above its base (`rootfs`), bottom first (chapter 9).
    pub fn config(
        &self,
        rootfs: &Path,
        image_layers: &[PathBuf],
        mount_points: bool,
    ) -> Result<Option<Config>> {
        if let Some(n) = &self.name {
            validate_name(n)?;
        }
        if self.no_overlay
            && (!self.layers.is_empty() || self.keep || self.name.is_some() || self.disk_layer)
        {
            bail!(crate::error::hint(
                "--layer, --keep, --name and --disk-layer need the overlay stage",
                "drop --no-overlay"
            ));
        }
        if self.read_only && (self.keep || self.name.is_some()) {
            bail!(crate::error::hint(
                "--read-only has no writable layer to keep",
                "drop --keep/--name or --read-only"
            ));
        }
        let stacked = !self.layers.is_empty() || !image_layers.is_empty();
        if self.no_overlay || (self.read_only && !stacked && !mount_points) {
            return Ok(None);
        }
        Ok(Some(Config {
            lowers: lower_stack(rootfs, image_layers, &self.layers)?,
            readonly: self.read_only && !mount_points,
            keep: self.keep || self.name.is_some(),
            name: self.name.clone(),
            disk_layer: self.disk_layer,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmpfs_options() {
        let t = parse_tmpfs("/tmp").unwrap();
        assert!(t.flags.contains(nix::mount::MsFlags::MS_NOEXEC));
        assert_eq!(t.data, "");
        let t = parse_tmpfs("/run:size=64m,mode=1777,exec").unwrap();
        assert!(!t.flags.contains(nix::mount::MsFlags::MS_NOEXEC));
        assert_eq!(t.data, "size=64m,mode=1777");
        for bad in [
            "tmp",
            "/",
            "/x:size=12Q",
            "/x:mode=999",
            "/x:bogus",
            "/x:size=",
        ] {
            assert!(parse_tmpfs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        for ok in ["web", "a.b-c_d", "1x"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", "_x", "a b", "a/b", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn layer_order_is_top_first_and_rootfs_last() {
        let d = std::env::temp_dir().join(format!("minictr-ovl-{}", std::process::id()));
        let (a, b) = (d.join("a"), d.join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let s = lower_stack(Path::new("/img"), &[], &[a.clone(), b.clone()]).unwrap();
        assert_eq!(s, vec![b.clone(), a.clone(), PathBuf::from("/img")]);
        assert!(lower_stack(Path::new("/img"), &[], &[d.join("missing")]).is_err());
        // An image's layers (bottom first) lie between its base and the --layers.
        let (l1, l2) = (PathBuf::from("/store/l1"), PathBuf::from("/store/l2"));
        let s = lower_stack(
            Path::new("/store/l0"),
            &[l1.clone(), l2.clone()],
            std::slice::from_ref(&a),
        )
        .unwrap();
        assert_eq!(s, vec![a, l2, l1, PathBuf::from("/store/l0")]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn refused_descriptors_fall_back_to_staged_layers() {
        use anyhow::Context;
        let refused = |errno| {
            Err::<(), _>(std::io::Error::from_raw_os_error(errno))
                .context("overlay refused lowerdir+")
                .unwrap_err()
        };
        // EINVAL before 6.13, EOPNOTSUPP on 6.1's option parser, EBADF for O_PATH on 6.13-6.14.
        for errno in [libc::EINVAL, libc::EOPNOTSUPP, libc::EBADF] {
            assert!(is_unknown_parameter(&refused(errno)), "{errno}");
        }
        // A real failure (no space, no permission) is reported, not papered over.
        for errno in [libc::ENOSPC, libc::EPERM, libc::ENOENT] {
            assert!(!is_unknown_parameter(&refused(errno)), "{errno}");
        }
    }

    #[test]
    fn diff_reads_whiteouts_and_changes() {
        let d = std::env::temp_dir().join(format!("minictr-diff-{}", std::process::id()));
        let (lower, upper) = (d.join("lower"), d.join("upper"));
        std::fs::create_dir_all(lower.join("etc")).unwrap();
        std::fs::create_dir_all(lower.join("bin")).unwrap();
        std::fs::write(lower.join("etc/motd"), "old").unwrap();
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::fs::write(upper.join("etc/motd"), "new").unwrap();
        std::fs::write(upper.join("etc/new"), "x").unwrap();
        let have_root = nix::unistd::geteuid().is_root();
        if have_root {
            std::fs::create_dir_all(upper.join("bin")).unwrap();
            nix::sys::stat::mknod(
                &upper.join("bin/ls"),
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::empty(),
                0,
            )
            .unwrap();
        }
        let got = diff(&upper, &[lower]).unwrap();
        let mut want = vec![
            ('C', "/etc".to_string()),
            ('C', "/etc/motd".into()),
            ('A', "/etc/new".into()),
        ];
        if have_root {
            want.insert(0, ('C', "/bin".into()));
            want.insert(1, ('D', "/bin/ls".into()));
        }
        assert_eq!(got, want);
        std::fs::remove_dir_all(&d).unwrap();
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
        fn any_tmpfs_spec_is_parsed_or_clearly_refused(s in input(&["/", "tmp", "/run", ":", ",", "size=", "mode=", "64", "1777", "999", "m", "k", "g", "%", "Q", "exec", "noexec", "ro", "rw", "suid", "nodev", "bogus", "-1", "="])) {
            clear(&parse_tmpfs(&s))?;
        }

        #[test]
        fn any_container_name_is_accepted_or_clearly_refused(s in input(&["web", "a", "1", "-", "_", ".", "/", " ", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"])) {
            clear(&validate_name(&s))?;
        }
    }
}
