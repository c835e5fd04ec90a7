//! The operations a job may ask for, parsed strictly and put in canonical form: the derivation
//! key (source id, operation, canonical parameters, pipeline version) makes asking twice — on
//! any node — return the stored result. Pure.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::FileError;

/// Bumped whenever an operation's output for the same input and parameters would change:
/// results stored under an older pipeline are not reused.
pub const PIPELINE_VERSION: u32 = 3;

pub const MAX_SIZES: usize = 8;
pub const SIZE_RANGE: std::ops::RangeInclusive<u32> = 16..=4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// The whole image inside the box, aspect kept (the longer side equals the size).
    #[default]
    Contain,
    /// The box filled, aspect kept, the overflow cropped from the centre.
    Cover,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Webp,
    Jpeg,
    Png,
}

impl Format {
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Webp => "image/webp",
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioFormat {
    Opus,
    Mp3,
    Wav,
    Flac,
}

impl AudioFormat {
    pub fn media_type(self) -> &'static str {
        match self {
            AudioFormat::Opus => "audio/ogg",
            AudioFormat::Mp3 => "audio/mpeg",
            AudioFormat::Wav => "audio/wav",
            AudioFormat::Flac => "audio/flac",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            AudioFormat::Opus => "opus",
            AudioFormat::Mp3 => "mp3",
            AudioFormat::Wav => "wav",
            AudioFormat::Flac => "flac",
        }
    }

    /// The ffmpeg encoder.
    pub fn codec(self) -> &'static str {
        match self {
            AudioFormat::Opus => "libopus",
            AudioFormat::Mp3 => "libmp3lame",
            AudioFormat::Wav => "pcm_s16le",
            AudioFormat::Flac => "flac",
        }
    }
}

/// How a recording is cut. Times are in milliseconds in canonical form, so equal requests
/// spelled differently (`"0.5s"`, `"500ms"`) share one derivation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Chunk {
    Seconds { ms: u64 },
    Silence { db: i32, min_ms: u64 },
}

/// Which frames of a video.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Frames {
    Every { ms: u64 },
    At { ms: Vec<u64> },
    Keyframes,
}

pub const MAX_FRAMES: usize = 200;

/// A parsed, canonical operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Op {
    Thumbnail { sizes: Vec<u32>, fit: Fit, format: Format },
    Metadata {},
    Audio { format: AudioFormat, sample_rate: Option<u32>, channels: Option<u32>, chunk: Option<Chunk> },
    Text {},
    Frames { frames: Frames, format: Format },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AudioIn {
    #[allow(dead_code)]
    op: String,
    format: AudioFormat,
    sample_rate: Option<u32>,
    channels: Option<u32>,
    chunk: Option<ChunkIn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChunkIn {
    seconds: Option<f64>,
    silence: Option<SilenceIn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceIn {
    db: f64,
    min: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FramesIn {
    #[allow(dead_code)]
    op: String,
    every: Option<String>,
    at: Option<Vec<String>>,
    keyframes: Option<bool>,
    #[serde(default = "jpeg")]
    format: Format,
}

fn jpeg() -> Format {
    Format::Jpeg
}

fn ms(seconds: f64) -> u64 {
    (seconds * 1000.0).round() as u64
}

fn time(field: &str, text: &str) -> Result<f64, FileError> {
    crate::probe::parse_time(text)
        .ok_or_else(|| bad(format!("{field}: `{text}` is not a time (5s, 500ms, 00:00:03.5)")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ThumbnailIn {
    #[allow(dead_code)]
    op: String,
    sizes: Vec<u32>,
    #[serde(default)]
    fit: Fit,
    #[serde(default)]
    format: Format,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetadataIn {
    #[allow(dead_code)]
    op: String,
}

impl Op {
    /// Parses a job request body.
    pub fn parse(body: &Value) -> Result<Op, FileError> {
        let name = body.get("op").and_then(Value::as_str).ok_or_else(|| bad("`op` is required"))?;
        let strict = |e: serde_json::Error| bad(format!("{name}: {e}"));
        match name {
            "thumbnail" => {
                let t: ThumbnailIn = serde_json::from_value(body.clone()).map_err(strict)?;
                let mut sizes = t.sizes;
                if sizes.is_empty() || sizes.len() > MAX_SIZES {
                    return Err(bad(format!("thumbnail: 1-{MAX_SIZES} sizes")));
                }
                if let Some(s) = sizes.iter().find(|s| !SIZE_RANGE.contains(s)) {
                    return Err(bad(format!(
                        "thumbnail: size {s} outside {}-{} pixels",
                        SIZE_RANGE.start(),
                        SIZE_RANGE.end()
                    )));
                }
                sizes.sort_unstable();
                sizes.dedup();
                Ok(Op::Thumbnail { sizes, fit: t.fit, format: t.format })
            }
            "metadata" => {
                serde_json::from_value::<MetadataIn>(body.clone()).map_err(strict)?;
                Ok(Op::Metadata {})
            }
            "audio" => {
                let a: AudioIn = serde_json::from_value(body.clone()).map_err(strict)?;
                if let Some(r) = a.sample_rate.filter(|r| !(8_000..=192_000).contains(r)) {
                    return Err(bad(format!("audio: sample_rate {r} outside 8000-192000")));
                }
                if let Some(c) = a.channels.filter(|c| !(1..=8).contains(c)) {
                    return Err(bad(format!("audio: channels {c} outside 1-8")));
                }
                let chunk = match a.chunk {
                    None => None,
                    Some(ChunkIn { seconds: Some(s), silence: None }) if (1.0..=3600.0).contains(&s) => {
                        Some(Chunk::Seconds { ms: ms(s) })
                    }
                    Some(ChunkIn { seconds: Some(_), silence: None }) => {
                        return Err(bad("audio: chunk.seconds outside 1-3600"));
                    }
                    Some(ChunkIn { seconds: None, silence: Some(si) }) => {
                        let min = time("audio: chunk.silence.min", &si.min)?;
                        if !(-90.0..=0.0).contains(&si.db) || !(0.1..=60.0).contains(&min) {
                            return Err(bad("audio: chunk.silence needs db in -90-0 and min in 0.1s-60s"));
                        }
                        Some(Chunk::Silence { db: si.db.round() as i32, min_ms: ms(min) })
                    }
                    Some(_) => return Err(bad("audio: chunk is {\"seconds\": n} or {\"silence\": {\"db\", \"min\"}}")),
                };
                Ok(Op::Audio { format: a.format, sample_rate: a.sample_rate, channels: a.channels, chunk })
            }
            "text" => {
                serde_json::from_value::<MetadataIn>(body.clone()).map_err(strict)?;
                Ok(Op::Text {})
            }
            "frames" => {
                let f: FramesIn = serde_json::from_value(body.clone()).map_err(strict)?;
                let frames = match (f.every, f.at, f.keyframes) {
                    (Some(e), None, None | Some(false)) => {
                        let every = time("frames: every", &e)?;
                        if every < 0.1 {
                            return Err(bad("frames: every is at least 0.1s"));
                        }
                        Frames::Every { ms: ms(every) }
                    }
                    (None, Some(at), None | Some(false)) => {
                        if at.is_empty() || at.len() > MAX_FRAMES {
                            return Err(bad(format!("frames: 1-{MAX_FRAMES} times in `at`")));
                        }
                        let mut ms_list =
                            at.iter().map(|t| time("frames: at", t).map(ms)).collect::<Result<Vec<_>, _>>()?;
                        ms_list.sort_unstable();
                        ms_list.dedup();
                        Frames::At { ms: ms_list }
                    }
                    (None, None, Some(true)) => Frames::Keyframes,
                    _ => return Err(bad("frames: exactly one of every, at, keyframes: true")),
                };
                Ok(Op::Frames { frames, format: f.format })
            }
            n => Err(bad(format!("unknown op `{n}`; one of thumbnail, metadata, audio, text, frames"))),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Op::Thumbnail { .. } => "thumbnail",
            Op::Metadata {} => "metadata",
            Op::Audio { .. } => "audio",
            Op::Text {} => "text",
            Op::Frames { .. } => "frames",
        }
    }

    /// The operation's canonical JSON (fields in a fixed order, defaults filled in).
    pub fn canonical(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The derivation key of this operation on `source`: hex SHA-256 of the pipeline version
    /// and the canonical parameters.
    pub fn derivation_key(&self, source: &str) -> String {
        let mut h = Sha256::new();
        h.update(format!("loom-files/{PIPELINE_VERSION}\n{source}\n{}", self.canonical()).as_bytes());
        hex(&h.finalize())
    }
}

fn bad(why: impl Into<String>) -> FileError {
    FileError::InvalidOp(why.into())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operations_parse_strictly_into_canonical_form() {
        let ok = [
            (
                json!({"op": "thumbnail", "sizes": [512, 128, 512]}),
                Op::Thumbnail { sizes: vec![128, 512], fit: Fit::Contain, format: Format::Webp },
            ),
            (
                json!({"op": "thumbnail", "sizes": [64], "fit": "cover", "format": "png"}),
                Op::Thumbnail { sizes: vec![64], fit: Fit::Cover, format: Format::Png },
            ),
            (json!({"op": "metadata"}), Op::Metadata {}),
            (json!({"op": "text"}), Op::Text {}),
            (
                json!({"op": "audio", "format": "opus", "chunk": {"silence": {"db": -40, "min": "0.5s"}}}),
                Op::Audio {
                    format: AudioFormat::Opus,
                    sample_rate: None,
                    channels: None,
                    chunk: Some(Chunk::Silence { db: -40, min_ms: 500 }),
                },
            ),
            (
                json!({"op": "audio", "format": "wav", "sample_rate": 16000, "channels": 1, "chunk": {"seconds": 30}}),
                Op::Audio {
                    format: AudioFormat::Wav,
                    sample_rate: Some(16000),
                    channels: Some(1),
                    chunk: Some(Chunk::Seconds { ms: 30_000 }),
                },
            ),
            (
                json!({"op": "frames", "every": "5s"}),
                Op::Frames { frames: Frames::Every { ms: 5000 }, format: Format::Jpeg },
            ),
            (
                json!({"op": "frames", "at": ["00:00:03.5", "1s", "1000ms"], "format": "png"}),
                Op::Frames { frames: Frames::At { ms: vec![1000, 3500] }, format: Format::Png },
            ),
            (
                json!({"op": "frames", "keyframes": true}),
                Op::Frames { frames: Frames::Keyframes, format: Format::Jpeg },
            ),
        ];
        for (body, want) in ok {
            assert_eq!(Op::parse(&body).unwrap(), want, "{body}");
        }
        let refused = [
            (json!({}), "invalid_operation"),
            (json!({"op": 3}), "invalid_operation"),
            (json!({"op": "resize"}), "invalid_operation"),
            (json!({"op": "thumbnail"}), "invalid_operation"),
            (json!({"op": "thumbnail", "sizes": []}), "invalid_operation"),
            (json!({"op": "thumbnail", "sizes": [8]}), "invalid_operation"),
            (json!({"op": "thumbnail", "sizes": [100000]}), "invalid_operation"),
            (json!({"op": "thumbnail", "sizes": [1, 2, 3, 4, 5, 6, 7, 8, 9]}), "invalid_operation"),
            (json!({"op": "thumbnail", "sizes": [128], "fit": "stretch"}), "invalid_operation"),
            (json!({"op": "thumbnail", "sizes": [128], "quality": 3}), "invalid_operation"),
            (json!({"op": "metadata", "deep": true}), "invalid_operation"),
            (json!({"op": "audio"}), "invalid_operation"),
            (json!({"op": "audio", "format": "aiff"}), "invalid_operation"),
            (json!({"op": "audio", "format": "mp3", "sample_rate": 100}), "invalid_operation"),
            (json!({"op": "audio", "format": "mp3", "channels": 0}), "invalid_operation"),
            (json!({"op": "audio", "format": "mp3", "chunk": {"seconds": 0.1}}), "invalid_operation"),
            (
                json!({"op": "audio", "format": "mp3", "chunk": {"seconds": 5, "silence": {"db": -40, "min": "1s"}}}),
                "invalid_operation",
            ),
            (
                json!({"op": "audio", "format": "mp3", "chunk": {"silence": {"db": 10, "min": "1s"}}}),
                "invalid_operation",
            ),
            (
                json!({"op": "audio", "format": "mp3", "chunk": {"silence": {"db": -40, "min": "soon"}}}),
                "invalid_operation",
            ),
            (json!({"op": "text", "ocr": true}), "invalid_operation"),
            (json!({"op": "frames"}), "invalid_operation"),
            (json!({"op": "frames", "every": "5s", "keyframes": true}), "invalid_operation"),
            (json!({"op": "frames", "every": "10ms"}), "invalid_operation"),
            (json!({"op": "frames", "at": []}), "invalid_operation"),
            (json!({"op": "frames", "at": ["00:99"]}), "invalid_operation"),
        ];
        for (body, code) in refused {
            let e = Op::parse(&body).unwrap_err();
            assert_eq!(loom_protocol::ServiceError::code(&e), code, "{body}: {e}");
        }
    }

    #[test]
    fn the_derivation_key_ignores_spelling_and_separates_sources_and_parameters() {
        let a = Op::parse(&json!({"op": "thumbnail", "sizes": [512, 128]})).unwrap();
        let b =
            Op::parse(&json!({"format": "webp", "sizes": [128, 512], "op": "thumbnail", "fit": "contain"})).unwrap();
        let c = Op::parse(&json!({"op": "thumbnail", "sizes": [128]})).unwrap();
        assert_eq!(a.derivation_key("f1"), b.derivation_key("f1"));
        assert_ne!(a.derivation_key("f1"), a.derivation_key("f2"));
        assert_ne!(a.derivation_key("f1"), c.derivation_key("f1"));
        assert_eq!(a.derivation_key("f1").len(), 64);
    }
}
