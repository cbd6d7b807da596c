//! config.md "Root" and "Mounts"; config-linux.md "Mount Propagation",
//! "Masked Paths" and "Readonly Paths". All based on /proc/self/mountinfo.

use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;

use crate::tap::Tap;
use crate::{at, strings, sys};

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Mount point, unescaped.
    pub point: String,
    /// Root of the mount within its filesystem (a bind mount's source path
    /// relative to the source's own mount), unescaped.
    pub root: String,
    /// Per-mount options (`rw,nosuid,…`).
    pub opts: Vec<String>,
    /// Optional fields (`shared:N`, `master:N`, `unbindable`, …).
    pub tags: Vec<String>,
    /// Filesystem type.
    pub fstype: String,
    /// Per-superblock options.
    pub sopts: Vec<String>,
}

/// The parsed mount table of the checker's mount namespace.
pub struct MountInfo(pub Vec<Entry>);

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn split_opts(s: &str) -> Vec<String> {
    s.split(',').map(str::to_string).collect()
}

impl MountInfo {
    /// Reads /proc/self/mountinfo (empty if unreadable).
    pub fn read() -> MountInfo {
        MountInfo::parse(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
    }

    /// Parses the text of a mountinfo file; malformed lines are skipped.
    pub fn parse(text: &str) -> MountInfo {
        let mut v = Vec::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            let Some(dash) = f.iter().position(|x| *x == "-") else {
                continue;
            };
            if f.len() < 6 || dash + 3 >= f.len() {
                continue;
            }
            v.push(Entry {
                point: unescape(f[4]),
                root: unescape(f[3]),
                opts: split_opts(f[5]),
                tags: f[6..dash].iter().map(|s| s.to_string()).collect(),
                fstype: f.get(dash + 1).unwrap_or(&"").to_string(),
                sopts: split_opts(f.get(dash + 3).unwrap_or(&"")),
            });
        }
        MountInfo(v)
    }

    /// The topmost mount at exactly `point`.
    pub fn at(&self, point: &str) -> Option<&Entry> {
        let p = if point.len() > 1 {
            point.trim_end_matches('/')
        } else {
            point
        };
        self.0.iter().rev().find(|e| e.point == p)
    }
}

fn has(e: &Entry, o: &str) -> bool {
    e.opts.iter().any(|x| x == o)
}

/// config.md "Root": root.readonly.
pub fn check_root(t: &mut Tap, c: &Value, m: &MountInfo) {
    const S: &str = "Root";
    let ro = at(c, &["root", "readonly"]).as_bool().unwrap_or(false);
    match m.at("/") {
        Some(e) => t.eq(S, "readonly mount flag", ro, has(e, "ro")),
        None => t.fail(S, "root mount", &"a mount at /", &"none"),
    }
    if sys::ids().1 != 0 {
        t.skip(S, "write to /", "not running as root");
        return;
    }
    let probe = "/.casulo-checker-probe";
    let res = std::fs::write(probe, b"x");
    let _ = std::fs::remove_file(probe);
    let got = match &res {
        Ok(()) => "written".to_string(),
        Err(e) if e.raw_os_error() == Some(libc::EROFS) => "EROFS".to_string(),
        Err(e) => e.to_string(),
    };
    let want = if ro { "EROFS" } else { "written" };
    t.eq(S, "write to /", want, got.as_str());
}

fn octal(s: &str) -> Option<u64> {
    u64::from_str_radix(s, 8).ok()
}

fn bytes(s: &str) -> Option<u64> {
    let (num, mul) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 1 << 10),
        (i, 'm' | 'M') => (&s[..i], 1 << 20),
        (i, 'g' | 'G') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok().map(|n| n * mul)
}

/// Compares a filesystem data option (`mode=0620`) with the superblock's.
fn data_opt_matches(key: &str, want: &str, got: &str) -> bool {
    match key {
        "mode" | "ptmxmode" => octal(want) == octal(got),
        "size" => bytes(want) == bytes(got),
        _ => want == got,
    }
}

const DATA_KEYS: [&str; 6] = ["mode", "ptmxmode", "uid", "gid", "size", "nr_inodes"];

/// config.md "Mounts" and config-linux.md "Mount Propagation".
pub fn check_mounts(t: &mut Tap, c: &Value, m: &MountInfo) {
    const S: &str = "Mounts";
    for mnt in at(c, &["mounts"]).as_array().into_iter().flatten() {
        let dest = mnt["destination"].as_str().unwrap_or("");
        let ty = mnt["type"].as_str().unwrap_or("");
        let opts = strings(&mnt["options"]);
        let Some(e) = m.at(dest) else {
            t.fail(S, &format!("{dest} mounted"), &"a mount", &"none");
            continue;
        };
        let bind = ty == "bind" || opts.iter().any(|o| o == "bind" || o == "rbind");
        if bind {
            // The source's path ends with the mount's root in its filesystem.
            let src = mnt["source"].as_str().unwrap_or("");
            let ok = e.root != "/" && Path::new(src).ends_with(e.root.trim_start_matches('/'));
            t.check(S, &format!("{dest} bind source"), ok, src, &e.root);
        }
        if !bind && !ty.is_empty() && ty != "none" {
            // On cgroup v1 hosts a "cgroup" mount is a tmpfs holding one
            // mount per controller; on v2 hosts it becomes cgroup2.
            let ok = e.fstype == ty
                || (ty == "cgroup" && (e.fstype == "tmpfs" || e.fstype == "cgroup2"));
            t.check(S, &format!("{dest} type"), ok, ty, &e.fstype);
        }
        // The recursive `rro`/`rrw` (mount_setattr after the mount) count as well.
        let want_ro = opts
            .iter()
            .rev()
            .find(|o| matches!(o.as_str(), "ro" | "rw" | "rro" | "rrw"));
        let want_ro = want_ro.is_some_and(|o| o == "ro" || o == "rro");
        t.eq(S, &format!("{dest} ro"), want_ro, has(e, "ro"));
        if ty == "cgroup" && e.fstype == "tmpfs" {
            // cgroup v1: one mount per controller below the tmpfs.
            let prefix = format!("{}/", dest.trim_end_matches('/'));
            let subs: Vec<&Entry> =
                m.0.iter()
                    .filter(|x| x.point.starts_with(&prefix))
                    .collect();
            let bad: Vec<&str> = subs
                .iter()
                .filter(|x| has(x, "ro") != want_ro)
                .map(|x| x.point.as_str())
                .collect();
            let what = format!("{dest}/* controller mounts ro={want_ro}");
            t.check(
                S,
                &what,
                !subs.is_empty() && bad.is_empty(),
                "all",
                &format!("{} mounts, wrong: {bad:?}", subs.len()),
            );
        }
        for (on, off) in [("nosuid", "suid"), ("nodev", "dev"), ("noexec", "exec")] {
            let last = opts.iter().rev().find(|o| *o == on || *o == off);
            if let Some(o) = last {
                t.eq(S, &format!("{dest} {o}"), o == on, has(e, on));
            }
        }
        for o in &opts {
            let ok = match o.as_str() {
                "noatime" | "relatime" | "nodiratime" => has(e, o),
                "strictatime" => !has(e, "relatime") && !has(e, "noatime"),
                _ => continue,
            };
            t.check(S, &format!("{dest} {o}"), ok, o, &e.opts.join(","));
        }
        if !bind {
            for o in &opts {
                let Some((k, v)) = o.split_once('=') else {
                    continue;
                };
                if !DATA_KEYS.contains(&k) {
                    continue;
                }
                let mut got = e
                    .sopts
                    .iter()
                    .find_map(|s| s.strip_prefix(k)?.strip_prefix('='));
                // tmpfs omits its default mode, 1777.
                if got.is_none() && k == "mode" && e.fstype == "tmpfs" {
                    got = Some("1777");
                }
                // Inside a user namespace the kernel shows uid=/gid= as host ids.
                let host = match k {
                    "uid" => map_to_host("/proc/self/uid_map", v),
                    "gid" => map_to_host("/proc/self/gid_map", v),
                    _ => None,
                };
                let ok =
                    got.is_some_and(|g| data_opt_matches(k, v, g) || host.as_deref() == Some(g));
                t.check(S, &format!("{dest} {o}"), ok, o, &e.sopts.join(","));
            }
        }
        for o in &opts {
            check_propagation(t, dest, o.trim_start_matches('r'), e);
        }
    }
    if let Some(p) = at(c, &["linux", "rootfsPropagation"]).as_str() {
        match m.at("/") {
            Some(e) => check_propagation(t, "rootfsPropagation /", p.trim_start_matches('r'), e),
            None => t.fail("Mount Propagation", "root mount", &"a mount at /", &"none"),
        }
    }
}

/// The host id of container id `id` per an id map file, as a string.
fn map_to_host(map: &str, id: &str) -> Option<String> {
    let id: u64 = id.parse().ok()?;
    let text = std::fs::read_to_string(map).ok()?;
    text.lines().find_map(|l| {
        let v: Vec<u64> = l
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        (v.len() == 3 && id >= v[0] && id - v[0] < v[2]).then(|| (v[1] + id - v[0]).to_string())
    })
}

fn check_propagation(t: &mut Tap, what: &str, mode: &str, e: &Entry) {
    let tag = |p: &str| e.tags.iter().any(|x| x.starts_with(p));
    let ok = match mode {
        "shared" => tag("shared:"),
        // MS_SLAVE on a mount without peers makes it private (kernel
        // semantics), so only require that it does not propagate out.
        "slave" => !tag("shared:"),
        "private" => !tag("shared:") && !tag("master:") && !tag("unbindable"),
        "unbindable" => tag("unbindable"),
        _ => return,
    };
    t.check(
        "Mount Propagation",
        &format!("{what} {mode}"),
        ok,
        mode,
        &format!("[{}]", e.tags.join(" ")),
    );
}

/// config-linux.md "Masked Paths": files read empty, directories are empty
/// read-only tmpfs mounts.
pub fn check_masked(t: &mut Tap, c: &Value, m: &MountInfo) {
    const S: &str = "Masked Paths";
    for p in strings(at(c, &["linux", "maskedPaths"])) {
        let meta = match std::fs::metadata(&p) {
            Ok(md) => md,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                t.pass(S, &format!("{p} absent"));
                continue;
            }
            Err(e) => {
                t.fail(S, &format!("{p} stat"), &"ok", &e);
                continue;
            }
        };
        if meta.is_dir() {
            let n = std::fs::read_dir(&p)
                .map(|d| d.count())
                .unwrap_or(usize::MAX);
            t.eq(S, &format!("{p} is empty"), 0, n);
            let got = m.at(&p).map(|e| (e.fstype.clone(), has(e, "ro")));
            t.eq(
                S,
                &format!("{p} is ro tmpfs"),
                Some(("tmpfs".to_string(), true)),
                got,
            );
        } else {
            let got = std::fs::read(&p)
                .map(|b| b.len())
                .map_err(|e| e.to_string());
            t.eq(S, &format!("{p} reads empty"), Ok(0), got);
        }
    }
}

/// config-linux.md "Readonly Paths": read-only mounts; writing fails EROFS.
pub fn check_readonly(t: &mut Tap, c: &Value, m: &MountInfo) {
    const S: &str = "Readonly Paths";
    for p in strings(at(c, &["linux", "readonlyPaths"])) {
        let meta = match std::fs::metadata(&p) {
            Ok(md) => md,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                t.pass(S, &format!("{p} absent"));
                continue;
            }
            Err(e) => {
                t.fail(S, &format!("{p} stat"), &"ok", &e);
                continue;
            }
        };
        match m.at(&p) {
            Some(e) => t.eq(S, &format!("{p} mounted ro"), true, has(e, "ro")),
            None => t.fail(S, &format!("{p} mounted ro"), &"a ro mount", &"no mount"),
        }
        // Write only where the mode would allow it, so EROFS is what fails (a file of
        // an unmapped owner, as the host's root's in a rootless container, is not).
        let own = std::os::unix::fs::MetadataExt::uid(&meta) == 0;
        if meta.is_file() && sys::ids().1 == 0 && own && meta.permissions().mode() & 0o200 != 0 {
            let r = std::fs::OpenOptions::new().write(true).open(&p);
            let got = match r {
                Ok(_) => "opened".to_string(),
                Err(e) if e.raw_os_error() == Some(libc::EROFS) => "EROFS".to_string(),
                Err(e) => e.to_string(),
            };
            t.eq(S, &format!("{p} write"), "EROFS", got.as_str());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_lines() {
        let text = "100 90 0:50 / / ro,relatime master:1 - ext4 /dev/vda ro\n\
                    101 100 0:51 / /a\\040b rw,nosuid shared:7 unbindable - tmpfs tmpfs rw,size=64k,mode=700\n\
                    garbage\n";
        let m = MountInfo::parse(text);
        assert_eq!(m.0.len(), 2);
        let root = m.at("/").unwrap();
        assert!(has(root, "ro") && root.tags == ["master:1"] && root.fstype == "ext4");
        let e = m.at("/a b/").unwrap();
        assert_eq!(e.tags, ["shared:7", "unbindable"]);
        assert_eq!(e.sopts, ["rw", "size=64k", "mode=700"]);
    }

    #[test]
    fn compares_data_options() {
        assert!(data_opt_matches("mode", "0620", "620"));
        assert!(data_opt_matches("size", "65536k", "65536k"));
        assert!(data_opt_matches("size", "1m", "1024k"));
        assert!(!data_opt_matches("gid", "5", "6"));
        assert_eq!(bytes("2g"), Some(2 << 30));
    }
}
