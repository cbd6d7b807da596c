//! Shared by runtime-core's integration tests: skips are printed and counted.

use casulo_core::cgroups;

pub mod fixture;

/// Prints and counts a skip (`CASULO_SKIP_LOG`, as casulo-integration's `prereq` does);
/// a missing prerequisite (`ci_fails`) fails the test under `CI=true`.
pub fn skip(why: &str, ci_fails: bool) {
    let name = std::thread::current().name().unwrap_or("?").to_string();
    assert!(
        !ci_fails || std::env::var("CI").as_deref() != Ok("true"),
        "{name}: {why} under CI=true"
    );
    println!("SKIPPED {name}: {why}");
    if let Some(log) = std::env::var_os("CASULO_SKIP_LOG") {
        use std::io::Write;
        let f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(log);
        let _ = f.map(|mut f| writeln!(f, "{name}: {why}"));
    }
}

pub fn usable() -> bool {
    if !nix::unistd::geteuid().is_root() {
        skip("cgroup tests need root", true);
        return false;
    }
    match cgroups::detect::layout() {
        Ok(_) => true,
        Err(e) => {
            skip(&format!("no cgroup layout detected: {e}"), true);
            false
        }
    }
}
