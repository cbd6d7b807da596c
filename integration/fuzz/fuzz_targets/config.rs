//! config.json parse + validate must never panic; errors are one line.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let bundle = std::env::temp_dir().join("casulo-fuzz-bundle");
    let _ = std::fs::create_dir_all(bundle.join("rootfs"));
    let r = casulo_core::config::parse(data)
        .and_then(|spec| casulo_core::config::validate(&spec, &bundle));
    if let Err(e) = r {
        assert!(!e.to_string().contains('\n'), "{e}");
    }
});
