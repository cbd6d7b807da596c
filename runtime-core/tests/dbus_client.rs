//! The hand-written D-Bus client against a real, private `dbus-daemon` (its own socket
//! in a temp dir): authentication, Hello, calls, error replies, match rules, signals.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use casulo_core::dbus::{Connection, DbusError, Message, Value};

struct Daemon {
    child: Child,
    dir: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private session bus, or `None` (with the reason printed) when dbus-daemon is missing
/// outside CI.
fn daemon(name: &str) -> Option<(Daemon, PathBuf)> {
    let dir = std::env::temp_dir().join(format!("casulo-dbus-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("bus");
    let child = match Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--nopidfile"])
        .arg(format!("--address=unix:path={}", sock.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("SKIP: dbus-daemon: {e} (.ci/packages.d/dbus installs it)");
            return None;
        }
        Err(e) => panic!("dbus-daemon: {e}"),
    };
    let d = Daemon { child, dir };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "dbus-daemon made no socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some((d, sock))
}

fn bus_call(member: &str, body: Vec<Value>) -> Message {
    Message::call(
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus",
        member,
        body,
    )
}

fn connect(sock: &Path) -> Connection {
    // The daemon may still be starting to accept.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match Connection::connect(sock, true) {
            Ok(c) => return c,
            Err(e) if Instant::now() > deadline => panic!("connect: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

#[test]
fn hello_calls_and_error_replies() {
    let Some((_d, sock)) = daemon("calls") else {
        return;
    };
    let mut c = connect(&sock);
    let me = c
        .unique_name()
        .expect("Hello gave a unique name")
        .to_string();
    assert!(me.starts_with(':'), "{me}");
    let t = Duration::from_secs(20);
    // A call with an `s` argument and a `s` reply.
    let r = c
        .call(bus_call("GetNameOwner", vec![Value::str(&me)]), t)
        .unwrap();
    assert_eq!(r.body, vec![Value::str(&me)]);
    // An `as` reply naming this connection.
    let r = c.call(bus_call("ListNames", vec![]), t).unwrap();
    let Some(Value::Array(sig, names)) = r.body.first() else {
        panic!("ListNames: {r:?}")
    };
    assert_eq!(sig, "s");
    assert!(names.contains(&Value::str(&me)), "{names:?}");
    // Error replies keep the name and the message.
    let e = c.call(bus_call("NoSuchMethod", vec![]), t).unwrap_err();
    assert_eq!(
        e.name(),
        Some("org.freedesktop.DBus.Error.UnknownMethod"),
        "{e}"
    );
    assert!(e.to_string().contains("NoSuchMethod"), "{e}");
    let e = c
        .call(
            bus_call("GetNameOwner", vec![Value::str("org.example.Nobody")]),
            t,
        )
        .unwrap_err();
    assert_eq!(e.name(), Some("org.freedesktop.DBus.Error.NameHasNoOwner"));
    // A wrong argument type is refused by the daemon, and the connection still works.
    let e = c
        .call(bus_call("GetNameOwner", vec![Value::U32(1)]), t)
        .unwrap_err();
    assert!(matches!(e, DbusError::Method { .. }), "{e}");
    c.call(bus_call("GetId", vec![]), t).unwrap();
}

#[test]
fn match_rules_deliver_signals() {
    let Some((_d, sock)) = daemon("signals") else {
        return;
    };
    let mut a = connect(&sock);
    a.add_match("type='signal',interface='org.freedesktop.DBus',member='NameOwnerChanged'")
        .unwrap();
    let b = connect(&sock);
    let name = b.unique_name().unwrap().to_string();
    let m = a
        .wait_signal(Duration::from_secs(20), "NameOwnerChanged", &mut |m| {
            m.member.as_deref() == Some("NameOwnerChanged")
                && m.body.first() == Some(&Value::str(&name))
        })
        .unwrap();
    assert_eq!(m.body.len(), 3, "{m:?}");
    // Nothing else comes: the wait ends with a timeout error naming what it waited for.
    let e = a
        .wait_signal(Duration::from_millis(300), "JobRemoved", &mut |_| false)
        .unwrap_err();
    assert!(matches!(e, DbusError::Timeout(..)), "{e}");
    assert!(e.to_string().contains("JobRemoved"), "{e}");
}

#[test]
fn a_missing_socket_is_one_error_line() {
    let e = Connection::connect(Path::new("/nonexistent/casulo-bus"), true).unwrap_err();
    assert!(!e.to_string().contains('\n'), "{e}");
}
