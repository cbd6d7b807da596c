//! Generated cases for mounts, propagation, masked and read-only paths.

use std::path::Path;

use serde_json::{json, Value};

use super::{push, slot, Cases};

pub(super) fn mount_cases(c: &mut Cases) {
    let tmpfs = |dest: &'static str, opts: Value| {
        move |v: &mut Value, _: &Path| {
            push(
                v,
                &["mounts"],
                json!({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": opts.clone()}),
            );
        }
    };
    for (name, opts) in [
        ("plain", json!([])),
        ("size-mode", json!(["size=1m", "mode=0700"])),
        ("nr_inodes", json!(["nr_inodes=100"])),
        ("ro", json!(["ro"])),
        ("rw-explicit", json!(["rw"])),
        ("nosuid-nodev-noexec", json!(["nosuid", "nodev", "noexec"])),
        ("suid-dev-exec", json!(["suid", "dev", "exec"])),
        ("noatime", json!(["noatime"])),
        ("relatime", json!(["relatime"])),
        ("strictatime", json!(["strictatime"])),
        ("nodiratime", json!(["nodiratime"])),
        ("uid-gid", json!(["uid=1000", "gid=1000", "mode=0750"])),
        ("ro-then-rw", json!(["ro", "rw"])),
        ("private", json!(["private"])),
        ("shared", json!(["shared"])),
        ("slave", json!(["slave"])),
        ("unbindable", json!(["unbindable"])),
    ] {
        c.add(format!("mounts/tmpfs-{name}"), tmpfs("/mnt", opts));
    }
    c.add(
        "mounts/tmpfs-nested-dest",
        tmpfs("/mnt/a/b/c", json!(["size=64k"])),
    );
    c.add("mounts/tmpfs-over-tmp", tmpfs("/tmp", json!(["mode=1777"])));
    let bind = |opts: Value| {
        move |v: &mut Value, dir: &Path| {
            let src = dir.join("bind-src");
            std::fs::create_dir_all(&src).expect("create bind source");
            std::fs::write(src.join("file"), "bound\n").expect("write bind source file");
            push(
                v,
                &["mounts"],
                json!({"destination": "/mnt", "type": "bind", "source": src, "options": opts.clone()}),
            );
        }
    };
    for (name, opts) in [
        ("bind", json!(["bind"])),
        ("rbind", json!(["rbind"])),
        ("bind-ro", json!(["bind", "ro"])),
        (
            "rbind-ro-nosuid-nodev-noexec",
            json!(["rbind", "ro", "nosuid", "nodev", "noexec"]),
        ),
        ("bind-private", json!(["bind", "private"])),
        ("rbind-rprivate", json!(["rbind", "rprivate"])),
        ("bind-shared", json!(["bind", "shared"])),
        ("rbind-rslave", json!(["rbind", "rslave"])),
        ("bind-unbindable", json!(["bind", "unbindable"])),
        ("bind-noatime", json!(["bind", "noatime"])),
    ] {
        c.add(format!("mounts/{name}"), bind(opts));
    }
    c.add("mounts/bind-file", |v, dir| {
        let src = dir.join("bind-file");
        std::fs::write(&src, "file\n").expect("write bind source");
        push(v, &["mounts"], json!({"destination": "/etc/bound-file", "type": "none", "source": src, "options": ["bind", "ro"]}));
    });
    c.add("mounts/proc-second", |v, _| {
        push(v, &["mounts"], json!({"destination": "/mnt", "type": "proc", "source": "proc", "options": ["nosuid", "nodev", "noexec"]}));
    });
    c.add("mounts/mqueue-second", |v, _| {
        push(
            v,
            &["mounts"],
            json!({"destination": "/mnt", "type": "mqueue", "source": "mqueue"}),
        );
    });
    c.add("mounts/sysfs-rw", |v, _| {
        if let Some(a) = v["mounts"].as_array_mut() {
            for m in a.iter_mut().filter(|m| m["destination"] == "/sys") {
                m["options"] = json!(["nosuid", "noexec", "nodev"]);
            }
        }
    });
    c.add("mounts/cgroup-rw", |v, _| {
        if let Some(a) = v["mounts"].as_array_mut() {
            for m in a
                .iter_mut()
                .filter(|m| m["destination"] == "/sys/fs/cgroup")
            {
                m["options"] = json!(["nosuid", "noexec", "nodev", "relatime"]);
            }
        }
    });
    c.add("mounts/no-cgroup", |v, _| {
        if let Some(a) = v["mounts"].as_array_mut() {
            a.retain(|m| m["destination"] != "/sys/fs/cgroup");
        }
    });
    c.add("mounts/none", |v, _| {
        *slot(v, &["mounts"]) = json!([{"destination": "/proc", "type": "proc", "source": "proc"}]);
    });
    for p in [
        "private",
        "rprivate",
        "slave",
        "rslave",
        "shared",
        "rshared",
        "unbindable",
    ] {
        c.set(
            &format!("rootfsPropagation/{p}"),
            &["linux", "rootfsPropagation"],
            json!(p),
        );
    }
    let masked = |paths: Value| {
        move |v: &mut Value, _: &Path| *slot(v, &["linux", "maskedPaths"]) = paths.clone()
    };
    c.add("masked/none", masked(json!([])));
    c.add("masked/proc-file", masked(json!(["/proc/cpuinfo"])));
    c.add("masked/proc-dir", masked(json!(["/proc/driver"])));
    c.add("masked/rootfs-file", masked(json!(["/etc/hostname"])));
    c.add("masked/rootfs-dir", masked(json!(["/home/user"])));
    c.add("masked/nonexistent", masked(json!(["/does/not/exist"])));
    let ro = |paths: Value| {
        move |v: &mut Value, _: &Path| *slot(v, &["linux", "readonlyPaths"]) = paths.clone()
    };
    c.add("readonly/none", ro(json!([])));
    c.add("readonly/proc-sys-only", ro(json!(["/proc/sys"])));
    c.add("readonly/rootfs-dir-rw-root", |v, _| {
        *slot(v, &["root", "readonly"]) = json!(false);
        *slot(v, &["linux", "readonlyPaths"]) = json!(["/etc", "/home/user"]);
    });
    c.add("readonly/rootfs-file-rw-root", |v, _| {
        *slot(v, &["root", "readonly"]) = json!(false);
        *slot(v, &["linux", "readonlyPaths"]) = json!(["/etc/passwd"]);
    });
    c.add(
        "readonly/proc-file",
        ro(json!(["/proc/sysrq-trigger", "/proc/loadavg"])),
    );
    c.add("readonly/nonexistent", ro(json!(["/does/not/exist"])));
}
