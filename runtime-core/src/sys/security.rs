//! Raw syscalls of the process's security and scheduling fields (ioprio_set,
//! sched_setattr, sched_setaffinity, personality) and memfd_create for hook stdin.

use std::ffi::CStr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

use super::SysResult;

fn check(ret: libc::c_long) -> SysResult<libc::c_long> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

/// ioprio_set(IOPRIO_WHO_PROCESS, 0, `value`) on the calling process.
pub fn ioprio_set(value: i32) -> SysResult<()> {
    const IOPRIO_WHO_PROCESS: i32 = 1;
    // SAFETY: integer arguments only.
    check(unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, value) })?;
    Ok(())
}

/// `struct sched_attr` of sched_setattr(2), first version (48 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedAttr {
    /// Size of the structure (set by [`sched_setattr`]).
    pub size: u32,
    /// SCHED_* policy.
    pub policy: u32,
    /// SCHED_FLAG_* bits.
    pub flags: u64,
    /// Nice value (SCHED_OTHER, SCHED_BATCH).
    pub nice: i32,
    /// Static priority (SCHED_FIFO, SCHED_RR).
    pub priority: u32,
    /// SCHED_DEADLINE runtime (ns).
    pub runtime: u64,
    /// SCHED_DEADLINE deadline (ns).
    pub deadline: u64,
    /// SCHED_DEADLINE period (ns).
    pub period: u64,
}

/// sched_setattr(2) on the calling thread.
pub fn sched_setattr(attr: &SchedAttr) -> SysResult<()> {
    let mut a = *attr;
    a.size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: `a` is a properly sized, initialised sched_attr valid for the call.
    check(unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &a as *const SchedAttr, 0) })?;
    Ok(())
}

/// sched_setaffinity(2) of the calling thread to exactly `cpus`.
pub fn sched_setaffinity(cpus: &[usize]) -> SysResult<()> {
    // SAFETY: cpu_set_t is plain data; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        if c >= libc::CPU_SETSIZE as usize {
            return Err(Errno::EINVAL);
        }
        // SAFETY: `c` is below CPU_SETSIZE, so CPU_SET stays inside `set`.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: `set` is valid for the call and its size is passed.
    check(unsafe {
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) as libc::c_long
    })?;
    Ok(())
}

/// personality(2): sets the execution domain.
pub fn personality(persona: u64) -> SysResult<()> {
    // SAFETY: integer argument only.
    check(unsafe { libc::personality(persona as libc::c_ulong) as libc::c_long })?;
    Ok(())
}

/// memfd_create(2) with `MFD_CLOEXEC`.
pub fn memfd(name: &CStr) -> SysResult<OwnedFd> {
    // SAFETY: valid C string; the returned fd is new and owned by us.
    let fd =
        check(unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) as libc::c_long })?;
    // SAFETY: fresh fd from the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}
