//! `-t`: a pseudo-terminal from the container's own devpts instance (chapter 8).
//!
//! The child opens `/dev/ptmx` *inside* the container (after pivot_root), so the terminal is
//! `/dev/pts/0` of the container's devpts, owned by container root and group tty (5). It makes the
//! pty its controlling terminal and stdio, and sends the master end to the parent, which relays bytes
//! between the user's terminal (in raw mode while attached) and the master, and copies the window size.

use anyhow::{Context, Result};
use nix::fcntl::OFlag;
use nix::sys::termios::{self, SetArg, Termios};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

pub const CHAPTER: &str = "ch08 lifecycle";

// ANCHOR: child_pty
/// Child, after pivot_root: open a new pty in the container's devpts, make it the controlling
/// terminal and stdio, bind it to /dev/console, and return the master for the parent.
pub fn open_in_container() -> Result<OwnedFd> {
    crate::explain!(CHAPTER, "open(\"/dev/ptmx\"); ioctl(TIOCSPTLCK, 0); ioctl(TIOCGPTPEER) — a pty of the container's devpts");
    let master = nix::fcntl::open(
        "/dev/ptmx",
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .context("failed to open /dev/ptmx in the container")?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int; TIOCGPTPEER returns a new fd for the slave end.
    let slave = unsafe {
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) < 0 {
            return Err(std::io::Error::last_os_error()).context("failed to unlock the pty");
        }
        let fd = libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY,
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error())
                .context("failed to open the pty's slave end");
        }
        OwnedFd::from_raw_fd(fd)
    };
    // /dev/console is the terminal too (runtime-spec): a bind of the slave.
    let slave_path = std::fs::read_link(format!("/proc/self/fd/{}", slave.as_raw_fd()))
        .context("failed to name the pty")?;
    let console = std::path::Path::new("/dev/console");
    if !console.exists() {
        std::fs::File::create(console).context("failed to create /dev/console")?;
    }
    crate::explain!(CHAPTER, "mount({slave_path:?}, \"/dev/console\", NULL, MS_BIND, NULL); setsid(); ioctl(TIOCSCTTY); dup2 → 0, 1, 2");
    nix::mount::mount(
        Some(&slave_path),
        console,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .context("failed to bind the pty onto /dev/console")?;
    nix::unistd::setsid().context("setsid failed")?;
    // SAFETY: TIOCSCTTY takes an int argument (0: do not steal).
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(std::io::Error::last_os_error())
            .context("failed to make the pty the controlling terminal");
    }
    // The slave is dropped on return, which is fine: 0–2 keep the terminal open.
    nix::unistd::dup2_stdin(&slave)
        .and_then(|()| nix::unistd::dup2_stdout(&slave))
        .and_then(|()| nix::unistd::dup2_stderr(&slave))
        .context("failed to attach the pty to stdio")?;
    Ok(master)
}
// ANCHOR_END: child_pty

/// The user's terminal in raw mode for as long as this value lives: every key goes to the container
/// (Ctrl-C becomes a byte the container's terminal turns into SIGINT for its foreground job).
pub struct RawMode {
    fd: RawFd,
    saved: Termios,
}

impl RawMode {
    pub fn enter(fd: BorrowedFd<'_>) -> Option<RawMode> {
        let saved = termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode {
            fd: fd.as_raw_fd(),
            saved,
        })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: fd 0 outlives this value (it is the process's stdin).
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let _ = termios::tcsetattr(fd, SetArg::TCSANOW, &self.saved);
    }
}

/// Copy the window size of the user's terminal to the container's.
pub fn copy_winsize(from: BorrowedFd<'_>, to: BorrowedFd<'_>) {
    // SAFETY: winsize is plain data; TIOCGWINSZ/TIOCSWINSZ read/write exactly one.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(from.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

/// Write all of `buf` to `fd` (retrying short writes and EINTR/EAGAIN).
pub fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) {
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => {
                let _ = nix::poll::poll(
                    &mut [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLOUT)],
                    nix::poll::PollTimeout::from(100u16),
                );
            }
            Err(_) => return,
        }
    }
}

/// The parent's end of a `-t` container: the master, and whether stdin is forwarded (`-i`).
pub struct Relay {
    pub master: OwnedFd,
    pub stdin_open: bool,
    _raw: Option<RawMode>,
}

impl Relay {
    pub fn new(master: OwnedFd, interactive: bool) -> Relay {
        let stdin = std::io::stdin();
        let raw = if interactive {
            RawMode::enter(stdin.as_fd())
        } else {
            None
        };
        copy_winsize(stdin.as_fd(), master.as_fd());
        Relay {
            master,
            stdin_open: interactive,
            _raw: raw,
        }
    }

    /// Read what the container wrote and put it on our stdout; false at EOF/EIO (slave closed).
    pub fn pump_output(&self) -> bool {
        let mut buf = [0u8; 8192];
        match nix::unistd::read(&self.master, &mut buf) {
            Ok(0) => false,
            Ok(n) => {
                write_all(std::io::stdout().as_fd(), &buf[..n]);
                true
            }
            Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => true,
            Err(_) => false,
        }
    }

    /// Forward what the user typed; stops forwarding at EOF of our stdin.
    pub fn pump_input(&mut self) {
        let mut buf = [0u8; 4096];
        match nix::unistd::read(std::io::stdin().as_fd(), &mut buf) {
            Ok(0) | Err(nix::errno::Errno::EIO) | Err(nix::errno::Errno::EBADF) => {
                self.stdin_open = false
            }
            Ok(n) => write_all(self.master.as_fd(), &buf[..n]),
            Err(_) => {}
        }
    }

    /// After the container exited: whatever is still buffered in the master.
    pub fn drain(&self) {
        let _ = nix::fcntl::fcntl(
            &self.master,
            nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK),
        );
        let mut buf = [0u8; 8192];
        while let Ok(n) = nix::unistd::read(&self.master, &mut buf) {
            if n == 0 {
                break;
            }
            write_all(std::io::stdout().as_fd(), &buf[..n]);
        }
    }
}
