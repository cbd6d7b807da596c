//! config.md "Hostname"/"Domainname"; config-linux.md "Namespaces",
//! "User namespace mappings", "Devices", "Default Devices", "Sysctl",
//! "Control groups".

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use serde_json::Value;

use crate::tap::Tap;
use crate::{at, sys};

/// config.md "Hostname" and "Domainname" (only when set).
pub fn check_hostname(t: &mut Tap, c: &Value) {
    let (node, domain) = sys::uname();
    if let Some(h) = c["hostname"].as_str() {
        t.eq("Hostname", "hostname", h, node.as_str());
    }
    if let Some(d) = c["domainname"].as_str() {
        t.eq("Domainname", "domainname", d, domain.as_str());
    }
}

/// The config's namespace type → the name under /proc/self/ns.
fn ns_file(ty: &str) -> &str {
    match ty {
        "network" => "net",
        "mount" => "mnt",
        other => other,
    }
}

fn ns_inode(name: &str) -> Option<u64> {
    std::fs::metadata(format!("/proc/self/ns/{name}"))
        .ok()
        .map(|m| m.ino())
}

/// config-linux.md "Namespaces": namespaces listed without a path are new
/// (inode differs from `CASULO_HOST_NS`), listed with a path or not listed
/// are the host's; a new pid namespace makes the process pid 1.
pub fn check_namespaces(t: &mut Tap, c: &Value) {
    const S: &str = "Namespaces";
    let host: BTreeMap<String, u64> = std::env::var("CASULO_HOST_NS")
        .unwrap_or_default()
        .split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect();
    let listed: BTreeMap<String, bool> = at(c, &["linux", "namespaces"])
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| {
            let ty = ns_file(n["type"].as_str()?).to_string();
            Some((ty, n["path"].as_str().is_some()))
        })
        .collect();
    if listed.get("pid") == Some(&false) {
        t.eq(S, "pid: process is pid 1", 1, std::process::id());
    }
    if listed.get("cgroup") == Some(&false) {
        // In a new cgroup namespace the process sits at its root.
        let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let paths: Vec<&str> = text
            .lines()
            .filter_map(|l| l.splitn(3, ':').nth(2))
            .collect();
        let ok = !paths.is_empty() && paths.iter().all(|p| *p == "/");
        t.check(
            S,
            "cgroup: /proc/self/cgroup paths are /",
            ok,
            "/",
            &paths.join(" "),
        );
    }
    for name in ["pid", "net", "ipc", "uts", "mnt", "user", "cgroup"] {
        let Some(got) = ns_inode(name) else {
            t.skip(S, name, "no /proc/self/ns entry");
            continue;
        };
        let Some(&h) = host.get(name) else {
            t.skip(S, name, "no CASULO_HOST_NS value");
            continue;
        };
        let new = listed.get(name) == Some(&false);
        let what = if new { "new" } else { "shared with host" };
        let ok = if new { got != h } else { got == h };
        t.check(
            S,
            &format!("{name} {what}"),
            ok,
            &format!("{}{h}", if new { "not " } else { "" }),
            &got.to_string(),
        );
    }
}

fn read_map(file: &str) -> Vec<(u64, u64, u64)> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            (v.len() == 3).then(|| (v[0], v[1], v[2]))
        })
        .collect()
}

/// config-linux.md "User namespace mappings": uid_map/gid_map.
pub fn check_id_mappings(t: &mut Tap, c: &Value) {
    const S: &str = "User namespace mappings";
    for (key, file) in [
        ("uidMappings", "/proc/self/uid_map"),
        ("gidMappings", "/proc/self/gid_map"),
    ] {
        let Some(maps) = at(c, &["linux", key]).as_array() else {
            continue;
        };
        let mut want: Vec<(u64, u64, u64)> = maps
            .iter()
            .map(|m| {
                let f = |k: &str| m[k].as_u64().unwrap_or(u64::MAX);
                (f("containerID"), f("hostID"), f("size"))
            })
            .collect();
        want.sort_unstable();
        let mut got = read_map(file);
        got.sort_unstable();
        t.eq(S, key, want, got);
    }
}

fn dev_type(m: &std::fs::Metadata) -> &'static str {
    let ft = m.file_type();
    if ft.is_char_device() {
        "c"
    } else if ft.is_block_device() {
        "b"
    } else if ft.is_fifo() {
        "p"
    } else {
        "other"
    }
}

fn major(rdev: u64) -> u64 {
    ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0xfff)
}

fn minor(rdev: u64) -> u64 {
    ((rdev >> 12) & 0xffff_ff00) | (rdev & 0xff)
}

/// config-linux.md "Devices" and "Default Devices".
pub fn check_devices(t: &mut Tap, c: &Value) {
    for d in at(c, &["linux", "devices"])
        .as_array()
        .into_iter()
        .flatten()
    {
        const S: &str = "Devices";
        let path = d["path"].as_str().unwrap_or("");
        let m = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => {
                t.fail(S, &format!("{path} exists"), &"a device", &e);
                continue;
            }
        };
        let ty = d["type"].as_str().unwrap_or("");
        let want_ty = if ty == "u" { "c" } else { ty };
        t.eq(S, &format!("{path} type"), want_ty, dev_type(&m));
        if ty != "p" {
            let want = (d["major"].as_u64(), d["minor"].as_u64());
            let got = (Some(major(m.rdev())), Some(minor(m.rdev())));
            t.eq(S, &format!("{path} major:minor"), want, got);
        }
        if let Some(mode) = d["fileMode"].as_u64() {
            t.eq(
                S,
                &format!("{path} fileMode"),
                format!("{:o}", mode & 0o7777),
                format!("{:o}", m.mode() & 0o7777),
            );
        }
        if let Some(uid) = d["uid"].as_u64() {
            t.eq(S, &format!("{path} uid"), uid, m.uid() as u64);
        }
        if let Some(gid) = d["gid"].as_u64() {
            t.eq(S, &format!("{path} gid"), gid, m.gid() as u64);
        }
    }
    const S: &str = "Default Devices";
    for (path, ma, mi) in [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ] {
        let got = std::fs::metadata(path)
            .map(|m| format!("{} {}:{}", dev_type(&m), major(m.rdev()), minor(m.rdev())))
            .unwrap_or_else(|e| e.to_string());
        t.eq(S, path, format!("c {ma}:{mi}"), got);
    }
    let rw = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map(|_| "ok".to_string())
        .unwrap_or_else(|e| e.to_string());
    t.eq(S, "/dev/null opens read-write", "ok", rw.as_str());
    // /dev/ptmx is a bind mount or symlink of /dev/pts/ptmx: only with devpts.
    let devpts = at(c, &["mounts"])
        .as_array()
        .into_iter()
        .flatten()
        .any(|m| m["type"] == "devpts" && m["destination"] == "/dev/pts");
    if devpts {
        let ptmx = std::fs::metadata("/dev/ptmx")
            .map(|m| format!("{} {}", dev_type(&m), major(m.rdev())))
            .unwrap_or_else(|e| e.to_string());
        t.eq(S, "/dev/ptmx", "c 5".to_string(), ptmx);
    }
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        let got = std::fs::read_link(link)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|e| e.to_string());
        t.eq(S, &format!("{link} symlink"), target, got.as_str());
    }
}

/// config-linux.md "Sysctl": /proc/sys values.
pub fn check_sysctl(t: &mut Tap, c: &Value) {
    let Some(map) = at(c, &["linux", "sysctl"]).as_object() else {
        return;
    };
    for (k, v) in map {
        let file = format!("/proc/sys/{}", k.replace('.', "/"));
        let got = std::fs::read_to_string(&file)
            .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|e| e.to_string());
        let want = v
            .as_str()
            .unwrap_or("")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        t.eq("Sysctl", k, want, got);
    }
}

/// First readable file among `candidates`, trimmed.
fn read_first(candidates: &[&str]) -> Option<(String, String)> {
    candidates.iter().find_map(|p| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| (p.to_string(), s.trim().to_string()))
    })
}

/// config-linux.md "Control groups": limits readable under /sys/fs/cgroup
/// (v1 controller dirs or the v2 unified tree, as mounted in the container).
pub fn check_cgroups(t: &mut Tap, c: &Value) {
    const S: &str = "Control groups";
    let r = at(c, &["linux", "resources"]);
    let mut one = |what: &str, want: Option<i64>, files: &[&str], v2_max: bool| {
        let Some(want) = want else { return };
        match read_first(files) {
            None => t.skip(S, what, "no cgroup file readable in the container"),
            Some((file, got)) => {
                let want_s = if v2_max && file.ends_with(".max") && want < 0 {
                    "max".to_string()
                } else {
                    want.to_string()
                };
                t.eq(S, &format!("{what} ({file})"), want_s, got);
            }
        }
    };
    one(
        "memory.limit",
        r["memory"]["limit"].as_i64(),
        &[
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory.max",
        ],
        true,
    );
    one(
        "pids.limit",
        r["pids"]["limit"].as_i64(),
        &["/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/pids.max"],
        true,
    );
    one(
        "cpu.shares",
        r["cpu"]["shares"].as_i64(),
        &[
            "/sys/fs/cgroup/cpu/cpu.shares",
            "/sys/fs/cgroup/cpu,cpuacct/cpu.shares",
        ],
        false,
    );
    let text = |v: &Value| v.as_str().map(str::to_string);
    let mut one_s = |what: &str, want: Option<String>, files: &[&str]| {
        let Some(want) = want else { return };
        match read_first(files) {
            None => t.skip(S, what, "no cgroup file readable in the container"),
            Some((file, got)) => t.eq(S, &format!("{what} ({file})"), want, got),
        }
    };
    one_s(
        "cpuset.cpus",
        text(&r["cpu"]["cpus"]),
        &[
            "/sys/fs/cgroup/cpuset/cpuset.cpus",
            "/sys/fs/cgroup/cpuset.cpus",
        ],
    );
    one_s(
        "cpuset.mems",
        text(&r["cpu"]["mems"]),
        &[
            "/sys/fs/cgroup/cpuset/cpuset.mems",
            "/sys/fs/cgroup/cpuset.mems",
        ],
    );
    let num = |v: &Value| v.as_i64().map(|n| n.to_string());
    one_s(
        "memory.reservation",
        num(&r["memory"]["reservation"]),
        &[
            "/sys/fs/cgroup/memory/memory.soft_limit_in_bytes",
            "/sys/fs/cgroup/memory.low",
        ],
    );
    one_s(
        "memory.swap",
        num(&r["memory"]["swap"]),
        &["/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"],
    );
    one_s(
        "blockIO.weight",
        num(&r["blockIO"]["weight"]),
        &[
            "/sys/fs/cgroup/blkio/blkio.weight",
            "/sys/fs/cgroup/blkio/blkio.bfq.weight",
        ],
    );
    one_s(
        "network.classID",
        num(&r["network"]["classID"]),
        &[
            "/sys/fs/cgroup/net_cls/net_cls.classid",
            "/sys/fs/cgroup/net_cls,net_prio/net_cls.classid",
        ],
    );
    let mut one = |what: &str, want: Option<i64>, files: &[&str], v2_max: bool| {
        let Some(want) = want else { return };
        match read_first(files) {
            None => t.skip(S, what, "no cgroup file readable in the container"),
            Some((file, got)) => {
                let want_s = if v2_max && file.ends_with(".max") && want < 0 {
                    "max".to_string()
                } else {
                    want.to_string()
                };
                t.eq(S, &format!("{what} ({file})"), want_s, got);
            }
        }
    };
    one(
        "cpu.quota",
        r["cpu"]["quota"].as_i64(),
        &[
            "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
            "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us",
        ],
        false,
    );
}
