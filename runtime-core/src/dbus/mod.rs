//! A minimal blocking D-Bus client: enough to drive systemd's manager for the
//! systemd cgroup driver ([`crate::cgroups`] `systemd`).
//!
//! One `UnixStream`, SASL `EXTERNAL` authentication (the caller's uid, as the server sees
//! the socket's peer), `Hello` on a bus, method calls and their replies or errors, and
//! signals (queued while a reply is awaited). No `unsafe` and no dependency: a D-Bus crate (zbus with its executor) would
//! cost about 1 MB of the 3 MiB binary budget (docs/architecture.md, "Why D-Bus is
//! hand-written"). The wire format is [`wire`].

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub mod wire;

pub use wire::{Message, Value};

/// systemd's own socket, where root talks to the manager without a bus daemon.
pub const SYSTEMD_PRIVATE: &str = "/run/systemd/private";
/// The system bus socket of dbus-daemon or dbus-broker.
pub const SYSTEM_BUS: &str = "/run/dbus/system_bus_socket";

/// Errors of the D-Bus client.
#[derive(Debug, thiserror::Error)]
pub enum DbusError {
    /// No socket could be connected: each one tried, with its error; the last one's
    /// error is the source.
    #[error("no D-Bus connection to systemd: {}", tried_text(.tried, .path, .source))]
    Connect {
        /// The sockets tried before the last one, each with its error.
        tried: Vec<(PathBuf, DbusError)>,
        /// The last socket tried.
        path: PathBuf,
        /// Why it could not be used.
        #[source]
        source: Box<DbusError>,
    },
    /// The caller's session bus (a rootless `--systemd-cgroup`) is not named anywhere.
    #[error("the user's session bus: {0}")]
    UserBusUnknown(String),
    /// The caller's session bus could not be connected.
    #[error(
        "the user's session bus ({from} {}): {source}; a rootless --systemd-cgroup needs \
         the user's systemd instance and its bus (systemctl --user, dbus-user-session)",
        path.display()
    )]
    UserBus {
        /// Where the address came from (`DBUS_SESSION_BUS_ADDRESS`, `$XDG_RUNTIME_DIR/bus`).
        from: &'static str,
        /// The socket.
        path: PathBuf,
        /// Why it could not be used.
        #[source]
        source: Box<DbusError>,
    },
    /// Reading or writing the socket failed.
    #[error("D-Bus I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The server refused the authentication or spoke something else.
    #[error("D-Bus authentication: {0}")]
    Auth(String),
    /// A malformed message.
    #[error(transparent)]
    Wire(#[from] wire::WireError),
    /// The peer answered a call with an error.
    #[error("{name}: {message}")]
    Method {
        /// The error name, e.g. `org.freedesktop.systemd1.UnitExists`.
        name: String,
        /// Its message.
        message: String,
    },
    /// No answer in time.
    #[error("no answer from D-Bus within {0:?} ({1})")]
    Timeout(Duration, String),
    /// The reply had an unexpected shape.
    #[error("unexpected D-Bus reply to {0}")]
    Reply(String),
}

impl DbusError {
    /// The D-Bus error name of a [`DbusError::Method`].
    pub fn name(&self) -> Option<&str> {
        match self {
            DbusError::Method { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// Result type of this module.
pub type Result<T> = std::result::Result<T, DbusError>;

/// One connection to a bus or to a peer.
#[derive(Debug)]
pub struct Connection {
    stream: UnixStream,
    serial: u32,
    pending: VecDeque<Message>,
    bus: bool,
    unique_name: Option<String>,
}

impl Connection {
    /// Connects to the socket at `path` and authenticates; on a bus (`bus`), says
    /// `Hello` too.
    pub fn connect(path: &Path, bus: bool) -> Result<Connection> {
        let stream = UnixStream::connect(path)?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        let mut c = Connection {
            stream,
            serial: 0,
            pending: VecDeque::new(),
            bus,
            unique_name: None,
        };
        c.authenticate()?;
        if bus {
            let reply = c.call(
                Message::call(
                    "org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus",
                    "Hello",
                    vec![],
                ),
                Duration::from_secs(30),
            )?;
            c.unique_name = reply.body.first().and_then(|v| v.as_str()).map(Into::into);
        }
        Ok(c)
    }

    /// The connection to systemd's manager: `/run/systemd/private` for root (as runc),
    /// else the system bus (`DBUS_SYSTEM_BUS_ADDRESS` with a `unix:path=`, or
    /// `/run/dbus/system_bus_socket`).
    pub fn systemd() -> Result<Connection> {
        let mut tried = Vec::new();
        if nix::unistd::geteuid().is_root() {
            match Connection::connect(Path::new(SYSTEMD_PRIVATE), false) {
                Ok(c) => return Ok(c),
                Err(e) => tried.push((PathBuf::from(SYSTEMD_PRIVATE), e)),
            }
        }
        let path = system_bus_path();
        Connection::connect(&path, true).map_err(|e| DbusError::Connect {
            tried,
            path,
            source: Box::new(e),
        })
    }

    /// The connection to the caller's own systemd instance (a rootless caller, as runc):
    /// its session bus, `DBUS_SESSION_BUS_ADDRESS` with a `unix:path=`, else
    /// `$XDG_RUNTIME_DIR/bus`.
    pub fn user_session() -> Result<Connection> {
        let (bus, from) = match std::env::var("DBUS_SESSION_BUS_ADDRESS") {
            Ok(a) if !a.is_empty() => match unix_path(&a) {
                Some(p) => (p, "DBUS_SESSION_BUS_ADDRESS"),
                None => {
                    return Err(DbusError::UserBusUnknown(format!(
                        "DBUS_SESSION_BUS_ADDRESS={a:?} has no unix:path= address"
                    )))
                }
            },
            _ => match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
                Some(d) => (Path::new(&d).join("bus"), "$XDG_RUNTIME_DIR/bus"),
                None => {
                    return Err(DbusError::UserBusUnknown(
                        "neither DBUS_SESSION_BUS_ADDRESS nor XDG_RUNTIME_DIR is set".into(),
                    ))
                }
            },
        };
        Connection::connect(&bus, true).map_err(|e| DbusError::UserBus {
            from,
            path: bus,
            source: Box::new(e),
        })
    }

    /// True on a bus (through a daemon), false on a peer-to-peer connection.
    pub fn is_bus(&self) -> bool {
        self.bus
    }

    /// The name the bus gave this connection (`Hello`'s answer).
    pub fn unique_name(&self) -> Option<&str> {
        self.unique_name.as_deref()
    }

    /// SASL `EXTERNAL` without an authorization identity: the server takes the
    /// caller's uid from the socket (SO_PEERCRED), so a caller that is root in a user
    /// namespace (rootless podman's) is its real uid; the server asks with `DATA`.
    fn authenticate(&mut self) -> Result<()> {
        self.stream.write_all(b"\0AUTH EXTERNAL\r\n")?;
        self.stream
            .set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut text = self.auth_line()?;
        if text == "DATA" {
            self.stream.write_all(b"DATA\r\n")?;
            text = self.auth_line()?;
        }
        if !text.starts_with("OK ") {
            return Err(DbusError::Auth(format!("server answered {text:?}")));
        }
        self.stream.write_all(b"BEGIN\r\n")?;
        Ok(())
    }

    /// One line of the server's SASL answer, without its CRLF.
    fn auth_line(&mut self) -> Result<String> {
        // Byte by byte: nothing may be read past the line (the server sends nothing else
        // before BEGIN, but the stream is binary from then on).
        let mut line = Vec::new();
        let mut b = [0u8];
        while !line.ends_with(b"\r\n") {
            if line.len() > 512 {
                return Err(DbusError::Auth("answer too long".into()));
            }
            self.stream.read_exact(&mut b)?;
            line.push(b[0]);
        }
        Ok(String::from_utf8_lossy(&line).trim_end().to_string())
    }

    /// Sends `m` with the next serial, returns that serial.
    pub fn send(&mut self, mut m: Message) -> Result<u32> {
        self.serial = self.serial.wrapping_add(1).max(1);
        m.serial = self.serial;
        self.stream.write_all(&m.encode()?)?;
        Ok(m.serial)
    }

    fn read_message(&mut self, deadline: Instant, what: &str) -> Result<Message> {
        // The caller puts its whole timeout into the error.
        let timeout = || DbusError::Timeout(Duration::ZERO, what.to_string());
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timeout());
        }
        self.stream.set_read_timeout(Some(left))?;
        let map = |e: std::io::Error| match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => timeout(),
            _ => DbusError::Io(e),
        };
        let mut head = [0u8; 16];
        self.stream.read_exact(&mut head).map_err(map)?;
        let mut buf = head.to_vec();
        buf.resize(Message::total_len(&head)?, 0);
        self.stream.read_exact(&mut buf[16..]).map_err(map)?;
        Ok(Message::decode(&buf)?)
    }

    /// Calls a method and waits up to `timeout` for its reply; an error reply is
    /// [`DbusError::Method`]. Signals received meanwhile are kept for
    /// [`Connection::wait_signal`].
    pub fn call(&mut self, m: Message, timeout: Duration) -> Result<Message> {
        match self.call_unless(m, timeout, &mut || false)? {
            Some(r) => Ok(r),
            None => Err(DbusError::Reply("a call given up".into())),
        }
    }

    /// [`Connection::call`], giving up (`Ok(None)`) as soon as `give_up` holds; it is
    /// asked every 200 ms while no reply has come.
    pub fn call_unless(
        &mut self,
        m: Message,
        timeout: Duration,
        give_up: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Message>> {
        let what = m.member.clone().unwrap_or_default();
        let serial = self.send(m)?;
        let deadline = Instant::now() + timeout;
        loop {
            let slice = deadline.min(Instant::now() + Duration::from_millis(200));
            let r = match self.read_message(slice, &what) {
                Err(DbusError::Timeout(..)) if Instant::now() < deadline => {
                    if give_up() {
                        return Ok(None);
                    }
                    continue;
                }
                Err(DbusError::Timeout(_, w)) => return Err(DbusError::Timeout(timeout, w)),
                r => r?,
            };
            match r.kind {
                wire::SIGNAL => self.pending.push_back(r),
                wire::METHOD_RETURN if r.reply_serial == Some(serial) => return Ok(Some(r)),
                wire::ERROR if r.reply_serial == Some(serial) => {
                    return Err(DbusError::Method {
                        name: r.error_name.unwrap_or_default(),
                        message: r
                            .body
                            .first()
                            .and_then(|v| v.as_str())
                            .unwrap_or_default()
                            .to_string(),
                    })
                }
                _ => {}
            }
        }
    }

    /// Asks the bus daemon to route signals matching `rule` here (`AddMatch`); nothing
    /// on a peer-to-peer connection, which gets every signal.
    pub fn add_match(&mut self, rule: &str) -> Result<()> {
        if !self.bus {
            return Ok(());
        }
        self.call(
            Message::call(
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "AddMatch",
                vec![Value::str(rule)],
            ),
            Duration::from_secs(30),
        )?;
        Ok(())
    }

    /// Waits up to `timeout` for a signal for which `want` holds (kept ones first);
    /// other signals are dropped.
    pub fn wait_signal(
        &mut self,
        timeout: Duration,
        what: &str,
        want: &mut dyn FnMut(&Message) -> bool,
    ) -> Result<Message> {
        while let Some(m) = self.pending.pop_front() {
            if want(&m) {
                return Ok(m);
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            let m = match self.read_message(deadline, what) {
                Err(DbusError::Timeout(_, w)) => return Err(DbusError::Timeout(timeout, w)),
                r => r?,
            };
            if m.kind == wire::SIGNAL && want(&m) {
                return Ok(m);
            }
        }
    }
}

/// `path: error` for each socket tried, joined by `; `.
fn tried_text(before: &[(PathBuf, DbusError)], path: &Path, last: &DbusError) -> String {
    let mut out = String::new();
    for (p, e) in before {
        out += &format!("{}: {e}; ", p.display());
    }
    out + &format!("{}: {last}", path.display())
}

/// The system bus socket: `DBUS_SYSTEM_BUS_ADDRESS` when it is a `unix:path=`, else
/// [`SYSTEM_BUS`].
fn system_bus_path() -> PathBuf {
    std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
        .ok()
        .and_then(|a| unix_path(&a))
        .unwrap_or_else(|| PathBuf::from(SYSTEM_BUS))
}

/// The first `unix:path=` socket of a D-Bus server address list.
fn unix_path(address: &str) -> Option<PathBuf> {
    address.split(';').find_map(|one| {
        let rest = one.strip_prefix("unix:")?;
        rest.split(',')
            .find_map(|kv| kv.strip_prefix("path=").map(PathBuf::from))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed connection lists each socket tried with its error, as one line, and keeps
    /// the last socket's error as its source (an embedder can match ENOENT).
    #[test]
    fn connect_failure_keeps_each_error() {
        let dir = std::env::temp_dir().join(format!("casulo-dbus-{}", std::process::id()));
        let (a, b) = (dir.join("private"), dir.join("bus"));
        let first = Connection::connect(&a, false).unwrap_err();
        let last = Connection::connect(&b, true).unwrap_err();
        let (t1, t2) = (first.to_string(), last.to_string());
        let e = DbusError::Connect {
            tried: vec![(a.clone(), first)],
            path: b.clone(),
            source: Box::new(last),
        };
        assert_eq!(
            e.to_string(),
            format!(
                "no D-Bus connection to systemd: {}: {t1}; {}: {t2}",
                a.display(),
                b.display()
            )
        );
        let source = std::error::Error::source(&e).expect("the last error");
        let io = std::error::Error::source(source)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .map(std::io::Error::kind);
        assert_eq!(io, Some(ErrorKind::NotFound));
    }
}
