//! JSON → LinuxSeccomp → compile must never panic; errors are one line.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = serde_json::from_slice::<oci_spec::runtime::LinuxSeccomp>(data) {
        if let Err(e) = casulo_seccomp::compile(&p) {
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }
});
