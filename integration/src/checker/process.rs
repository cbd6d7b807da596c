//! config.md "Process": args, env, cwd, user, umask, rlimits, capabilities,
//! noNewPrivileges, oomScoreAdj; config-linux.md "Seccomp".

use serde_json::Value;

use crate::tap::Tap;
use crate::{at, strings, sys};

const S: &str = "Process";

use crate::caps::CAPS;

/// rlimit names in resource-number order (asm-generic/resource.h).
const RLIMITS: [&str; 16] = [
    "RLIMIT_CPU",
    "RLIMIT_FSIZE",
    "RLIMIT_DATA",
    "RLIMIT_STACK",
    "RLIMIT_CORE",
    "RLIMIT_RSS",
    "RLIMIT_NPROC",
    "RLIMIT_NOFILE",
    "RLIMIT_MEMLOCK",
    "RLIMIT_AS",
    "RLIMIT_LOCKS",
    "RLIMIT_SIGPENDING",
    "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE",
    "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME",
];

/// A line `Key:\tvalue` of /proc/self/status.
pub fn status_field(key: &str) -> Option<String> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// Names of the bits set in `mask`.
fn cap_names(mask: u64) -> Vec<&'static str> {
    (0..64)
        .filter(|b| mask & (1u64 << b) != 0)
        .map(|b| CAPS.get(b).copied().unwrap_or("CAP_?"))
        .collect()
}

fn cap_mask(names: &[String], known: u64) -> u64 {
    names
        .iter()
        .filter_map(|n| CAPS.iter().position(|c| c == n))
        .fold(0, |m, b| m | (1u64 << b))
        & known
}

/// Runs every Process check.
pub fn check(t: &mut Tap, c: &Value) {
    let p = at(c, &["process"]);
    if p.is_null() {
        t.skip(S, "process", "no process in config");
        return;
    }
    let cmdline = std::fs::read("/proc/self/cmdline").unwrap_or_default();
    // Each argument is NUL-terminated; empty arguments are kept.
    let body = cmdline.strip_suffix(&[0]).unwrap_or(&cmdline);
    let args: Vec<String> = body
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    t.eq(S, "args", strings(&p["args"]), args);

    for kv in strings(&p["env"]) {
        let (k, v) = kv.split_once('=').unwrap_or((&kv, ""));
        let got = std::env::var(k).ok();
        t.eq(S, &format!("env {k}"), Some(v.to_string()), got);
    }

    // Compared as paths: "/tmp/" and "/tmp" are the same directory.
    let cwd = std::env::current_dir().unwrap_or_default();
    let want = std::path::PathBuf::from(p["cwd"].as_str().unwrap_or("/"));
    t.eq(S, "cwd", want, cwd);

    check_user(t, &p["user"]);
    check_rlimits(t, &p["rlimits"]);
    check_caps(t, c);

    let nnp = p["noNewPrivileges"].as_bool().unwrap_or(false);
    let got = status_field("NoNewPrivs").unwrap_or_default();
    t.eq(
        S,
        "noNewPrivileges",
        if nnp { "1" } else { "0" },
        got.as_str(),
    );

    if let Some(adj) = p["oomScoreAdj"].as_i64() {
        let got = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap_or_default();
        t.eq(S, "oomScoreAdj", adj.to_string(), got.trim().to_string());
    }

    let want = if at(c, &["linux", "seccomp"]).is_null() {
        "0"
    } else {
        "2"
    };
    let got = status_field("Seccomp").unwrap_or_default();
    t.eq("Seccomp", "seccomp mode", want, got.as_str());
    check_seccomp_rules(t, c);
    check_apparmor(t, p);
}

/// config-linux.md "Seccomp": an SCMP_ACT_ERRNO rule on `getpriority` (the
/// one syscall the checker probes; harmless and not otherwise needed) makes
/// it fail with `errnoRet` (default EPERM).
fn check_seccomp_rules(t: &mut Tap, c: &Value) {
    let rules = at(c, &["linux", "seccomp", "syscalls"]);
    for r in rules.as_array().into_iter().flatten() {
        if !strings(&r["names"]).iter().any(|n| n == "getpriority") || !r["args"].is_null() {
            continue;
        }
        let want = match r["action"].as_str() {
            Some("SCMP_ACT_ERRNO") => {
                Err(r["errnoRet"].as_i64().unwrap_or(libc::EPERM as i64) as i32)
            }
            Some("SCMP_ACT_ALLOW") | Some("SCMP_ACT_LOG") => Ok(()),
            _ => continue,
        };
        let got = sys::getpriority_self().map(|_| ());
        t.eq("Seccomp", "getpriority rule (Err = errno)", want, got);
    }
}

/// config.md "Process" apparmorProfile: /proc/self/attr/current, when the
/// kernel has AppArmor enabled.
fn check_apparmor(t: &mut Tap, p: &Value) {
    let Some(profile) = p["apparmorProfile"].as_str() else {
        return;
    };
    let enabled = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .map(|s| s.trim() == "Y")
        .unwrap_or(false);
    if !enabled {
        t.skip(
            "AppArmor",
            "apparmorProfile",
            "AppArmor is not enabled on this kernel",
        );
        return;
    }
    let cur = std::fs::read_to_string("/proc/self/attr/current").unwrap_or_default();
    let label = cur.split(" (").next().unwrap_or("").trim().to_string();
    t.eq("AppArmor", "apparmorProfile", profile.to_string(), label);
}

fn check_user(t: &mut Tap, u: &Value) {
    let (uid, euid, gid, egid) = sys::ids();
    let want_uid = u["uid"].as_u64().unwrap_or(0) as u32;
    let want_gid = u["gid"].as_u64().unwrap_or(0) as u32;
    t.eq(S, "user uid", (want_uid, want_uid), (uid, euid));
    t.eq(S, "user gid", (want_gid, want_gid), (gid, egid));
    let mut want: Vec<u32> = u["additionalGids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|g| g.as_u64())
                .map(|g| g as u32)
                .collect()
        })
        .unwrap_or_default();
    want.sort_unstable();
    want.dedup();
    let mut got = sys::groups();
    got.sort_unstable();
    got.dedup();
    // The primary gid may or may not be listed among the supplementary ones.
    let strip = |v: &[u32]| -> Vec<u32> { v.iter().copied().filter(|&g| g != want_gid).collect() };
    t.eq(S, "user additionalGids", strip(&want), strip(&got));
    if let Some(m) = u["umask"].as_u64() {
        let got = status_field("Umask").unwrap_or_default();
        let got = u64::from_str_radix(&got, 8).ok();
        t.eq(S, "user umask", Some(m), got);
    }
}

fn check_rlimits(t: &mut Tap, r: &Value) {
    for rl in r.as_array().into_iter().flatten() {
        let ty = rl["type"].as_str().unwrap_or("");
        let Some(res) = RLIMITS.iter().position(|n| *n == ty) else {
            t.skip(S, &format!("rlimit {ty}"), "unknown rlimit type");
            continue;
        };
        let want = (rl["soft"].as_u64(), rl["hard"].as_u64());
        let got = sys::rlimit(res as u32).map(|(s, h)| (Some(s), Some(h)));
        t.eq(S, &format!("rlimit {ty} (soft, hard)"), Some(want), got);
    }
}

fn check_caps(t: &mut Tap, c: &Value) {
    let caps = at(c, &["process", "capabilities"]);
    if caps.is_null() {
        t.skip(S, "capabilities", "no process.capabilities in config");
        return;
    }
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    let known = if last >= 63 {
        u64::MAX
    } else {
        (1u64 << (last + 1)) - 1
    };
    let set = |k: &str| cap_mask(&strings(&caps[k]), known);
    let (b, i, p) = (set("bounding"), set("inheritable"), set("permitted"));
    // The kernel only keeps ambient capabilities that are permitted and
    // inheritable.
    let a = set("ambient") & p & i;
    let nnp = at(c, &["process", "noNewPrivileges"])
        .as_bool()
        .unwrap_or(false);
    let (_, euid, _, _) = sys::ids();
    // After execve of /checker (no file capabilities): root gets
    // bounding ∪ inheritable (limited to the old permitted set under
    // no_new_privs) plus ambient, all effective; other users keep ambient only.
    let prm = if euid == 0 {
        let gained = b | i;
        (if nnp { gained & p } else { gained }) | a
    } else {
        a
    };
    for (key, want) in [
        ("CapBnd", b),
        ("CapInh", i),
        ("CapPrm", prm),
        ("CapEff", prm),
        ("CapAmb", a),
    ] {
        let got = status_field(key)
            .and_then(|v| u64::from_str_radix(&v, 16).ok())
            .unwrap_or(u64::MAX);
        t.eq(
            S,
            &format!("capabilities {key}"),
            cap_names(want),
            cap_names(got),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_masks_round_trip() {
        let names = vec![
            "CAP_KILL".to_string(),
            "CAP_BPF".to_string(),
            "CAP_NOPE".to_string(),
        ];
        let m = cap_mask(&names, u64::MAX);
        assert_eq!(m, (1 << 5) | (1 << 39));
        assert_eq!(cap_names(m), ["CAP_KILL", "CAP_BPF"]);
        assert_eq!(cap_mask(&names, (1 << 38) - 1), 1 << 5);
    }
}
