//! Mount options beyond mount(2)'s flags (config.md "Mounts"): the recursive attributes
//! (`rro`, `rnosuid`, … applied with mount_setattr(AT_RECURSIVE) to a bind and every
//! mount below it), `nosymfollow`, idmapped bind mounts (`uidMappings`/`gidMappings`,
//! `idmap`, `ridmap`), `tmpcopyup`, and the mount/device corner cases of runtime-tools
//! (a dangling-symlink destination, a bind source only the runtime can reach, a device
//! outside /dev). Each host directory with a submount is made inside a private mount
//! namespace the test creates (`unshare -m --propagation private`), with casulo run in
//! it, so the host's mount table is never touched.

mod common;

use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use casulo_integration::{casulo_bin, checker_path, Bundle, Run};
use common::{edit, is_root, Env};
use serde_json::{json, Value};

/// Runs `setup`, then `casulo run` of the bundle, then `after` (its output follows the
/// container's), all in one private mount namespace; the container is deleted after.
fn run_private(env: &Env, b: &Bundle, setup: &str, after: &str) -> Run {
    let script = format!("set -e; {setup}\nset +e; \"$@\"; rc=$?; {after}\nexit $rc");
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script, "sh"])
        .arg(casulo_bin())
        .arg("--root")
        .arg(&env.root)
        .args(["run", "--bundle", b.dir.to_str().unwrap(), &b.id()])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("spawn unshare");
    let _ = env.run(&["delete", "--force", &b.id()]);
    Run::from(out)
}

/// The mountinfo options (field 6) of `dest` in `out` (lines of /proc/self/mountinfo).
fn opts_of(out: &str, dest: &str) -> Vec<String> {
    let line = out
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some(dest))
        .unwrap_or_else(|| panic!("{dest} in the mountinfo of:\n{out}"));
    line.split_whitespace()
        .nth(5)
        .unwrap()
        .split(',')
        .map(String::from)
        .collect()
}

/// The value after `key ` on the line starting with it (`W /data/sub <text>`).
fn probe<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} ")))
        .unwrap_or_else(|| panic!("{key} in:\n{out}"))
}

/// A host dir `<bundle>/host` made a tmpfs with a tmpfs submount `sub` (in the private
/// namespace), each holding `f`, a setuid-root checker, a null device node and a
/// symlink `link -> f`; `remount` then applies mount options to both.
fn populated(b: &Bundle, remount: &str) -> String {
    let h = b.dir.join("host");
    std::fs::create_dir_all(&h).unwrap();
    let h = h.display();
    let checker = checker_path();
    let remount = if remount.is_empty() {
        String::new()
    } else {
        format!("mount -o remount,bind,{remount} {h}; mount -o remount,bind,{remount} {h}/sub")
    };
    format!(
        "mount -t tmpfs -o mode=1777 top {h}; mkdir {h}/sub; mount -t tmpfs -o mode=1777 sub {h}/sub
         for d in {h} {h}/sub; do echo data > $d/f; cp {} $d/checker; chmod 4755 $d/checker
           mknod -m 666 $d/null c 1 3; ln -s f $d/link; done
         {remount}",
        checker.display()
    )
}

/// In the container (as user 1000): one line per check and directory, then mountinfo.
const BEHAVIOUR: &str = "for d in /data /data/sub; do \
    echo \"W $d $(touch $d/new 2>&1 && echo ok)\"; \
    echo \"D $d $(cat $d/null 2>&1 && echo ok)\"; \
    echo \"X $d $($d/checker --ids 2>&1 | grep -v Gid: | tr '\\t' ' ')\"; \
    echo \"L $d $(cat $d/link 2>&1)\"; done; \
    grep -E ' /data(/sub)? ' /proc/self/mountinfo";

fn attrs_bundle(env: &Env, options: &[&str]) -> Bundle {
    let mut b = Bundle::new(&["sh", "-c", BEHAVIOUR]);
    let src = b.dir.join("host");
    edit(&mut b, |v| {
        v["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/data", "type": "bind", "source": src, "options": options
        }));
        v["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        v["process"]["noNewPrivileges"] = json!(false);
    });
    let _ = env;
    b
}

#[test]
fn recursive_attributes_reach_every_submount() {
    if !is_root() {
        return;
    }
    let env = Env::new("rattrs");
    // Control: a plain rbind: writable, devices, exec, setuid, symlinks all work.
    let b = attrs_bundle(&env, &["rbind"]);
    let r = run_private(&env, &b, &populated(&b, ""), "");
    assert_eq!(r.code, 0, "{r:?}");
    for d in ["/data", "/data/sub"] {
        assert_eq!(probe(&r.stdout, &format!("W {d}")), "ok", "{r:?}");
        assert_eq!(probe(&r.stdout, &format!("D {d}")), "ok", "{r:?}");
        assert!(
            probe(&r.stdout, &format!("X {d}")).starts_with("Uid: 1000 0 0 0"),
            "setuid root works without rnosuid: {r:?}"
        );
        assert_eq!(probe(&r.stdout, &format!("L {d}")), "data", "{r:?}");
    }

    let b = attrs_bundle(
        &env,
        &[
            "rbind",
            "rro",
            "rnodev",
            "rnoexec",
            "rnosymfollow",
            "rnoatime",
            "rnodiratime",
        ],
    );
    let r = run_private(&env, &b, &populated(&b, ""), "");
    assert_eq!(r.code, 0, "{r:?}");
    for d in ["/data", "/data/sub"] {
        let o = opts_of(&r.stdout, d);
        for want in [
            "ro",
            "nodev",
            "noexec",
            "nosymfollow",
            "noatime",
            "nodiratime",
        ] {
            assert!(o.contains(&want.to_string()), "{d} {want}: {o:?}\n{r:?}");
        }
        assert!(
            probe(&r.stdout, &format!("W {d}")).contains("Read-only file system"),
            "{d}: {r:?}"
        );
        assert!(
            probe(&r.stdout, &format!("D {d}")).contains("Permission denied"),
            "{d}: {r:?}"
        );
        assert!(
            probe(&r.stdout, &format!("X {d}")).contains("Permission denied"),
            "{d}: {r:?}"
        );
        assert_ne!(probe(&r.stdout, &format!("L {d}")), "data", "{d}: {r:?}");
    }

    let b = attrs_bundle(&env, &["rbind", "rnosuid"]);
    let r = run_private(&env, &b, &populated(&b, ""), "");
    assert_eq!(r.code, 0, "{r:?}");
    for d in ["/data", "/data/sub"] {
        assert!(opts_of(&r.stdout, d).contains(&"nosuid".into()), "{r:?}");
        assert!(
            probe(&r.stdout, &format!("X {d}")).starts_with("Uid: 1000 1000 1000 1000"),
            "{d}: the setuid bit gives nothing: {r:?}"
        );
    }
}

#[test]
fn recursive_clearing_attributes_and_plain_nosymfollow() {
    if !is_root() {
        return;
    }
    let env = Env::new("rclear");
    let locked = "ro,nosuid,nodev,noexec,nosymfollow,noatime,nodiratime";
    let b = attrs_bundle(
        &env,
        &[
            "rbind",
            "rrw",
            "rsuid",
            "rdev",
            "rexec",
            "rsymfollow",
            "rdiratime",
            "rstrictatime",
        ],
    );
    let r = run_private(&env, &b, &populated(&b, locked), "");
    assert_eq!(r.code, 0, "{r:?}");
    for d in ["/data", "/data/sub"] {
        let o = opts_of(&r.stdout, d);
        for gone in [
            "ro",
            "nosuid",
            "nodev",
            "noexec",
            "nosymfollow",
            "noatime",
            "nodiratime",
            "relatime",
        ] {
            assert!(!o.contains(&gone.to_string()), "{d} {gone}: {o:?}\n{r:?}");
        }
        assert_eq!(probe(&r.stdout, &format!("W {d}")), "ok", "{r:?}");
        assert_eq!(probe(&r.stdout, &format!("D {d}")), "ok", "{r:?}");
        assert!(
            probe(&r.stdout, &format!("X {d}")).starts_with("Uid: 1000 0 0 0"),
            "{r:?}"
        );
        assert_eq!(probe(&r.stdout, &format!("L {d}")), "data", "{r:?}");
    }
    // `ratime` on noatime mounts goes back to the default (relatime); plain
    // `nosymfollow` is for the top mount only.
    let b = attrs_bundle(&env, &["rbind", "ratime", "nosymfollow"]);
    let r = run_private(&env, &b, &populated(&b, "noatime"), "");
    assert_eq!(r.code, 0, "{r:?}");
    for d in ["/data", "/data/sub"] {
        let o = opts_of(&r.stdout, d);
        assert!(
            o.contains(&"relatime".into()) && !o.contains(&"noatime".into()),
            "{o:?}"
        );
    }
    assert!(
        opts_of(&r.stdout, "/data").contains(&"nosymfollow".into()),
        "{r:?}"
    );
    assert!(
        !opts_of(&r.stdout, "/data/sub").contains(&"nosymfollow".into()),
        "{r:?}"
    );
    assert_ne!(probe(&r.stdout, "L /data"), "data", "{r:?}");
    assert_eq!(probe(&r.stdout, "L /data/sub"), "data", "{r:?}");

    let f = env.ok(&["features"]);
    let v: Value = serde_json::from_str(&f.stdout).unwrap();
    let listed: Vec<String> = serde_json::from_value(v["mountOptions"].clone()).unwrap();
    for o in [
        "rro",
        "rrw",
        "rnosuid",
        "rsuid",
        "rnodev",
        "rdev",
        "rnoexec",
        "rexec",
        "rnodiratime",
        "rdiratime",
        "rrelatime",
        "rnorelatime",
        "rnoatime",
        "ratime",
        "rstrictatime",
        "rnostrictatime",
        "rnosymfollow",
        "rsymfollow",
        "nosymfollow",
        "tmpcopyup",
    ] {
        assert!(
            listed.contains(&o.to_string()),
            "features.mountOptions lacks {o}"
        );
    }
    assert_eq!(
        v["linux"]["mountExtensions"]["idmap"]["enabled"],
        json!(true)
    );
}

fn userns(v: &mut Value) {
    v["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    v["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    v["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
}

/// A container in a user namespace (0→100000) with `/data` an idmapped rbind of a host
/// directory owned by 0 that has a tmpfs submount.
fn idmap_case(env: &Env, options: &[&str], mappings: bool) -> (Run, std::path::PathBuf) {
    let probe = "stat -c '%n %u:%g' /data/f /data/sub/f; touch /data/new /data/sub/new2 2>&1; \
                 stat -c '%n %u:%g' /data/new; true";
    let mut b = Bundle::new(&["sh", "-c", probe]);
    let host = b.dir.join("idhost");
    // In a user namespace the container's root cannot make mount points in the
    // host-owned rootfs.
    std::fs::create_dir(b.rootfs().join("data")).unwrap();
    std::fs::create_dir_all(host.join("sub")).unwrap();
    std::fs::write(host.join("f"), "x").unwrap();
    edit(&mut b, |v| {
        userns(v);
        let mut m =
            json!({"destination": "/data", "type": "bind", "source": host, "options": options});
        if mappings {
            m["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            m["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        }
        v["mounts"].as_array_mut().unwrap().push(m);
    });
    let h = host.display();
    let setup = format!("mount -t tmpfs -o mode=755 sub {h}/sub; echo y > {h}/sub/f");
    let after = format!("stat -c 'host %n %u:%g' {h}/sub/new2 2>&1");
    let r = run_private(env, &b, &setup, &after);
    let owner = std::fs::metadata(host.join("new")).map(|m| (m.uid(), m.gid()));
    let mut r = r;
    r.stdout.push_str(&format!("\nhost new {owner:?}\n"));
    (r, b.dir.clone())
}

#[test]
fn idmapped_bind_mounts() {
    if !is_root() {
        return;
    }
    let env = Env::new("idmap");
    // Without an idmap the container's root does not own the host's files.
    let (r, _) = idmap_case(&env, &["rbind"], false);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("/data/f 65534:65534"), "{r:?}");

    // idmap (top mount only), with the mount's own mappings.
    let (r, _) = idmap_case(&env, &["rbind", "idmap"], true);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("/data/f 0:0"),
        "owned by the container's root: {r:?}"
    );
    assert!(
        r.stdout.contains("/data/sub/f 65534:65534"),
        "submount not idmapped: {r:?}"
    );
    assert!(r.stdout.contains("/data/new 0:0"), "{r:?}");
    assert!(
        r.stdout.contains("host new Ok((0, 0))"),
        "created as host uid 0: {r:?}"
    );

    // ridmap: every mount of the tree; the mappings default to the container's.
    let (r, dir) = idmap_case(&env, &["rbind", "ridmap"], false);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("/data/f 0:0"), "{r:?}");
    assert!(
        r.stdout.contains("/data/sub/f 0:0"),
        "submount idmapped: {r:?}"
    );
    let host_sub = format!("host {}/idhost/sub/new2 0:0", dir.display());
    assert!(r.stdout.contains(&host_sub), "{host_sub}: {r:?}");
    assert!(r.stdout.contains("host new Ok((0, 0))"), "{r:?}");

    // Refusals, by field, before anything exists.
    let refused = |f: &dyn Fn(&mut Value), want: &str| {
        let mut b = Bundle::new(&["true"]);
        edit(&mut b, |v| f(v));
        let r = env.create(&b);
        assert_ne!(r.code, 0, "{r:?}");
        assert!(r.stderr.contains(want), "{want}: {r:?}");
        assert_eq!(r.stderr.trim().lines().count(), 1, "{r:?}");
        env.assert_nothing_left(&b);
    };
    refused(
        &|v| {
            v["mounts"].as_array_mut().unwrap().push(
                json!({"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": ["idmap"]}),
            )
        },
        "mounts[7].options: idmapped mounts are implemented for bind mounts only",
    );
    refused(
        &|v| {
            v["mounts"].as_array_mut().unwrap().push(
                json!({"destination": "/t", "type": "bind", "source": "/tmp", "options": ["rbind", "idmap"]}),
            )
        },
        "mounts[7].options: idmap without uidMappings and gidMappings needs a user namespace",
    );
    refused(
        &|v| {
            v["mounts"].as_array_mut().unwrap().push(json!({"destination": "/t", "type": "bind", "source": "/tmp",
                "options": ["rbind", "idmap"], "uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]}))
        },
        "mounts[7].gidMappings: must be given with uidMappings",
    );
    refused(
        &|v| {
            v["mounts"].as_array_mut().unwrap().push(
                json!({"destination": "/t", "type": "proc", "source": "proc", "options": ["tmpcopyup"]}),
            )
        },
        "mounts[7].options: tmpcopyup needs a tmpfs mount",
    );
}

#[test]
fn tmpcopyup_copies_what_the_tmpfs_covers() {
    if !is_root() {
        return;
    }
    let env = Env::new("copyup");
    let probe = "stat -c '%n %a %u:%g %F' /run /run/a /run/d /run/d/b /run/p /var/keep; \
                 readlink /run/l; readlink /run/esc; cat /run/a /run/d/b; \
                 grep -E ' /(run|var) ' /proc/self/mountinfo; \
                 touch /run/new && echo run-writable; touch /var/x 2>&1; true";
    let mut b = Bundle::new(&["sh", "-c", probe]);
    let rfs = b.rootfs();
    let run = rfs.join("run");
    std::fs::write(run.join("a"), "file-a\n").unwrap();
    std::fs::create_dir(run.join("d")).unwrap();
    std::fs::write(run.join("d/b"), "file-b\n").unwrap();
    symlink("/etc/passwd", run.join("l")).unwrap();
    symlink("../../../../../../etc", run.join("esc")).unwrap();
    nix::unistd::mkfifo(
        &run.join("p"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    std::os::unix::fs::chown(run.join("a"), Some(1000), Some(1000)).unwrap();
    std::os::unix::fs::chown(run.join("d"), Some(1000), Some(100)).unwrap();
    std::fs::set_permissions(run.join("a"), std::fs::Permissions::from_mode(0o604)).unwrap();
    std::fs::set_permissions(run.join("d"), std::fs::Permissions::from_mode(0o751)).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o751)).unwrap();
    std::fs::write(rfs.join("var/keep"), "k").unwrap();
    edit(&mut b, |v| {
        let m = v["mounts"].as_array_mut().unwrap();
        m.push(json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "tmpcopyup"]}));
        m.push(json!({"destination": "/var", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup", "ro"]}));
    });
    let r = env.run_bundle(&b);
    assert_eq!(r.code, 0, "{r:?}");
    let out = &r.stdout;
    for want in [
        "/run 751 0:0 directory",
        "/run/a 604 1000:1000 regular file",
        "/run/d 751 1000:100 directory",
        "/run/d/b 644 0:0 regular file",
        "/run/p 640 0:0 fifo",
        "/var/keep 644 0:0 regular file",
        "/etc/passwd\n../../../../../../etc\n",
        "file-a\nfile-b\n",
        "run-writable",
        "Read-only file system",
    ] {
        assert!(out.contains(want), "{want:?} in {r:?}");
    }
    assert!(opts_of(out, "/run").contains(&"nosuid".into()), "{r:?}");
    assert!(
        out.lines()
            .any(|l| l.contains(" /run ") && l.contains(" - tmpfs ")),
        "{r:?}"
    );
    assert!(opts_of(out, "/var").contains(&"ro".into()), "{r:?}");
    assert!(
        !run.join("new").exists(),
        "the copy, not the image, was written"
    );
    assert!(Path::new("/etc/passwd").exists());
}

#[test]
fn dangling_symlink_destinations_are_made_inside_the_rootfs() {
    if !is_root() {
        return;
    }
    let env = Env::new("dangling");
    let b0 = Bundle::new(&["true"]);
    let hostfile = b0.dir.join("hostfile");
    std::fs::write(&hostfile, "from-host\n").unwrap();
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "cat /etc/dangling /rel/r; grep -c ' /made/' /proc/self/mountinfo",
    ]);
    symlink("/made/file", b.rootfs().join("etc/dangling")).unwrap();
    std::fs::create_dir(b.dir.join("relsrc")).unwrap();
    std::fs::write(b.dir.join("relsrc/r"), "relative\n").unwrap();
    symlink("../made/dir", b.rootfs().join("dangdir")).unwrap();
    edit(&mut b, |v| {
        let m = v["mounts"].as_array_mut().unwrap();
        m.push(json!({"destination": "/etc/dangling", "type": "bind", "source": hostfile, "options": ["bind"]}));
        m.push(json!({"destination": "/dangdir", "type": "tmpfs", "source": "tmpfs"}));
        // A relative bind source is relative to the bundle (config.md).
        m.push(json!({"destination": "/rel", "type": "bind", "source": "relsrc", "options": ["rbind"]}));
    });
    let r = env.run_bundle(&b);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("from-host\nrelative\n2"), "{r:?}");
    assert!(b.rootfs().join("made/file").is_file());
    assert!(b.rootfs().join("made/dir").is_dir());
    assert!(!Path::new("/made").exists(), "nothing made on the host");
}

#[test]
fn bind_source_only_the_runtime_can_reach() {
    if !is_root() {
        return;
    }
    let env = Env::new("lockedsrc");
    let mut b = Bundle::new(&["sh", "-c", "cat /data/f; ls /data"]);
    let locked = b.dir.join("locked");
    std::fs::create_dir(b.rootfs().join("data")).unwrap();
    std::fs::create_dir_all(locked.join("src")).unwrap();
    std::fs::write(locked.join("src/f"), "reached\n").unwrap();
    std::fs::set_permissions(locked.join("src"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    edit(&mut b, |v| {
        userns(v);
        v["mounts"].as_array_mut().unwrap().push(
            json!({"destination": "/data", "type": "bind", "source": locked.join("src"), "options": ["rbind", "ro"]}),
        );
    });
    let r = env.run_bundle(&b);
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("reached"), "{r:?}");
}

#[test]
fn devices_outside_dev() {
    if !is_root() {
        return;
    }
    let env = Env::new("foodev");
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "stat -c '%F %t:%T %a' /foo-dev /opt/d/zero; echo hi > /foo-dev && echo wrote",
    ]);
    edit(&mut b, |v| {
        v["linux"]["devices"] = json!([
            {"path": "/foo-dev", "type": "c", "major": 1, "minor": 3, "fileMode": 438},
            {"path": "/opt/d/zero", "type": "c", "major": 1, "minor": 5, "fileMode": 420}
        ]);
    });
    let r = env.run_bundle(&b);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("character special file 1:3 666"), "{r:?}");
    assert!(r.stdout.contains("character special file 1:5 644"), "{r:?}");
    assert!(r.stdout.contains("wrote"), "{r:?}");
}
