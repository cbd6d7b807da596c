//! Runs every generated configuration under a runtime and tables the
//! checker's results per spec section.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::bundle::{host_ns_env, remove_cgroup_parent, state_root, Bundle};
use crate::known::{is_runc, known_runc_difference};
use crate::tap::{parse_tap, SectionCount};

/// The outcome of [`run_conformance`].
#[derive(Debug, Default)]
pub struct Report {
    /// The runtime binary that was run.
    pub runtime: String,
    /// Number of configurations run.
    pub configs: usize,
    /// Checks per section, over all configurations. Section "Runtime"
    /// counts configurations that did (or did not) run to a TAP plan.
    pub per_section: BTreeMap<String, SectionCount>,
    /// Failures not excused, as `<case>: <section>: <what>: expected …`.
    pub unexpected: Vec<String>,
    /// Failures excused by [`crate::KNOWN_RUNC_DIFFERENCES`] (runc only):
    /// `(case prefix, failure prefix)` → count.
    pub excused: BTreeMap<(&'static str, &'static str), usize>,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "conformance of {} over {} configs in {:.1?}",
            self.runtime, self.configs, self.elapsed
        )?;
        writeln!(f, "{:<26} {:>11} {:>8}", "section", "passed/N", "skipped")?;
        for (sec, n) in &self.per_section {
            let pn = format!("{}/{}", n.passed, n.passed + n.failed);
            writeln!(f, "{sec:<26} {pn:>11} {:>8}", n.skipped)?;
        }
        for ((case, failure), n) in &self.excused {
            writeln!(f, "known runc difference x{n}: case {case:?}*, {failure}")?;
        }
        for u in &self.unexpected {
            writeln!(f, "UNEXPECTED: {u}")?;
        }
        Ok(())
    }
}

/// Runs each case of [`crate::gen::cases`] whose name contains `filter`
/// under `runtime` (see [`Bundle::run`]), with the process
/// `/checker /config.json` and `CASULO_HOST_NS` in its env. With `verbose`,
/// prints each case's TAP. Removes this process's cgroups and runtime state
/// directory at the end. Needs root.
pub fn run_conformance(runtime: &Path, filter: &str, verbose: bool) -> Report {
    let _ = crate::checker_path(); // build it before timing
    let start = Instant::now();
    let mut r = Report {
        runtime: runtime.display().to_string(),
        ..Report::default()
    };
    let host_ns = host_ns_env();
    for case in crate::gen::cases()
        .iter()
        .filter(|c| c.name.contains(filter))
    {
        r.configs += 1;
        let mut b = Bundle::new(&["/checker", "/config.json"]);
        b.spec = case.apply(&b.spec, &b.dir);
        if let Some(p) = b.spec.process_mut().as_mut() {
            let mut env = p.env().clone().unwrap_or_default();
            env.push(host_ns.clone());
            p.set_env(Some(env));
        }
        b.write_config();
        let out = b.run(runtime);
        let stdout = String::from_utf8_lossy(&out.stdout);
        if verbose {
            println!("# case {}\n{stdout}", case.name);
        }
        let s = parse_tap(&stdout);
        let mut failures = s.failures.clone();
        let ran = r.per_section.entry("Runtime".into()).or_default();
        if s.plan.is_none() {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().last().unwrap_or("");
            failures.push(format!(
                "Runtime: run: expected exit 0 with a TAP plan, got {}: {last}",
                out.status
            ));
            ran.failed += 1;
        } else {
            ran.passed += 1;
        }
        for (sec, n) in &s.per_section {
            let e = r.per_section.entry(sec.clone()).or_default();
            e.passed += n.passed;
            e.failed += n.failed;
            e.skipped += n.skipped;
        }
        for f in failures {
            match known_runc_difference(&case.name, &f).filter(|k| is_runc(runtime) || k.host_limit)
            {
                Some(k) => *r.excused.entry((k.case, k.failure)).or_insert(0) += 1,
                None => r.unexpected.push(format!("{}: {f}", case.name)),
            }
        }
    }
    remove_cgroup_parent();
    let _ = std::fs::remove_dir_all(state_root());
    r.elapsed = start.elapsed();
    r
}
