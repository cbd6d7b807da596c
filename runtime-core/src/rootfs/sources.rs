//! Bind-mount sources opened by the runtime for the init (config.md "Mounts").
//!
//! With a new user namespace the init is root of that namespace only: a source whose
//! path it cannot search (a parent directory of mode 000, owned by host root) would fail
//! to open. And an idmapped mount (`idmap`, `ridmap`, `uidMappings`/`gidMappings`) needs
//! CAP_SYS_ADMIN over the source's filesystem for `mount_setattr(MOUNT_ATTR_IDMAP)`. So,
//! after the clone and before `Go`, the runtime (host credentials) opens those sources
//! from a short-lived thread that joined the init's mount namespace (untouched yet: the
//! init waits for `Go`): an `O_PATH` fd of the source for a plain bind (the init binds it
//! like its own, so locked mounts stay locked), or for an idmapped one a detached
//! `open_tree(OPEN_TREE_CLONE)` copy with the mapping set, which the init attaches with
//! `move_mount`. The fds travel to the init over the channel; nothing is opened when the
//! container asks for neither.

use std::cell::RefCell;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sched::{setns, unshare, CloneFlags};
use oci_spec::runtime::{LinuxIdMapping, Mount, Spec};

use super::options;
use super::{sys_err, Result, RootfsError};
use crate::sys::mount_api::{self, attr, MountAttr};
use crate::sys::{self, Fork};

/// A source opened by the runtime for mount entry `index`.
#[derive(Debug)]
pub struct Source {
    /// Index in `mounts`.
    pub index: usize,
    /// `O_PATH` fd of the source, or (`tree`) a detached, idmapped copy of its mount.
    pub fd: OwnedFd,
    /// `fd` is a detached mount tree to attach with `move_mount`.
    pub tree: bool,
}

/// The sources the init received, each taken once by the mount entry it belongs to.
#[derive(Debug, Default)]
pub struct MountSources {
    list: RefCell<Vec<Source>>,
}

impl MountSources {
    /// Adds a received source.
    pub fn insert(&self, s: Source) {
        self.list.borrow_mut().push(s);
    }

    /// Takes the source of entry `index`, if the runtime opened one.
    pub(crate) fn take(&self, index: usize) -> Option<Source> {
        let mut l = self.list.borrow_mut();
        let at = l.iter().position(|s| s.index == index)?;
        Some(l.swap_remove(at))
    }

    /// Closes every source not taken (after the mounts: none may reach the container).
    pub fn clear(&self) {
        self.list.borrow_mut().clear();
    }
}

/// What entry `m` needs from the runtime: `None`, `Some(false)` an `O_PATH` source,
/// `Some(true)` an idmapped tree.
fn wanted(m: &Mount, userns: bool) -> Option<bool> {
    let typ = m.typ().as_deref();
    let opts = options::parse(typ, m.options().as_deref().unwrap_or(&[]));
    if !opts.is_bind() || matches!(typ, Some("cgroup" | "cgroup2")) {
        return None;
    }
    if idmapped(m, &opts) {
        return Some(true);
    }
    // A runtime without root cannot join the init's mount namespace (setns needs
    // CAP_SYS_ADMIN and CAP_SYS_CHROOT in its own user namespace), and reaches nothing
    // the container's root could not: the init opens its sources itself then (as runc).
    (userns && nix::unistd::geteuid().is_root()).then_some(false)
}

/// True when the entry asks for an idmapped mount (the option, or mappings alone, which
/// runc also takes as a non-recursive `idmap`).
pub(crate) fn idmapped(m: &Mount, opts: &options::MountOptions) -> bool {
    opts.idmap.is_some() || m.uid_mappings().is_some() || m.gid_mappings().is_some()
}

/// True when the runtime must open sources for this container (see the module docs).
pub fn needed(spec: &Spec, userns: bool) -> bool {
    spec.mounts()
        .iter()
        .flatten()
        .any(|m| wanted(m, userns).is_some())
}

/// The host path of a bind source: absolute, or relative to the bundle (config.md).
pub fn source_path(m: &Mount, bundle: &Path) -> Option<PathBuf> {
    let s = m.source().as_deref()?;
    Some(if s.is_absolute() {
        s.to_path_buf()
    } else {
        bundle.join(s)
    })
}

fn what(i: usize, m: &Mount) -> String {
    format!(
        "mounts[{i}] ({} on {})",
        m.typ().as_deref().unwrap_or("none"),
        m.destination().display()
    )
}

/// Opens the sources the init needs (runtime side, host credentials). `pidfd` is the
/// init's (its mount namespace is joined), `pid` its host pid, `proc_fd` the verified
/// host procfs (for the init's user namespace, the default idmapping).
pub fn open(
    spec: &Spec,
    bundle: &Path,
    userns: bool,
    pid: i32,
    pidfd: BorrowedFd<'_>,
    proc_fd: BorrowedFd<'_>,
) -> Result<Vec<Source>> {
    // The user namespaces of the idmaps first: forking is not done from the thread.
    let mut jobs = Vec::new();
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let Some(tree) = wanted(m, userns) else {
            continue;
        };
        let userns_fd = if tree {
            Some(idmap_userns(m, pid, proc_fd).map_err(sys_err(format!(
                "{}: user namespace for the idmap",
                what(i, m)
            )))?)
        } else {
            None
        };
        jobs.push((i, m, userns_fd));
    }
    std::thread::scope(|s| {
        s.spawn(|| -> Result<Vec<Source>> {
            // A thread of its own joins the init's mount namespace (and dies with it).
            unshare(CloneFlags::CLONE_FS).map_err(sys_err("mount sources: unshare"))?;
            setns(pidfd, CloneFlags::CLONE_NEWNS).map_err(sys_err(
                "mount sources: joining the container's mount namespace",
            ))?;
            jobs.iter()
                .map(|(i, m, userns_fd)| open_one(*i, m, bundle, userns_fd.as_ref()))
                .collect()
        })
        .join()
        .unwrap_or_else(|_| Err(super::refused("mount sources", "thread panicked")))
    })
}

fn open_one(i: usize, m: &Mount, bundle: &Path, userns: Option<&OwnedFd>) -> Result<Source> {
    let w = what(i, m);
    let src =
        source_path(m, bundle).ok_or_else(|| super::refused(&w, "bind mount without source"))?;
    let path = super::cpath(&src);
    let src_err = || sys_err(format!("{w}: source {}", src.display()));
    let Some(userns) = userns else {
        let fd = sys::open(&path, libc::O_PATH, 0).map_err(src_err())?;
        return Ok(Source {
            index: i,
            fd,
            tree: false,
        });
    };
    let opts = options::parse(m.typ().as_deref(), m.options().as_deref().unwrap_or(&[]));
    let mut flags = mount_api::OPEN_TREE_CLONE;
    if opts.flags.contains(nix::mount::MsFlags::MS_REC) {
        flags |= mount_api::AT_RECURSIVE;
    }
    let fd = mount_api::open_tree(None, &path, flags).map_err(src_err())?;
    let a = MountAttr {
        attr_set: attr::IDMAP,
        userns_fd: userns.as_raw_fd() as u64,
        ..Default::default()
    };
    mount_api::mount_setattr(fd.as_fd(), opts.idmap == Some(true), &a).map_err(|e| {
        RootfsError::Idmap {
            what: w.clone(),
            src: src.clone(),
            source: super::ErrnoText(e),
        }
    })?;
    Ok(Source {
        index: i,
        fd,
        tree: true,
    })
}

/// The user namespace whose mapping the idmapped mount uses: one made with the mount's
/// own `uidMappings`/`gidMappings` (config.md: the runtime MUST use them), else the
/// container's (the init's) user namespace.
fn idmap_userns(
    m: &Mount,
    pid: i32,
    proc_fd: BorrowedFd<'_>,
) -> std::result::Result<OwnedFd, Errno> {
    match (m.uid_mappings(), m.gid_mappings()) {
        (Some(u), Some(g)) => userns_with(u, g, proc_fd),
        _ => sys::openat(
            proc_fd,
            &super::cpath(Path::new(&format!("{pid}/ns/user"))),
            libc::O_RDONLY,
            0,
        ),
    }
}

fn map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// A new user namespace with these maps: a forked child unshares it and waits while
/// the maps are written and its `ns/user` opened, then exits.
fn userns_with(
    uid: &[LinuxIdMapping],
    gid: &[LinuxIdMapping],
    proc_fd: BorrowedFd<'_>,
) -> std::result::Result<OwnedFd, Errno> {
    let (ready_r, ready_w) = nix::unistd::pipe()?;
    let (done_r, done_w) = nix::unistd::pipe()?;
    let child = match sys::fork()? {
        Fork::Child => {
            // Only raw syscalls here: the runtime may have other threads.
            drop(ready_r);
            drop(done_w);
            let code: u8 = match unshare(CloneFlags::CLONE_NEWUSER) {
                Ok(()) => 0,
                Err(_) => 1,
            };
            let _ = nix::unistd::write(&ready_w, &[code]);
            let mut b = [0u8; 1];
            let _ = nix::unistd::read(done_r.as_raw_fd(), &mut b);
            sys::exit_now(0)
        }
        Fork::Parent(p) => p,
    };
    drop(ready_w);
    drop(done_r);
    let result = (|| {
        let mut b = [1u8; 1];
        if nix::unistd::read(ready_r.as_raw_fd(), &mut b)? != 1 || b[0] != 0 {
            return Err(Errno::EPERM);
        }
        let write = |name: &str, text: &str| -> std::result::Result<(), Errno> {
            let p = super::cpath(Path::new(&format!("{child}/{name}")));
            let fd = sys::openat(proc_fd, &p, libc::O_WRONLY, 0)?;
            sys::write_all(fd.as_fd(), text.as_bytes())
        };
        write("uid_map", &map_text(uid))?;
        write("gid_map", &map_text(gid))?;
        sys::openat(
            proc_fd,
            &super::cpath(Path::new(&format!("{child}/ns/user"))),
            libc::O_RDONLY,
            0,
        )
    })();
    drop(done_w);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child), None);
    result
}
