//! `linux.netDevices` (config-linux.md 1.3) in real containers. Everything happens in a
//! network namespace the test makes (`ip netns add casulo-it-<pid>`), holding veth
//! pairs (this kernel has no dummy driver); casulo runs there through
//! `nsenter --net=` (not `ip netns exec`, which remounts /sys and would hide the host's
//! cgroup mounts from the runtime). The host's own interfaces are never touched.

mod common;

use std::process::Command;

use casulo_integration::{casulo_bin, Bundle, Run};
use common::{edit, eventually, is_root, Env};
use serde_json::json;

/// The test's network namespace; deleted on drop (its veths go with it).
struct NetNs(String);

impl NetNs {
    fn new() -> Option<NetNs> {
        // One per test: the tests of this file may run at once.
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("casulo-it-{}-{n}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(std::process::Stdio::null())
            .status();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(NetNs(name))
    }
    fn ip(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("ip")
            .arg("-n")
            .arg(&self.0)
            .args(args)
            .output()
            .expect("ip");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
    fn ok(&self, args: &[&str]) -> String {
        let (ok, out) = self.ip(args);
        assert!(ok, "ip {args:?}");
        out
    }
    /// casulo in this namespace; stdout/stderr go to files (not pipes: a container left
    /// by `create` would hold a pipe open).
    fn casulo(&self, env: &Env, args: &[&str]) -> Run {
        let base = env.root.with_extension(format!("{}", args.len()));
        let (out_p, err_p) = (base.with_extension("out"), base.with_extension("err"));
        let status = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.0))
            .arg(casulo_bin())
            .arg("--root")
            .arg(&env.root)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&out_p).unwrap())
            .stderr(std::fs::File::create(&err_p).unwrap())
            .status()
            .expect("nsenter");
        let read = |p: &std::path::Path| {
            let s = std::fs::read_to_string(p).unwrap_or_default();
            let _ = std::fs::remove_file(p);
            s
        };
        Run {
            code: status.code().unwrap_or(-1),
            stdout: read(&out_p),
            stderr: read(&err_p),
        }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn prerequisites() -> Option<NetNs> {
    if !is_root() {
        return None;
    }
    let have = |t: &str| Command::new(t).arg("--version").output().is_ok();
    if !have("ip") || !have("nsenter") {
        casulo_integration::prereq::skip("ip (iproute2) or nsenter (util-linux) missing");
        return None;
    }
    let ns = NetNs::new().expect("ip netns add");
    Some(ns)
}

fn bundle(script: &str, devices: serde_json::Value) -> Bundle {
    let mut b = Bundle::new(&["sh", "-c", script]);
    edit(&mut b, |v| v["linux"]["netDevices"] = devices);
    b
}

#[test]
fn devices_move_renamed_up_with_their_permanent_global_addresses() {
    let Some(ns) = prerequisites() else { return };
    let env = Env::new("netdev");
    ns.ok(&["link", "add", "ct0", "type", "veth", "peer", "name", "ct1"]);
    ns.ok(&["addr", "add", "10.77.0.1/24", "dev", "ct0"]);
    ns.ok(&["addr", "add", "fd00:77::1/64", "dev", "ct0", "nodad"]);
    ns.ok(&["addr", "add", "10.78.0.1/16", "scope", "link", "dev", "ct0"]);
    let b = bundle(
        "cat /sys/class/net/eth9/flags; busybox ip -o addr show dev eth9; ls /sys/class/net",
        json!({"ct0": {"name": "eth9"}}),
    );
    let r = ns.casulo(&env, &["run", "--bundle", b.dir.to_str().unwrap(), &b.id()]);
    assert_eq!(r.code, 0, "{r:?}");
    let flags = u32::from_str_radix(
        r.stdout.lines().next().unwrap().trim_start_matches("0x"),
        16,
    )
    .unwrap();
    assert_eq!(flags & 1, 1, "eth9 is up inside: {r:?}");
    assert!(r.stdout.contains("inet 10.77.0.1/24"), "{r:?}");
    assert!(r.stdout.contains("inet6 fd00:77::1/64"), "{r:?}");
    assert!(
        !r.stdout.contains("10.78.0.1"),
        "a link-scope address is not kept: {r:?}"
    );
    assert!(!r.stdout.contains("ct0"), "renamed: {r:?}");
    // Moved, not copied; and never moved back: the container's namespace is gone, and
    // with it the veth (a virtual device is destroyed, its peer too).
    let links = ns.ok(&["-o", "link", "show"]);
    assert!(!links.contains("ct0") && !links.contains("eth9"), "{links}");
    // The namespace's teardown (destroying the veth and so its peer) is the kernel's
    // asynchronous cleanup work: wait for it.
    assert!(
        eventually(|| !ns.ok(&["-o", "link", "show"]).contains("ct1")),
        "the peer goes with the moved veth"
    );
    env.assert_nothing_left(&b);
}

#[test]
fn template_names_are_numbered_by_the_kernel() {
    let Some(ns) = prerequisites() else { return };
    let env = Env::new("netdev-tpl");
    ns.ok(&["link", "add", "ct2", "type", "veth", "peer", "name", "ct3"]);
    let b = bundle(
        "ls /sys/class/net",
        json!({"ct2": {"name": "net%d"}, "ct3": {"name": "net%d"}}),
    );
    let r = ns.casulo(&env, &["run", "--bundle", b.dir.to_str().unwrap(), &b.id()]);
    assert_eq!(r.code, 0, "{r:?}");
    let names: Vec<&str> = r.stdout.split_whitespace().collect();
    assert!(names.contains(&"net0") && names.contains(&"net1"), "{r:?}");
    // Kept under its own name without `name`.
    ns.ok(&["link", "add", "ct4", "type", "veth", "peer", "name", "ct5"]);
    let b = bundle("ls /sys/class/net", json!({"ct4": {}}));
    let r = ns.casulo(&env, &["run", "--bundle", b.dir.to_str().unwrap(), &b.id()]);
    assert!(
        r.code == 0 && r.stdout.split_whitespace().any(|n| n == "ct4"),
        "{r:?}"
    );
}

#[test]
fn missing_device_clash_and_no_network_namespace_are_refused() {
    let Some(ns) = prerequisites() else { return };
    let env = Env::new("netdev-bad");
    ns.ok(&["link", "add", "ct6", "type", "veth", "peer", "name", "ct7"]);
    let cases: Vec<(serde_json::Value, bool, &str)> = vec![
        (
            json!({"nope0": {}}),
            true,
            "linux.netDevices.nope0: no such network device",
        ),
        (
            json!({"ct6": {"name": "lo"}}),
            true,
            "linux.netDevices.ct6.name",
        ),
        (
            json!({"ct6": {"name": "same"}, "ct7": {"name": "same"}}),
            true,
            "already exists in the container's network namespace",
        ),
        (
            json!({"ct6": {"name": "a/b"}}),
            true,
            "linux.netDevices.ct6.name",
        ),
        (
            json!({"ct6": {}}),
            false,
            "linux.netDevices: moving devices needs a new network namespace",
        ),
    ];
    for (devices, new_netns, text) in cases {
        let mut b = bundle("true", devices.clone());
        if !new_netns {
            edit(&mut b, |v| {
                let nss = v["linux"]["namespaces"].as_array_mut().unwrap();
                nss.retain(|n| n["type"] != "network");
            });
        }
        let r = ns.casulo(
            &env,
            &["create", "--bundle", b.dir.to_str().unwrap(), &b.id()],
        );
        assert_ne!(r.code, 0, "{devices}: {r:?}");
        assert!(r.stderr.contains(text), "{devices}: {r:?}");
        assert_eq!(r.stderr.trim().lines().count(), 1, "{r:?}");
        env.assert_nothing_left(&b);
    }
    // Nothing was moved by the refusals.
    let links = ns.ok(&["-o", "link", "show"]);
    assert!(links.contains("ct6") && links.contains("ct7"), "{links}");
}
