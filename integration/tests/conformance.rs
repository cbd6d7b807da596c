//! Conformance run: every generated configuration is run under the runtime
//! named by `CASULO_CONFORMANCE_RUNTIME` (default `/usr/sbin/runc`) as
//! `<runtime> --root <tmp> run --bundle <dir> <id>` with the process
//! `/checker /config.json`; per-section counts are printed (`section P/N`).
//! Fails on any failure not listed in `KNOWN_RUNC_DIFFERENCES` (for runc);
//! for other runtimes every failure counts. Needs root; skipped otherwise.
//!
//! `CASULO_CONFORMANCE_FILTER=<substring>` runs only the matching cases;
//! `CASULO_CONFORMANCE_VERBOSE=1` prints each case's TAP.

use std::path::PathBuf;

use casulo_integration::conformance::run_conformance;

#[test]
fn conformance() {
    let rt = std::env::var_os("CASULO_CONFORMANCE_RUNTIME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/runc"));
    if !nix::unistd::geteuid().is_root() || !rt.exists() {
        eprintln!("skipped: needs root and {}", rt.display());
        return;
    }
    let filter = std::env::var("CASULO_CONFORMANCE_FILTER").unwrap_or_default();
    let verbose = std::env::var_os("CASULO_CONFORMANCE_VERBOSE").is_some();
    let report = run_conformance(&rt, &filter, verbose);
    println!("{report}");
    assert!(report.configs > 0, "no configuration matched {filter:?}");
    assert!(
        report.unexpected.is_empty(),
        "{} unexpected failures:\n{}",
        report.unexpected.len(),
        report.unexpected.join("\n")
    );
}
