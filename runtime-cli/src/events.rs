//! `casulo events`: runc's container events as JSON lines on stdout.
//!
//! - `--stats`: one `{"type":"stats","id":…,"data":{cpu,memory,pids,blkio,hugetlb}}`.
//! - otherwise a stream: a stats event every `--interval` (default 5s) and an
//!   `{"type":"oom","id":…}` event for each OOM kill in the container's cgroup,
//!   until the container stops.

use std::time::{Duration, Instant};

use casulo_core::stats::Stats;
use casulo_core::{Runtime, Status};
use clap::Args;
use serde::Serialize;

type Result<T> = std::result::Result<T, String>;

/// How often the stream checks whether the container still runs.
const STOP_CHECK: Duration = Duration::from_millis(200);

/// `events` flags.
#[derive(Args)]
pub struct EventsArgs {
    /// Time between stats events (Go duration: 5s, 500ms, 1m).
    #[arg(long, default_value = "5s")]
    interval: String,
    /// Print the container's stats once and exit.
    #[arg(long)]
    stats: bool,
    /// Container id.
    id: String,
}

/// Parses a Go-style duration: one or more `<number><unit>` with units ns, us,
/// µs, ms, s, m, h (e.g. `5s`, `1m30s`, `0.5s`).
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || format!("--interval: invalid duration {s:?} (e.g. 5s, 500ms, 1m)");
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..n_end].parse().map_err(|_| bad())?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..u_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += n * secs;
        rest = &rest[u_end..];
    }
    if total <= 0.0 || !total.is_finite() {
        return Err("--interval: must be greater than zero".into());
    }
    Ok(Duration::from_secs_f64(total))
}

/// One event, in runc's shape (`types.Event`).
#[derive(Serialize)]
struct Event<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Stats>,
}

fn emit(ev: &Event<'_>) -> Result<()> {
    let line = serde_json::to_string(ev).map_err(|e| e.to_string())?;
    crate::out::line(line)
}

fn stats_event<'a>(rt: &Runtime, id: &'a str) -> Result<Event<'a>> {
    let st = rt.stats(id).map_err(|e| e.to_string())?;
    Ok(Event {
        kind: "stats",
        id,
        data: Some(st),
    })
}

fn oom_event(id: &str) -> Event<'_> {
    Event {
        kind: "oom",
        id,
        data: None,
    }
}

fn stopped(rt: &Runtime, id: &str) -> bool {
    rt.state(id)
        .map(|s| s.status == Status::Stopped)
        .unwrap_or(true)
}

/// Runs `events`.
pub fn run(rt: &Runtime, a: &EventsArgs) -> Result<i32> {
    let interval = parse_duration(&a.interval)?;
    if a.stats {
        emit(&stats_event(rt, &a.id)?)?;
        return Ok(0);
    }
    // Checks the state first, so a missing or stopped container is an error.
    let st = rt.state(&a.id).map_err(|e| e.to_string())?;
    if st.status == Status::Stopped {
        return Err(format!("container {} is stopped", a.id));
    }
    // Without a memory controller there are no OOM events, only stats.
    let mut oom = rt.oom_notifier(&a.id).ok();
    let mut next_stats = Instant::now();
    loop {
        let now = Instant::now();
        if now >= next_stats {
            match stats_event(rt, &a.id) {
                Ok(ev) => emit(&ev)?,
                Err(_) if stopped(rt, &a.id) => break,
                Err(e) => return Err(e),
            }
            next_stats = now + interval;
        }
        let wait = next_stats
            .saturating_duration_since(Instant::now())
            .min(STOP_CHECK);
        match oom.as_mut() {
            Some(n) => match n.wait(Some(wait)) {
                Ok(true) => emit(&oom_event(&a.id))?,
                Ok(false) => {}
                // The cgroup went away: the container was deleted.
                Err(_) => oom = None,
            },
            None => std::thread::sleep(wait),
        }
        if stopped(rt, &a.id) {
            // An OOM kill of the init stops the container: report it first.
            if let Some(n) = oom.as_mut() {
                if n.wait(Some(Duration::ZERO)).unwrap_or(false) {
                    emit(&oom_event(&a.id))?;
                }
            }
            break;
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0.5s"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5x").is_err());
    }
}
