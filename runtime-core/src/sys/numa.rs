//! set_mempolicy(2), the one raw call of `linux.memoryPolicy`.

use nix::errno::Errno;

use super::SysResult;

/// set_mempolicy(`mode` | flags, `mask`, `maxnode`) on the calling thread (inherited
/// by execve and by children). `mask` is a node bitmap of `maxnode` bits; empty for
/// no nodes.
pub fn set_mempolicy(mode: i32, mask: &[libc::c_ulong], maxnode: u64) -> SysResult<()> {
    let ptr = if mask.is_empty() {
        std::ptr::null()
    } else {
        mask.as_ptr()
    };
    // SAFETY: `ptr` is null or points to `mask`, which holds at least `maxnode` bits
    // (the caller sizes it so) and outlives the call; the kernel only reads it.
    let ret = unsafe { libc::syscall(libc::SYS_set_mempolicy, mode, ptr, maxnode) };
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}
