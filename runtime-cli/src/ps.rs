//! `ps`'s table. Without ps options, the rows of `ps -ef` for the container's pids
//! alone, read from `/proc/<pid>` (the host's `ps` would read every process of the
//! host and cost time in proportion to them); with options, the host's `ps` with those
//! options, keeping the rows whose PID column is one of the container's (as runc).

use std::collections::HashMap;

type Result<T> = std::result::Result<T, String>;

/// Prints the table for `pids`: `ps -ef`'s columns, or `ps ARGS` filtered.
pub fn table(pids: &[i32], args: &[String]) -> Result<()> {
    let mut pids = pids.to_vec();
    pids.sort_unstable();
    if !args.is_empty() {
        return filtered(&pids, args);
    }
    let host = Host::read();
    crate::out::line(host.header())?;
    for &pid in &pids {
        // A process that exited since the cgroup was read has no row.
        if let Some(row) = host.row(pid) {
            crate::out::line(row)?;
        }
    }
    Ok(())
}

/// `ps ARGS`, keeping the header and the rows of `pids`.
fn filtered(pids: &[i32], args: &[String]) -> Result<()> {
    let out = std::process::Command::new("ps")
        .args(args)
        .output()
        .map_err(|e| format!("ps: {e}"))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        let first = msg
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("failed");
        return Err(format!("ps {}: {}", args.join(" "), first.trim()));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| format!("ps {}: no PID column in its output", args.join(" ")))?;
    crate::out::line(header)?;
    for l in lines {
        let pid = l.split_whitespace().nth(col).and_then(|p| p.parse().ok());
        if pid.is_some_and(|p| pids.binary_search(&p).is_ok()) {
            crate::out::line(l)?;
        }
    }
    Ok(())
}

/// What every row needs from the host: clock ticks, boot time, now, user names.
struct Host {
    hz: u64,
    boot: u64,
    now: u64,
    pid_width: usize,
    users: HashMap<u32, String>,
}

impl Host {
    fn read() -> Host {
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .map_or(100, |v| v.max(1) as u64);
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
            })
            .unwrap_or(0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // ps sizes the pid columns for the largest pid the kernel hands out.
        let pid_width = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .map_or(5, |s| s.trim().len().max(5));
        let users = std::fs::read_to_string("/etc/passwd")
            .map(|s| parse_passwd(&s))
            .unwrap_or_default();
        Host {
            hz,
            boot,
            now,
            pid_width,
            users,
        }
    }

    fn header(&self) -> String {
        let w = self.pid_width;
        format!(
            "{:<8} {:>w$} {:>w$} {:>2} {:<5} {:<8} {:>8} CMD",
            "UID", "PID", "PPID", "C", "STIME", "TTY", "TIME"
        )
    }

    /// `ps -ef`'s row for `pid`, `None` once it is gone.
    fn row(&self, pid: i32) -> Option<String> {
        let stat = Stat::read(pid)?;
        let uid = euid(pid)?;
        let user = match self.users.get(&uid) {
            // ps shortens a long name to 7 characters and a '+'.
            Some(n) if n.chars().count() > 8 => {
                format!("{}+", n.chars().take(7).collect::<String>())
            }
            Some(n) => n.clone(),
            None => uid.to_string(),
        };
        let cpu = (stat.utime + stat.stime) / self.hz;
        let start = self.boot + stat.start / self.hz;
        let elapsed = self.now.saturating_sub(start);
        let c = (cpu * 100).checked_div(elapsed).unwrap_or(0).min(99);
        let w = self.pid_width;
        Some(format!(
            "{user:<8} {pid:>w$} {:>w$} {c:>2} {:<5} {:<8} {:>8} {}",
            stat.ppid,
            stime(start, self.now),
            tty(stat.tty),
            cputime(cpu),
            cmd(pid, &stat.comm)
        ))
    }
}

/// The fields of `/proc/<pid>/stat` a row shows.
struct Stat {
    comm: String,
    ppid: i32,
    tty: u64,
    utime: u64,
    stime: u64,
    start: u64,
}

impl Stat {
    fn read(pid: i32) -> Option<Stat> {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name is in parentheses and may itself hold spaces or ')'.
        let (open, close) = (s.find('(')?, s.rfind(')')?);
        let comm = s.get(open + 1..close)?.to_string();
        // After ')': state(3) ppid(4) pgrp session tty_nr(7) ... utime(14) stime(15)
        // ... starttime(22); index 0 here is field 3.
        let f: Vec<&str> = s.get(close + 1..)?.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
        Some(Stat {
            comm,
            ppid: f.get(1)?.parse().ok()?,
            tty: num(4)?,
            utime: num(11)?,
            stime: num(12)?,
            start: num(19)?,
        })
    }
}

/// The effective uid of `pid` (`ps -f`'s UID is the effective user).
fn euid(pid: i32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// uid → name from a passwd file (the first entry of a uid wins, as with getpwuid).
fn parse_passwd(s: &str) -> HashMap<u32, String> {
    let mut users = HashMap::new();
    for l in s.lines() {
        let mut f = l.split(':');
        let (Some(name), Some(_), Some(uid)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if let Ok(uid) = uid.parse() {
            users.entry(uid).or_insert_with(|| name.to_string());
        }
    }
    users
}

/// The command line with its arguments, or `[comm]` when it has none (kernel threads,
/// zombies).
fn cmd(pid: i32, comm: &str) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if args.is_empty() {
        format!("[{comm}]")
    } else {
        args.join(" ")
    }
}

/// The terminal from `tty_nr`: `pts/N`, `ttyN`, `ttySN`, else `?`.
fn tty(nr: u64) -> String {
    let major = (nr >> 8) & 0xfff;
    let minor = (nr & 0xff) | ((nr >> 12) & 0xfff00);
    match major {
        0 => "?".into(),
        136..=143 => format!("pts/{}", (major - 136) * 256 + minor),
        4 if minor < 64 => format!("tty{minor}"),
        4 => format!("ttyS{}", minor - 64),
        _ => "?".into(),
    }
}

/// Cumulative CPU time as `ps` prints it: `HH:MM:SS`, `D-HH:MM:SS` past a day.
fn cputime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}-{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// The start time as `ps -f` prints it: `HH:MM` today, `MonDD` this year, else the
/// year. In UTC, like the timestamps of `state` (the static binary reads no zone file).
fn stime(start: u64, now: u64) -> String {
    let (y, mo, d, h, mi) = civil(start);
    let (ny, nmo, nd, _, _) = civil(now);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    if y != ny {
        format!("{y}")
    } else if (mo, d) != (nmo, nd) {
        format!("{}{d:02}", MONTHS[(mo - 1) as usize])
    } else {
        format!("{h:02}:{mi:02}")
    }
}

/// Year, month, day, hour, minute (UTC) of a Unix time.
fn civil(t: u64) -> (i64, i64, i64, i64, i64) {
    let ((y, mo, d), rem) = casulo_core::utc_date(t as i64);
    (y, mo, d, rem / 3600, rem / 60 % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_match_ps() {
        assert_eq!(cputime(6), "00:00:06");
        assert_eq!(cputime(86400 + 3661), "1-01:01:01");
        assert_eq!(tty(0), "?");
        assert_eq!(tty((136 << 8) | 3), "pts/3");
        assert_eq!(tty((4 << 8) | 1), "tty1");
        assert_eq!(tty((4 << 8) | 65), "ttyS1");
        // 2026-12-01 10:11 UTC, and now later that day / another day / another year.
        let t = 1_796_119_860;
        assert_eq!(stime(t, t + 3600), "10:11");
        assert_eq!(stime(t, t + 2 * 86400), "Dec01");
        assert_eq!(stime(t, t + 40 * 86400), "2026");
        let u = parse_passwd("root:x:0:0::/root:/bin/sh\nbad\ndup:x:0:0::/:/bin/sh\n");
        assert_eq!(u.get(&0).map(String::as_str), Some("root"));
    }

    /// This process's row has the columns of `ps -ef`, in its widths.
    #[test]
    fn own_row_matches_ps_ef() {
        let host = Host::read();
        let me = std::process::id() as i32;
        let row = host.row(me).unwrap();
        let Ok(out) = std::process::Command::new("ps").arg("-ef").output() else {
            eprintln!("skipped: no ps on this host");
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text.lines().next().unwrap(), host.header());
        let theirs = text
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(&me.to_string()))
            .unwrap();
        // C and TIME may tick between the two reads; the rest is equal.
        let cols = |l: &str| -> Vec<String> {
            let v: Vec<&str> = l.split_whitespace().collect();
            let mut c: Vec<String> = [0, 1, 2, 4, 5].iter().map(|&i| v[i].to_string()).collect();
            c.push(v[7..].join(" "));
            c
        };
        assert_eq!(cols(&row), cols(theirs), "\n{row}\n{theirs}");
        assert_eq!(row.len(), theirs.len(), "same widths:\n{row}\n{theirs}");
    }
}
