//! Issue 13 class 8: `process.scheduler.flags` take config.md's names
//! (`SCHED_FLAG_RESET_ON_FORK`, `SCHED_FLAG_DL_OVERRUN`, …) and the policy is applied:
//! read from /proc/<pid>/stat inside the container (policy, field 41; nice, field 19),
//! and reset-on-fork seen in a child of the container process.

mod common;

use casulo_integration::Bundle;
use common::{is_root, Env};
use serde_json::json;

/// (nice, policy) of a /proc/<pid>/stat line.
fn nice_policy(stat: &str) -> (i64, u32) {
    let rest = stat.rsplit_once(')').expect("stat line").1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state).
    (f[19 - 3].parse().unwrap(), f[41 - 3].parse().unwrap())
}

#[test]
fn scheduler_flags_with_the_specs_names_are_applied() {
    if !is_root() {
        return;
    }
    let env = Env::new("sched-flags");
    let b = Bundle::new(&["sh", "-c", "cat /proc/$$/stat; cat /proc/self/stat; true"]);
    let mut raw = serde_json::to_value(&b.spec).unwrap();
    raw["process"]["scheduler"] = json!({
        "policy": "SCHED_BATCH",
        "nice": -5,
        "flags": ["SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_RECLAIM", "SCHED_FLAG_DL_OVERRUN"],
    });
    common::write_raw(&b, &raw);
    let r = env.run_bundle(&b);
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{r:?}");
    // SCHED_BATCH is 3; the shell has the configured nice.
    assert_eq!(nice_policy(lines[0]), (-5, 3), "{}", lines[0]);
    // Reset on fork: a child gets nice 0 back (sched(7)); the policy is not RT, so kept.
    assert_eq!(nice_policy(lines[1]), (0, 3), "{}", lines[1]);
}
