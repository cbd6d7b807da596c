//! containerd (`ctr` + the io.containerd.runc.v2 shim) driving Casulo as its runc:
//! run with an exit code, detached + exec, pause/resume, metrics, ps, kill and
//! kill --all, delete, a missing executable, and a terminal. A private containerd (own root, state, sockets, in its own mount
//! namespace) is started for the test and stopped by pid.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use casulo_integration::bundle::remove_cgroup_parent;
use casulo_integration::casulo_bin;
use casulo_integration::engines::{self, Daemon, Out, TempDir, IMAGE};

struct Ctr {
    daemon: Option<Daemon>,
    dir: TempDir,
    sock: PathBuf,
    runc_root: PathBuf,
    casulo: PathBuf,
}

impl Ctr {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(&self.sock)
            .args(["--namespace", "casulotest"])
            .args(args);
        c
    }
    fn ctr(&self, args: &[&str]) -> Out {
        engines::run(&mut self.cmd(args), Duration::from_secs(60))
    }
    /// `ctr run` with Casulo as the runtime binary, no network namespace setup, the
    /// cgroup under the test's parent.
    fn run(&self, flags: &[&str], id: &str, args: &[&str]) -> Out {
        let cg = format!("{}/{id}", engines::cgroup_parent());
        let fifo = self.dir.join("fifo");
        let mut a: Vec<&str> = vec!["run", "--snapshotter", "native", "--runc-binary"];
        let casulo = self.casulo.to_str().unwrap().to_string();
        let root = self.runc_root.to_str().unwrap().to_string();
        let fifo = fifo.to_str().unwrap().to_string();
        a.extend([casulo.as_str(), "--runc-root", root.as_str()]);
        a.extend(["--cgroup", cg.as_str(), "--fifo-dir", fifo.as_str()]);
        a.extend(flags);
        a.extend([IMAGE, id]);
        a.extend(args);
        self.ctr(&a)
    }
    fn cleanup(&self, id: &str) {
        let _ = self.ctr(&["task", "kill", "-s", "SIGKILL", id]);
        let _ = self.ctr(&["task", "delete", "--force", id]);
        let _ = self.ctr(&["container", "delete", id]);
    }
}

impl Drop for Ctr {
    fn drop(&mut self) {
        for id in ["ct-hello", "ct-det", "ct-all", "ct-enoent", "ct-tty"] {
            self.cleanup(id);
        }
        drop(self.daemon.take());
        engines::kill_leftovers(&self.dir.path);
        remove_cgroup_parent();
    }
}

fn start() -> Option<Ctr> {
    if engines::missing(&["containerd", "ctr", "containerd-shim-runc-v2", "unshare"]).is_some() {
        return None;
    }
    let dir = TempDir::new("containerd");
    let (sock, d) = engines::start_containerd_without_cri(&dir.path);
    let ctr = Ctr {
        daemon: Some(d),
        runc_root: dir.join("runc-root"),
        sock,
        dir,
        casulo: casulo_bin(),
    };
    let image = engines::busybox_image(&ctr.dir.path);
    let r = ctr.ctr(&[
        "images",
        "import",
        "--snapshotter",
        "native",
        image.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "ctr images import: {r:?}");
    Some(ctr)
}

/// Waits (up to 5 s) until `ctr t ls` shows `id` with `status`.
fn task_status(ctr: &Ctr, id: &str, status: &str) -> bool {
    for _ in 0..100 {
        let r = ctr.ctr(&["task", "ls"]);
        if r.stdout
            .lines()
            .any(|l| l.split_whitespace().next() == Some(id) && l.contains(status))
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn containerd_runs_casulo() {
    let Some(ctr) = start() else {
        return;
    };
    // Run, output and exit code.
    let r = ctr.run(
        &["--rm"],
        "ct-hello",
        &["sh", "-c", "echo hello from casulo; exit 3"],
    );
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!(r.stdout.trim(), "hello from casulo", "{r:?}");

    // Detached, then exec (output, exit code), kill, delete.
    let r = ctr.run(&["-d"], "ct-det", &["sleep", "1000"]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = ctr.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "ct-det",
        "sh",
        "-c",
        "echo in-exec; exit 5",
    ]);
    assert_eq!(r.code, 5, "{r:?}");
    assert_eq!(r.stdout.trim(), "in-exec", "{r:?}");
    let r = ctr.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e2",
        "ct-det",
        "cat",
        "/proc/1/cmdline",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.starts_with("sleep"),
        "exec sees the init as pid 1: {r:?}"
    );
    let r = ctr.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e3",
        "ct-det",
        "no-such-binary",
    ]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains("executable file not found"),
        "exec error text reaches ctr: {r:?}"
    );
    let r = ctr.ctr(&["task", "ls"]);
    assert!(
        r.stdout
            .lines()
            .any(|l| l.contains("ct-det") && l.contains("RUNNING")),
        "{r:?}"
    );
    // Pause and resume (`pause`/`resume` of the runtime), seen in `ctr t ls`.
    let r = ctr.ctr(&["task", "pause", "ct-det"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(task_status(&ctr, "ct-det", "PAUSED"), "task paused");
    let r = ctr.ctr(&["task", "resume", "ct-det"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(task_status(&ctr, "ct-det", "RUNNING"), "task resumed");
    // Metrics: the shim reads the task's cgroup.
    let r = ctr.ctr(&["task", "metrics", "ct-det"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("memory.usage_in_bytes") || r.stdout.contains("memory.usage"),
        "memory stats: {r:?}"
    );
    assert!(r.stdout.contains("pids.current"), "pids stats: {r:?}");
    let r = ctr.ctr(&["task", "kill", "-s", "SIGKILL", "ct-det"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        task_status(&ctr, "ct-det", "STOPPED"),
        "task stopped after kill"
    );
    let r = ctr.ctr(&["task", "delete", "ct-det"]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = ctr.ctr(&["container", "delete", "ct-det"]);
    assert_eq!(r.code, 0, "{r:?}");

    // `ctr t ps` (the runtime's `ps --format json`) lists the task's pids; `kill --all`
    // reaches every process of the container, not only its init.
    let r = ctr.run(
        &["-d"],
        "ct-all",
        &["sh", "-c", "sleep 1000 & sleep 1001; true"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let mut pids = Vec::new();
    for _ in 0..100 {
        let r = ctr.ctr(&["task", "ps", "ct-all"]);
        assert_eq!(r.code, 0, "{r:?}");
        pids = r
            .stdout
            .lines()
            .filter_map(|l| l.split_whitespace().next()?.parse::<i32>().ok())
            .collect();
        if pids.len() == 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(pids.len(), 3, "sh and its two sleeps: {pids:?}");
    for pid in &pids {
        let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            cmd.starts_with("sh") || cmd.starts_with("sleep"),
            "pid {pid} is the task's: {cmd:?}"
        );
    }
    let r = ctr.ctr(&["task", "kill", "--all", "-s", "SIGKILL", "ct-all"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        task_status(&ctr, "ct-all", "STOPPED"),
        "task stopped after kill --all"
    );
    for pid in &pids {
        let gone = (0..100).any(|_| {
            let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let g = !(cmd.starts_with("sh") || cmd.starts_with("sleep"));
            if !g {
                std::thread::sleep(Duration::from_millis(20));
            }
            g
        });
        assert!(gone, "pid {pid} killed by kill --all");
    }
    let r = ctr.ctr(&["task", "delete", "ct-all"]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = ctr.ctr(&["container", "delete", "ct-all"]);
    assert_eq!(r.code, 0, "{r:?}");

    // A terminal (ctr -t wants its own tty: run it under script(1)).
    if engines::which("script").is_some() {
        let fifo = ctr.dir.join("fifo");
        let cmd = format!(
            "ctr --address {} --namespace casulotest run -t --rm --snapshotter native --runc-binary {} --runc-root {} --cgroup {}/ct-tty --fifo-dir {} {IMAGE} ct-tty sh -c 'readlink /proc/self/fd/0; exit 5'",
            ctr.sock.display(),
            ctr.casulo.display(),
            ctr.runc_root.display(),
            engines::cgroup_parent(),
            fifo.display(),
        );
        let r = engines::run_in_terminal(&cmd, &ctr.dir.path, Duration::from_secs(60));
        assert_eq!(r.code, 5, "{r:?}");
        assert!(r.stdout.contains("/dev/pts/0"), "{r:?}");
    }

    // A missing executable fails the run with docker's text.
    let r = ctr.run(&["--rm"], "ct-enoent", &["no-such-binary"]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains("executable file not found"),
        "error text from the --log file: {r:?}"
    );
    ctr.cleanup("ct-enoent");
    // Nothing left in Casulo's state root.
    let left: Vec<_> = std::fs::read_dir(ctr.runc_root.join("casulotest"))
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "containers left behind: {left:?}");
}
