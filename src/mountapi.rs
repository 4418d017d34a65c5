//! Thin, safe wrappers around Linux's new mount API (fsopen, fsconfig, fsmount, open_tree,
//! mount_setattr, move_mount — Linux 5.2+, idmapped mounts 5.12+). Not a stage: the stages use these
//! to build mounts as file descriptors before attaching them anywhere.

use anyhow::{Context, Result};
use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_SET_FD: libc::c_uint = 5;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn cstr(s: &str) -> Result<CString> {
    CString::new(s).with_context(|| format!("{s:?} contains a NUL byte"))
}

fn path_cstr(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .with_context(|| format!("{} contains a NUL byte", p.display()))
}

fn fd_result(ret: libc::c_long) -> std::io::Result<OwnedFd> {
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as i32) })
}

/// A filesystem context from fsopen(2): configure it, then [`FsContext::mount`] it.
pub struct FsContext {
    fd: OwnedFd,
    fstype: String,
}

impl FsContext {
    pub fn open(fstype: &str) -> Result<FsContext> {
        let t = cstr(fstype)?;
        // SAFETY: fsopen reads a NUL-terminated string.
        let fd = fd_result(unsafe { libc::syscall(libc::SYS_fsopen, t.as_ptr(), FSOPEN_CLOEXEC) })
            .with_context(|| format!("fsopen({fstype:?}) failed"))?;
        Ok(FsContext {
            fd,
            fstype: fstype.to_string(),
        })
    }

    /// The kernel's own explanation of the last failure ("e overlay: …"), if it left one.
    fn kernel_log(&self) -> String {
        let mut out = Vec::new();
        let mut buf = [0u8; 512];
        // One message per read(2); ENODATA when there are no more.
        while let Ok(n) = nix::unistd::read(&self.fd, &mut buf) {
            if n == 0 {
                break;
            }
            out.push(String::from_utf8_lossy(&buf[..n]).trim().to_string());
        }
        out.join("; ")
    }

    fn config(
        &self,
        cmd: libc::c_uint,
        key: Option<&str>,
        value: *const libc::c_void,
        aux: i32,
    ) -> Result<()> {
        let k = key.map(cstr).transpose()?;
        // SAFETY: fsconfig reads the key and value pointers, which are valid for the call (or NULL).
        let ret = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                self.fd.as_raw_fd(),
                cmd,
                k.as_ref().map_or(std::ptr::null(), |k| k.as_ptr()),
                value,
                aux,
            )
        };
        if ret < 0 {
            let err = std::io::Error::last_os_error();
            let log = self.kernel_log();
            let what = key.unwrap_or("create");
            return Err(err).with_context(|| {
                if log.is_empty() {
                    format!("{} refused {what}", self.fstype)
                } else {
                    format!("{} refused {what} ({log})", self.fstype)
                }
            });
        }
        Ok(())
    }

    pub fn set_string(&self, key: &str, value: &str) -> Result<()> {
        let v = cstr(value)?;
        self.config(FSCONFIG_SET_STRING, Some(key), v.as_ptr().cast(), 0)
    }

    pub fn set_fd(&self, key: &str, fd: BorrowedFd<'_>) -> Result<()> {
        self.config(FSCONFIG_SET_FD, Some(key), std::ptr::null(), fd.as_raw_fd())
    }

    /// FSCONFIG_CMD_CREATE + fsmount: a detached mount, attached nowhere yet.
    pub fn mount(self, attrs: u64) -> Result<OwnedFd> {
        self.config(FSCONFIG_CMD_CREATE, None, std::ptr::null(), 0)?;
        // SAFETY: fsmount takes integers only.
        fd_result(unsafe {
            libc::syscall(
                libc::SYS_fsmount,
                self.fd.as_raw_fd(),
                FSMOUNT_CLOEXEC,
                attrs,
            )
        })
        .with_context(|| format!("fsmount({}) failed", self.fstype))
    }
}

/// open_tree(OPEN_TREE_CLONE|AT_RECURSIVE): a detached copy of the mount tree at `path`.
pub fn clone_tree(path: &Path) -> Result<OwnedFd> {
    let c = path_cstr(path)?;
    // SAFETY: open_tree reads a NUL-terminated path.
    fd_result(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_RECURSIVE as libc::c_uint,
        )
    })
    .with_context(|| format!("open_tree({}) failed", path.display()))
}

/// mount_setattr on a mount fd (AT_EMPTY_PATH), optionally recursive and with a user namespace for
/// MOUNT_ATTR_IDMAP.
pub fn set_attr(
    mnt: BorrowedFd<'_>,
    attr_set: u64,
    recursive: bool,
    userns: Option<BorrowedFd<'_>>,
) -> std::io::Result<()> {
    let attr = MountAttr {
        attr_set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.map_or(0, |u| u.as_raw_fd() as u64),
    };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: mount_setattr reads `attr`, valid for the call, and an empty path.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Where [`move_mount`] attaches a detached mount.
enum Onto<'a> {
    Path(&'a Path),
    Fd(BorrowedFd<'a>),
}

/// move_mount(2) of a detached mount (MOVE_MOUNT_F_EMPTY_PATH) onto a path or a directory fd.
fn move_mount(mnt: BorrowedFd<'_>, onto: Onto<'_>) -> Result<()> {
    let (dirfd, path, flags) = match onto {
        Onto::Path(p) => (libc::AT_FDCWD, path_cstr(p)?, MOVE_MOUNT_F_EMPTY_PATH),
        Onto::Fd(fd) => (
            fd.as_raw_fd(),
            CString::default(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        ),
    };
    // SAFETY: move_mount reads two NUL-terminated strings valid for the call; the fds are borrowed
    // for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            dirfd,
            path.as_ptr(),
            flags,
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}

/// Attach a detached mount on `target`.
pub fn attach(mnt: BorrowedFd<'_>, target: &Path) -> Result<()> {
    move_mount(mnt, Onto::Path(target))
        .with_context(|| format!("move_mount onto {} failed", target.display()))
}

/// Attach a detached mount on a directory (or file) held open, e.g. resolved inside a rootfs.
pub fn attach_at(mnt: BorrowedFd<'_>, target: BorrowedFd<'_>) -> Result<()> {
    move_mount(mnt, Onto::Fd(target))
}
