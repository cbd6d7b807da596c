//! Conformance run: every generated configuration ([`gen::cases`]) is run
//! under the runtime named by `CASULO_CONFORMANCE_RUNTIME` (default
//! `/usr/sbin/runc`) as `<runtime> --root <tmp> run --bundle <dir> <id>`
//! with the process `/checker /config.json`; the checker's TAP is parsed and
//! per-section counts are printed (`section P/N`). Fails on any failure not
//! listed in `KNOWN_RUNC_DIFFERENCES` (for runc) — for other runtimes every
//! failure counts. Needs root; skipped otherwise.
//!
//! `CASULO_CONFORMANCE_FILTER=<substring>` runs only the matching cases;
//! `CASULO_CONFORMANCE_VERBOSE=1` prints each case's TAP.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use casulo_integration::bundle::{host_ns_env, remove_cgroup_parent, state_root};
use casulo_integration::known::{is_runc, known_runc_difference};
use casulo_integration::{gen, parse_tap, Bundle, SectionCount};

fn runtime() -> PathBuf {
    std::env::var_os("CASULO_CONFORMANCE_RUNTIME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/runc"))
}

#[test]
fn conformance() {
    let rt = runtime();
    if !nix::unistd::geteuid().is_root() || !rt.exists() {
        eprintln!("skipped: needs root and {}", rt.display());
        return;
    }
    let filter = std::env::var("CASULO_CONFORMANCE_FILTER").unwrap_or_default();
    let verbose = std::env::var_os("CASULO_CONFORMANCE_VERBOSE").is_some();
    let _ = casulo_integration::checker_path(); // build it before timing
    let start = Instant::now();
    let mut table: BTreeMap<String, SectionCount> = BTreeMap::new();
    let mut unexpected = Vec::new();
    let mut excused: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let cases = gen::cases();
    let mut ran = 0;
    let (mut build_time, mut run_time) = (Duration::ZERO, Duration::ZERO);
    for case in cases.iter().filter(|c| c.name.contains(&filter)) {
        ran += 1;
        let t0 = Instant::now();
        let mut b = Bundle::new(&["/checker", "/config.json"]);
        b.spec = case.apply(&b.spec, &b.dir);
        if let Some(p) = b.spec.process_mut().as_mut() {
            let mut env = p.env().clone().unwrap_or_default();
            env.push(host_ns_env());
            p.set_env(Some(env));
        }
        b.write_config();
        let t1 = Instant::now();
        let out = b.run(&rt);
        build_time += t1 - t0;
        run_time += t1.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if verbose {
            println!("# case {}\n{stdout}", case.name);
        }
        let s = parse_tap(&stdout);
        let mut failures = s.failures.clone();
        if s.plan.is_none() {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().last().unwrap_or("").to_string();
            failures.push(format!(
                "Runtime: run: expected exit 0 with a TAP plan, got {}: {last}",
                out.status
            ));
            table.entry("Runtime".into()).or_default().failed += 1;
        } else {
            table.entry("Runtime".into()).or_default().passed += 1;
        }
        for (sec, n) in &s.per_section {
            let e = table.entry(sec.clone()).or_default();
            e.passed += n.passed;
            e.failed += n.failed;
            e.skipped += n.skipped;
        }
        for f in failures {
            let line = format!("{}: {f}", case.name);
            match known_runc_difference(&case.name, &f).filter(|_| is_runc(&rt)) {
                Some(k) => *excused.entry((k.case, k.failure)).or_insert(0) += 1,
                None => unexpected.push(line),
            }
        }
    }
    remove_cgroup_parent();
    let _ = std::fs::remove_dir_all(state_root());

    println!(
        "conformance of {} over {ran} configs in {:.1?}",
        rt.display(),
        start.elapsed()
    );
    println!("  bundles built in {build_time:.1?}, run in {run_time:.1?}");
    println!("{:<26} {:>9} {:>8}", "section", "passed/N", "skipped");
    for (sec, n) in &table {
        let total = n.passed + n.failed;
        println!(
            "{sec:<26} {:>9} {:>8}",
            format!("{}/{total}", n.passed),
            n.skipped
        );
    }
    for ((case, failure), n) in &excused {
        println!("known runc difference x{n}: case {case:?}*, {failure}");
    }
    for u in &unexpected {
        println!("UNEXPECTED: {u}");
    }
    assert!(
        unexpected.is_empty(),
        "{} unexpected failures",
        unexpected.len()
    );
}
