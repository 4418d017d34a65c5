//! Supervise (chapter 8; steps 6 and 12 of the start sequence): wait until the container's first process
//! has exec'd (or says why it could not), then pass signals on and relay its terminal until it exits.
//! `minictr run` and `minictr exec` supervise the same way.

use crate::error::{self, CommandError, EXIT_RUNTIME};
use crate::lifecycle::pty;
use crate::sync::{Channel, Msg};
use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::os::fd::AsFd;
use std::time::Instant;

/// Chapter 1 teaches signal forwarding (PID 1 in a PID namespace); its narration names that chapter.
const CHAPTER: &str = "ch01 namespaces";

/// Signals minictr passes on to the container's first process.
pub const FORWARDED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Block the signals minictr forwards (and SIGCHLD, and SIGWINCH with a terminal) and read them
/// from a signalfd instead. Returns the mask to restore in the child before exec.
pub fn block_signals(tty: bool) -> Result<(SigSet, SignalFd)> {
    let mut mask = SigSet::empty();
    for s in FORWARDED {
        mask.add(s);
    }
    mask.add(Signal::SIGCHLD);
    if tty {
        mask.add(Signal::SIGWINCH);
    }
    let mut old_mask = SigSet::empty();
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut old_mask))
        .context("failed to block signals")?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC)
        .context("failed to create a signalfd")?;
    Ok((old_mask, sfd))
}

/// How the wait for exec ended.
pub enum Started {
    /// The command was exec'd (EOF on the channel); with `-t`, its terminal to relay.
    Running(Option<pty::Relay>),
    /// The child said why it failed, and was reaped: its pid is gone.
    Failed(anyhow::Error),
}

// ANCHOR: wait_started
/// Wait until the child has exec'd: EOF on the channel means the command runs (close-on-exec
/// closed the child's end); a message means it failed before. `what` names the step in errors.
pub fn wait_started(ch: &Channel, pid: Pid, interactive: bool, what: &str) -> Result<Started> {
    let mut relay = None;
    loop {
        match ch.recv()? {
            None => return Ok(Started::Running(relay)),
            Some(Msg::Pty(master)) => relay = Some(pty::Relay::new(master, interactive)),
            Some(Msg::Failed { code, message }) => {
                let _ = waitpid(pid, None);
                if code == EXIT_RUNTIME {
                    return Ok(Started::Failed(anyhow::anyhow!("{what} failed: {message}")));
                }
                return Ok(Started::Failed(CommandError { code, message }.into()));
            }
            Some(Msg::Go(_)) => bail!("unexpected message from the container process"),
        }
    }
}
// ANCHOR_END: wait_started

// ANCHOR: wait
/// Pass signals on and wait for the child; returns its exit code, or 128+N if signal N killed it.
/// With `-t`, also relay the terminal: the container's output to our stdout, our stdin (with `-i`)
/// to the container, and window-size changes.
pub fn wait_forwarding(pid: Pid, sfd: SignalFd, mut relay: Option<pty::Relay>) -> Result<i32> {
    // With -t, when the user's terminal hangs up the container gets SIGHUP and a grace period; a
    // PID 1 without a SIGHUP handler ignores it (chapter 8), so then it is killed.
    let mut hangup_deadline: Option<Instant> = None;
    loop {
        if hangup_deadline.is_some_and(|d| Instant::now() >= d) {
            crate::explain!(
                CHAPTER,
                "kill({pid}, SIGKILL) — the terminal is gone and the container ignored SIGHUP"
            );
            let _ = kill(pid, Signal::SIGKILL);
            hangup_deadline = None;
        }
        let Some([sig_ready, out_ready, in_ready]) = poll_ready(&sfd, &relay, hangup_deadline)?
        else {
            continue;
        };
        // The terminal closed (EIO): stop polling it; the exit status still comes via SIGCHLD.
        if out_ready && relay.as_ref().is_some_and(|r| !r.pump_output()) {
            relay = None;
        }
        if in_ready {
            if let Some(r) = &mut relay {
                r.pump_input();
            }
        }
        if !sig_ready {
            continue;
        }
        let info = match sfd.read_signal() {
            Ok(Some(info)) => info,
            Ok(None) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("failed to read signals"),
        };
        if let Some(code) = on_signal(pid, &info, &relay, &mut hangup_deadline)? {
            return Ok(code);
        }
    }
}
// ANCHOR_END: wait

/// Wait for a signal, the container's terminal output or our stdin (until `deadline`); which of
/// the three is ready, or `None` when interrupted.
fn poll_ready(
    sfd: &SignalFd,
    relay: &Option<pty::Relay>,
    deadline: Option<Instant>,
) -> Result<Option<[bool; 3]>> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let timeout = match deadline {
        Some(d) => PollTimeout::try_from(d.saturating_duration_since(Instant::now()))
            .unwrap_or(PollTimeout::MAX),
        None => PollTimeout::NONE,
    };
    let stdin = std::io::stdin();
    let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
    if let Some(r) = relay {
        fds.push(PollFd::new(r.master.as_fd(), PollFlags::POLLIN));
        if r.stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
    }
    match poll(&mut fds, timeout) {
        Ok(_) => {}
        Err(nix::errno::Errno::EINTR) => return Ok(None),
        Err(e) => return Err(e).context("poll failed"),
    }
    let ready = |i: usize| {
        fds.get(i)
            .and_then(|f| f.revents())
            .is_some_and(|r| !r.is_empty())
    };
    Ok(Some([ready(0), ready(1), ready(2)]))
}

// ANCHOR: on_signal
/// One signal minictr received: SIGCHLD may mean the container exited (its code is returned);
/// SIGWINCH resizes its terminal; the others are forwarded.
fn on_signal(
    pid: Pid,
    info: &nix::sys::signalfd::siginfo,
    relay: &Option<pty::Relay>,
    hangup_deadline: &mut Option<Instant>,
) -> Result<Option<i32>> {
    match Signal::try_from(info.ssi_signo as i32).ok() {
        Some(Signal::SIGCHLD) => match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(status) => {
                if let Some(code) = error::status_code(status) {
                    if let Some(r) = relay {
                        r.drain();
                    }
                    return Ok(Some(code));
                }
            }
            Err(nix::errno::Errno::ECHILD) => return Ok(Some(EXIT_RUNTIME)),
            Err(e) => return Err(e).context("failed to wait for the container"),
        },
        Some(Signal::SIGWINCH) => {
            if let Some(r) = relay {
                pty::copy_winsize(std::io::stdin().as_fd(), r.master.as_fd());
            }
        }
        // A terminal's Ctrl-C (si_code SI_KERNEL) already went to the whole foreground process
        // group, the container included: passing it on again would deliver it twice.
        // (With -t the container has a terminal of its own and gets nothing from ours.)
        Some(_) if info.ssi_code == libc::SI_KERNEL && relay.is_none() => {}
        Some(Signal::SIGHUP) if relay.is_some() => {
            crate::explain!(CHAPTER, "kill({pid}, SIGHUP) — the terminal hung up");
            let _ = kill(pid, Signal::SIGHUP);
            *hangup_deadline = Some(Instant::now() + std::time::Duration::from_secs(5));
        }
        Some(sig) => {
            crate::explain!(
                CHAPTER,
                "kill({pid}, {sig}) — forwarding a signal minictr received"
            );
            let _ = kill(pid, sig);
        }
        None => {}
    }
    Ok(None)
}
// ANCHOR_END: on_signal
