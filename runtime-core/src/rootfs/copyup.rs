//! `tmpcopyup` (the runc/crun extension config.md lists): a new tmpfs starts with a copy
//! of the directory it covers. The covered directory is kept open (an fd opened before
//! the mount still reaches it), and the copy goes from that fd to the new tmpfs's root
//! fd, one name at a time: every entry is opened relative to its parent's fd with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV`, so a symlink is copied as
//! a symlink and never followed, and nothing outside the covered directory (nor a mount
//! under it) is read. Modes, owners and times are kept.

use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{readlinkat, AtFlags};
use nix::sys::stat::{fchmod, fstatat, mkdirat, mknodat, utimensat, FileStat, Mode, SFlag};
use nix::sys::stat::{fchmodat, FchmodatFlags, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, symlinkat, Gid, Uid};

use crate::sys::{self, resolve};

/// Deepest directory nesting copied (a deeper tree is refused, not truncated).
const MAX_DEPTH: usize = 128;

/// An error of the copy: the errno and the path (relative to the mount) it happened on.
pub type CopyError = (Errno, PathBuf);

/// Opens the directory `target` (an `O_PATH` fd of the mount point) for reading, before
/// the tmpfs covers it.
pub fn open_below(target: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    sys::openat2(
        target,
        c".",
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
        resolve::BENEATH | resolve::NO_SYMLINKS | resolve::NO_XDEV,
    )
}

/// Copies the covered directory `below` into the new tmpfs root `root` (`O_PATH` is
/// enough). `data` is the mount's filesystem data: the root takes the covered
/// directory's mode and owner unless `mode=`, `uid=` or `gid=` set them.
pub fn copy(below: &OwnedFd, root: BorrowedFd<'_>, data: &str) -> Result<(), CopyError> {
    let root = sys::openat2(
        root,
        c".",
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
        resolve::BENEATH | resolve::NO_SYMLINKS,
    )
    .map_err(|e| (e, PathBuf::from(".")))?;
    copy_dir(below.as_fd(), root.as_fd(), Path::new(""), 0)?;
    let st = nix::sys::stat::fstat(below.as_raw_fd()).map_err(|e| (e, ".".into()))?;
    let has = |k: &str| data.split(',').any(|o| o.starts_with(k));
    if !has("uid=") || !has("gid=") {
        let uid = (!has("uid=")).then(|| Uid::from_raw(st.st_uid));
        let gid = (!has("gid=")).then(|| Gid::from_raw(st.st_gid));
        fchown(root.as_raw_fd(), uid, gid).map_err(|e| (e, ".".into()))?;
    }
    if !has("mode=") {
        fchmod(root.as_raw_fd(), mode_of(&st)).map_err(|e| (e, ".".into()))?;
    }
    Ok(())
}

fn mode_of(st: &FileStat) -> Mode {
    Mode::from_bits_truncate(st.st_mode & 0o7777)
}

fn kind_of(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT)
}

/// Opens `name` in `dir` without following a symlink or crossing a mount.
fn open_entry(dir: BorrowedFd<'_>, name: &CStr, flags: i32) -> Result<OwnedFd, Errno> {
    sys::openat2(
        dir,
        name,
        flags | libc::O_NOFOLLOW,
        0,
        resolve::BENEATH | resolve::NO_SYMLINKS | resolve::NO_XDEV | resolve::NO_MAGICLINKS,
    )
}

fn copy_dir(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    rel: &Path,
    depth: usize,
) -> Result<(), CopyError> {
    if depth > MAX_DEPTH {
        return Err((Errno::ELOOP, rel.to_path_buf()));
    }
    // A second fd for the listing (Dir owns and closes it).
    let list =
        open_entry(src, c".", libc::O_RDONLY | libc::O_DIRECTORY).map_err(|e| (e, rel.into()))?;
    let mut dir = nix::dir::Dir::from_fd(std::os::fd::IntoRawFd::into_raw_fd(list))
        .map_err(|e| (e, rel.into()))?;
    for entry in dir.iter() {
        let entry = entry.map_err(|e| (e, rel.into()))?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let path = rel.join(OsStr::from_bytes(name.to_bytes()));
        copy_entry(src, dst, name, &path, depth).map_err(|e| (e, path.clone()))?;
    }
    Ok(())
}

fn copy_entry(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    name: &CStr,
    path: &Path,
    depth: usize,
) -> Result<(), Errno> {
    let st = fstatat(Some(src.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    let (s, d) = (Some(src.as_raw_fd()), Some(dst.as_raw_fd()));
    match kind_of(&st) {
        SFlag::S_IFDIR => {
            let from = match open_entry(src, name, libc::O_RDONLY | libc::O_DIRECTORY) {
                Ok(fd) => Some(fd),
                // A mount point below the covered directory: an empty directory stands
                // for it (its contents are not the covered directory's).
                Err(Errno::EXDEV) => None,
                Err(e) => return Err(e),
            };
            mkdirat(d, name, Mode::from_bits_truncate(0o700))?;
            let to = open_entry(dst, name, libc::O_RDONLY | libc::O_DIRECTORY)?;
            if let Some(from) = &from {
                copy_dir(from.as_fd(), to.as_fd(), path, depth + 1).map_err(|(e, _)| e)?;
            }
            fchown(
                to.as_raw_fd(),
                Some(Uid::from_raw(st.st_uid)),
                Some(Gid::from_raw(st.st_gid)),
            )?;
            fchmod(to.as_raw_fd(), mode_of(&st))?;
        }
        SFlag::S_IFREG => {
            // O_NONBLOCK and the type check: a name swapped for a fifo or a device since
            // the fstatat is neither waited on nor read.
            let from = open_entry(src, name, libc::O_RDONLY | libc::O_NONBLOCK)?;
            if kind_of(&nix::sys::stat::fstat(from.as_raw_fd())?) != SFlag::S_IFREG {
                return Err(Errno::ESTALE);
            }
            let to = sys::openat(
                dst,
                name,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                0o600,
            )?;
            let (mut r, mut w) = (File::from(from), File::from(to));
            std::io::copy(&mut r, &mut w)
                .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
            fchown(
                w.as_raw_fd(),
                Some(Uid::from_raw(st.st_uid)),
                Some(Gid::from_raw(st.st_gid)),
            )?;
            fchmod(w.as_raw_fd(), mode_of(&st))?;
        }
        SFlag::S_IFLNK => {
            let target = readlinkat(s, name)?;
            symlinkat(target.as_os_str(), d, name)?;
            fchownat(
                d,
                name,
                Some(Uid::from_raw(st.st_uid)),
                Some(Gid::from_raw(st.st_gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )?;
        }
        kind => {
            // Devices, fifos and sockets: a new node of the same kind (mknod of a device
            // is refused in a user namespace; that error is reported).
            mknodat(d, name, kind, Mode::from_bits_truncate(0o600), st.st_rdev)?;
            fchownat(
                d,
                name,
                Some(Uid::from_raw(st.st_uid)),
                Some(Gid::from_raw(st.st_gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )?;
            // The node was just made in the new tmpfs: following its name is safe.
            fchmodat(d, name, mode_of(&st), FchmodatFlags::FollowSymlink)?;
        }
    }
    let atime = TimeSpec::new(st.st_atime, st.st_atime_nsec);
    let mtime = TimeSpec::new(st.st_mtime, st.st_mtime_nsec);
    utimensat(d, name, &atime, &mtime, UtimensatFlags::NoFollowSymlink)
}
