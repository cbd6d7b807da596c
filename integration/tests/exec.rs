//! `casulo exec`: a process joins a running container (namespaces, cgroup, root,
//! seccomp), with runc's flags and `--process`, exit codes passed through, detached
//! with a pid file, terminals, and the error texts engines match.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use casulo_integration::bundle::remove_cgroup_parent;
use casulo_integration::{casulo_bin, runtime, Bundle, Run};

struct Env {
    root: PathBuf,
    dir: PathBuf,
}

impl Env {
    fn new(name: &str) -> Env {
        let dir = PathBuf::from(format!("/tmp/casulo-exec-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Env {
            root: dir.join("state"),
            dir,
        }
    }
    fn run(&self, args: &[&str]) -> Run {
        runtime(&casulo_bin(), &self.root, args)
    }
    /// A running container whose init sleeps.
    fn running(&self) -> Bundle {
        let b = Bundle::new(&["sleep", "1000"]);
        let r = self.run(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), &b.id()]);
        assert_eq!(r.code, 0, "{r:?}");
        b
    }
    fn init_pid(&self, id: &str) -> i32 {
        let st: serde_json::Value = serde_json::from_str(&self.run(&["state", id]).stdout).unwrap();
        st["pid"].as_i64().unwrap() as i32
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        casulo_integration::cli::delete_all(&self.root);
        let _ = std::fs::remove_dir_all(&self.dir);
        remove_cgroup_parent();
    }
}

fn root() -> bool {
    casulo_integration::prereq::root()
}

fn ns(pid: i32, name: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{name}"))
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn exec_joins_the_container_and_passes_the_exit_code() {
    if !root() {
        return;
    }
    let env = Env::new("basic");
    let b = env.running();
    let id = b.id();
    let r = env.run(&["exec", &id, "sh", "-c", "echo hi; exit 7"]);
    assert_eq!(r.code, 7, "{r:?}");
    assert_eq!(r.stdout, "hi\n");
    // Same namespaces as the init, the container's root and pid 1.
    let pid = env.init_pid(&id);
    let r = env.run(&[
        "exec",
        &id,
        "sh",
        "-c",
        "hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; readlink /proc/self/ns/pid; readlink /proc/self/ns/mnt; readlink /proc/self/ns/net; ls /checker; cat /proc/self/status | grep -E '^(CapInh|NoNewPrivs)'",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "casulo");
    assert_eq!(lines[1].trim(), "sleep 1000");
    assert_eq!(lines[2], ns(pid, "pid"));
    assert_eq!(lines[3], ns(pid, "mnt"));
    assert_eq!(lines[4], ns(pid, "net"));
    assert_eq!(lines[5], "/checker");
    assert!(r.stdout.contains("CapInh:\t0000000000000000"), "{r:?}");
    assert!(r.stdout.contains("NoNewPrivs:\t1"), "{r:?}");
    // A signal death is 128+N.
    let r = env.run(&["exec", &id, "sh", "-c", "kill -9 $$"]);
    assert_eq!(r.code, 137, "{r:?}");
}

#[test]
fn exec_flags() {
    if !root() {
        return;
    }
    let env = Env::new("flags");
    let b = env.running();
    let id = b.id();
    let r = env.run(&[
        "exec",
        "--cwd",
        "/tmp",
        "-e",
        "FOO=bar",
        "-e",
        "PATH=/bin",
        "-u",
        "1000:1000",
        "-g",
        "5",
        &id,
        "sh",
        "-c",
        "pwd; echo $FOO; id -u; id -g; id -G; env | grep -c ^PATH=; echo $PATH",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        r.stdout, "/tmp\nbar\n1000\n1000\n1000 5\n1\n/bin\n",
        "{r:?}"
    );
    // --cap adds to bounding/effective/permitted, never inheritable (CVE-2022-29162).
    let r = env.run(&[
        "exec",
        "--cap",
        "CAP_SYS_ADMIN",
        &id,
        "sh",
        "-c",
        "grep -E '^Cap(Inh|Eff)' /proc/self/status",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("CapInh:\t0000000000000000"), "{r:?}");
    let eff = r.stdout.lines().find(|l| l.starts_with("CapEff")).unwrap();
    let eff = u64::from_str_radix(eff.split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert!(eff & (1 << 21) != 0, "CAP_SYS_ADMIN effective: {r:?}");
    // --process FILE runs the process as given.
    let p = env.dir.join("process.json");
    std::fs::write(
        &p,
        serde_json::json!({
            "args": ["sh", "-c", "echo $X; pwd; exit 9"],
            "env": ["PATH=/bin", "X=from-file"],
            "cwd": "/etc",
            "user": {"uid": 0, "gid": 0}
        })
        .to_string(),
    )
    .unwrap();
    let r = env.run(&["exec", "--process", p.to_str().unwrap(), &id]);
    assert_eq!(r.code, 9, "{r:?}");
    assert_eq!(r.stdout, "from-file\n/etc\n");
    // A process.json without capabilities/noNewPrivileges/rlimits gets the container's,
    // not the runtime's full set.
    std::fs::write(
        &p,
        serde_json::json!({
            "args": ["sh", "-c", "grep -E '^(CapBnd|CapEff|NoNewPrivs)' /proc/self/status; cat /proc/self/limits | grep 'open files'"],
            "env": ["PATH=/bin"],
            "cwd": "/",
            "user": {"uid": 0, "gid": 0}
        })
        .to_string(),
    )
    .unwrap();
    let r = env.run(&["exec", "--process", p.to_str().unwrap(), &id]);
    assert_eq!(r.code, 0, "{r:?}");
    // The default bundle: CAP_AUDIT_WRITE, CAP_KILL, CAP_NET_BIND_SERVICE (bits 29, 5, 10).
    let want = format!("{:016x}", (1u64 << 29) | (1 << 5) | (1 << 10));
    assert!(r.stdout.contains(&format!("CapBnd:\t{want}")), "{r:?}");
    assert!(r.stdout.contains(&format!("CapEff:\t{want}")), "{r:?}");
    assert!(r.stdout.contains("NoNewPrivs:\t1"), "{r:?}");
    assert!(
        r.stdout.contains("1024"),
        "container's RLIMIT_NOFILE: {r:?}"
    );
}

#[test]
fn detached_exec_writes_its_pid_and_joins_the_cgroup() {
    if !root() {
        return;
    }
    let env = Env::new("detach");
    let b = env.running();
    let id = b.id();
    let pid_file = env.dir.join("exec.pid");
    let r = env.run(&[
        "exec",
        "-d",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
        "sleep",
        "500",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let ps = env.run(&["ps", "--format", "json", &id]);
    let pids: Vec<i32> = serde_json::from_str(&ps.stdout).unwrap();
    assert!(pids.contains(&pid), "{pid} in {pids:?}");
    assert_eq!(ns(pid, "pid"), ns(env.init_pid(&id), "pid"));
    let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(cmd, "sleep\x00500\x00");
    // delete --force takes the exec'd process down with the container.
    assert_eq!(env.run(&["delete", "--force", &id]).code, 0);
    let end = Instant::now() + Duration::from_secs(5);
    while std::path::Path::new(&format!("/proc/{pid}/cmdline")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default() == cmd
    {
        assert!(Instant::now() < end, "exec'd process survived delete");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn exec_errors_use_the_engines_texts() {
    if !root() {
        return;
    }
    let env = Env::new("errors");
    let b = env.running();
    let id = b.id();
    let log = env.dir.join("log.json");
    let r = env.run(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "exec",
        &id,
        "nonexistent-binary",
    ]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("executable file not found"), "{r:?}");
    let last = std::fs::read_to_string(&log).unwrap();
    let last: serde_json::Value = serde_json::from_str(last.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "error");
    assert!(last["msg"]
        .as_str()
        .unwrap()
        .contains("executable file not found"));
    let r = env.run(&["exec", &id, "/no/such/file"]);
    assert!(r.stderr.contains("no such file or directory"), "{r:?}");
    let r = env.run(&["exec", &id, "/etc/passwd"]);
    assert!(r.stderr.contains("permission denied"), "{r:?}");
    // Paused: refused unless --ignore-paused.
    assert_eq!(env.run(&["pause", &id]).code, 0);
    let r = env.run(&["exec", &id, "true"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("paused"), "{r:?}");
    assert_eq!(env.run(&["resume", &id]).code, 0);
    // Stopped: "container not running".
    assert_eq!(env.run(&["kill", &id, "KILL"]).code, 0);
    let end = Instant::now() + Duration::from_secs(5);
    while !env.run(&["state", &id]).stdout.contains("stopped") {
        assert!(Instant::now() < end);
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = env.run(&["exec", &id, "true"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("container not running"), "{r:?}");
    let r = env.run(&["exec", "no-such-container", "true"]);
    assert!(r.stderr.contains("does not exist"), "{r:?}");
}

#[test]
fn exec_with_a_terminal() {
    if !root() {
        return;
    }
    let env = Env::new("tty");
    let b = env.running();
    let id = b.id();
    let sock = env.dir.join("console.sock");
    let l = UnixListener::bind(&sock).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (c, _) = l.accept().unwrap();
        let _ = tx.send(casulo_core::tty::recv_master(c.as_fd()).unwrap());
    });
    let pid_file = env.dir.join("tty.pid");
    let r = env.run(&[
        "exec",
        "-t",
        "-d",
        "--console-socket",
        sock.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
        "sh",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let (master, name) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(name, "/dev/ptmx");
    let mut f = std::fs::File::from(master);
    f.write_all(b"echo tty-$((6*7)); readlink /proc/self/fd/0; exit 0\n")
        .unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("tty-42\r\n"), "{text:?}");
    assert!(text.contains("/dev/pts/"), "{text:?}");
}

#[test]
fn exec_into_a_user_namespace_and_preserve_fds() {
    if !root() {
        return;
    }
    let env = Env::new("userns");
    let mut b = Bundle::new(&["sleep", "1000"]);
    let l = b.spec.linux_mut().as_mut().unwrap();
    let mut nss = l.namespaces().clone().unwrap();
    nss.push(
        oci_spec::runtime::LinuxNamespaceBuilder::default()
            .typ(oci_spec::runtime::LinuxNamespaceType::User)
            .build()
            .unwrap(),
    );
    l.set_namespaces(Some(nss));
    let map = |host: u32| {
        oci_spec::runtime::LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(host)
            .size(65536u32)
            .build()
            .unwrap()
    };
    l.set_uid_mappings(Some(vec![map(100000)]));
    l.set_gid_mappings(Some(vec![map(200000)]));
    b.write_config();
    let r = env.run(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), &b.id()]);
    assert_eq!(r.code, 0, "{r:?}");
    let pid = env.init_pid(&b.id());
    let r = env.run(&[
        "exec",
        &b.id(),
        "sh",
        "-c",
        "id -u; readlink /proc/self/ns/user; cat /proc/self/uid_map",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "0", "{r:?}");
    assert_eq!(lines[1], ns(pid, "user"), "{r:?}");
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );
    // The exec'd process runs as host uid 100000.
    let pid_file = env.dir.join("u.pid");
    let r = env.run(&[
        "exec",
        "-d",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &b.id(),
        "sleep",
        "300",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let epid = std::fs::read_to_string(&pid_file).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", epid.trim())).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(uid.contains("100000"), "{uid}");

    // --preserve-fds 1: fd 3 of the caller reaches the process, fd 4 does not.
    let file = env.dir.join("shared.txt");
    std::fs::write(&file, "through fd 3").unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "exec 3<{f} 4<{f}; {bin} --root {root} exec --preserve-fds 1 {id} sh -c 'cat <&3; test -e /proc/self/fd/4 && echo fd4-leaked; true'",
            f = file.display(),
            bin = casulo_integration::casulo_bin().display(),
            root = env.root.display(),
            id = b.id(),
        ))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout, "through fd 3", "{out:?}");
}

/// The container's cgroup directories on the host (one per v1 hierarchy, the unified one
/// on hybrid hosts, or the v2 one).
fn container_cgroup_dirs(b: &Bundle) -> Vec<PathBuf> {
    let rel = casulo_integration::cli::cgroup_rel(b);
    let root = std::path::Path::new("/sys/fs/cgroup");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .map(|e| e.path().join(&rel))
        .filter(|d| d.is_dir())
        .collect();
    if root.join(&rel).is_dir() {
        dirs.push(root.join(&rel));
    }
    dirs
}

/// `exec --cgroup` (runc 1.2): the process runs in an existing sub-cgroup of the
/// container's, for every controller (`PATH`) or, on v1, for the named ones
/// (`CONTROLLER:PATH`); a path climbing out, or one that does not exist, is refused.
#[test]
fn exec_cgroup_joins_a_sub_cgroup() {
    if !root() {
        return;
    }
    let env = Env::new("subcg");
    let b = env.running();
    let id = b.id();
    let dirs = container_cgroup_dirs(&b);
    assert!(!dirs.is_empty(), "no cgroup dirs for {id}");
    // The sub-cgroups exist before the exec, as the engine makes them (a v1 cpuset one
    // needs its cpus and mems before it takes a process).
    let make = |d: &PathBuf, name: &str| {
        std::fs::create_dir(d.join(name)).unwrap();
        for f in ["cpuset.cpus", "cpuset.mems"] {
            // v1 only: on v2 the file exists only where the parent enables cpuset.
            let (from, to) = (d.join(f), d.join(name).join(f));
            if let (Ok(v), true) = (std::fs::read_to_string(&from), to.exists()) {
                if v.trim().is_empty() || std::fs::read_to_string(&to).unwrap().trim() == "" {
                    std::fs::write(&to, v.trim()).unwrap();
                }
            }
        }
    };
    for d in &dirs {
        make(d, "sub");
    }
    let r = env.run(&["exec", "--cgroup", "sub", &id, "cat", "/proc/self/cgroup"]);
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().filter(|l| !l.is_empty()).collect();
    assert!(!lines.is_empty(), "{r:?}");
    for l in &lines {
        assert!(
            l.ends_with(":/sub"),
            "every controller in the sub-cgroup: {l} in {r:?}"
        );
    }
    let plain = env.run(&["exec", &id, "cat", "/proc/self/cgroup"]);
    assert!(plain.stdout.lines().all(|l| l.ends_with(":/")), "{plain:?}");
    let v1_memory = dirs.iter().find(|d| d.starts_with("/sys/fs/cgroup/memory"));
    match v1_memory {
        Some(mem) => {
            make(mem, "only");
            let r = env.run(&[
                "exec",
                "--cgroup",
                "memory:only",
                &id,
                "cat",
                "/proc/self/cgroup",
            ]);
            assert_eq!(r.code, 0, "{r:?}");
            for l in r.stdout.lines().filter(|l| !l.is_empty()) {
                let memory = l.split(':').nth(1) == Some("memory");
                let want = if memory { ":/only" } else { ":/" };
                assert!(l.ends_with(want), "{l} in {r:?}");
            }
        }
        None => casulo_integration::prereq::not_applicable(
            "CONTROLLER:PATH needs cgroup v1 (this host is pure v2)",
        ),
    }
    for bad in ["../escape", "nosuch"] {
        let r = env.run(&["exec", "--cgroup", bad, &id, "true"]);
        assert_ne!(r.code, 0, "--cgroup {bad}: {r:?}");
        assert_eq!(r.stderr.trim().lines().count(), 1, "one line: {r:?}");
    }
}
