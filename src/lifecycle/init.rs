//! `--init`: a tiny init as the container's PID 1 (chapter 8).
//!
//! PID 1 of a PID namespace is special: the kernel delivers it only the signals it installed a handler
//! for (so a plain `sleep` as PID 1 ignores SIGTERM and Ctrl-C), and every orphan of the namespace
//! becomes its child (so a PID 1 that never calls wait() collects zombies). With `--init`, minictr's
//! own code stays PID 1: it starts the command as PID 2 in its own process group, passes signals on,
//! reaps every child, and exits with the command's status.

use crate::error::CommandError;
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

pub const CHAPTER: &str = "ch08 lifecycle";

/// Signals init passes on to the command: what minictr forwards, plus the terminal's resize and
/// SIGCONT (init sits in the container's terminal session).
const FORWARDED: [Signal; 8] = {
    let f = super::supervise::FORWARDED;
    [
        f[0],
        f[1],
        f[2],
        f[3],
        f[4],
        f[5],
        Signal::SIGWINCH,
        Signal::SIGCONT,
    ]
};

// ANCHOR: init
/// Become the init: fork; the child restores `mask` and runs `exec` (which returns only on failure);
/// this process forwards signals and reaps until the command exits, then returns its exit code.
pub fn run(mask: &SigSet, exec: impl FnOnce() -> CommandError) -> i32 {
    // EXERCISE(ch08, "become the init", hint = "close fds from 3, block FORWARDED + SIGCHLD into a signalfd, fork: the child restores the mask and execs; the parent calls reap_and_forward")
    // Init never execs, so close-on-exec protects nothing here: close every inherited descriptor
    // but stdio for real (minictr's lock, channel and pipes must not live on in the container).
    let _ = crate::fds::close_from(3);
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    set.add(Signal::SIGCHLD);
    if nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None).is_err() {
        return crate::error::EXIT_RUNTIME;
    }
    let Ok(sfd) = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC) else {
        return crate::error::EXIT_RUNTIME;
    };
    crate::explain!(
        CHAPTER,
        "fork() — minictr stays PID 1 (init), the command becomes PID 2"
    );
    // SAFETY: this process is single-threaded; the child only execs (or reports and exits).
    let child = match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => {
            let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
            let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(mask), None);
            let err = exec();
            eprintln!("minictr: {}", err.message);
            // SAFETY: leave without running the init's destructors.
            unsafe { libc::_exit(err.code) }
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(_) => return crate::error::EXIT_RUNTIME,
    };
    // The command gets its own process group and, with a terminal, the foreground: Ctrl-C reaches it
    // (and its children) directly, not init.
    let _ = nix::unistd::setpgid(child, child);
    let stdin = std::io::stdin();
    if nix::unistd::isatty(&stdin).unwrap_or(false) {
        let _ = nix::unistd::tcsetpgrp(&stdin, child);
    }
    reap_and_forward(child, &sfd)
    // EXERCISE_END
}
// ANCHOR_END: init

// ANCHOR: reap
/// PID 1's loop: reap every child (the command, and orphans re-parented to us) and pass signals on
/// to the command; return the command's exit code.
fn reap_and_forward(child: Pid, sfd: &SignalFd) -> i32 {
    // EXERCISE(ch08, "reap and forward", hint = "on SIGCHLD waitpid(-1, WNOHANG) until StillAlive, return the command's status_code; any other signal: kill(child, sig)")
    loop {
        let info = match sfd.read_signal() {
            Ok(Some(i)) => i,
            Ok(None) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return crate::error::EXIT_RUNTIME,
        };
        match Signal::try_from(info.ssi_signo as i32) {
            Ok(Signal::SIGCHLD) => {
                // Reap everything: the command, and any orphan re-parented to us.
                loop {
                    match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                        Ok(WaitStatus::StillAlive) | Err(_) => break,
                        Ok(status) => {
                            if status.pid() == Some(child) {
                                if let Some(code) = crate::error::status_code(status) {
                                    return code;
                                }
                            } else {
                                crate::explain!(
                                    CHAPTER,
                                    "wait4() reaped orphan {:?}",
                                    status.pid()
                                );
                            }
                        }
                    }
                }
            }
            Ok(sig) => {
                crate::explain!(
                    CHAPTER,
                    "init: kill({child}, {sig}) — passing on a signal PID 1 received"
                );
                let _ = kill(child, sig);
            }
            Err(_) => {}
        }
    }
    // EXERCISE_END
}
// ANCHOR_END: reap
