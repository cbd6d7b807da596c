//! A structured fuzzer that runs on stable Rust with no extra install (CI:
//! `scripts/test.d/fuzz.sh`). Targets:
//!
//! - `config`: `casulo_core::config::parse` then `validate` on a config.json;
//! - `seccomp`: arbitrary JSON → `LinuxSeccomp` → `casulo_seccomp::compile`.
//!
//! No coverage feedback: seeds from the corpus directory are mutated (byte flips and
//! splices, JSON-aware replacements of values by values of other seeds, numeric edge
//! values, spec field names and keywords), and an input whose outcome (ok, or the
//! error's field and kind) was not seen before joins the in-memory pool. Every input
//! runs under `catch_unwind`; a panic is reported with its input, which is saved to
//! the corpus directory as `crash-<hash>.json` (so it is replayed by every later run),
//! and the exit status is 1. Errors must be one line naming a field.
//!
//! Usage: `casulo-fuzz <config|seccomp> --corpus DIR [--seconds N] [--seed N]`

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Words the mutator inserts: field names of the spec, seccomp keywords, edge values.
const DICT: &[&str] = &[
    "ociVersion",
    "process",
    "args",
    "env",
    "cwd",
    "user",
    "uid",
    "gid",
    "umask",
    "additionalGids",
    "capabilities",
    "bounding",
    "effective",
    "rlimits",
    "type",
    "hard",
    "soft",
    "noNewPrivileges",
    "root",
    "path",
    "readonly",
    "hostname",
    "mounts",
    "destination",
    "source",
    "options",
    "hooks",
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
    "timeout",
    "linux",
    "namespaces",
    "uidMappings",
    "gidMappings",
    "containerID",
    "hostID",
    "size",
    "devices",
    "major",
    "minor",
    "fileMode",
    "resources",
    "memory",
    "limit",
    "cpu",
    "shares",
    "quota",
    "period",
    "cpus",
    "pids",
    "blockIO",
    "cgroupsPath",
    "sysctl",
    "maskedPaths",
    "readonlyPaths",
    "rootfsPropagation",
    "timeOffsets",
    "personality",
    "ioPriority",
    "scheduler",
    "seccomp",
    "defaultAction",
    "defaultErrnoRet",
    "architectures",
    "flags",
    "listenerPath",
    "syscalls",
    "names",
    "action",
    "errnoRet",
    "index",
    "value",
    "valueTwo",
    "op",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_AARCH64",
    "SCMP_CMP_EQ",
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_GT",
    "SCMP_CMP_GE",
    "SCMP_CMP_MASKED_EQ",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "user",
    "mount",
    "pid",
    "network",
    "ipc",
    "uts",
    "cgroup",
    "time",
    "bind",
    "rbind",
    "ro",
    "nosuid",
    "/",
    "/proc",
    "../..",
    "",
    "RLIMIT_NOFILE",
    "CAP_SYS_ADMIN",
    "read",
    "write",
    "clone",
    "clone3",
    "personality",
];

const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "5",
    "6",
    "7",
    "255",
    "256",
    "4095",
    "4096",
    "4097",
    "65535",
    "65536",
    "2147483647",
    "2147483648",
    "-2147483648",
    "-2147483649",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "1e308",
    "1e400",
    "-0",
    "0.5",
    "1e-7",
];

const TOKENS: &[&str] = &[
    "null",
    "true",
    "false",
    "[]",
    "{}",
    "\"\"",
    "\"\\u0000\"",
    ",",
    ":",
    "[",
    "]",
    "{",
    "}",
    "\"",
    "\\",
    "\"\\ud800\"",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Target {
    Config,
    Seccomp,
}

/// Runs one input; `Err` is a broken contract (an error that is not one line naming
/// a field). Returns the outcome's signature.
fn run_one(target: Target, data: &[u8], bundle: &Path) -> Result<String, String> {
    let msg = match target {
        Target::Config => match casulo_core::config::parse(data) {
            Ok(spec) => match casulo_core::config::validate(&spec, bundle) {
                Ok(()) => return Ok("ok".into()),
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        },
        Target::Seccomp => {
            let Ok(profile) = serde_json::from_slice::<oci_spec::runtime::LinuxSeccomp>(data)
            else {
                return Ok("not a LinuxSeccomp".into());
            };
            match casulo_seccomp::compile(&profile) {
                Ok(c) => {
                    let _ = c.filter.program().len();
                    return Ok("ok".into());
                }
                Err(e) => e.to_string(),
            }
        }
    };
    if msg.is_empty() || msg.contains('\n') {
        return Err(format!("error is not one line: {msg:?}"));
    }
    // The field: `config.json: <field>: …` or `<field>: …` for seccomp.
    let rest = msg.strip_prefix("config.json: ").unwrap_or(&msg);
    let field = rest.split(": ").next().unwrap_or("");
    let named = match target {
        Target::Config => !field.is_empty() && msg.starts_with("config.json: "),
        Target::Seccomp => {
            field.starts_with("linux.seccomp") || msg.starts_with("compiled seccomp program")
        }
    };
    if !named {
        return Err(format!("error names no field: {msg:?}"));
    }
    // Signature: the field without indices, and the first word of the reason.
    // Mutated keys are arbitrary text: keep the shape small so the pool is not flooded.
    let shape: String = field
        .chars()
        .filter(|c| c.is_ascii_alphabetic() || *c == '.')
        .take(40)
        .collect();
    let reason = rest[field.len()..].split_whitespace().nth(1).unwrap_or("");
    Ok(format!("{shape}|{reason}"))
}

fn all_values<'a>(v: &'a Value, out: &mut Vec<&'a Value>, depth: usize) {
    out.push(v);
    if depth > 24 {
        return;
    }
    match v {
        Value::Array(a) => a.iter().for_each(|x| all_values(x, out, depth + 1)),
        Value::Object(o) => o.values().for_each(|x| all_values(x, out, depth + 1)),
        _ => {}
    }
}

/// A mutable reference to the `n`th node (pre-order) of `v`.
fn nth_mut<'a>(v: &'a mut Value, n: &mut usize) -> Option<&'a mut Value> {
    if *n == 0 {
        return Some(v);
    }
    *n -= 1;
    match v {
        Value::Array(a) => {
            for x in a.iter_mut() {
                if let Some(r) = nth_mut(x, n) {
                    return Some(r);
                }
            }
            None
        }
        Value::Object(o) => {
            for x in o.values_mut() {
                if let Some(r) = nth_mut(x, n) {
                    return Some(r);
                }
            }
            None
        }
        _ => None,
    }
}

fn random_value(rng: &mut Rng, donors: &[Value]) -> Value {
    match rng.below(6) {
        0 => serde_json::from_str::<Value>(rng.pick::<&str>(NUMBERS)).unwrap_or(Value::Null),
        1 => Value::String(rng.pick(DICT).to_string()),
        2 => Value::String("A".repeat(rng.below(5000))),
        3 if !donors.is_empty() => {
            let mut vals = Vec::new();
            all_values(rng.pick(donors), &mut vals, 0);
            (*rng.pick(&vals)).clone()
        }
        4 => serde_json::from_str::<Value>(rng.pick::<&str>(TOKENS)).unwrap_or(Value::Null),
        _ => Value::Array(vec![Value::String(rng.pick(DICT).to_string())]),
    }
}

/// One JSON-aware mutation of `v`.
fn mutate_json(v: &mut Value, rng: &mut Rng, donors: &[Value]) {
    let mut count = Vec::new();
    all_values(v, &mut count, 0);
    let total = count.len();
    let mut n = rng.below(total);
    let Some(node) = nth_mut(v, &mut n) else {
        return;
    };
    let choice = rng.below(7);
    let fresh = random_value(rng, donors);
    match node {
        Value::Object(o) if choice == 0 && !o.is_empty() => {
            let k = o
                .keys()
                .nth(rng.below(o.len()))
                .cloned()
                .unwrap_or_default();
            o.remove(&k);
        }
        Value::Object(o) if choice == 1 => {
            o.insert(rng.pick(DICT).to_string(), fresh);
        }
        Value::Array(a) if choice == 2 && !a.is_empty() => {
            let x = a[rng.below(a.len())].clone();
            for _ in 0..=rng.below(3) {
                a.push(x.clone());
            }
        }
        Value::Array(a) if choice == 3 && !a.is_empty() => {
            a.remove(rng.below(a.len()));
        }
        Value::Number(_) if choice == 4 => {
            *node = serde_json::from_str::<Value>(rng.pick::<&str>(NUMBERS)).unwrap_or(Value::Null)
        }
        _ => *node = fresh,
    }
}

/// One byte-level mutation.
fn mutate_bytes(d: &mut Vec<u8>, rng: &mut Rng) {
    if d.is_empty() {
        d.extend_from_slice(rng.pick(TOKENS).as_bytes());
        return;
    }
    let i = rng.below(d.len());
    match rng.below(6) {
        0 => d[i] ^= 1 << rng.below(8),
        1 => {
            let end = (i + rng.below(16)).min(d.len());
            d.drain(i..end);
        }
        2 => {
            let t = rng.pick(NUMBERS).as_bytes();
            d.splice(i..i, t.iter().copied());
        }
        3 => {
            let t = rng.pick(TOKENS).as_bytes();
            d.splice(i..i, t.iter().copied());
        }
        4 => {
            let end = (i + rng.below(64)).min(d.len());
            let chunk = d[i..end].to_vec();
            let at = rng.below(d.len());
            d.splice(at..at, chunk);
        }
        _ => d.truncate(i),
    }
}

fn mutate(seed: &[u8], rng: &mut Rng, donors: &[Value]) -> Vec<u8> {
    let json = if rng.below(4) != 0 {
        serde_json::from_slice::<Value>(seed).ok()
    } else {
        None
    };
    match json {
        Some(mut v) => {
            for _ in 0..=rng.below(4) {
                mutate_json(&mut v, rng, donors);
            }
            let mut out = serde_json::to_vec(&v).unwrap_or_default();
            if rng.below(10) == 0 {
                mutate_bytes(&mut out, rng);
            }
            out
        }
        None => {
            let mut d = seed.to_vec();
            for _ in 0..=rng.below(4) {
                mutate_bytes(&mut d, rng);
            }
            d
        }
    }
}

/// The input for a report, cut to 2000 bytes.
fn show(d: &[u8]) -> String {
    let s = String::from_utf8_lossy(&d[..d.len().min(2000)]).into_owned();
    if d.len() > 2000 {
        format!("{s}… ({} bytes)", d.len())
    } else {
        s
    }
}

fn fnv(d: &[u8]) -> u64 {
    d.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

static PANIC_MSG: Mutex<String> = Mutex::new(String::new());

fn usage() -> ! {
    eprintln!("usage: casulo-fuzz <config|seccomp> --corpus DIR [--seconds N] [--seed N]");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let target = match args.first().map(String::as_str) {
        Some("config") => Target::Config,
        Some("seccomp") => Target::Seccomp,
        _ => usage(),
    };
    let (mut corpus, mut seconds, mut seed) = (None::<PathBuf>, 10u64, 0u64);
    let mut it = args[1..].iter();
    while let Some(a) = it.next() {
        let v = it.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--corpus" => corpus = Some(PathBuf::from(v)),
            "--seconds" => seconds = v.parse().unwrap_or_else(|_| usage()),
            "--seed" => seed = v.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    let corpus = corpus.unwrap_or_else(|| usage());
    if seed == 0 {
        seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1;
    }
    let mut rng = Rng(seed);
    let mut pool: Vec<Vec<u8>> = Vec::new();
    let mut names = Vec::new();
    for e in std::fs::read_dir(&corpus).unwrap_or_else(|e| {
        eprintln!("casulo-fuzz: {}: {e}", corpus.display());
        std::process::exit(2)
    }) {
        let p = e.expect("read corpus").path();
        if p.is_file() {
            pool.push(std::fs::read(&p).expect("read corpus file"));
            names.push(p);
        }
    }
    if pool.is_empty() {
        eprintln!("casulo-fuzz: {}: empty corpus", corpus.display());
        std::process::exit(2);
    }
    let donors: Vec<Value> = pool
        .iter()
        .filter_map(|d| serde_json::from_slice(d).ok())
        .collect();
    // A bundle with a rootfs, so validation gets past root.path.
    let bundle = std::env::temp_dir().join(format!("casulo-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(bundle.join("rootfs"));
    std::panic::set_hook(Box::new(|info| {
        if let Ok(mut m) = PANIC_MSG.lock() {
            *m = info.to_string();
        }
    }));

    let (mut execs, mut crashes, mut broken) = (0u64, 0u64, 0u64);
    let mut seen: HashSet<String> = HashSet::new();
    let mut saved: HashSet<u64> = HashSet::new();
    let n_seeds = pool.len();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut i = 0usize;
    while i < n_seeds || Instant::now() < deadline {
        // Seeds first (replaying saved crashes), then mutants.
        let input = if i < n_seeds {
            pool[i].clone()
        } else {
            let s = rng.pick(&pool).clone();
            mutate(&s, &mut rng, &donors)
        };
        i += 1;
        execs += 1;
        match catch_unwind(AssertUnwindSafe(|| run_one(target, &input, &bundle))) {
            Ok(Ok(sig)) => {
                if seen.insert(sig) && i > n_seeds && pool.len() < 10_000 {
                    pool.push(input);
                }
            }
            Ok(Err(why)) => {
                broken += 1;
                if broken <= 5 {
                    eprintln!(
                        "casulo-fuzz: contract broken: {why}\n  input: {}",
                        show(&input)
                    );
                }
            }
            Err(_) => {
                crashes += 1;
                let h = fnv(&input);
                let msg = PANIC_MSG.lock().map(|m| m.clone()).unwrap_or_default();
                if saved.insert(h) {
                    let out = corpus.join(format!("crash-{h:016x}.json"));
                    let _ = std::fs::write(&out, &input);
                    eprintln!(
                        "casulo-fuzz: PANIC: {msg}\n  input ({}): {}",
                        out.display(),
                        String::from_utf8_lossy(&input)
                    );
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&bundle);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "casulo-fuzz {}: {execs} execs in {secs:.1} s ({:.0}/s), {n_seeds} seeds, pool {}, {} outcomes, {crashes} crashes, {broken} bad errors (seed {seed})",
        if target == Target::Config { "config" } else { "seccomp" },
        execs as f64 / secs.max(0.001),
        pool.len(),
        seen.len(),
    );
    if crashes > 0 || broken > 0 {
        std::process::exit(1);
    }
}
