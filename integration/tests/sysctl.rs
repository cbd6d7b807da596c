//! `linux.sysctl` never reaches the host (issue 12.3, runc's rules): IPC sysctls need an
//! ipc namespace of the container's own, `net.*` a network namespace (new, or joined by
//! a path that is not the runtime's), `kernel.hostname`/`kernel.domainname` a uts
//! namespace, everything else is refused by name before anything is created. Every test
//! that could write a host sysctl reads it first and, should it ever change, restores it
//! and fails.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use casulo_integration::Bundle;
use common::{edit, is_root, Env};
use serde_json::{json, Value};

/// A host sysctl read before a test; restored (and the test failed) if it changed.
struct HostSysctl {
    path: PathBuf,
    before: String,
}

impl HostSysctl {
    fn new(key: &str) -> HostSysctl {
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        let before =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        HostSysctl { path, before }
    }
    /// A value other than the host's (so a write to the host would show).
    fn other_value(&self) -> String {
        let v = self.before.trim();
        match v.parse::<i64>() {
            Ok(0) => "1".into(),
            Ok(1)
                if self.path.ends_with("ip_forward") || self.path.ends_with("shm_rmid_forced") =>
            {
                "0".into()
            }
            Ok(n) => (n + 1).to_string(),
            Err(_) if self.path.ends_with("ping_group_range") => {
                if v.split_whitespace().eq(["100", "200"]) {
                    "300 400".into()
                } else {
                    "100 200".into()
                }
            }
            Err(_) => format!("casulo-sysctl-test-{}", std::process::id()),
        }
    }
    /// Restores a changed value; true when it had changed.
    fn restore(&self) -> bool {
        let now = std::fs::read_to_string(&self.path).unwrap_or_default();
        if now == self.before {
            return false;
        }
        let _ = std::fs::write(&self.path, self.before.trim_end_matches('\n'));
        true
    }
    fn assert_unchanged(&self) {
        assert!(
            !self.restore(),
            "the host's {} was written (restored to {:?})",
            self.path.display(),
            self.before
        );
    }
}

impl Drop for HostSysctl {
    fn drop(&mut self) {
        self.restore();
    }
}

fn set_namespaces(b: &mut Bundle, ns: Value) {
    edit(b, |v| v["linux"]["namespaces"] = ns);
}

/// The default namespaces without `drop`.
fn namespaces_without(drop: &str) -> Value {
    let all = ["pid", "network", "ipc", "uts", "mount", "cgroup"];
    Value::Array(
        all.iter()
            .filter(|t| **t != drop)
            .map(|t| json!({"type": t}))
            .collect(),
    )
}

/// Creates the bundle expecting a refusal naming `field`, on one line, leaving nothing.
fn assert_refused(env: &Env, b: &Bundle, field: &str) -> String {
    let r = env.create(b);
    assert_ne!(r.code, 0, "create must be refused: {r:?}");
    let err = r.stderr.trim();
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.contains(field), "names {field}: {err:?}");
    env.assert_nothing_left(b);
    err.to_string()
}

#[test]
fn sysctls_of_the_hosts_namespaces_are_refused_and_never_written() {
    if !is_root() {
        return;
    }
    let env = Env::new("sysctl-host");
    // (namespace missing from the config, sysctl, expected words)
    let cases = [
        ("network", "net.ipv4.ip_forward", "net namespace"),
        ("network", "net.core.somaxconn", "net namespace"),
        ("network", "net.ipv4.ping_group_range", "net namespace"),
        ("ipc", "fs.mqueue.queues_max", "ipc namespace"),
        ("ipc", "kernel.shm_rmid_forced", "ipc namespace"),
        ("ipc", "kernel.msgmax", "ipc namespace"),
        ("uts", "kernel.domainname", "uts namespace"),
        ("", "kernel.core_pattern", "not namespaced"),
        ("", "vm.overcommit_memory", "not namespaced"),
        ("", "fs.file-max", "not namespaced"),
    ];
    for (drop, key, words) in cases {
        let host = HostSysctl::new(key);
        let mut b = Bundle::new(&["true"]);
        if key == "kernel.domainname" {
            b.spec.set_hostname(None);
        }
        b.write_config();
        set_namespaces(&mut b, namespaces_without(drop));
        edit(&mut b, |v| {
            v["linux"]["sysctl"] = json!({ key: host.other_value() });
            if drop == "uts" {
                v.as_object_mut().unwrap().remove("hostname");
            }
        });
        let err = assert_refused(&env, &b, &format!("linux.sysctl.{key}"));
        assert!(err.contains(words), "{key}: {err}");
        host.assert_unchanged();
    }
}

#[test]
fn sysctl_keys_cannot_climb_out_of_their_namespaced_tree() {
    if !is_root() {
        return;
    }
    let env = Env::new("sysctl-climb");
    let host = HostSysctl::new("kernel.core_pattern");
    for key in [
        "net/../kernel/core_pattern",
        "net/ipv4/../../kernel/core_pattern",
        "fs/mqueue/../../kernel/core_pattern",
    ] {
        let mut b = Bundle::new(&["true"]);
        edit(&mut b, |v| {
            v["linux"]["sysctl"] = json!({ key: host.other_value() })
        });
        assert_refused(&env, &b, &format!("linux.sysctl.{key}"));
        host.assert_unchanged();
    }
}

/// A process in a network namespace of its own, made by the test.
struct NetnsHolder(Child);

impl NetnsHolder {
    fn new() -> NetnsHolder {
        let child = Command::new("unshare")
            .args(["--net", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare --net");
        let h = NetnsHolder(child);
        let me = std::fs::read_link("/proc/self/ns/net").unwrap();
        casulo_integration::cli::eventually(|| std::fs::read_link(h.path()).is_ok_and(|l| l != me));
        h
    }
    fn path(&self) -> String {
        format!("/proc/{}/ns/net", self.0.id())
    }
    fn read(&self, key: &str) -> String {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.path()))
            .args(["cat", &format!("/proc/sys/{}", key.replace('.', "/"))])
            .output()
            .expect("nsenter");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for NetnsHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn net_sysctls_go_to_a_joined_netns_unless_it_is_the_runtimes() {
    if !is_root() {
        return;
    }
    let env = Env::new("sysctl-join");
    let host = HostSysctl::new("net.core.somaxconn");
    let value = host.other_value();
    // The runtime's own network namespace, by path: refused.
    let test_own = format!("/proc/{}/ns/net", std::process::id());
    for path in ["/proc/self/ns/net", test_own.as_str()] {
        let mut b = Bundle::new(&["true"]);
        let mut ns = namespaces_without("network");
        ns.as_array_mut()
            .unwrap()
            .push(json!({"type": "network", "path": path}));
        set_namespaces(&mut b, ns);
        edit(&mut b, |v| {
            v["linux"]["sysctl"] = json!({ "net.core.somaxconn": value })
        });
        let err = assert_refused(&env, &b, "linux.sysctl.net.core.somaxconn");
        assert!(err.contains("net namespace"), "{err}");
        host.assert_unchanged();
    }
    // A namespace the test made: written there, not on the host.
    let holder = NetnsHolder::new();
    let mut b = Bundle::new(&["cat", "/proc/sys/net/core/somaxconn"]);
    let mut ns = namespaces_without("network");
    ns.as_array_mut()
        .unwrap()
        .push(json!({"type": "network", "path": holder.path()}));
    set_namespaces(&mut b, ns);
    edit(&mut b, |v| {
        v["linux"]["sysctl"] = json!({ "net.core.somaxconn": value })
    });
    let r = env.run_bundle(&b);
    host.assert_unchanged();
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout.trim(), value, "{r:?}");
    assert_eq!(holder.read("net.core.somaxconn"), value);
}

#[test]
fn namespaced_sysctls_are_set_in_the_containers_own_namespaces() {
    if !is_root() {
        return;
    }
    let env = Env::new("sysctl-own");
    let keys = [
        "net.ipv4.ip_forward",
        "net.core.somaxconn",
        "fs.mqueue.queues_max",
        "kernel.shm_rmid_forced",
        "kernel.domainname",
    ];
    let hosts: Vec<HostSysctl> = keys.iter().map(|k| HostSysctl::new(k)).collect();
    let script: String = keys
        .iter()
        .map(|k| format!("cat /proc/sys/{};", k.replace('.', "/")))
        .collect();
    let mut b = Bundle::new(&["sh", "-c", &script]);
    let want: Vec<String> = hosts.iter().map(HostSysctl::other_value).collect();
    edit(&mut b, |v| {
        let m: serde_json::Map<String, Value> = keys
            .iter()
            .zip(&want)
            .map(|(k, w)| (k.to_string(), json!(w)))
            .collect();
        v["linux"]["sysctl"] = Value::Object(m);
    });
    let r = env.run_bundle(&b);
    for h in &hosts {
        h.assert_unchanged();
    }
    assert_eq!(r.code, 0, "{r:?}");
    let got: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(got, want, "{r:?}");
}

#[test]
fn kernel_hostname_sysctl_may_not_contradict_hostname() {
    if !is_root() {
        return;
    }
    let env = Env::new("sysctl-hostname");
    let host = HostSysctl::new("kernel.hostname");
    let mut b = Bundle::new(&["hostname"]);
    edit(&mut b, |v| {
        v["linux"]["sysctl"] = json!({"kernel.hostname": "other"})
    });
    let err = assert_refused(&env, &b, "linux.sysctl.kernel.hostname");
    assert!(err.contains("conflicts with hostname"), "{err}");
    // The same value as the field, or no field: set in the container's uts namespace.
    edit(&mut b, |v| {
        v["linux"]["sysctl"] = json!({"kernel.hostname": "casulo"})
    });
    let r = env.run_bundle(&b);
    assert_eq!((r.code, r.stdout.trim()), (0, "casulo"), "{r:?}");
    host.assert_unchanged();
}

/// The namespaces dockerd 20.10 writes (../shared/reference/engine-config-docker.json):
/// mount, network, uts, pid, ipc; `--network host` / `--ipc host` drop one of them.
fn docker_namespaces_without(drop: &str) -> Value {
    let all = ["mount", "network", "uts", "pid", "ipc"];
    Value::Array(
        all.iter()
            .filter(|t| **t != drop)
            .map(|t| json!({"type": t}))
            .collect(),
    )
}

#[test]
fn docker_host_network_or_ipc_with_their_sysctls_is_refused() {
    if !is_root() {
        return;
    }
    let env = Env::new("sysctl-docker");
    // docker run --network host --sysctl net.ipv4.ip_forward=1: no network namespace,
    // and no default net sysctls (docker adds those only with a network namespace).
    let fwd = HostSysctl::new("net.ipv4.ip_forward");
    let mut b = Bundle::new(&["true"]);
    set_namespaces(&mut b, docker_namespaces_without("network"));
    edit(&mut b, |v| {
        v["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": fwd.other_value()})
    });
    assert_refused(&env, &b, "linux.sysctl.net.ipv4.ip_forward");
    fwd.assert_unchanged();
    // docker run --ipc host --sysctl kernel.shm_rmid_forced=0: docker's defaults for
    // its own network namespace, plus the IPC sysctl in the host's ipc namespace.
    let shm = HostSysctl::new("kernel.shm_rmid_forced");
    let mut b = Bundle::new(&["true"]);
    set_namespaces(&mut b, docker_namespaces_without("ipc"));
    edit(&mut b, |v| {
        v["linux"]["sysctl"] = json!({
            "net.ipv4.ip_unprivileged_port_start": "0",
            "net.ipv4.ping_group_range": "0 2147483647",
            "kernel.shm_rmid_forced": shm.other_value(),
        })
    });
    assert_refused(&env, &b, "linux.sysctl.kernel.shm_rmid_forced");
    shm.assert_unchanged();
    // docker's default config (its own network namespace) still runs, sysctls applied.
    let mut b = Bundle::new(&["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"]);
    set_namespaces(&mut b, docker_namespaces_without(""));
    edit(&mut b, |v| {
        v["linux"]["sysctl"] = json!({
            "net.ipv4.ip_unprivileged_port_start": "0",
            "net.ipv4.ping_group_range": "0 2147483647",
        })
    });
    let r = env.run_bundle(&b);
    assert_eq!((r.code, r.stdout.trim()), (0, "0"), "{r:?}");
}
