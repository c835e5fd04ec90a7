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
