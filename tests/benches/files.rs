//! Bench binary (`cargo build --release -p loom-node && LOOM_BIN=<target>/release/loom cargo
//! bench -p loom-tests --bench files`): File Processing side by side with the tools people use
//! for the same work, on the same files in the same run.
//!
//! 1. 256-px thumbnails from 12-MP JPEGs (4000 × 3000, made here with ffmpeg): jobs on a node
//!    (2 workers; upload excluded, job submission to result included) against `vipsthumbnail`
//!    (libvips, when installed) and `ffmpeg -vf scale` run two at a time, thumbnails/s.
//! 2. Audio transcode to Opus of 60 s WAV files: jobs against direct `ffmpeg` calls, two at a
//!    time, seconds of audio per second.

#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use loom_testkit::{LoomNode, NodeOptions, http};
use serde_json::{Value, json};

const IMAGES: usize = 12;
const AUDIO: usize = 6;
const PARALLEL: usize = 2;

fn ffmpeg(args: &[&str], out: &Path) {
    let ok =
        Command::new("ffmpeg").args(["-nostdin", "-v", "error", "-y"]).args(args).arg(out).status().expect("ffmpeg");
    assert!(ok.success(), "ffmpeg {args:?}");
}

/// The direct ffmpeg run a job is compared with: `input`, the operation's arguments, `output`.
fn ffmpeg_command(input: &Path, op: &[&str], output: &Path) -> (String, Vec<String>) {
    let mut args: Vec<String> = ["-nostdin", "-v", "error", "-y", "-i"].map(str::to_owned).to_vec();
    args.push(input.display().to_string());
    args.extend(op.iter().map(|a| a.to_string()));
    args.push(output.display().to_string());
    ("ffmpeg".to_owned(), args)
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

/// Runs `commands` (program, args), `PARALLEL` at a time; wall seconds.
fn run_parallel(commands: Vec<(String, Vec<String>)>) -> f64 {
    let t = Instant::now();
    for chunk in commands.chunks(PARALLEL) {
        let children: Vec<_> = chunk
            .iter()
            .map(|(p, a)| Command::new(p).args(a).stdin(std::process::Stdio::null()).spawn().expect("spawn"))
            .collect();
        for mut c in children {
            assert!(c.wait().unwrap().success());
        }
    }
    t.elapsed().as_secs_f64()
}

async fn upload(node: &LoomNode, path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    let v: Value = http().post(node.url(8021, "/files")).body(bytes).send().await.unwrap().json().await.unwrap();
    v["id"].as_str().expect("uploaded").to_owned()
}

/// Submits one job per file (all at once; the node queues them) and waits for all; wall seconds.
async fn jobs(node: &LoomNode, ids: &[String], op: Value) -> f64 {
    let t = Instant::now();
    let mut pending = Vec::new();
    for id in ids {
        let v: Value = http()
            .post(node.url(8021, &format!("/files/{id}/jobs")))
            .json(&op)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["cached"], false, "a fresh derivation: {v}");
        pending.push(v["id"].as_str().unwrap().to_owned());
    }
    for job in pending {
        loop {
            let v: Value =
                http().get(node.url(8021, &format!("/jobs/{job}"))).send().await.unwrap().json().await.unwrap();
            match v["state"].as_str() {
                Some("succeeded") => break,
                Some("queued" | "running") => tokio::time::sleep(Duration::from_millis(5)).await,
                other => panic!("job {job} ended {other:?}: {v}"),
            }
        }
    }
    t.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let images: Vec<PathBuf> = (0..IMAGES)
        .map(|i| {
            let p = dir.path().join(format!("photo{i}.jpg"));
            let src = format!("mandelbrot=size=4000x3000:start_scale={}", 2.0 + i as f64 * 0.1);
            ffmpeg(&["-f", "lavfi", "-i", &src, "-frames:v", "1", "-q:v", "3"], &p);
            p
        })
        .collect();
    let audio: Vec<PathBuf> = (0..AUDIO)
        .map(|i| {
            let p = dir.path().join(format!("voice{i}.wav"));
            let src = format!("sine=frequency={}:duration=60:sample_rate=48000", 300 + 50 * i);
            ffmpeg(&["-f", "lavfi", "-i", &src, "-ac", "2"], &p);
            p
        })
        .collect();

    let node = LoomNode::start_ready(
        "bench-files",
        NodeOptions::default().env("LOOM_FILES_WORKERS", PARALLEL.to_string()).env("LOOM_LOG", "warn"),
    )
    .await;
    let mut ids = Vec::new();
    for p in &images {
        ids.push(upload(&node, p).await);
    }
    let loom = jobs(&node, &ids, json!({"op": "thumbnail", "sizes": [256], "format": "jpeg"})).await;
    let loom_rate = IMAGES as f64 / loom;
    let mut out = format!("thumbnails 256 px from {IMAGES} 12-MP JPEGs, {PARALLEL} at a time\n");
    out.push_str(&format!("  loom jobs:       {loom_rate:8.2} thumbnails/s\n"));
    if have("vipsthumbnail") {
        let cmds = images
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let o = dir.path().join(format!("vips{i}.jpg"));
                (
                    "vipsthumbnail".to_owned(),
                    vec![p.display().to_string(), "-s".into(), "256".into(), "-o".into(), o.display().to_string()],
                )
            })
            .collect();
        let vips = IMAGES as f64 / run_parallel(cmds);
        out.push_str(&format!("  vipsthumbnail:   {vips:8.2} thumbnails/s   loom/vips {:.2}\n", loom_rate / vips));
    }
    let cmds = images
        .iter()
        .enumerate()
        .map(|(i, p)| ffmpeg_command(p, &["-vf", "scale=256:-1"], &dir.path().join(format!("ff{i}.jpg"))))
        .collect();
    let ff = IMAGES as f64 / run_parallel(cmds);
    out.push_str(&format!("  ffmpeg scale:    {ff:8.2} thumbnails/s   loom/ffmpeg {:.2}\n", loom_rate / ff));

    let mut aids = Vec::new();
    for p in &audio {
        aids.push(upload(&node, p).await);
    }
    let seconds = AUDIO as f64 * 60.0;
    let loom = seconds / jobs(&node, &aids, json!({"op": "audio", "format": "opus"})).await;
    let cmds = audio
        .iter()
        .enumerate()
        .map(|(i, p)| {
            ffmpeg_command(p, &["-vn", "-map", "0:a:0", "-c:a", "libopus"], &dir.path().join(format!("a{i}.opus")))
        })
        .collect();
    let direct = seconds / run_parallel(cmds);
    out.push_str(&format!("\naudio to Opus, {AUDIO} × 60 s WAV, {PARALLEL} at a time\n"));
    out.push_str(&format!("  loom jobs:       {loom:8.1} s of audio/s\n"));
    out.push_str(&format!(
        "  direct ffmpeg:   {direct:8.1} s of audio/s   (a file: {:.3} s)   loom/ffmpeg {:.2}\n",
        PARALLEL as f64 * 60.0 / direct,
        loom / direct
    ));
    print!("{out}");
}
