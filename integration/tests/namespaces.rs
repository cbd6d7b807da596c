//! Issue 13 classes 2 and 3. Namespaces not listed are inherited (config-linux.md), the
//! mount namespace included: the container then runs in the runtime's namespaces and is
//! chrooted into its rootfs; without mounts in the config nothing is mounted, with them
//! they are made under the rootfs only, as runc does, and `delete` removes them (casulo
//! itself runs inside `unshare -m --propagation private` here, so even a broken runtime
//! cannot touch the host's mount table; that namespace's and the host's mountinfo are
//! compared before and after). A uts namespace joined by path is the container's own:
//! `hostname` is set there (never in the runtime's).

mod common;

use std::process::{Child, Command, Stdio};

use casulo_integration::{casulo_bin, Bundle};
use common::{edit, is_root, Env};
use serde_json::json;

/// Strips everything that needs a mount namespace and lists no namespace at all.
fn inherit_everything(b: &mut Bundle) {
    edit(b, |v| {
        let o = v.as_object_mut().unwrap();
        o.remove("hostname");
        o.remove("mounts");
        v["root"]["readonly"] = json!(false);
        let l = v["linux"].as_object_mut().unwrap();
        l.insert("namespaces".into(), json!([]));
        l.remove("maskedPaths");
        l.remove("readonlyPaths");
    });
}

/// Lists no namespace and leaves out `hostname` (which needs a uts namespace), keeping
/// the default config's mounts, masked and readonly paths and read-only root.
fn no_namespaces(v: &mut serde_json::Value) {
    v.as_object_mut().unwrap().remove("hostname");
    v["linux"]["namespaces"] = json!([]);
}

/// Runs `script` (sh) in a new private mount namespace with `$CASULO`, `$ROOT`,
/// `$BUNDLE`, `$ID` set; returns (exit code, stdout, stderr).
fn in_private_mount_ns(env: &Env, b: &Bundle, script: &str) -> (i32, String, String) {
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script])
        .env("CASULO", casulo_bin())
        .env("ROOT", &env.root)
        .env("BUNDLE", &b.dir)
        .env("ID", b.id())
        .stdin(Stdio::null())
        .output()
        .expect("unshare -m");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn host_mountinfo() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap()
}

/// Runs `script` (which creates the container) in a private mount namespace, then saves
/// that namespace's mountinfo as `mi.created`, starts the container, waits until it
/// stopped, deletes it and saves `mi.after`. Asserts that all of it succeeded and that the
/// test's own mount table did not change; returns the standard output.
fn run_to_delete(env: &Env, b: &Bundle, script: &str) -> String {
    let host_before = host_mountinfo();
    let script = format!(
        "{script}{}",
        r#"
        cat /proc/self/mountinfo > "$BUNDLE/mi.created"
        "$CASULO" --root "$ROOT" start "$ID"
        i=0
        while [ $i -lt 500 ] && ! "$CASULO" --root "$ROOT" state "$ID" | grep -q '"stopped"'; do
            sleep 0.02; i=$((i+1))
        done
        "$CASULO" --root "$ROOT" delete "$ID"
        cat /proc/self/mountinfo > "$BUNDLE/mi.after"
    "#
    );
    let (code, out, err) = in_private_mount_ns(env, b, &script);
    assert_eq!(
        host_mountinfo(),
        host_before,
        "the host's mount table changed"
    );
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    out
}

#[test]
fn empty_namespace_list_runs_in_the_runtimes_namespaces_without_mounting() {
    if !is_root() {
        return;
    }
    let env = Env::new("ns-inherit");
    let mut b = Bundle::new(&["sh", "-c", "ls /; echo container-done"]);
    inherit_everything(&mut b);
    let script = r#"
        set -e
        cat /proc/self/mountinfo > "$BUNDLE/mi.before"
        "$CASULO" --root "$ROOT" create --bundle "$BUNDLE" --pid-file "$BUNDLE/pid" "$ID"
        pid=$(cat "$BUNDLE/pid")
        for n in mnt net ipc uts pid cgroup user; do
            [ "$(readlink /proc/$pid/ns/$n)" = "$(readlink /proc/self/ns/$n)" ] || echo "new-ns $n"
        done
        [ "$(stat -L -c %d:%i /proc/$pid/root)" = "$(stat -c %d:%i "$BUNDLE/rootfs")" ] && echo "root-is-rootfs"
    "#;
    let out = run_to_delete(&env, &b, script);
    assert!(
        !out.contains("new-ns"),
        "namespaces are the runtime's: {out}"
    );
    assert!(out.contains("root-is-rootfs"), "{out}");
    // The container saw its rootfs as / (the checker is there; the host has none).
    assert!(
        out.contains("checker") && out.contains("container-done"),
        "{out}"
    );
    let read = |n: &str| std::fs::read_to_string(b.dir.join(n)).unwrap();
    assert_eq!(read("mi.created"), read("mi.before"), "nothing mounted");
    assert_eq!(read("mi.after"), read("mi.before"), "nothing mounted");
}

/// The mount points (field 5) of the lines of `after` that are not in `before`.
fn new_mount_points(before: &str, after: &str) -> Vec<String> {
    let old: std::collections::HashSet<&str> = before.lines().collect();
    after
        .lines()
        .filter(|l| !old.contains(l))
        .map(|l| l.split(' ').nth(4).unwrap_or_default().to_string())
        .collect()
}

#[test]
fn empty_namespace_list_mounts_under_the_rootfs_only_and_delete_removes_them() {
    if !is_root() {
        return;
    }
    let env = Env::new("ns-inherit-mounts");
    // The default config's mounts, masked and readonly paths, devices and read-only
    // root, with no namespace listed (no hostname: that needs a uts namespace), plus a
    // bind of a *shared* mount with a masked directory inside it: had the bind joined
    // the source's peer group, the mask would show up in the source.
    let mut b = Bundle::new(&["/checker", "/config.json"]);
    let src = b.dir.join("shared");
    edit(&mut b, |v| {
        no_namespaces(v);
        v["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/mnt/shared", "type": "bind", "source": src,
            "options": ["rbind", "rw"]
        }));
        v["linux"]["maskedPaths"]
            .as_array_mut()
            .unwrap()
            .push(json!("/mnt/shared/sub"));
    });
    let script = r#"
        set -e
        mkdir -p "$BUNDLE/shared/sub" "$BUNDLE/rootfs/mnt/shared"
        mount --bind "$BUNDLE/shared" "$BUNDLE/shared"
        mount --make-shared "$BUNDLE/shared"
        cat /proc/self/mountinfo > "$BUNDLE/mi.before"
        "$CASULO" --root "$ROOT" create --bundle "$BUNDLE" "$ID"
    "#;
    let out = run_to_delete(&env, &b, script);
    // From inside: the checker verified the mounts, masked and readonly paths, devices
    // and the read-only root of the config.
    let tap = casulo_integration::parse_tap(&out);
    assert!(
        tap.failed == 0 && tap.per_section.contains_key("Masked Paths"),
        "{:?}\n{out}",
        tap.failures
    );
    // From the runtime's mount namespace: every new mount is under the rootfs.
    let read = |n: &str| std::fs::read_to_string(b.dir.join(n)).unwrap();
    let rootfs = format!("{}/rootfs", b.dir.display());
    let made = new_mount_points(&read("mi.before"), &read("mi.created"));
    for want in ["/proc", "/dev", "/sys", "/mnt/shared", "/mnt/shared/sub"] {
        assert!(
            made.contains(&format!("{rootfs}{want}")),
            "{want}: {made:?}"
        );
    }
    assert!(
        made.iter()
            .all(|m| m.starts_with(&format!("{rootfs}/")) || *m == rootfs),
        "mounted outside the rootfs: {made:?}"
    );
    // And delete removed all of them.
    assert_eq!(
        read("mi.after"),
        read("mi.before"),
        "mounts left after delete"
    );
}

#[test]
fn empty_namespace_list_with_a_failing_mount_leaves_nothing_mounted() {
    if !is_root() {
        return;
    }
    let env = Env::new("ns-inherit-fail");
    let mut b = Bundle::new(&["true"]);
    edit(&mut b, |v| {
        no_namespaces(v);
        v["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/mnt", "type": "no-such-fs", "source": "none"}));
    });
    let script = r#"
        cat /proc/self/mountinfo > "$BUNDLE/mi.before"
        "$CASULO" --root "$ROOT" create --bundle "$BUNDLE" "$ID"
        echo "create=$?"
        cat /proc/self/mountinfo > "$BUNDLE/mi.after"
    "#;
    let (_, out, err) = in_private_mount_ns(&env, &b, script);
    assert!(out.contains("create=1"), "{out} {err}");
    assert!(err.contains("mounts["), "{err}");
    let read = |n: &str| std::fs::read_to_string(b.dir.join(n)).unwrap();
    assert_eq!(
        read("mi.after"),
        read("mi.before"),
        "mounts left after a failed create"
    );
    env.assert_nothing_left(&b);
}

#[test]
fn empty_namespace_list_force_delete_of_a_running_container_removes_its_mounts() {
    if !is_root() {
        return;
    }
    let env = Env::new("ns-inherit-force");
    let mut b = Bundle::new(&["sleep", "100"]);
    edit(&mut b, no_namespaces);
    let script = r#"
        set -e
        cat /proc/self/mountinfo > "$BUNDLE/mi.before"
        "$CASULO" --root "$ROOT" create --bundle "$BUNDLE" "$ID"
        "$CASULO" --root "$ROOT" start "$ID"
        grep -c " $BUNDLE/rootfs" /proc/self/mountinfo
        "$CASULO" --root "$ROOT" delete --force "$ID"
        cat /proc/self/mountinfo > "$BUNDLE/mi.after"
    "#;
    let host_before = host_mountinfo();
    let (code, out, err) = in_private_mount_ns(&env, &b, script);
    assert_eq!(
        host_mountinfo(),
        host_before,
        "the host's mount table changed"
    );
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(
        out.trim().parse::<u32>().unwrap_or(0) > 5,
        "mounted while running: {out}"
    );
    let read = |n: &str| std::fs::read_to_string(b.dir.join(n)).unwrap();
    assert_eq!(
        read("mi.after"),
        read("mi.before"),
        "mounts left after delete --force"
    );
    env.assert_nothing_left(&b);
}

/// Makes a config need a mount namespace.
type Breaker = fn(&mut serde_json::Value);

/// A new user namespace (no mount namespace): it could not mount in the runtime's.
fn new_userns(v: &mut serde_json::Value) {
    v["linux"]["namespaces"] = json!([{"type": "user"}]);
    v["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    v["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
}

#[test]
fn without_a_mount_namespace_fields_that_need_one_are_refused_by_name() {
    if !is_root() {
        return;
    }
    let env = Env::new("ns-inherit-refuse");
    let host_before = host_mountinfo();
    let cases: [(&str, Breaker); 6] = [
        (
            "mounts",
            |v| v["mounts"] = json!([{"destination": "/proc", "type": "proc", "source": "proc"}]),
        ),
        ("linux.maskedPaths", |v| {
            v["linux"]["maskedPaths"] = json!(["/proc/kcore"])
        }),
        ("linux.readonlyPaths", |v| {
            v["linux"]["readonlyPaths"] = json!(["/proc/sys"])
        }),
        ("root.readonly", |v| v["root"]["readonly"] = json!(true)),
        ("hostname", |v| v["hostname"] = json!("other")),
        ("process.terminal", |v| {
            v["process"]["terminal"] = json!(true)
        }),
    ];
    for (field, f) in cases {
        let mut b = Bundle::new(&["true"]);
        inherit_everything(&mut b);
        edit(&mut b, f);
        // Mounts are made without a mount namespace, but not from a new user namespace.
        if !matches!(field, "hostname" | "process.terminal") {
            edit(&mut b, new_userns);
        }
        let (code, out, err) = in_private_mount_ns(
            &env,
            &b,
            r#"exec "$CASULO" --root "$ROOT" create --bundle "$BUNDLE" "$ID""#,
        );
        assert_ne!(code, 0, "{field}: {out} {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains(&format!("config.json: {field}:")),
            "{field}: {err}"
        );
        env.assert_nothing_left(&b);
    }
    assert_eq!(
        host_mountinfo(),
        host_before,
        "the host's mount table changed"
    );
}

/// A process in a uts namespace of its own, made by the test.
struct UtsHolder(Child);

impl UtsHolder {
    fn new() -> UtsHolder {
        let child = Command::new("unshare")
            .args(["--uts", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare --uts");
        let h = UtsHolder(child);
        let me = std::fs::read_link("/proc/self/ns/uts").unwrap();
        casulo_integration::cli::eventually(|| std::fs::read_link(h.path()).is_ok_and(|l| l != me));
        h
    }
    fn path(&self) -> String {
        format!("/proc/{}/ns/uts", self.0.id())
    }
    fn hostname(&self) -> String {
        let out = Command::new("nsenter")
            .arg(format!("--uts={}", self.path()))
            .arg("hostname")
            .output()
            .expect("nsenter");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for UtsHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The host's hostname and domainname; restored (and the test failed) if changed.
struct HostUts([String; 2]);

const UTS_FILES: [&str; 2] = ["/proc/sys/kernel/hostname", "/proc/sys/kernel/domainname"];

impl HostUts {
    fn new() -> HostUts {
        HostUts(UTS_FILES.map(|f| std::fs::read_to_string(f).unwrap()))
    }
    fn restore(&self) -> bool {
        let mut changed = false;
        for (f, before) in UTS_FILES.iter().zip(&self.0) {
            if std::fs::read_to_string(f).unwrap_or_default() != *before {
                let _ = std::fs::write(f, before.trim_end());
                changed = true;
            }
        }
        changed
    }
    fn assert_unchanged(&self) {
        assert!(
            !self.restore(),
            "the host's hostname/domainname changed (restored)"
        );
    }
}

impl Drop for HostUts {
    fn drop(&mut self) {
        self.restore();
    }
}

fn join_uts(b: &mut Bundle, path: &str, hostname: &str) {
    let path = path.to_string();
    let hostname = hostname.to_string();
    edit(b, move |v| {
        let ns = v["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "uts");
        ns.push(json!({"type": "uts", "path": path}));
        v["hostname"] = json!(hostname);
        v["domainname"] = json!(format!("{hostname}.dom"));
    });
}

#[test]
fn hostname_is_set_in_a_uts_namespace_joined_by_path() {
    if !is_root() {
        return;
    }
    let env = Env::new("ns-uts-join");
    let host = HostUts::new();
    let holder = UtsHolder::new();
    let mut b = Bundle::new(&["sh", "-c", "hostname; cat /proc/sys/kernel/domainname"]);
    join_uts(&mut b, &holder.path(), "joined-uts");
    let r = env.run_bundle(&b);
    host.assert_unchanged();
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "joined-uts\njoined-uts.dom\n", "{r:?}");
    assert_eq!(
        holder.hostname(),
        "joined-uts",
        "set in the joined namespace"
    );
    // The runtime's own uts namespace, by path, is the host's: refused.
    let mut b = Bundle::new(&["true"]);
    let own = format!("/proc/{}/ns/uts", std::process::id());
    join_uts(&mut b, &own, "not-on-the-host");
    let r = env.create(&b);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("config.json: hostname:"), "{r:?}");
    env.assert_nothing_left(&b);
    host.assert_unchanged();
}
