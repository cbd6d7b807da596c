//! Compile time and instructions executed per syscall for a Docker-like profile
//! (tests/docker_default.json), next to libseccomp's program for the same profile.
//! Run: `cargo bench -p casulo-seccomp --bench compile`.

use std::io::{Read, Seek};
use std::time::Instant;

use casulo_seccomp::arch::{Abi, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64};
use casulo_seccomp::{compile, interp, Model};
use oci_spec::runtime::LinuxSeccomp;

fn stats(prog: &[libc::sock_filter], cases: &[(u32, u32)]) -> (usize, f64, usize) {
    let mut steps: Vec<usize> = cases
        .iter()
        .map(|&(arch, nr)| interp::run(prog, arch, nr, &[0; 6]).expect("runs").steps)
        .collect();
    steps.sort_unstable();
    let avg = steps.iter().sum::<usize>() as f64 / steps.len() as f64;
    (steps[0], avg, steps[steps.len() - 1])
}

fn libseccomp_program(model: &Model) -> Option<Vec<libc::sock_filter>> {
    use libseccomp::{ScmpAction, ScmpArch, ScmpFilterContext};
    let mut ctx = ScmpFilterContext::new_filter(ScmpAction::Errno(1)).ok()?;
    ctx.add_arch(ScmpArch::X86).ok()?;
    ctx.add_arch(ScmpArch::X32).ok()?;
    // Unconditional allows only: an upper bound for the conditional ones is not
    // needed for a per-syscall instruction count of the common path.
    for ((abi, nr), rules) in &model.rules {
        if *abi == Abi::X86_64 && rules.iter().any(|r| r.conds.is_empty()) {
            ctx.add_rule(ScmpAction::Allow, *nr as i32).ok()?;
        }
    }
    let path = std::env::temp_dir().join(format!("casulo-bench-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .ok()?;
    std::fs::remove_file(&path).ok()?;
    ctx.export_bpf(&mut f).ok()?;
    f.rewind().ok()?;
    let mut b = Vec::new();
    f.read_to_end(&mut b).ok()?;
    Some(
        b.chunks_exact(8)
            .map(|c| libc::sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect(),
    )
}

fn main() {
    let json = include_str!("../tests/docker_default.json");
    let profile: LinuxSeccomp = serde_json::from_str(json).expect("fixture parses");
    let names = profile
        .syscalls()
        .iter()
        .flatten()
        .map(|s| s.names().len())
        .sum::<usize>();

    let iters = 200;
    let start = Instant::now();
    let mut len = 0;
    for _ in 0..iters {
        len = compile(&profile).expect("compiles").filter.program().len();
    }
    let per = start.elapsed() / iters;
    println!("docker-like profile: {names} syscall names, 3 architectures");
    println!("compile (validate + BPF): {per:?} per profile (mean of {iters}), {len} instructions");

    let compiled = compile(&profile).unwrap();
    let prog = compiled.filter.program();
    let x86_64: Vec<(u32, u32)> = Abi::X86_64
        .syscalls()
        .map(|(_, nr)| (AUDIT_ARCH_X86_64, nr))
        .collect();
    let i386: Vec<(u32, u32)> = Abi::X86
        .syscalls()
        .map(|(_, nr)| (AUDIT_ARCH_I386, nr))
        .collect();
    let named: Vec<(u32, u32)> = {
        let (model, _) = Model::from_oci(&profile).unwrap();
        model
            .rules
            .keys()
            .filter(|(abi, _)| *abi == Abi::X86_64)
            .map(|(_, nr)| (AUDIT_ARCH_X86_64, *nr))
            .collect()
    };
    for (label, cases) in [
        ("every x86_64 syscall", &x86_64),
        ("x86_64 syscalls the profile names", &named),
        ("every i386 syscall", &i386),
    ] {
        let (min, avg, max) = stats(prog, cases);
        println!(
            "casulo, {label} ({} syscalls): instructions executed min {min}, mean {avg:.1}, max {max}",
            cases.len()
        );
    }
    let (model, _) = Model::from_oci(&profile).unwrap();
    if let Some(theirs) = libseccomp_program(&model) {
        let (min, avg, max) = stats(&theirs, &x86_64);
        println!(
            "libseccomp 2.5 (default settings, unconditional x86_64 allows only: {} instructions), every x86_64 syscall: min {min}, mean {avg:.1}, max {max}",
            theirs.len()
        );
    }
}
