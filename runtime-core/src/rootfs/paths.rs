//! Path resolution inside the container's root filesystem. Container-controlled paths
//! are never resolved as strings on the host: every lookup goes through openat2(2)
//! with `RESOLVE_IN_ROOT`, so `..` and absolute symlinks stay inside the rootfs.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path};

use nix::errno::Errno;
use nix::fcntl::readlinkat;
use nix::sys::stat::{fstat, mkdirat, Mode, SFlag};

use crate::sys::{self, resolve};

fn cstr(p: &Path) -> CString {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes()).unwrap_or_else(|_| CString::from(c"/invalid\u{1}path"))
}

/// The container-relative form of `path` (no leading `/`, `.` for the root).
fn relative(path: &Path) -> std::path::PathBuf {
    let rel: std::path::PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::RootDir))
        .collect();
    if rel.as_os_str().is_empty() {
        ".".into()
    } else {
        rel
    }
}

/// Opens `path` inside `root` (`O_PATH` plus `flags`), following symlinks only within it.
pub fn open_in_root(root: BorrowedFd<'_>, path: &Path, flags: i32) -> Result<OwnedFd, Errno> {
    sys::openat2(
        root,
        &cstr(&relative(path)),
        libc::O_PATH | flags,
        0,
        resolve::IN_ROOT | resolve::NO_MAGICLINKS,
    )
}

/// Opens `path` inside `root` refusing any symlink on the way (for /proc, /sys, /dev/null).
pub fn open_no_symlinks(root: BorrowedFd<'_>, path: &Path, flags: i32) -> Result<OwnedFd, Errno> {
    sys::openat2(
        root,
        &cstr(&relative(path)),
        libc::O_PATH | libc::O_NOFOLLOW | flags,
        0,
        resolve::IN_ROOT | resolve::NO_SYMLINKS,
    )
}

/// Creates every missing directory of `path` inside `root` and returns an `O_PATH`
/// fd of the last one. Never leaves the rootfs: each prefix is resolved in-root, and a
/// new directory is made relative to its already-resolved parent by a plain name. A
/// dangling symlink on the way is followed the way the kernel would, inside the root:
/// its target is created there (as runc does).
pub fn mkdir_all(root: BorrowedFd<'_>, path: &Path, mode: u32) -> Result<OwnedFd, Errno> {
    mkdir_all_depth(root, path, mode, 0)
}

fn mkdir_all_depth(
    root: BorrowedFd<'_>,
    path: &Path,
    mode: u32,
    depth: u32,
) -> Result<OwnedFd, Errno> {
    if depth > 40 {
        return Err(Errno::ELOOP);
    }
    let rel = relative(path);
    let comps: Vec<Component<'_>> = rel.components().collect();
    let mut cur = open_in_root(root, Path::new("."), libc::O_DIRECTORY)?;
    let mut prefix = std::path::PathBuf::new();
    for (i, comp) in comps.iter().enumerate() {
        prefix.push(comp);
        match open_in_root(root, &prefix, libc::O_DIRECTORY) {
            Ok(fd) => cur = fd,
            Err(Errno::ENOENT) => {
                let Component::Normal(name) = comp else {
                    return Err(Errno::ENOENT);
                };
                match mkdirat(Some(cur.as_raw_fd()), *name, Mode::from_bits_truncate(mode)) {
                    Ok(()) => {}
                    Err(Errno::EEXIST) => {
                        // A dangling symlink: create what it points to, in the root.
                        let target = readlinkat(Some(cur.as_raw_fd()), *name)?;
                        let base = prefix.parent().unwrap_or(Path::new(""));
                        let mut next = if Path::new(&target).is_absolute() {
                            std::path::PathBuf::from(&target)
                        } else {
                            base.join(&target)
                        };
                        next.extend(&comps[i + 1..]);
                        return mkdir_all_depth(root, &next, mode, depth + 1);
                    }
                    Err(e) => return Err(e),
                }
                cur = open_in_root(root, &prefix, libc::O_DIRECTORY)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(cur)
}

/// Makes sure `path` exists inside `root` as a directory (`dir`) or a regular file,
/// creating its parents, and returns an `O_PATH` fd of it. A dangling symlink is
/// followed inside the root: what it points to is created (as runc does).
pub fn ensure(root: BorrowedFd<'_>, path: &Path, dir: bool) -> Result<OwnedFd, Errno> {
    ensure_depth(root, path, dir, 0)
}

fn ensure_depth(
    root: BorrowedFd<'_>,
    path: &Path,
    dir: bool,
    depth: u32,
) -> Result<OwnedFd, Errno> {
    if depth > 40 {
        return Err(Errno::ELOOP);
    }
    match open_in_root(root, path, 0) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(e),
    }
    if dir {
        return mkdir_all(root, path, 0o755);
    }
    let parent_path = path.parent().unwrap_or(Path::new("/"));
    let parent = mkdir_all(root, parent_path, 0o755)?;
    let name = path.file_name().ok_or(Errno::EINVAL)?;
    match sys::openat(
        parent.as_fd(),
        &cstr(Path::new(name)),
        libc::O_CREAT | libc::O_WRONLY | libc::O_NOFOLLOW,
        0o644,
    ) {
        Ok(_) | Err(Errno::EEXIST) => {}
        Err(Errno::ELOOP) => {
            // A dangling symlink: create its target, resolved in the root.
            let target = readlinkat(Some(parent.as_raw_fd()), name)?;
            let next = if Path::new(&target).is_absolute() {
                std::path::PathBuf::from(&target)
            } else {
                parent_path.join(&target)
            };
            return ensure_depth(root, &next, dir, depth + 1);
        }
        Err(e) => return Err(e),
    }
    open_in_root(root, path, 0)
}

/// File type bits of an fd.
pub fn file_type(fd: BorrowedFd<'_>) -> Result<(SFlag, u64), Errno> {
    let st = fstat(fd.as_raw_fd())?;
    Ok((
        SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT),
        st.st_rdev,
    ))
}

/// `self/fd/N`: the magic-link path of `fd`, relative to a procfs directory that is the
/// current working directory during mount setup (see `rootfs::Mounter`).
pub fn proc_fd_path(fd: BorrowedFd<'_>) -> CString {
    CString::new(format!("self/fd/{}", fd.as_raw_fd())).expect("no NUL in a number")
}

/// Opens `path` below the procfs directory `proc` without crossing a mount or a magic
/// link, so a mount planted over a procfs file cannot redirect the write (CVE-2025-52881).
pub fn open_proc(proc: BorrowedFd<'_>, path: &Path, flags: i32) -> Result<OwnedFd, Errno> {
    sys::openat2(
        proc,
        &cstr(path),
        flags | libc::O_NOFOLLOW,
        0,
        resolve::BENEATH | resolve::NO_XDEV | resolve::NO_MAGICLINKS,
    )
}

/// Resolves a container-controlled path the way execve(2) would, but never through a
/// magic link: an absolute path in-root (`RESOLVE_IN_ROOT` on `root`), a relative one
/// from the working directory (already inside the container, whose root bounds `..`).
/// Returns an `O_PATH` fd of it.
pub fn open_container_path(root: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd, Errno> {
    if path.is_absolute() {
        return open_in_root(root, path, 0);
    }
    let cwd = sys::open(c".", libc::O_PATH | libc::O_DIRECTORY, 0)?;
    sys::openat2(
        cwd.as_fd(),
        &cstr(path),
        libc::O_PATH,
        0,
        resolve::NO_MAGICLINKS,
    )
}

/// Reads a regular file inside `root` (resolved in-root, no magic links, never blocking
/// on a fifo), up to `limit` bytes.
pub fn read_in_root(root: BorrowedFd<'_>, path: &Path, limit: usize) -> Result<Vec<u8>, Errno> {
    let fd = sys::openat2(
        root,
        &cstr(&relative(path)),
        libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
        0,
        resolve::IN_ROOT | resolve::NO_MAGICLINKS,
    )?;
    if file_type(fd.as_fd())?.0 != SFlag::S_IFREG {
        return Err(Errno::EINVAL);
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    while out.len() < limit {
        match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
    out.truncate(limit);
    Ok(out)
}

/// The home directory of `uid` in the container's `/etc/passwd` (read in-root), else `/`.
pub fn home_of(root: BorrowedFd<'_>, uid: u32) -> String {
    let Ok(data) = read_in_root(root, Path::new("/etc/passwd"), 1 << 20) else {
        return "/".into();
    };
    String::from_utf8_lossy(&data)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 7 && f[2].parse() == Ok(uid)).then(|| f[5].to_string())
        })
        .find(|h| !h.is_empty())
        .unwrap_or_else(|| "/".into())
}
