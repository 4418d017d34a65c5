//! Not a stage: the raw clone3(2) system call (clone(2) as the fallback), the one place minictr
//! creates a process in new namespaces. Chapter 1's `namespaces::clone_child` decides the flags and
//! what the child runs; this module only knows the kernel's calling convention.

use nix::errno::Errno;
use nix::unistd::Pid;
use std::os::fd::RawFd;

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

/// Which side of the clone this process is on.
pub enum Forked {
    Parent(Pid),
    Child,
}

// ANCHOR: clone3
/// clone3(flags, exit_signal=SIGCHLD), with CLONE_INTO_CGROUP when `cgroup_fd` is given. Without
/// CLONE_VM and without a stack it behaves like fork(): the child gets a copy of the address space.
/// Kernels before 5.3 (or a seccomp filter that hides clone3) get classic clone, same semantics.
///
/// # Safety
/// As for `fork`: the calling process must be single-threaded, and the child must leave with
/// [`exit_child`], never returning into the parent's stack frames.
pub unsafe fn clone3(flags: u64, cgroup_fd: Option<RawFd>) -> Result<Forked, Errno> {
    let mut args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if let Some(fd) = cgroup_fd {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    // SAFETY: the kernel reads `args`, valid for the call; fork semantics as the caller promised.
    let mut ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret == -1 && Errno::last() == Errno::ENOSYS && cgroup_fd.is_none() {
        // SAFETY: as above; a NULL stack means "share the parent's stack pointer": fork semantics.
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
        -1 => Err(Errno::last()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(Pid::from_raw(pid as i32))),
    }
}
// ANCHOR_END: clone3

/// End a cloned child with `code`: _exit(2), without running the atexit handlers or destructors
/// that belong to the parent's copy of the state.
pub fn exit_child(code: i32) -> ! {
    // SAFETY: _exit only ends the process; nothing of ours runs after it.
    unsafe { libc::_exit(code) }
}
