//! Test kit for Loom's integration tests: where the real infrastructure is (`infra`), `loom`
//! processes on their own loopback addresses with captured logs (`node`), and a polling helper
//! instead of sleeps (`eventually`).

pub mod cluster;
pub mod infra;
pub mod node;

use std::future::Future;
use std::time::{Duration, Instant};

pub use node::{LoomNode, NodeOptions};

/// Polls `check` every 25 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A client that never pools connections, so every request sees the server's current state.
/// Sends only the head of a request declaring a `length`-byte body and returns the start of the
/// answer. A node refuses a declared oversized body before reading it and closes the
/// connection, so a client still writing that body may see a broken pipe instead of the 413 —
/// this asks without the race.
pub async fn declared_body(ip: &str, port: u16, method: &str, path: &str, content_type: &str, length: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect((ip, port)).await.expect("connects");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: {content_type}\r\ncontent-length: {length}\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.expect("writes the head");
    let mut buf = vec![0u8; 4096];
    let n =
        tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await.expect("answers in time").unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(30)).build().expect("http client")
}

/// Runs `promtool check metrics` on exposition text: (accepted, promtool's report).
pub fn promtool(text: &str) -> (bool, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (scripts/test.sh installs it)");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("promtool reads");
    let out = child.wait_with_output().expect("promtool runs");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}
