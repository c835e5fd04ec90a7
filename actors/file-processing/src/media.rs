//! Media and documents through the tools (`tools.rs`), on the source as a local file (the
//! stored file itself on the local store, a copy in the job's directory otherwise): probing, a representative video frame, frames by interval, time
//! or keyframe, audio conversion and chunking (fixed length or at silences), PDF info, text
//! and the first page as an image. Each function returns data or a job [`Failure`] code.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::error::Failure;
use crate::ops::{AudioFormat, Chunk, Frames, MAX_FRAMES};
use crate::probe;
use crate::tools::{self, last_line};

/// Most chunks one audio job writes.
pub const MAX_CHUNKS: usize = 1000;

fn arg(p: &Path) -> String {
    p.display().to_string()
}

/// ffprobe's view of the file as media metadata; `corrupt` when ffprobe cannot read it.
pub async fn probe(path: &Path, deadline: Duration) -> Result<Value, Failure> {
    let out =
        tools::run("ffprobe", ["-v", "error", "-show_format", "-show_streams", "-of", "json", &arg(path)], deadline)
            .await?;
    if !out.success {
        return Err(Failure::new("corrupt", format!("ffprobe cannot read the file: {}", last_line(&out.stderr))));
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| Failure::new("corrupt", e.to_string()))?;
    probe::media(&v)
}

pub fn duration(media: &Value) -> f64 {
    media["duration"].as_f64().unwrap_or(0.0)
}

/// One PNG frame at `at` seconds (`thumbnail` picks the most representative of the next 50
/// frames when `representative`); `out_of_range` past the end.
pub async fn frame(path: &Path, at: f64, representative: bool, deadline: Duration) -> Result<Vec<u8>, Failure> {
    let mut args: Vec<String> = ["-nostdin", "-v", "error", "-ss", &format!("{at:.3}"), "-i", &arg(path)]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if representative {
        args.extend(["-vf".into(), "thumbnail=50".into()]);
    }
    args.extend(["-frames:v", "1", "-f", "image2pipe", "-c:v", "png", "-"].iter().map(|s| s.to_string()));
    let out = tools::run("ffmpeg", args, deadline).await?;
    if !out.success {
        return Err(Failure::new("corrupt", format!("ffmpeg cannot decode a frame: {}", last_line(&out.stderr))));
    }
    if out.stdout.is_empty() {
        return Err(Failure::new("out_of_range", format!("no frame at {at:.3} s")));
    }
    Ok(out.stdout)
}

/// The frames a request selects, with their times, as PNG bytes.
pub async fn frames(
    path: &Path,
    select: &Frames,
    duration: f64,
    dir: &Path,
    deadline: Duration,
) -> Result<Vec<(f64, Vec<u8>)>, Failure> {
    match select {
        Frames::At { ms } => {
            let mut out = Vec::with_capacity(ms.len());
            for &t in ms {
                let at = t as f64 / 1000.0;
                if at > duration {
                    return Err(Failure::new("out_of_range", format!("{at} s is past the end ({duration:.3} s)")));
                }
                out.push((at, frame(path, at, false, deadline).await?));
            }
            Ok(out)
        }
        Frames::Every { ms } => {
            let every = *ms as f64 / 1000.0;
            let n = ((duration / every).floor() as usize + 1).min(MAX_FRAMES);
            let pattern = dir.join("e%05d.png");
            let filter = format!("fps=1/{every}:round=down");
            let out = tools::run(
                "ffmpeg",
                [
                    "-nostdin",
                    "-v",
                    "error",
                    "-i",
                    &arg(path),
                    "-vf",
                    &filter,
                    "-frames:v",
                    &n.to_string(),
                    &arg(&pattern),
                ],
                deadline,
            )
            .await?;
            if !out.success {
                return Err(Failure::new("corrupt", format!("ffmpeg: {}", last_line(&out.stderr))));
            }
            let files = numbered(dir, "e")?;
            Ok(files.into_iter().enumerate().map(|(i, bytes)| (i as f64 * every, bytes)).collect())
        }
        Frames::Keyframes => {
            let times = keyframe_times(path, deadline).await?;
            let pattern = dir.join("k%05d.png");
            let out = tools::run(
                "ffmpeg",
                [
                    "-nostdin",
                    "-v",
                    "error",
                    "-skip_frame",
                    "nokey",
                    "-i",
                    &arg(path),
                    "-fps_mode",
                    "passthrough",
                    "-frames:v",
                    &MAX_FRAMES.to_string(),
                    &arg(&pattern),
                ],
                deadline,
            )
            .await?;
            if !out.success {
                return Err(Failure::new("corrupt", format!("ffmpeg: {}", last_line(&out.stderr))));
            }
            let files = numbered(dir, "k")?;
            Ok(files.into_iter().enumerate().map(|(i, b)| (times.get(i).copied().unwrap_or(f64::NAN), b)).collect())
        }
    }
}

async fn keyframe_times(path: &Path, deadline: Duration) -> Result<Vec<f64>, Failure> {
    let out = tools::run(
        "ffprobe",
        [
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-skip_frame",
            "nokey",
            "-show_entries",
            "frame=best_effort_timestamp_time",
            "-of",
            "csv=p=0",
            &arg(path),
        ],
        deadline,
    )
    .await?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse::<f64>().ok())
        .take(MAX_FRAMES)
        .collect())
}

/// The files `<prefix>00001…` a tool wrote into `dir`, in order.
fn numbered(dir: &Path, prefix: &str) -> Result<Vec<Vec<u8>>, Failure> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Failure::new("internal", e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix)))
        .collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read(p).map_err(|e| Failure::new("internal", e.to_string()))).collect()
}

/// One converted chunk: its bytes, start and duration in seconds (within one audio frame).
pub struct AudioChunk {
    pub bytes: Vec<u8>,
    pub start: f64,
    pub duration: f64,
}

/// Converts the first audio stream, cut as asked.
#[allow(clippy::too_many_arguments)]
pub async fn audio(
    path: &Path,
    format: AudioFormat,
    sample_rate: Option<u32>,
    channels: Option<u32>,
    chunk: Option<&Chunk>,
    probed: Option<f64>,
    dir: &Path,
    deadline: Duration,
) -> Result<Vec<AudioChunk>, Failure> {
    // Chunking plans from the probed duration; a plain conversion needs no probe (ffmpeg names
    // a missing stream itself, and its progress report gives the output's duration).
    let duration = probed.unwrap_or(0.0);
    let mut args: Vec<String> =
        ["-nostdin", "-v", "error", "-nostats", "-progress", "pipe:1", "-i", &arg(path), "-vn", "-map", "0:a:0"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    if let Some(r) = sample_rate {
        args.extend(["-ar".into(), r.to_string()]);
    }
    if let Some(c) = channels {
        args.extend(["-ac".into(), c.to_string()]);
    }
    args.extend(["-c:a".into(), format.codec().into()]);
    let ext = format.extension();
    // The planned cut times; the segment muxer cuts at the audio frame nearest each.
    let cuts: Vec<f64> = match chunk {
        None => Vec::new(),
        Some(Chunk::Seconds { ms }) => {
            let every = *ms as f64 / 1000.0;
            if duration / every > MAX_CHUNKS as f64 {
                return Err(Failure::new("too_large", format!("more than {MAX_CHUNKS} chunks")));
            }
            (1..).map(|k| k as f64 * every).take_while(|&t| t < duration - 0.05).collect()
        }
        Some(Chunk::Silence { db, min_ms }) => {
            let filter = format!("silencedetect=noise={db}dB:d={:.3}", *min_ms as f64 / 1000.0);
            let out = tools::run(
                "ffmpeg",
                [
                    "-nostdin",
                    "-hide_banner",
                    "-i",
                    &arg(path),
                    "-vn",
                    "-map",
                    "0:a:0",
                    "-af",
                    &filter,
                    "-f",
                    "null",
                    "-",
                ],
                deadline,
            )
            .await?;
            if !out.success {
                return Err(Failure::new("corrupt", format!("ffmpeg: {}", last_line(&out.stderr))));
            }
            let cuts = probe::cut_points(&probe::silences(&out.stderr), duration);
            if cuts.len() >= MAX_CHUNKS {
                return Err(Failure::new("too_large", format!("more than {MAX_CHUNKS} chunks")));
            }
            cuts
        }
    };
    let cuts_arg = (!cuts.is_empty())
        .then(|| ("-segment_times".to_owned(), cuts.iter().map(|c| format!("{c:.3}")).collect::<Vec<_>>().join(",")));
    let target = match &cuts_arg {
        Some((flag, value)) => {
            args.extend([
                "-f".into(),
                "segment".into(),
                flag.clone(),
                value.clone(),
                "-reset_timestamps".into(),
                "1".into(),
            ]);
            dir.join(format!("a%05d.{ext}"))
        }
        None => dir.join(format!("a00000.{ext}")),
    };
    args.push(arg(&target));
    let out = tools::run("ffmpeg", args, deadline).await?;
    if !out.success {
        if out.stderr.contains("matches no streams") {
            return Err(Failure::new("no_stream", "the file has no audio stream"));
        }
        return Err(Failure::new("corrupt", format!("ffmpeg cannot convert the audio: {}", last_line(&out.stderr))));
    }
    let duration = probed.or_else(|| probe::progress_seconds(&String::from_utf8_lossy(&out.stdout))).unwrap_or(0.0);
    let files = numbered(dir, "a")?;
    let mut chunks = Vec::with_capacity(files.len());
    for (i, bytes) in files.into_iter().enumerate() {
        let start = if i == 0 { 0.0 } else { cuts.get(i - 1).copied().unwrap_or(duration) };
        // From the plan: the muxer cuts at the audio frame nearest each planned time, and the
        // headers of chunks written in one pass (FLAC, Ogg) do not carry reliable durations.
        let duration = (cuts.get(i).copied().unwrap_or(duration) - start).max(0.0);
        chunks.push(AudioChunk { bytes, start, duration });
    }
    Ok(chunks)
}

/// `pdfinfo`; `encrypted` when the document needs a password, `corrupt` when it is no PDF.
pub async fn pdf_info(path: &Path, deadline: Duration) -> Result<Value, Failure> {
    let out = tools::run("pdfinfo", [arg(path)], deadline).await?;
    if !out.success {
        let why = last_line(&out.stderr);
        let code = if why.to_ascii_lowercase().contains("password") { "encrypted" } else { "corrupt" };
        return Err(Failure::new(code, format!("pdfinfo: {why}")));
    }
    let mut info = probe::pdfinfo(&String::from_utf8_lossy(&out.stdout));
    info["kind"] = Value::from("pdf");
    Ok(info)
}

/// The text of every page (`pdftotext`, UTF-8).
pub async fn pdf_text(path: &Path, deadline: Duration) -> Result<Vec<String>, Failure> {
    let out = tools::run("pdftotext", ["-enc", "UTF-8", "-eol", "unix", &arg(path), "-"], deadline).await?;
    if !out.success {
        let why = last_line(&out.stderr);
        let code = if why.to_ascii_lowercase().contains("password") { "encrypted" } else { "corrupt" };
        return Err(Failure::new(code, format!("pdftotext: {why}")));
    }
    Ok(probe::pages(&String::from_utf8_lossy(&out.stdout)))
}

/// The first page as a PNG whose longer side is `size` pixels.
pub async fn pdf_page(path: &Path, size: u32, dir: &Path, deadline: Duration) -> Result<Vec<u8>, Failure> {
    let base = dir.join("page");
    let out = tools::run(
        "pdftoppm",
        ["-png", "-f", "1", "-l", "1", "-singlefile", "-scale-to", &size.to_string(), &arg(path), &arg(&base)],
        deadline,
    )
    .await?;
    if !out.success {
        let why = last_line(&out.stderr);
        let code = if why.to_ascii_lowercase().contains("password") { "encrypted" } else { "corrupt" };
        return Err(Failure::new(code, format!("pdftoppm: {why}")));
    }
    std::fs::read(dir.join("page.png")).map_err(|e| Failure::new("corrupt", format!("pdftoppm wrote no page: {e}")))
}
