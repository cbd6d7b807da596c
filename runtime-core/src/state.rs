//! Container state (runtime.md "State"): the status derived from the init process and
//! the JSON document `state` prints.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Serialize;

/// The spec's container statuses (plus `paused`, as runc reports it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// `create` is still running.
    Creating,
    /// Created, the user's process not started yet.
    Created,
    /// The user's process runs.
    Running,
    /// Frozen through the cgroup freezer.
    Paused,
    /// The init has exited.
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// The state document (`casulo state`), with runc's extra fields.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// The spec version of the config.
    pub oci_version: String,
    /// Container id.
    pub id: String,
    /// Init pid on the host; 0 once stopped.
    pub pid: i32,
    /// Current status.
    pub status: Status,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// Creation time (RFC 3339).
    pub created: String,
    /// Owner (empty for root, as runc prints it).
    pub owner: String,
    /// The config's annotations.
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
}

/// Reads the state character and start time of `pid` from /proc/<pid>/stat.
pub fn proc_stat(pid: i32) -> Option<(char, u64)> {
    use std::io::Read;
    // One read(2) of a stack buffer: the line is < 1 KiB (comm is at most 16 bytes),
    // where read_to_string of a procfs file (size 0) takes six growing reads.
    let mut buf = [0u8; 1024];
    let mut f = std::fs::File::open(format!("/proc/{pid}/stat")).ok()?;
    let n = f.read(&mut buf).ok()?;
    let s = String::from_utf8_lossy(&buf[..n]);
    let rest = s.get(s.rfind(')')? + 2..)?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state come fields 4..; starttime is field 22, i.e. the 20th after state.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// True when `pid` is alive (not a zombie) and started at `start_time`.
pub fn alive(pid: i32, start_time: u64) -> bool {
    pid > 0 && matches!(proc_stat(pid), Some((st, t)) if st != 'Z' && st != 'X' && t == start_time)
}

/// True when the process `pid` started at `start_time` is gone or going: exited, a
/// zombie, exiting (`PF_EXITING` in the flags of /proc/<pid>/stat) or with a SIGKILL
/// pending (`SigPnd`/`ShdPnd` of /proc/<pid>/status). An operation that fails while
/// its container's init is in this state failed because the container went away.
pub fn going(pid: i32, start_time: u64) -> bool {
    const PF_EXITING: u64 = 0x4;
    const SIGKILL_BIT: u64 = 1 << (libc::SIGKILL - 1);
    if !alive(pid, start_time) {
        return true;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let flags = stat
        .rfind(')')
        .and_then(|i| stat.get(i + 2..))
        .and_then(|rest| rest.split_whitespace().nth(6))
        .and_then(|f| f.parse::<u64>().ok())
        .unwrap_or(0);
    if flags & PF_EXITING != 0 {
        return true;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().any(|l| {
        let (key, val) = l.split_once(':').unwrap_or_default();
        matches!(key, "SigPnd" | "ShdPnd")
            && u64::from_str_radix(val.trim(), 16).is_ok_and(|m| m & SIGKILL_BIT != 0)
    }) || !alive(pid, start_time)
}

/// Now, in RFC 3339 with nanoseconds (as Go prints time.Time).
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let ((year, month, day), rem) = utc_date(d.as_secs() as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// The UTC (year, month 1-12, day 1-31) of a Unix time, and the seconds into that day.
pub fn utc_date(secs: i64) -> ((i64, i64, i64), i64) {
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    ((year, month, day), rem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_stat_parses() {
        let (st, start) = proc_stat(std::process::id() as i32).unwrap();
        assert!(st == 'R' || st == 'S');
        assert!(start > 0);
        assert!(alive(std::process::id() as i32, start));
        assert!(!alive(std::process::id() as i32, start + 1));
    }

    #[test]
    fn a_live_process_is_not_going_and_a_reaped_one_is() {
        let (_, start) = proc_stat(std::process::id() as i32).unwrap();
        assert!(!going(std::process::id() as i32, start));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        assert!(going(pid, start));
    }

    #[test]
    fn timestamp_shape() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 30, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }
}
