//! Random profiles: the compiled program, run by the crate's BPF interpreter, must
//! agree with (a) an oracle written here directly from the profile's JSON meaning
//! and (b) libseccomp's own BPF for the same profile (seccomp_export_bpf).

use std::io::{Read, Seek};

use casulo_seccomp::arch::{
    Abi, AUDIT_ARCH_AARCH64, AUDIT_ARCH_ARM, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT,
};
use casulo_seccomp::{compile, interp};
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::LinuxSeccomp;
use serde_json::{json, Value};

/// splitmix64: small, seedable, good enough for test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

const ARCHES: [(&str, Abi); 5] = [
    ("SCMP_ARCH_X86_64", Abi::X86_64),
    ("SCMP_ARCH_X86", Abi::X86),
    ("SCMP_ARCH_X32", Abi::X32),
    ("SCMP_ARCH_AARCH64", Abi::Aarch64),
    ("SCMP_ARCH_ARM", Abi::Arm),
];
const OPS: [&str; 7] = [
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
];
/// Syscalls present on all five ABIs and never multiplexed (no socketcall/ipc).
const NAMES: &[&str] = &[
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

fn ret_of(action: &str, errno: Option<u64>) -> u32 {
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

fn random_value(rng: &mut Rng, wide: bool) -> u64 {
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

struct GenOpts {
    /// Restrict to what libseccomp expresses the same way: each name once, arg
    /// indices distinct within a rule, no NOTIFY, no rules equal to the default.
    libseccomp_compatible: bool,
}

fn random_profile(rng: &mut Rng, opts: &GenOpts) -> Value {
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

fn listed_abis(p: &Value) -> Vec<Abi> {
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

fn abi_of(abis: &[Abi], arch: u32, nr: u32) -> Option<Abi> {
    abis.iter().copied().find(|a| match a {
        Abi::X86_64 => arch == AUDIT_ARCH_X86_64 && nr < X32_SYSCALL_BIT,
        Abi::X32 => arch == AUDIT_ARCH_X86_64 && nr >= X32_SYSCALL_BIT,
        Abi::X86 => arch == AUDIT_ARCH_I386,
        Abi::Aarch64 => arch == AUDIT_ARCH_AARCH64,
        Abi::Arm => arch == AUDIT_ARCH_ARM,
    })
}

fn arg_matches(a: &Value, args: &[u64; 6], narrow: bool) -> bool {
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
fn oracle(p: &Value, arch: u32, nr: u32, args: &[u64; 6]) -> (u32, bool) {
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
fn inputs(rng: &mut Rng, p: &Value, count: usize) -> Vec<(u32, u32, [u64; 6])> {
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

#[test]
fn compiled_programs_match_the_profile_meaning() {
    let mut rng = Rng(0x5eed_0001);
    let opts = GenOpts {
        libseccomp_compatible: false,
    };
    for case in 0..300 {
        let p = random_profile(&mut rng, &opts);
        let profile: LinuxSeccomp = serde_json::from_value(p.clone()).expect("parses");
        let compiled = compile(&profile).unwrap_or_else(|e| panic!("case {case}: {e}\n{p}"));
        for (arch, nr, args) in inputs(&mut rng, &p, 400) {
            let got = interp::run(compiled.filter.program(), arch, nr, &args).expect("runs");
            let (want, _) = oracle(&p, arch, nr, &args);
            assert_eq!(
                got.ret, want,
                "case {case}: arch {arch:#x} nr {nr} args {args:x?}\nprofile {p}"
            );
        }
    }
}

fn scmp_arch(abi: Abi) -> ScmpArch {
    match abi {
        Abi::X86_64 => ScmpArch::X8664,
        Abi::X86 => ScmpArch::X86,
        Abi::X32 => ScmpArch::X32,
        Abi::Aarch64 => ScmpArch::Aarch64,
        Abi::Arm => ScmpArch::Arm,
    }
}

fn scmp_action(action: &str, errno: Option<u64>) -> ScmpAction {
    let data = errno.unwrap_or(1);
    match action {
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => ScmpAction::KillThread,
        "SCMP_ACT_KILL_PROCESS" => ScmpAction::KillProcess,
        "SCMP_ACT_TRAP" => ScmpAction::Trap,
        "SCMP_ACT_ERRNO" => ScmpAction::Errno(data as i32),
        "SCMP_ACT_TRACE" => ScmpAction::Trace(data as u16),
        "SCMP_ACT_LOG" => ScmpAction::Log,
        "SCMP_ACT_ALLOW" => ScmpAction::Allow,
        o => panic!("{o}"),
    }
}

fn scmp_op(a: &Value) -> ScmpArgCompare {
    let v = a["value"].as_u64().unwrap();
    let op = match a["op"].as_str().unwrap() {
        "SCMP_CMP_NE" => ScmpCompareOp::NotEqual,
        "SCMP_CMP_LT" => ScmpCompareOp::Less,
        "SCMP_CMP_LE" => ScmpCompareOp::LessOrEqual,
        "SCMP_CMP_EQ" => ScmpCompareOp::Equal,
        "SCMP_CMP_GE" => ScmpCompareOp::GreaterEqual,
        "SCMP_CMP_GT" => ScmpCompareOp::Greater,
        "SCMP_CMP_MASKED_EQ" => ScmpCompareOp::MaskedEqual(v),
        o => panic!("{o}"),
    };
    let datum = if a["op"] == "SCMP_CMP_MASKED_EQ" {
        a["valueTwo"].as_u64().unwrap_or(0)
    } else {
        v
    };
    ScmpArgCompare::new(a["index"].as_u64().unwrap() as u32, op, datum)
}

/// libseccomp's BPF for profile `p`, or `None` if libseccomp refuses it. With
/// `skip_unknown`, names libseccomp cannot resolve natively are left out.
fn libseccomp_program(p: &Value, skip_unknown: bool) -> Option<Vec<libc::sock_filter>> {
    let default = scmp_action(
        p["defaultAction"].as_str().unwrap(),
        p["defaultErrnoRet"].as_u64(),
    );
    let mut ctx = ScmpFilterContext::new_filter(default).ok()?;
    ctx.set_act_badarch(ScmpAction::KillProcess).ok()?;
    let abis = listed_abis(p);
    for abi in &abis {
        ctx.add_arch(scmp_arch(*abi)).ok()?;
    }
    if !abis.contains(&Abi::X86_64) {
        ctx.remove_arch(ScmpArch::Native).ok()?;
    }
    for s in p["syscalls"].as_array().unwrap() {
        let action = scmp_action(s["action"].as_str().unwrap(), s["errnoRet"].as_u64());
        let conds: Vec<ScmpArgCompare> = s["args"]
            .as_array()
            .into_iter()
            .flatten()
            .map(scmp_op)
            .collect();
        for name in s["names"].as_array().unwrap() {
            let sys = match ScmpSyscall::from_name(name.as_str().unwrap()) {
                Ok(sys) => sys,
                Err(_) if skip_unknown => continue,
                Err(_) => return None,
            };
            ctx.add_rule_conditional(action, sys, &conds).ok()?;
        }
    }
    let mut file = tempfile()?;
    ctx.export_bpf(&mut file).ok()?;
    file.rewind().ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    Some(
        bytes
            .chunks_exact(8)
            .map(|c| libc::sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect(),
    )
}

fn tempfile() -> Option<std::fs::File> {
    let path = std::env::temp_dir().join(format!(
        "casulo-seccomp-bpf-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .ok()?;
    std::fs::remove_file(&path).ok()?;
    Some(f)
}

#[test]
fn compiled_programs_match_libseccomp() {
    let mut rng = Rng(0x5eed_0002);
    let opts = GenOpts {
        libseccomp_compatible: true,
    };
    let (mut compared, mut profiles) = (0usize, 0usize);
    for case in 0..200 {
        let p = random_profile(&mut rng, &opts);
        let Some(theirs) = libseccomp_program(&p, false) else {
            continue;
        };
        profiles += 1;
        let profile: LinuxSeccomp = serde_json::from_value(p.clone()).expect("parses");
        let ours = compile(&profile).expect("compiles").filter;
        for (arch, nr, args) in inputs(&mut rng, &p, 400) {
            let (_, enosys_rule) = oracle(&p, arch, nr, &args);
            if enosys_rule {
                continue; // libseccomp has no ENOSYS rule for newer syscalls.
            }
            let a = interp::run(ours.program(), arch, nr, &args).expect("ours runs");
            let b = interp::run(&theirs, arch, nr, &args).expect("libseccomp's runs");
            assert_eq!(
                a.ret, b.ret,
                "case {case}: arch {arch:#x} nr {nr} args {args:x?}\nprofile {p}"
            );
            compared += 1;
        }
    }
    assert!(
        profiles >= 150,
        "libseccomp refused too many profiles: {profiles}"
    );
    assert!(compared > 30_000, "{compared}");
}

#[test]
fn syscall_tables_agree_with_libseccomp() {
    let mut checked = 0;
    for abi in Abi::ALL {
        for (name, nr) in abi.syscalls() {
            let Ok(theirs) = ScmpSyscall::from_name_by_arch(name, scmp_arch(abi)) else {
                continue; // newer than libseccomp 2.5
            };
            let theirs = i32::from(theirs);
            if theirs < 0 {
                continue; // libseccomp's pseudo-syscall for something multiplexed
            }
            assert_eq!(theirs as u32, nr, "{name} on {abi:?}");
            checked += 1;
        }
    }
    assert!(checked > 1500, "{checked}");
}

#[test]
fn docker_profile_matches_its_meaning_and_libseccomp() {
    let p: Value = serde_json::from_str(include_str!("docker_default.json")).unwrap();
    let profile: LinuxSeccomp = serde_json::from_value(p.clone()).unwrap();
    let ours = compile(&profile).unwrap().filter;
    let theirs = libseccomp_program(&p, true).expect("libseccomp takes the profile");
    let mut rng = Rng(0x5eed_0003);
    let mut cases = inputs(&mut rng, &p, 20_000);
    // Every syscall of every table, with and without interesting arguments.
    for abi in Abi::ALL {
        for (_, nr) in abi.syscalls() {
            cases.push((abi.audit_arch(), nr, [0; 6]));
            cases.push((abi.audit_arch(), nr, [0x7E02_0000, 40, 0, 0, 0, 0]));
            cases.push((abi.audit_arch(), nr, [8, 0, 0, 0, 0, 0]));
        }
    }
    // Numbers whose names libseccomp 2.5 does not know yet: it cannot allow them.
    let unknown_to_libseccomp: Vec<u32> = [Abi::X86_64, Abi::X32]
        .into_iter()
        .flat_map(|abi| {
            abi.syscalls().filter_map(move |(name, nr)| {
                match ScmpSyscall::from_name_by_arch(name, scmp_arch(abi)) {
                    Ok(s) if i32::from(s) >= 0 => None,
                    _ => Some(nr),
                }
            })
        })
        .collect();
    let mut compared = 0;
    for (arch, nr, args) in cases {
        let (want, enosys_rule) = oracle(&p, arch, nr, &args);
        let got = interp::run(ours.program(), arch, nr, &args).unwrap();
        assert_eq!(got.ret, want, "arch {arch:#x} nr {nr} args {args:x?}");
        // libseccomp: x86_64/x32 only (on i386 it turns socket() into socketcall
        // rules), and not where the ENOSYS rule applies.
        if arch == AUDIT_ARCH_X86_64 && !enosys_rule && !unknown_to_libseccomp.contains(&nr) {
            let b = interp::run(&theirs, arch, nr, &args).unwrap();
            assert_eq!(got.ret, b.ret, "vs libseccomp: nr {nr} args {args:x?}");
            compared += 1;
        }
    }
    assert!(compared > 1000, "{compared}");
    // A balanced search: no syscall walks a long chain (a linear filter for ~300
    // allowed syscalls would take up to ~300 comparisons).
    for (_, nr) in Abi::X86_64.syscalls() {
        let steps = interp::run(ours.program(), AUDIT_ARCH_X86_64, nr, &[0; 6])
            .unwrap()
            .steps;
        assert!(steps <= 20, "nr {nr}: {steps} instructions");
    }
    // Spot checks of the profile's meaning.
    let x = |nr: u32, args: [u64; 6]| {
        interp::run(ours.program(), AUDIT_ARCH_X86_64, nr, &args)
            .unwrap()
            .ret
    };
    let eperm = 0x0005_0001;
    assert_eq!(x(272, [0; 6]), eperm, "unshare");
    assert_eq!(x(165, [0; 6]), eperm, "mount");
    assert_eq!(x(250, [0; 6]), eperm, "keyctl");
    assert_eq!(x(435, [0; 6]), 0x0005_0026, "clone3");
    assert_eq!(
        x(56, [0x11, 0, 0, 0, 0, 0]),
        0x7fff_0000,
        "clone without namespaces"
    );
    assert_eq!(
        x(56, [0x1000_0011, 0, 0, 0, 0, 0]),
        eperm,
        "clone(CLONE_NEWUSER)"
    );
    assert_eq!(x(41, [2, 1, 0, 0, 0, 0]), 0x7fff_0000, "socket(AF_INET)");
    assert_eq!(x(41, [40, 1, 0, 0, 0, 0]), eperm, "socket(AF_VSOCK)");
    assert_eq!(
        x(135, [8, 0, 0, 0, 0, 0]),
        0x7fff_0000,
        "personality(PER_LINUX32)"
    );
    assert_eq!(x(135, [9, 0, 0, 0, 0, 0]), eperm, "personality(9)");
    let i386 = |nr: u32| {
        interp::run(ours.program(), AUDIT_ARCH_I386, nr, &[0; 6])
            .unwrap()
            .ret
    };
    assert_eq!(i386(310), eperm, "i386 unshare");
    assert_eq!(i386(20), 0x7fff_0000, "i386 getpid");
    let x32 = interp::run(
        ours.program(),
        AUDIT_ARCH_X86_64,
        X32_SYSCALL_BIT | 39,
        &[0; 6],
    );
    assert_eq!(x32.unwrap().ret, 0x7fff_0000, "x32 getpid");
    let arm = interp::run(ours.program(), AUDIT_ARCH_ARM, 20, &[0; 6]);
    assert_eq!(arm.unwrap().ret, 0x8000_0000, "unlisted arch is killed");
}

/// The kernel's own BPF checker accepts what we generate: random profiles are
/// installed in forked children (exit 99 means seccomp(2) refused the program).
#[cfg(target_arch = "x86_64")]
#[test]
fn kernel_accepts_random_programs() {
    use casulo_seccomp::sys::{fork_and_wait, probe, ChildEnd};
    let mut rng = Rng(0x5eed_0004);
    let opts = GenOpts {
        libseccomp_compatible: true,
    };
    for case in 0..40 {
        let p = random_profile(&mut rng, &opts);
        let profile: LinuxSeccomp = serde_json::from_value(p.clone()).unwrap();
        let filter = compile(&profile).unwrap().filter;
        let end = fork_and_wait(
            || {
                probe::no_core_dumps();
                match filter.install() {
                    Ok(_) => 0,
                    Err(_) => 99,
                }
            },
            std::time::Duration::from_secs(20),
        )
        .unwrap();
        assert_ne!(end, ChildEnd::Exited(99), "case {case}: refused\n{p}");
    }
}
