//! Regression tests for container-escape CVEs of other runtimes, each written the way
//! the attack worked, so each fails on a runtime without the defense.

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use casulo_integration::Bundle;
use common::{edit, host_dir, is_root, Env};
use serde_json::json;

/// CVE-2019-5736: until it execs, the init is a copy of the runtime binary. A process
/// in the container (here a startContainer hook, which runs inside the container's
/// namespaces with the container's credentials while the init still is casulo) must
/// not get a handle on /proc/1/exe, which it could reopen for writing once the
/// runtime exits, to overwrite the host's binary.
#[test]
fn cve_2019_5736_init_exe_cannot_be_opened_from_the_container() {
    if !is_root() {
        return;
    }
    let env = Env::new("cve-5736");
    let mut b = Bundle::new(&["true"]);
    let dir = host_dir(&b, "out");
    let script = "( exec 3</proc/1/exe ) 2>/dev/null && echo OPENED > /out/read || echo DENIED > /out/read; \
                  ( exec 3>>/proc/1/exe ) 2>/dev/null && echo OPENED > /out/write || echo DENIED > /out/write; \
                  readlink /proc/1/exe > /out/link 2>&1 || echo DENIED >> /out/link";
    let d = dir.to_str().unwrap().to_string();
    edit(&mut b, |v| {
        v["mounts"].as_array_mut().unwrap().push(
            json!({"destination": "/out", "type": "bind", "source": d, "options": ["rbind"]}),
        );
        v["hooks"] = json!({"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", script]}]});
    });
    env.ok(&["create", "--bundle", b.dir.to_str().unwrap(), &b.id()]);
    let pid = env.state(&b.id())["pid"].as_i64().unwrap();
    // startContainer hooks are container programs run while the init is a copy of the
    // runtime: the init runs from a read-only bind of the binary (cve_exe.rs), not the
    // writable file itself.
    let exe = format!("/proc/{pid}/exe");
    let st = nix::sys::statvfs::statvfs(exe.as_str()).unwrap();
    assert!(
        st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
        "{exe} is on a writable mount"
    );
    env.ok(&["start", &b.id()]);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    assert_eq!(
        read("read").trim(),
        "DENIED",
        "/proc/1/exe opened for reading"
    );
    assert_eq!(
        read("write").trim(),
        "DENIED",
        "/proc/1/exe opened for writing"
    );
    assert!(
        read("link").contains("DENIED"),
        "/proc/1/exe readable: {}",
        read("link")
    );
    env.ok(&["delete", "--force", &b.id()]);
}

/// CVE-2024-21626: no fd of the runtime reaches the container process.
#[test]
fn cve_2024_21626_no_runtime_fd_leaks_into_the_container() {
    if !is_root() {
        return;
    }
    let env = Env::new("cve-21626-fd");
    let b = Bundle::new(&["ls", "/proc/self/fd"]);
    let r = env.run_bundle(&b);
    assert_eq!(r.code, 0, "{r:?}");
    let fds: Vec<&str> = r.stdout.split_whitespace().collect();
    // 0-2 and ls's own directory fd.
    assert_eq!(fds, ["0", "1", "2", "3"], "{r:?}");
}

/// CVE-2024-21626: a cwd naming a runtime fd through /proc/self/fd is refused; a cwd
/// symlink climbing out of the rootfs stays inside it.
#[test]
fn cve_2024_21626_cwd_cannot_resolve_outside_the_rootfs() {
    if !is_root() {
        return;
    }
    let env = Env::new("cve-21626-cwd");
    let bundle = |args: &[&str], cwd: &str| {
        let mut b = Bundle::new(args);
        edit(&mut b, |v| v["process"]["cwd"] = json!(cwd));
        b
    };
    common::cwd_cannot_escape(&bundle, &|b| env.run_bundle(b), &|b| {
        env.assert_nothing_left(b)
    });
}

/// CVE-2021-30465: a mount target whose path is swapped for a symlink while the
/// container is created. A host thread exchanges rootfs/mnt/p (a directory holding x)
/// and rootfs/mnt/q (a symlink climbing out to a host directory holding x); the
/// bind mount onto /mnt/p/x must land inside the rootfs every time (or fail), never on
/// the host directory. A mount outside the container's root is invisible in the
/// container's mountinfo, so the check is that the bind is listed there.
#[test]
fn cve_2021_30465_symlink_exchange_race_never_mounts_outside() {
    if !is_root() {
        return;
    }
    let env = Env::new("cve-30465");
    let b = Bundle::new(&["true"]);
    let src = host_dir(&b, "cve30465-src");
    std::fs::write(src.join("marker"), "bind source").unwrap();
    let outside = host_dir(&b, "cve30465-outside");
    std::fs::create_dir_all(outside.join("x")).unwrap();
    let mnt = b.rootfs().join("mnt");
    std::fs::create_dir_all(mnt.join("p/x")).unwrap();
    let up = "../".repeat(12);
    let target = format!("{up}{}", outside.strip_prefix("/").unwrap().display());
    symlink(&target, mnt.join("q")).unwrap();
    let mut b = b;
    let s = src.to_str().unwrap().to_string();
    edit(&mut b, |v| {
        v["root"]["readonly"] = json!(false);
        v["mounts"].as_array_mut().unwrap().push(
            json!({"destination": "/mnt/p/x", "type": "bind", "source": s, "options": ["rbind"]}),
        );
    });
    let stop = AtomicBool::new(false);
    let (mut landed, mut failed) = (0, 0);
    std::thread::scope(|sc| {
        sc.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let _ = nix::fcntl::renameat2(
                    None,
                    &mnt.join("p"),
                    None,
                    &mnt.join("q"),
                    nix::fcntl::RenameFlags::RENAME_EXCHANGE,
                );
            }
        });
        for _ in 0..30 {
            let r = env.create(&b);
            if r.code != 0 {
                failed += 1;
                env.assert_nothing_left(&b);
                continue;
            }
            let pid = env.state(&b.id())["pid"].as_i64().unwrap();
            let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
            let binds: Vec<&str> = info
                .lines()
                .filter(|l| {
                    l.split(' ')
                        .nth(3)
                        .is_some_and(|r| r.ends_with("cve30465-src"))
                })
                .collect();
            assert_eq!(binds.len(), 1, "bind not inside the container:\n{info}");
            landed += 1;
            env.ok(&["delete", "--force", &b.id()]);
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(
        std::fs::read_dir(outside.join("x"))
            .unwrap()
            .next()
            .is_none(),
        "host directory untouched"
    );
    assert!(landed > 0, "no create succeeded ({failed} failed)");
}

/// CVE-2019-19921 / CVE-2023-27561: /proc or /sys of the image being a symlink would
/// send the procfs/sysfs mount (and later writes) elsewhere: refused.
#[test]
fn cve_2019_19921_proc_or_sys_symlink_is_refused() {
    if !is_root() {
        return;
    }
    let env = Env::new("cve-19921");
    for dir in ["proc", "sys"] {
        let b = Bundle::new(&["true"]);
        let p = b.rootfs().join(dir);
        std::fs::remove_dir(&p).unwrap();
        std::fs::create_dir_all(b.rootfs().join("evil")).unwrap();
        symlink("/evil", &p).unwrap();
        let r = env.create(&b);
        assert_ne!(r.code, 0, "/{dir} symlink accepted");
        assert!(
            r.stderr
                .contains(&format!("/{dir} in the rootfs is a symlink")),
            "{}",
            r.stderr
        );
        env.assert_nothing_left(&b);
    }
}

/// CVE-2025-31133: masked paths are masked by bind-mounting the container's /dev/null.
/// With /dev a bind of a host directory whose `null` is a symlink (to a procfs file the
/// attacker wants writable) or a plain file, masking must refuse, not bind that file.
#[test]
fn cve_2025_31133_fake_dev_null_is_not_used_for_masking() {
    if !is_root() {
        return;
    }
    let env = Env::new("cve-31133");
    for kind in ["symlink", "file"] {
        let mut b = Bundle::new(&["true"]);
        let setup = common::fake_dev(&b, kind);
        edit(&mut b, setup);
        let r = env.create(&b);
        assert_ne!(r.code, 0, "{kind} /dev/null used for masking");
        assert!(
            r.stderr.contains("linux.maskedPaths") && r.stderr.contains("/dev/null"),
            "{}",
            r.stderr
        );
        env.assert_nothing_left(&b);
    }
}

/// CVE-2025-52881: procfs writes (sysctl, oom_score_adj) must not be redirected by
/// mounts the config or image put over the container's /proc: files bind-mounted over
/// /proc/sys/kernel/domainname and /proc/self/oom_score_adj stay untouched and the
/// real values are set.
#[test]
fn cve_2025_52881_procfs_writes_are_not_redirected() {
    if !is_root() {
        return;
    }
    let env = Env::new("cve-52881");
    let mut b = Bundle::new(&["sleep", "1000"]);
    let dir = host_dir(&b, "planted");
    let (f1, f2) = (dir.join("domainname"), dir.join("oom"));
    std::fs::write(&f1, "planted\n").unwrap();
    std::fs::write(&f2, "planted\n").unwrap();
    let (s1, s2) = (
        f1.to_str().unwrap().to_string(),
        f2.to_str().unwrap().to_string(),
    );
    edit(&mut b, |v| {
        let mounts = v["mounts"].as_array_mut().unwrap();
        mounts.push(json!({"destination": "/proc/sys/kernel/domainname", "type": "bind", "source": s1, "options": ["bind"]}));
        mounts.push(json!({"destination": "/proc/self/oom_score_adj", "type": "bind", "source": s2, "options": ["bind"]}));
        v["linux"]["sysctl"] = json!({"kernel.domainname": "casulo-52881"});
        v["process"]["oomScoreAdj"] = json!(123);
    });
    let r = env.create(&b);
    assert_eq!(r.code, 0, "{r:?}");
    let pid = env.state(&b.id())["pid"].as_i64().unwrap();
    assert_eq!(std::fs::read_to_string(&f1).unwrap(), "planted\n");
    assert_eq!(std::fs::read_to_string(&f2).unwrap(), "planted\n");
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
            .unwrap()
            .trim(),
        "123"
    );
    let uts = std::fs::File::open(format!("/proc/{pid}/ns/uts")).unwrap();
    let domain = std::thread::spawn(move || {
        nix::sched::setns(uts, nix::sched::CloneFlags::CLONE_NEWUTS).unwrap();
        nix::sys::utsname::uname()
            .unwrap()
            .domainname()
            .to_string_lossy()
            .into_owned()
    })
    .join()
    .unwrap();
    assert_eq!(domain, "casulo-52881");
    env.ok(&["delete", "--force", &b.id()]);
    assert!(Path::new(&f1).exists());
}

/// The capability sets of `casulo exec <id> cat /proc/self/status`.
fn exec_caps(env: &Env, id: &str, extra: &[&str]) -> (u64, u64) {
    let mut args = vec!["exec"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[id, "cat", "/proc/self/status"]);
    let r = env.ok(&args);
    let get = |key: &str| {
        let line = r.stdout.lines().find(|l| l.starts_with(key)).unwrap();
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    (get("CapInh:"), get("CapAmb:"))
}

/// CVE-2022-29162: `exec` (with or without `--cap`) must not hand out inheritable (or
/// ambient) capabilities the config does not list — also when the config has no
/// capabilities at all, where a default set would fill them.
#[test]
fn cve_2022_29162_exec_grants_no_inheritable_capabilities() {
    if !is_root() {
        return;
    }
    let env = Env::new("cve-29162");
    for with_caps in [true, false] {
        let mut b = Bundle::new(&["sleep", "1000"]);
        if !with_caps {
            edit(&mut b, |v| {
                v["process"].as_object_mut().unwrap().remove("capabilities");
            });
        }
        env.ok(&["create", "--bundle", b.dir.to_str().unwrap(), &b.id()]);
        env.ok(&["start", &b.id()]);
        assert_eq!(exec_caps(&env, &b.id(), &[]), (0, 0), "caps {with_caps}");
        assert_eq!(
            exec_caps(&env, &b.id(), &["--cap", "CAP_CHOWN"]),
            (0, 0),
            "--cap, caps {with_caps}"
        );
        env.ok(&["delete", "--force", &b.id()]);
    }
}

/// CVE-2025-52565: an image whose /dev/console is a symlink (here to a procfs file)
/// must not get the pty bind-mounted through it.
#[test]
fn cve_2025_52565_dev_console_symlink_is_refused() {
    if !is_root() {
        return;
    }
    let env = Env::new("cve-52565");
    let mut b = Bundle::new(&["true"]);
    // The image's own /dev (no tmpfs over it) with the planted symlink.
    edit(&mut b, |v| {
        v["process"]["terminal"] = json!(true);
        let mounts = v["mounts"].as_array_mut().unwrap();
        mounts.retain(|m| m["destination"] != "/dev");
    });
    symlink(
        "/proc/sys/kernel/core_pattern",
        b.rootfs().join("dev/console"),
    )
    .unwrap();
    let r = env.run_bundle(&b);
    assert_ne!(r.code, 0, "console mounted through a symlink: {r:?}");
    assert!(r.stderr.contains("/dev/console"), "{}", r.stderr);
    env.assert_nothing_left(&b);
}

/// CVE-2019-5736 through `exec`, as the original attack: a process in the container
/// watches /proc for a process whose exe is the runtime (the exec'd process before its
/// execve) and grabs it. Every exec must be invisible to it.
#[test]
fn cve_2019_5736_exec_process_exe_is_never_reachable() {
    if !is_root() {
        return;
    }
    let env = Env::new("cve-5736-exec");
    let script =
        "while :; do ls -l /proc/[0-9]*/exe 2>/dev/null | grep casulo >> /out/caught; done";
    let mut b = Bundle::new(&["sh", "-c", script]);
    let dir = host_dir(&b, "out");
    let d = dir.to_str().unwrap().to_string();
    edit(&mut b, |v| {
        v["mounts"].as_array_mut().unwrap().push(
            json!({"destination": "/out", "type": "bind", "source": d, "options": ["rbind"]}),
        );
    });
    env.ok(&["create", "--bundle", b.dir.to_str().unwrap(), &b.id()]);
    env.ok(&["start", &b.id()]);
    // Racy by nature: without the defense, 40 execs were caught here at least once.
    for _ in 0..80 {
        env.ok(&["exec", &b.id(), "true"]);
    }
    let caught = std::fs::read_to_string(dir.join("caught")).unwrap_or_default();
    env.ok(&["delete", "--force", &b.id()]);
    assert!(
        caught.is_empty(),
        "the runtime's exe was reachable: {caught}"
    );
}
