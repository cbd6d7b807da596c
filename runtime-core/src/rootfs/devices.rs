//! Devices (config-linux.md "Devices", "Default Devices", "Dev symbolic links").

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{fchmodat, makedev, mknodat, FchmodatFlags, Mode, SFlag};
use nix::unistd::{fchownat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::mounts::Mounter;
use super::paths::{self, proc_fd_path};
use super::{sys_err, Result};

/// The devices every container gets (path, major, minor), all `c`, mode 0666, root-owned.
pub const DEFAULT_DEVICES: [(&str, u64, u64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

struct Node<'a> {
    path: &'a Path,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
}

/// Creates the default devices, then `linux.devices`, then the /dev symlinks.
pub fn create(m: &Mounter<'_>, devices: &[LinuxDevice]) -> Result<()> {
    for (path, major, minor) in DEFAULT_DEVICES {
        if devices.iter().any(|d| d.path() == Path::new(path)) {
            continue;
        }
        let n = Node {
            path: Path::new(path),
            kind: SFlag::S_IFCHR,
            major,
            minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        };
        make(m, &n, path)?;
    }
    for (i, d) in devices.iter().enumerate() {
        let kind = match d.typ() {
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            LinuxDeviceType::A => {
                return Err(super::refused(
                    format!("linux.devices[{i}].type"),
                    "\"a\" is not a device type",
                ))
            }
        };
        let n = Node {
            path: d.path(),
            kind,
            major: d.major() as u64,
            minor: d.minor() as u64,
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        };
        make(
            m,
            &n,
            &format!("linux.devices[{i}] ({})", d.path().display()),
        )?;
    }
    links(m)
}

fn make(m: &Mounter<'_>, n: &Node<'_>, what: &str) -> Result<()> {
    let parent = paths::mkdir_all(m.root, n.path.parent().unwrap_or(Path::new("/dev")), 0o755)
        .map_err(sys_err(what))?;
    let name = n
        .path
        .file_name()
        .ok_or(Errno::EINVAL)
        .map_err(sys_err(what))?;
    match unlinkat(Some(parent.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(sys_err(what)(e)),
    }
    if m.userns || !crate::caller::privileged() {
        // mknod needs CAP_MKNOD in the initial user namespace: bind the host's node.
        let host = crate::sys::open(&cstring(n.path), libc::O_PATH, 0)
            .map_err(sys_err(format!("{what}: host {}", n.path.display())))?;
        let target = paths::ensure(m.root, n.path, false).map_err(sys_err(what))?;
        return mount(
            Some(&proc_fd_path(host.as_fd())[..]),
            &proc_fd_path(target.as_fd())[..],
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(sys_err(what));
    }
    let mode = Mode::from_bits_truncate(n.mode);
    mknodat(
        Some(parent.as_raw_fd()),
        name,
        n.kind,
        mode,
        makedev(n.major, n.minor),
    )
    .map_err(sys_err(what))?;
    fchownat(
        Some(parent.as_raw_fd()),
        name,
        Some(Uid::from_raw(n.uid)),
        Some(Gid::from_raw(n.gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(sys_err(what))?;
    fchmodat(
        Some(parent.as_raw_fd()),
        name,
        mode,
        FchmodatFlags::FollowSymlink,
    )
    .map_err(sys_err(what))
}

fn cstring(p: &Path) -> CString {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
}

/// /dev/fd, stdin, stdout, stderr, ptmx (and core when /proc/kcore exists).
fn links(m: &Mounter<'_>) -> Result<()> {
    let dev = paths::mkdir_all(m.root, Path::new("/dev"), 0o755).map_err(sys_err("/dev"))?;
    let mut list = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    if Path::new("/proc/kcore").exists() {
        list.push(("/proc/kcore", "core"));
    }
    for (target, name) in list {
        match symlinkat(target, Some(dev.as_raw_fd()), name) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(sys_err(format!("/dev/{name}"))(e)),
        }
    }
    match unlinkat(Some(dev.as_raw_fd()), "ptmx", UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(sys_err("/dev/ptmx")(e)),
    }
    symlinkat("pts/ptmx", Some(dev.as_raw_fd()), "ptmx").map_err(sys_err("/dev/ptmx"))
}
