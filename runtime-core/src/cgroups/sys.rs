//! Raw `bpf(2)` calls for the cgroup v2 device filter. The only `unsafe` code
//! of the cgroups module lives here.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::devices::Insn;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;

const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// `union bpf_attr`, large enough for every command used here; the unused
/// tail must be zero (the kernel checks it).
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Self {
        Attr([0; 128])
    }
    fn put_u32(&mut self, off: usize, v: u32) {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
    }
    fn put_u64(&mut self, off: usize, v: u64) {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
    }
    fn get_u32(&self, off: usize) -> u32 {
        u32::from_ne_bytes(self.0[off..off + 4].try_into().unwrap_or([0; 4]))
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, writable, 8-byte aligned buffer of the size we
    // pass; every pointer stored inside it by the callers refers to memory that
    // outlives this call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut Attr as *mut libc::c_void,
            std::mem::size_of::<Attr>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// The kernel's refusal of a program together with the verifier's log; carried inside
/// the `io::Error` [`load_device_prog`] returns, so that its errno stays reachable (as
/// this error's source).
#[derive(Debug, thiserror::Error)]
#[error("{source}; verifier: {log}")]
pub struct VerifierRefusal {
    /// bpf(2)'s error.
    pub source: std::io::Error,
    /// The verifier's log.
    pub log: String,
}

/// Loads a `BPF_PROG_TYPE_CGROUP_DEVICE` program. On a verifier error the
/// verifier log is appended to the error message ([`VerifierRefusal`]).
pub fn load_device_prog(insns: &[Insn]) -> std::io::Result<OwnedFd> {
    let license = b"Apache-2.0\0";
    let mut log = vec![0u8; 64 * 1024];
    let mut attr = Attr::new();
    attr.put_u32(0, BPF_PROG_TYPE_CGROUP_DEVICE);
    attr.put_u32(4, insns.len() as u32);
    attr.put_u64(8, insns.as_ptr() as u64);
    attr.put_u64(16, license.as_ptr() as u64);
    attr.put_u32(24, 1); // log_level
    attr.put_u32(28, log.len() as u32);
    attr.put_u64(32, log.as_mut_ptr() as u64);
    match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => Ok(owned(fd)),
        Err(e) => {
            let end = log.iter().position(|b| *b == 0).unwrap_or(0);
            let text = String::from_utf8_lossy(&log[..end]);
            if text.is_empty() {
                Err(e)
            } else {
                Err(std::io::Error::new(
                    e.kind(),
                    VerifierRefusal {
                        source: e,
                        log: text.into_owned(),
                    },
                ))
            }
        }
    }
}

/// Ids of the device programs attached to the cgroup `cgroup`.
pub fn query_device_progs(cgroup: BorrowedFd<'_>) -> std::io::Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    let mut attr = Attr::new();
    attr.put_u32(0, cgroup.as_raw_fd() as u32);
    attr.put_u32(4, BPF_CGROUP_DEVICE);
    attr.put_u64(16, ids.as_mut_ptr() as u64);
    attr.put_u32(24, ids.len() as u32);
    bpf(BPF_PROG_QUERY, &mut attr)?;
    let n = (attr.get_u32(24) as usize).min(ids.len());
    ids.truncate(n);
    Ok(ids)
}

/// Attaches `prog` to `cgroup` as a device filter (`BPF_F_ALLOW_MULTI`).
pub fn attach_device_prog(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> std::io::Result<()> {
    let mut attr = Attr::new();
    attr.put_u32(0, cgroup.as_raw_fd() as u32);
    attr.put_u32(4, prog.as_raw_fd() as u32);
    attr.put_u32(8, BPF_CGROUP_DEVICE);
    attr.put_u32(12, BPF_F_ALLOW_MULTI);
    bpf(BPF_PROG_ATTACH, &mut attr).map(|_| ())
}

/// Detaches the program with id `id` from `cgroup`.
pub fn detach_device_prog(cgroup: BorrowedFd<'_>, id: u32) -> std::io::Result<()> {
    let mut attr = Attr::new();
    attr.put_u32(0, id);
    let prog = owned(bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)?);
    let mut attr = Attr::new();
    attr.put_u32(0, cgroup.as_raw_fd() as u32);
    attr.put_u32(4, prog.as_raw_fd() as u32);
    attr.put_u32(8, BPF_CGROUP_DEVICE);
    bpf(BPF_PROG_DETACH, &mut attr).map(|_| ())
}

/// A new non-blocking, close-on-exec eventfd.
pub fn eventfd() -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments; the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(owned(fd.into()))
}

/// A non-blocking inotify fd watching `path` for modification.
pub fn inotify_modify(path: &std::path::Path) -> std::io::Result<OwnedFd> {
    inotify_watch(path, libc::IN_MODIFY)
}

/// A non-blocking, close-on-exec inotify fd watching `path` for the events in `mask`
/// (`IN_*`).
pub(crate) fn inotify_watch(path: &std::path::Path, mask: u32) -> std::io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: plain syscall with integer flags; the result is checked.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = owned(fd.into());
    // SAFETY: `fd` is our inotify fd and `c` a NUL-terminated path that lives
    // across the call.
    let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask) };
    if wd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}
