//! The CVE regressions of cve.rs that apply to rootless containers, run by the
//! unprivileged user `casulo-rl` (issue 16 point 6): no host fd reaches the container
//! (CVE-2024-21626), the runtime binary (the user's own file, and the container's root
//! is the user) is never writable from the container (CVE-2019-5736), a symlinked /proc
//! or /sys is refused (CVE-2019-19921), masking never uses a fake /dev/null
//! (CVE-2025-31133).

mod common;

use std::os::unix::fs::symlink;

use casulo_integration::rootless::Sandbox;
use casulo_integration::Bundle;
use serde_json::json;

fn dir(b: &Bundle) -> &str {
    b.dir.to_str().unwrap()
}

fn run(sb: &Sandbox, b: &Bundle) -> casulo_integration::Run {
    let r = sb.casulo(&["run", "--bundle", dir(b), &b.id()]);
    let _ = sb.casulo(&["delete", "--force", &b.id()]);
    r
}

fn assert_nothing_left(sb: &Sandbox, b: &Bundle) {
    assert!(
        !sb.xdg.join("casulo").join(b.id()).exists(),
        "state left for {}",
        b.id()
    );
}

#[test]
fn rootless_no_host_fd_reaches_the_container() {
    let Some(sb) = Sandbox::new("cve-fd") else {
        return;
    };
    let b = sb.bundle(&["ls", "/proc/self/fd"], None);
    let r = run(&sb, &b);
    assert_eq!(r.code, 0, "{r:?}");
    let fds: Vec<&str> = r.stdout.split_whitespace().collect();
    assert_eq!(fds, ["0", "1", "2", "3"], "{r:?}");
    let bundle = |args: &[&str], cwd: &str| {
        let mut b = sb.bundle(args, None);
        sb.edit(&mut b, |v| v["process"]["cwd"] = json!(cwd));
        b
    };
    common::cwd_cannot_escape(&bundle, &|b| run(&sb, b), &|b| assert_nothing_left(&sb, b));
}

/// The container's root is the user who owns the binary: a handle on the init's exe
/// (startContainer hook, before the init execs) or an exec'd process's exe must never
/// be writable.
#[test]
fn rootless_runtime_binary_cannot_be_overwritten() {
    let Some(sb) = Sandbox::new("cve-exe") else {
        return;
    };
    let before = std::fs::read(&sb.bin).unwrap();
    let out = sb.mkdir("out");
    let o = out.to_str().unwrap().to_string();
    let script = "( exec 3>>/proc/1/exe ) 2>/dev/null && echo OPENED > /out/write || echo DENIED > /out/write; \
                  ( echo x >> /proc/1/exe ) 2>/dev/null; true";
    let watch = "while :; do for e in /proc/[0-9]*/exe; do ( echo x >> $e ) 2>/dev/null && echo $e >> /out/caught; done; done";
    let mut b = sb.bundle(&["sh", "-c", watch], None);
    sb.edit(&mut b, |v| {
        v["mounts"].as_array_mut().unwrap().push(
            json!({"destination": "/out", "type": "bind", "source": o, "options": ["rbind"]}),
        );
        v["hooks"] = json!({"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", script]}]});
    });
    sb.ok(&["create", "--bundle", dir(&b), &b.id()]);
    sb.ok(&["start", &b.id()]);
    for _ in 0..40 {
        sb.ok(&["exec", &b.id(), "true"]);
    }
    sb.ok(&["delete", "--force", &b.id()]);
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap_or_default();
    assert_eq!(
        read("write").trim(),
        "DENIED",
        "/proc/1/exe opened for writing"
    );
    // Every exe in the container (busybox on the read-only root, runtime copies) must
    // refuse writes.
    let caught = read("caught");
    assert!(
        caught.is_empty(),
        "a writable exe in the container: {caught}"
    );
    assert!(
        std::fs::read(&sb.bin).unwrap() == before,
        "the user's casulo binary changed"
    );
}

#[test]
fn rootless_proc_or_sys_symlink_is_refused() {
    let Some(sb) = Sandbox::new("cve-19921") else {
        return;
    };
    for d in ["proc", "sys"] {
        let b = sb.bundle(&["true"], None);
        let p = b.rootfs().join(d);
        std::fs::remove_dir(&p).unwrap();
        std::fs::create_dir_all(b.rootfs().join("evil")).unwrap();
        symlink("/evil", &p).unwrap();
        sb.own(&b.dir);
        let r = sb.casulo(&["create", "--bundle", dir(&b), &b.id()]);
        assert_ne!(r.code, 0, "/{d} symlink accepted: {r:?}");
        assert!(
            r.stderr
                .contains(&format!("/{d} in the rootfs is a symlink")),
            "{r:?}"
        );
        assert_nothing_left(&sb, &b);
    }
}

#[test]
fn rootless_fake_dev_null_is_not_used_for_masking() {
    let Some(sb) = Sandbox::new("cve-31133") else {
        return;
    };
    for kind in ["symlink", "file"] {
        let mut b = sb.bundle(&["true"], None);
        let setup = common::fake_dev(&b, kind);
        sb.edit(&mut b, setup);
        let r = sb.casulo(&["create", "--bundle", dir(&b), &b.id()]);
        assert_ne!(r.code, 0, "{kind} /dev/null used for masking: {r:?}");
        assert!(
            r.stderr.contains("linux.maskedPaths") && r.stderr.contains("/dev/null"),
            "{r:?}"
        );
        assert_nothing_left(&sb, &b);
    }
}
