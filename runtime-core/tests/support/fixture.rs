//! The test cgroup of `cgroups_real`: `/casulo-test-<pid>-<n>/c`, the processes started
//! in it, and what the tests read back.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use casulo_core::cgroups::{self, Cgroup, Layout};
use oci_spec::runtime::LinuxResources;

static N: AtomicUsize = AtomicUsize::new(0);

/// A test cgroup `/casulo-test-<pid>-<n>/c` and the processes started in it.
pub struct Fixture {
    pub parent: String,
    pub cg: Box<dyn Cgroup>,
    pub children: Vec<Child>,
}

impl Fixture {
    pub fn new() -> Fixture {
        // `$CASULO_TEST_CGROUP_BASE`: a delegated subtree (under systemd), as in integration.
        let base = std::env::var("CASULO_TEST_CGROUP_BASE").unwrap_or_default();
        let parent = format!(
            "{}/casulo-test-{}-{}",
            base.trim_end_matches('/'),
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let cg = cgroups::open(&format!("{parent}/c")).expect("open");
        Fixture {
            parent,
            cg,
            children: Vec::new(),
        }
    }

    /// Starts `sh -c script` that waits for a line on stdin before running
    /// the rest, so it can be moved into the cgroup first.
    pub fn spawn_gated(&mut self, script: &str) -> usize {
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("read _gate; {script}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        self.cg.add_process(child.id() as i32).expect("add_process");
        self.children.push(child);
        self.children.len() - 1
    }

    pub fn release(&mut self, i: usize) {
        let stdin = self.children[i].stdin.as_mut().expect("stdin");
        stdin.write_all(b"go\n").expect("release gate");
        stdin.flush().ok();
    }

    pub fn output(&mut self, i: usize) -> (String, String) {
        let c = &mut self.children[i];
        drop(c.stdin.take());
        let _ = wait_timeout(c, Duration::from_secs(10));
        let mut out = String::new();
        let mut err = String::new();
        c.stdout.take().map(|mut s| s.read_to_string(&mut out));
        c.stderr.take().map(|mut s| s.read_to_string(&mut err));
        (out, err)
    }

    /// Directory of `v1ctl` (v1/hybrid) or the v2 dir, for host-side asserts.
    pub fn dir(&self, v1ctl: &str) -> PathBuf {
        let rel = self.cg.path().trim_start_matches('/');
        match self.cg.layout() {
            Layout::V2 => Path::new("/sys/fs/cgroup").join(rel),
            _ => Path::new("/sys/fs/cgroup").join(v1ctl).join(rel),
        }
    }

    pub fn read(&self, v1ctl: &str, file: &str) -> String {
        let p = self.dir(v1ctl).join(file);
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .trim()
            .to_string()
    }

    pub fn all_dirs(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        for base in [self.parent.as_str(), self.cg.path()] {
            let rel = base.trim_start_matches('/');
            if self.cg.layout() == Layout::V2 {
                v.push(Path::new("/sys/fs/cgroup").join(rel));
                continue;
            }
            for (_, m) in cgroups::detect::v1_mounts().unwrap() {
                v.push(m.mountpoint.join(rel));
            }
            if self.cg.layout() == Layout::Hybrid {
                v.push(Path::new("/sys/fs/cgroup/unified").join(rel));
            }
        }
        v
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Only processes this test started (and their children) are in here.
        let _ = self.cg.kill_all(libc::SIGKILL);
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = self.cg.destroy();
        // Remove the per-test parent in case create failed half-way.
        for d in self.all_dirs() {
            if d.to_string_lossy().contains("/casulo-test-")
                && d.ends_with(self.parent.trim_start_matches('/'))
            {
                let _ = std::fs::remove_dir(&d);
            }
        }
    }
}

pub fn wait_timeout(c: &mut Child, t: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + t;
    loop {
        if let Ok(Some(s)) = c.try_wait() {
            return Some(s);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn res(json: &str) -> LinuxResources {
    serde_json::from_str(json).expect("resources json")
}
