//! Generated cases for config-linux.md: hostname, sysctl, namespaces, user
//! namespaces, root, cgroups, devices.

use std::path::Path;

use serde_json::{json, Value};

use super::{push, remove_ns, slot, Cases};

pub(super) fn linux_cases(c: &mut Cases) {
    for h in ["", "a", "host-with-dashes", "h.example.org"] {
        c.set(&format!("hostname/{h:?}"), &["hostname"], json!(h));
    }
    c.set("hostname/63-chars", &["hostname"], json!("h".repeat(63)));
    c.set("hostname/64-chars", &["hostname"], json!("h".repeat(64)));
    c.set(
        "domainname/example.org",
        &["domainname"],
        json!("example.org"),
    );
    c.set(
        "domainname/64-chars",
        &["domainname"],
        json!("d".repeat(64)),
    );
    c.set("domainname/empty", &["domainname"], json!(""));
    for (k, val) in [
        ("net.ipv4.ip_forward", "1"),
        ("net.core.somaxconn", "1024"),
        ("net.ipv4.ping_group_range", "0 2147483647"),
        ("kernel.shmmax", "68719476736"),
        ("kernel.msgmax", "16384"),
        ("fs.mqueue.msg_max", "20"),
        ("kernel.domainname", "sysctl.example"),
    ] {
        c.add(format!("sysctl/{k}"), move |v, _| {
            *slot(v, &["linux", "sysctl"]) = json!({ k: val });
        });
    }
    c.add("sysctl/several", |v, _| {
        *slot(v, &["linux", "sysctl"]) = json!({"net.ipv4.ip_forward": "1", "kernel.msgmnb": "32768", "net.ipv4.tcp_syncookies": "0"});
    });
    for ns in ["network", "ipc", "cgroup", "pid"] {
        c.add(format!("namespaces/no-{ns}"), move |v, _| remove_ns(v, ns));
    }
    c.add("namespaces/no-uts", |v, _| {
        remove_ns(v, "uts");
        if let Some(o) = v.as_object_mut() {
            o.remove("hostname");
        }
    });
    c.add("namespaces/join-host-net-by-path", |v, _| {
        remove_ns(v, "network");
        // The test process's own network namespace (the host's).
        let path = format!("/proc/{}/ns/net", std::process::id());
        push(
            v,
            &["linux", "namespaces"],
            json!({"type": "network", "path": path}),
        );
    });
    let userns = |uids: Value, gids: Value, user: Value| {
        move |v: &mut Value, _: &Path| {
            push(v, &["linux", "namespaces"], json!({"type": "user"}));
            *slot(v, &["linux", "uidMappings"]) = uids.clone();
            *slot(v, &["linux", "gidMappings"]) = gids.clone();
            *slot(v, &["process", "user"]) = user.clone();
        }
    };
    let m = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    c.add(
        "userns/root",
        userns(m.clone(), m.clone(), json!({"uid": 0, "gid": 0})),
    );
    c.add(
        "userns/user-1000",
        userns(m.clone(), m.clone(), json!({"uid": 1000, "gid": 1000})),
    );
    let two = json!([{"containerID": 0, "hostID": 200000, "size": 1000},
                     {"containerID": 1000, "hostID": 300000, "size": 1}]);
    c.add(
        "userns/two-ranges",
        userns(two.clone(), two, json!({"uid": 1000, "gid": 1000})),
    );
    let one = json!([{"containerID": 0, "hostID": 400000, "size": 1}]);
    let single = userns(one.clone(), one, json!({"uid": 0, "gid": 0}));
    c.add("userns/single-id", move |v, dir| {
        single(v, dir);
        // Only gid 0 is mapped: devpts' default gid=5 would be invalid.
        for m in v["mounts"].as_array_mut().into_iter().flatten() {
            if let Some(o) = m["options"].as_array_mut() {
                o.retain(|x| x != "gid=5");
            }
        }
    });
    c.set("root/readonly-false", &["root", "readonly"], json!(false));
    c.add("root/readonly-false-nonroot", |v, _| {
        *slot(v, &["root", "readonly"]) = json!(false);
        *slot(v, &["process", "user"]) = json!({"uid": 1000, "gid": 1000});
    });
    for (name, res) in [
        ("memory-64m", json!({"memory": {"limit": 67108864}})),
        ("memory-1g", json!({"memory": {"limit": 1073741824}})),
        ("pids-10", json!({"pids": {"limit": 10}})),
        ("pids-unlimited", json!({"pids": {"limit": -1}})),
        ("cpu-shares-512", json!({"cpu": {"shares": 512}})),
        (
            "cpu-quota",
            json!({"cpu": {"quota": 50000, "period": 100000}}),
        ),
        (
            "several",
            json!({"memory": {"limit": 134217728}, "pids": {"limit": 64}, "cpu": {"shares": 256}}),
        ),
        ("cpuset-cpus-0", json!({"cpu": {"cpus": "0"}})),
        ("cpuset-mems-0", json!({"cpu": {"mems": "0"}})),
        (
            "memory-reservation",
            json!({"memory": {"limit": 268435456, "reservation": 134217728}}),
        ),
        (
            "memory-swap",
            json!({"memory": {"limit": 268435456, "swap": 536870912}}),
        ),
        ("blkio-weight", json!({"blockIO": {"weight": 500}})),
        ("net-cls-classid", json!({"network": {"classID": 1048577}})),
    ] {
        c.add(format!("cgroups/{name}"), move |v, _| {
            let r = slot(v, &["linux", "resources"]);
            for (k, x) in res.as_object().expect("object") {
                r[k] = x.clone();
            }
        });
    }
    let dev = |d: Value| move |v: &mut Value, _: &Path| push(v, &["linux", "devices"], d.clone());
    c.add("devices/char", dev(json!({"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 438, "uid": 0, "gid": 0})));
    c.add("devices/char-owned", dev(json!({"path": "/dev/myzero", "type": "c", "major": 1, "minor": 5, "fileMode": 384, "uid": 1000, "gid": 1000})));
    c.add(
        "devices/char-u",
        dev(json!({"path": "/dev/myrandom", "type": "u", "major": 1, "minor": 8})),
    );
    c.add(
        "devices/block",
        dev(json!({"path": "/dev/myloop", "type": "b", "major": 7, "minor": 200, "fileMode": 432})),
    );
    c.add(
        "devices/fifo",
        dev(json!({"path": "/dev/myfifo", "type": "p", "fileMode": 420})),
    );
    c.add(
        "devices/subdir",
        dev(json!({"path": "/dev/sub/dir/mydev", "type": "c", "major": 1, "minor": 7})),
    );
    c.add(
        "devices/big-minor",
        dev(json!({"path": "/dev/bigminor", "type": "c", "major": 10, "minor": 1000})),
    );
    c.add("devices/setgid-mode", dev(json!({"path": "/dev/modedev", "type": "c", "major": 1, "minor": 3, "fileMode": 0o2755})));
}
