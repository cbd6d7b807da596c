//! The typed channel between the runtime and the container init: a SOCK_SEQPACKET
//! socketpair, so every message keeps its boundaries. Used on both sides of the clone.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};

/// A message between the runtime and the container init.
#[derive(Debug, PartialEq, Eq)]
pub enum Msg {
    /// Helper → runtime: the init's host pid.
    Pid(i32),
    /// Runtime → init: id maps are written and the cgroup joined; go on.
    Go,
    /// Init → runtime: mounts are made, `pivot_root` is next: run the runtime-namespace
    /// hooks (prestart, createRuntime) now.
    Hooks,
    /// Runtime → init: those hooks succeeded; the state JSON for the init's own hooks
    /// (createContainer, then startContainer, one document per line).
    HooksDone(Vec<u8>),
    /// Init → runtime: set up, waiting for `start`.
    Ready,
    /// Init or helper → runtime: setup failed, with the error text.
    Error(String),
}

/// One end of the channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

/// Largest message (a state JSON with annotations for the init's hooks).
pub const MAX: usize = 65536;

impl Channel {
    /// A connected pair (both ends close-on-exec).
    pub fn pair() -> Result<(Channel, Channel), Errno> {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    /// Sends one message.
    pub fn send(&self, msg: &Msg) -> Result<(), Errno> {
        let mut buf = Vec::with_capacity(16);
        match msg {
            Msg::Pid(p) => {
                buf.push(b'P');
                buf.extend_from_slice(&p.to_le_bytes());
            }
            Msg::Go => buf.push(b'G'),
            Msg::Ready => buf.push(b'R'),
            Msg::Hooks => buf.push(b'H'),
            Msg::HooksDone(p) => {
                if p.len() >= MAX {
                    return Err(Errno::EMSGSIZE);
                }
                buf.push(b'D');
                buf.extend_from_slice(p);
            }
            Msg::Error(e) => {
                buf.push(b'E');
                let b = e.as_bytes();
                buf.extend_from_slice(&b[..b.len().min(MAX - 1)]);
            }
        }
        loop {
            match send(self.fd.as_raw_fd(), &buf, MsgFlags::MSG_NOSIGNAL) {
                Err(Errno::EINTR) => continue,
                r => return r.map(|_| ()),
            }
        }
    }

    /// Receives one message; `Ok(None)` when the other side closed without a word.
    pub fn recv(&self) -> Result<Option<Msg>, Errno> {
        let mut buf = vec![0u8; MAX];
        let n = loop {
            match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Err(Errno::EINTR) => continue,
                r => break r?,
            }
        };
        if n == 0 {
            return Ok(None);
        }
        let body = &buf[1..n];
        Ok(Some(match buf[0] {
            b'P' if body.len() == 4 => {
                Msg::Pid(i32::from_le_bytes([body[0], body[1], body[2], body[3]]))
            }
            b'G' => Msg::Go,
            b'R' => Msg::Ready,
            b'H' => Msg::Hooks,
            b'D' => Msg::HooksDone(body.to_vec()),
            b'E' => Msg::Error(String::from_utf8_lossy(body).into_owned()),
            _ => Msg::Error(format!(
                "unexpected message from container init ({n} bytes)"
            )),
        }))
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let (a, b) = Channel::pair().unwrap();
        for m in [
            Msg::Pid(4242),
            Msg::Go,
            Msg::Ready,
            Msg::Hooks,
            Msg::HooksDone(b"{}\n{}".to_vec()),
            Msg::Error("exec: no such file or directory".into()),
        ] {
            a.send(&m).unwrap();
            assert_eq!(b.recv().unwrap(), Some(m));
        }
        drop(a);
        assert_eq!(b.recv().unwrap(), None);
    }
}
