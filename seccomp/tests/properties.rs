//! Random profiles: the compiled program, run by the crate's BPF interpreter, must
//! agree with an oracle written from the profile's JSON meaning (tests/common), and
//! the kernel must accept the programs.

mod common;

use casulo_seccomp::{compile, interp};
use common::{inputs, oracle, random_profile, GenOpts, Rng};
use oci_spec::runtime::LinuxSeccomp;

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
