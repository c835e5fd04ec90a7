//! Pure readings of what the tools print: ffprobe's JSON into media metadata (streams, codecs,
//! duration, bit rates, creation time, ISO 6709 location), ffmpeg's `silencedetect` lines into
//! cut points, `pdfinfo`'s key/value lines, `pdftotext` pages, and the time syntax jobs accept.

use serde_json::{Map, Value, json};

use crate::error::Failure;

/// Seconds from `12`, `3.5`, `5s`, `500ms`, `2m`, `1h`, `01:02`, `00:00:03.5`.
pub fn parse_time(text: &str) -> Option<f64> {
    let t = text.trim();
    let v = if t.contains(':') {
        let parts: Vec<&str> = t.split(':').collect();
        if parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return None;
        }
        let mut total = 0.0;
        for (i, p) in parts.iter().enumerate() {
            let x: f64 = p.parse().ok()?;
            // Minutes and seconds are below 60; the last part may have a fraction.
            if (i > 0 && x >= 60.0) || (i + 1 < parts.len() && p.contains('.')) {
                return None;
            }
            total = total * 60.0 + x;
        }
        total
    } else if let Some(n) = t.strip_suffix("ms") {
        n.trim().parse::<f64>().ok()? / 1000.0
    } else if let Some(n) = t.strip_suffix('s') {
        n.trim().parse().ok()?
    } else if let Some(n) = t.strip_suffix('m') {
        n.trim().parse::<f64>().ok()? * 60.0
    } else if let Some(n) = t.strip_suffix('h') {
        n.trim().parse::<f64>().ok()? * 3600.0
    } else {
        t.parse().ok()?
    };
    (v.is_finite() && v >= 0.0).then_some(v)
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .filter(|x: &f64| x.is_finite())
}

/// `30000/1001` → 29.97.
fn rate(v: &Value) -> Option<f64> {
    let (a, b) = v.as_str()?.split_once('/')?;
    let (a, b): (f64, f64) = (a.parse().ok()?, b.parse().ok()?);
    (b > 0.0 && a > 0.0).then(|| (a / b * 1000.0).round() / 1000.0)
}

/// `+48.1371+011.5761+519.000/` (QuickTime/MP4 `location`) → (lat, lon).
pub fn parse_iso6709(text: &str) -> Option<(f64, f64)> {
    let t = text.trim().trim_end_matches('/');
    let bytes = t.as_bytes();
    let mut cuts: Vec<usize> = (1..bytes.len()).filter(|&i| bytes[i] == b'+' || bytes[i] == b'-').collect();
    if !(t.starts_with('+') || t.starts_with('-')) || cuts.is_empty() {
        return None;
    }
    cuts.push(bytes.len());
    let lat: f64 = t[..cuts[0]].parse().ok()?;
    let lon: f64 = t[cuts[0]..cuts[1]].parse().ok()?;
    ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)).then_some((lat, lon))
}

/// Media metadata from `ffprobe -show_format -show_streams -of json`.
pub fn media(probe: &Value) -> Result<Value, Failure> {
    let format = probe.get("format").ok_or_else(|| Failure::new("corrupt", "ffprobe found no container"))?;
    let streams: Vec<Value> = probe["streams"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let mut o = Map::new();
            o.insert("index".into(), s["index"].clone());
            o.insert("type".into(), s["codec_type"].clone());
            o.insert("codec".into(), s["codec_name"].clone());
            for (k, v) in [
                ("width", s["width"].as_u64().map(Value::from)),
                ("height", s["height"].as_u64().map(Value::from)),
                ("fps", rate(&s["avg_frame_rate"]).or_else(|| rate(&s["r_frame_rate"])).map(Value::from)),
                ("sample_rate", num(&s["sample_rate"]).map(|x| Value::from(x as u64))),
                ("channels", s["channels"].as_u64().map(Value::from)),
                ("bit_rate", num(&s["bit_rate"]).map(|x| Value::from(x as u64))),
                ("duration", num(&s["duration"]).map(Value::from)),
                ("frames", num(&s["nb_frames"]).map(|x| Value::from(x as u64))),
            ] {
                if let Some(v) = v {
                    o.insert(k.into(), v);
                }
            }
            Value::Object(o)
        })
        .collect();
    let tags = &format["tags"];
    let tag = |k: &str| tags.get(k).or_else(|| tags.get(k.to_ascii_uppercase())).and_then(Value::as_str);
    let location = tag("location").or_else(|| tag("com.apple.quicktime.location.ISO6709")).and_then(parse_iso6709);
    Ok(json!({
        "kind": "media",
        "container": format["format_name"],
        "duration": num(&format["duration"]),
        "bit_rate": num(&format["bit_rate"]).map(|x| x as u64),
        "size": num(&format["size"]).map(|x| x as u64),
        "streams": streams,
        "creation_time": tag("creation_time"),
        "gps": location.map(|(lat, lon)| json!({"lat": lat, "lon": lon})),
    }))
}

/// The first stream of `kind` (`audio`, `video`) in media metadata, if any.
pub fn has_stream(media: &Value, kind: &str) -> bool {
    media["streams"].as_array().is_some_and(|s| s.iter().any(|s| s["type"] == kind))
}

/// `(start, end)` of each silence `silencedetect` reported on stderr.
pub fn silences(stderr: &str) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let mut start = None;
    for line in stderr.lines() {
        if let Some(rest) = line.split("silence_start:").nth(1) {
            start = rest.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()).map(|v| v.max(0.0));
        } else if let Some(rest) = line.split("silence_end:").nth(1)
            && let (Some(s), Some(e)) = (start.take(), rest.split_whitespace().next().and_then(|v| v.parse().ok()))
        {
            out.push((s, e));
        }
    }
    out
}

/// Where to cut a recording of `duration` seconds: the middle of each silence strictly inside
/// it (a silence at the very start or end makes no chunk of its own).
pub fn cut_points(silences: &[(f64, f64)], duration: f64) -> Vec<f64> {
    let mut cuts: Vec<f64> = silences
        .iter()
        .map(|(s, e)| (s + e.min(duration)) / 2.0)
        .filter(|&c| c > 0.05 && c < duration - 0.05)
        .collect();
    cuts.dedup_by(|a, b| (*a - *b).abs() < 0.05);
    cuts
}

/// `pdfinfo`'s `Key:   value` lines as an object (pages as a number, `encrypted` as a bool).
pub fn pdfinfo(text: &str) -> Value {
    let mut o = Map::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else { continue };
        let key = k.trim().to_ascii_lowercase().replace(' ', "_");
        let v = v.trim();
        if key.is_empty() || v.is_empty() {
            continue;
        }
        let value = match key.as_str() {
            "pages" => v.parse::<u64>().map(Value::from).unwrap_or(Value::Null),
            "encrypted" => Value::Bool(v.starts_with("yes")),
            _ => Value::String(v.chars().take(500).collect()),
        };
        o.insert(key, value);
    }
    Value::Object(o)
}

/// `pdftotext` output split into pages (it ends every page with a form feed).
pub fn pages(text: &str) -> Vec<String> {
    let mut pages: Vec<String> = text.split('\u{c}').map(str::to_owned).collect();
    if pages.last().is_some_and(|p| p.trim().is_empty()) {
        pages.pop();
    }
    pages
}

/// The output time of an ffmpeg `-progress` report (its last `out_time_us`), in seconds.
pub fn progress_seconds(report: &str) -> Option<f64> {
    report
        .lines()
        .filter_map(|l| l.strip_prefix("out_time_us="))
        .filter_map(|v| v.trim().parse::<i64>().ok())
        .next_back()
        .map(|us| us.max(0) as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_reports_give_the_last_output_time() {
        let cases = [
            ("frame=0\nout_time_us=500000\nprogress=continue\nout_time_us=6000000\nprogress=end\n", Some(6.0)),
            ("out_time_us=N/A\nprogress=end\n", None),
            ("", None),
            ("out_time_us=-5\n", Some(0.0)),
        ];
        for (report, want) in cases {
            assert_eq!(progress_seconds(report), want, "{report:?}");
        }
    }

    #[test]
    fn times_parse_in_every_accepted_spelling() {
        let cases = [
            ("12", Some(12.0)),
            ("3.5", Some(3.5)),
            ("5s", Some(5.0)),
            ("0.5s", Some(0.5)),
            ("500ms", Some(0.5)),
            ("2m", Some(120.0)),
            ("1h", Some(3600.0)),
            ("01:02", Some(62.0)),
            ("00:00:03.5", Some(3.5)),
            ("1:00:00", Some(3600.0)),
            ("00:61", None),
            ("1.5:00", None),
            ("-3", None),
            ("abc", None),
            ("", None),
            ("1:2:3:4", None),
            ("NaN", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_time(text), want, "{text}");
        }
    }

    #[test]
    fn iso6709_locations() {
        let cases = [
            ("+48.1371+011.5761+519.000/", Some((48.1371, 11.5761))),
            ("-33.8688+151.2093/", Some((-33.8688, 151.2093))),
            ("+40.7-074.0/", Some((40.7, -74.0))),
            ("48.1+11.5", None),
            ("+95.0+011.0/", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_iso6709(text), want, "{text}");
        }
    }

    #[test]
    fn ffprobe_json_becomes_media_metadata() {
        let probe = serde_json::json!({
            "streams": [
                {"index": 0, "codec_type": "video", "codec_name": "h264", "width": 320, "height": 240,
                 "avg_frame_rate": "30000/1001", "duration": "2.002000", "bit_rate": "90000", "nb_frames": "60"},
                {"index": 1, "codec_type": "audio", "codec_name": "aac", "sample_rate": "44100", "channels": 2}
            ],
            "format": {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "duration": "2.023000", "bit_rate": "123456", "size": "31222",
                       "tags": {"creation_time": "2024-05-01T12:00:00.000000Z", "location": "+48.1371+011.5761/"}}
        });
        let m = media(&probe).unwrap();
        assert_eq!(m["duration"], 2.023);
        assert_eq!(m["streams"][0]["fps"], 29.97);
        assert_eq!(m["streams"][0]["frames"], 60);
        assert_eq!(m["streams"][1]["sample_rate"], 44100);
        assert_eq!(m["gps"]["lat"], 48.1371);
        assert!(has_stream(&m, "audio") && has_stream(&m, "video") && !has_stream(&m, "subtitle"));
        assert!(media(&serde_json::json!({})).is_err());
    }

    #[test]
    fn silences_become_cut_points_inside_the_recording() {
        let stderr = "[silencedetect @ 0x1] silence_start: 0\n[silencedetect @ 0x1] silence_end: 0.4 | silence_duration: 0.4\n\
                      size=N/A time=00:00:03\n[silencedetect @ 0x1] silence_start: 2.5\n\
                      [silencedetect @ 0x1] silence_end: 3.5 | silence_duration: 1\n\
                      [silencedetect @ 0x1] silence_start: 9.2\n[silencedetect @ 0x1] silence_end: 10 | silence_duration: 0.8\n";
        let s = silences(stderr);
        assert_eq!(s, [(0.0, 0.4), (2.5, 3.5), (9.2, 10.0)]);
        assert_eq!(cut_points(&s, 10.0), [0.2, 3.0, 9.6]);
        assert_eq!(cut_points(&[(0.0, 0.05)], 10.0), Vec::<f64>::new());
        assert_eq!(silences("silence_end: 3 without a start"), []);
    }

    #[test]
    fn pdfinfo_and_pages() {
        let info = pdfinfo(
            "Title:          A study\nPages:          3\nEncrypted:      no\nPage size:      612 x 792 pts (letter)\nbogus\n",
        );
        assert_eq!(info["title"], "A study");
        assert_eq!(info["pages"], 3);
        assert_eq!(info["encrypted"], false);
        assert_eq!(info["page_size"], "612 x 792 pts (letter)");
        assert_eq!(pages("one\u{c}two\u{c}"), ["one", "two"]);
        assert_eq!(pages("one\u{c}\u{c}three\u{c}"), ["one", "", "three"]);
        assert_eq!(pages(""), Vec::<String>::new());
    }
}
