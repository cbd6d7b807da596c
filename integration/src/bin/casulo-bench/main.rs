//! `casulo-bench`: Casulo against crun and runc on the same bundles, interleaved
//! (A B C A B C …), printing medians and ratios to crun. Run it through
//! `bash scripts/bench.sh [--quick]` (root). See docs/performance.md.
//!
//! Every runtime runs the same way: the bench enters a private mount namespace, in
//! which (only) the cgroup2 mount at /sys/fs/cgroup/unified is unmounted, because crun
//! refuses the host's hybrid layout; every runtime then sees a cgroup v1 host. Each
//! container's cgroup goes under `/casulo-bench-<pid>`, removed at the end.

mod bundles;
mod extra;
mod phases;
mod sys;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bundles::Kind;

/// A runtime under test.
struct Runtime {
    name: String,
    path: PathBuf,
    root: PathBuf,
    log: PathBuf,
    failures: usize,
    first_error: Option<String>,
}

/// One runtime command: wall time and the peak RSS of the runtime process.
#[derive(Clone, Copy)]
pub(crate) struct Sample {
    ms: f64,
    rss_kib: i64,
    ok: bool,
}

struct Opts {
    quick: bool,
    iterations: usize,
    sequential: usize,
    concurrent: usize,
    concurrent_rounds: usize,
    /// Rounds of the `run` and `create` phases.
    rounds: usize,
    /// Containers of the scale phase.
    scale: usize,
    seccomp_iterations: usize,
    casulo: PathBuf,
    /// Extra casulo builds to compare (before/after figures): `--variant name=path`.
    variants: Vec<(String, PathBuf)>,
}

/// A result row: one value per runtime (same order as `Bench::rts`).
pub(crate) struct Row {
    label: String,
    unit: &'static str,
    values: Vec<Option<f64>>,
}

struct Bench {
    opts: Opts,
    work: PathBuf,
    rootfs: PathBuf,
    cg_parent: String,
    rts: Vec<Runtime>,
    rows: Vec<Row>,
    counter: usize,
    /// Median of the namespaces-only floor (`phase_floor`), ms.
    floor: Option<f64>,
    /// Median of the round medians of `run` minimal, per runtime (ms).
    minimal_run: Vec<Option<f64>>,
}

fn usage() -> ! {
    eprintln!(
        "usage: casulo-bench [--quick] [--iterations N] [--scale N] [--casulo PATH] [--variant NAME=PATH]…\n\
         (root; normally run as `bash scripts/bench.sh [--quick]`)"
    );
    std::process::exit(2)
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        quick: false,
        iterations: 30,
        sequential: 100,
        concurrent: 50,
        concurrent_rounds: 3,
        rounds: 3,
        scale: 500,
        seccomp_iterations: 200,
        casulo: PathBuf::from("target/x86_64-unknown-linux-gnu/release/casulo"),
        variants: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    let mut iterations = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--iterations" => {
                iterations = Some(
                    args.next()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or_else(|| usage()),
                )
            }
            "--scale" => {
                o.scale = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--casulo" => o.casulo = PathBuf::from(args.next().unwrap_or_else(|| usage())),
            "--variant" => {
                let v = args.next().unwrap_or_else(|| usage());
                let (name, path) = v.split_once('=').unwrap_or_else(|| usage());
                o.variants.push((name.to_string(), PathBuf::from(path)));
            }
            _ => usage(),
        }
    }
    if o.quick {
        o.iterations = 3;
        o.sequential = 5;
        o.concurrent = 4;
        o.concurrent_rounds = 1;
        o.rounds = 1;
        o.scale = 3;
        o.seccomp_iterations = 5;
    }
    if let Some(n) = iterations {
        o.iterations = n;
    }
    o
}

pub(crate) fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn first_line(cmd: &str, arg: &str) -> String {
    Command::new(cmd)
        .arg(arg)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_default()
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .into_iter()
        .map(String::from)
        .chain(path.split(':').map(String::from))
        .map(|d| Path::new(&d).join(name))
        .find(|p| p.is_file())
}

impl Bench {
    /// Spawns `<runtime> --root <root> <args>` and waits for it with wait4.
    fn exec(&mut self, rt: usize, args: &[OsString]) -> Sample {
        let r = &self.rts[rt];
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&r.log)
            .expect("runtime log");
        let t0 = Instant::now();
        let child = Command::new(&r.path)
            .arg("--root")
            .arg(&r.root)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn();
        let res = child
            .map_err(|e| e.to_string())
            .and_then(|c| sys::wait4(c.id() as i32).map_err(|e| e.to_string()));
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        match res {
            Ok((status, rss)) if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 => {
                Sample {
                    ms,
                    rss_kib: rss,
                    ok: true,
                }
            }
            other => {
                let rss_kib = rss_or_zero(&other);
                let why = match other {
                    Ok((st, _)) => {
                        format!("{args:?}: wait status {st:#x}; log {}", r.log.display())
                    }
                    Err(e) => format!("{args:?}: {e}"),
                };
                let tail = fs::read_to_string(&r.log).unwrap_or_default();
                let last = tail.lines().last().unwrap_or("").to_string();
                let r = &mut self.rts[rt];
                r.failures += 1;
                r.first_error.get_or_insert(format!("{why}: {last}"));
                Sample {
                    ms,
                    rss_kib,
                    ok: false,
                }
            }
        }
    }

    fn next_id(&mut self, rt: usize, tag: &str) -> String {
        self.counter += 1;
        format!("{}-{tag}-{}", self.rts[rt].name, self.counter)
    }

    fn bundle(&self, rt: usize, kind: Kind, slot: &str) -> PathBuf {
        let name = format!("{}-{}{slot}", self.rts[rt].name, kind.name());
        let dir = self.work.join("bundles").join(&name);
        if dir.join("config.json").exists() {
            return dir;
        }
        let cg = format!("{}/{name}", self.cg_parent);
        bundles::write_bundle(&dir, kind, &self.rootfs, &cg)
    }

    fn run_args(bundle: &Path, id: &str) -> Vec<OsString> {
        vec!["run".into(), "--bundle".into(), bundle.into(), id.into()]
    }

    /// `run` (create + start + wait + delete) of /bin/true.
    fn run_once(&mut self, rt: usize, kind: Kind) -> Sample {
        let bundle = self.bundle(rt, kind, "");
        let id = self.next_id(rt, kind.name());
        let s = self.exec(rt, &Self::run_args(&bundle, &id));
        if !s.ok {
            self.exec(rt, &["delete".into(), "--force".into(), id.into()]);
        }
        sys::reap_zombies();
        s
    }

    fn push(&mut self, label: String, unit: &'static str, values: Vec<Vec<f64>>) {
        self.push_stat(label, unit, values, median);
    }

    /// A row of `stat` (median, p95) of each runtime's samples.
    fn push_stat(
        &mut self,
        label: String,
        unit: &'static str,
        mut values: Vec<Vec<f64>>,
        stat: fn(&mut [f64]) -> Option<f64>,
    ) {
        let values = values.iter_mut().map(|v| stat(v)).collect();
        self.rows.push(Row {
            label,
            unit,
            values,
        });
    }

    fn print(&self) {
        let crun = self.rts.iter().position(|r| r.name == "crun");
        let mut head = String::from("| measure | unit |");
        let mut rule = String::from("| --- | --- |");
        for r in &self.rts {
            head += &format!(" {} |", r.name);
            rule += " ---: |";
        }
        for r in self.rts.iter().filter(|r| r.name != "crun") {
            if crun.is_some() {
                head += &format!(" {}/crun |", r.name);
                rule += " ---: |";
            }
        }
        println!("{head}\n{rule}");
        for row in &self.rows {
            let mut line = format!("| {} | {} |", row.label, row.unit);
            for v in &row.values {
                line += &match v {
                    Some(x) if row.unit == "s" => format!(" {x:.3} |"),
                    Some(x) if *x < 10.0 => format!(" {x:.2} |"),
                    Some(x) => format!(" {x:.1} |"),
                    None => " – |".into(),
                };
            }
            if let Some(c) = crun {
                for (i, _) in self.rts.iter().enumerate().filter(|(i, _)| *i != c) {
                    line += &match (row.values[i], row.values[c]) {
                        (Some(a), Some(b)) if b > 0.0 => format!(" {:.2} |", a / b),
                        _ => " – |".into(),
                    };
                }
            }
            println!("{line}");
        }
        if let Some(floor) = self.floor {
            let dist: Vec<String> = self
                .rts
                .iter()
                .zip(&self.minimal_run)
                .filter_map(|(r, m)| m.map(|m| format!("{} +{:.1} ms", r.name, m - floor)))
                .collect();
            println!(
                "\n- floor: `unshare -fpmuin --mount-proc chroot ROOTFS /bin/true` (namespaces \
                 only, no mounts, no cgroups): {floor:.1} ms (median of {}); distance of \
                 `run` minimal (median of the rounds) to it: {}",
                self.opts.iterations,
                dist.join(", ")
            );
        }
    }

    /// Deletes leftover containers, then the cgroup parent in every v1 hierarchy.
    fn cleanup(&mut self) {
        for rt in 0..self.rts.len() {
            let out = Command::new(&self.rts[rt].path)
                .arg("--root")
                .arg(&self.rts[rt].root)
                .args(["list", "-q"])
                .stderr(Stdio::null())
                .output();
            let ids = out
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            for id in ids.lines().filter(|l| !l.trim().is_empty()) {
                self.exec(rt, &["delete".into(), "--force".into(), id.trim().into()]);
            }
            let _ = fs::remove_dir_all(&self.rts[rt].root);
        }
        // All state roots live in /run/casulo-bench-<pid>/, which is the bench's own.
        if let Some(parent) = self.rts.first().and_then(|r| r.root.parent()) {
            let _ = fs::remove_dir_all(parent);
        }
        sys::reap_zombies();
        for h in cgroup_hierarchies() {
            rmdir_tree(&h.join(self.cg_parent.trim_start_matches('/')));
        }
        let _ = fs::remove_dir_all(&self.work);
    }
}

fn rss_or_zero(r: &Result<(i32, i64), String>) -> i64 {
    r.as_ref().map(|(_, rss)| *rss).unwrap_or(0)
}

/// Waits until `pid` (a container init) has exited, reaping it when it is our child.
fn wait_exit(pid: i32) {
    if sys::wait4(pid).is_ok() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while sys::exists(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// The v1 hierarchies mounted under /sys/fs/cgroup (real directories, not the
/// `cpu -> cpu,cpuacct` symlinks).
fn cgroup_hierarchies() -> Vec<PathBuf> {
    fs::read_dir("/sys/fs/cgroup")
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .filter(|p| p.join("cgroup.procs").exists())
                .collect()
        })
        .unwrap_or_default()
}

/// Creates the bench's parent cgroup in every hierarchy (as an engine does), with the
/// root's cpus and mems in the cpuset one.
fn make_cgroup_parent(parent: &str) -> std::io::Result<()> {
    for h in cgroup_hierarchies() {
        let dir = h.join(parent.trim_start_matches('/'));
        fs::create_dir_all(&dir)?;
        for f in ["cpuset.cpus", "cpuset.mems"] {
            if let Ok(v) = fs::read_to_string(h.join(f)) {
                fs::write(dir.join(f), v.trim())?;
            }
        }
    }
    Ok(())
}

fn rmdir_tree(dir: &Path) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

fn is_mountpoint(path: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(a), Ok(b)) = (fs::metadata(path), fs::metadata(format!("{path}/.."))) else {
        return false;
    };
    a.dev() != b.dev()
}

fn main() {
    let opts = parse_opts();
    if !sys::is_root() {
        eprintln!("casulo-bench: must run as root");
        std::process::exit(1);
    }
    // Same conditions for every runtime: a private mount namespace (nothing propagates
    // to the host) without the cgroup2 mount of the hybrid layout, which crun refuses.
    sys::private_mount_namespace().expect("private mount namespace");
    let unified = "/sys/fs/cgroup/unified";
    let unmounted = is_mountpoint(unified);
    if unmounted {
        sys::umount_detach(unified)
            .expect("umount /sys/fs/cgroup/unified in the private namespace");
        // crun still writes `unified/<cgroup>/cgroup.procs` when the directory exists:
        // without this private tmpfs it would land in the host's /sys/fs/cgroup tmpfs,
        // hidden under the host's cgroup2 mount. This one dies with the namespace.
        sys::mount_tmpfs(unified)
            .expect("tmpfs on /sys/fs/cgroup/unified in the private namespace");
    }
    sys::set_child_subreaper().expect("PR_SET_CHILD_SUBREAPER");

    let pid = std::process::id();
    let work = PathBuf::from(format!("/tmp/casulo-bench-{pid}"));
    let rootfs = work.join("rootfs");
    bundles::make_rootfs(&rootfs).expect("busybox rootfs");
    let cg_parent = format!("/casulo-bench-{pid}");
    make_cgroup_parent(&cg_parent).expect("cgroup parent");

    let casulo = fs::canonicalize(&opts.casulo).unwrap_or_else(|_| {
        eprintln!(
            "casulo-bench: {}: not found (build it: cargo build --release -p casulo)",
            opts.casulo.display()
        );
        std::process::exit(1)
    });
    let mut rts = vec![("casulo".to_string(), Some(casulo))];
    for (name, path) in &opts.variants {
        rts.push((name.clone(), fs::canonicalize(path).ok()));
    }
    rts.push(("crun".into(), find_in_path("crun")));
    rts.push(("runc".into(), find_in_path("runc")));
    let rts: Vec<Runtime> = rts
        .into_iter()
        .filter_map(|(name, p)| {
            if p.is_none() {
                eprintln!("casulo-bench: {name} not found, left out");
            }
            p.map(|path| Runtime {
                root: PathBuf::from(format!("/run/casulo-bench-{pid}/{name}")),
                log: work.join(format!("{name}.log")),
                name,
                path,
                failures: 0,
                first_error: None,
            })
        })
        .collect();

    println!(
        "# casulo-bench{}\n",
        if opts.quick {
            " --quick (smoke run: too few iterations to mean anything)"
        } else {
            ""
        }
    );
    println!("- date: {}", first_line("date", "-u"));
    println!(
        "- kernel: {}",
        fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    let cpu = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("")
        .trim()
        .to_string();
    let ncpu = cpu.lines().filter(|l| l.starts_with("processor")).count();
    println!("- cpu: {ncpu} × {model}");
    println!(
        "- load average at start: {}",
        fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    for r in &rts {
        println!(
            "- {}: {} ({})",
            r.name,
            r.path.display(),
            first_line(r.path.to_str().unwrap_or(""), "--version")
        );
    }
    println!(
        "- every runtime runs in the same private mount namespace{}; runtimes alternate \
         (casulo, crun, runc, casulo, …); cgroups under {cg_parent}",
        if unmounted {
            " with the cgroup2 mount at /sys/fs/cgroup/unified replaced by an empty tmpfs (crun refuses the hybrid layout), i.e. on cgroup v1"
        } else {
            ""
        }
    );
    println!("- `run` = create + start + wait + delete in one command; peak RSS = wait4 ru_maxrss of the runtime process\n");

    let mut b = Bench {
        opts,
        work,
        rootfs,
        cg_parent,
        rts,
        rows: Vec::new(),
        counter: 0,
        floor: None,
        minimal_run: Vec::new(),
    };
    // Warm-up: page cache, first cgroup creation.
    for _ in 0..2 {
        for rt in 0..b.rts.len() {
            b.run_once(rt, Kind::Minimal);
            b.run_once(rt, Kind::Docker);
        }
    }
    for r in &mut b.rts {
        r.failures = 0;
        r.first_error = None;
    }
    b.phase_run(Kind::Minimal, "minimal bundle");
    b.phase_run(Kind::Docker, "Docker-like bundle");
    b.phase_split();
    b.phase_floor();
    b.phase_loaded();
    b.phase_exec();
    b.phase_sequential();
    b.phase_concurrent();
    b.phase_scale();
    b.phase_seccomp();
    b.phase_sizes();
    b.print();
    println!(
        "\n- load average at end: {}",
        fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let mut failed = false;
    for r in &b.rts {
        if r.failures > 0 {
            failed |= r.name == "casulo";
            println!(
                "- {}: {} failed commands; first: {}",
                r.name,
                r.failures,
                r.first_error.as_deref().unwrap_or("")
            );
        }
    }
    b.cleanup();
    if failed {
        std::process::exit(1);
    }
}
