//! Skipped tests are loud and counted. A test whose prerequisite is missing (root, an
//! engine binary, a package of `.ci/packages.d/`) calls [`skip`]: under `CI=true` that
//! fails the test; elsewhere it prints the reason and appends `<test>: <reason>` to the
//! file named by `CASULO_SKIP_LOG` (scripts/test.sh sets it and prints the count at the
//! end). A test that does not apply to this host's layout (e.g. hugetlb not delegated)
//! calls [`not_applicable`]: printed and counted, never a failure.

use std::io::Write;

/// The current test's name (libtest names each test's thread after it).
fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("unnamed test")
        .to_string()
}

fn record(kind: &str, why: &str) {
    let line = format!("{}: {kind}: {why}", test_name());
    println!("SKIPPED {line}");
    eprintln!("SKIPPED {line}");
    if let Some(path) = std::env::var_os("CASULO_SKIP_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// Whether this run is CI's (`CI=true`), where no prerequisite may be missing.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A prerequisite is missing: fails the test under `CI=true`, else prints and counts
/// the skip. The caller returns from the test right after.
pub fn skip(why: &str) {
    if in_ci() {
        panic!("missing prerequisite under CI=true: {why}");
    }
    record("missing prerequisite", why);
}

/// The test does not apply to this host (its cgroup layout, its kernel): printed and
/// counted, also under CI.
pub fn not_applicable(why: &str) {
    record("not applicable here", why);
}

/// True when running as root; otherwise records the skip (a failure under CI).
pub fn root() -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        skip("needs root");
    }
    root
}

/// True when systemd is PID 1 here (`/run/systemd/system`). Otherwise the test does not
/// apply ([`not_applicable`]: the systemd VM, `scripts/v2vm/run-in-v2vm.sh -S`, runs it),
/// except under `CASULO_EXPECT_SYSTEMD=1` (that VM's run), where it fails the test.
pub fn systemd() -> bool {
    if std::path::Path::new("/run/systemd/system").is_dir() {
        return true;
    }
    if std::env::var("CASULO_EXPECT_SYSTEMD").as_deref() == Ok("1") {
        panic!("CASULO_EXPECT_SYSTEMD=1 but systemd is not running (/run/systemd/system)");
    }
    not_applicable("systemd is not PID 1 here; scripts/v2vm/run-in-v2vm.sh -S runs this");
    false
}
