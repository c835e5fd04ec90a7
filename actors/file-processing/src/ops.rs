//! The operations a job may ask for, parsed strictly and put in canonical form: the derivation
//! key (source id, operation, canonical parameters, pipeline version) makes asking twice — on
//! any node — return the stored result. Pure.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::FileError;

/// Bumped whenever an operation's output for the same input and parameters would change:
/// results stored under an older pipeline are not reused.
pub const PIPELINE_VERSION: u32 = 1;

/// Operations the issue names that this build does not run yet; asking for one answers 501.
const NOT_BUILT: [&str; 3] = ["audio", "text", "frames"];

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

/// A parsed, canonical operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Op {
    Thumbnail { sizes: Vec<u32>, fit: Fit, format: Format },
    Metadata {},
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
            n if NOT_BUILT.contains(&n) => Err(FileError::NotBuilt(format!("the `{n}` operation"))),
            n => Err(bad(format!("unknown op `{n}`; one of thumbnail, metadata, audio, text, frames"))),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Op::Thumbnail { .. } => "thumbnail",
            Op::Metadata {} => "metadata",
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
            (json!({"op": "audio", "format": "opus"}), "not_built"),
            (json!({"op": "text"}), "not_built"),
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
