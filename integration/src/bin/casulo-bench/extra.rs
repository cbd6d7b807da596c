//! The phases that look past a quiet machine (issue 19): `run` while both cores are
//! busy, the namespaces-only floor, `exec` into a running container, and how each
//! operation's cost grows with many containers under one `--root`.

use std::ffi::OsString;
use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::bundles::Kind;
use crate::phases::settle;
use crate::{median, sys, Bench, Sample};

/// The 95th percentile (nearest rank).
pub fn p95(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((v.len() as f64) * 0.95).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// Proportional set size of `pid` in KiB (`/proc/<pid>/smaps_rollup`).
fn pss_kib(pid: i32) -> Option<f64> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

impl Bench {
    /// `run` of the minimal bundle while two spinning processes (normal priority,
    /// started and ended by the bench) keep both cores busy: median and p95.
    pub(crate) fn phase_loaded(&mut self) {
        let spinners: Vec<Child> = (0..2)
            .filter_map(|_| {
                Command::new("/bin/sh")
                    .args(["-c", "while :; do :; done"])
                    .stdin(Stdio::null())
                    .spawn()
                    .ok()
            })
            .collect();
        let n = self.opts.iterations;
        let mut ms = vec![Vec::new(); self.rts.len()];
        for i in 0..n {
            for rt in self.order(i) {
                settle();
                let s = self.run_once(rt, Kind::Minimal);
                if s.ok {
                    ms[rt].push(s.ms);
                }
            }
        }
        for mut c in spinners {
            let _ = c.kill();
            let _ = c.wait();
        }
        let label = format!("`run` /bin/true, minimal, both cores busy (median of {n})");
        self.push(label, "ms", ms.clone());
        self.push_stat("`run`, both cores busy: p95".into(), "ms", ms, p95);
    }

    /// `unshare -fpmuin --mount-proc chroot ROOTFS /bin/true`: new namespaces and
    /// nothing else, the floor below which no runtime can go.
    pub(crate) fn phase_floor(&mut self) {
        let n = self.opts.iterations;
        let mut v = Vec::new();
        for _ in 0..n {
            settle();
            let t0 = Instant::now();
            let st = Command::new("unshare")
                .args(["-fpmuin", "--mount-proc", "chroot"])
                .arg(&self.rootfs)
                .arg("/bin/true")
                .stdin(Stdio::null())
                .status();
            if st.is_ok_and(|s| s.success()) {
                v.push(t0.elapsed().as_secs_f64() * 1e3);
            }
        }
        self.floor = median(&mut v);
    }

    /// Creates and starts a sleeping container of runtime `rt`; its id when it runs.
    fn start_sleeper(&mut self, rt: usize, tag: &str) -> Option<(String, Sample)> {
        // A bundle (and so a cgroup) per container: `delete --force` kills its cgroup.
        let id = self.next_id(rt, tag);
        let bundle = self.bundle(rt, Kind::Sleep, &format!("-{id}"));
        let mut args = Self::run_args(&bundle, &id);
        args[0] = "create".into();
        let c = self.exec(rt, &args);
        let s = self.exec(rt, &os(&["start", &id]));
        if c.ok && s.ok {
            return Some((id, c));
        }
        self.exec(rt, &os(&["delete", "--force", &id]));
        None
    }

    /// `exec` of /bin/true into a running container, interleaved: median and p95.
    pub(crate) fn phase_exec(&mut self) {
        let k = self.rts.len();
        let ids: Vec<Option<String>> = (0..k)
            .map(|rt| self.start_sleeper(rt, "exec").map(|(id, _)| id))
            .collect();
        let n = self.opts.iterations;
        let mut ms = vec![Vec::new(); k];
        for i in 0..n {
            for rt in self.order(i) {
                let Some(id) = ids[rt].clone() else { continue };
                let s = self.exec(rt, &os(&["exec", &id, "/bin/true"]));
                if s.ok {
                    ms[rt].push(s.ms);
                }
                sys::reap_zombies();
            }
        }
        for (rt, id) in ids.iter().enumerate() {
            if let Some(id) = id {
                self.exec(rt, &os(&["delete", "--force", id]));
            }
        }
        sys::reap_zombies();
        self.push(
            format!("`exec` /bin/true (median of {n})"),
            "ms",
            ms.clone(),
        );
        self.push_stat("`exec` /bin/true: p95".into(), "ms", ms, p95);
    }

    /// Memory of a created, not started container (its waiting init), median of 3.
    fn waiting_init_pss(&mut self, rt: usize) -> Option<f64> {
        let mut v = Vec::new();
        for _ in 0..3 {
            let bundle = self.bundle(rt, Kind::Minimal, "");
            let id = self.next_id(rt, "mem");
            let pid_file = self.work.join(format!("{id}.pid"));
            let mut args = Self::run_args(&bundle, &id);
            args[0] = "create".into();
            args.insert(1, "--pid-file".into());
            args.insert(2, pid_file.clone().into());
            if self.exec(rt, &args).ok {
                let pid = fs::read_to_string(&pid_file).ok();
                v.extend(pid.and_then(|p| pss_kib(p.trim().parse().ok()?)));
            }
            self.exec(rt, &os(&["delete", "--force", &id]));
            let _ = fs::remove_file(pid_file);
            sys::reap_zombies();
        }
        median(&mut v).map(|kib| kib / 1024.0)
    }

    /// The operations with one container and with `scale` running ones under one
    /// `--root`, one runtime at a time.
    pub(crate) fn phase_scale(&mut self) {
        let n = self.opts.scale;
        let k = self.rts.len();
        let labels = [
            "scale: `create` with 1 running container".to_string(),
            format!("scale: `create` with {n} running containers"),
            "scale: `run` with 1 running container".to_string(),
            format!("scale: `run` with {n} running containers"),
            "scale: `state` with 1 container (median of 10)".to_string(),
            format!("scale: `state` with {n} containers (median of 10)"),
            "scale: `list` with 1 container".to_string(),
            format!("scale: `list` with {n} containers"),
            format!("scale: `list --format json` with {n} containers"),
            "scale: `list`, cost per container".to_string(),
            format!("scale: peak RSS of `list` with {n} containers"),
            format!("scale: `ps` of one container with {n} running"),
            format!("scale: `kill KILL` of all {n}, total"),
            format!("scale: `delete --force` of all {n}, total"),
            "memory of a created, not started container (PSS of its init)".to_string(),
        ];
        let units = [
            "ms", "ms", "ms", "ms", "ms", "ms", "ms", "ms", "ms", "ms", "MiB", "ms", "s", "s",
            "MiB",
        ];
        let mut table: Vec<Vec<Option<f64>>> = vec![vec![None; k]; labels.len()];
        for rt in 0..k {
            let mut col = self.scale_one(rt, n);
            col.push(self.waiting_init_pss(rt));
            for (row, v) in table.iter_mut().zip(col) {
                row[rt] = v;
            }
        }
        for ((label, unit), values) in labels.into_iter().zip(units).zip(table) {
            self.rows.push(crate::Row {
                label,
                unit,
                values,
            });
        }
    }

    /// One runtime's column of the scale rows (all but the memory row).
    fn scale_one(&mut self, rt: usize, n: usize) -> Vec<Option<f64>> {
        let mut out = vec![None; 14];
        let state_median = |b: &mut Bench, id: &str| {
            let mut v: Vec<f64> = (0..10)
                .map(|_| b.exec(rt, &os(&["state", id])))
                .filter(|s| s.ok)
                .map(|s| s.ms)
                .collect();
            median(&mut v)
        };
        let Some((first, c1)) = self.start_sleeper(rt, "scale") else {
            return out;
        };
        out[0] = Some(c1.ms);
        out[2] = Some(self.run_once(rt, Kind::Minimal))
            .filter(|s| s.ok)
            .map(|s| s.ms);
        out[4] = state_median(self, &first);
        out[6] = Some(self.exec(rt, &os(&["list"])))
            .filter(|s| s.ok)
            .map(|s| s.ms);
        let mut ids = vec![first.clone()];
        while ids.len() < n {
            match self.start_sleeper(rt, "scale") {
                Some((id, _)) => ids.push(id),
                None => break,
            }
        }
        if ids.len() == n {
            settle();
            if let Some((id, c)) = self.start_sleeper(rt, "scale") {
                out[1] = Some(c.ms);
                self.exec(rt, &os(&["delete", "--force", &id]));
            }
            settle();
            out[3] = Some(self.run_once(rt, Kind::Minimal))
                .filter(|s| s.ok)
                .map(|s| s.ms);
            out[5] = state_median(self, &first);
            let list = self.exec(rt, &os(&["list"]));
            out[7] = list.ok.then_some(list.ms);
            out[10] = list.ok.then_some(list.rss_kib as f64 / 1024.0);
            let json = self.exec(rt, &os(&["list", "--format", "json"]));
            out[8] = json.ok.then_some(json.ms);
            if let (Some(a), Some(b)) = (out[6], out[7]) {
                out[9] = Some((b - a) / (n - 1).max(1) as f64);
            }
            let ps = self.exec(rt, &os(&["ps", &first]));
            out[11] = ps.ok.then_some(ps.ms);
        }
        let t0 = Instant::now();
        let killed = ids
            .iter()
            .filter(|id| !self.exec(rt, &os(&["kill", id, "KILL"])).ok)
            .count()
            == 0;
        out[12] = (killed && ids.len() == n).then_some(t0.elapsed().as_secs_f64());
        let t0 = Instant::now();
        let deleted = ids
            .iter()
            .filter(|id| !self.exec(rt, &os(&["delete", "--force", id])).ok)
            .count()
            == 0;
        out[13] = (deleted && ids.len() == n).then_some(t0.elapsed().as_secs_f64());
        sys::reap_zombies();
        out
    }
}
