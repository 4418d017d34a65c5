//! Not a stage: descriptor hygiene with close_range(2) (Linux 5.9, CLOSE_RANGE_CLOEXEC 5.11). The one
//! place minictr calls it; the stages and the orchestrator say what they want closed and when.

use anyhow::{Context, Result};

// ANCHOR: close_range
const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;

fn close_range(first: u32, flags: libc::c_uint) -> std::io::Result<()> {
    // SAFETY: close_range takes plain integers and touches no memory. Callers own every descriptor
    // from `first` up: nothing else in this (single-threaded) process uses them afterwards.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, flags) };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
// ANCHOR_END: close_range

/// Mark every descriptor from `first` up close-on-exec: they live until execve, not after it.
pub fn cloexec_from(first: u32) -> Result<()> {
    close_range(first, CLOSE_RANGE_CLOEXEC)
        .with_context(|| format!("close_range({first}, ~0, CLOSE_RANGE_CLOEXEC) failed"))
}

/// Close every descriptor from `first` up, now (a process that never execs, or is about to exit).
pub fn close_from(first: u32) -> Result<()> {
    close_range(first, 0).with_context(|| format!("close_range({first}, ~0, 0) failed"))
}
