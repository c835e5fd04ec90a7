//! The external tools behind media and documents — `ffmpeg`/`ffprobe` (Debian `ffmpeg`),
//! `pdfinfo`/`pdftotext`/`pdftoppm` (Debian `poppler-utils`) — run as child processes, which
//! is their isolation: a crash, a hang or a runaway allocation ends the child, never the node.
//! Every run has no stdin, a deadline after which the child is killed (an ffmpeg also when it
//! reports no progress for `files.no_progress_timeout`), bounded captured output,
//! is killed when its job is dropped (`kill_on_drop`), and runs under resource limits set by
//! util-linux `prlimit` (address space `files.tool_memory`, CPU seconds = the deadline, no core
//! dumps) — the workspace forbids `unsafe`, so no `pre_exec` `setrlimit` of our own.

use std::ffi::OsStr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

/// Milliseconds since `start` of the last byte a tool wrote (its sign of progress).
async fn read_bounded<R: tokio::io::AsyncRead + Unpin>(
    mut r: R,
    max: usize,
    start: Instant,
    last: Arc<AtomicU64>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 << 10];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                last.fetch_max(start.elapsed().as_millis() as u64, Ordering::Relaxed);
                let room = max.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    out
}

/// The address-space limit of every tool run, in bytes (`files.tool_memory`); set once at start.
static TOOL_MEMORY: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

pub fn set_tool_memory(bytes: u64) {
    let _ = TOOL_MEMORY.set(bytes);
}

/// How long an ffmpeg run may go without reporting progress (`files.no_progress_timeout`).
static NO_PROGRESS: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();

pub fn set_no_progress(d: Duration) {
    let _ = NO_PROGRESS.set(d);
}

/// ffmpeg's `-progress` lines (`key=value`), which are not messages.
fn is_progress_line(l: &str) -> bool {
    l.split_once('=').is_some_and(|(k, v)| {
        !k.is_empty()
            && k.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !v.contains(' ')
    })
}

fn command(program: &str, deadline: Duration) -> Command {
    static PRLIMIT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if !*PRLIMIT.get_or_init(|| {
        let here = available("prlimit");
        if !here {
            tracing::warn!("prlimit (util-linux) not found: media tools run without memory and CPU limits");
        }
        here
    }) {
        return Command::new(program);
    }
    let mut c = Command::new("prlimit");
    let memory = TOOL_MEMORY.get().copied().unwrap_or(4 << 30);
    c.arg(format!("--as={memory}"))
        .arg(format!("--cpu={}", deadline.as_secs().max(1) + 1))
        .arg("--core=0")
        .arg("--")
        .arg(program);
    c
}

/// Runs `program args…` with a deadline; `Err` for a missing tool, the deadline, the CPU or
/// memory limit, or a crash.
pub async fn run<I, S>(program: &str, args: I, deadline: Duration) -> Result<Output, Failure>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    if !available(program) {
        return Err(Failure::new("tool_unavailable", format!("{program} is not installed on this node")));
    }
    // ffmpeg reports progress every 2 s (to stderr, unless the run sends it elsewhere): a run
    // that stops reporting — stuck on a broken stream, stopped, starved — is killed.
    let mut args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let watched = program == "ffmpeg";
    if watched && !args.iter().any(|a| a == "-progress") {
        let mut with: Vec<std::ffi::OsString> = ["-progress", "pipe:2", "-stats_period", "2"].map(Into::into).to_vec();
        with.append(&mut args);
        args = with;
    }
    let mut child = command(program, deadline)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Failure::new("tool_unavailable", format!("{program} cannot start: {e}")))?;
    let (start, last) = (Instant::now(), Arc::new(AtomicU64::new(0)));
    let stdout = child.stdout.take().map(|s| tokio::spawn(read_bounded(s, MAX_STDOUT, start, last.clone())));
    let stderr = child.stderr.take().map(|s| tokio::spawn(read_bounded(s, MAX_STDERR, start, last.clone())));
    let no_progress = NO_PROGRESS.get().copied().unwrap_or(Duration::from_secs(30));
    let status = loop {
        tokio::select! {
            // Cancel-safe: waiting again later loses nothing.
            waited = child.wait() => match waited {
                Ok(status) => break status,
                Err(e) => return Err(Failure::new("parser_crashed", format!("{program}: {e}"))),
            },
            () = tokio::time::sleep(Duration::from_millis(250)) => {
                let now = start.elapsed();
                if now >= deadline {
                    let _ = child.kill().await;
                    return Err(Failure::new("timeout", format!("{program} ran past {} s and was killed", deadline.as_secs())));
                }
                let idle = now.saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
                if watched && idle >= no_progress {
                    let _ = child.kill().await;
                    metrics::counter!(crate::metrics::NO_PROGRESS).increment(1);
                    return Err(Failure::new(
                        "timeout",
                        format!("{program} reported no progress for {} s and was killed", no_progress.as_secs()),
                    ));
                }
            }
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
    let stderr =
        if watched { stderr.lines().filter(|l| !is_progress_line(l)).collect::<Vec<_>>().join("\n") } else { stderr };
    match signal(&status) {
        Some(24) => return Err(Failure::new("timeout", format!("{program} used up its CPU time and was stopped"))),
        Some(sig) => {
            return Err(Failure::new(
                "parser_crashed",
                format!("{program} died of signal {sig}: {}", last_line(&stderr)),
            ));
        }
        None => {}
    }
    let lower = stderr.to_ascii_lowercase();
    if !status.success() && (lower.contains("cannot allocate memory") || lower.contains("out of memory")) {
        return Err(Failure::new("too_large", format!("{program} ran out of its memory limit")));
    }
    Ok(Output { success: status.success(), stdout, stderr })
}

#[cfg(unix)]
fn signal(status: &std::process::ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.signal()
}

#[cfg(not(unix))]
fn signal(_: &std::process::ExitStatus) -> Option<i32> {
    None
}

/// The last non-empty line of a tool's stderr, for error messages (never file content).
pub fn last_line(stderr: &str) -> String {
    stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_are_told_from_messages() {
        let cases = [
            ("out_time_us=1234567", true),
            ("progress=continue", true),
            ("stream_0_0_q=28.0", true),
            ("bitrate=N/A", true),
            ("[mjpeg @ 0x55] error decoding EXIF data", false),
            ("Error opening input file in.mp4.", false),
            ("Invalid data found when processing input", false),
            ("key=value with spaces", false),
            ("=x", false),
        ];
        for (line, want) in cases {
            assert_eq!(is_progress_line(line), want, "{line}");
        }
        let stderr = "frame=10\nprogress=continue\n[in @ 0x1] moov atom not found\nprogress=end";
        let kept: Vec<&str> = stderr.lines().filter(|l| !is_progress_line(l)).collect();
        assert_eq!(last_line(&kept.join("\n")), "[in @ 0x1] moov atom not found");
    }
}
