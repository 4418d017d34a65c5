//! The parent and the container's first process talk over a socketpair (chapter 1).
//!
//! Parent → child: "go" (optionally with file descriptors, such as a detached root mount), sent once the
//! parent has done its work between clone and exec (uid maps, cgroup, veth).
//! Child → parent: nothing while all is well — the child's end is close-on-exec, so a successful
//! `execve` shows up in the parent as end-of-file. If the child fails before exec it sends one
//! `Failed` message with the exit code to use (125, 126 or 127) and the reason.

use anyhow::{bail, Context, Result};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const TAG_GO: u8 = 1;
const TAG_FAILED: u8 = 2;
const TAG_PTY: u8 = 3;
const MAX_MSG: usize = 4096;
const MAX_FDS: usize = 32;

/// One end of the parent/child channel.
pub struct Channel {
    fd: OwnedFd,
}

/// A message on the channel.
#[derive(Debug)]
pub enum Msg {
    /// Parent → child: continue; carries any file descriptors the parent prepared.
    Go(Vec<OwnedFd>),
    /// Child → parent: setup or exec failed; exit with `code`.
    Failed { code: i32, message: String },
    /// Child → parent: the master end of the container's pseudo-terminal (`-t`).
    Pty(OwnedFd),
}

/// A connected pair (parent end, child end). Both ends are close-on-exec.
pub fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .context("failed to create the parent/child socketpair")?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn send_go(&self, fds: &[RawFd]) -> Result<()> {
        self.send_tag_with_fds(TAG_GO, fds)
            .context("failed to tell the container process to continue")
    }

    pub fn send_pty(&self, master: RawFd) -> Result<()> {
        self.send_tag_with_fds(TAG_PTY, &[master])
            .context("failed to hand the terminal to the parent")
    }

    fn send_tag_with_fds(&self, tag: u8, fds: &[RawFd]) -> Result<()> {
        let tag = [tag];
        let iov = [IoSlice::new(&tag)];
        let cmsgs = if fds.is_empty() {
            vec![]
        } else {
            vec![ControlMessage::ScmRights(fds)]
        };
        sendmsg::<()>(self.fd.as_raw_fd(), &iov, &cmsgs, MsgFlags::empty(), None)?;
        Ok(())
    }

    pub fn send_failed(&self, code: i32, message: &str) -> Result<()> {
        let mut buf = Vec::with_capacity(5 + message.len());
        buf.push(TAG_FAILED);
        buf.extend_from_slice(&code.to_le_bytes());
        let text = message.as_bytes();
        buf.extend_from_slice(&text[..text.len().min(MAX_MSG - 5)]);
        let iov = [IoSlice::new(&buf)];
        sendmsg::<()>(self.fd.as_raw_fd(), &iov, &[], MsgFlags::empty(), None)
            .context("failed to report an error to the parent")?;
        Ok(())
    }

    /// Whether the other end is still open (a non-blocking peek: EOF means it is gone).
    pub fn peer_alive(&self) -> bool {
        let mut b = [0u8; 1];
        // MSG_PEEK leaves any message in place; EAGAIN (nothing to read yet) means alive.
        let n = nix::sys::socket::recv(
            self.fd.as_raw_fd(),
            &mut b,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
        );
        !matches!(n, Ok(0))
    }

    /// Wait for the next message; `None` means the other end was closed (for the parent: the child
    /// exec'd or died; for the child: the parent died).
    pub fn recv(&self) -> Result<Option<Msg>> {
        let mut buf = vec![0u8; MAX_MSG];
        let mut cmsg_space = nix::cmsg_space!([RawFd; MAX_FDS]);
        let (bytes, fds) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg_space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(msg) => {
                    let mut fds = Vec::new();
                    for c in msg.cmsgs().context("bad control message on the channel")? {
                        if let ControlMessageOwned::ScmRights(raw) = c {
                            // SAFETY: SCM_RIGHTS gave us fresh descriptors that nothing else owns.
                            fds.extend(raw.into_iter().map(|r| unsafe { OwnedFd::from_raw_fd(r) }));
                        }
                    }
                    break (msg.bytes, fds);
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).context("failed to read from the parent/child channel"),
            }
        };
        if bytes == 0 {
            return Ok(None);
        }
        match buf[0] {
            TAG_GO => Ok(Some(Msg::Go(fds))),
            TAG_PTY => match fds.into_iter().next() {
                Some(fd) => Ok(Some(Msg::Pty(fd))),
                None => bail!("terminal message without a descriptor"),
            },
            TAG_FAILED if bytes >= 5 => {
                let code = i32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]);
                let message = String::from_utf8_lossy(&buf[5..bytes]).into_owned();
                Ok(Some(Msg::Failed { code, message }))
            }
            t => bail!("unexpected message tag {t} on the parent/child channel"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_round_trips_and_eof_is_none() {
        let (a, b) = pair().unwrap();
        b.send_failed(127, "sh: not found").unwrap();
        match a.recv().unwrap() {
            Some(Msg::Failed { code, message }) => {
                assert_eq!(code, 127);
                assert_eq!(message, "sh: not found");
            }
            other => panic!("unexpected {other:?}"),
        }
        drop(b);
        assert!(a.recv().unwrap().is_none());
    }

    #[test]
    fn go_carries_file_descriptors() {
        let (a, b) = pair().unwrap();
        let f = std::fs::File::open("/").unwrap();
        a.send_go(&[f.as_raw_fd()]).unwrap();
        match b.recv().unwrap() {
            Some(Msg::Go(fds)) => assert_eq!(fds.len(), 1),
            other => panic!("unexpected {other:?}"),
        }
    }
}
