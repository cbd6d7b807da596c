//! The measured phases of the benchmark, each interleaving the runtimes.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::bundles::{self, Kind};
use crate::{median, sys, wait_exit, Bench};

/// Pause before a timed `run` or `create`, so every runtime finds the cgroup v1 attach
/// lock in the same (cold) state: the first `cgroup.procs` write after a quiet spell waits
/// for an RCU grace period, and a runtime that writes within one after another runtime's
/// write does not, so back to back the order of the runtimes would bias the figures.
/// Not used by the sequential and concurrent phases, which measure back-to-back work.
pub(crate) fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(40));
}

impl Bench {
    /// The runtimes in the order of iteration `i`: interleaved, and rotated by one each
    /// iteration so each goes first equally often. Order matters on cgroup v1: the
    /// first write to `cgroup.procs` after a quiet spell waits for an RCU grace period
    /// (the attach lock), and whoever writes next within it does not.
    pub(crate) fn order(&self, i: usize) -> Vec<usize> {
        let k = self.rts.len();
        (0..k).map(|j| (i + j) % k).collect()
    }

    /// `run` of `kind` in `rounds` rounds of `iterations` each: a row per round and the
    /// median of the round medians (a lead must hold in every round, not on average).
    pub(crate) fn phase_run(&mut self, kind: Kind, title: &str) {
        let (n, rounds, k) = (self.opts.iterations, self.opts.rounds, self.rts.len());
        let mut round_medians = vec![Vec::new(); k];
        let mut rss = vec![Vec::new(); k];
        for round in 0..rounds {
            let mut ms = vec![Vec::new(); k];
            for i in 0..n {
                for rt in self.order(i + round) {
                    settle();
                    let s = self.run_once(rt, kind);
                    if s.ok {
                        ms[rt].push(s.ms);
                        rss[rt].push(s.rss_kib as f64 / 1024.0);
                    }
                }
            }
            for (rt, v) in ms.iter().enumerate() {
                round_medians[rt].extend(median(&mut v.clone()));
            }
            let label = format!(
                "`run` /bin/true, {title}, round {} (median of {n})",
                round + 1
            );
            self.push(label, "ms", ms);
        }
        if kind == Kind::Minimal {
            self.minimal_run = round_medians
                .iter()
                .map(|v| median(&mut v.clone()))
                .collect();
        }
        let label = format!("`run` /bin/true, {title} (median of the {rounds} rounds)");
        self.push(label, "ms", round_medians);
        self.push(format!("peak RSS of `run`, {title}"), "MiB", rss);
    }

    /// `create`, `start` and `delete` of the minimal bundle, timed separately; `create`
    /// per round and as the median of the round medians.
    pub(crate) fn phase_split(&mut self) {
        let (n, rounds, k) = (self.opts.iterations, self.opts.rounds, self.rts.len());
        let (mut s, mut d) = (vec![Vec::new(); k], vec![Vec::new(); k]);
        let mut round_medians = vec![Vec::new(); k];
        for round in 0..rounds {
            let mut c = vec![Vec::new(); k];
            for i in 0..n {
                for rt in self.order(i + round) {
                    if let Some((cs, ss, ds)) = self.split_once(rt) {
                        c[rt].push(cs);
                        s[rt].push(ss);
                        d[rt].push(ds);
                    }
                }
            }
            for (rt, v) in c.iter().enumerate() {
                round_medians[rt].extend(median(&mut v.clone()));
            }
            let label = format!("`create`, minimal, round {} (median of {n})", round + 1);
            self.push(label, "ms", c);
        }
        let label = format!("`create`, minimal (median of the {rounds} rounds)");
        self.push(label, "ms", round_medians);
        self.push("`start`, minimal".into(), "ms", s);
        self.push("`delete` (stopped), minimal".into(), "ms", d);
    }

    /// One create / start / delete of the minimal bundle: the three times when all
    /// succeeded.
    fn split_once(&mut self, rt: usize) -> Option<(f64, f64, f64)> {
        let bundle = self.bundle(rt, Kind::Minimal, "");
        let id = self.next_id(rt, "split");
        let pid_file = self.work.join(format!("{id}.pid"));
        let mut args = Self::run_args(&bundle, &id);
        args[0] = "create".into();
        args.insert(1, "--pid-file".into());
        args.insert(2, pid_file.clone().into());
        settle();
        let cs = self.exec(rt, &args);
        let pid: Option<i32> = fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse().ok());
        let ss = self.exec(rt, &["start".into(), id.clone().into()]);
        if let Some(pid) = pid.filter(|_| cs.ok && ss.ok) {
            wait_exit(pid);
        }
        let ds = self.exec(rt, &["delete".into(), id.clone().into()]);
        if !ds.ok {
            self.exec(rt, &["delete".into(), "--force".into(), id.into()]);
        }
        sys::reap_zombies();
        let _ = fs::remove_file(&pid_file);
        (cs.ok && ss.ok && ds.ok).then_some((cs.ms, ss.ms, ds.ms))
    }

    /// N containers one after the other (interleaved per container), total time.
    pub(crate) fn phase_sequential(&mut self) {
        let n = self.opts.sequential;
        let mut total = vec![0.0; self.rts.len()];
        let mut ok = vec![true; self.rts.len()];
        for i in 0..n {
            for rt in self.order(i) {
                let s = self.run_once(rt, Kind::Minimal);
                total[rt] += s.ms / 1e3;
                ok[rt] &= s.ok;
            }
        }
        let values = total
            .into_iter()
            .zip(ok)
            .map(|(t, ok)| ok.then_some(vec![t]).unwrap_or_default())
            .collect();
        self.push(format!("{n} sequential `run`s, total"), "s", values);
    }

    /// N `run`s started at once; wall time until the last exits (median of rounds).
    pub(crate) fn phase_concurrent(&mut self) {
        let n = self.opts.concurrent;
        let mut walls = vec![Vec::new(); self.rts.len()];
        for round in 0..self.opts.concurrent_rounds {
            for rt in self.order(round) {
                let wall = &mut walls[rt];
                let jobs: Vec<(PathBuf, String)> = (0..n)
                    .map(|i| {
                        let b = self.bundle(rt, Kind::Minimal, &format!("-c{i}"));
                        (b, self.next_id(rt, "conc"))
                    })
                    .collect();
                let r = &self.rts[rt];
                let t0 = Instant::now();
                let pids: Vec<Option<u32>> = jobs
                    .iter()
                    .map(|(b, id)| {
                        Command::new(&r.path)
                            .arg("--root")
                            .arg(&r.root)
                            .args(Self::run_args(b, id))
                            .stdin(Stdio::null())
                            .stdout(Stdio::null())
                            .stderr(Stdio::null())
                            .spawn()
                            .ok()
                            .map(|c| c.id())
                    })
                    .collect();
                let mut all_ok = true;
                for p in &pids {
                    all_ok &= match p {
                        Some(p) => matches!(sys::wait4(*p as i32),
                            Ok((st, _)) if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0),
                        None => false,
                    };
                }
                let secs = t0.elapsed().as_secs_f64();
                if all_ok {
                    wall.push(secs);
                } else {
                    let rt_ = &mut self.rts[rt];
                    rt_.failures += 1;
                    rt_.first_error
                        .get_or_insert(format!("{n} concurrent runs: some failed"));
                    for (_, id) in jobs {
                        self.exec(rt, &["delete".into(), "--force".into(), id.into()]);
                    }
                }
                sys::reap_zombies();
            }
        }
        let rounds = self.opts.concurrent_rounds;
        self.push(
            format!("{n} concurrent `run`s, wall (median of {rounds})"),
            "s",
            walls,
        );
    }

    /// Casulo's compile of the Docker profile (in process; crun and runc compile with
    /// libseccomp inside their `create`, see the Docker-minus-minimal difference).
    pub(crate) fn phase_seccomp(&mut self) {
        let profile: oci_spec::runtime::LinuxSeccomp =
            serde_json::from_str(bundles::DOCKER_SECCOMP).expect("docker profile");
        let mut v = Vec::new();
        let mut len = 0;
        for _ in 0..self.opts.seccomp_iterations {
            let t0 = Instant::now();
            let c = casulo_seccomp::compile(&profile).expect("docker profile compiles");
            v.push(t0.elapsed().as_secs_f64() * 1e3);
            len = c.filter.program().len();
        }
        let mut values = vec![Vec::new(); self.rts.len()];
        values[0] = v;
        let n = self.opts.seccomp_iterations;
        self.push(
            format!("seccomp compile of the Docker profile ({len} BPF insns, median of {n})"),
            "ms",
            values,
        );
    }

    pub(crate) fn phase_sizes(&mut self) {
        let values = self
            .rts
            .iter()
            .map(|r| {
                fs::metadata(&r.path)
                    .map(|m| vec![m.len() as f64 / 1048576.0])
                    .unwrap_or_default()
            })
            .collect();
        self.push("binary size (file on disk)".into(), "MiB", values);
    }
}
