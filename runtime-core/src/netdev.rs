//! `linux.netDevices` (config-linux.md "Network Devices", runtime-spec 1.3): each named
//! host interface is moved into the container's new network namespace (renamed when
//! `name` is given), its permanent global addresses are restored there, and it is set
//! up. Nothing moves it back: the kernel returns physical devices to the initial
//! namespace, and destroys virtual ones, when the namespace goes away.
//!
//! A small hand-written rtnetlink client over nix's netlink socket (RTM_GETLINK,
//! RTM_GETADDR, RTM_NEWLINK with IFLA_NET_NS_PID, RTM_NEWADDR): four message kinds do
//! not justify the rtnetlink/tokio stack in the binary (docs/architecture.md).

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    recv, send, socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType,
};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// Errors of `linux.netDevices`, each naming the field.
#[derive(Debug, thiserror::Error)]
pub enum NetDevError {
    /// The config cannot be honoured (refused before anything is created).
    #[error("config.json: {field}: {msg}")]
    Invalid {
        /// The field.
        field: String,
        /// Why.
        msg: String,
    },
    /// A netlink request failed.
    #[error("{field}: {what}: {source}")]
    Netlink {
        /// The field.
        field: String,
        /// The request.
        what: &'static str,
        /// The errno.
        source: crate::rootfs::ErrnoText,
    },
}

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_DUMP: u16 = 0x300;
const IFLA_IFNAME: u16 = 3;
const IFLA_NET_NS_PID: u16 = 19;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const IFA_FLAGS: u16 = 8;
const IFA_F_PERMANENT: u32 = 0x80;
const RT_SCOPE_UNIVERSE: u8 = 0;
const IFF_UP: u32 = 1;

fn field(host: &str) -> String {
    format!("linux.netDevices.{host}")
}

fn invalid(host: &str, msg: impl Into<String>) -> NetDevError {
    NetDevError::Invalid {
        field: field(host),
        msg: msg.into(),
    }
}

/// The (host name, name in the container) pairs of the config, sorted.
fn devices(spec: &Spec) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = spec
        .linux()
        .as_ref()
        .and_then(|l| l.net_devices().as_ref())
        .map(|m| {
            m.iter()
                .map(|(k, d)| (k.clone(), d.name().clone().unwrap_or_else(|| k.clone())))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() < 16
        && n != "."
        && n != ".."
        && !n
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
}

/// Checks the config before anything is created: a new network namespace, valid and
/// distinct names, and every host device present (in the runtime's namespace).
pub fn check(spec: &Spec) -> Result<(), NetDevError> {
    let devs = devices(spec);
    if devs.is_empty() {
        return Ok(());
    }
    if !crate::config::new_namespace(spec, LinuxNamespaceType::Network) {
        return Err(NetDevError::Invalid {
            field: "linux.netDevices".into(),
            msg: "moving devices needs a new network namespace in linux.namespaces".into(),
        });
    }
    let sock = Netlink::open().map_err(|e| nl_err("linux.netDevices", "netlink socket", e))?;
    let mut seen = std::collections::HashSet::new();
    for (host, name) in &devs {
        if !valid_name(host) {
            return Err(invalid(host, "not a network device name"));
        }
        if !valid_name(name) {
            return Err(NetDevError::Invalid {
                field: format!("{}.name", field(host)),
                msg: format!("{name:?} is not a network device name"),
            });
        }
        // A template (`%d`) gets a unique name from the kernel; any other name must be
        // free in the new namespace, which holds only `lo`.
        if !name.contains("%d") && (name == "lo" || !seen.insert(name.clone())) {
            return Err(NetDevError::Invalid {
                field: format!("{}.name", field(host)),
                msg: format!("{name:?} already exists in the container's network namespace"),
            });
        }
        match sock.link_index(host) {
            Ok(_) => {}
            Err(Errno::ENODEV) => return Err(invalid(host, "no such network device")),
            Err(e) => return Err(nl_err(&field(host), "looking it up", e)),
        }
    }
    Ok(())
}

fn nl_err(f: &str, what: &'static str, e: Errno) -> NetDevError {
    NetDevError::Netlink {
        field: f.to_string(),
        what,
        source: crate::rootfs::ErrnoText(e),
    }
}

/// Moves the config's devices into the network namespace of the init `pid` (our
/// unreaped child, so the pid cannot be reused meanwhile; `pidfd` is its pidfd).
/// Runs in the runtime, in the host's namespace.
pub fn move_all(spec: &Spec, pid: i32, pidfd: BorrowedFd<'_>) -> Result<(), NetDevError> {
    let devs = devices(spec);
    if devs.is_empty() {
        return Ok(());
    }
    let host = Netlink::open().map_err(|e| nl_err("linux.netDevices", "netlink socket", e))?;
    let inside = Netlink::open_in(pidfd)
        .map_err(|e| nl_err("linux.netDevices", "netlink socket in the container", e))?;
    for (name, new) in &devs {
        let f = field(name);
        let index = host
            .link_index(name)
            .map_err(|e| nl_err(&f, "looking it up", e))?;
        let addrs = host
            .permanent_addrs(index)
            .map_err(|e| nl_err(&f, "reading its addresses", e))?;
        host.move_to(index, pid as u32, (new != name).then_some(new.as_str()))
            .map_err(|e| match e {
                Errno::EEXIST => NetDevError::Invalid {
                    field: format!("{f}.name"),
                    msg: format!("{new:?} already exists in the container's network namespace"),
                },
                e => nl_err(&f, "moving it", e),
            })?;
        // The kernel keeps the index unless the namespace already uses it.
        let index = match inside.link_exists(index) {
            Ok(true) => index,
            _ => inside
                .link_index(new)
                .map_err(|e| nl_err(&f, "finding it in the container", e))?,
        };
        for a in &addrs {
            inside
                .add_addr(index, a)
                .map_err(|e| nl_err(&f, "restoring an address", e))?;
        }
        inside
            .set_up(index)
            .map_err(|e| nl_err(&f, "setting it up", e))?;
    }
    Ok(())
}

/// One address as RTM_GETADDR reported it: the ifaddrmsg fields and the attributes
/// worth restoring.
#[derive(Debug, Clone)]
struct Addr {
    family: u8,
    prefixlen: u8,
    flags: u8,
    scope: u8,
    attrs: Vec<(u16, Vec<u8>)>,
}

struct Netlink {
    fd: OwnedFd,
    seq: std::cell::Cell<u32>,
}

fn push_attr(buf: &mut Vec<u8>, typ: u16, data: &[u8]) {
    buf.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&typ.to_ne_bytes());
    buf.extend_from_slice(data);
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let typ = u16::from_ne_bytes([b[2], b[3]]);
        if len < 4 || len > b.len() {
            break;
        }
        out.push((typ & 0x3fff, &b[4..len]));
        b = &b[((len + 3) & !3).min(b.len())..];
    }
    out
}

fn ifinfomsg(index: i32, flags: u32, change: u32) -> Vec<u8> {
    let mut v = vec![0u8; 4]; // family, pad, type
    v.extend_from_slice(&index.to_ne_bytes());
    v.extend_from_slice(&flags.to_ne_bytes());
    v.extend_from_slice(&change.to_ne_bytes());
    v
}

fn cname(name: &str) -> Vec<u8> {
    let mut v = name.as_bytes().to_vec();
    v.push(0);
    v
}

impl Netlink {
    fn open() -> Result<Netlink, Errno> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )?;
        Ok(Netlink {
            fd,
            seq: std::cell::Cell::new(1),
        })
    }

    /// A socket in the network namespace of the process behind pidfd `ns`: made by a
    /// thread that joined it (setns of a network namespace is per thread), so the
    /// runtime itself never moves.
    fn open_in(ns: BorrowedFd<'_>) -> Result<Netlink, Errno> {
        let ns = ns.try_clone_to_owned().map_err(|_| Errno::EMFILE)?;
        std::thread::spawn(move || {
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
            Netlink::open()
        })
        .join()
        .unwrap_or(Err(Errno::EIO))
    }

    /// Sends one request and collects the payloads of its replies of type `want`
    /// (until the ack, or the end of a dump).
    fn request(&self, typ: u16, flags: u16, body: &[u8], want: u16) -> Result<Vec<Vec<u8>>, Errno> {
        let seq = self.seq.get();
        self.seq.set(seq + 1);
        let mut msg = Vec::with_capacity(16 + body.len());
        msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&typ.to_ne_bytes());
        msg.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(body);
        send(self.fd.as_raw_fd(), &msg, MsgFlags::empty())?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 32768];
        loop {
            let n = match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Err(Errno::EINTR) => continue,
                r => r?,
            };
            let mut b = &buf[..n];
            while b.len() >= 16 {
                let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
                let mtype = u16::from_ne_bytes([b[4], b[5]]);
                let mseq = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
                if len < 16 || len > b.len() {
                    return Err(Errno::EBADMSG);
                }
                let payload = &b[16..len];
                b = &b[((len + 3) & !3).min(b.len())..];
                if mseq != seq {
                    continue;
                }
                match mtype {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR if payload.len() >= 4 => {
                        let code =
                            i32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]);
                        return match code {
                            0 => Ok(out),
                            c => Err(Errno::from_raw(-c)),
                        };
                    }
                    t if t == want => out.push(payload.to_vec()),
                    _ => {}
                }
            }
        }
    }

    fn link_index(&self, name: &str) -> Result<i32, Errno> {
        let mut body = ifinfomsg(0, 0, 0);
        push_attr(&mut body, IFLA_IFNAME, &cname(name));
        let r = self.request(RTM_GETLINK, NLM_F_ACK, &body, RTM_NEWLINK)?;
        let p = r.first().filter(|p| p.len() >= 8).ok_or(Errno::ENODEV)?;
        Ok(i32::from_ne_bytes([p[4], p[5], p[6], p[7]]))
    }

    fn link_exists(&self, index: i32) -> Result<bool, Errno> {
        match self.request(RTM_GETLINK, NLM_F_ACK, &ifinfomsg(index, 0, 0), RTM_NEWLINK) {
            Ok(r) => Ok(!r.is_empty()),
            Err(Errno::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The permanent (IFA_F_PERMANENT) addresses of global scope of link `index`.
    fn permanent_addrs(&self, index: i32) -> Result<Vec<Addr>, Errno> {
        let body = [0u8; 8]; // ifaddrmsg, AF_UNSPEC: every family
        let mut out = Vec::new();
        for p in self.request(RTM_GETADDR, NLM_F_DUMP, &body, RTM_NEWADDR)? {
            if p.len() < 8 || u32::from_ne_bytes([p[4], p[5], p[6], p[7]]) != index as u32 {
                continue;
            }
            let list = attrs(&p[8..]);
            let flags = list
                .iter()
                .find(|(t, d)| *t == IFA_FLAGS && d.len() == 4)
                .map(|(_, d)| u32::from_ne_bytes([d[0], d[1], d[2], d[3]]))
                .unwrap_or(p[2] as u32);
            if flags & IFA_F_PERMANENT == 0 || p[3] != RT_SCOPE_UNIVERSE {
                continue;
            }
            let keep = [IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST, IFA_FLAGS];
            out.push(Addr {
                family: p[0],
                prefixlen: p[1],
                flags: p[2],
                scope: p[3],
                attrs: list
                    .into_iter()
                    .filter(|(t, _)| keep.contains(t))
                    .map(|(t, d)| (t, d.to_vec()))
                    .collect(),
            });
        }
        Ok(out)
    }

    fn move_to(&self, index: i32, pid: u32, rename: Option<&str>) -> Result<(), Errno> {
        let mut body = ifinfomsg(index, 0, 0);
        push_attr(&mut body, IFLA_NET_NS_PID, &pid.to_ne_bytes());
        if let Some(n) = rename {
            push_attr(&mut body, IFLA_IFNAME, &cname(n));
        }
        self.request(RTM_NEWLINK, NLM_F_ACK, &body, 0).map(|_| ())
    }

    fn add_addr(&self, index: i32, a: &Addr) -> Result<(), Errno> {
        let mut body = vec![a.family, a.prefixlen, a.flags, a.scope];
        body.extend_from_slice(&(index as u32).to_ne_bytes());
        for (t, d) in &a.attrs {
            push_attr(&mut body, *t, d);
        }
        let flags = NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        self.request(RTM_NEWADDR, flags, &body, 0).map(|_| ())
    }

    fn set_up(&self, index: i32) -> Result<(), Errno> {
        let body = ifinfomsg(index, IFF_UP, IFF_UP);
        self.request(RTM_NEWLINK, NLM_F_ACK, &body, 0).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip() {
        let mut b = Vec::new();
        push_attr(&mut b, IFLA_IFNAME, &cname("eth0"));
        push_attr(&mut b, IFLA_NET_NS_PID, &7u32.to_ne_bytes());
        let a = attrs(&b);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0], (IFLA_IFNAME, &b"eth0\0"[..]));
        assert_eq!(a[1].1, 7u32.to_ne_bytes());
    }

    #[test]
    fn names() {
        for ok in ["eth0", "ct%d", "a-b.c"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "a:1", "abcdefghijklmnop"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn refusals_name_the_field() {
        let spec = |v: serde_json::Value| -> Spec {
            serde_json::from_value(serde_json::json!({"ociVersion": "1.3.0", "linux": v})).unwrap()
        };
        let e = check(&spec(serde_json::json!({"netDevices": {"eth0": {}}}))).unwrap_err();
        assert!(
            e.to_string()
                .contains("linux.netDevices: moving devices needs a new network namespace"),
            "{e}"
        );
        let e = check(&spec(serde_json::json!({
            "namespaces": [{"type": "network"}],
            "netDevices": {"eth0": {"name": "lo"}}
        })))
        .unwrap_err();
        assert!(e.to_string().contains("linux.netDevices.eth0.name"), "{e}");
    }
}
