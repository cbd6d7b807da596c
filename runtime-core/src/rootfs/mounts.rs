//! Mounting config.md's `mounts` entries, masked and readonly paths, inside the rootfs.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::SFlag;
use nix::sys::statvfs::{fstatvfs, FsFlags};
use oci_spec::runtime::Mount;

use super::options::{self, MountOptions};
use super::paths::{self, proc_fd_path};
use super::sources::{self, MountSources};
use super::{copyup, sys_err, Result};
use crate::sys::mount_api::{self, MountAttr};

/// One host cgroup hierarchy, as a `cgroup` mount entry reproduces it in the container.
#[derive(Debug, Clone)]
pub struct CgroupHierarchy {
    /// Directory name under the mount destination (`memory`, `cpu`, `unified`; empty on v2).
    pub name: String,
    /// `cgroup` or `cgroup2`.
    pub fstype: String,
    /// The hierarchy's mount options naming its controllers (`memory`, `none,name=systemd`).
    pub data: String,
    /// Where the hierarchy is mounted on the host.
    pub mountpoint: PathBuf,
    /// The hierarchy's controllers as /proc/self/cgroup names them (`cpu`,
    /// `name=systemd`; empty for cgroup2).
    pub key: String,
}

impl CgroupHierarchy {
    /// The host's cgroup hierarchies (from `/proc/self/mountinfo`), for `cgroup` mounts
    /// in the container.
    pub(crate) fn of_host() -> Vec<CgroupHierarchy> {
        let mut out = Vec::new();
        for m in crate::mountinfo::read_self().unwrap_or_default() {
            let (fstype, mnt) = (m.fstype.as_str(), m.mountpoint.as_str());
            if !mnt.starts_with("/sys/fs/cgroup") || (fstype != "cgroup" && fstype != "cgroup2") {
                continue;
            }
            let name = mnt
                .trim_start_matches("/sys/fs/cgroup")
                .trim_start_matches('/')
                .to_string();
            let mut data: Vec<&str> = m
                .super_options
                .split(',')
                .filter(|o| !["rw", "ro", "relatime", "nosuid", "nodev", "noexec"].contains(o))
                .collect();
            let key = if fstype == "cgroup2" {
                String::new()
            } else {
                data.join(",")
            };
            if fstype == "cgroup" && data.iter().all(|o| o.starts_with("name=")) {
                data.insert(0, "none");
            }
            out.push(CgroupHierarchy {
                name,
                fstype: fstype.into(),
                data: data.join(","),
                mountpoint: mnt.into(),
                key,
            });
        }
        out
    }
}

impl CgroupHierarchy {
    /// Host path of the calling process's cgroup in this hierarchy, from the text of
    /// `self/cgroup` (read once per `cgroup` mount by [`own_cgroups_text`]).
    fn own_cgroup(&self, text: &str) -> Option<PathBuf> {
        text.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctl, path) = (parts.next()?, parts.next()?, parts.next()?);
            (ctl == self.key).then(|| self.mountpoint.join(path.trim_start_matches('/')))
        })
    }
}

/// `self/cgroup` relative to the working directory (the verified procfs).
fn own_cgroups_text() -> String {
    std::fs::read_to_string("self/cgroup").unwrap_or_default()
}

/// Mounts things inside one rootfs. The working directory is a verified procfs, so
/// [`proc_fd_path`] names the exact file an fd refers to.
pub struct Mounter<'a> {
    /// The rootfs (a mount of its own).
    pub root: BorrowedFd<'a>,
    /// The container has a new user namespace.
    pub userns: bool,
    /// The bundle directory (relative bind sources are relative to it).
    pub bundle: &'a Path,
    /// Sources the runtime opened for the init (see `rootfs::sources`).
    pub sources: &'a MountSources,
    /// What the whole tree was made before the mounts (`MS_SLAVE` or `MS_PRIVATE`, with
    /// `MS_REC`): an idmapped tree cloned from the host's mounts is made the same.
    pub base_propagation: MsFlags,
    /// Make every bind `base_propagation` right after it is made (in the runtime's mount
    /// namespace, where a bind of a shared host mount would join its peer group).
    pub slave_binds: bool,
}

/// The flags of the mount `fd` is on that a bind remount must keep (the kernel refuses
/// to drop locked ones in a user namespace, and a read-only remount should not drop them).
fn kept_flags(fd: BorrowedFd<'_>) -> MsFlags {
    let Ok(st) = fstatvfs(fd) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (ff, mf) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        (
            // ST_NOSYMFOLLOW (glibc's statvfs.h; not in libc 0.2).
            FsFlags::from_bits_retain(0x2000),
            MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW),
        ),
    ] {
        if f.contains(ff) {
            out |= mf;
        }
    }
    out
}

const NONE: Option<&str> = None;

impl Mounter<'_> {
    fn open(&self, dest: &Path, what: &str) -> Result<OwnedFd> {
        paths::open_in_root(self.root, dest, 0).map_err(sys_err(what))
    }

    /// Mounts entry `i`; returns true when it bind-mounts the host's /dev (then the
    /// default devices are not created).
    pub fn mount_entry(
        &self,
        i: usize,
        m: &Mount,
        cgroups: &[CgroupHierarchy],
        cgroupns: bool,
    ) -> Result<bool> {
        let typ = m.typ().as_deref();
        let dest = m.destination();
        let what = format!(
            "mounts[{i}] ({} on {})",
            typ.unwrap_or("none"),
            dest.display()
        );
        let opts = options::parse(typ, m.options().as_deref().unwrap_or(&[]));
        if typ == Some("cgroup") || typ == Some("cgroup2") {
            self.mount_cgroup(dest, &opts, cgroups, cgroupns, &what)?;
            if !opts.recursive.is_empty() {
                let t = self.open(dest, &what)?;
                self.set_recursive(&t, &opts, &what)?;
            }
            return Ok(false);
        }
        if matches!(typ, Some("proc") | Some("sysfs")) {
            // CVE-2019-19921 / CVE-2023-27561: /proc or /sys must not be a symlink.
            self.refuse_symlink(dest, &what)?;
        }
        let target = if opts.is_bind() {
            self.bind(i, m, &opts, &what)?
        } else {
            self.mount_fs(m, &opts, &what)?
        };
        self.set_recursive(&target, &opts, &what)?;
        self.propagate(&target, &opts, &what)?;
        Ok(opts.is_bind() && dest == Path::new("/dev"))
    }

    /// A bind mount: of the source the runtime opened (an `O_PATH` fd, or an idmapped
    /// detached tree attached with `move_mount`), else of the source opened here.
    fn bind(&self, i: usize, m: &Mount, opts: &MountOptions, what: &str) -> Result<OwnedFd> {
        let dest = m.destination();
        let (src_fd, tree) = match self.sources.take(i) {
            Some(s) => (s.fd, s.tree),
            None => {
                let src = sources::source_path(m, self.bundle)
                    .ok_or_else(|| super::refused(what, "bind mount without source"))?;
                let fd = crate::sys::open(&super::cpath(&src), libc::O_PATH, 0)
                    .map_err(sys_err(format!("{what}: source {}", src.display())))?;
                (fd, false)
            }
        };
        let (k, _) = paths::file_type(src_fd.as_fd()).map_err(sys_err(what))?;
        let target = paths::ensure(self.root, dest, k == SFlag::S_IFDIR).map_err(sys_err(what))?;
        if tree {
            mount_api::move_mount(src_fd.as_fd(), target.as_fd()).map_err(sys_err(what))?;
        } else {
            let flags = opts.flags & (MsFlags::MS_BIND | MsFlags::MS_REC);
            mount(
                Some(&proc_fd_path(src_fd.as_fd())[..]),
                &proc_fd_path(target.as_fd())[..],
                NONE,
                flags,
                NONE,
            )
            .map_err(sys_err(what))?;
        }
        let target = self.open(dest, what)?;
        if tree || self.slave_binds {
            // A clone of the host's mounts shares their peer group: never propagate back.
            let p = self.base_propagation;
            mount(NONE, &proc_fd_path(target.as_fd())[..], NONE, p, NONE).map_err(sys_err(what))?;
        }
        // `-`, not `& !`: nix's complement would drop MS_NOSYMFOLLOW, which it does not know.
        let rest = opts.flags - (MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        if !rest.is_empty() {
            let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | rest | kept_flags(target.as_fd());
            mount(NONE, &proc_fd_path(target.as_fd())[..], NONE, flags, NONE)
                .map_err(sys_err(what))?;
        }
        Ok(target)
    }

    /// A filesystem mount (tmpfs, proc, …); with `tmpcopyup` the new tmpfs gets a copy
    /// of the directory it covers (made writable for the copy, read-only after if asked).
    fn mount_fs(&self, m: &Mount, opts: &MountOptions, what: &str) -> Result<OwnedFd> {
        let typ = m.typ().as_deref();
        let dest = m.destination();
        let target = paths::ensure(self.root, dest, true).map_err(sys_err(what))?;
        let below = if opts.copyup {
            Some(
                copyup::open_below(target.as_fd())
                    .map_err(sys_err(format!("{what}: tmpcopyup")))?,
            )
        } else {
            None
        };
        let source = m
            .source()
            .as_ref()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| typ.unwrap_or("none").to_string());
        let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
        let mut flags = opts.flags;
        if below.is_some() {
            flags.remove(MsFlags::MS_RDONLY);
        }
        mount(
            Some(source.as_str()),
            &proc_fd_path(target.as_fd())[..],
            typ,
            flags,
            data,
        )
        .map_err(sys_err(what))?;
        let target = self.open(dest, what)?;
        if let Some(below) = below {
            copyup::copy(&below, target.as_fd(), &opts.data)
                .map_err(|(e, p)| sys_err(format!("{what}: tmpcopyup {}", p.display()))(e))?;
            if opts.flags.contains(MsFlags::MS_RDONLY) {
                self.remount_readonly(target.as_fd(), what)?;
            }
        }
        Ok(target)
    }

    /// The `r*` options: mount_setattr(AT_RECURSIVE) on the mount and every mount below.
    fn set_recursive(&self, target: &OwnedFd, opts: &MountOptions, what: &str) -> Result<()> {
        if opts.recursive.is_empty() {
            return Ok(());
        }
        let a = MountAttr {
            attr_set: opts.recursive.set,
            attr_clr: opts.recursive.clr,
            ..Default::default()
        };
        mount_api::mount_setattr(target.as_fd(), true, &a)
            .map_err(sys_err(format!("{what}: recursive mount attributes")))
    }

    fn refuse_symlink(&self, dest: &Path, what: &str) -> Result<()> {
        let refuse = || {
            super::refused(
                what,
                format!("{} in the rootfs is a symlink", dest.display()),
            )
        };
        // O_PATH|O_NOFOLLOW opens a trailing symlink itself; one on the way is ELOOP.
        match paths::open_no_symlinks(self.root, dest, 0) {
            Ok(fd) => match paths::file_type(fd.as_fd()) {
                Ok((SFlag::S_IFLNK, _)) => Err(refuse()),
                _ => Ok(()),
            },
            Err(Errno::ENOENT) => Ok(()),
            Err(Errno::ELOOP) => Err(refuse()),
            Err(e) => Err(sys_err(what)(e)),
        }
    }

    fn propagate(&self, target: &OwnedFd, opts: &MountOptions, what: &str) -> Result<()> {
        for p in &opts.propagation {
            mount(NONE, &proc_fd_path(target.as_fd())[..], NONE, *p, NONE)
                .map_err(sys_err(what))?;
        }
        Ok(())
    }

    /// A `cgroup` entry: cgroup2 on v2; on v1/hybrid a tmpfs with one mount per hierarchy
    /// (a fresh cgroup mount in a new cgroup namespace, else a bind of the container's
    /// own cgroup directory, as runc does).
    fn mount_cgroup(
        &self,
        dest: &Path,
        opts: &MountOptions,
        hier: &[CgroupHierarchy],
        cgroupns: bool,
        what: &str,
    ) -> Result<()> {
        let flags = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
        let target = paths::ensure(self.root, dest, true).map_err(sys_err(what))?;
        let own = if cgroupns {
            String::new()
        } else {
            own_cgroups_text()
        };
        if let [only] = hier {
            if only.name.is_empty() {
                return self.mount_hierarchy(only, dest, flags, cgroupns, &own, what);
            }
        }
        let tmpfs_flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
        mount(
            Some("tmpfs"),
            &proc_fd_path(target.as_fd())[..],
            Some("tmpfs"),
            tmpfs_flags,
            Some("mode=755"),
        )
        .map_err(sys_err(what))?;
        for h in hier {
            self.mount_hierarchy(h, &dest.join(&h.name), flags, cgroupns, &own, what)?;
        }
        if flags.contains(MsFlags::MS_RDONLY) {
            let t = self.open(dest, what)?;
            self.remount_readonly(t.as_fd(), what)?;
        }
        Ok(())
    }

    fn mount_hierarchy(
        &self,
        h: &CgroupHierarchy,
        dest: &Path,
        flags: MsFlags,
        cgroupns: bool,
        own_cgroups: &str,
        what: &str,
    ) -> Result<()> {
        let what = format!("{what}: {}", dest.display());
        let target = paths::ensure(self.root, dest, true).map_err(sys_err(&what))?;
        let base = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
        if cgroupns {
            let data = (!h.data.is_empty()).then_some(h.data.as_str());
            mount(
                Some("cgroup"),
                &proc_fd_path(target.as_fd())[..],
                Some(h.fstype.as_str()),
                base | flags,
                data,
            )
            .map_err(sys_err(&what))?;
            return Ok(());
        }
        let host = h
            .own_cgroup(own_cgroups)
            .unwrap_or_else(|| h.mountpoint.clone());
        let src = crate::sys::open(&super::cpath(&host), libc::O_PATH | libc::O_DIRECTORY, 0)
            .map_err(sys_err(format!("{what}: {}", host.display())))?;
        let bind = MsFlags::MS_BIND | MsFlags::MS_REC;
        mount(
            Some(&proc_fd_path(src.as_fd())[..]),
            &proc_fd_path(target.as_fd())[..],
            NONE,
            bind,
            NONE,
        )
        .map_err(sys_err(&what))?;
        // A bind keeps the source's flags: nosuid, nodev, noexec (and ro when asked)
        // are set on the container's mount itself, as runc's are.
        let t = self.open(dest, &what)?;
        if self.slave_binds {
            let p = self.base_propagation;
            mount(NONE, &proc_fd_path(t.as_fd())[..], NONE, p, NONE).map_err(sys_err(&what))?;
        }
        let ro = flags & MsFlags::MS_RDONLY;
        let remount = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | base | ro | kept_flags(t.as_fd());
        mount(NONE, &proc_fd_path(t.as_fd())[..], NONE, remount, NONE).map_err(sys_err(&what))?;
        Ok(())
    }

    /// Remounts the mount `fd` is the root of read-only, keeping its other flags.
    pub fn remount_readonly(&self, fd: BorrowedFd<'_>, what: &str) -> Result<()> {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | kept_flags(fd);
        mount(NONE, &proc_fd_path(fd)[..], NONE, flags, NONE).map_err(sys_err(what))
    }

    /// `linux.readonlyPaths`: bind the path onto itself, then remount it read-only.
    pub fn readonly_path(&self, p: &Path) -> Result<()> {
        let what = format!("linux.readonlyPaths {}", p.display());
        let fd = match paths::open_in_root(self.root, p, 0) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(sys_err(what)(e)),
        };
        let fdp = proc_fd_path(fd.as_fd());
        mount(
            Some(&fdp[..]),
            &fdp[..],
            NONE,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            NONE,
        )
        .map_err(sys_err(&what))?;
        let fd = self.open(p, &what)?;
        self.remount_readonly(fd.as_fd(), &what)
    }

    /// `linux.maskedPaths`: /dev/null over files, an empty read-only tmpfs over
    /// directories. The /dev/null used is verified to be the null device, not a symlink
    /// or a file planted by the image (CVE-2025-31133).
    pub fn mask_paths(&self, masked: &[String]) -> Result<()> {
        if masked.is_empty() {
            return Ok(());
        }
        let null = paths::open_no_symlinks(self.root, Path::new("/dev/null"), 0)
            .map_err(sys_err("linux.maskedPaths: /dev/null"))?;
        match paths::file_type(null.as_fd()) {
            Ok((SFlag::S_IFCHR, rdev)) if rdev == nix::sys::stat::makedev(1, 3) => {}
            _ => {
                return Err(super::refused(
                    "linux.maskedPaths",
                    "/dev/null in the container is not the null device",
                ))
            }
        }
        for p in masked {
            let what = format!("linux.maskedPaths {p}");
            let fd = match paths::open_in_root(self.root, Path::new(p), 0) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(sys_err(what)(e)),
            };
            let (k, _) = paths::file_type(fd.as_fd()).map_err(sys_err(&what))?;
            let target = proc_fd_path(fd.as_fd());
            if k == SFlag::S_IFDIR {
                mount(
                    Some("tmpfs"),
                    &target[..],
                    Some("tmpfs"),
                    MsFlags::MS_RDONLY,
                    NONE,
                )
                .map_err(sys_err(&what))?;
            } else {
                mount(
                    Some(&proc_fd_path(null.as_fd())[..]),
                    &target[..],
                    NONE,
                    MsFlags::MS_BIND,
                    NONE,
                )
                .map_err(sys_err(&what))?;
            }
        }
        Ok(())
    }
}
