//! The typed channel between the runtime and the container init: a SOCK_SEQPACKET
//! socketpair, so every message keeps its boundaries. Used on both sides of the clone.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use crate::ChildError;
use nix::errno::Errno;
use nix::sys::socket::{
    recvmsg, send, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned,
    MsgFlags, SockFlag, SockType,
};

/// A message between the runtime and the container init.
#[derive(Debug, PartialEq, Eq)]
pub enum Msg {
    /// Helper → runtime: the init's host pid.
    Pid(i32),
    /// Runtime → init: id maps are written; go on. (Runtime → exec'd process: the
    /// cgroup is joined too.)
    Go,
    /// Runtime → init: the init is in the container's cgroups (sent after `Go`, so that
    /// the init sets up its mounts while the runtime moves it, when it did not join
    /// them itself: the systemd driver, a joined cgroup namespace).
    InCgroup,
    /// Init → runtime: mounts are made, `pivot_root` is next: run the runtime-namespace
    /// hooks (prestart, createRuntime) now.
    Hooks,
    /// Runtime → init: those hooks succeeded; the state JSON for the init's own hooks
    /// (createContainer, then startContainer, one document per line).
    HooksDone(Vec<u8>),
    /// Init → runtime: set up, waiting for `start`.
    Ready,
    /// Init → runtime: the seccomp notify listener, attached as SCM_RIGHTS (see
    /// [`Channel::send_fd`]); the runtime hands it to the agent at `listenerPath`.
    Listener,
    /// Runtime → init, before `Go`: the source of mount entry `index`, attached as
    /// SCM_RIGHTS (`tree`: a detached idmapped mount to attach; see `rootfs::sources`).
    MountSource {
        /// Index in `mounts`.
        index: u32,
        /// The fd is an `open_tree` clone, not an `O_PATH` fd.
        tree: bool,
    },
    /// Init, exec'd process or helper → runtime: setup failed (the message and errno).
    Error(ChildError),
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
        let buf = encode(msg)?;
        loop {
            match send(self.fd.as_raw_fd(), &buf, MsgFlags::MSG_NOSIGNAL) {
                Err(Errno::EINTR) => continue,
                r => return r.map(|_| ()),
            }
        }
    }

    /// Sends one message with write(2) (for a process under its seccomp filter, which
    /// may deny sendto but must allow write).
    pub fn send_by_write(&self, msg: &Msg) -> Result<(), Errno> {
        crate::sys::write_all(self.fd.as_fd(), &encode(msg)?)
    }

    /// Sends one message with `fd` attached (SCM_RIGHTS).
    pub fn send_fd(&self, msg: &Msg, fd: BorrowedFd<'_>) -> Result<(), Errno> {
        let buf = encode(msg)?;
        let fds = [fd.as_raw_fd()];
        let iov = [std::io::IoSlice::new(&buf)];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        loop {
            match sendmsg::<()>(
                self.fd.as_raw_fd(),
                &iov,
                &cmsg,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Err(Errno::EINTR) => continue,
                r => return r.map(|_| ()),
            }
        }
    }

    /// The error the other side sent before it went away, if that is the next message
    /// waiting; never blocks. For a failure that may have been caused by the init having
    /// exited (EPIPE on a send, ESRCH joining a cgroup): its own message says why.
    pub fn pending_error(&self) -> Option<ChildError> {
        match self.recv_with(MsgFlags::MSG_DONTWAIT) {
            Ok((Some(Msg::Error(e)), _)) => Some(e),
            _ => None,
        }
    }

    /// Receives one message and the fd attached to it, if any.
    pub fn recv_fd(&self) -> Result<(Option<Msg>, Option<OwnedFd>), Errno> {
        self.recv_with(MsgFlags::empty())
    }

    fn recv_with(&self, flags: MsgFlags) -> Result<(Option<Msg>, Option<OwnedFd>), Errno> {
        let mut buf = vec![0u8; MAX];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let (n, fd) = loop {
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC | flags,
            ) {
                Err(Errno::EINTR) => continue,
                // A SEQPACKET peer that closes with messages of ours unread leaves
                // ECONNRESET pending, and the kernel reports it before the messages the
                // peer sent first (the init's error, sent just before it exits while a
                // `Go`/`InCgroup` of ours was in flight). Reading the error clears it:
                // the next receive returns those messages, then end of file.
                Err(Errno::ECONNRESET) => continue,
                Err(e) => return Err(e),
                Ok(m) => {
                    let mut fd = None;
                    for c in m.cmsgs()? {
                        if let ControlMessageOwned::ScmRights(fds) = c {
                            for raw in fds {
                                let owned = crate::sys::own_received_fd(raw);
                                fd.get_or_insert(owned);
                            }
                        }
                    }
                    break (m.bytes, fd);
                }
            }
        };
        Ok((decode(&buf[..n]), fd))
    }

    /// Receives one message; `Ok(None)` when the other side closed without a word.
    pub fn recv(&self) -> Result<Option<Msg>, Errno> {
        Ok(self.recv_fd()?.0)
    }
}

fn encode(msg: &Msg) -> Result<Vec<u8>, Errno> {
    let mut buf = Vec::with_capacity(16);
    match msg {
        Msg::Pid(p) => {
            buf.push(b'P');
            buf.extend_from_slice(&p.to_le_bytes());
        }
        Msg::Go => buf.push(b'G'),
        Msg::InCgroup => buf.push(b'C'),
        Msg::Ready => buf.push(b'R'),
        Msg::Hooks => buf.push(b'H'),
        Msg::HooksDone(p) => {
            if p.len() >= MAX {
                return Err(Errno::EMSGSIZE);
            }
            buf.push(b'D');
            buf.extend_from_slice(p);
        }
        Msg::Error(e) => buf.extend(encode_error(e)),
        Msg::Listener => buf.push(b'L'),
        Msg::MountSource { index, tree } => {
            buf.push(b'M');
            buf.extend_from_slice(&index.to_le_bytes());
            buf.push(u8::from(*tree));
        }
    }
    Ok(buf)
}

/// A [`ChildError`] as bytes (`E`, the errno as 4 bytes, 0 for none, the message), for
/// the channel and for the exec fifo after `Ready`.
pub fn encode_error(e: &ChildError) -> Vec<u8> {
    let mut buf = vec![b'E'];
    buf.extend_from_slice(&e.errno.map_or(0, |n| n as i32).to_le_bytes());
    let b = e.message.as_bytes();
    buf.extend_from_slice(&b[..b.len().min(MAX - 5)]);
    buf
}

/// The [`ChildError`] in bytes written by [`encode_error`]; anything else is taken as
/// a message.
pub fn decode_error(buf: &[u8]) -> ChildError {
    match buf {
        [b'E', a, b, c, d, rest @ ..] => {
            let n = i32::from_le_bytes([*a, *b, *c, *d]);
            ChildError {
                message: String::from_utf8_lossy(rest).into_owned(),
                errno: (n != 0).then(|| Errno::from_raw(n)),
            }
        }
        _ => ChildError::msg(String::from_utf8_lossy(buf).into_owned()),
    }
}

fn decode(buf: &[u8]) -> Option<Msg> {
    let n = buf.len();
    if n == 0 {
        return None;
    }
    let body = &buf[1..n];
    Some(match buf[0] {
        b'P' if body.len() == 4 => {
            Msg::Pid(i32::from_le_bytes([body[0], body[1], body[2], body[3]]))
        }
        b'G' => Msg::Go,
        b'C' => Msg::InCgroup,
        b'R' => Msg::Ready,
        b'H' => Msg::Hooks,
        b'D' => Msg::HooksDone(body.to_vec()),
        b'E' => Msg::Error(decode_error(buf)),
        b'L' => Msg::Listener,
        b'M' if body.len() == 5 => Msg::MountSource {
            index: u32::from_le_bytes([body[0], body[1], body[2], body[3]]),
            tree: body[4] != 0,
        },
        _ => Msg::Error(ChildError::msg(format!(
            "unexpected message from container init ({n} bytes)"
        ))),
    })
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
            Msg::InCgroup,
            Msg::Ready,
            Msg::Hooks,
            Msg::HooksDone(b"{}\n{}".to_vec()),
            Msg::Error(ChildError::sys("exec", Errno::ENOENT)),
            Msg::Error(ChildError::msg("exec: not found")),
            Msg::MountSource {
                index: 7,
                tree: true,
            },
        ] {
            a.send(&m).unwrap();
            assert_eq!(b.recv().unwrap(), Some(m));
        }
        let f = std::fs::File::open("/proc/self/stat").unwrap();
        a.send_fd(&Msg::Listener, f.as_fd()).unwrap();
        let (m, fd) = b.recv_fd().unwrap();
        assert_eq!(m, Some(Msg::Listener));
        assert!(fd.is_some(), "the fd came along");
        drop(a);
        assert_eq!(b.recv().unwrap(), None);
    }

    /// The init fails and exits while a message of ours is still unread on its side:
    /// its error must still arrive (the cause of a rare "container init exited during
    /// setup" in place of the init's own error).
    #[test]
    fn error_of_a_peer_that_exited_with_unread_messages_arrives() {
        let (runtime, init) = Channel::pair().unwrap();
        runtime.send(&Msg::InCgroup).unwrap();
        init.send(&Msg::Error(ChildError::sys("mount", Errno::EPERM)))
            .unwrap();
        drop(init);
        assert_eq!(
            runtime.pending_error(),
            Some(ChildError::sys("mount", Errno::EPERM)),
            "pending_error"
        );
        let (runtime, init) = Channel::pair().unwrap();
        runtime.send(&Msg::Go).unwrap();
        init.send(&Msg::Error(ChildError::sys("mount", Errno::EPERM)))
            .unwrap();
        drop(init);
        assert_eq!(
            runtime.recv().unwrap(),
            Some(Msg::Error(ChildError::sys("mount", Errno::EPERM)))
        );
        assert_eq!(runtime.recv().unwrap(), None);
    }
}
