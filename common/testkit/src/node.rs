//! A `loom` process for tests: its own loopback address (127.0.0.20 and up, claimed with a lock
//! file so parallel tests and test binaries never share one), its own data directory, logs
//! captured to files, signals sent like an operator would, and a hard kill when dropped.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::process::{Child, Command};

/// Loopback addresses the tests may claim (the founders' checks use 127.0.0.2–16).
const FIRST_ADDR: u8 = 20;
const LAST_ADDR: u8 = 250;

/// The documented service ports.
pub const PORTS: [u16; 10] = [8010, 8011, 8012, 8013, 8020, 8021, 8022, 8023, 8030, 8031];

/// The default cluster port.
pub const CLUSTER_PORT: u16 = 4697;

/// The default data-plane port.
pub const DATA_PORT: u16 = 4698;

/// A claimed loopback address; released when dropped.
pub struct Address {
    pub ip: String,
    _lock: File,
}

/// Claims a free loopback address for the life of the returned value.
pub fn claim_address() -> Address {
    let dir = std::env::temp_dir().join("loom-test-addrs");
    std::fs::create_dir_all(&dir).expect("lock dir");
    for last in FIRST_ADDR..=LAST_ADDR {
        let ip = format!("127.0.0.{last}");
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(&ip)).expect("lock file");
        // A stray process (a killed run's node, an operator's) may hold the ports without the
        // lock: skip addresses where any port is taken.
        if file.try_lock().is_ok() && ports_free(&ip) {
            return Address { ip, _lock: file };
        }
    }
    panic!("no free loopback address between 127.0.0.{FIRST_ADDR} and 127.0.0.{LAST_ADDR}");
}

fn ports_free(ip: &str) -> bool {
    PORTS.iter().chain([&CLUSTER_PORT, &DATA_PORT]).all(|port| std::net::TcpListener::bind((ip, *port)).is_ok())
}

/// The `loom` binary under test: `LOOM_BIN`, else `<target dir>/debug/loom`.
pub fn binary() -> PathBuf {
    if let Ok(bin) = std::env::var("LOOM_BIN") {
        return PathBuf::from(bin);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let bin = target.join("debug/loom");
    assert!(bin.exists(), "{} does not exist: build it first (cargo build -p loom-node)", bin.display());
    bin
}

#[derive(Default, Clone)]
pub struct NodeOptions {
    /// Extra environment (the node always gets LOOM_NODE_NAME, LOOM_BIND_ADDR, LOOM_DATA_DIR).
    pub env: Vec<(String, String)>,
    /// Contents of a config file passed with `--config`.
    pub config: Option<String>,
    /// Arguments instead of `run` (e.g. `config check`).
    pub args: Option<Vec<String>>,
}

impl NodeOptions {
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.to_owned());
        self
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.args = Some(args.iter().map(|s| s.to_string()).collect());
        self
    }
}

pub struct LoomNode {
    pub name: String,
    pub address: Address,
    pub dir: TempDir,
    child: Child,
    exit: Option<ExitStatus>,
}

impl LoomNode {
    /// Starts a node (does not wait for it).
    pub fn start(name: &str, options: NodeOptions) -> LoomNode {
        Self::start_on(name, claim_address(), options)
    }

    /// Starts a node on an address the caller already claimed.
    pub fn start_on(name: &str, address: Address, options: NodeOptions) -> LoomNode {
        let dir = tempfile::Builder::new().prefix("loom-test-").tempdir().expect("temp dir");
        let stdout = File::create(dir.path().join("stdout.log")).expect("stdout log");
        let stderr = File::create(dir.path().join("stderr.log")).expect("stderr log");
        let mut cmd = Command::new(binary());
        match &options.args {
            Some(args) => cmd.args(args),
            None => cmd.arg("run"),
        };
        if let Some(config) = &options.config {
            let path = dir.path().join("node.toml");
            std::fs::write(&path, config).expect("config file");
            cmd.arg("--config").arg(path);
        }
        cmd.current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            // HOME as a real process has it: the holiday table is found under ~/.cache/loom.
            .env("HOME", std::env::var("HOME").unwrap_or_default())
            .env("LOOM_NODE_NAME", name)
            .env("LOOM_BIND_ADDR", &address.ip)
            .env("LOOM_DATA_DIR", dir.path().join("data"))
            .env("LOOM_LOG", "info")
            .envs(options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true);
        let child = cmd.spawn().expect("spawn loom");
        LoomNode { name: name.to_owned(), address, dir, child, exit: None }
    }

    /// Kills the process (SIGKILL) and hands back its address, so a test can start a node on it
    /// again.
    pub async fn kill_into_address(self) -> Address {
        let LoomNode { address, mut child, .. } = self;
        let _ = child.kill().await;
        address
    }

    /// Stops the process with SIGTERM (the graceful drain) and hands back how it exited
    /// (`None`: still running after `timeout`, then killed) and its address, for a restart.
    pub async fn terminate_into_address(mut self, timeout: Duration) -> (Option<ExitStatus>, Address) {
        self.signal("TERM");
        let exit = self.wait_exit(timeout).await;
        if exit.is_none() {
            let _ = self.child.kill().await;
        }
        let LoomNode { address, .. } = self;
        (exit, address)
    }

    pub fn url(&self, port: u16, path: &str) -> String {
        format!("http://{}:{port}{path}", self.address.ip)
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("node is running")
    }

    /// Waits until every given port answers `/ready` with 200; panics with the log tail if not.
    pub async fn wait_ready(&mut self, ports: &[u16], timeout: Duration) {
        let client = crate::http();
        let deadline = Instant::now() + timeout;
        for port in ports {
            loop {
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!("{} exited with {status} before ready:\n{}", self.name, self.logs());
                }
                let ready = client.get(self.url(*port, "/ready")).send().await.map(|r| r.status().as_u16() == 200);
                if ready.unwrap_or(false) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{}:{port} not ready after {timeout:?}:\n{}",
                    self.name,
                    self.logs()
                );
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    }

    /// Starts a node and waits for all ten ports to be ready.
    pub async fn start_ready(name: &str, options: NodeOptions) -> LoomNode {
        let mut node = Self::start(name, options);
        node.wait_ready(&PORTS, Duration::from_secs(30)).await;
        node
    }

    /// Sends a signal by name (`TERM`, `INT`, `KILL`, `STOP`, `CONT`) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit; `None` if it is still running after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = tokio::time::timeout(timeout, self.child.wait()).await.ok().map(|r| r.expect("wait"));
        }
        self.exit
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Both logs, for failure messages.
    pub fn logs(&self) -> String {
        let out = self.stdout();
        let tail: Vec<&str> = out.lines().rev().take(40).collect();
        format!(
            "--- stdout (last 40 lines) ---\n{}\n--- stderr ---\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            self.stderr()
        )
    }

    /// Parsed JSON log lines.
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        self.stdout().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }
}
