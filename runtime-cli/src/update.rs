//! `casulo update`: runc's flags, or `--resources FILE|-` with a LinuxResources
//! JSON (zeros mean "unset", as dockerd sends them). Flags given with
//! `--resources` override the JSON's fields.

use std::io::Read;
use std::path::PathBuf;

use casulo_core::Runtime;
use clap::Args;
use oci_spec::runtime::LinuxResources;
use serde_json::{json, Map, Value};

type Result<T> = std::result::Result<T, String>;

/// `update` flags (runc's names).
#[derive(Args)]
pub struct UpdateArgs {
    /// LinuxResources JSON file, or `-` for stdin.
    #[arg(short = 'r', long)]
    resources: Option<PathBuf>,
    /// Block IO weight (10-1000).
    #[arg(long = "blkio-weight")]
    blkio_weight: Option<u16>,
    /// CPU CFS period (µs).
    #[arg(long = "cpu-period")]
    cpu_period: Option<u64>,
    /// CPU CFS quota (µs), -1 for unlimited.
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    cpu_quota: Option<i64>,
    /// CPU realtime period (µs).
    #[arg(long = "cpu-rt-period")]
    cpu_rt_period: Option<u64>,
    /// CPU realtime runtime (µs).
    #[arg(long = "cpu-rt-runtime", allow_hyphen_values = true)]
    cpu_rt_runtime: Option<i64>,
    /// CPU shares (relative weight).
    #[arg(long = "cpu-shares", alias = "cpu-share")]
    cpu_shares: Option<u64>,
    /// CPUs allowed (e.g. 0-2,4).
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    /// Memory nodes allowed (e.g. 0).
    #[arg(long = "cpuset-mems")]
    cpuset_mems: Option<String>,
    /// Kernel memory limit (bytes, or with a k/m/g suffix).
    #[arg(long = "kernel-memory", allow_hyphen_values = true)]
    kernel_memory: Option<String>,
    /// Kernel TCP buffer memory limit.
    #[arg(long = "kernel-memory-tcp", allow_hyphen_values = true)]
    kernel_memory_tcp: Option<String>,
    /// Memory limit (bytes, or with a k/m/g suffix; -1 for unlimited).
    #[arg(short = 'm', long, allow_hyphen_values = true)]
    memory: Option<String>,
    /// Memory soft limit.
    #[arg(long = "memory-reservation", allow_hyphen_values = true)]
    memory_reservation: Option<String>,
    /// Memory plus swap limit (-1 for unlimited swap).
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Maximum number of pids (-1 for unlimited).
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Intel RDT L3 cache schema (not supported).
    #[arg(long = "l3-cache-schema")]
    l3_cache_schema: Option<String>,
    /// Intel RDT memory bandwidth schema (not supported).
    #[arg(long = "mem-bw-schema")]
    mem_bw_schema: Option<String>,
    /// Container id.
    id: String,
}

/// A size as runc's flags take it: bytes, or a number with a binary unit
/// suffix (`k`, `m`, `g`, `t`, `p`, optionally followed by `b`/`ib`); `-1` is
/// "unlimited".
pub fn parse_size(flag: &str, s: &str) -> Result<i64> {
    let bad = || format!("--{flag}: invalid size {s:?} (bytes, or a number with k, m, g, t or p)");
    let t = s.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024f64.powi(2),
        "g" => 1024f64.powi(3),
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(bad()),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    let v = n * mult;
    if !v.is_finite() || v < 0.0 || v > i64::MAX as f64 {
        return Err(bad());
    }
    Ok(v as i64)
}

fn read_resources(path: &PathBuf) -> Result<Value> {
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("--resources -: reading stdin: {e}"))?;
    } else {
        text = std::fs::read_to_string(path)
            .map_err(|e| format!("--resources {}: {e}", path.display()))?;
    }
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| format!("--resources {}: invalid JSON: {e}", path.display()))?;
    if !v.is_object() {
        return Err(format!(
            "--resources {}: must be a LinuxResources JSON object",
            path.display()
        ));
    }
    Ok(v)
}

fn set(v: &mut Value, section: &str, key: &str, val: Value) {
    if let Value::Object(root) = v {
        let s = root
            .entry(section)
            .or_insert_with(|| Value::Object(Map::new()));
        if !s.is_object() {
            *s = Value::Object(Map::new());
        }
        if let Value::Object(s) = s {
            s.insert(key.into(), val);
        }
    }
}

/// The LinuxResources the flags and `--resources` ask for.
pub fn resources(a: &UpdateArgs) -> Result<LinuxResources> {
    if a.l3_cache_schema.is_some() || a.mem_bw_schema.is_some() {
        return Err(
            "--l3-cache-schema/--mem-bw-schema: Intel RDT (resctrl) is not supported by casulo"
                .into(),
        );
    }
    let mut v = match &a.resources {
        Some(p) => read_resources(p)?,
        None => json!({}),
    };
    if let Some(w) = a.blkio_weight {
        set(&mut v, "blockIO", "weight", json!(w));
    }
    let cpu: [(&str, Option<Value>); 7] = [
        ("period", a.cpu_period.map(Value::from)),
        ("quota", a.cpu_quota.map(Value::from)),
        ("realtimePeriod", a.cpu_rt_period.map(Value::from)),
        ("realtimeRuntime", a.cpu_rt_runtime.map(Value::from)),
        ("shares", a.cpu_shares.map(Value::from)),
        ("cpus", a.cpuset_cpus.clone().map(Value::from)),
        ("mems", a.cpuset_mems.clone().map(Value::from)),
    ];
    for (k, val) in cpu {
        if let Some(val) = val {
            set(&mut v, "cpu", k, val);
        }
    }
    let mem = [
        ("limit", "memory", &a.memory),
        ("reservation", "memory-reservation", &a.memory_reservation),
        ("swap", "memory-swap", &a.memory_swap),
        ("kernel", "kernel-memory", &a.kernel_memory),
        ("kernelTCP", "kernel-memory-tcp", &a.kernel_memory_tcp),
    ];
    for (k, flag, val) in mem {
        if let Some(s) = val {
            set(&mut v, "memory", k, json!(parse_size(flag, s)?));
        }
    }
    if let Some(p) = a.pids_limit {
        set(&mut v, "pids", "limit", json!(p));
    }
    let text = v.to_string();
    let de = &mut serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(de)
        .map_err(|e| format!("--resources: linux.resources.{}: {}", e.path(), e.inner()))
}

/// Runs `update`.
pub fn run(rt: &Runtime, a: &UpdateArgs) -> Result<i32> {
    let r = resources(a)?;
    rt.update(&a.id, &r).map_err(|e| e.to_string())?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("memory", "-1"), Ok(-1));
        assert_eq!(parse_size("memory", "1048576"), Ok(1 << 20));
        assert_eq!(parse_size("memory", "100M"), Ok(100 << 20));
        assert_eq!(parse_size("memory", "2g"), Ok(2 << 30));
        assert_eq!(parse_size("memory", "64kb"), Ok(64 << 10));
        assert_eq!(parse_size("memory", "1.5GiB"), Ok(3 << 29));
        assert!(parse_size("memory", "12x")
            .unwrap_err()
            .contains("--memory"));
        assert!(parse_size("memory", "-5").is_err());
    }
}
