//! config-linux.md "Memory policy" (runtime-spec 1.3): the process's NUMA policy, read
//! back with get_mempolicy(2).

use serde_json::Value;

use crate::tap::Tap;
use crate::{at, strings};

const S: &str = "Memory policy";

fn mode_value(name: &str) -> Option<i32> {
    Some(match name {
        "MPOL_DEFAULT" => 0,
        "MPOL_PREFERRED" => 1,
        "MPOL_BIND" => 2,
        "MPOL_INTERLEAVE" => 3,
        "MPOL_LOCAL" => 4,
        "MPOL_PREFERRED_MANY" => 5,
        "MPOL_WEIGHTED_INTERLEAVE" => 6,
        _ => return None,
    })
}

fn flag_value(name: &str) -> Option<i32> {
    Some(match name {
        "MPOL_F_NUMA_BALANCING" => 1 << 13,
        "MPOL_F_RELATIVE_NODES" => 1 << 14,
        "MPOL_F_STATIC_NODES" => 1 << 15,
        _ => return None,
    })
}

fn nodes(s: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
            out.extend(a..=b);
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Checks `linux.memoryPolicy` (nothing when the config has none).
pub fn check(t: &mut Tap, c: &Value) {
    let p = at(c, &["linux", "memoryPolicy"]);
    let Some(mode) = p["mode"].as_str() else {
        return;
    };
    let Some(want) = mode_value(mode) else {
        t.fail(S, "mode", &"a known mode", &mode);
        return;
    };
    let flags: i32 = strings(&p["flags"])
        .iter()
        .filter_map(|f| flag_value(f))
        .sum();
    let want_nodes = nodes(p["nodes"].as_str().unwrap_or(""));
    let (got, got_nodes) = match crate::sys::mempolicy() {
        Ok(v) => v,
        Err(e) => {
            t.fail(S, "get_mempolicy", &"success", &format!("errno {e}"));
            return;
        }
    };
    // MPOL_PREFERRED without nodes is local allocation.
    let local_ok = mode == "MPOL_PREFERRED" && want_nodes.is_empty() && got == 4;
    if local_ok {
        t.pass(S, "mode MPOL_PREFERRED without nodes (local)");
    } else {
        t.eq(S, &format!("mode {mode} | flags"), want | flags, got);
    }
    if !want_nodes.is_empty() {
        t.eq(S, "nodes", want_nodes, got_nodes);
    }
}
