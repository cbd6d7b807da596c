//! CVE-2019-5736: the runtime's own binary must never be reachable from a container as a
//! writable host file.
//!
//! Until it execs the user's program, a process the runtime puts into a container (the
//! `exec` child; an init that joins an existing pid namespace, or shares the host's; an
//! init running container-provided startContainer hooks) is a copy of the runtime, and
//! `/proc/<pid>/exe` names the runtime binary. Non-dumpable does not stop a container
//! process holding CAP_SYS_PTRACE in the same user namespace: it opens that link, waits
//! for the process to go away and reopens the file for writing through
//! `/proc/self/fd/N`. A process started with [`ensure_protected`] runs instead from a
//! detached read-only bind mount of its binary (`open_tree(OPEN_TREE_CLONE)` +
//! `mount_setattr(MOUNT_ATTR_RDONLY)` + `execveat`), or, where that mount cannot be made
//! (no CAP_SYS_ADMIN over the mount namespace), from a sealed memfd copy: a reopen for
//! writing fails with EROFS (or EPERM for the memfd).
//!
//! Embedders that [`crate::Runtime::exec`] into containers, or create containers for
//! which [`spec_needs_protection`] holds, call [`ensure_protected`] first thing in
//! `main`, before any thread starts (an execve ends every other thread). The library
//! warns when such an operation runs from an unprotected binary.

use std::convert::Infallible;
use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, SealFlag};
use nix::sys::statvfs::{fstatvfs, FsFlags};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::sys;

/// Set in the environment of the re-executed process. It only ever turns "still not
/// protected" into an error instead of a second re-exec; it never skips the check.
pub const REEXEC_ENV: &str = "_CASULO_EXE_REEXEC";

/// Errors of the binary protection.
#[derive(Debug, thiserror::Error)]
pub enum ExeError {
    /// `/proc/self/exe` could not be opened or inspected.
    #[error("/proc/self/exe: {0}")]
    Inspect(#[source] Errno),
    /// Neither a read-only bind mount nor a sealed memfd copy could be made.
    #[error("protecting the runtime binary (CVE-2019-5736): {what}: {source}")]
    Protect {
        /// The step that failed.
        what: &'static str,
        /// The error.
        #[source]
        source: Errno,
    },
    /// The re-executed process still runs from a writable file.
    #[error("protecting the runtime binary (CVE-2019-5736): still writable after re-exec")]
    StillWritable,
}

/// What backs the running binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// A file on a read-only mount (the detached bind mount, or a read-only install).
    ReadOnlyMount,
    /// A memfd sealed against writes.
    SealedMemfd,
    /// A writable file: a container could overwrite it.
    None,
}

/// How `/proc/self/exe` is protected against writes.
pub fn protection() -> Result<Protection, ExeError> {
    let fd = sys::open(c"/proc/self/exe", libc::O_RDONLY | libc::O_CLOEXEC, 0)
        .map_err(ExeError::Inspect)?;
    // EINVAL: not a memfd (no seals possible).
    if let Ok(seals) = nix::fcntl::fcntl(fd.as_raw_fd(), FcntlArg::F_GET_SEALS) {
        let needed = SealFlag::F_SEAL_WRITE | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW;
        if SealFlag::from_bits_truncate(seals).contains(needed) {
            return Ok(Protection::SealedMemfd);
        }
    }
    let st = fstatvfs(&fd).map_err(ExeError::Inspect)?;
    if st.flags().contains(FsFlags::ST_RDONLY) {
        return Ok(Protection::ReadOnlyMount);
    }
    Ok(Protection::None)
}

/// True when the running binary cannot be written through `/proc/<pid>/exe`.
pub fn is_protected() -> bool {
    !matches!(protection(), Ok(Protection::None) | Err(_))
}

/// True when a container made from `spec` can see its init while the init is still a
/// copy of the runtime: no pid namespace of its own (joined by path, or the host's), or
/// startContainer hooks (container programs, run by the init before its exec).
pub fn spec_needs_protection(spec: &Spec) -> bool {
    let own_pidns = crate::spec_util::new_namespace(spec, LinuxNamespaceType::Pid);
    let start_hooks = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.start_container().as_ref())
        .is_some_and(|v| !v.is_empty());
    !own_pidns || start_hooks
}

/// Makes sure the running binary is protected: returns at once when it is, otherwise
/// re-executes the process (same arguments and environment) from a protected copy and
/// does not return. Call it first thing in `main`, before any thread is started.
pub fn ensure_protected() -> Result<(), ExeError> {
    if is_protected() {
        return Ok(());
    }
    match reexec() {
        Ok(never) => match never {},
        Err(e) => Err(e),
    }
}

/// Re-executes the process from a read-only bind mount, else a sealed memfd copy, of
/// its binary. Returns only on error.
fn reexec() -> Result<Infallible, ExeError> {
    if std::env::var_os(REEXEC_ENV).is_some() {
        return Err(ExeError::StillWritable);
    }
    let argv: Vec<CString> = std::env::args_os().filter_map(cstring).collect();
    let mut envp: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    envp.push(CString::new(format!("{REEXEC_ENV}=1")).expect("no NUL"));
    let exe = c"/proc/self/exe";
    let fd = match sys::readonly_bind_of(exe) {
        Ok(fd) => fd,
        // No CAP_SYS_ADMIN over our mount namespace (EPERM), or an old kernel.
        Err(Errno::EPERM | Errno::ENOSYS | Errno::EINVAL) => sealed_copy(exe)?,
        Err(source) => {
            return Err(ExeError::Protect {
                what: "open_tree",
                source,
            })
        }
    };
    Err(ExeError::Protect {
        what: "execveat",
        source: sys::execveat_fd(fd.as_fd(), &argv, &envp),
    })
}

fn cstring(s: std::ffi::OsString) -> Option<CString> {
    CString::new(s.as_bytes()).ok()
}

/// A memfd holding a copy of `path`, sealed against any change.
fn sealed_copy(path: &CStr) -> Result<OwnedFd, ExeError> {
    let protect = |what| move |source| ExeError::Protect { what, source };
    let src = sys::open(path, libc::O_RDONLY | libc::O_CLOEXEC, 0).map_err(protect("open"))?;
    let mem = sys::sealable_memfd(c"casulo").map_err(protect("memfd_create"))?;
    let mut from = std::fs::File::from(src);
    let mut to = std::fs::File::from(mem);
    std::io::copy(&mut from, &mut to)
        .map_err(|e| protect("copy")(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
    let mem = OwnedFd::from(to);
    let seals = SealFlag::F_SEAL_SEAL
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE;
    nix::fcntl::fcntl(mem.as_raw_fd(), FcntlArg::F_ADD_SEALS(seals)).map_err(protect("seal"))?;
    Ok(mem)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The memfd fallback: the copy is the binary, and neither a reopen through
    /// /proc/self/fd nor a write on the fd itself can change it.
    #[test]
    fn sealed_copy_refuses_every_write() {
        let mem = sealed_copy(c"/proc/self/exe").unwrap();
        let path = format!("/proc/self/fd/{}", mem.as_raw_fd());
        let copy = std::fs::read(&path).unwrap();
        assert_eq!(copy, std::fs::read("/proc/self/exe").unwrap());
        let e = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
        let mut w = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let e = std::io::Write::write_all(&mut w, b"x").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
        let seals = nix::fcntl::fcntl(mem.as_raw_fd(), FcntlArg::F_GET_SEALS).unwrap();
        assert!(SealFlag::from_bits_truncate(seals).contains(SealFlag::F_SEAL_SEAL));
    }

    #[test]
    fn needs_protection_without_own_pidns_or_with_start_hooks() {
        let spec = |v: serde_json::Value| -> Spec { serde_json::from_value(v).unwrap() };
        let base = serde_json::json!({"ociVersion": "1.0.2", "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}});
        assert!(!spec_needs_protection(&spec(base.clone())));
        let mut joined = base.clone();
        joined["linux"]["namespaces"][0]["path"] = "/proc/1/ns/pid".into();
        assert!(spec_needs_protection(&spec(joined)));
        let mut host = base.clone();
        host["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}]);
        assert!(spec_needs_protection(&spec(host)));
        let mut hooks = base;
        hooks["hooks"] = serde_json::json!({"startContainer": [{"path": "/bin/true"}]});
        assert!(spec_needs_protection(&spec(hooks)));
    }
}
