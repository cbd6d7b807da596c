//! The state store (runtime.md "State"): one directory per container under the
//! runtime's root, an atomically replaced `state.json`, and a lock per container.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The id is not acceptable as a container id.
    #[error("invalid container id {0:?}: {1}")]
    BadId(String, &'static str),
    /// A container with this id already exists.
    #[error("container with id {0} already exists")]
    Exists(String),
    /// No container with this id.
    #[error("container {0} does not exist")]
    Missing(String),
    /// Reading or writing the store failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// state.json could not be decoded.
    #[error("{path}: corrupt state: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}

type Result<T> = std::result::Result<T, StoreError>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What the runtime remembers of a container between commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// The container id.
    pub id: String,
    /// Init pid on the host (0 while creating).
    pub pid: i32,
    /// The init's start time (field 22 of `/proc/<pid>/stat`), so a reused pid is never
    /// taken for the container.
    pub start_time: u64,
    /// The absolute bundle path.
    pub bundle: PathBuf,
    /// The absolute rootfs path.
    pub rootfs: PathBuf,
    /// Creation time, RFC 3339.
    pub created: String,
    /// The uid of the user who created the container (runc's "owner" is its name).
    pub owner: String,
    /// The absolute cgroup path, when the runtime made one.
    pub cgroup_path: Option<String>,
    /// The configuration the container was created with.
    pub config: Spec,
    /// Set once `start` has exec'd the user process.
    #[serde(default)]
    pub started: bool,
    /// Annotations from the config (copied out for `state`).
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// The systemd unit of the cgroup, with the systemd cgroup driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd_unit: Option<String>,
    /// The unit is in the creator's own systemd instance (a rootless caller's).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub systemd_user: bool,
}

/// What `state` and `list` need of a [`Record`]: all but the config, of which only
/// `ociVersion` is read (the parser skips the rest instead of building oci-spec's types:
/// the per-container cost of `list`).
#[derive(Debug, Deserialize)]
pub(crate) struct Summary {
    pub id: String,
    pub pid: i32,
    pub start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    pub cgroup_path: Option<String>,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    pub config: SummaryConfig,
}

/// The config's `ociVersion`, the one part of it a [`Summary`] keeps.
#[derive(Debug, Deserialize)]
pub(crate) struct SummaryConfig {
    #[serde(rename = "ociVersion")]
    pub version: String,
}

impl Summary {
    /// The summary of a record already loaded.
    pub(crate) fn of(rec: &Record) -> Summary {
        Summary {
            id: rec.id.clone(),
            pid: rec.pid,
            start_time: rec.start_time,
            bundle: rec.bundle.clone(),
            rootfs: rec.rootfs.clone(),
            created: rec.created.clone(),
            owner: rec.owner.clone(),
            cgroup_path: rec.cgroup_path.clone(),
            annotations: rec.annotations.clone(),
            config: SummaryConfig {
                version: rec.config.version().clone(),
            },
        }
    }
}

/// The runtime's root directory (`--root`).
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// Checks a container id: not empty, no `/`, not `.` or `..`, no NUL, at most 1024 bytes.
pub fn validate_id(id: &str) -> Result<()> {
    let bad = |why| Err(StoreError::BadId(id.to_string(), why));
    if id.is_empty() {
        return bad("empty");
    }
    if id.len() > 1024 {
        return bad("longer than 1024 bytes");
    }
    if id == "." || id == ".." || id.contains("..") {
        return bad("must not contain \"..\"");
    }
    if id.contains('/') || id.contains('\0') {
        return bad("must not contain '/' or NUL");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b))
    {
        return bad("only letters, digits, '_', '+', '-' and '.' are allowed");
    }
    Ok(())
}

impl Store {
    /// A store rooted at `root` (created on first use, mode 0700).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Store { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of container `id`.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Claims `id`: creates its directory exclusively and locks it. Exactly one of any
    /// number of concurrent claims of one id succeeds.
    pub(crate) fn claim(&self, id: &str) -> Result<Lock> {
        validate_id(id)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(io(&self.root))?;
        let dir = self.dir(id);
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(StoreError::Exists(id.into()))
            }
            Err(e) => return Err(io(&dir)(e)),
        }
        Lock::take(&dir)
    }

    /// Locks an existing container's directory if nobody holds it: `None` when busy,
    /// [`StoreError::Missing`] when there is no such container (any more).
    pub(crate) fn try_lock(&self, id: &str) -> Result<Option<Lock>> {
        validate_id(id)?;
        let dir = self.dir(id);
        let f = match File::open(&dir) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::Missing(id.into()))
            }
            Err(e) => return Err(io(&dir)(e)),
        };
        match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(l) => Ok(Some(Lock { _dir: l })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(io(&dir)(e.into())),
        }
    }

    /// Takes a container's lock, waiting at most `timeout` for its holder to let go:
    /// woken when a descriptor of the directory is closed (a flock ends with the
    /// holder's last descriptor, on exit too), not by a timer. `busy` runs each time
    /// the lock is found taken. `None` on timeout.
    pub fn lock_waiting(
        &self,
        id: &str,
        timeout: std::time::Duration,
        mut busy: impl FnMut(),
    ) -> Result<Option<Lock>> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::{AsFd, AsRawFd};
        let deadline = std::time::Instant::now() + timeout;
        // The common case, nobody holds it, costs no watch (closing an inotify fd
        // waits for an RCU grace period: milliseconds on every delete).
        if let Some(l) = self.try_lock(id)? {
            return Ok(Some(l));
        }
        let dir = self.dir(id);
        // The watch before each further try: a release in between still wakes the poll.
        let mask = libc::IN_CLOSE_WRITE | libc::IN_CLOSE_NOWRITE;
        let watch = match crate::cgroups::sys::inotify_watch(&dir, mask) {
            Ok(fd) => fd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::Missing(id.into()))
            }
            Err(e) => return Err(io(&dir)(e)),
        };
        loop {
            if let Some(l) = self.try_lock(id)? {
                return Ok(Some(l));
            }
            busy();
            let now = std::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let t = PollTimeout::try_from(deadline - now).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(watch.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, t) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(io(&dir)(e.into())),
            }
            let mut buf = [0u8; 1024];
            while nix::unistd::read(watch.as_raw_fd(), &mut buf).is_ok_and(|n| n > 0) {}
        }
    }

    /// Locks an existing container's directory.
    pub(crate) fn lock(&self, id: &str) -> Result<Lock> {
        validate_id(id)?;
        let dir = self.dir(id);
        match Lock::take(&dir) {
            Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::Missing(id.into()))
            }
            r => r,
        }
    }

    /// Reads a container's record.
    pub fn load(&self, id: &str) -> Result<Record> {
        validate_id(id)?;
        let path = self.dir(id).join("state.json");
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::Missing(id.into()))
            }
            Err(e) => return Err(io(&path)(e)),
        };
        // Through the same deserializer type as `config::parse`: the config inside the
        // record then shares that parser's code (a second instantiation of oci-spec's
        // deserializers cost ~100 KiB of the binary's 3 MiB budget).
        let de = &mut serde_json::Deserializer::from_slice(&data);
        serde_path_to_error::deserialize(de).map_err(|e| StoreError::Corrupt {
            path,
            source: e.into_inner(),
        })
    }

    /// Reads the [`Summary`] of a container's record (for `state` and `list`).
    pub(crate) fn load_summary(&self, id: &str) -> Result<Summary> {
        validate_id(id)?;
        let path = self.dir(id).join("state.json");
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::Missing(id.into()))
            }
            Err(e) => return Err(io(&path)(e)),
        };
        serde_json::from_slice(&data).map_err(|source| StoreError::Corrupt { path, source })
    }

    /// Writes a container's record atomically (temporary file + rename).
    pub(crate) fn save(&self, record: &Record) -> Result<()> {
        let dir = self.dir(&record.id);
        let tmp = dir.join(".state.json.tmp");
        let path = dir.join("state.json");
        let data = serde_json::to_vec(record).map_err(|source| StoreError::Corrupt {
            path: path.clone(),
            source,
        })?;
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&data).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }

    /// Removes a container's directory and everything in it.
    pub(crate) fn remove(&self, id: &str) -> Result<()> {
        let dir = self.dir(id);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&dir)(e)),
            _ => Ok(()),
        }
    }

    /// Ids of all containers in the store, sorted.
    pub fn list(&self) -> Result<Vec<String>> {
        let rd = match std::fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&self.root)(e)),
        };
        let mut ids: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|id| validate_id(id).is_ok())
            .collect();
        ids.sort();
        Ok(ids)
    }
}

/// An exclusive lock on a container's directory (flock), released on drop.
#[derive(Debug)]
pub struct Lock {
    _dir: Flock<File>,
}

impl Lock {
    fn take(dir: &Path) -> Result<Lock> {
        let f = File::open(dir).map_err(io(dir))?;
        let locked = Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| io(dir)(e.into()))?;
        Ok(Lock { _dir: locked })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(validate_id("abc-1.2_x+y").is_ok());
        for bad in ["", ".", "..", "a/b", "a..b", &"x".repeat(1025), "a b"] {
            assert!(validate_id(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_id(&"x".repeat(1024)).is_ok());
    }

    /// `lock_waiting` returns once the holder's descriptor closes (from another
    /// thread here), calls `busy` while it waits, and gives up at its timeout.
    #[test]
    fn lock_waiting_wakes_on_release_and_times_out() {
        use std::time::Duration;
        let root = std::env::temp_dir().join(format!("casulo-lockw-{}", std::process::id()));
        let store = Store::new(&root);
        let _ = store.remove("w");
        drop(store.claim("w").unwrap());
        let held = store.lock("w").unwrap();
        let mut busy = 0;
        let none = store
            .lock_waiting("w", Duration::from_millis(50), || busy += 1)
            .unwrap();
        assert!(none.is_none() && busy >= 1);
        let (tx, rx) = std::sync::mpsc::channel();
        let got = std::thread::scope(|s| {
            s.spawn(move || {
                rx.recv().unwrap();
                drop(held);
            });
            store
                .lock_waiting("w", Duration::from_secs(30), || {
                    let _ = tx.send(());
                })
                .unwrap()
        });
        assert!(got.is_some());
        drop(got);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn concurrent_claims_give_one_winner() {
        let root = std::env::temp_dir().join(format!("casulo-store-{}", std::process::id()));
        let store = Store::new(&root);
        let wins: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..20)
                .map(|_| s.spawn(|| store.claim("same").is_ok() as usize))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(wins, 1);
    }
}
