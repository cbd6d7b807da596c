//! What a container gets (config.md, config-linux.md), asserted from inside the
//! container (busybox shell probes) and from the host: namespaces new and joined, user
//! namespace maps, time offsets, rootfs and mounts, devices, process fields, fds.

use std::os::unix::fs::{symlink, MetadataExt};
use std::path::Path;

use casulo_integration::cli::eventually;
use casulo_integration::{Bundle, TestEnv as Env};
use serde_json::{json, Value};

fn root() -> bool {
    casulo_integration::prereq::root()
}

/// Edits the bundle's config as JSON and writes it back.
fn edit(b: &mut Bundle, f: impl FnOnce(&mut Value)) {
    let mut v = serde_json::to_value(&b.spec).unwrap();
    f(&mut v);
    b.spec = serde_json::from_value(v).unwrap();
    b.write_config();
}

/// `run`s the bundle and returns (exit code, stdout); asserts success when `ok`.
fn run(env: &Env, b: &Bundle) -> (i32, String, String) {
    let r = env.run(&["run", "--bundle", b.dir.to_str().unwrap(), &b.id()]);
    (r.code, r.stdout, r.stderr)
}

fn run_ok(env: &Env, b: &Bundle) -> String {
    let (code, out, err) = run(env, b);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    out
}

fn host_ns(kind: &str) -> u64 {
    std::fs::metadata(format!("/proc/self/ns/{kind}"))
        .unwrap()
        .ino()
}

/// Parses `kind:[inode]` lines printed by `readlink /proc/self/ns/*`.
fn ns_inode(out: &str, kind: &str) -> u64 {
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{kind}:[")))
        .unwrap_or_else(|| panic!("{kind} in {out}"));
    line[kind.len() + 2..line.len() - 1].parse().unwrap()
}

const NS_PROBE: &str = "for n in pid net ipc uts mnt cgroup user time; do readlink /proc/self/ns/$n; done; echo pid=$$";

#[test]
fn new_namespaces_differ_from_the_host() {
    if !root() {
        return;
    }
    let env = Env::new("newns");
    let mut b = env.bundle(&["sh", "-c", NS_PROBE]);
    edit(&mut b, |v| {
        v["linux"]["namespaces"] = json!([{"type":"pid"},{"type":"network"},{"type":"ipc"},{"type":"uts"},{"type":"mount"},{"type":"cgroup"},{"type":"time"}]);
    });
    let out = run_ok(&env, &b);
    for kind in ["pid", "net", "ipc", "uts", "mnt", "cgroup", "time"] {
        assert_ne!(
            ns_inode(&out, kind),
            host_ns(kind),
            "{kind} namespace must be new:\n{out}"
        );
    }
    assert_eq!(
        ns_inode(&out, "user"),
        host_ns("user"),
        "no user namespace asked"
    );
    assert!(
        out.contains("pid=1"),
        "the process is pid 1 of its namespace: {out}"
    );
}

#[test]
fn namespaces_joined_by_path() {
    if !root() {
        return;
    }
    let env = Env::new("joinns");
    let a = env.bundle(&["sleep", "1000"]);
    assert_eq!(env.create(&a).code, 0);
    env.ok(&["start", &a.id()]);
    let pid = env.state(&a.id())["pid"].as_i64().unwrap();
    let mut b = env.bundle(&["sh", "-c", NS_PROBE]);
    edit(&mut b, |v| {
        v["linux"]["namespaces"] = json!([
            {"type":"pid","path":format!("/proc/{pid}/ns/pid")},
            {"type":"network","path":format!("/proc/{pid}/ns/net")},
            {"type":"ipc","path":format!("/proc/{pid}/ns/ipc")},
            {"type":"uts","path":format!("/proc/{pid}/ns/uts")},
            {"type":"mount"}
        ]);
        v["hostname"] = Value::Null;
    });
    let out = run_ok(&env, &b);
    for kind in ["pid", "net", "ipc", "uts"] {
        let theirs = std::fs::metadata(format!("/proc/{pid}/ns/{kind}"))
            .unwrap()
            .ino();
        assert_eq!(ns_inode(&out, kind), theirs, "{kind} joined:\n{out}");
    }
    assert!(
        !out.contains("pid=1\n"),
        "joined pid namespace: not its init: {out}"
    );
    env.ok(&["delete", "--force", &a.id()]);
}

#[test]
fn user_namespace_maps_are_written_by_the_runtime() {
    if !root() {
        return;
    }
    let env = Env::new("userns");
    let mut b = env.bundle(&[
        "sh",
        "-c",
        "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; readlink /proc/self/ns/user",
    ]);
    edit(&mut b, |v| {
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type":"user"}));
        v["linux"]["uidMappings"] = json!([{"containerID":0,"hostID":100000,"size":65536}]);
        v["linux"]["gidMappings"] = json!([{"containerID":0,"hostID":200000,"size":65536}]);
    });
    let out = run_ok(&env, &b);
    let fields: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(fields[0], ["0", "100000", "65536"], "{out}");
    assert_eq!(fields[1], ["0", "200000", "65536"], "{out}");
    assert_eq!(fields[2], ["0"], "container root: {out}");
    assert_eq!(fields[3], ["0"]);
    assert_ne!(ns_inode(&out, "user"), host_ns("user"));
}

#[test]
fn time_namespace_offsets() {
    if !root() {
        return;
    }
    let env = Env::new("timens");
    let mut b = env.bundle(&["cat", "/proc/self/timens_offsets"]);
    edit(&mut b, |v| {
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type":"time"}));
        v["linux"]["timeOffsets"] =
            json!({"monotonic":{"secs":86400,"nanosecs":0},"boottime":{"secs":3600,"nanosecs":7}});
    });
    let out = run_ok(&env, &b);
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["monotonic", "86400", "0"]),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["boottime", "3600", "7"]),
        "{out}"
    );
}

#[test]
fn hostname_domainname_sysctl_readonly_root() {
    if !root() {
        return;
    }
    let env = Env::new("uts");
    let mut b = env.bundle(&["sh", "-c", "hostname; cat /proc/sys/kernel/domainname; cat /proc/sys/net/ipv4/ip_forward; touch /x 2>&1; echo rc=$?"]);
    edit(&mut b, |v| {
        v["hostname"] = json!("box1");
        v["domainname"] = json!("example.org");
        v["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
        v["root"]["readonly"] = json!(true);
    });
    let out = run_ok(&env, &b);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "box1");
    assert_eq!(lines[1], "example.org");
    assert_eq!(lines[2], "1", "sysctl in the container's netns");
    assert!(out.contains("Read-only file system"), "{out}");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .unwrap()
            .trim()
            .len(),
        1,
        "host sysctl untouched"
    );
}

#[test]
fn mounts_options_devices_and_relative_root() {
    if !root() {
        return;
    }
    let env = Env::new("mounts");
    let host_dir = std::env::temp_dir().join(format!("casulo-hostdir-{}", std::process::id()));
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("f"), "from-host").unwrap();
    let probe = "grep -E ' /(data|scratch|opt/ro) ' /proc/self/mountinfo; cat /data/f; touch /data/g 2>&1; \
                 stat -c '%F %t:%T %a %u:%g' /dev/fuse /dev/null /dev/zero; ls -l /dev/ptmx /dev/fd; df /scratch | tail -1";
    let mut b = env.bundle(&["sh", "-c", probe]);
    edit(&mut b, |v| {
        let m = v["mounts"].as_array_mut().unwrap();
        m.push(json!({"destination":"/data","type":"bind","source":host_dir,"options":["rbind","ro","nosuid"]}));
        m.push(json!({"destination":"/scratch","type":"tmpfs","source":"tmpfs","options":["size=1m","mode=700","noexec"]}));
        m.push(json!({"destination":"/opt/ro","type":"tmpfs","source":"tmpfs","options":["ro"]}));
        v["linux"]["devices"] = json!([{"path":"/dev/fuse","type":"c","major":10,"minor":229,"fileMode":384,"uid":1000,"gid":1000}]);
        v["root"]["path"] = json!("rootfs");
    });
    let out = run_ok(&env, &b);
    let line = |p: &str| {
        out.lines()
            .find(|l| l.split_whitespace().nth(4) == Some(p))
            .unwrap_or_else(|| panic!("{p} in {out}"))
            .to_string()
    };
    assert!(line("/data").contains(" ro,nosuid"), "{out}");
    assert!(
        line("/scratch").contains("noexec") && line("/scratch").contains("mode=700"),
        "{out}"
    );
    assert!(
        line("/opt/ro")
            .split_whitespace()
            .nth(5)
            .unwrap()
            .starts_with("ro"),
        "{out}"
    );
    assert!(out.contains("from-host"));
    assert!(out.contains("Read-only file system"), "ro bind: {out}");
    assert!(
        out.contains("character special file a:e5 600 1000:1000"),
        "device type, numbers, mode, owner: {out}"
    );
    assert!(
        out.contains("character special file 1:3 666 0:0"),
        "default /dev/null: {out}"
    );
    assert!(
        out.contains("/dev/ptmx -> pts/ptmx") && out.contains("/dev/fd -> /proc/self/fd"),
        "{out}"
    );
    assert!(!host_dir.join("g").exists());
    std::fs::remove_dir_all(&host_dir).unwrap();
}

#[test]
fn mount_target_symlink_cannot_escape_the_rootfs() {
    if !root() {
        return;
    }
    let env = Env::new("escape");
    let victim = std::env::temp_dir().join(format!("casulo-victim-{}", std::process::id()));
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("keep"), "host data").unwrap();
    let mut b = env.bundle(&[
        "sh",
        "-c",
        "ls /escape; grep ' /escape\\| /tmp/casulo-victim' /proc/self/mountinfo | head -3",
    ]);
    // rootfs/escape -> <victim> (absolute host path): must resolve inside the rootfs.
    symlink(&victim, b.rootfs().join("escape")).unwrap();
    edit(&mut b, |v| {
        v["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination":"/escape","type":"tmpfs","source":"tmpfs"}));
        v["root"]["readonly"] = json!(false);
    });
    let (code, out, err) = run(&env, &b);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        std::fs::read_to_string(victim.join("keep")).unwrap(),
        "host data"
    );
    assert!(
        b.rootfs().join(victim.strip_prefix("/").unwrap()).is_dir(),
        "the symlink target was created inside the rootfs"
    );
    std::fs::remove_dir_all(&victim).unwrap();

    // /proc as a symlink is refused (CVE-2019-19921).
    let b = env.bundle(&["true"]);
    std::fs::remove_dir(b.rootfs().join("proc")).unwrap();
    symlink("/tmp", b.rootfs().join("proc")).unwrap();
    b.write_config();
    let (code, _, err) = run(&env, &b);
    assert_ne!(code, 0);
    assert!(err.contains("/proc") && err.contains("symlink"), "{err}");
}

#[test]
fn no_pivot_runs_in_a_chroot() {
    if !root() {
        return;
    }
    let env = Env::new("nopivot");
    let b = env.bundle(&["sh", "-c", "ls /; cat /proc/self/mountinfo | wc -l"]);
    let r = env.run(&[
        "run",
        "--no-pivot",
        "--bundle",
        b.dir.to_str().unwrap(),
        &b.id(),
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("checker"), "{r:?}");
}

#[test]
fn process_user_rlimits_umask_nnp_oom_cwd_env() {
    if !root() {
        return;
    }
    let env = Env::new("process");
    let probe = "id; umask; ulimit -n; ulimit -Hn; grep -E 'NoNewPrivs|^Groups' /proc/self/status; cat /proc/self/oom_score_adj; pwd; echo $FOO";
    let mut b = env.bundle(&["sh", "-c", probe]);
    edit(&mut b, |v| {
        v["process"]["user"] =
            json!({"uid": 1000, "gid": 1000, "additionalGids": [5, 20], "umask": 63});
        v["process"]["rlimits"] = json!([{"type":"RLIMIT_NOFILE","soft":512,"hard":768}]);
        v["process"]["noNewPrivileges"] = json!(true);
        v["process"]["oomScoreAdj"] = json!(500);
        v["process"]["cwd"] = json!("/tmp");
        v["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!("FOO=bar baz"));
    });
    let out = run_ok(&env, &b);
    let l: Vec<&str> = out.lines().collect();
    assert!(
        l[0].starts_with("uid=1000(") && l[0].contains(" gid=1000("),
        "{out}"
    );
    assert_eq!(l[1], "0077");
    assert_eq!(l[2], "512");
    assert_eq!(l[3], "768");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    let groups: Vec<&str> = out
        .lines()
        .find(|x| x.starts_with("Groups:"))
        .unwrap()
        .split_whitespace()
        .skip(1)
        .collect();
    assert_eq!(groups, ["5", "20"], "{out}");
    assert!(out.contains("\n500\n/tmp\nbar baz\n"), "{out}");
}

#[test]
fn only_stdio_and_preserved_fds_reach_the_container() {
    if !root() {
        return;
    }
    let env = Env::new("fds");
    let b = env.bundle(&["sh", "-c", "ls /proc/self/fd | sort -n | tr '\\n' ' '"]);
    let out = {
        let r = env.run(&["run", "--bundle", b.dir.to_str().unwrap(), &b.id()]);
        assert_eq!(r.code, 0, "{r:?}");
        r.stdout
    };
    // 0 1 2 and the one `ls` opens for the directory it lists.
    assert_eq!(
        out.trim(),
        "0 1 2 3",
        "runtime fds leaked into the container: {out}"
    );

    // --preserve-fds 1: fd 3 of the caller is handed over.
    let b = env.bundle(&["sh", "-c", "cat <&3"]);
    let f = std::fs::File::open(b.dir.join("config.json")).unwrap();
    let out = std::process::Command::new(casulo_integration::casulo_bin())
        .args([
            "--root",
            env.root.to_str().unwrap(),
            "run",
            "--preserve-fds",
            "1",
            "--bundle",
            b.dir.to_str().unwrap(),
            &b.id(),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn_with_fd3(f);
    assert!(out.contains("ociVersion"), "fd 3 preserved: {out}");

    // Preserving an fd the caller does not have open is refused (the runtime's own fds
    // would take its number and leak into the container).
    let b = env.bundle(&["true"]);
    let r = env.run(&[
        "run",
        "--preserve-fds",
        "40",
        "--bundle",
        b.dir.to_str().unwrap(),
        &b.id(),
    ]);
    assert!(r.code != 0 && r.stderr.contains("--preserve-fds"), "{r:?}");
    assert!(!env.root.join(b.id()).exists());
}

/// Spawning with an extra fd 3 (std has no direct way: dup it in pre_exec).
trait SpawnFd3 {
    fn spawn_with_fd3(&mut self, f: std::fs::File) -> String;
}

impl SpawnFd3 for std::process::Command {
    fn spawn_with_fd3(&mut self, f: std::fs::File) -> String {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let raw = f.as_raw_fd();
        // SAFETY: dup2 is async-signal-safe; it runs in the forked child before exec.
        unsafe {
            self.pre_exec(move || {
                // dup2 onto itself keeps FD_CLOEXEC: clear it in that case.
                let ok = if raw == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0)
                } else {
                    libc::dup2(raw, 3)
                };
                if ok < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = self.output().unwrap();
        drop(f);
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }
}

#[test]
fn init_is_reparented_to_the_callers_subreaper() {
    if !root() {
        return;
    }
    let env = Env::new("subreaper");
    let b = env.bundle(&["sleep", "1000"]);
    // A subreaper of our own: a shell that sets PR_SET_CHILD_SUBREAPER would need a
    // helper; casulo's parent here is this test's forked child, which becomes one.
    let pid_file = b.dir.join("pid");
    let bin = casulo_integration::casulo_bin();
    let (rd, wr) = nix::unistd::pipe().unwrap();
    // SAFETY: test-only fork. The child is not limited to async-signal-safe calls (it
    // builds a Command): it runs while the test binary may have other threads, which is
    // acceptable only because a deadlock there fails this test by its timeout, not others.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            nix::sys::prctl::set_child_subreaper(true).unwrap();
            let status = std::process::Command::new(&bin)
                .args([
                    "--root",
                    env.root.to_str().unwrap(),
                    "create",
                    "--pid-file",
                    pid_file.to_str().unwrap(),
                    "--bundle",
                    b.dir.to_str().unwrap(),
                    &b.id(),
                ])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            let me = std::process::id().to_string();
            let _ = nix::unistd::write(
                &wr,
                format!("{} {}", status.code().unwrap_or(-1), me).as_bytes(),
            );
            // Stay alive (as the subreaper) until the test is done looking.
            std::thread::sleep(std::time::Duration::from_secs(3));
            std::process::exit(0);
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(wr);
            let mut buf = [0u8; 64];
            let n = nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&rd), &mut buf).unwrap();
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            let mut it = msg.split_whitespace();
            assert_eq!(it.next(), Some("0"), "create succeeded");
            let reaper: i32 = it.next().unwrap().parse().unwrap();
            let init: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
            let stat = std::fs::read_to_string(format!("/proc/{init}/stat")).unwrap();
            let ppid: i32 = stat[stat.rfind(')').unwrap() + 2..]
                .split_whitespace()
                .nth(1)
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(
                ppid, reaper,
                "the init's parent is the subreaper, no runtime process in between"
            );
            assert_eq!(reaper, child.as_raw());
            env.ok(&["delete", "--force", &b.id()]);
            let _ = nix::sys::wait::waitpid(child, None);
        }
    }
}

#[test]
fn bad_input_is_refused_with_one_line_naming_the_field_and_leaves_nothing() {
    if !root() {
        return;
    }
    let env = Env::new("badinput");
    type Breaker = Box<dyn Fn(&Bundle)>;
    let write_json = |b: &Bundle, f: &dyn Fn(&mut Value)| {
        let mut v: Value =
            serde_json::from_str(&std::fs::read_to_string(b.dir.join("config.json")).unwrap())
                .unwrap();
        f(&mut v);
        std::fs::write(b.dir.join("config.json"), v.to_string()).unwrap();
    };
    let cases: Vec<(&str, Breaker, &str)> = vec![
        (
            "malformed",
            Box::new(|b: &Bundle| {
                std::fs::write(b.dir.join("config.json"), "{\"ociVersion\": ").unwrap()
            }),
            "config.json",
        ),
        (
            "missing",
            Box::new(|b: &Bundle| std::fs::remove_file(b.dir.join("config.json")).unwrap()),
            "config.json",
        ),
        (
            "no rootfs",
            Box::new(move |b: &Bundle| std::fs::remove_dir_all(b.rootfs()).unwrap()),
            "root.path",
        ),
        (
            "namespace type",
            Box::new(move |b: &Bundle| {
                write_json(b, &|v| v["linux"]["namespaces"][0]["type"] = json!("bogus"))
            }),
            "linux.namespaces[0].type",
        ),
        (
            "relative destination",
            Box::new(move |b: &Bundle| {
                write_json(b, &|v| v["mounts"][0]["destination"] = json!("proc"))
            }),
            "mounts[0].destination",
        ),
        (
            "cgroup value",
            Box::new(move |b: &Bundle| {
                write_json(b, &|v| {
                    v["linux"]["resources"]["cpu"] = json!({"period": 0})
                })
            }),
            "linux.resources.cpu.period",
        ),
    ];
    for (name, breaker, field) in cases {
        let b = env.bundle(&["true"]);
        breaker(&b);
        let log = env
            .root
            .with_extension(format!("{}.log", name.replace(' ', "_")));
        let r = env.run(&[
            "--log",
            log.to_str().unwrap(),
            "--log-format",
            "json",
            "create",
            "--bundle",
            b.dir.to_str().unwrap(),
            &b.id(),
        ]);
        assert_ne!(r.code, 0, "{name}");
        assert_eq!(r.stderr.lines().count(), 1, "{name}: one line: {r:?}");
        assert!(r.stderr.contains(field), "{name}: names {field}: {r:?}");
        let last: Value = serde_json::from_str(
            std::fs::read_to_string(&log)
                .unwrap()
                .lines()
                .last()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(last["level"], "error", "{name}");
        assert!(last["msg"].as_str().unwrap().contains(field), "{name}");
        assert!(!env.root.join(b.id()).exists(), "{name}: no state dir");
        assert!(
            !casulo_integration::cli::cgroup_exists(&b),
            "{name}: no cgroup"
        );
        let _ = std::fs::remove_file(&log);
    }
    for bad in ["", "a/b", "..", "x..y", &"y".repeat(1025)] {
        let b = env.bundle(&["true"]);
        let r = env.run(&["create", "--bundle", b.dir.to_str().unwrap(), bad]);
        assert_ne!(r.code, 0, "id {bad:?} refused");
        assert!(r.stderr.contains("container id"), "{r:?}");
    }
    // A duplicate id.
    let b = env.bundle(&["sleep", "100"]);
    assert_eq!(env.create(&b).code, 0);
    let r = env.create(&b);
    assert!(r.code != 0 && r.stderr.contains("already exists"), "{r:?}");
    env.ok(&["delete", "--force", &b.id()]);
    assert!(eventually(|| !env.root.join(b.id()).exists()));
    assert!(!Path::new(&format!("/proc/{}", 0)).join("x").exists());
}
