//! A deterministic generator of configurations for conformance runs.
//!
//! Each [`GenCase`] starts from the bundle's spec (normally
//! [`default_spec`](crate::default_spec) with args `/checker /config.json`) and
//! changes one field, or a few related ones, to a set, unset or edge value.
//! The list is fixed: same names, same order, every run.

use std::path::Path;

use oci_spec::runtime::Spec;
use serde_json::{json, Value};

type Edit = Box<dyn Fn(&mut Value, &Path) + Send + Sync>;

/// One generated configuration.
pub struct GenCase {
    /// A unique, stable name, `<area>/<what>`.
    pub name: String,
    edit: Edit,
}

impl std::fmt::Debug for GenCase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenCase").field("name", &self.name).finish()
    }
}

impl GenCase {
    /// Returns `spec` with this case's change applied. `bundle_dir` is where
    /// the case may create host-side files it needs (bind-mount sources).
    /// Panics if the edited JSON is not a valid spec.
    pub fn apply(&self, spec: &Spec, bundle_dir: &Path) -> Spec {
        let mut v = serde_json::to_value(spec).expect("spec to json");
        (self.edit)(&mut v, bundle_dir);
        serde_json::from_value(v).unwrap_or_else(|e| panic!("case {}: {e}", self.name))
    }
}

struct Cases(Vec<GenCase>);

impl Cases {
    fn add(
        &mut self,
        name: impl Into<String>,
        f: impl Fn(&mut Value, &Path) + Send + Sync + 'static,
    ) {
        let name = name.into();
        assert!(
            self.0.iter().all(|c| c.name != name),
            "duplicate case {name}"
        );
        self.0.push(GenCase {
            name,
            edit: Box::new(f),
        });
    }

    /// A case that sets `config[path…] = value` (objects are created).
    fn set(&mut self, name: &str, path: &'static [&'static str], value: Value) {
        self.add(name, move |v, _| *slot(v, path) = value.clone());
    }
}

/// `v[path…]`, creating objects on the way.
fn slot<'a>(v: &'a mut Value, path: &[&str]) -> &'a mut Value {
    let mut cur = v;
    for p in path {
        if !cur.is_object() {
            *cur = json!({});
        }
        cur = cur
            .as_object_mut()
            .expect("object")
            .entry(p.to_string())
            .or_insert(Value::Null);
    }
    cur
}

fn push(v: &mut Value, path: &[&str], item: Value) {
    let s = slot(v, path);
    if !s.is_array() {
        *s = json!([]);
    }
    s.as_array_mut().expect("array").push(item);
}

fn remove_ns(v: &mut Value, ty: &str) {
    if let Some(a) = slot(v, &["linux", "namespaces"]).as_array_mut() {
        a.retain(|n| n["type"] != ty);
    }
}

const ALL_CAPS: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The generated cases (about 130), in a fixed order.
pub fn cases() -> Vec<GenCase> {
    let mut c = Cases(Vec::new());
    c.add("default", |_, _| {});
    process_cases(&mut c);
    caps_cases(&mut c);
    linux_cases(&mut c);
    mount_cases(&mut c);
    c.0
}

fn process_cases(c: &mut Cases) {
    let args = |extra: &'static [&'static str]| {
        move |v: &mut Value, _: &Path| {
            for a in extra {
                push(v, &["process", "args"], json!(a));
            }
        }
    };
    c.add("args/extra", args(&["one", "two words", "ünïcödé"]));
    c.add("args/empty-string", args(&["", "after-empty"]));
    c.add("args/many", args(&["a"; 200]));
    c.set("env/none", &["process", "env"], json!([]));
    c.set("env/empty-value", &["process", "env"], json!(["EMPTY="]));
    c.set(
        "env/equals-in-value",
        &["process", "env"],
        json!(["K=a=b=c", "PATH=/bin"]),
    );
    c.set(
        "env/unicode",
        &["process", "env"],
        json!(["UNI=çà ☃", "SPACES=a b  c"]),
    );
    c.add("env/long-value", |v, _| {
        *slot(v, &["process", "env"]) = json!([format!("LONG={}", "x".repeat(8192))]);
    });
    c.add("env/many", |v, _| {
        let env: Vec<String> = (0..300).map(|i| format!("VAR_{i}=value-{i}")).collect();
        *slot(v, &["process", "env"]) = json!(env);
    });
    for cwd in ["/tmp", "/bin", "/home/user", "/dev", "/proc"] {
        c.set(&format!("cwd{cwd}"), &["process", "cwd"], json!(cwd));
    }
    let user = |u: Value| move |v: &mut Value, _: &Path| *slot(v, &["process", "user"]) = u.clone();
    c.add("user/1000", user(json!({"uid": 1000, "gid": 1000})));
    c.add("user/nobody", user(json!({"uid": 65534, "gid": 65534})));
    c.add(
        "user/unlisted-uid",
        user(json!({"uid": 12345, "gid": 54321})),
    );
    c.add("user/root-gid-1000", user(json!({"uid": 0, "gid": 1000})));
    c.add("user/uid-1000-gid-0", user(json!({"uid": 1000, "gid": 0})));
    c.add(
        "user/large-ids",
        user(json!({"uid": 2147483646u32, "gid": 2147483646u32})),
    );
    c.add(
        "user/groups-empty",
        user(json!({"uid": 0, "gid": 0, "additionalGids": []})),
    );
    c.add(
        "user/groups-one",
        user(json!({"uid": 0, "gid": 0, "additionalGids": [1000]})),
    );
    c.add(
        "user/groups-three",
        user(json!({"uid": 1000, "gid": 1000, "additionalGids": [5, 6, 7]})),
    );
    c.add(
        "user/groups-incl-primary",
        user(json!({"uid": 0, "gid": 0, "additionalGids": [0, 10]})),
    );
    c.add("user/groups-64", |v, _| {
        let g: Vec<u32> = (100..164).collect();
        *slot(v, &["process", "user"]) = json!({"uid": 0, "gid": 0, "additionalGids": g});
    });
    for m in [0o0, 0o022, 0o027, 0o077, 0o777] {
        c.add(format!("umask/{m:04o}"), move |v, _| {
            *slot(v, &["process", "user", "umask"]) = json!(m);
        });
    }
    let rl = |items: Value| {
        move |v: &mut Value, _: &Path| *slot(v, &["process", "rlimits"]) = items.clone()
    };
    c.add("rlimits/none", rl(json!([])));
    c.add(
        "rlimits/nofile-low",
        rl(json!([{"type": "RLIMIT_NOFILE", "soft": 64, "hard": 64}])),
    );
    c.add(
        "rlimits/nofile-soft-lt-hard",
        rl(json!([{"type": "RLIMIT_NOFILE", "soft": 256, "hard": 4096}])),
    );
    c.add(
        "rlimits/nofile-above-host-hard",
        rl(json!([{"type": "RLIMIT_NOFILE", "soft": 1048576, "hard": 1048576}])),
    );
    c.add(
        "rlimits/core-zero",
        rl(json!([{"type": "RLIMIT_CORE", "soft": 0, "hard": 0}])),
    );
    c.add(
        "rlimits/core-unlimited",
        rl(json!([{"type": "RLIMIT_CORE", "soft": u64::MAX, "hard": u64::MAX}])),
    );
    for (ty, soft, hard) in [
        ("RLIMIT_CPU", 100u64, 200u64),
        ("RLIMIT_FSIZE", 1 << 20, 1 << 30),
        ("RLIMIT_DATA", 1 << 30, 1 << 31),
        ("RLIMIT_STACK", 8 << 20, 16 << 20),
        ("RLIMIT_RSS", 1 << 20, 1 << 20),
        ("RLIMIT_NPROC", 50, 100),
        ("RLIMIT_MEMLOCK", 65536, 65536),
        ("RLIMIT_AS", 1 << 32, 1 << 33),
        ("RLIMIT_LOCKS", 10, 20),
        ("RLIMIT_SIGPENDING", 100, 1000),
        ("RLIMIT_MSGQUEUE", 8192, 819200),
        ("RLIMIT_NICE", 0, 0),
        ("RLIMIT_RTPRIO", 0, 0),
        ("RLIMIT_RTTIME", 1000, 2000),
    ] {
        let name = format!(
            "rlimits/{}",
            ty.trim_start_matches("RLIMIT_").to_lowercase()
        );
        c.add(name, rl(json!([{"type": ty, "soft": soft, "hard": hard}])));
    }
    c.add(
        "rlimits/several",
        rl(json!([
            {"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200},
            {"type": "RLIMIT_NPROC", "soft": 30, "hard": 40},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 1024}
        ])),
    );
    c.set(
        "noNewPrivileges/false",
        &["process", "noNewPrivileges"],
        json!(false),
    );
    c.add("noNewPrivileges/unset", |v, _| {
        if let Some(p) = v["process"].as_object_mut() {
            p.remove("noNewPrivileges");
        }
    });
    for adj in [-1000i64, -1, 0, 1, 500, 1000] {
        c.set(
            &format!("oomScoreAdj/{adj}"),
            &["process", "oomScoreAdj"],
            json!(adj),
        );
    }
    for (name, rule) in [
        (
            "errno-default",
            json!({"names": ["getpriority"], "action": "SCMP_ACT_ERRNO"}),
        ),
        (
            "errno-33",
            json!({"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 33}),
        ),
        (
            "allow-listed",
            json!({"names": ["getpriority"], "action": "SCMP_ACT_ALLOW"}),
        ),
    ] {
        c.add(format!("seccomp/getpriority-{name}"), move |v, _| {
            *slot(v, &["linux", "seccomp"]) = json!({"defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64"], "syscalls": [rule.clone()]});
        });
    }
    c.set(
        "apparmor/profile",
        &["process", "apparmorProfile"],
        json!("casulo-test"),
    );
    c.set(
        "seccomp/allow-with-errno-rule",
        &["linux", "seccomp"],
        json!({"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["acct"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}),
    );
}

fn caps_cases(c: &mut Cases) {
    let caps = |set: Value| {
        move |v: &mut Value, _: &Path| *slot(v, &["process", "capabilities"]) = set.clone()
    };
    c.add("caps/empty", caps(json!({})));
    c.add("caps/empty-sets", caps(json!({"bounding": [], "effective": [], "permitted": [], "inheritable": [], "ambient": []})));
    c.add("caps/unset", |v, _| {
        if let Some(p) = v["process"].as_object_mut() {
            p.remove("capabilities");
        }
    });
    for cap in [
        "CAP_CHOWN",
        "CAP_NET_RAW",
        "CAP_SYS_ADMIN",
        "CAP_SYS_PTRACE",
        "CAP_MKNOD",
        "CAP_SETPCAP",
    ] {
        let s = json!([cap]);
        let name = format!(
            "caps/only-{}",
            cap.trim_start_matches("CAP_").to_lowercase()
        );
        c.add(
            name,
            caps(json!({"bounding": s, "effective": s, "permitted": s})),
        );
    }
    let all = json!(ALL_CAPS.as_slice());
    c.add(
        "caps/all",
        caps(json!({"bounding": all, "effective": all, "permitted": all})),
    );
    c.add("caps/all-bounding-only", caps(json!({"bounding": all})));
    let ka = json!(["CAP_KILL", "CAP_AUDIT_WRITE"]);
    c.add(
        "caps/bounding-wider-than-permitted",
        caps(json!({
        "bounding": ["CAP_KILL", "CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_FOWNER"],
        "effective": ka, "permitted": ka})),
    );
    c.add(
        "caps/inheritable",
        caps(json!({"bounding": ka, "effective": ka, "permitted": ka, "inheritable": ka})),
    );
    c.add("caps/ambient", caps(json!({"bounding": ka, "effective": ka, "permitted": ka, "inheritable": ka, "ambient": ka})));
    c.add(
        "caps/ambient-not-inheritable",
        caps(json!({"bounding": ka, "effective": ka, "permitted": ka, "ambient": ka})),
    );
    c.add("caps/nonroot-ambient", |v, _| {
        let ka = json!(["CAP_KILL", "CAP_NET_BIND_SERVICE"]);
        *slot(v, &["process", "capabilities"]) = json!({"bounding": ka, "effective": ka, "permitted": ka, "inheritable": ka, "ambient": ka});
        *slot(v, &["process", "user"]) = json!({"uid": 1000, "gid": 1000});
    });
    c.add("caps/nonroot-no-ambient", |v, _| {
        *slot(v, &["process", "user"]) = json!({"uid": 1000, "gid": 1000});
    });
    c.add("caps/nnp-false-inheritable", |v, _| {
        let ka = json!(["CAP_KILL"]);
        *slot(v, &["process", "capabilities"]) = json!({"bounding": ["CAP_KILL", "CAP_CHOWN"], "effective": ka, "permitted": ka, "inheritable": ka});
        *slot(v, &["process", "noNewPrivileges"]) = json!(false);
    });
}

fn linux_cases(c: &mut Cases) {
    for h in ["", "a", "host-with-dashes", "h.example.org"] {
        c.set(&format!("hostname/{h:?}"), &["hostname"], json!(h));
    }
    c.set("hostname/63-chars", &["hostname"], json!("h".repeat(63)));
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

fn mount_cases(c: &mut Cases) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_are_many_unique_and_valid() {
        let cases = cases();
        assert!(cases.len() >= 100, "{} cases", cases.len());
        let dir = std::env::temp_dir().join(format!("casulo-gen-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let base = crate::default_spec();
        for c in &cases {
            // Capability sets are hash sets in oci-spec: compare them sorted.
            let norm = |s: Spec| {
                let mut v = serde_json::to_value(s).unwrap();
                for set in v["process"]["capabilities"]
                    .as_object_mut()
                    .into_iter()
                    .flatten()
                {
                    if let Some(a) = set.1.as_array_mut() {
                        a.sort_by_key(|x| x.to_string());
                    }
                }
                v
            };
            let a = norm(c.apply(&base, &dir));
            let b = norm(c.apply(&base, &dir));
            assert_eq!(a, b, "{} is not deterministic", c.name);
        }
        std::fs::remove_dir_all(&dir).unwrap();
        let names: Vec<_> = super::cases().into_iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            cases.iter().map(|c| c.name.clone()).collect::<Vec<_>>()
        );
    }
}
