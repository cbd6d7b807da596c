//! Conformance run: every generated configuration is run under casulo and under runc
//! (Debian's, to validate the suite itself) as `<runtime> --root <tmp> run --bundle <dir>
//! <id>` with the process `/checker /config.json`; per-section counts are printed side
//! by side (`casulo P/N, runc Q/N`). Fails on any failure not excused: for runc, those in
//! `KNOWN_RUNC_DIFFERENCES`; for casulo, only the host limits among them. Needs root.
//!
//! `CASULO_CONFORMANCE_RUNTIME=<path>` runs only that runtime;
//! `CASULO_CONFORMANCE_FILTER=<substring>` runs only the matching cases;
//! `CASULO_CONFORMANCE_VERBOSE=1` prints each case's TAP.

use std::path::PathBuf;

use casulo_integration::casulo_bin;
use casulo_integration::conformance::{run_conformance, Report};

fn check(name: &str, report: &Report) {
    assert!(report.configs > 0, "{name}: no configuration matched");
    assert!(
        report.unexpected.is_empty(),
        "{name}: {} unexpected failures:\n{}",
        report.unexpected.len(),
        report.unexpected.join("\n")
    );
}

#[test]
fn conformance() {
    if !casulo_integration::prereq::root() {
        return;
    }
    let filter = std::env::var("CASULO_CONFORMANCE_FILTER").unwrap_or_default();
    let verbose = std::env::var_os("CASULO_CONFORMANCE_VERBOSE").is_some();
    if let Some(rt) = std::env::var_os("CASULO_CONFORMANCE_RUNTIME").map(PathBuf::from) {
        let report = run_conformance(&rt, &filter, verbose);
        println!("{report}");
        check(&rt.display().to_string(), &report);
        return;
    }
    let casulo = run_conformance(&casulo_bin(), &filter, verbose);
    println!("{casulo}");
    let runc_path = PathBuf::from("/usr/sbin/runc");
    let runc = runc_path
        .exists()
        .then(|| run_conformance(&runc_path, &filter, verbose));
    if let Some(r) = &runc {
        println!("{r}");
    }
    println!("{:<28} {:>16} {:>16}", "section", "casulo", "runc");
    for (sec, c) in &casulo.per_section {
        let total = c.passed + c.failed;
        let other = runc
            .as_ref()
            .and_then(|r| r.per_section.get(sec))
            .map(|r| format!("{}/{}", r.passed, r.passed + r.failed))
            .unwrap_or_else(|| "-".into());
        println!(
            "{sec:<28} {:>16} {other:>16}",
            format!("{}/{total}", c.passed)
        );
    }
    check("casulo", &casulo);
    if let Some(r) = &runc {
        check("runc", r);
    }
}
