//! The external tools behind media and documents — `ffmpeg`/`ffprobe` (Debian `ffmpeg`),
//! `pdfinfo`/`pdftotext`/`pdftoppm` (Debian `poppler-utils`) — run as child processes, which
//! is their isolation: a crash, a hang or a runaway allocation ends the child, never the node.
//! Every run has no stdin, a deadline after which the child is killed, bounded captured output,
//! and is killed when its job is dropped (`kill_on_drop`).

use std::ffi::OsStr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::error::Failure;

/// Most stdout kept from one run (frames and pages come back through files, not stdout).
pub const MAX_STDOUT: usize = 64 << 20;
/// Most stderr kept (ffmpeg's silence detection reports there).
pub const MAX_STDERR: usize = 4 << 20;

pub struct Output {
    pub success: bool,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// Whether `program` can be started on this node (checked once per job kind at submission).
pub fn available(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

async fn read_bounded<R: tokio::io::AsyncRead + Unpin>(mut r: R, max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 << 10];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = max.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    out
}

/// Runs `program args…` with a deadline; `Err` only for a missing tool or the deadline.
pub async fn run<I, S>(program: &str, args: I, deadline: Duration) -> Result<Output, Failure>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Failure::new("tool_unavailable", format!("{program} cannot start: {e}")))?;
    let stdout = child.stdout.take().map(|s| tokio::spawn(read_bounded(s, MAX_STDOUT)));
    let stderr = child.stderr.take().map(|s| tokio::spawn(read_bounded(s, MAX_STDERR)));
    let status = match tokio::time::timeout(deadline, child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => return Err(Failure::new("parser_crashed", format!("{program}: {e}"))),
        Err(_) => {
            let _ = child.kill().await;
            return Err(Failure::new("timeout", format!("{program} ran past {} s and was killed", deadline.as_secs())));
        }
    };
    let stdout = match stdout {
        Some(t) => t.await.unwrap_or_default(),
        None => Vec::new(),
    };
    let stderr = match stderr {
        Some(t) => String::from_utf8_lossy(&t.await.unwrap_or_default()).into_owned(),
        None => String::new(),
    };
    if is_signal(&status) {
        return Err(Failure::new("parser_crashed", format!("{program} died of a signal: {}", last_line(&stderr))));
    }
    Ok(Output { success: status.success(), stdout, stderr })
}

#[cfg(unix)]
fn is_signal(status: &std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal().is_some()
}

#[cfg(not(unix))]
fn is_signal(_: &std::process::ExitStatus) -> bool {
    false
}

/// The last non-empty line of a tool's stderr, for error messages (never file content).
pub fn last_line(stderr: &str) -> String {
    stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").chars().take(300).collect()
}
