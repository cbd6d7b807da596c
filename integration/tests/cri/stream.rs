//! A streaming Exec as a kubelet-side client sees it: the Exec RPC's URL on
//! containerd's streaming server (127.0.0.1 in containerd's own network namespace),
//! opened as a websocket with the `v4.channel.k8s.io` protocol: every binary message
//! starts with its channel (1 stdout, 2 stderr, 3 the final status as JSON).

use std::net::TcpStream;
use std::os::fd::AsFd;
use std::time::Duration;

use tungstenite::client::IntoClientRequest;
use tungstenite::Message;

/// What one streaming exec returned: stdout, stderr, the status JSON.
#[derive(Debug, Default)]
pub struct Streamed {
    /// Channel 1.
    pub stdout: String,
    /// Channel 2.
    pub stderr: String,
    /// Channel 3.
    pub status: String,
}

/// Opens `url` from a thread that joined the network namespace of `netns_pid`, reads
/// every channel until the server closes.
pub fn exec_stream(netns_pid: u32, url: &str) -> Streamed {
    let ns = std::fs::File::open(format!("/proc/{netns_pid}/ns/net")).expect("open netns");
    let url = url.to_string();
    std::thread::spawn(move || {
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("join containerd's network namespace (this thread only)");
        let ws_url = url.replacen("http://", "ws://", 1);
        let host = ws_url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .expect("host:port in the URL")
            .to_string();
        assert!(
            host.starts_with("127.0.0.1:"),
            "streaming on loopback: {url}"
        );
        let mut req = ws_url.as_str().into_client_request().expect("request");
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "v4.channel.k8s.io".parse().unwrap(),
        );
        let tcp = TcpStream::connect(&host).expect("connect to the streaming server");
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let (mut ws, _resp) = tungstenite::client(req, tcp).expect("websocket handshake");
        let mut got = Streamed::default();
        loop {
            match ws.read() {
                Ok(Message::Binary(b)) if !b.is_empty() => {
                    let text = String::from_utf8_lossy(&b[1..]).into_owned();
                    match b[0] {
                        1 => got.stdout.push_str(&text),
                        2 => got.stderr.push_str(&text),
                        3 => got.status.push_str(&text),
                        _ => {}
                    }
                }
                Ok(Message::Close(_)) => break,
                Ok(_) => {}
                Err(tungstenite::Error::ConnectionClosed) => break,
                Err(e) => panic!("websocket: {e} (so far {got:?})"),
            }
        }
        got
    })
    .join()
    .expect("the streaming thread")
}
