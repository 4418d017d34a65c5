//! Unpacking one layer tar into its own directory, safely, with OCI whiteouts turned into
//! overlayfs whiteouts.
//!
//! Every entry is created relative to a directory file descriptor reached from the layer's root
//! one component at a time with `O_NOFOLLOW`: a `..`, an absolute path or a symlink planted by an
//! earlier entry can never lead a write outside the layer.

use anyhow::{bail, Context, Result};
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Who unpacks: root keeps the tar's owners and device nodes; a user cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    Root,
    Rootless,
}

/// What could not be represented (rootless), said once per layer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub entries: u64,
    pub bytes: u64,
    pub whiteouts: u64,
    pub opaque: u64,
    pub devices_skipped: u64,
    pub foreign_owners: u64,
    pub xattrs_skipped: u64,
}

/// The extended attributes a file carries in PAX headers (`SCHILY.xattr.NAME`), restricted to file
/// capabilities and `user.*`: a layer must not smuggle in overlayfs's own `*.overlay.*` xattrs
/// (redirects, metacopy) or security labels.
fn file_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    if let Ok(Some(exts)) = entry.pax_extensions() {
        for ext in exts.flatten() {
            let Some(name) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) else {
                continue;
            };
            if name == "security.capability"
                || (name.starts_with("user.") && !name.starts_with("user.overlay."))
            {
                out.push((name.to_string(), ext.value_bytes().to_vec()));
            }
        }
    }
    out
}

// ANCHOR: whiteout
/// The xattr that marks a directory opaque for overlayfs: `trusted.*` when the overlay is mounted
/// by real root (minictr's parent, idmapped lowers), `user.*` when it is mounted inside a user
/// namespace with `userxattr` (rootless).
pub fn opaque_xattr(p: Privilege) -> &'static str {
    match p {
        Privilege::Root => "trusted.overlay.opaque",
        Privilege::Rootless => "user.overlay.opaque",
    }
}

/// An OCI whiteout entry: `.wh..wh..opq` makes its directory opaque; `.wh.NAME` deletes NAME.
#[derive(Debug, PartialEq, Eq)]
pub enum Whiteout<'a> {
    Opaque,
    Delete(&'a OsStr),
    None,
}

pub fn classify(name: &OsStr) -> Whiteout<'_> {
    let b = name.as_bytes();
    if b == b".wh..wh..opq" {
        Whiteout::Opaque
    } else if let Some(rest) = b.strip_prefix(b".wh.") {
        Whiteout::Delete(OsStr::from_bytes(rest))
    } else {
        Whiteout::None
    }
}
// ANCHOR_END: whiteout

/// A tar path made relative and checked: no `..`, no empty result. Leading `/` and `./` go.
pub fn clean_path(p: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                bail!("layer entry {} leaves the layer ('..')", p.display())
            }
        }
    }
    Ok(out)
}

/// Open (creating as needed, mode 0755) the directory `rel` beneath `root` without following any
/// symlink: each component is opened with O_NOFOLLOW|O_DIRECTORY, so a symlink or a file in the
/// way is an error, never a detour.
fn open_dir_beneath(root: &OwnedFd, rel: &Path) -> Result<OwnedFd> {
    let mut fd = nix::unistd::dup(root).context("dup")?;
    for c in rel.components() {
        let Component::Normal(name) = c else { continue };
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let next = match nix::fcntl::openat(fd.as_fd(), name, flags, Mode::empty()) {
            Ok(f) => f,
            Err(nix::errno::Errno::ENOENT) => {
                nix::sys::stat::mkdirat(fd.as_fd(), name, Mode::from_bits_truncate(0o755))
                    .with_context(|| format!("failed to create directory {}", rel.display()))?;
                nix::fcntl::openat(fd.as_fd(), name, flags, Mode::empty())
                    .with_context(|| format!("failed to open {}", rel.display()))?
            }
            Err(e) => bail!(
                "layer entry below {} goes through a symlink or a non-directory ({e}): refused",
                rel.display()
            ),
        };
        fd = next;
    }
    Ok(fd)
}

/// Remove whatever is at `name` in `dir` (a directory recursively), so a later tar entry replaces it.
fn remove_existing(dir: &OwnedFd, dir_path: &Path, name: &OsStr, keep_dir: bool) -> Result<()> {
    match nix::sys::stat::fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Err(_) => Ok(()),
        Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR => {
            if keep_dir {
                return Ok(());
            }
            // The path was reached without symlinks; remove_dir_all does not follow them either.
            let p = dir_path.join(name);
            std::fs::remove_dir_all(&p).with_context(|| format!("failed to remove {}", p.display()))
        }
        Ok(_) => nix::unistd::unlinkat(dir.as_fd(), name, nix::unistd::UnlinkatFlags::NoRemoveDir)
            .with_context(|| format!("failed to replace {}", dir_path.join(name).display())),
    }
}

fn set_xattr(fd: &impl AsRawFd, name: &str, value: &[u8]) -> Result<()> {
    let n = CString::new(name).context("xattr name")?;
    // SAFETY: fd is an open file or directory, n is NUL-terminated, value is valid for value.len() bytes.
    let r = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("setxattr {name}"));
    }
    Ok(())
}

// ANCHOR: unpack
/// Unpack the tar stream `reader` into `dest` (an empty directory). Directories get their final
/// mode and time at the end, so a read-only directory can still be filled.
pub fn unpack(reader: impl Read, dest: &Path, privilege: Privilege) -> Result<Report> {
    let root: OwnedFd = File::open(dest)
        .with_context(|| format!("failed to open {}", dest.display()))?
        .into();
    let mut report = Report::default();
    let mut dirs: Vec<(PathBuf, u32, i64)> = Vec::new();
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().context("failed to read the layer tar")? {
        let mut entry = entry.context("failed to read the layer tar")?;
        let Some(at) = Target::of(&root, dest, &entry)? else {
            continue; // the layer's root "./" itself
        };
        report.entries += 1;
        if whiteout(&at, privilege, &mut report)? {
            continue;
        }
        let kind = at.header.entry_type();
        if (kind.is_block_special() || kind.is_character_special())
            && privilege == Privilege::Rootless
        {
            report.devices_skipped += 1;
            continue;
        }
        if privilege == Privilege::Rootless && (at.uid != 0 || at.gid != 0) {
            report.foreign_owners += 1;
        }
        remove_existing(&at.parent, &at.parent_path, &at.name, kind.is_dir())?;
        if kind.is_dir() {
            make_dir(&at, privilege)?;
            dirs.push((at.path.clone(), at.mode, at.mtime));
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            report.bytes += write_file(&at, &mut entry, privilege, &mut report)?;
        } else if kind.is_symlink() {
            make_symlink(&at, &entry, privilege)?;
        } else if kind.is_hard_link() {
            make_hardlink(&root, &at, &entry)?;
        } else if kind.is_block_special() || kind.is_character_special() || kind.is_fifo() {
            make_node(&at, privilege)?;
        }
        // Global/extended headers are consumed by the tar crate; anything else is skipped.
    }
    finish_dirs(&root, dirs)?;
    Ok(report)
}
// ANCHOR_END: unpack

/// One tar entry's place in the layer: its parent directory (opened beneath the layer's root,
/// never through a symlink), its name, and the header's owner, mode and time.
struct Target {
    parent: OwnedFd,
    parent_path: PathBuf,
    name: std::ffi::OsString,
    path: PathBuf,
    header: tar::Header,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
}

impl Target {
    fn of(root: &OwnedFd, dest: &Path, entry: &tar::Entry<impl Read>) -> Result<Option<Target>> {
        let path = clean_path(&entry.path().context("a layer entry has a bad path")?)?;
        let Some(name) = path.file_name().map(OsStr::to_os_string) else {
            return Ok(None);
        };
        let parent_rel = path.parent().unwrap_or(Path::new(""));
        let parent = open_dir_beneath(root, parent_rel)?;
        let parent_path = dest.join(parent_rel);
        let header = entry.header().clone();
        Ok(Some(Target {
            parent,
            parent_path,
            name,
            mode: header.mode().unwrap_or(0o644) & 0o7777,
            uid: header.uid().unwrap_or(0) as u32,
            gid: header.gid().unwrap_or(0) as u32,
            mtime: header.mtime().unwrap_or(0) as i64,
            header,
            path,
        }))
    }

    fn perm(&self) -> Mode {
        Mode::from_bits_truncate(self.mode)
    }
}

/// OCI whiteouts become overlayfs ones: `.wh..wh..opq` an opaque directory, `.wh.NAME` a 0/0
/// character device. Returns whether the entry was one.
fn whiteout(at: &Target, privilege: Privilege, report: &mut Report) -> Result<bool> {
    let (parent, parent_path, path) = (&at.parent, &at.parent_path, &at.path);
    match classify(&at.name) {
        Whiteout::Opaque => {
            set_xattr(parent, opaque_xattr(privilege), b"y")
                .with_context(|| format!("failed to mark {} opaque", parent_path.display()))?;
            report.opaque += 1;
            Ok(true)
        }
        Whiteout::Delete(hidden) => {
            if hidden.is_empty() || hidden.as_bytes().starts_with(b".wh.") {
                bail!("bad whiteout {} in the layer", path.display());
            }
            remove_existing(parent, parent_path, hidden, false)?;
            // A whiteout is a character device 0/0; unprivileged users may create exactly this
            // device since Linux 5.8.
            nix::sys::stat::mknodat(parent.as_fd(), hidden, SFlag::S_IFCHR, Mode::empty(), 0)
                .with_context(|| {
                    format!(
                        "failed to create the whiteout {}",
                        parent_path.join(hidden).display()
                    )
                })?;
            report.whiteouts += 1;
            Ok(true)
        }
        Whiteout::None => Ok(false),
    }
}

fn make_dir(at: &Target, privilege: Privilege) -> Result<()> {
    match nix::sys::stat::mkdirat(
        at.parent.as_fd(),
        at.name.as_os_str(),
        Mode::from_bits_truncate(0o700),
    ) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => bail!("failed to create {}: {e}", at.path.display()),
    }
    if privilege == Privilege::Root {
        chown_at(&at.parent, &at.name, at.uid, at.gid)?;
    }
    Ok(())
}

/// A regular file: created exclusively (never through a symlink), written, then owner, mode and
/// extended attributes in the order that keeps each (a chown clears set-uid bits and file
/// capabilities). Returns the bytes written.
fn write_file(
    at: &Target,
    entry: &mut tar::Entry<impl Read>,
    privilege: Privilege,
    report: &mut Report,
) -> Result<u64> {
    let path = &at.path;
    let fd = nix::fcntl::openat(
        at.parent.as_fd(),
        at.name.as_os_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .with_context(|| format!("failed to create {}", path.display()))?;
    let mut f = File::from(fd);
    let xattrs = file_xattrs(entry);
    let bytes = std::io::copy(entry, &mut f)
        .with_context(|| format!("failed to write {}", path.display()))?;
    if privilege == Privilege::Root {
        nix::unistd::fchown(&f, Some(at.uid.into()), Some(at.gid.into()))
            .with_context(|| format!("failed to chown {}", path.display()))?;
    }
    // After the chown, which clears set-uid/set-gid bits.
    nix::sys::stat::fchmod(&f, at.perm())
        .with_context(|| format!("failed to chmod {}", path.display()))?;
    // Last: a chown drops security.capability.
    for (key, value) in xattrs {
        if privilege == Privilege::Root || key.starts_with("user.") {
            set_xattr(&f, &key, &value)
                .with_context(|| format!("failed to set {key} on {}", path.display()))?;
        } else {
            report.xattrs_skipped += 1;
        }
    }
    set_times(&at.parent, &at.name, at.mtime)?;
    Ok(bytes)
}

fn make_symlink(at: &Target, entry: &tar::Entry<impl Read>, privilege: Privilege) -> Result<()> {
    let target = entry
        .link_name()
        .context("bad symlink target")?
        .context("a symlink without a target")?;
    // The target is stored as is: it is resolved only inside the container, whose root is this
    // image.
    nix::unistd::symlinkat(target.as_os_str(), at.parent.as_fd(), at.name.as_os_str())
        .with_context(|| format!("failed to create the symlink {}", at.path.display()))?;
    if privilege == Privilege::Root {
        chown_at(&at.parent, &at.name, at.uid, at.gid)?;
    }
    set_times(&at.parent, &at.name, at.mtime)
}

/// A hardlink: its target is resolved beneath the layer's root too, so it stays inside the layer.
fn make_hardlink(root: &OwnedFd, at: &Target, entry: &tar::Entry<impl Read>) -> Result<()> {
    let path = &at.path;
    let target = entry
        .link_name()
        .context("bad hardlink target")?
        .context("a hardlink without a target")?;
    let target = clean_path(&target)?;
    let (Some(tname), tparent) = (target.file_name(), target.parent().unwrap_or(Path::new("")))
    else {
        bail!("hardlink {} has an empty target", path.display());
    };
    let tdir = open_dir_beneath(root, tparent)?;
    nix::unistd::linkat(
        tdir.as_fd(),
        tname,
        at.parent.as_fd(),
        at.name.as_os_str(),
        AtFlags::empty(),
    )
    .with_context(|| {
        format!(
            "failed to link {} to {} (hardlinks stay inside the layer)",
            path.display(),
            target.display()
        )
    })?;
    Ok(())
}

/// A device node or a FIFO (device nodes only as root: the caller skips them rootless).
fn make_node(at: &Target, privilege: Privilege) -> Result<()> {
    let (kind, header, perm) = (at.header.entry_type(), &at.header, at.perm());
    let (parent, name, path) = (&at.parent, &at.name, &at.path);
    let (sflag, dev) = if kind.is_fifo() {
        (SFlag::S_IFIFO, 0)
    } else {
        let major = header.device_major().ok().flatten().unwrap_or(0) as u64;
        let minor = header.device_minor().ok().flatten().unwrap_or(0) as u64;
        let s = if kind.is_block_special() {
            SFlag::S_IFBLK
        } else {
            SFlag::S_IFCHR
        };
        (s, libc::makedev(major as u32, minor as u32))
    };
    nix::sys::stat::mknodat(parent.as_fd(), name.as_os_str(), sflag, perm, dev)
        .with_context(|| format!("failed to create {}", path.display()))?;
    if privilege == Privilege::Root {
        chown_at(parent, name, at.uid, at.gid)?;
    }
    nix::sys::stat::fchmodat(
        parent.as_fd(),
        name.as_os_str(),
        perm,
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .with_context(|| format!("failed to chmod {}", path.display()))?;
    set_times(parent, name, at.mtime)?;
    Ok(())
}

/// Deepest first: a directory's mode and time are set after everything inside it is written.
fn finish_dirs(root: &OwnedFd, mut dirs: Vec<(PathBuf, u32, i64)>) -> Result<()> {
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0.components().count()));
    for (rel, mode, mtime) in dirs {
        let parent = open_dir_beneath(root, rel.parent().unwrap_or(Path::new("")))?;
        let name = rel.file_name().context("directory without a name")?;
        nix::sys::stat::fchmodat(
            parent.as_fd(),
            name,
            Mode::from_bits_truncate(mode),
            nix::sys::stat::FchmodatFlags::NoFollowSymlink,
        )
        .or_else(|e| {
            if e == nix::errno::Errno::EOPNOTSUPP {
                nix::sys::stat::fchmodat(
                    parent.as_fd(),
                    name,
                    Mode::from_bits_truncate(mode),
                    nix::sys::stat::FchmodatFlags::FollowSymlink,
                )
            } else {
                Err(e)
            }
        })
        .with_context(|| format!("failed to chmod {}", rel.display()))?;
        set_times(&parent, name, mtime)?;
    }
    Ok(())
}

fn chown_at(dir: &OwnedFd, name: &OsStr, uid: u32, gid: u32) -> Result<()> {
    nix::unistd::fchownat(
        dir.as_fd(),
        name,
        Some(uid.into()),
        Some(gid.into()),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .with_context(|| format!("failed to chown {name:?} to {uid}:{gid}"))
}

fn set_times(dir: &OwnedFd, name: &OsStr, mtime: i64) -> Result<()> {
    let t = nix::sys::time::TimeSpec::new(mtime, 0);
    nix::sys::stat::utimensat(
        dir.as_fd(),
        name,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .with_context(|| format!("failed to set the time of {name:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("minictr-unpack-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A tar built in memory: (path, kind, data or link target).
    fn tar_of(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            // Write the raw name so '..' and absolute paths reach the unpacker as a hostile tar would.
            let name = path.as_bytes();
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            if kind.is_symlink() || kind.is_hard_link() {
                h.set_link_name(data).unwrap();
                h.set_size(0);
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            } else {
                h.set_size(if kind.is_file() { data.len() as u64 } else { 0 });
                h.set_cksum();
                b.append(&h, data.as_bytes()).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    fn privilege() -> Privilege {
        if nix::unistd::geteuid().is_root() {
            Privilege::Root
        } else {
            Privilege::Rootless
        }
    }

    #[test]
    fn whiteouts_become_overlayfs_whiteouts() {
        use tar::EntryType as T;
        let d = tmp("wh");
        let t = tar_of(&[
            ("etc/", T::Directory, ""),
            ("etc/.wh.motd", T::Regular, ""),
            ("usr/share/", T::Directory, ""),
            ("usr/share/.wh..wh..opq", T::Regular, ""),
            ("usr/share/kept", T::Regular, "x"),
        ]);
        let r = unpack(&t[..], &d, privilege()).unwrap();
        assert_eq!((r.whiteouts, r.opaque), (1, 1));
        let m = std::fs::symlink_metadata(d.join("etc/motd")).unwrap();
        assert!(m.file_type().is_char_device() && m.rdev() == 0);
        assert!(!d.join("etc/.wh.motd").exists());
        assert!(!d.join("usr/share/.wh..wh..opq").exists());
        assert_eq!(
            std::fs::read_to_string(d.join("usr/share/kept")).unwrap(),
            "x"
        );
        let mut buf = [0u8; 4];
        let p = CString::new(d.join("usr/share").as_os_str().as_bytes()).unwrap();
        let n = CString::new(opaque_xattr(privilege())).unwrap();
        // SAFETY: buf is valid for 4 bytes; both strings are NUL-terminated.
        let len = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), 4) };
        assert_eq!((len, buf[0]), (1, b'y'));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn nothing_escapes_the_layer() {
        use tar::EntryType as T;
        let d = tmp("esc");
        let layer = d.join("layer");
        std::fs::create_dir(&layer).unwrap();
        for hostile in [
            vec![("../evil", T::Regular, "x")],
            vec![("a/../../evil", T::Regular, "x")],
            vec![("link", T::Symlink, ".."), ("link/evil", T::Regular, "x")],
            vec![("abs", T::Symlink, "/tmp"), ("abs/evil", T::Regular, "x")],
            vec![("hl", T::Link, "../outside")],
        ] {
            let t = tar_of(&hostile);
            assert!(unpack(&t[..], &layer, privilege()).is_err(), "{hostile:?}");
            assert!(!d.join("evil").exists() && !Path::new("/tmp/evil").exists());
        }
        // Absolute entry paths are taken relative to the layer, like tar does.
        let t = tar_of(&[
            ("/etc/hostname", T::Regular, "box"),
            ("bin/sh", T::Symlink, "/bin/busybox"),
        ]);
        unpack(&t[..], &layer, privilege()).unwrap();
        assert_eq!(
            std::fs::read_to_string(layer.join("etc/hostname")).unwrap(),
            "box"
        );
        assert_eq!(
            std::fs::read_link(layer.join("bin/sh")).unwrap(),
            Path::new("/bin/busybox")
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn file_xattrs_pass_but_overlay_xattrs_do_not() {
        let d = tmp("xattr");
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([
            ("SCHILY.xattr.user.note", &b"kept"[..]),
            ("SCHILY.xattr.trusted.overlay.redirect", &b"/etc"[..]),
            ("SCHILY.xattr.user.overlay.redirect", &b"/etc"[..]),
        ])
        .unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_path("f").unwrap();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let t = b.into_inner().unwrap();
        unpack(&t[..], &d, privilege()).unwrap();
        let get = |name: &str| {
            let mut buf = [0u8; 16];
            let p = CString::new(d.join("f").as_os_str().as_bytes()).unwrap();
            let n = CString::new(name).unwrap();
            // SAFETY: buf is valid for 16 bytes; both strings are NUL-terminated.
            let len =
                unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), 16) };
            (len >= 0).then(|| buf[..len as usize].to_vec())
        };
        assert_eq!(get("user.note"), Some(b"kept".to_vec()));
        assert_eq!(get("trusted.overlay.redirect"), None);
        assert_eq!(get("user.overlay.redirect"), None);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn hardlinks_inside_the_layer_share_the_inode() {
        use tar::EntryType as T;
        let d = tmp("hl");
        let t = tar_of(&[
            ("bin/", T::Directory, ""),
            ("bin/busybox", T::Regular, "#!"),
            ("bin/sh", T::Link, "bin/busybox"),
            ("./usr/bin/env", T::Link, "/bin/busybox"),
        ]);
        unpack(&t[..], &d, privilege()).unwrap();
        let ino = |p: &str| std::fs::metadata(d.join(p)).unwrap().ino();
        assert_eq!(ino("bin/sh"), ino("bin/busybox"));
        assert_eq!(ino("usr/bin/env"), ino("bin/busybox"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn classify_names() {
        assert_eq!(classify(OsStr::new(".wh..wh..opq")), Whiteout::Opaque);
        assert_eq!(
            classify(OsStr::new(".wh.motd")),
            Whiteout::Delete(OsStr::new("motd"))
        );
        assert_eq!(classify(OsStr::new("motd")), Whiteout::None);
    }
}
