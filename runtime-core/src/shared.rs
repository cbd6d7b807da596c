//! Helpers the operations share (`create` and `exec`): the verified host procfs
//! handle, config strings as C strings, the seccomp filter compiled from a config, the
//! pid file, and the check of the runtime binary's protection. Nothing here knows about a `Runtime`.

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::path::Path;

use oci_spec::runtime::Spec;

use crate::{sys, Error, Result};

/// The host's `/proc` as an `O_PATH` fd, checked to be procfs (every procfs access of
/// the create and exec paths goes through it, never crossing a mount).
pub(crate) fn verified_proc() -> Result<OwnedFd> {
    let fd = sys::open(c"/proc", libc::O_PATH | libc::O_DIRECTORY, 0)
        .map_err(|e| Error::sys("/proc", e))?;
    let st = nix::sys::statfs::fstatfs(&fd).map_err(|e| Error::sys("/proc", e))?;
    if st.filesystem_type() != nix::sys::statfs::PROC_SUPER_MAGIC {
        return Err(Error::ProcNotProcfs);
    }
    Ok(fd)
}

/// `items` (args, env) as C strings; a NUL byte is refused naming `field`.
pub(crate) fn cstrings<'a>(
    items: impl Iterator<Item = &'a String>,
    field: &str,
) -> Result<Vec<CString>> {
    items
        .map(|s| {
            CString::new(s.as_bytes()).map_err(|_| Error::Invalid {
                field: field.into(),
                reason: "contains a NUL byte".into(),
            })
        })
        .collect()
}

/// The config's `linux.seccomp` compiled, if it has one.
pub(crate) fn seccomp_filter(spec: &Spec) -> Result<Option<casulo_seccomp::Filter>> {
    match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(profile) => {
            let c = casulo_seccomp::compile(profile)?;
            Ok(Some(c.filter))
        }
        None => Ok(None),
    }
}

/// Writes `pid` to `path` atomically (temp file + rename), as engines read it.
pub(crate) fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("pid")
    ));
    std::fs::write(&tmp, pid.to_string()).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// The library's check before an operation that puts a copy of the runtime where
/// container processes can see it: an unprotected binary is refused (`refuse`) or
/// warned about.
pub(crate) fn check_exe(log: &crate::log::Logger, refuse: bool) -> Result<()> {
    if crate::exe::is_protected() {
        return Ok(());
    }
    if refuse {
        return Err(Error::UnprotectedExe);
    }
    log.warn(
        "the runtime binary is writable and a container can see this process: \
         call casulo_core::exe::ensure_protected() at the start of main (CVE-2019-5736)",
    );
    Ok(())
}
