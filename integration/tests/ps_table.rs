//! `casulo ps`'s table: without options, the rows `ps -ef` prints for the container's
//! processes, read from /proc without running the host's `ps`; with options, the host's
//! `ps` with them, filtered on its PID column (as runc).

mod common;

use std::process::Command;

use casulo_integration::{casulo_bin, Bundle};
use common::Env;

fn pids(env: &Env, id: &str) -> Vec<i64> {
    serde_json::from_str(&env.ok(&["ps", "--format", "json", id]).stdout).unwrap()
}

/// The columns that cannot tick between two reads (UID PID PPID STIME TTY CMD).
fn stable(row: &str) -> Vec<String> {
    let v: Vec<&str> = row.split_whitespace().collect();
    let mut c: Vec<String> = [0, 1, 2, 4, 5].iter().map(|&i| v[i].to_string()).collect();
    c.push(v[7..].join(" "));
    c
}

#[test]
fn ps_table_is_the_ps_ef_rows_of_the_container_read_from_proc() {
    if !common::root_or_skip("ps_table") {
        return;
    }
    let env = Env::new("ps-table");
    let b = Bundle::new(&["sh", "-c", "sleep 1000 & sleep 1001 & wait"]);
    let id = b.id();
    assert_eq!(env.create(&b).code, 0);
    env.ok(&["start", &id]);
    common::eventually(|| pids(&env, &id).len() == 3);
    let ours = pids(&env, &id);
    assert_eq!(ours.len(), 3, "sh and two sleeps: {ours:?}");

    // No `ps` on the PATH: the default table must not need it.
    let out = Command::new(casulo_bin())
        .arg("--root")
        .arg(&env.root)
        .args(["ps", &id])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{table} {:?}", out.stderr);
    let host = Command::new("ps").arg("-ef").output().unwrap();
    let host = String::from_utf8_lossy(&host.stdout).into_owned();
    let mut lines = table.lines();
    assert_eq!(lines.next(), host.lines().next(), "ps -ef's header");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 3, "{table}");
    for row in rows {
        let pid = row.split_whitespace().nth(1).unwrap();
        let theirs = host
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(pid))
            .unwrap_or_else(|| panic!("pid {pid} in ps -ef:\n{host}"));
        assert_eq!(stable(row), stable(theirs), "\n{row}\n{theirs}");
        assert_eq!(row.len(), theirs.len(), "ps -ef's widths:\n{row}\n{theirs}");
    }
    assert!(table.contains("sleep 1001"), "{table}");

    // With options: the host's ps, the container's rows only.
    let r = env.ok(&["ps", &id, "-o", "pid,args"]);
    let mut lines = r.stdout.lines();
    assert_eq!(
        lines
            .next()
            .map(str::split_whitespace)
            .map(|h| h.collect::<Vec<_>>()),
        Some(vec!["PID", "COMMAND"])
    );
    let listed: Vec<i64> = lines
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(listed, ours, "{}", r.stdout);
    // Options without a PID column: refused in one line.
    let r = env.run(&["ps", &id, "-o", "args"]);
    assert_ne!(r.code, 0);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{r:?}");
    assert!(r.stderr.contains("PID"), "{r:?}");
    env.ok(&["delete", "--force", &id]);
}
