//! Resolving paths inside the container's root without ever leaving it (chapter 2, and the symlink
//! escapes of chapter 7).
//!
//! A rootfs is untrusted: `/mnt/x` inside it may be a symlink to `/etc` *of the host* while we are
//! still in the host's mount tree. Every mount target is therefore opened with
//! `openat2(RESOLVE_IN_ROOT)`, which resolves `..` and symlinks as if the rootfs were `/`, and then
//! mounted on through `/proc/self/fd/N` so the kernel uses exactly the inode we checked.

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::{openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// The container's root directory on the host, held open.
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// `/proc/self/fd/N`: a path that names exactly the file behind `fd`, for mount(2).
pub fn fd_path(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// The normal components of an absolute in-container path (`/a/./b` → `["a", "b"]`). `..` is kept:
/// RESOLVE_IN_ROOT clamps it at the root.
fn components(inner: &Path) -> Vec<&std::ffi::OsStr> {
    inner
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s),
            Component::ParentDir => Some(std::ffi::OsStr::new("..")),
            _ => None,
        })
        .collect()
}

fn join(parts: &[&std::ffi::OsStr]) -> PathBuf {
    let mut p = PathBuf::new();
    for c in parts {
        p.push(c);
    }
    if p.as_os_str().is_empty() {
        p.push(".");
    }
    p
}

/// Whether `name` in `dir` is a symbolic link (not followed).
fn is_symlink(dir: BorrowedFd<'_>, name: &std::ffi::OsStr) -> bool {
    fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK)
}

impl Root {
    /// Open `path` (a host path, already a mount point when used for mounting).
    pub fn open(path: &Path) -> Result<Root> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("failed to open the root filesystem {}", path.display()))?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn host_path(&self) -> &Path {
        &self.path
    }

    // ANCHOR: resolve
    /// openat2(root, inner, flags, RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS).
    pub fn resolve(&self, inner: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
        let rel = join(&components(inner));
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        // With `..` in the path, RESOLVE_IN_ROOT answers EAGAIN when any mount or rename happened on
        // the machine during the lookup (it cannot prove `..` stayed inside): retry, as openat2(2)
        // says. Other containers starting at the same time make this common, not theoretical.
        let mut tries = 0;
        loop {
            match openat2(&self.fd, rel.as_path(), how) {
                Err(Errno::EAGAIN) if tries < 99 => tries += 1,
                result => return result,
            }
        }
    }
    // ANCHOR_END: resolve

    /// Create every missing directory of `inner` inside the root and return an O_PATH fd to the
    /// last one. A component that is a symlink is followed *inside* the root; a dangling symlink is
    /// refused rather than guessed at.
    pub fn mkdir_all(&self, inner: &Path) -> Result<OwnedFd> {
        self.mkdir_parts(&components(inner))
    }

    /// [`Root::mkdir_all`] of the path made of `parts`: the whole path is tried first (it usually
    /// exists: one system call), and only when it is missing its parent, recursively — so a
    /// missing `/dev/pts` costs a lookup of `dev/pts`, of `dev`, one mkdirat and one more lookup,
    /// not a walk from the root.
    fn mkdir_parts(&self, parts: &[&std::ffi::OsStr]) -> Result<OwnedFd> {
        let path = join(parts);
        let dir = OFlag::O_PATH | OFlag::O_DIRECTORY;
        let (name, parent) = match (self.resolve(&path, dir), parts.split_last()) {
            (Ok(fd), _) => return Ok(fd),
            (Err(Errno::ENOENT | Errno::ENOTDIR), Some(split)) => split,
            (Err(e), _) => {
                return Err(e).with_context(|| {
                    format!("failed to resolve /{} inside the rootfs", path.display())
                })
            }
        };
        let parent = self.mkdir_parts(parent)?;
        nix::sys::stat::mkdirat(parent.as_fd(), *name, Mode::from_bits_truncate(0o755))
            .or_else(|e| if e == Errno::EEXIST { Ok(()) } else { Err(e) })
            .with_context(|| format!("failed to create /{} inside the rootfs", path.display()))?;
        match self.resolve(&path, dir) {
            Ok(fd) => Ok(fd),
            // mkdirat found a name there already (EEXIST) that does not lead to a directory.
            Err(Errno::ENOENT) if is_symlink(parent.as_fd(), name) => {
                bail!(crate::error::hint(
                    format!(
                        "/{} is a symlink to a path that does not exist in the rootfs",
                        path.display()
                    ),
                    "create the directory it points to inside the rootfs, or choose another path"
                ))
            }
            Err(Errno::ENOTDIR) => {
                bail!("/{} inside the rootfs is not a directory", path.display())
            }
            Err(e) => Err(e)
                .with_context(|| format!("failed to open /{} inside the rootfs", path.display())),
        }
    }

    /// Make sure `inner` exists as a regular file (creating its parents and an empty file, mode
    /// 0644, if needed) and return an O_PATH fd to it — a mount point for a file bind.
    pub fn mkfile(&self, inner: &Path) -> Result<OwnedFd> {
        if let Ok(fd) = self.resolve(inner, OFlag::O_PATH) {
            return Ok(fd);
        }
        let parent = inner.parent().unwrap_or(Path::new("/"));
        let name = inner
            .file_name()
            .with_context(|| format!("{} has no file name", inner.display()))?;
        let dir = self.mkdir_all(parent)?;
        // A dangling symlink at `name` would make O_CREAT follow it: O_NOFOLLOW|O_EXCL refuses that.
        let dirfd = nix::fcntl::openat(
            dir.as_fd(),
            ".",
            OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("failed to open {} inside the rootfs", parent.display()))?;
        match nix::fcntl::openat(
            dirfd.as_fd(),
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        ) {
            Ok(_) | Err(Errno::EEXIST) => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("failed to create {} inside the rootfs", inner.display())
                })
            }
        }
        self.resolve(inner, OFlag::O_PATH)
            .with_context(|| format!("failed to open {} inside the rootfs", inner.display()))
    }

    /// Create the symlinks `inner` → `target` (replacing nothing: an existing entry is left alone).
    /// Links in the same directory share one lookup of it.
    pub fn symlinks(&self, links: &[(&str, &str)]) -> Result<()> {
        let mut dir: Option<(&Path, OwnedFd)> = None;
        for (link, target) in links {
            let inner = Path::new(link);
            let parent = inner.parent().unwrap_or(Path::new("/"));
            let name = inner
                .file_name()
                .with_context(|| format!("{} has no file name", inner.display()))?;
            // The previous link's directory when it is the same, else a lookup (made if missing).
            let fd = match dir.take() {
                Some((p, fd)) if p == parent => fd,
                _ => self.mkdir_all(parent)?,
            };
            match nix::unistd::symlinkat(*target, fd.as_fd(), name) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "failed to create the symlink {} -> {target}",
                            inner.display()
                        )
                    })
                }
            }
            dir = Some((parent, fd));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tmp(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("minictr-safepath-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let d = tmp("in-root");
        let root = d.join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        // An absolute symlink and a ../.. symlink: on the host both would reach the host's /etc.
        symlink("/etc", root.join("abs")).unwrap();
        symlink("../../../../../../etc", root.join("rel")).unwrap();
        let r = Root::open(&root).unwrap();
        for p in ["/abs/inner", "/rel/x"] {
            let fd = r.mkdir_all(Path::new(p)).unwrap();
            let real = std::fs::read_link(fd_path(fd.as_fd())).unwrap();
            assert!(
                real.starts_with(root.join("etc")),
                "{p}: {real:?} escaped {root:?}"
            );
        }
        let f = r.mkfile(Path::new("/abs/file")).unwrap();
        let real = std::fs::read_link(fd_path(f.as_fd())).unwrap();
        assert_eq!(real, root.join("etc/file"));
        assert!(!Path::new("/etc/inner").exists() && !Path::new("/etc/file").exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_dangling_symlink_is_refused() {
        let d = tmp("dangling");
        let root = d.join("root");
        std::fs::create_dir_all(&root).unwrap();
        symlink("/nonexistent-minictr-target", root.join("mnt")).unwrap();
        let r = Root::open(&root).unwrap();
        let err = r.mkdir_all(Path::new("/mnt/x")).unwrap_err();
        assert!(format!("{err:#}").contains("symlink"), "{err:#}");
        assert!(!Path::new("/nonexistent-minictr-target").exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn dotdot_is_clamped_at_the_root() {
        let d = tmp("dotdot");
        std::fs::create_dir_all(d.join("root")).unwrap();
        let r = Root::open(&d.join("root")).unwrap();
        let fd = r.mkdir_all(Path::new("/../../a")).unwrap();
        let real = std::fs::read_link(fd_path(fd.as_fd())).unwrap();
        assert_eq!(real, d.join("root/a"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn missing_levels_are_made_and_a_file_in_the_way_is_named() {
        let d = tmp("levels");
        let root = d.join("root");
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::write(root.join("a/file"), "").unwrap();
        let r = Root::open(&root).unwrap();
        let fd = r.mkdir_all(Path::new("/a/b/c/d")).unwrap();
        let real = std::fs::read_link(fd_path(fd.as_fd())).unwrap();
        assert_eq!(real, root.join("a/b/c/d"));
        for p in ["/a/file", "/a/file/x/y"] {
            let err = format!("{:#}", r.mkdir_all(Path::new(p)).unwrap_err());
            assert!(
                err.contains("/a/file inside the rootfs is not a directory"),
                "{p}: {err}"
            );
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn symlinks_are_made_inside_the_root_and_existing_entries_kept() {
        let d = tmp("links");
        let root = d.join("root");
        std::fs::create_dir_all(&root).unwrap();
        // dev is a symlink to /etc: the links must land in root/etc, not the host's /etc.
        std::fs::create_dir_all(root.join("etc")).unwrap();
        symlink("/etc", root.join("dev")).unwrap();
        std::fs::write(root.join("etc/kept"), "").unwrap();
        let r = Root::open(&root).unwrap();
        r.symlinks(&[
            ("/dev/fd", "/proc/self/fd"),
            ("/dev/kept", "x"),
            ("/new/l", "y"),
        ])
        .unwrap();
        assert_eq!(
            std::fs::read_link(root.join("etc/fd")).unwrap(),
            Path::new("/proc/self/fd")
        );
        assert!(root.join("etc/kept").is_file());
        assert_eq!(
            std::fs::read_link(root.join("new/l")).unwrap(),
            Path::new("y")
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
