//! Shared by the random-profile tests: a seedable PRNG, a random OCI profile
//! generator, and an oracle that reads a profile's meaning straight from its JSON.
#![allow(dead_code)]

use casulo_seccomp::arch::{
    Abi, AUDIT_ARCH_AARCH64, AUDIT_ARCH_ARM, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT,
};
use serde_json::{json, Value};

/// splitmix64: small, seedable, good enough for test inputs.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

pub const ARCHES: [(&str, Abi); 5] = [
    ("SCMP_ARCH_X86_64", Abi::X86_64),
    ("SCMP_ARCH_X86", Abi::X86),
    ("SCMP_ARCH_X32", Abi::X32),
    ("SCMP_ARCH_AARCH64", Abi::Aarch64),
    ("SCMP_ARCH_ARM", Abi::Arm),
];
pub const OPS: [&str; 7] = [
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
];
/// Syscalls present on all five ABIs and never multiplexed (no socketcall/ipc).
pub const NAMES: &[&str] = &[
    "read",
    "write",
    "close",
    "getpid",
    "getppid",
    "getuid",
    "getgid",
    "gettid",
    "kill",
    "tgkill",
    "openat",
    "fchdir",
    "dup",
    "dup3",
    "pipe2",
    "lseek",
    "mprotect",
    "munmap",
    "brk",
    "ioctl",
    "flock",
    "fsync",
    "fdatasync",
    "getcwd",
    "chdir",
    "mkdirat",
    "unlinkat",
    "setpgid",
    "getpgid",
    "getsid",
    "setsid",
    "umask",
    "prctl",
    "getrusage",
    "sysinfo",
    "capget",
    "capset",
    "personality",
    "exit_group",
    "sched_yield",
    "getpriority",
    "setpriority",
    "mlock",
    "munlock",
    "madvise",
    "getrandom",
    "memfd_create",
    "bpf",
    "seccomp",
    "execve",
    "execveat",
    "waitid",
    "unshare",
    "setns",
    "sync",
    "syncfs",
    "pread64",
    "pwrite64",
    "readv",
    "writev",
    "clone3",
    "close_range",
    "openat2",
    "pidfd_open",
];

pub fn ret_of(action: &str, errno: Option<u64>) -> u32 {
    let data = errno.unwrap_or(1) as u32;
    match action {
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => 0,
        "SCMP_ACT_KILL_PROCESS" => 0x8000_0000,
        "SCMP_ACT_TRAP" => 0x0003_0000,
        "SCMP_ACT_ERRNO" => 0x0005_0000 | data,
        "SCMP_ACT_TRACE" => 0x7ff0_0000 | data,
        "SCMP_ACT_LOG" => 0x7ffc_0000,
        "SCMP_ACT_NOTIFY" => 0x7fc0_0000,
        "SCMP_ACT_ALLOW" => 0x7fff_0000,
        other => panic!("{other}"),
    }
}

pub fn random_value(rng: &mut Rng, wide: bool) -> u64 {
    let v = match rng.below(6) {
        0 => 0,
        1 => rng.below(8),
        2 => u64::from(u32::MAX) - rng.below(2),
        3 => (1u64 << 32) + rng.below(3),
        4 => u64::MAX - rng.below(2),
        _ => rng.next(),
    };
    if wide {
        v
    } else {
        v & 0xffff_ffff
    }
}

pub struct GenOpts {
    /// Restrict to what libseccomp expresses the same way: each name once, arg
    /// indices distinct within a rule, no NOTIFY, no rules equal to the default.
    pub libseccomp_compatible: bool,
}

pub fn random_profile(rng: &mut Rng, opts: &GenOpts) -> Value {
    let mut arches: Vec<&str> = Vec::new();
    for (name, _) in ARCHES {
        if rng.chance(45) {
            arches.push(name);
        }
    }
    let wide = arches
        .iter()
        .all(|a| *a == "SCMP_ARCH_X86_64" || *a == "SCMP_ARCH_AARCH64");
    let mut actions = vec![
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_LOG",
    ];
    let default = *rng.pick(&actions);
    let mut p = json!({ "defaultAction": default });
    if (default == "SCMP_ACT_ERRNO" || default == "SCMP_ACT_TRACE") && rng.chance(70) {
        p["defaultErrnoRet"] = json!(1 + rng.below(100));
    }
    if !arches.is_empty() {
        p["architectures"] = json!(arches);
    }
    if !opts.libseccomp_compatible {
        actions.push("SCMP_ACT_NOTIFY");
        p["listenerPath"] = json!("/run/agent.sock");
    }
    let mut pool: Vec<&str> = NAMES.to_vec();
    if !opts.libseccomp_compatible {
        pool.extend([
            "open",
            "stat",
            "no_such_syscall",
            "arch_prctl",
            "set_tls",
            "socket",
        ]);
    }
    let mut syscalls = Vec::new();
    for _ in 0..1 + rng.below(25) {
        let mut names = Vec::new();
        for _ in 0..1 + rng.below(4) {
            if pool.is_empty() {
                break;
            }
            let i = rng.below(pool.len() as u64) as usize;
            names.push(if opts.libseccomp_compatible {
                pool.swap_remove(i)
            } else {
                pool[i]
            });
        }
        if names.is_empty() {
            break;
        }
        let action = *rng.pick(&actions);
        let mut s = json!({ "names": names, "action": action });
        if (action == "SCMP_ACT_ERRNO" || action == "SCMP_ACT_TRACE") && rng.chance(70) {
            s["errnoRet"] = json!(rng.below(200));
        }
        let mut args = Vec::new();
        let mut used = Vec::new();
        for _ in 0..rng.below(4) {
            let index = rng.below(6);
            if opts.libseccomp_compatible && used.contains(&index) {
                continue;
            }
            used.push(index);
            let op = *rng.pick(&OPS);
            let mut a = json!({ "index": index, "value": random_value(rng, wide), "op": op });
            if op == "SCMP_CMP_MASKED_EQ" {
                let mask = a["value"].as_u64().unwrap();
                let two = if rng.chance(80) {
                    random_value(rng, wide) & mask
                } else {
                    random_value(rng, wide)
                };
                a["valueTwo"] = json!(two);
            }
            args.push(a);
        }
        if !args.is_empty() {
            s["args"] = json!(args);
        }
        if opts.libseccomp_compatible
            && ret_of(action, s["errnoRet"].as_u64())
                == ret_of(default, p["defaultErrnoRet"].as_u64())
        {
            continue;
        }
        syscalls.push(s);
    }
    p["syscalls"] = json!(syscalls);
    p
}

pub fn listed_abis(p: &Value) -> Vec<Abi> {
    match p["architectures"].as_array() {
        None => vec![Abi::X86_64],
        Some(a) => a
            .iter()
            .map(|s| {
                ARCHES
                    .iter()
                    .find(|(n, _)| n == &s.as_str().unwrap())
                    .unwrap()
                    .1
            })
            .collect(),
    }
}

pub fn abi_of(abis: &[Abi], arch: u32, nr: u32) -> Option<Abi> {
    abis.iter().copied().find(|a| match a {
        Abi::X86_64 => arch == AUDIT_ARCH_X86_64 && nr < X32_SYSCALL_BIT,
        Abi::X32 => arch == AUDIT_ARCH_X86_64 && nr >= X32_SYSCALL_BIT,
        Abi::X86 => arch == AUDIT_ARCH_I386,
        Abi::Aarch64 => arch == AUDIT_ARCH_AARCH64,
        Abi::Arm => arch == AUDIT_ARCH_ARM,
    })
}

pub fn arg_matches(a: &Value, args: &[u64; 6], narrow: bool) -> bool {
    let m = |v: u64| if narrow { v & 0xffff_ffff } else { v };
    let x = m(args[a["index"].as_u64().unwrap() as usize]);
    let v = m(a["value"].as_u64().unwrap());
    let two = m(a["valueTwo"].as_u64().unwrap_or(0));
    match a["op"].as_str().unwrap() {
        "SCMP_CMP_NE" => x != v,
        "SCMP_CMP_LT" => x < v,
        "SCMP_CMP_LE" => x <= v,
        "SCMP_CMP_EQ" => x == v,
        "SCMP_CMP_GE" => x >= v,
        "SCMP_CMP_GT" => x > v,
        "SCMP_CMP_MASKED_EQ" => x & v == two & v, // libseccomp masks valueTwo too
        o => panic!("{o}"),
    }
}

/// What the profile means, straight from its JSON: the first matching rule in
/// profile order; else the default, or ENOSYS above the highest named number when
/// the default is not ALLOW/LOG/TRACE; unlisted architectures are killed.
pub fn oracle(p: &Value, arch: u32, nr: u32, args: &[u64; 6]) -> (u32, bool) {
    let Some(abi) = abi_of(&listed_abis(p), arch, nr) else {
        return (0x8000_0000, false);
    };
    let default_action = p["defaultAction"].as_str().unwrap();
    let default = ret_of(default_action, p["defaultErrnoRet"].as_u64());
    let narrow = matches!(abi, Abi::X86 | Abi::X32 | Abi::Arm);
    let (mut max, mut named) = (None::<u32>, false);
    let mut decided = None;
    for s in p["syscalls"].as_array().unwrap() {
        for name in s["names"].as_array().unwrap() {
            let Some(n) = abi.resolve(name.as_str().unwrap()) else {
                continue;
            };
            max = Some(max.map_or(n, |m| m.max(n)));
            if n != nr {
                continue;
            }
            named = true;
            let args_ok = s["args"]
                .as_array()
                .is_none_or(|a| a.iter().all(|c| arg_matches(c, args, narrow)));
            if decided.is_none() && args_ok {
                decided = Some(ret_of(
                    s["action"].as_str().unwrap(),
                    s["errnoRet"].as_u64(),
                ));
            }
        }
    }
    if let Some(d) = decided {
        return (d, false);
    }
    let allow_like = matches!(
        default_action,
        "SCMP_ACT_ALLOW" | "SCMP_ACT_LOG" | "SCMP_ACT_TRACE"
    );
    match max {
        Some(m) if !named && !allow_like && nr > m => (0x0005_0000 | libc::ENOSYS as u32, true),
        _ => (default, false),
    }
}

/// Interesting syscalls to try against profile `p`.
pub fn inputs(rng: &mut Rng, p: &Value, count: usize) -> Vec<(u32, u32, [u64; 6])> {
    let mut values = vec![0u64, 1, u64::MAX, 1 << 32, u64::from(u32::MAX)];
    let mut nrs = Vec::new();
    for s in p["syscalls"].as_array().unwrap() {
        for a in s["args"].as_array().into_iter().flatten() {
            for k in ["value", "valueTwo"] {
                if let Some(v) = a[k].as_u64() {
                    values.extend([v, v.wrapping_add(1), v.wrapping_sub(1), v ^ (1 << 32)]);
                }
            }
        }
        for n in s["names"].as_array().unwrap() {
            for abi in Abi::ALL {
                if let Some(nr) = abi.resolve(n.as_str().unwrap()) {
                    nrs.push((abi.audit_arch(), nr));
                }
            }
        }
    }
    let arches = [
        AUDIT_ARCH_X86_64,
        AUDIT_ARCH_I386,
        AUDIT_ARCH_AARCH64,
        AUDIT_ARCH_ARM,
        0x4000_0008,
    ];
    (0..count)
        .map(|_| {
            let (arch, nr) = match rng.below(4) {
                0 | 1 if !nrs.is_empty() => *rng.pick(&nrs),
                2 => (
                    *rng.pick(&arches),
                    rng.below(500) as u32 | if rng.chance(20) { X32_SYSCALL_BIT } else { 0 },
                ),
                _ => (*rng.pick(&arches), rng.next() as u32),
            };
            let mut args = [0u64; 6];
            for a in &mut args {
                *a = if rng.chance(80) {
                    *rng.pick(&values)
                } else {
                    rng.next()
                };
            }
            (arch, nr, args)
        })
        .collect()
}
