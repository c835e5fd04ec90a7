//! Image work, synchronous and bounded (run in blocking tasks by the workers): decoding with
//! `image::Limits` set before any pixel is read (the header's dimensions and the decoder's
//! allocations are checked first, so a 50,000 × 50,000 PNG of a few KB fails `too_large`
//! without allocating), EXIF orientation applied, thumbnails, encoding, and metadata with
//! EXIF (camera, orientation, capture time, GPS as decimal degrees) from `kamadak-exif`.

use std::io::Cursor;

use image::imageops::FilterType;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader};
use serde_json::{Map, Value, json};

use crate::error::Failure;
use crate::ops::{Fit, Format};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_dimension: u32,
    pub max_alloc: u64,
}

impl Limits {
    fn image(self) -> image::Limits {
        let mut l = image::Limits::default();
        l.max_image_width = Some(self.max_dimension);
        l.max_image_height = Some(self.max_dimension);
        l.max_alloc = Some(self.max_alloc);
        l
    }
}

/// A decoded image, already turned upright.
pub struct Decoded {
    pub image: DynamicImage,
    pub format: ImageFormat,
    /// The EXIF orientation that was applied (1 = none).
    pub orientation: u8,
}

fn failure(e: ImageError) -> Failure {
    match e {
        ImageError::Limits(l) => Failure::new("too_large", format!("the image exceeds the decoding limits: {l}")),
        ImageError::Unsupported(u) => Failure::new("unsupported_media", format!("no decoder for this image: {u}")),
        ImageError::Decoding(d) => Failure::new("corrupt", format!("the image does not decode: {d}")),
        ImageError::IoError(e) => Failure::new("corrupt", format!("the image is truncated or unreadable: {e}")),
        other => Failure::new("corrupt", other.to_string()),
    }
}

fn reader(bytes: &[u8], limits: Limits) -> Result<ImageReader<Cursor<&[u8]>>, Failure> {
    let mut r = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Failure::new("corrupt", format!("unreadable: {e}")))?;
    if r.format().is_none() {
        return Err(Failure::new("unsupported_media", "not an image format this build decodes"));
    }
    r.limits(limits.image());
    Ok(r)
}

pub fn decode(bytes: &[u8], limits: Limits) -> Result<Decoded, Failure> {
    let r = reader(bytes, limits)?;
    let format = r.format().unwrap_or(ImageFormat::Png);
    let mut decoder = r.into_decoder().map_err(failure)?;
    // The pixel buffer the decode would allocate, refused before it is allocated.
    if decoder.total_bytes() > limits.max_alloc {
        let (w, h) = decoder.dimensions();
        return Err(Failure::new(
            "too_large",
            format!(
                "a {w} × {h} image needs {} MiB to decode, over files.max_image_alloc",
                decoder.total_bytes() >> 20
            ),
        ));
    }
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(failure)?;
    image.apply_orientation(orientation);
    Ok(Decoded { image, format, orientation: orientation.to_exif() })
}

/// [`decode`] for a thumbnail whose largest box is `size` in `fit`: a JPEG is decoded straight
/// at the smallest DCT scale (1/8, 1/4, 1/2 or 1, `jpeg-decoder`) that still covers the box —
/// libvips' shrink-on-load — so a 12-MP photo costs a fraction of a full decode. Other formats,
/// and JPEGs `jpeg-decoder` refuses, take the full decode.
pub fn decode_for_box(bytes: &[u8], limits: Limits, size: u32, fit: Fit) -> Result<Decoded, Failure> {
    if !bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        return decode(bytes, limits);
    }
    match decode_jpeg_scaled(bytes, limits, size, fit) {
        Ok(Some(d)) => Ok(d),
        Ok(None) => decode(bytes, limits),
        Err(f) => Err(f),
    }
}

fn decode_jpeg_scaled(bytes: &[u8], limits: Limits, size: u32, fit: Fit) -> Result<Option<Decoded>, Failure> {
    let mut d = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    if d.read_info().is_err() {
        // Let the full decoder name what is wrong.
        return Ok(None);
    }
    let Some(info) = d.info() else { return Ok(None) };
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    if w > limits.max_dimension || h > limits.max_dimension {
        return Err(Failure::new("too_large", format!("a {w} × {h} image exceeds files.max_image_dimension")));
    }
    let side = match fit {
        Fit::Contain => w.max(h),
        Fit::Cover => w.min(h).max(1),
    };
    if size >= side {
        return Ok(None);
    }
    // Proportional, so reaching the request on one axis means reaching it on both.
    let req = |x: u32| u16::try_from((u64::from(size) * u64::from(x)).div_ceil(u64::from(side))).unwrap_or(u16::MAX);
    let Ok((sw, sh)) = d.scale(req(w), req(h)) else { return Ok(None) };
    let (sw, sh) = (u32::from(sw), u32::from(sh));
    let bytes_per_pixel: u64 = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => 1,
        jpeg_decoder::PixelFormat::L16 => 2,
        jpeg_decoder::PixelFormat::RGB24 => 3,
        jpeg_decoder::PixelFormat::CMYK32 => 4,
    };
    if u64::from(sw) * u64::from(sh) * bytes_per_pixel > limits.max_alloc {
        return Err(Failure::new("too_large", "the scaled image exceeds files.max_image_alloc"));
    }
    d.set_max_decoding_buffer_size(usize::try_from(limits.max_alloc).unwrap_or(usize::MAX));
    let Ok(pixels) = d.decode() else { return Ok(None) };
    let image = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => image::GrayImage::from_raw(sw, sh, pixels).map(DynamicImage::ImageLuma8),
        jpeg_decoder::PixelFormat::RGB24 => image::RgbImage::from_raw(sw, sh, pixels).map(DynamicImage::ImageRgb8),
        // 16-bit grey and CMYK are rare in photos: the full decoder handles them.
        _ => None,
    };
    let Some(mut image) = image else { return Ok(None) };
    let orientation = exif_orientation(bytes);
    image.apply_orientation(Orientation::from_exif(orientation).unwrap_or(Orientation::NoTransforms));
    Ok(Some(Decoded { image, format: ImageFormat::Jpeg, orientation }))
}

/// The file's EXIF, keeping what parses when some entries do not (cameras and editors write
/// out-of-spec fields; exiftool reads past them too).
fn read_exif(bytes: &[u8]) -> Option<exif::Exif> {
    match exif::Reader::new().continue_on_error(true).read_from_container(&mut Cursor::new(bytes)) {
        Ok(data) => Some(data),
        Err(e) => e.distill_partial_result(|_| {}).ok(),
    }
}

/// The text of an ASCII field: its first non-empty component, without padding.
fn ascii_text(value: &exif::Value) -> Option<String> {
    let exif::Value::Ascii(parts) = value else { return None };
    parts
        .iter()
        .map(|p| String::from_utf8_lossy(p).trim_matches(|c: char| c == '\0' || c.is_whitespace()).to_owned())
        .find(|s| !s.is_empty())
}

/// The EXIF orientation (1-8), 1 when absent.
fn exif_orientation(bytes: &[u8]) -> u8 {
    read_exif(bytes)
        .and_then(|e| e.get_field(exif::Tag::Orientation, exif::In::PRIMARY).and_then(|f| f.value.get_uint(0)))
        .and_then(|o| u8::try_from(o).ok())
        .filter(|o| (1..=8).contains(o))
        .unwrap_or(1)
}

/// One thumbnail of `size` (the box's side) in `fit`.
pub fn thumbnail(img: &DynamicImage, size: u32, fit: Fit) -> DynamicImage {
    match fit {
        Fit::Contain => img.resize(size, size, FilterType::Triangle),
        Fit::Cover => img.resize_to_fill(size, size, FilterType::Triangle),
    }
}

pub fn encode(img: &DynamicImage, format: Format) -> Result<Vec<u8>, Failure> {
    let mut out = Cursor::new(Vec::new());
    let result = match format {
        Format::Png => img.write_to(&mut out, ImageFormat::Png),
        // JPEG has no alpha; WebP (lossless here) takes RGBA.
        Format::Jpeg => DynamicImage::ImageRgb8(img.to_rgb8()).write_to(&mut out, ImageFormat::Jpeg),
        Format::Webp => DynamicImage::ImageRgba8(img.to_rgba8()).write_to(&mut out, ImageFormat::WebP),
    };
    result.map_err(|e| Failure::new("encode_failed", e.to_string()))?;
    Ok(out.into_inner())
}

/// Dimensions from the header alone (no pixels decoded), for the upload's summary.
pub fn dimensions(bytes: &[u8], limits: Limits) -> Option<(u32, u32)> {
    reader(bytes, limits).ok()?.into_dimensions().ok()
}

/// An image's metadata: format, stored and upright dimensions, colour type, and its EXIF.
pub fn metadata(bytes: &[u8], limits: Limits) -> Result<Value, Failure> {
    let r = reader(bytes, limits)?;
    let format = r.format().map(|f| format!("{f:?}").to_ascii_lowercase());
    let mut decoder = r.into_decoder().map_err(failure)?;
    let (width, height) = decoder.dimensions();
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms).to_exif();
    let color = format!("{:?}", decoder.color_type()).to_ascii_lowercase();
    let (upright_w, upright_h) = if (5..=8).contains(&orientation) { (height, width) } else { (width, height) };
    Ok(json!({
        "kind": "image",
        "format": format,
        "width": width,
        "height": height,
        "upright": {"width": upright_w, "height": upright_h},
        "color": color,
        "orientation": orientation,
        "exif": exif(bytes),
    }))
}

/// The EXIF fields users ask for, or null when the file carries none.
pub fn exif(bytes: &[u8]) -> Value {
    use exif::{In, Tag};
    let Some(data) = read_exif(bytes) else { return Value::Null };
    let text = |tag: Tag| {
        // Some writers put Exif-IFD tags (DateTimeOriginal) in IFD0; exiftool reads them there.
        let f = data
            .get_field(tag, In::PRIMARY)
            .or_else(|| data.get_field(Tag(exif::Context::Tiff, tag.number()), In::PRIMARY))?;
        match tag {
            // Dates as `YYYY-MM-DD hh:mm:ss` where they parse, else as written.
            Tag::DateTimeOriginal | Tag::DateTime => {
                let shown = f.display_value().to_string();
                let shown = shown.trim_matches('"').trim();
                if shown.contains('"') || shown.is_empty() { ascii_text(&f.value) } else { Some(shown.to_owned()) }
            }
            _ => ascii_text(&f.value),
        }
    };
    let mut out = Map::new();
    for (key, tag) in [
        ("make", Tag::Make),
        ("model", Tag::Model),
        ("software", Tag::Software),
        ("datetime_original", Tag::DateTimeOriginal),
        ("datetime", Tag::DateTime),
        ("lens_model", Tag::LensModel),
    ] {
        if let Some(v) = text(tag) {
            out.insert(key.into(), Value::String(v));
        }
    }
    if let Some(o) = data.get_field(Tag::Orientation, In::PRIMARY).and_then(|f| f.value.get_uint(0)) {
        out.insert("orientation".into(), json!(o));
    }
    if let Some(gps) = gps(&data) {
        out.insert("gps".into(), gps);
    }
    Value::Object(out)
}

fn gps(data: &exif::Exif) -> Option<Value> {
    use exif::{In, Tag};
    let degrees = |tag: Tag, reference: Tag, negative: u8| -> Option<f64> {
        let f = data.get_field(tag, In::PRIMARY)?;
        let exif::Value::Rational(r) = &f.value else { return None };
        let part = |i: usize| r.get(i).map(|x| x.to_f64()).filter(|v| v.is_finite());
        let v = part(0)? + part(1).unwrap_or(0.0) / 60.0 + part(2).unwrap_or(0.0) / 3600.0;
        let sign = match data.get_field(reference, In::PRIMARY).map(|f| &f.value) {
            Some(exif::Value::Ascii(a)) if a.first().and_then(|s| s.first()) == Some(&negative) => -1.0,
            _ => 1.0,
        };
        Some(sign * v)
    };
    let lat = degrees(Tag::GPSLatitude, Tag::GPSLatitudeRef, b'S')?;
    let lon = degrees(Tag::GPSLongitude, Tag::GPSLongitudeRef, b'W')?;
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return None;
    }
    let mut g = json!({"lat": lat, "lon": lon});
    if let Some(f) = data.get_field(Tag::GPSAltitude, In::PRIMARY)
        && let exif::Value::Rational(r) = &f.value
        && let Some(alt) = r.first()
    {
        let below =
            matches!(data.get_field(Tag::GPSAltitudeRef, In::PRIMARY).and_then(|f| f.value.get_uint(0)), Some(1));
        g["altitude"] = json!(if below { -alt.to_f64() } else { alt.to_f64() });
    }
    Some(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_dimension: 4096, max_alloc: 64 << 20 };

    #[test]
    fn ascii_fields_read_their_first_non_empty_component() {
        let cases: [(Vec<&[u8]>, Option<&str>); 5] = [
            (vec![b"Canon"], Some("Canon")),
            (vec![b"PENTAX RICOH IMAGING", b"", b""], Some("PENTAX RICOH IMAGING")),
            (vec![b"", b"GR  \0\0"], Some("GR")),
            (vec![b"  ", b"\0"], None),
            (vec![], None),
        ];
        for (parts, want) in cases {
            let value = exif::Value::Ascii(parts.iter().map(|p| p.to_vec()).collect());
            assert_eq!(ascii_text(&value).as_deref(), want, "{parts:?}");
        }
        assert_eq!(ascii_text(&exif::Value::Short(vec![1])), None);
    }

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 128]));
        encode(&DynamicImage::ImageRgb8(img), Format::Png).unwrap()
    }

    /// A PNG whose header claims `w` × `h` with a tiny (bogus) data chunk.
    fn bomb(w: u32, h: u32) -> Vec<u8> {
        let chunk = |t: &[u8], d: &[u8]| {
            let mut c = (d.len() as u32).to_be_bytes().to_vec();
            c.extend_from_slice(t);
            c.extend_from_slice(d);
            let mut crc_input = t.to_vec();
            crc_input.extend_from_slice(d);
            c.extend_from_slice(&crc32(&crc_input).to_be_bytes());
            c
        };
        let mut ihdr = w.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        out.extend(chunk(b"IHDR", &ihdr));
        out.extend(chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]));
        out.extend(chunk(b"IEND", b""));
        out
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in data {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }

    #[test]
    fn thumbnails_keep_the_aspect_or_fill_the_box() {
        let img = decode(&png(300, 200), LIMITS).unwrap().image;
        let cases = [(Fit::Contain, 128, (128, 85)), (Fit::Cover, 128, (128, 128)), (Fit::Contain, 32, (32, 21))];
        for (fit, size, want) in cases {
            let t = thumbnail(&img, size, fit);
            assert_eq!((t.width(), t.height()), want, "{fit:?} {size}");
        }
        for format in [Format::Png, Format::Jpeg, Format::Webp] {
            let bytes = encode(&thumbnail(&img, 64, Fit::Contain), format).unwrap();
            let back = decode(&bytes, LIMITS).unwrap();
            assert_eq!((back.image.width(), back.image.height()), (64, 43), "{format:?}");
        }
    }

    #[test]
    fn jpeg_shrink_on_load_gives_the_same_sizes_as_the_full_decode() {
        let img = image::RgbImage::from_fn(2000, 1500, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
        let jpeg = encode(&DynamicImage::ImageRgb8(img), Format::Jpeg).unwrap();
        for (size, fit) in
            [(256, Fit::Contain), (128, Fit::Cover), (700, Fit::Contain), (1999, Fit::Cover), (64, Fit::Contain)]
        {
            let scaled = decode_for_box(&jpeg, LIMITS, size, fit).unwrap();
            let full = decode(&jpeg, LIMITS).unwrap();
            let (a, b) = (thumbnail(&scaled.image, size, fit), thumbnail(&full.image, size, fit));
            assert_eq!((a.width(), a.height()), (b.width(), b.height()), "{size} {fit:?}");
            // Decoded no smaller than the box needs.
            let need = if fit == Fit::Contain {
                scaled.image.width().max(scaled.image.height())
            } else {
                scaled.image.width().min(scaled.image.height())
            };
            assert!(
                need >= size.min(1500),
                "{size} {fit:?}: decoded {}x{}",
                scaled.image.width(),
                scaled.image.height()
            );
        }
        assert!(decode_for_box(&jpeg, Limits { max_dimension: 1000, max_alloc: 1 << 30 }, 128, Fit::Contain).is_err());
    }

    #[test]
    fn hostile_images_fail_with_their_code() {
        let mut truncated = png(64, 64);
        truncated.truncate(truncated.len() / 2);
        let cases: [(Vec<u8>, &str); 5] = [
            (bomb(50_000, 50_000), "too_large"),
            (bomb(4000, 4000), "too_large"),
            (truncated, "corrupt"),
            (b"not an image at all".to_vec(), "unsupported_media"),
            (Vec::new(), "unsupported_media"),
        ];
        for (bytes, code) in cases {
            let limits = Limits { max_dimension: 4096, max_alloc: 16 << 20 };
            let got = decode(&bytes, limits).err().map(|f| f.code);
            assert_eq!(got.as_deref(), Some(code), "{} bytes", bytes.len());
        }
    }

    #[test]
    fn metadata_reads_the_header_without_decoding() {
        let m = metadata(&png(1200, 800), LIMITS).unwrap();
        assert_eq!(
            (m["width"].as_u64(), m["height"].as_u64(), m["format"].as_str()),
            (Some(1200), Some(800), Some("png"))
        );
        assert_eq!(m["exif"], Value::Null);
        assert_eq!(dimensions(&png(30, 20), LIMITS), Some((30, 20)));
    }
}
