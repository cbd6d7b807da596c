//! Differential tests against libseccomp: the same profiles through libseccomp's
//! seccomp_export_bpf, both programs run by the crate's interpreter, decisions
//! compared; plus the syscall tables checked against libseccomp's.

mod common;

use std::io::{Read, Seek};

use casulo_seccomp::arch::{
    Abi, AUDIT_ARCH_ARM, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT,
};
use casulo_seccomp::{compile, interp};
use common::{inputs, listed_abis, oracle, random_profile, GenOpts, Rng};
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::LinuxSeccomp;
use serde_json::Value;

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
