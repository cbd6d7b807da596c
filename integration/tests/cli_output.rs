//! The command line's output edges: every command writing to a closed stdout ends
//! quietly with status 141 (128 + SIGPIPE, what a shell reports for runc killed by
//! SIGPIPE; project issue 13, class 10), and a `--log` file that cannot be opened is a
//! one-line error before anything is done (issue 18, point 7).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use casulo_integration::{casulo_bin, Bundle};
use common::Env;

fn root() -> bool {
    common::root_or_skip("cli_output")
}

/// Runs casulo with stdout a pipe whose read end is already closed: (status, stderr).
fn closed_stdout(env: &Env, args: &[&str]) -> (i32, String) {
    let (r, w) = nix::unistd::pipe().expect("pipe");
    drop(r);
    let out = Command::new(casulo_bin())
        .arg("--root")
        .arg(&env.root)
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::from(w))
        .stderr(Stdio::piped())
        .output()
        .expect("spawn casulo");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_command_writing_to_a_closed_stdout_exits_quietly() {
    if !root() {
        return;
    }
    let env = Env::new("cli-epipe");
    let b = Bundle::new(&["sleep", "1000"]);
    let id = b.id();
    let r = env.create(&b);
    assert_eq!(r.code, 0, "create: {r:?}");
    let commands: Vec<Vec<&str>> = vec![
        vec!["features"],
        vec!["list"],
        vec!["list", "-q"],
        vec!["list", "--format", "json"],
        vec!["state", &id],
        vec!["ps", &id],
        vec!["ps", "--format", "json", &id],
        vec!["events", "--stats", &id],
        vec!["--version"],
        vec!["--help"],
        vec!["state", "--help"],
    ];
    let mut bad = Vec::new();
    for args in &commands {
        let (code, stderr) = closed_stdout(&env, args);
        if code != 141 || !stderr.is_empty() {
            bad.push(format!("casulo {args:?}: status {code}, stderr {stderr:?}"));
        }
    }
    assert!(
        bad.is_empty(),
        "a closed stdout ends the command with status 141 and nothing on stderr:\n{}",
        bad.join("\n")
    );

    // A pipeline as users write it: the reader stops after the first line.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} --root {} features | head -1",
            casulo_bin().display(),
            env.root.display()
        ))
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "{\n");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "`features | head -1` says nothing"
    );
}

#[test]
fn a_log_file_that_cannot_be_opened_is_an_error() {
    if !root() {
        return;
    }
    let env = Env::new("cli-log");
    let b = Bundle::new(&["true"]);
    let missing = b.dir.join("no-such-dir/casulo.log");
    let bundle = b.dir.to_str().unwrap();
    let cases: [(&Path, &str); 2] = [
        (&missing, "no such file or directory"),
        (&b.dir, "is a directory"),
    ];
    for (log, why) in cases {
        let log = log.to_str().unwrap();
        for args in [
            vec!["--log", log, "list"],
            vec!["--log", log, "create", "--bundle", bundle, &b.id()],
        ] {
            let r = env.run(&args);
            assert_eq!(r.code, 1, "casulo {args:?}: {r:?}");
            assert_eq!(
                r.stderr.lines().count(),
                1,
                "one line on stderr for {args:?}: {r:?}"
            );
            assert!(
                r.stderr.starts_with(&format!("casulo: --log {log}: {why}")),
                "the error names the flag, the file and why: {r:?}"
            );
            assert_eq!(r.stdout, "", "nothing else is done: {r:?}");
        }
        assert!(
            !env.root.join(b.id()).exists(),
            "no container is created with an unusable --log"
        );
    }
    assert!(!missing.parent().unwrap().exists());

    // A file that can be opened still gets the error, as JSON.
    let log = b.dir.join("casulo.log");
    let log_s = log.to_str().unwrap();
    let r = env.run(&["--log", log_s, "--log-format", "json", "state", "nope"]);
    assert_eq!(r.code, 1, "{r:?}");
    let line = std::fs::read_to_string(&log).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(v["level"], "error");
    assert!(v["msg"].as_str().unwrap().contains("nope"), "{line}");
}
