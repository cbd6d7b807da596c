//! Terminals: `process.terminal` with `--console-socket` (the pty master arrives with
//! SCM_RIGHTS, as containerd's shim and conmon receive it), an interactive shell driven
//! through it, `consoleSize`, /dev/console, and `casulo run` on the caller's own
//! terminal.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use casulo_integration::bundle::remove_cgroup_parent;
use casulo_integration::{casulo_bin, runtime, Bundle};

struct Env {
    root: PathBuf,
    dir: PathBuf,
}

impl Env {
    fn new(name: &str) -> Env {
        let dir = PathBuf::from(format!("/tmp/casulo-tty-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Env {
            root: dir.join("state"),
            dir,
        }
    }
    fn socket(&self) -> (UnixListener, PathBuf) {
        let p = self.dir.join("console.sock");
        (UnixListener::bind(&p).unwrap(), p)
    }
    fn casulo(&self, args: &[&str]) -> Command {
        let mut c = Command::new(casulo_bin());
        c.arg("--root").arg(&self.root).args(args);
        c
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Ok(rd) = std::fs::read_dir(&self.root) {
            for e in rd.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                let _ = runtime(&casulo_bin(), &self.root, &["delete", "--force", &id]);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        remove_cgroup_parent();
    }
}

fn root() -> bool {
    casulo_integration::prereq::root()
}

/// Accepts one connection and receives the master fd (in a thread, so the runtime can
/// block on its connect meanwhile).
fn receive(l: UnixListener) -> mpsc::Receiver<(OwnedFd, String)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((conn, _)) = l.accept() {
            if let Ok(m) = casulo_core::tty::recv_master(conn.as_fd()) {
                let _ = tx.send(m);
            }
        }
    });
    rx
}

/// Reads everything from the master until EOF/EIO (the slave side closed) or timeout.
fn read_all(master: OwnedFd) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut f = std::fs::File::from(master);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        let _ = tx.send(String::from_utf8_lossy(&out).into_owned());
    });
    rx
}

fn wait_child(mut c: Child, secs: u64) -> i32 {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(st) = c.try_wait().unwrap() {
            return st.code().unwrap_or(-1);
        }
        if Instant::now() > end {
            let _ = c.kill();
            let _ = c.wait();
            panic!("runtime did not exit in {secs}s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn terminal_bundle() -> Bundle {
    let mut b = Bundle::new(&["sh"]);
    let p = b.spec.process_mut().as_mut().unwrap();
    p.set_terminal(Some(true));
    p.set_console_size(Some(
        oci_spec::runtime::BoxBuilder::default()
            .height(33u64)
            .width(101u64)
            .build()
            .unwrap(),
    ));
    b.write_config();
    b
}

fn files(env: &Env, name: &str) -> (std::fs::File, std::fs::File) {
    (
        std::fs::File::create(env.dir.join(format!("{name}.out"))).unwrap(),
        std::fs::File::create(env.dir.join(format!("{name}.err"))).unwrap(),
    )
}

#[test]
fn interactive_shell_through_the_console_socket() {
    if !root() {
        return;
    }
    let env = Env::new("interactive");
    let b = terminal_bundle();
    let (l, sock) = env.socket();
    let got = receive(l);
    let (o, e) = files(&env, "run");
    let child = env
        .casulo(&[
            "run",
            "--console-socket",
            sock.to_str().unwrap(),
            "--bundle",
        ])
        .arg(&b.dir)
        .arg(b.id())
        .stdin(Stdio::null())
        .stdout(o)
        .stderr(e)
        .spawn()
        .unwrap();
    let Ok((master, name)) = got.recv_timeout(Duration::from_secs(20)) else {
        std::thread::sleep(Duration::from_millis(500));
        panic!(
            "no pty master; runtime stderr: {:?}",
            std::fs::read_to_string(env.dir.join("run.err"))
        );
    };
    assert_eq!(name, "/dev/ptmx");
    let mut w = std::fs::File::from(master.try_clone().unwrap());
    let output = read_all(master);
    w.write_all(
        b"echo hi; readlink /proc/self/fd/0; busybox stty size; stat -c %t,%T /dev/console; exit 3\n",
    )
    .unwrap();
    let code = wait_child(child, 20);
    let text = output.recv_timeout(Duration::from_secs(5)).unwrap();
    let err = std::fs::read_to_string(env.dir.join("run.err")).unwrap();
    assert_eq!(
        code, 3,
        "exit status passes through; stderr {err:?}, tty {text:?}"
    );
    assert!(text.contains("hi\r\n"), "{text:?}");
    assert!(text.contains("/dev/pts/0"), "slave is stdin: {text:?}");
    assert!(text.contains("33 101"), "consoleSize applied: {text:?}");
    // /dev/console is the pty slave (devpts major 136).
    assert!(text.contains("88,0"), "/dev/console is the pty: {text:?}");
}

#[test]
fn create_start_state_with_a_terminal() {
    if !root() {
        return;
    }
    let env = Env::new("create");
    let b = terminal_bundle();
    let (l, sock) = env.socket();
    let got = receive(l);
    let r = runtime(
        &casulo_bin(),
        &env.root,
        &[
            "create",
            "--console-socket",
            sock.to_str().unwrap(),
            "--bundle",
            b.dir.to_str().unwrap(),
            &b.id(),
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let (master, _) = got.recv_timeout(Duration::from_secs(5)).unwrap();
    let mut w = std::fs::File::from(master.try_clone().unwrap());
    let output = read_all(master);
    let r = runtime(&casulo_bin(), &env.root, &["start", &b.id()]);
    assert_eq!(r.code, 0, "{r:?}");
    let st = runtime(&casulo_bin(), &env.root, &["state", &b.id()]);
    assert!(st.stdout.contains("\"running\""), "{st:?}");
    w.write_all(b"echo from-the-pty; exit 0\n").unwrap();
    let text = output.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(text.contains("from-the-pty\r\n"), "{text:?}");
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let st = runtime(&casulo_bin(), &env.root, &["state", &b.id()]);
        if st.stdout.contains("\"stopped\"") {
            break;
        }
        assert!(Instant::now() < end, "never stopped: {st:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn terminal_and_socket_must_agree() {
    if !root() {
        return;
    }
    let env = Env::new("agree");
    let b = terminal_bundle();
    let r = runtime(
        &casulo_bin(),
        &env.root,
        &["create", "--bundle", b.dir.to_str().unwrap(), &b.id()],
    );
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("cannot allocate tty"), "{r:?}");
    let plain = Bundle::new(&["true"]);
    let (_l, sock) = env.socket();
    let r = runtime(
        &casulo_bin(),
        &env.root,
        &[
            "create",
            "--console-socket",
            sock.to_str().unwrap(),
            "--bundle",
            plain.dir.to_str().unwrap(),
            &plain.id(),
        ],
    );
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("cannot use console socket"), "{r:?}");
    assert!(!env.root.join(plain.id()).exists(), "nothing left behind");
}

/// CVE-2025-52565: a /dev/console symlink in the rootfs must not redirect the console
/// bind mount.
#[test]
fn dev_console_symlink_is_refused() {
    if !root() {
        return;
    }
    let env = Env::new("symlink");
    let mut b = terminal_bundle();
    // No /dev tmpfs: the rootfs's own /dev is used.
    b.spec.set_mounts(Some(
        b.spec
            .mounts()
            .clone()
            .unwrap()
            .into_iter()
            .filter(|m| m.destination() != Path::new("/dev"))
            .collect(),
    ));
    b.spec
        .root_mut()
        .as_mut()
        .unwrap()
        .set_readonly(Some(false));
    b.write_config();
    std::fs::create_dir_all(b.rootfs().join("dev/pts")).unwrap();
    std::fs::write(b.rootfs().join("victim"), "keep").unwrap();
    std::os::unix::fs::symlink("/victim", b.rootfs().join("dev/console")).unwrap();
    let (l, sock) = env.socket();
    let _got = receive(l);
    let r = runtime(
        &casulo_bin(),
        &env.root,
        &[
            "create",
            "--console-socket",
            sock.to_str().unwrap(),
            "--bundle",
            b.dir.to_str().unwrap(),
            &b.id(),
        ],
    );
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("/dev/console"), "{r:?}");
    assert_eq!(
        std::fs::read_to_string(b.rootfs().join("victim")).unwrap(),
        "keep"
    );
    assert!(!env.root.join(b.id()).exists(), "nothing left behind");
}

/// `casulo run` with a terminal and no socket forwards between its own terminal and
/// the container's (here a pty the test holds).
#[test]
fn run_on_the_callers_terminal() {
    if !root() {
        return;
    }
    let env = Env::new("own");
    let b = terminal_bundle();
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave = pty.slave;
    let child = env
        .casulo(&["run", "--bundle"])
        .arg(&b.dir)
        .arg(b.id())
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave))
        .spawn()
        .unwrap();
    let mut w = std::fs::File::from(pty.master.try_clone().unwrap());
    let output = read_all(pty.master);
    std::thread::sleep(Duration::from_millis(300));
    w.write_all(b"echo own-$((40+2)); exit 4\n").unwrap();
    let code = wait_child(child, 20);
    let text = output
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_default();
    assert_eq!(code, 4, "{text:?}");
    assert!(text.contains("own-42"), "{text:?}");
}

/// Reads from the master into a shared buffer (for waiting on output as it comes).
fn read_shared(master: OwnedFd) -> std::sync::Arc<std::sync::Mutex<String>> {
    let buf = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let b = buf.clone();
    std::thread::spawn(move || {
        let mut f = std::fs::File::from(master);
        let mut chunk = [0u8; 4096];
        while let Ok(n) = f.read(&mut chunk) {
            if n == 0 {
                break;
            }
            b.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    buf
}

fn wait_output(buf: &std::sync::Mutex<String>, what: &str) {
    let end = Instant::now() + Duration::from_secs(30);
    while !buf.lock().unwrap().contains(what) {
        assert!(
            Instant::now() < end,
            "no {what:?} in {:?}",
            buf.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `casulo exec -t` without a socket uses the caller's terminal, like `run`: the pty
/// starts with the caller's size and follows it on SIGWINCH.
#[test]
fn exec_on_the_callers_terminal() {
    if !root() {
        return;
    }
    let env = Env::new("exec-own");
    let b = Bundle::new(&["sleep", "1000"]);
    let r = runtime(
        &casulo_bin(),
        &env.root,
        &["run", "-d", "--bundle", b.dir.to_str().unwrap(), &b.id()],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let pty = nix::pty::openpty(None, None).unwrap();
    casulo_core::tty::set_window_size(pty.slave.as_fd(), 21, 77).unwrap();
    let slave = pty.slave;
    let mut child = env
        .casulo(&["exec", "-t", &b.id(), "sh"])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave))
        .spawn()
        .unwrap();
    let mut w = std::fs::File::from(pty.master.try_clone().unwrap());
    let out = read_shared(pty.master);
    w.write_all(b"busybox stty size; readlink /proc/self/fd/0\n")
        .unwrap();
    wait_output(&out, "21 77");
    wait_output(&out, "/dev/pts/0");
    // A resize of the caller's terminal reaches the container's on SIGWINCH.
    casulo_core::tty::set_window_size(w.as_fd(), 30, 90).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGWINCH,
    )
    .unwrap();
    // Asked until seen: the runtime handles the signal asynchronously.
    let end = Instant::now() + Duration::from_secs(30);
    while !out.lock().unwrap().contains("30 90") {
        assert!(
            Instant::now() < end,
            "SIGWINCH never resized: {:?}",
            out.lock().unwrap()
        );
        w.write_all(b"busybox stty size\n").unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    w.write_all(b"exit 6\n").unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code().unwrap_or(-1);
        }
        assert!(Instant::now() < end, "exec did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, 6, "{:?}", out.lock().unwrap());
}
