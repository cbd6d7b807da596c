//! CVE-2024-21626 class (issue 12.1): no fd that reaches the host may be followed by the
//! container's own path lookups. A host-only script and canary live in a host temp dir
//! that is not in the rootfs; every container-controlled path (args[0], a PATH entry,
//! process.cwd, `exec --cwd`, image symlinks) names them through /proc/self/fd/N for every
//! N from 3 to 20 or through /proc/1/root. Each attempt must fail with a "no such file" /
//! "not permitted" class error (or run the container's own file); the host script must
//! never run, the canary must never be read, and the host marker file stays unchanged.

mod common;

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::PathBuf;

use casulo_integration::{Bundle, Run};
use common::{is_root, Env};
use serde_json::{json, Value};

const RAN: &str = "HOST-SCRIPT-RAN";
const CANARY: &str = "HOST-CANARY";

/// A host directory outside the rootfs with `evil.sh` (prints [`RAN`] and appends to
/// `marker`), `canary` (holds [`CANARY`]) and `marker`; removed on drop.
struct HostSide {
    dir: PathBuf,
}

impl HostSide {
    fn new(name: &str) -> HostSide {
        let dir = PathBuf::from(format!("/tmp/casulo-cvefd-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let marker = dir.join("marker");
        std::fs::write(&marker, "untouched\n").unwrap();
        let script = format!(
            "#!/bin/sh\necho {RAN}\necho pwned >> {}\necho pwned >> \"$(dirname \"$0\")/marker\"\n",
            marker.display()
        );
        std::fs::write(dir.join("evil.sh"), script).unwrap();
        std::fs::set_permissions(dir.join("evil.sh"), PermissionsExt::from_mode(0o755)).unwrap();
        std::fs::write(dir.join("canary"), format!("{CANARY}\n")).unwrap();
        HostSide { dir }
    }

    /// The host dir named through fd `n` of the resolving process, climbing to `/` first.
    fn via_fd(&self, n: u32) -> String {
        let rel = self.dir.strip_prefix("/").unwrap().display();
        format!("/proc/self/fd/{n}/{}{rel}", "../".repeat(16))
    }

    /// The host dir through pid 1's root (the host's init when the pid namespace is shared).
    fn via_pid1(&self) -> String {
        format!("/proc/1/root{}", self.dir.display())
    }

    fn assert_untouched(&self, what: &str, r: &Run) {
        let out = format!("{}{}", r.stdout, r.stderr);
        assert!(!out.contains(RAN), "{what}: the HOST script ran: {r:?}");
        assert!(!out.contains(CANARY), "{what}: a HOST file was read: {r:?}");
        let marker = std::fs::read_to_string(self.dir.join("marker")).unwrap();
        assert_eq!(marker, "untouched\n", "{what}: the host marker changed");
    }
}

impl Drop for HostSide {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Refused with a clear error of the "not found"/"not permitted" class.
fn assert_refused(what: &str, r: &Run) {
    assert_ne!(r.code, 0, "{what}: accepted: {r:?}");
    let e = r.stderr.to_lowercase();
    let clear = [
        "no such file",
        "not permitted",
        "permission denied",
        "not found",
        "not a directory",
    ];
    assert!(
        clear.iter().any(|c| e.contains(c)),
        "{what}: unclear error: {r:?}"
    );
}

fn edit(b: &mut Bundle, f: impl FnOnce(&mut Value)) {
    let mut v = serde_json::to_value(&b.spec).unwrap();
    f(&mut v);
    b.spec = serde_json::from_value(v).unwrap();
    b.write_config();
}

fn set_process(b: &mut Bundle, args: &[&str], path_env: Option<&str>, cwd: &str) {
    edit(b, |v| {
        v["process"]["args"] = json!(args);
        v["process"]["cwd"] = json!(cwd);
        if let Some(p) = path_env {
            v["process"]["env"] = json!([format!("PATH={p}"), "TERM=xterm"]);
        }
    });
}

/// `run`, then `create` + `start` of the bundle's current config; both results (the
/// second with the container's output, which goes to create's stdout, appended).
fn run_both(env: &Env, b: &Bundle, tag: &str) -> [Run; 2] {
    let id = format!("{}-{tag}", b.id());
    let dir = b.dir.to_str().unwrap();
    let run = env.run(&["run", "--bundle", dir, &id]);
    let _ = env.run(&["delete", "--force", &id]);
    let out = b.dir.join(format!("create-{tag}.out"));
    let status = std::process::Command::new(casulo_integration::casulo_bin())
        .arg("--root")
        .arg(&env.root)
        .args(["create", "--bundle", dir, &id])
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(format!("{}.err", out.display())).unwrap())
        .status()
        .unwrap();
    let mut start = Run {
        code: status.code().unwrap_or(-1),
        stdout: String::new(),
        stderr: std::fs::read_to_string(format!("{}.err", out.display())).unwrap_or_default(),
    };
    if start.code == 0 {
        start = env.run(&["start", &id]);
        let stopped = || {
            let r = env.run(&["state", &id]);
            r.code != 0 || r.stdout.contains("\"stopped\"")
        };
        assert!(common::eventually(stopped), "{id} never stopped");
    }
    start.stdout += &std::fs::read_to_string(&out).unwrap_or_default();
    let _ = env.run(&["delete", "--force", &id]);
    [run, start]
}

/// A running container to exec into (sleeps); its id.
fn running(env: &Env, b: &mut Bundle) -> String {
    set_process(b, &["sleep", "1000"], None, "/");
    let id = format!("{}-long", b.id());
    // A cgroup of its own: the bundle's other runs (and their cleanups) use the default.
    let own = b
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone());
    edit(b, |v| {
        v["linux"]["cgroupsPath"] = json!(format!("{}-long", own.as_ref().unwrap().display()))
    });
    env.ok(&["create", "--bundle", b.dir.to_str().unwrap(), &id]);
    env.ok(&["start", &id]);
    edit(b, |v| v["linux"]["cgroupsPath"] = json!(own));
    id
}

#[test]
fn host_fds_never_reached_by_args0_path_or_cwd() {
    if !is_root() {
        return;
    }
    let env = Env::new("cvefd-create");
    let host = HostSide::new("create");
    let mut b = Bundle::new(&["true"]);
    for n in 3..=20u32 {
        let via = host.via_fd(n);
        let exe = format!("{via}/evil.sh");
        set_process(&mut b, &[&exe], None, "/");
        for (how, r) in ["run", "create+start"].iter().zip(run_both(&env, &b, "a")) {
            let what = format!("{how} args[0] through fd {n}");
            host.assert_untouched(&what, &r);
            assert_refused(&what, &r);
        }
        set_process(&mut b, &["evil.sh"], Some(&via), "/");
        for (how, r) in ["run", "create+start"].iter().zip(run_both(&env, &b, "p")) {
            let what = format!("{how} PATH through fd {n}");
            host.assert_untouched(&what, &r);
            assert_refused(&what, &r);
        }
        let sh = ["sh", "-c", "cat canary; ./evil.sh; echo pwned >> marker"];
        set_process(&mut b, &sh, None, &via);
        for (how, r) in ["run", "create+start"].iter().zip(run_both(&env, &b, "c")) {
            let what = format!("{how} cwd through fd {n}");
            host.assert_untouched(&what, &r);
            assert_refused(&what, &r);
        }
    }
}

#[test]
fn host_fds_never_reached_by_exec() {
    if !is_root() {
        return;
    }
    let env = Env::new("cvefd-exec");
    let host = HostSide::new("exec");
    let mut b = Bundle::new(&["true"]);
    let id = running(&env, &mut b);
    for n in 3..=20u32 {
        let via = host.via_fd(n);
        let exe = format!("{via}/evil.sh");
        let r = env.run(&["exec", &id, &exe]);
        let what = format!("exec args[0] through fd {n}");
        host.assert_untouched(&what, &r);
        assert_refused(&what, &r);
        let path = format!("PATH={via}");
        let r = env.run(&["exec", "--env", &path, &id, "evil.sh"]);
        let what = format!("exec PATH through fd {n}");
        host.assert_untouched(&what, &r);
        assert_refused(&what, &r);
        let sh = ["sh", "-c", "cat canary; ./evil.sh; echo pwned >> marker"];
        let mut args = vec!["exec", "--cwd", &via, &id];
        args.extend(sh);
        let r = env.run(&args);
        let what = format!("exec --cwd through fd {n}");
        host.assert_untouched(&what, &r);
        assert_refused(&what, &r);
    }
    // The container's own processes are unharmed: exec still works.
    let r = env.run(&["exec", &id, "sh", "-c", "echo fine"]);
    assert_eq!((r.code, r.stdout.trim()), (0, "fine"), "{r:?}");
}

/// Image symlinks into /proc/self/fd/N (every N) and /proc/1/root, as args[0] and as
/// cwd, with a pid namespace of its own and with the host's (where /proc/1 is the
/// host's init), for run, create+start and exec.
#[test]
fn image_symlinks_into_proc_never_reach_the_host() {
    if !is_root() {
        return;
    }
    let env = Env::new("cvefd-symlink");
    let host = HostSide::new("symlink");
    for host_pid in [false, true] {
        let mut b = Bundle::new(&["true"]);
        if host_pid {
            edit(&mut b, |v| {
                let ns = v["linux"]["namespaces"].as_array_mut().unwrap();
                ns.retain(|n| n["type"] != "pid");
            });
        }
        let mut links: Vec<String> = (3..=20).map(|n| host.via_fd(n)).collect();
        links.push(host.via_pid1());
        for (k, target) in links.iter().enumerate() {
            symlink(
                format!("{target}/evil.sh"),
                b.rootfs().join(format!("bin/evil{k}")),
            )
            .unwrap();
            symlink(target, b.rootfs().join(format!("dir{k}"))).unwrap();
        }
        let id = running(&env, &mut b);
        for (k, link) in links.iter().enumerate() {
            let exe = format!("/bin/evil{k}");
            let dir = format!("/dir{k}");
            let sh = ["sh", "-c", "cat canary; ./evil.sh; echo pwned >> marker"];
            let what = |how: &str| format!("{how} via {link} (host pid ns: {host_pid})");
            set_process(&mut b, &[&exe], None, "/");
            for (how, r) in ["run", "create+start"].iter().zip(run_both(&env, &b, "a")) {
                host.assert_untouched(&what(how), &r);
                assert_refused(&what(how), &r);
            }
            let r = env.run(&["exec", &id, &exe]);
            host.assert_untouched(&what("exec"), &r);
            assert_refused(&what("exec"), &r);
            set_process(&mut b, &sh, None, &dir);
            for (how, r) in ["run cwd", "create+start cwd"]
                .iter()
                .zip(run_both(&env, &b, "c"))
            {
                host.assert_untouched(&what(how), &r);
                assert_refused(&what(how), &r);
            }
            let mut args = vec!["exec", "--cwd", &dir, &id];
            args.extend(sh);
            let r = env.run(&args);
            host.assert_untouched(&what("exec --cwd"), &r);
            assert_refused(&what("exec --cwd"), &r);
        }
        let _ = env.run(&["delete", "--force", &id]);
    }
}

/// The container's own files still run through its own symlinks and PATH.
#[test]
fn container_files_still_run() {
    if !is_root() {
        return;
    }
    let env = Env::new("cvefd-own");
    let mut b = Bundle::new(&["true"]);
    let script = b.rootfs().join("bin/own.sh");
    std::fs::write(&script, "#!/bin/sh\necho own script \"$0\" $1\n").unwrap();
    std::fs::set_permissions(&script, PermissionsExt::from_mode(0o755)).unwrap();
    symlink("../bin/own.sh", b.rootfs().join("tmp/link.sh")).unwrap();
    set_process(&mut b, &["own.sh", "arg"], Some("/nowhere:/bin"), "/");
    for r in run_both(&env, &b, "s") {
        assert_eq!(r.code, 0, "{r:?}");
        assert!(
            r.stdout.contains("own script") && r.stdout.contains("arg"),
            "{r:?}"
        );
    }
    set_process(&mut b, &["/tmp/link.sh"], None, "/");
    for r in run_both(&env, &b, "l") {
        assert_eq!(r.code, 0, "{r:?}");
        assert!(r.stdout.contains("own script"), "{r:?}");
    }
    set_process(&mut b, &["./own.sh"], None, "/bin");
    for r in run_both(&env, &b, "r") {
        assert_eq!(r.code, 0, "{r:?}");
    }
    // A script's fd does not stay open in the process it becomes.
    std::fs::write(&script, "#!/bin/sh\nls /proc/self/fd\n").unwrap();
    set_process(&mut b, &["/bin/own.sh"], None, "/");
    for r in run_both(&env, &b, "f") {
        assert_eq!(r.code, 0, "{r:?}");
        let fds: Vec<&str> = r.stdout.split_whitespace().collect();
        assert_eq!(fds, ["0", "1", "2", "3"], "{r:?}");
    }
    let id = running(&env, &mut b);
    let r = env.run(&["exec", &id, "own.sh"]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = env.run(&["exec", &id, "/tmp/link.sh"]);
    let fds: Vec<&str> = r.stdout.split_whitespace().collect();
    assert_eq!(fds, ["0", "1", "2", "3"], "{r:?}");
}

fn set_user(b: &mut Bundle, uid: u32, env: &[&str]) {
    edit(b, |v| {
        v["process"]["user"] = json!({"uid": uid, "gid": uid});
        v["process"]["env"] = json!(env);
    });
}

/// Issue 13 class 4: HOME is set from the container's /etc/passwd for the uid (else
/// `/`) when the config has none or an empty one, for create and exec; a given HOME is
/// kept.
#[test]
fn home_is_set_from_the_container_passwd() {
    if !is_root() {
        return;
    }
    let env = Env::new("cvefd-home");
    let mut b = Bundle::new(&["true"]);
    let path = "PATH=/bin";
    let cases: [(u32, &[&str], &str); 5] = [
        (0, &[path], "/root"),
        (1000, &[path], "/home/user"),
        (4242, &[path], "/"),
        (1000, &[path, "HOME="], "/home/user"),
        (1000, &[path, "HOME=/custom"], "/custom"),
    ];
    for (uid, vars, want) in cases {
        set_user(&mut b, uid, vars);
        set_process(&mut b, &["sh", "-c", "echo \"home=[$HOME]\""], None, "/");
        for r in run_both(&env, &b, "h") {
            assert_eq!(r.code, 0, "{r:?}");
            assert!(
                r.stdout.contains(&format!("home=[{want}]")),
                "uid {uid} {vars:?}: {r:?}"
            );
        }
    }
    set_user(&mut b, 0, &[path]);
    let id = running(&env, &mut b);
    for (user, want) in [
        ("0", "/root"),
        ("1000", "/home/user"),
        ("65534", "/nonexistent"),
    ] {
        let r = env.run(&["exec", "-u", user, &id, "sh", "-c", "echo \"home=[$HOME]\""]);
        assert!(
            r.stdout.contains(&format!("home=[{want}]")),
            "exec -u {user}: {r:?}"
        );
    }
    let r = env.run(&[
        "exec",
        "--env",
        "HOME=",
        &id,
        "sh",
        "-c",
        "echo \"home=[$HOME]\"",
    ]);
    assert!(r.stdout.contains("home=[/root]"), "exec HOME=: {r:?}");
}

/// Issue 13 class 4: a missing process.cwd is created inside the rootfs, also through a
/// symlink climbing out of it (the target is made in the rootfs, never on the host).
#[test]
fn missing_cwd_is_created_inside_the_rootfs() {
    if !is_root() {
        return;
    }
    let env = Env::new("cvefd-mkcwd");
    let host = HostSide::new("mkcwd");
    let mut b = Bundle::new(&["true"]);
    edit(&mut b, |v| v["root"]["readonly"] = json!(false));
    let rel = host.dir.strip_prefix("/").unwrap().display().to_string();
    symlink(
        format!("{}{rel}", "../".repeat(12)),
        b.rootfs().join("escape"),
    )
    .unwrap();
    for (cwd, inside) in [
        ("/does/not/exist", "does/not/exist".to_string()),
        ("/escape/made", format!("{rel}/made")),
    ] {
        set_process(&mut b, &["pwd"], None, cwd);
        let id = format!("{}-m", b.id());
        let r = env.run(&["run", "--bundle", b.dir.to_str().unwrap(), &id]);
        let _ = env.run(&["delete", "--force", &id]);
        assert_eq!(r.code, 0, "cwd {cwd}: {r:?}");
        assert!(
            b.rootfs().join(&inside).is_dir(),
            "cwd {cwd} not made in the rootfs"
        );
        assert!(
            !host.dir.join("made").exists(),
            "cwd {cwd} made on the host"
        );
        let _ = std::fs::remove_dir_all(b.rootfs().join(inside.split('/').next().unwrap()));
    }
}
