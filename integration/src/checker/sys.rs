//! The only module with `unsafe`: thin wrappers over libc calls that std
//! does not expose.

/// Real and effective user and group ids: (uid, euid, gid, egid).
pub fn ids() -> (u32, u32, u32, u32) {
    // SAFETY: these calls take no arguments, cannot fail and touch no memory.
    unsafe {
        (
            libc::getuid(),
            libc::geteuid(),
            libc::getgid(),
            libc::getegid(),
        )
    }
}

/// The supplementary group ids of the process.
pub fn groups() -> Vec<u32> {
    // SAFETY: with size 0 and a null list, getgroups only returns the count.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if n <= 0 {
        return Vec::new();
    }
    let mut buf = vec![0 as libc::gid_t; n as usize];
    // SAFETY: buf has room for exactly `n` gids, which is the size passed.
    let got = unsafe { libc::getgroups(n, buf.as_mut_ptr()) };
    buf.truncate(got.max(0) as usize);
    buf
}

/// (soft, hard) of resource `res`, or None if getrlimit fails.
pub fn rlimit(res: u32) -> Option<(u64, u64)> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid, writable rlimit struct that outlives the call.
    let rc = unsafe { libc::getrlimit(res as _, &mut r) };
    (rc == 0).then_some((r.rlim_cur, r.rlim_max))
}

fn field(chars: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// (nodename, domainname) from uname(2).
pub fn uname() -> (String, String) {
    // SAFETY: utsname is plain old data; all-zero is a valid value.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable utsname that outlives the call.
    let rc = unsafe { libc::uname(&mut u) };
    if rc != 0 {
        return (String::new(), String::new());
    }
    (field(&u.nodename), field(&u.domainname))
}

/// getpriority(PRIO_PROCESS, 0): Ok(nice) or Err(errno).
pub fn getpriority_self() -> Result<i32, i32> {
    // SAFETY: clearing errno through the thread-local pointer libc provides.
    unsafe { *libc::__errno_location() = 0 };
    // SAFETY: a plain syscall wrapper with integer arguments.
    let r = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    // SAFETY: reading this thread's errno right after the call.
    let e = unsafe { *libc::__errno_location() };
    if r == -1 && e != 0 {
        Err(e)
    } else {
        Ok(r)
    }
}

/// Calls each syscall a seccomp profile test cares about and returns its errno (0 when
/// it succeeded): unshare(CLONE_NEWUTS), mount of a tmpfs on /tmp, keyctl
/// (KEYCTL_GET_KEYRING_ID of the session keyring), clone3 with a null argument, getpid.
pub fn syscall_probe() -> Vec<(&'static str, i32)> {
    fn errno_of(ret: libc::c_long) -> i32 {
        if ret < 0 {
            std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
        } else {
            0
        }
    }
    // SAFETY: each call passes only integers or valid, NUL-terminated static strings;
    // the results are only inspected for their errno.
    unsafe {
        vec![
            (
                "unshare",
                errno_of(libc::unshare(libc::CLONE_NEWUTS) as libc::c_long),
            ),
            (
                "mount",
                errno_of(libc::mount(
                    c"none".as_ptr(),
                    c"/tmp".as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    std::ptr::null(),
                ) as libc::c_long),
            ),
            (
                "keyctl",
                errno_of(libc::syscall(libc::SYS_keyctl, 0, -3i32, 0)),
            ),
            (
                "clone3",
                errno_of(libc::syscall(
                    libc::SYS_clone3,
                    std::ptr::null::<u8>(),
                    0usize,
                )),
            ),
            ("getpid", errno_of(libc::syscall(libc::SYS_getpid))),
        ]
    }
}

/// get_mempolicy(2) of the calling thread: (mode with its mode flags, nodes of the
/// node mask), or the errno.
pub fn mempolicy() -> Result<(i32, Vec<usize>), i32> {
    let mut mode: libc::c_int = 0;
    let mut mask = [0 as libc::c_ulong; 16];
    let bits = (mask.len() * libc::c_ulong::BITS as usize) as libc::c_ulong;
    // SAFETY: `mode` and `mask` are writable and outlive the call; `bits` is exactly
    // the size of `mask` in bits; a null address with flags 0 asks for the thread's
    // policy.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_get_mempolicy,
            &mut mode as *mut libc::c_int,
            mask.as_mut_ptr(),
            bits,
            std::ptr::null::<u8>(),
            0 as libc::c_ulong,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    let w = libc::c_ulong::BITS as usize;
    let nodes = (0..mask.len() * w)
        .filter(|n| mask[n / w] & (1 << (n % w)) != 0)
        .collect();
    Ok((mode, nodes))
}
