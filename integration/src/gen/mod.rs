//! A deterministic generator of configurations for conformance runs.
//!
//! Each [`GenCase`] starts from the bundle's spec (normally
//! [`default_spec`](crate::default_spec) with args `/checker /config.json`) and
//! changes one field, or a few related ones, to a set, unset or edge value.
//! The list is fixed: same names, same order, every run.

use std::path::Path;

use oci_spec::runtime::Spec;
use serde_json::{json, Value};

mod linux;
mod mounts;

use linux::linux_cases;
use mounts::mount_cases;

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

use crate::caps::CAPS as ALL_CAPS;

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
    for cwd in ["/tmp", "/bin", "/home/user", "/dev", "/proc", "/tmp/"] {
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
        "user/root-gid-nogroup",
        user(json!({"uid": 0, "gid": 65534})),
    );
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
