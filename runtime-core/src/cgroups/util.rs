//! Small file helpers shared by the backends: every failure names the file.

use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{CgroupError, Result};

/// Wraps an I/O error with the path it concerns.
pub(crate) fn io_err(path: &Path, source: std::io::Error) -> CgroupError {
    CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `value` to `dir/file`; a missing file is reported as the controller
/// or file being unsupported on this host, naming the `field` that asked for it.
pub(crate) fn write(dir: &Path, file: &str, value: &str, field: &str) -> Result<()> {
    let path = dir.join(file);
    if !path.exists() {
        return Err(CgroupError::Unsupported {
            field: field.to_string(),
            what: format!("{} does not exist on this host", path.display()),
        });
    }
    std::fs::write(&path, value).map_err(|source| CgroupError::Write {
        path,
        value: value.to_string(),
        field: field.to_string(),
        source,
    })
}

/// Thaws through `dir/file` (`freezer.state` THAWED, `cgroup.freeze` 0) when it exists:
/// a cgroup removed meanwhile (the container exited and was deleted) is not an error.
pub(crate) fn thaw(dir: &Path, file: &str, value: &str) -> Result<()> {
    let path = dir.join(file);
    // No O_CREAT: a file the kernel does not have is nothing to thaw.
    let written = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, value.as_bytes()));
    match written {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(CgroupError::Write {
            path,
            value: value.to_string(),
            field: "freezer".into(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Reads `dir/file` as a trimmed string.
pub(crate) fn read(dir: &Path, file: &str) -> Result<String> {
    let path = dir.join(file);
    read_small(&path)
        .map(|s| s.trim().to_string())
        .map_err(|e| io_err(&path, e))
}

/// Reads `dir/file` if it exists.
pub(crate) fn read_opt(dir: &Path, file: &str) -> Option<String> {
    read_small(&dir.join(file))
        .ok()
        .map(|s| s.trim().to_string())
}

/// A cgroup file's text, without the `statx` and `lseek` for a size hint that
/// `read_to_string` makes (cgroup files report size 0 or 4096 anyway).
fn read_small(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let (mut buf, mut out) = ([0u8; 4096], Vec::new());
    loop {
        match f.read(&mut buf)? {
            0 => break,
            n => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8(out).map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))
}

/// Reads a u64 (`max` reads as `u64::MAX`); missing or unparsable gives 0.
pub(crate) fn read_u64(dir: &Path, file: &str) -> u64 {
    match read_opt(dir, file) {
        Some(s) if s == "max" => u64::MAX,
        Some(s) => s.parse().unwrap_or(0),
        None => 0,
    }
}

/// Parses flat-keyed files (`key value` per line) such as `memory.stat`.
pub(crate) fn read_keyed(dir: &Path, file: &str) -> Vec<(String, u64)> {
    read_opt(dir, file)
        .map(|s| {
            s.lines()
                .filter_map(|l| {
                    let mut it = l.split_whitespace();
                    let k = it.next()?;
                    let v = it.next()?.parse().ok()?;
                    Some((k.to_string(), v))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Value of `key` in a flat-keyed file.
pub(crate) fn keyed_value(dir: &Path, file: &str, key: &str) -> Option<u64> {
    read_keyed(dir, file)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// Creates `dir` and its missing parents, returning the directories that were
/// actually created (outermost first).
pub(crate) fn mkdir_all(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if d.exists() {
            break;
        }
        missing.push(d.to_path_buf());
        cur = d.parent();
    }
    missing.reverse();
    let mut created = Vec::new();
    for d in missing {
        match std::fs::create_dir(&d) {
            Ok(()) => created.push(d),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(&d, e)),
        }
    }
    Ok(created)
}

/// Removes a cgroup directory and its child cgroups (children first). Missing is fine.
/// While the kernel reports it busy (its last tasks are still exiting), waits for the
/// event that ends that: `populated 0` in `cgroup.events` where the directory has one
/// (cgroup2), else the exit of the tasks `cgroup.procs` lists (their pidfds). Only if
/// it is still busy once empty does it retry on a short timer.
pub(crate) fn rmdir_tree(dir: &Path) -> Result<()> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                rmdir_tree(&e.path())?;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut delay = Duration::from_millis(1);
    let mut emptied = false;
    loop {
        let e = match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => e,
        };
        let busy = matches!(e.raw_os_error(), Some(libc::EBUSY | libc::ENOTEMPTY));
        let left = deadline.saturating_duration_since(Instant::now());
        if !busy || left.is_zero() {
            return Err(io_err(dir, e));
        }
        if emptied {
            // Empty, yet still busy (a child cgroup still going offline): no event
            // tells when that ends.
            std::thread::sleep(delay.min(left));
            delay = (delay * 2).min(Duration::from_millis(20));
        }
        emptied = if dir.join("cgroup.events").exists() {
            wait_unpopulated(dir, left)?
        } else {
            wait_pids_exit(left, || pids_of(dir))?
        };
    }
}

/// The pids in `dir/cgroup.procs` (none once the file is gone).
fn pids_of(dir: &Path) -> Result<Vec<i32>> {
    let mut out = Vec::new();
    read_procs(dir, &mut out)?;
    Ok(out)
}

/// Appends the pids of `dir/cgroup.procs` to `out`; false when the file is missing.
fn read_procs(dir: &Path, out: &mut Vec<i32>) -> Result<bool> {
    let procs = dir.join("cgroup.procs");
    match std::fs::read_to_string(&procs) {
        Ok(s) => out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err(&procs, e)),
    }
    Ok(true)
}

/// Pids listed in `cgroup.procs` of `dir` and of every descendant cgroup.
pub(crate) fn pids_recursive(dir: &Path) -> Result<Vec<i32>> {
    let mut out = Vec::new();
    collect_pids(dir, &mut out)?;
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) -> Result<()> {
    if !read_procs(dir, out)? {
        return Ok(());
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_pids(&e.path(), out)?;
            }
        }
    }
    Ok(())
}

/// Removes the directories a create made above the cgroup (`created`, outermost first),
/// innermost first, keeping those that hold other cgroups by now (or are gone); empties
/// the list. The first other error.
pub(crate) fn remove_created(created: &mut Vec<PathBuf>) -> Result<()> {
    let mut first = Ok(());
    for d in created.iter().rev() {
        match std::fs::remove_dir(d) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOENT | libc::EBUSY | libc::ENOTEMPTY)
                ) => {}
            Err(e) => {
                if first.is_ok() {
                    first = Err(io_err(d, e));
                }
            }
        }
    }
    created.clear();
    first
}

/// Writes a pid to `dir/cgroup.procs`. No retry: the kernel refuses a task for good
/// (EINVAL: a kernel thread, a task that may not migrate), never while it is being
/// created (a fork and a migration exclude each other on the threadgroup lock).
pub(crate) fn add_pid(dir: &Path, pid: i32) -> Result<()> {
    let path = dir.join("cgroup.procs");
    std::fs::write(&path, pid.to_string()).map_err(|e| io_err(&path, e))
}

/// Opens `path` for writing (a cgroup file handed to a new process, see
/// [`super::SelfJoin`]).
pub(crate) fn open_write(path: &Path) -> std::io::Result<std::os::fd::OwnedFd> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map(Into::into)
}

/// An `O_PATH|O_DIRECTORY` fd of a cgroup2 directory, for `CLONE_INTO_CGROUP`.
pub(crate) fn open_dir_path(dir: &Path) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(dir)
        .map(Into::into)
}

/// Polls `cond` until it returns true or `timeout` passes: only for the v1 freezer,
/// whose `freezer.state` has no change notification. The first checks come quickly
/// (0.1 ms, doubling up to 10 ms) because a freeze usually completes within a
/// scheduler tick.
pub(crate) fn wait_until(
    timeout: Duration,
    mut cond: impl FnMut() -> Result<bool>,
) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_micros(100);
    loop {
        if cond()? {
            return Ok(true);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        std::thread::sleep(delay.min(deadline - now));
        delay = (delay * 2).min(Duration::from_millis(10));
    }
}

/// Time left until `deadline` as a poll timeout, `None` once it has passed.
fn left(deadline: Instant) -> Option<nix::poll::PollTimeout> {
    let now = Instant::now();
    (now < deadline).then(|| {
        nix::poll::PollTimeout::try_from(deadline - now).unwrap_or(nix::poll::PollTimeout::MAX)
    })
}

/// Waits until the cgroup2 directory `dir` has no process left in it or below
/// (`populated 0` in `cgroup.events`). True when empty, false on timeout; a removed
/// cgroup is empty.
pub(crate) fn wait_unpopulated(dir: &Path, timeout: Duration) -> Result<bool> {
    wait_events(dir, "populated", 0, timeout)
}

/// Waits until `key` of the cgroup2 file `dir/cgroup.events` reads `want`, woken by
/// inotify (the kernel modifies the file when a value changes), never by a timer.
/// True when it does, false on timeout; a removed cgroup counts as 0.
pub(crate) fn wait_events(dir: &Path, key: &str, want: u64, timeout: Duration) -> Result<bool> {
    use nix::poll::{poll, PollFd, PollFlags};
    use std::os::fd::AsFd;
    let events = dir.join("cgroup.events");
    // Usually already true: then no watch (closing an inotify fd costs milliseconds).
    if keyed_value(dir, "cgroup.events", key).unwrap_or(0) == want {
        return Ok(true);
    }
    // The watch, then each further read: a change in between still wakes the poll.
    let watch = match super::sys::inotify_modify(&events) {
        Ok(fd) => fd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(want == 0),
        Err(e) => return Err(io_err(&events, e)),
    };
    let deadline = Instant::now() + timeout;
    loop {
        if keyed_value(dir, "cgroup.events", key).unwrap_or(0) == want {
            return Ok(true);
        }
        let Some(t) = left(deadline) else {
            return Ok(false);
        };
        let mut fds = [PollFd::new(watch.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, t) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(io_err(&events, e.into())),
        }
        let mut buf = [0u8; 1024];
        while nix::unistd::read(watch.as_fd().as_raw_fd(), &mut buf).is_ok_and(|n| n > 0) {}
    }
}

/// Waits until `list` (the pids of a cgroup) is empty, on the pidfds of the processes
/// it names (for cgroup v1, which has no `cgroup.events`). True when empty, false on
/// timeout.
pub(crate) fn wait_pids_exit(
    timeout: Duration,
    list: impl Fn() -> Result<Vec<i32>>,
) -> Result<bool> {
    use nix::poll::{poll, PollFd, PollFlags};
    use std::os::fd::AsFd;
    let deadline = Instant::now() + timeout;
    loop {
        let pids = list()?;
        if pids.is_empty() {
            return Ok(true);
        }
        // A pid that exited between the read and the open has no pidfd: the list is
        // read again at once.
        let mut fds: Vec<_> = pids
            .iter()
            .filter_map(|&p| crate::sys::pidfd_open(p).ok())
            .collect();
        if fds.is_empty() {
            std::thread::yield_now();
        }
        while !fds.is_empty() {
            let Some(t) = left(deadline) else {
                return Ok(false);
            };
            let mut pfds: Vec<PollFd<'_>> = fds
                .iter()
                .map(|f| PollFd::new(f.as_fd(), PollFlags::POLLIN))
                .collect();
            match poll(&mut pfds, t) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(io_err(Path::new("pidfd"), e.into())),
            }
            let exited: Vec<bool> = pfds
                .iter()
                .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            drop(pfds);
            let mut it = exited.into_iter();
            fds.retain(|_| !it.next().unwrap_or(false));
        }
        if left(deadline).is_none() {
            return Ok(false);
        }
    }
}
