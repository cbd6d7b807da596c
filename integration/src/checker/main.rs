//! `casulo-checker`: runs inside a container as `/checker /config.json`,
//! compares every property observable from inside with the OCI config, and
//! prints TAP (`ok N - <section>: <what>` / `not ok N - …: expected X, got Y`,
//! then `1..N`). Exits 0 iff every check passed.
//!
//! Section names follow the runtime spec: "Process", "Hostname", "Root",
//! "Mounts" (config.md); "Namespaces", "User namespace mappings", "Devices",
//! "Default Devices", "Control groups", "Sysctl", "Masked Paths",
//! "Readonly Paths", "Mount Propagation" (config-linux.md).
//!
//! `/checker --syscalls` instead prints `<name> <errno>` for unshare, mount, keyctl,
//! clone3 and getpid (0 = allowed), for seccomp tests.
//!
//! `/checker --grab-exe <dir>` is the CVE-2019-5736 attacker of cve_exe.rs (grab.rs).
//! `/checker --ids` prints the `Uid:` and `Gid:` lines of /proc/self/status (real,
//! effective, saved, fs), for setuid tests.
//!
//! Optional env (set by the test in `process.env`):
//! * `CASULO_HOST_NS=pid=<ino>,net=<ino>,…`: the host's namespace inodes;
//!   without it the namespace checks other than pid 1 are skipped.

#[path = "../caps.rs"]
mod caps;
mod grab;
mod linux;
mod mounts;
mod numa;
mod process;
mod sys;
mod tap;

use serde_json::Value;
use tap::Tap;

fn main() {
    // `/checker --grab-exe <dir>`: the CVE-2019-5736 attacker loop (grab.rs).
    if std::env::args().nth(1).as_deref() == Some("--grab-exe") {
        grab::run(&std::env::args().nth(2).unwrap_or_else(|| "/out".into()));
    }
    // `/checker --syscalls`: print `name errno` for a few syscalls (seccomp tests).
    if std::env::args().nth(1).as_deref() == Some("--syscalls") {
        for (name, errno) in sys::syscall_probe() {
            println!("{name} {errno}");
        }
        return;
    }
    if std::env::args().nth(1).as_deref() == Some("--ids") {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        for l in status.lines() {
            if l.starts_with("Uid:") || l.starts_with("Gid:") {
                println!("{l}");
            }
        }
        return;
    }
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/config.json".to_string());
    let mut t = Tap::default();
    let config: Value = match std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => {
            t.fail("Checker", "read config", &path, &e);
            t.finish();
        }
    };
    // Mount-table based checks first: later checks only read.
    let table = mounts::MountInfo::read();
    process::check(&mut t, &config);
    linux::check_hostname(&mut t, &config);
    linux::check_namespaces(&mut t, &config);
    linux::check_id_mappings(&mut t, &config);
    mounts::check_root(&mut t, &config, &table);
    mounts::check_mounts(&mut t, &config, &table);
    mounts::check_masked(&mut t, &config, &table);
    mounts::check_readonly(&mut t, &config, &table);
    linux::check_devices(&mut t, &config);
    linux::check_sysctl(&mut t, &config);
    linux::check_cgroups(&mut t, &config);
    numa::check(&mut t, &config);
    t.finish();
}

/// `config[a][b]…`, or `Value::Null` when any step is missing.
pub fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    let mut cur = v;
    for p in path {
        cur = match cur.get(p) {
            Some(x) => x,
            None => return &Value::Null,
        };
    }
    cur
}

/// The strings of a JSON array (non-strings are dropped; null → empty).
pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
