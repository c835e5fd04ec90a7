//! File Processing (8021) against real `loom` processes, on the local store and on the suite's
//! S3 store (s3s-fs): content-addressed uploads (raw and multipart, streamed, bounded), HTTP
//! Range, thumbnails checked with `ffprobe`, EXIF metadata checked with `exiftool -json -n`,
//! derivations reused (also by a second node on the same S3 store), hostile images failing
//! with their codes while the node stays up, the job WebSocket, a full queue answering 429,
//! deletion with derivations; the registry corpora (pypdf's PDFs against pypdf, piexif's camera
//! images against exiftool, thumbnails against ffmpeg by SSIM), encrypted PDFs made with qpdf.

// Tests print what they measured.
#![allow(clippy::print_stderr)]

use std::io::Cursor;
use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use loom_testkit::{LoomNode, NodeOptions, eventually, http, infra};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const FILES: u16 = 8021;

/// Test images differ per run (the S3 bucket outlives runs and ids are content hashes).
fn salt() -> u8 {
    (std::process::id() % 251) as u8
}

fn image(w: u32, h: u32, format: image::ImageFormat) -> Vec<u8> {
    let s = salt();
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, s.wrapping_add(((x / 40 + y / 40) % 2 * 90) as u8)])
    });
    let mut out = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img).write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

async fn upload(node: &LoomNode, bytes: Vec<u8>, content_type: &str) -> (u16, Value) {
    let resp = http()
        .post(node.url(FILES, "/files"))
        .header("content-type", content_type)
        .body(bytes)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn call(node: &LoomNode, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = http().request(method, node.url(FILES, path)).timeout(Duration::from_secs(30));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Submits a job and waits for its final state.
async fn run(node: &LoomNode, file: &str, op: Value) -> Value {
    let (s, job) = call(node, reqwest::Method::POST, &format!("/files/{file}/jobs"), Some(op.clone())).await;
    assert!(s == 200 || s == 202, "{op}: {s} {job}");
    let id = job["id"].as_str().expect("job id").to_owned();
    eventually(&format!("job {id} ({op}) to end"), Duration::from_secs(60), || {
        let id = id.clone();
        async move {
            let (_, j) = call(node, reqwest::Method::GET, &format!("/jobs/{id}"), None).await;
            matches!(j["state"].as_str(), Some("succeeded" | "failed" | "cancelled")).then_some(j)
        }
    })
    .await
}

async fn content(node: &LoomNode, id: &str) -> Vec<u8> {
    let resp = http().get(node.url(FILES, &format!("/files/{id}/content"))).send().await.unwrap();
    assert_eq!(resp.status(), 200, "content of {id}");
    resp.bytes().await.unwrap().to_vec()
}

/// Width and height of an image file by `ffprobe`.
fn ffprobe_size(bytes: &[u8]) -> (u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("img");
    std::fs::write(&path, bytes).unwrap();
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height", "-of", "json"])
        .arg(&path)
        .output()
        .expect("ffprobe runs (scripts/infra.sh installs it)");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (v["streams"][0]["width"].as_u64().unwrap(), v["streams"][0]["height"].as_u64().unwrap())
}

/// A JPEG with camera EXIF written by exiftool, and exiftool's own reading of it.
fn camera_jpeg(orientation: u8) -> (Vec<u8>, Value) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("camera.jpg");
    std::fs::write(&path, image(640, 480, image::ImageFormat::Jpeg)).unwrap();
    let status = Command::new("exiftool")
        .args([
            "-q",
            "-overwrite_original",
            "-Make=LoomCam",
            "-Model=Field Unit 7",
            "-DateTimeOriginal=2024:05:01 12:34:56",
            "-GPSLatitude=48.137154",
            "-GPSLatitudeRef=N",
            "-GPSLongitude=11.576124",
            "-GPSLongitudeRef=W",
            "-GPSAltitude=519",
            "-n",
            &format!("-Orientation={orientation}"),
        ])
        .arg(&path)
        .status()
        .expect("exiftool runs (scripts/infra.sh installs it)");
    assert!(status.success());
    let out = Command::new("exiftool").args(["-json", "-n"]).arg(&path).output().unwrap();
    let oracle: Value = serde_json::from_slice(&out.stdout).unwrap();
    (std::fs::read(&path).unwrap(), oracle[0].clone())
}

fn bomb() -> Vec<u8> {
    // A PNG header claiming 50,000 × 50,000 pixels around a few bytes of data.
    let mut png = image(8, 8, image::ImageFormat::Png);
    png[16..20].copy_from_slice(&50_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&50_000u32.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
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

/// Declares a body over the limit and sends none of it: the answer comes before the body.
async fn declared_too_large(node: &LoomNode, length: usize) -> String {
    loom_testkit::declared_body(&node.address.ip, FILES, "POST", "/files", "application/octet-stream", length).await
}

fn multipart(name: &str, content_type: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "loom-test-boundary-7d3c";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n--{boundary}\r\n\
         Content-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: {content_type}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test]
async fn uploads_thumbnails_metadata_and_hostile_files_on_the_local_store() {
    let node =
        LoomNode::start_ready("files-local", NodeOptions::default().env("LOOM_FILES_MAX_UPLOAD", "4194304")).await;

    // Content-addressed: the id is the SHA-256; the same bytes twice are one file.
    let png = image(1200, 800, image::ImageFormat::Png);
    let (s, f) = upload(&node, png.clone(), "image/png").await;
    assert_eq!(s, 201, "{f}");
    assert_eq!(f["id"], sha256(&png));
    assert_eq!((f["size"].as_u64(), f["media_type"].as_str()), (Some(png.len() as u64), Some("image/png")));
    assert_eq!((f["metadata"]["width"].as_u64(), f["metadata"]["height"].as_u64()), (Some(1200), Some(800)));
    assert!(f.get("declared_type").is_none(), "{f}");
    let id = f["id"].as_str().unwrap().to_owned();
    let (_, again) = upload(&node, png.clone(), "image/png").await;
    assert_eq!(again["id"], f["id"]);

    // A declared type that contradicts the bytes is reported; multipart keeps the file name.
    let jpeg = image(300, 200, image::ImageFormat::Jpeg);
    let (s, liar) = upload(&node, jpeg.clone(), "application/pdf").await;
    assert_eq!(
        (s, liar["media_type"].as_str(), liar["declared_type"].as_str()),
        (201, Some("image/jpeg"), Some("application/pdf"))
    );
    let gif = image(90, 60, image::ImageFormat::Gif);
    let (ct, body) = multipart("tiny.gif", "image/gif", &gif);
    let (s, g) = upload(&node, body, &ct).await;
    assert_eq!((s, g["id"].as_str(), g["name"].as_str()), (201, Some(sha256(&gif).as_str()), Some("tiny.gif")), "{g}");

    // Bounds: empty, over files.max_upload (declared or streamed), bad ids.
    let (s, e) = upload(&node, Vec::new(), "image/png").await;
    assert_eq!((s, e["code"].as_str()), (400, Some("empty_file")), "{e}");
    let head = declared_too_large(&node, 5 << 20).await;
    assert!(head.starts_with("HTTP/1.1 413") && head.contains("too_large"), "{head}");
    let chunks =
        futures::stream::iter((0..40).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![1u8; 128 << 10]))));
    // Streamed past the limit: 413 as soon as the limit is crossed (the client may still be
    // writing when the server closes, which it then sees as a broken pipe).
    match http().post(node.url(FILES, "/files")).body(reqwest::Body::wrap_stream(chunks)).send().await {
        Ok(resp) => assert_eq!(resp.status(), 413, "a chunked upload past the limit"),
        Err(e) => assert!(e.is_request() && !e.is_timeout(), "{e}"),
    }
    for bad in ["/files/nope", "/files/../etc", &format!("/files/{}", "f".repeat(64))] {
        let (s, _) = call(&node, reqwest::Method::GET, bad, None).await;
        assert_eq!(s, 404, "{bad}");
    }

    // HTTP Range.
    let ranged = |r: &'static str| {
        let url = node.url(FILES, &format!("/files/{id}/content"));
        async move { http().get(url).header("range", r).send().await.unwrap() }
    };
    let r = ranged("bytes=10-19").await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], format!("bytes 10-19/{}", png.len()).as_str());
    assert_eq!(r.bytes().await.unwrap().as_ref(), &png[10..20]);
    let r = ranged("bytes=-16").await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), &png[png.len() - 16..]);
    let r = ranged("bytes=99999999-").await;
    assert_eq!(r.status(), 416);
    assert_eq!(content(&node, &id).await, png);

    // Thumbnails, sized as ffprobe reads them; asked again, the stored derivation answers.
    let t = run(&node, &id, json!({"op": "thumbnail", "sizes": [512, 128], "format": "png"})).await;
    assert_eq!(t["state"], "succeeded", "{t}");
    let outs = t["result"]["outputs"].as_array().unwrap();
    let mut sizes = Vec::new();
    for o in outs {
        let bytes = content(&node, o["id"].as_str().unwrap()).await;
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let probed = ffprobe_size(&bytes);
        assert_eq!(probed, (o["width"].as_u64().unwrap(), o["height"].as_u64().unwrap()));
        sizes.push(probed);
    }
    assert_eq!(sizes, [(128, 85), (512, 341)]);
    let (s, cached) = call(
        &node,
        reqwest::Method::POST,
        &format!("/files/{id}/jobs"),
        Some(json!({"op": "thumbnail", "sizes": [128, 512], "format": "png", "fit": "contain"})),
    )
    .await;
    assert_eq!(
        (s, cached["state"].as_str(), cached["cached"].as_bool()),
        (200, Some("succeeded"), Some(true)),
        "{cached}"
    );
    assert_eq!(cached["result"], t["result"]);
    for (format, magic) in [("jpeg", &b"\xff\xd8\xff"[..]), ("webp", &b"RIFF"[..])] {
        let c = run(&node, &id, json!({"op": "thumbnail", "sizes": [200], "fit": "cover", "format": format})).await;
        let o = &c["result"]["outputs"][0];
        let bytes = content(&node, o["id"].as_str().unwrap()).await;
        assert!(bytes.starts_with(magic), "{format}");
        assert_eq!(ffprobe_size(&bytes), (200, 200), "{format} cover");
        assert_eq!(o["media_type"], format!("image/{format}"));
    }

    // EXIF agrees with exiftool; orientation 6 turns the thumbnail upright (portrait).
    let (camera, oracle) = camera_jpeg(6);
    let (_, cf) = upload(&node, camera, "image/jpeg").await;
    let cid = cf["id"].as_str().unwrap().to_owned();
    let m = run(&node, &cid, json!({"op": "metadata"})).await;
    let meta = &m["result"]["metadata"];
    let exif = &meta["exif"];
    assert_eq!(exif["make"], oracle["Make"], "{meta}");
    assert_eq!(exif["model"], oracle["Model"]);
    assert_eq!(exif["orientation"], oracle["Orientation"]);
    assert_eq!(
        exif["datetime_original"].as_str().map(|d| d.replace('-', ":")),
        oracle["DateTimeOriginal"].as_str().map(str::to_owned)
    );
    for (ours, theirs) in [("lat", "GPSLatitude"), ("lon", "GPSLongitude"), ("altitude", "GPSAltitude")] {
        let (a, b) = (exif["gps"][ours].as_f64().unwrap(), oracle[theirs].as_f64().unwrap());
        assert!((a - b).abs() < 1e-5, "{ours}: {a} vs exiftool {b}");
    }
    assert_eq!((meta["width"].as_u64(), meta["height"].as_u64()), (Some(640), Some(480)));
    assert_eq!((meta["upright"]["width"].as_u64(), meta["upright"]["height"].as_u64()), (Some(480), Some(640)));
    let upright = run(&node, &cid, json!({"op": "thumbnail", "sizes": [160], "format": "png"})).await;
    let o = &upright["result"]["outputs"][0];
    assert_eq!(ffprobe_size(&content(&node, o["id"].as_str().unwrap()).await), (120, 160));

    // Hostile files: each job ends with its code, the node stays up.
    let mut truncated = image(400, 300, image::ImageFormat::Png);
    truncated.truncate(truncated.len() / 3);
    for (name, bytes, code) in [("bomb", bomb(), "too_large"), ("truncated", truncated, "corrupt")] {
        let (s, f) = upload(&node, bytes, "image/png").await;
        assert_eq!(s, 201, "{name}: {f}");
        let j =
            run(&node, f["id"].as_str().unwrap(), json!({"op": "thumbnail", "sizes": [128], "format": "png"})).await;
        assert_eq!((j["state"].as_str(), j["error"]["code"].as_str()), (Some("failed"), Some(code)), "{name}: {j}");
    }
    let (s, _) = call(&node, reqwest::Method::GET, "/health", None).await;
    assert_eq!(s, 200);

    // Operations: unknown or malformed → 422; not built → 501; not applicable → 415.
    let (_, text) = upload(&node, b"just some notes\n".to_vec(), "text/plain").await;
    let tid = text["id"].as_str().unwrap();
    for (file, op, status, code) in [
        (id.as_str(), json!({"op": "sharpen"}), 422, "invalid_operation"),
        (id.as_str(), json!({"op": "thumbnail", "sizes": [0]}), 422, "invalid_operation"),
        (id.as_str(), json!({"op": "thumbnail", "sizes": [128], "extra": 1}), 422, "invalid_operation"),
        (id.as_str(), json!({"op": "audio", "format": "opus"}), 415, "unsupported_media"),
        (id.as_str(), json!({"op": "frames", "every": "1s"}), 415, "unsupported_media"),
        (tid, json!({"op": "thumbnail", "sizes": [128]}), 415, "unsupported_media"),
    ] {
        let (s, e) = call(&node, reqwest::Method::POST, &format!("/files/{file}/jobs"), Some(op.clone())).await;
        assert_eq!((s, e["code"].as_str()), (status, Some(code)), "{op}: {e}");
    }
    let (s, e) =
        call(&node, reqwest::Method::POST, &format!("/files/{}/jobs", "a".repeat(64)), Some(json!({"op": "metadata"})))
            .await;
    assert_eq!((s, e["code"].as_str()), (404, Some("not_found")));

    // The job WebSocket: the states as they change, ending with the result.
    let (_, job) = call(
        &node,
        reqwest::Method::POST,
        &format!("/files/{id}/jobs"),
        Some(json!({"op": "thumbnail", "sizes": [300], "format": "jpeg"})),
    )
    .await;
    let url = format!("ws://{}:{FILES}/ws/jobs/{}", node.address.ip, job["id"].as_str().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut states = Vec::new();
    while let Some(Ok(msg)) = tokio::time::timeout(Duration::from_secs(30), ws.next()).await.unwrap() {
        if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            states.push(v["state"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(states.last().map(String::as_str), Some("succeeded"), "{states:?}");

    // Deleting a file removes its derivations and their outputs.
    let out = outs[0]["id"].as_str().unwrap().to_owned();
    let (s, _) = call(&node, reqwest::Method::DELETE, &format!("/files/{id}"), None).await;
    assert_eq!(s, 204);
    for gone in [format!("/files/{id}"), format!("/files/{out}")] {
        let (s, _) = call(&node, reqwest::Method::GET, &gone, None).await;
        assert_eq!(s, 404, "{gone}");
    }
    let (s, _) = call(&node, reqwest::Method::DELETE, &format!("/files/{id}"), None).await;
    assert_eq!(s, 404);
}

fn s3_options() -> NodeOptions {
    let (endpoint, key, secret) = infra::s3();
    NodeOptions::default()
        .env("LOOM_OBJECT_STORE", "s3")
        .env("LOOM_S3_ENDPOINT", endpoint)
        .env("LOOM_S3_BUCKET", infra::S3_BUCKET)
        .env("LOOM_S3_ACCESS_KEY", key)
        .env("LOOM_S3_SECRET_KEY", secret)
}

#[tokio::test]
async fn two_nodes_on_one_s3_store_share_files_jobs_and_derivations() {
    let a = LoomNode::start_ready("files-s3-a", s3_options()).await;
    let b = LoomNode::start_ready("files-s3-b", s3_options()).await;
    let png = image(1000, 700, image::ImageFormat::Png);
    let (s, f) = upload(&a, png.clone(), "image/png").await;
    assert_eq!(s, 201, "{f}");
    let id = f["id"].as_str().unwrap().to_owned();
    let (s, seen) = call(&b, reqwest::Method::GET, &format!("/files/{id}"), None).await;
    assert_eq!((s, &seen["id"]), (200, &f["id"]));
    assert_eq!(content(&b, &id).await, png);

    let op = json!({"op": "thumbnail", "sizes": [256], "format": "webp"});
    let made = run(&a, &id, op.clone()).await;
    assert_eq!((made["state"].as_str(), made["cached"].as_bool()), (Some("succeeded"), Some(false)), "{made}");
    // The job made on a is readable on b; the same ask on b is answered from the derivation.
    let (s, same) = call(&b, reqwest::Method::GET, &format!("/jobs/{}", made["id"].as_str().unwrap()), None).await;
    assert_eq!((s, &same["result"]), (200, &made["result"]));
    let (s, reused) = call(&b, reqwest::Method::POST, &format!("/files/{id}/jobs"), Some(op)).await;
    assert_eq!((s, reused["cached"].as_bool()), (200, Some(true)), "{reused}");
    assert_eq!(reused["result"], made["result"]);
    let out = made["result"]["outputs"][0]["id"].as_str().unwrap();
    assert_eq!(ffprobe_size(&content(&b, out).await), (256, 179));
    let (s, _) = call(&b, reqwest::Method::DELETE, &format!("/files/{id}"), None).await;
    assert_eq!(s, 204);
    let (s, _) = call(&a, reqwest::Method::GET, &format!("/files/{id}"), None).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after_and_accepted_jobs_finish() {
    let node = LoomNode::start_ready(
        "files-queue",
        NodeOptions::default().env("LOOM_FILES_WORKERS", "1").env("LOOM_FILES_QUEUE", "2"),
    )
    .await;
    let (_, f) = upload(&node, image(3000, 2000, image::ImageFormat::Png), "image/png").await;
    let id = f["id"].as_str().unwrap().to_owned();
    let asks = (0..12).map(|i| {
        let url = node.url(FILES, &format!("/files/{id}/jobs"));
        async move {
            let resp = http()
                .post(url)
                .json(&json!({"op": "thumbnail", "sizes": [100 + i], "format": "png"}))
                .send()
                .await
                .unwrap();
            let retry = resp.headers().get("retry-after").is_some();
            (resp.status().as_u16(), retry, resp.json::<Value>().await.unwrap())
        }
    });
    let answers = futures::future::join_all(asks).await;
    let refused: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 429).collect();
    let accepted: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 202).collect();
    eprintln!("12 concurrent jobs on 1 worker, queue 2: {} accepted, {} refused", accepted.len(), refused.len());
    assert!(!refused.is_empty(), "{answers:?}");
    assert!(refused.iter().all(|(_, retry, e)| *retry && e["code"] == "queue_full"));
    assert_eq!(accepted.len() + refused.len(), 12);
    for (_, _, job) in accepted {
        let jid = job["id"].as_str().unwrap().to_owned();
        eventually("accepted job to succeed", Duration::from_secs(60), || {
            let jid = jid.clone();
            let node = &node;
            async move {
                let (_, j) = call(node, reqwest::Method::GET, &format!("/jobs/{jid}"), None).await;
                (j["state"] == "succeeded").then_some(())
            }
        })
        .await;
    }
}

/// Runs ffmpeg to make test media (`-f lavfi` sources); returns the file's bytes.
fn ffmpeg(dir: &std::path::Path, name: &str, args: &[&str]) -> Vec<u8> {
    let path = dir.join(name);
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args(args)
        .arg(&path)
        .output()
        .expect("ffmpeg runs (scripts/infra.sh installs it)");
    assert!(out.status.success(), "ffmpeg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::read(path).unwrap()
}

/// ffprobe's JSON for bytes.
fn ffprobe(bytes: &[u8]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("media");
    std::fs::write(&path, bytes).unwrap();
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_format", "-show_streams", "-of", "json"])
        .arg(&path)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

fn seconds(v: &Value) -> f64 {
    v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).unwrap_or(f64::NAN)
}

/// A two-page PDF with a title, written by hand (objects, xref with real offsets, trailer).
fn pdf(pages: &[&str], title: &str) -> Vec<u8> {
    let n = pages.len();
    let mut objects = vec![
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        format!(
            "<< /Type /Pages /Kids [{}] /Count {n} >>",
            (0..n).map(|i| format!("{} 0 R", 4 + 2 * i)).collect::<Vec<_>>().join(" ")
        ),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    for (i, text) in pages.iter().enumerate() {
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
            5 + 2 * i
        ));
        let stream = format!("BT /F1 24 Tf 72 700 Td ({text}) Tj ET");
        objects.push(format!("<< /Length {} >>\nstream\n{stream}\nendstream", stream.len()));
    }
    objects.push(format!("<< /Title ({title}) /Producer (loom tests) >>"));
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for off in offsets {
        out.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R /Info {} 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1,
            objects.len()
        )
        .as_bytes(),
    );
    out
}

#[tokio::test]
async fn video_audio_and_pdf_jobs_agree_with_ffprobe_and_the_documents() {
    let node = LoomNode::start_ready("files-media", NodeOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let tone = format!("sine=frequency={}:duration=6", 400 + salt() as u32);
    // 6 s of 320×240 video, a keyframe every second, with a tone; the moov atom at the end
    // (ffmpeg's default for MP4).
    let video = ffmpeg(
        dir.path(),
        "clip.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25:duration=6",
            "-f",
            "lavfi",
            "-i",
            &tone,
            "-c:v",
            "libx264",
            "-g",
            "25",
            "-keyint_min",
            "25",
            "-sc_threshold",
            "0",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
        ],
    );
    let (s, v) = upload(&node, video.clone(), "video/mp4").await;
    assert_eq!((s, v["media_type"].as_str()), (201, Some("video/mp4")), "{v}");
    let vid = v["id"].as_str().unwrap().to_owned();

    // Metadata equals ffprobe's reading of the same bytes.
    let oracle = ffprobe(&video);
    let m = run(&node, &vid, json!({"op": "metadata"})).await;
    let meta = &m["result"]["metadata"];
    assert_eq!(m["state"], "succeeded", "{m}");
    assert!((seconds(&meta["duration"]) - seconds(&oracle["format"]["duration"])).abs() < 1e-6, "{meta}");
    let codecs = |v: &Value, key: &str| {
        v.as_array().unwrap().iter().map(|s| s[key].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(codecs(&meta["streams"], "codec"), codecs(&oracle["streams"], "codec_name"));
    assert_eq!(meta["streams"][0]["width"], 320);
    assert_eq!(meta["streams"][0]["fps"], 25.0);

    // A representative frame as the thumbnail.
    let t = run(&node, &vid, json!({"op": "thumbnail", "sizes": [128], "format": "png"})).await;
    let o = &t["result"]["outputs"][0];
    assert_eq!(ffprobe_size(&content(&node, o["id"].as_str().unwrap()).await), (128, 96), "{t}");

    // Frames: by interval, at times, keyframes; a time past the end fails out_of_range.
    let every = run(&node, &vid, json!({"op": "frames", "every": "2s"})).await;
    let outs = every["result"]["outputs"].as_array().unwrap();
    assert!((3..=4).contains(&outs.len()), "{every}");
    for (i, o) in outs.iter().enumerate() {
        assert_eq!(o["start"].as_f64(), Some(2.0 * i as f64));
        assert_eq!(ffprobe_size(&content(&node, o["id"].as_str().unwrap()).await), (320, 240));
    }
    let at = run(&node, &vid, json!({"op": "frames", "at": ["00:00:03.5", "1s"], "format": "png"})).await;
    let starts: Vec<f64> =
        at["result"]["outputs"].as_array().unwrap().iter().map(|o| o["start"].as_f64().unwrap()).collect();
    assert_eq!(starts, [1.0, 3.5], "{at}");
    let keys = run(&node, &vid, json!({"op": "frames", "keyframes": true})).await;
    let key_starts: Vec<f64> =
        keys["result"]["outputs"].as_array().unwrap().iter().map(|o| o["start"].as_f64().unwrap()).collect();
    assert_eq!(key_starts.len(), 6, "{keys}");
    for (i, t) in key_starts.iter().enumerate() {
        assert!((t - i as f64).abs() < 0.05, "keyframe {i} at {t}");
    }
    let past = run(&node, &vid, json!({"op": "frames", "at": ["00:00:30"]})).await;
    assert_eq!(
        (past["state"].as_str(), past["error"]["code"].as_str()),
        (Some("failed"), Some("out_of_range")),
        "{past}"
    );

    // Audio out of the video, converted; ffprobe reads the codec and the duration.
    for (format, codec) in [("opus", "opus"), ("mp3", "mp3"), ("wav", "pcm_s16le"), ("flac", "flac")] {
        let a = run(&node, &vid, json!({"op": "audio", "format": format, "sample_rate": 48000, "channels": 1})).await;
        let o = &a["result"]["outputs"][0];
        let probed = ffprobe(&content(&node, o["id"].as_str().unwrap()).await);
        assert_eq!(probed["streams"][0]["codec_name"], codec, "{format}");
        assert_eq!(probed["streams"][0]["channels"], 1, "{format}");
        assert!((seconds(&probed["format"]["duration"]) - 6.0).abs() < 0.1, "{format}: {probed}");
        assert!((o["duration"].as_f64().unwrap() - 6.0).abs() < 0.1, "{a}");
    }

    // Chunking: fixed 2 s chunks; at silences of a tone that pauses every 3 s.
    let c = run(&node, &vid, json!({"op": "audio", "format": "wav", "chunk": {"seconds": 2}})).await;
    let chunks = c["result"]["outputs"].as_array().unwrap();
    assert_eq!(chunks.len(), 3, "{c}");
    for (i, ch) in chunks.iter().enumerate() {
        assert!((ch["start"].as_f64().unwrap() - 2.0 * i as f64).abs() < 0.05, "{ch}");
        assert!((ch["duration"].as_f64().unwrap() - 2.0).abs() < 0.05, "{ch}");
        let probed = ffprobe(&content(&node, ch["id"].as_str().unwrap()).await);
        let d = seconds(&probed["format"]["duration"]);
        assert!((d - ch["duration"].as_f64().unwrap()).abs() < 0.03, "chunk {i}: ffprobe {d} vs {ch}");
    }
    let speech = ffmpeg(
        dir.path(),
        "pauses.wav",
        &["-f", "lavfi", "-i", "aevalsrc=if(lt(mod(t\\,3)\\,2)\\,0.5*sin(2*PI*440*t)\\,0):s=44100:d=8"],
    );
    let (_, sp) = upload(&node, speech, "audio/wav").await;
    let sil = run(
        &node,
        sp["id"].as_str().unwrap(),
        json!({"op": "audio", "format": "flac", "chunk": {"silence": {"db": -40, "min": "0.5s"}}}),
    )
    .await;
    let chunks = sil["result"]["outputs"].as_array().unwrap();
    let starts: Vec<f64> = chunks.iter().map(|c| c["start"].as_f64().unwrap()).collect();
    assert_eq!(starts.len(), 3, "{sil}");
    for (got, want) in starts.iter().zip([0.0, 2.5, 5.5]) {
        assert!((got - want).abs() < 0.1, "chunk starts {starts:?}");
    }
    let total: f64 = chunks.iter().map(|c| c["duration"].as_f64().unwrap()).sum();
    assert!((total - 8.0).abs() < 0.1, "{total}");

    // No stream of the kind asked for.
    let mute = ffmpeg(
        dir.path(),
        "mute.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=160x120:rate=10:duration=2",
            "-an",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
        ],
    );
    let (_, mv) = upload(&node, mute, "video/mp4").await;
    let na = run(&node, mv["id"].as_str().unwrap(), json!({"op": "audio", "format": "mp3"})).await;
    assert_eq!(na["error"]["code"], "no_stream", "{na}");
    let (_, truncated) = upload(&node, video[..video.len() / 2].to_vec(), "video/mp4").await;
    let tr = run(&node, truncated["id"].as_str().unwrap(), json!({"op": "metadata"})).await;
    assert_eq!((tr["state"].as_str(), tr["error"]["code"].as_str()), (Some("failed"), Some("corrupt")), "{tr}");

    // PDF: text per page, info, the first page as a thumbnail.
    let doc = pdf(&["Hello from page one", "Second page says goodbye"], "Loom test document");
    let (s, d) = upload(&node, doc, "application/pdf").await;
    assert_eq!((s, d["media_type"].as_str()), (201, Some("application/pdf")), "{d}");
    let did = d["id"].as_str().unwrap().to_owned();
    let text = run(&node, &did, json!({"op": "text"})).await;
    let r = &text["result"];
    assert_eq!(r["page_count"], 2, "{text}");
    assert_eq!(r["pages"][0]["text"].as_str().unwrap().trim(), "Hello from page one");
    assert_eq!(r["pages"][1]["text"].as_str().unwrap().trim(), "Second page says goodbye");
    assert_eq!(r["metadata"]["title"], "Loom test document");
    let info = run(&node, &did, json!({"op": "metadata"})).await;
    assert_eq!(
        (info["result"]["metadata"]["pages"].as_u64(), info["result"]["metadata"]["encrypted"].as_bool()),
        (Some(2), Some(false))
    );
    let page = run(&node, &did, json!({"op": "thumbnail", "sizes": [200], "format": "png"})).await;
    let o = &page["result"]["outputs"][0];
    let (w, h) = ffprobe_size(&content(&node, o["id"].as_str().unwrap()).await);
    assert_eq!((w, h), (155, 200), "a letter page 612 × 792 scaled into 200 px: {page}");
    // Encrypted with qpdf: a user password makes text `encrypted`; an owner password alone
    // still opens (and the metadata says encrypted).
    let dir = tempfile::tempdir().unwrap();
    let plain_pdf = dir.path().join("plain.pdf");
    std::fs::write(&plain_pdf, pdf(&["Locked words"], "Locked")).unwrap();
    for (user, want_text) in [("secret-user", None), ("", Some("Locked words"))] {
        let locked = dir.path().join("locked.pdf");
        let ok = std::process::Command::new("qpdf")
            .args(["--encrypt", user, "owner-pass", "256", "--"])
            .arg(&plain_pdf)
            .arg(&locked)
            .status()
            .expect("qpdf (scripts/infra.sh installs it)");
        assert!(ok.success());
        let (_, l) = upload(&node, std::fs::read(&locked).unwrap(), "application/pdf").await;
        let t = run(&node, l["id"].as_str().unwrap(), json!({"op": "text"})).await;
        match want_text {
            None => assert_eq!(
                (t["state"].as_str(), t["error"]["code"].as_str()),
                (Some("failed"), Some("encrypted")),
                "{t}"
            ),
            Some(words) => {
                assert_eq!(t["result"]["pages"][0]["text"].as_str().map(str::trim), Some(words), "{t}");
                let m = run(&node, l["id"].as_str().unwrap(), json!({"op": "metadata"})).await;
                assert_eq!(m["result"]["metadata"]["encrypted"], true, "{m}");
            }
        }
    }
    let (_, broken) = upload(&node, b"%PDF-1.4\nnot really a pdf at all".to_vec(), "application/pdf").await;
    let b = run(&node, broken["id"].as_str().unwrap(), json!({"op": "text"})).await;
    assert_eq!((b["state"].as_str(), b["error"]["code"].as_str()), (Some("failed"), Some("corrupt")), "{b}");
    let (_, plain) = upload(&node, "plain words, città\n".as_bytes().to_vec(), "text/plain").await;
    let pt = run(&node, plain["id"].as_str().unwrap(), json!({"op": "text"})).await;
    assert_eq!(pt["result"]["pages"][0]["text"], "plain words, città\n");
    let (s, _) = call(&node, reqwest::Method::GET, "/health", None).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn cancellation_timeouts_and_quarantine() {
    let node = LoomNode::start_ready(
        "files-limits",
        NodeOptions::default()
            .env("LOOM_FILES_WORKERS", "1")
            .env("LOOM_FILES_JOB_TIMEOUT", "2s")
            .env("LOOM_FILES_QUARANTINE_AFTER", "2"),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let size = format!("testsrc2=size=640x480:rate=25:duration={}", 20 + salt() as u32 % 5);
    let long = ffmpeg(
        dir.path(),
        "long.mp4",
        &["-f", "lavfi", "-i", &size, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"],
    );
    let (_, f) = upload(&node, long, "video/mp4").await;
    let id = f["id"].as_str().unwrap().to_owned();
    let slow = |every: &str| json!({"op": "frames", "every": every, "format": "png"});

    // A running job and a queued one behind it, both cancelled; a finished job cannot be.
    let (_, running) = call(&node, reqwest::Method::POST, &format!("/files/{id}/jobs"), Some(slow("0.1s"))).await;
    let (_, queued) = call(&node, reqwest::Method::POST, &format!("/files/{id}/jobs"), Some(slow("0.2s"))).await;
    // The running job's ffmpeg is busy before the cancel.
    let children = || {
        let out = Command::new("pgrep").args(["-P", &node.pid().to_string()]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).split_whitespace().count()
    };
    let busy = eventually("the running job to start its tool", Duration::from_secs(10), || async {
        (children() > 0).then_some(())
    });
    busy.await;
    for job in [&queued, &running] {
        let path = format!("/jobs/{}", job["id"].as_str().unwrap());
        let (s, j) = call(&node, reqwest::Method::DELETE, &path, None).await;
        assert_eq!((s, j["state"].as_str()), (200, Some("cancelled")), "{j}");
    }
    // Cancelled means stopped: the tool is killed, well before the job's timeout.
    eventually("the cancelled job's tool to be killed", Duration::from_millis(1500), || async {
        (children() == 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for job in [&queued, &running] {
        let (_, j) = call(&node, reqwest::Method::GET, &format!("/jobs/{}", job["id"].as_str().unwrap()), None).await;
        assert_eq!(j["state"], "cancelled", "a cancelled job stays cancelled: {j}");
        assert!(j.get("result").is_none(), "{j}");
    }
    let (_, small) = upload(&node, image(64, 64, image::ImageFormat::Png), "image/png").await;
    let done = run(&node, small["id"].as_str().unwrap(), json!({"op": "metadata"})).await;
    let (s, e) = call(&node, reqwest::Method::DELETE, &format!("/jobs/{}", done["id"].as_str().unwrap()), None).await;
    assert_eq!((s, e["code"].as_str()), (409, Some("job_ended")));

    // Past files.job_timeout the job fails `timeout`; two of those quarantine the file.
    for every in ["0.1s", "0.15s"] {
        let j = run(&node, &id, slow(every)).await;
        assert_eq!((j["state"].as_str(), j["error"]["code"].as_str()), (Some("failed"), Some("timeout")), "{j}");
    }
    let (s, e) =
        call(&node, reqwest::Method::POST, &format!("/files/{id}/jobs"), Some(json!({"op": "metadata"}))).await;
    assert_eq!((s, e["code"].as_str()), (422, Some("quarantined")), "{e}");
    let (_, q) = call(&node, reqwest::Method::GET, "/quarantine", None).await;
    let listed = q["files"].as_array().unwrap();
    assert_eq!(
        (listed.len(), listed[0]["id"].as_str(), listed[0]["strikes"].as_u64()),
        (1, Some(id.as_str()), Some(2)),
        "{q}"
    );
    let (s, _) = call(&node, reqwest::Method::DELETE, &format!("/admin/quarantine/{id}"), None).await;
    assert_eq!(s, 204);
    let m = run(&node, &id, json!({"op": "metadata"})).await;
    assert_eq!(m["state"], "succeeded", "released: {m}");
}

/// The node's peak resident memory (VmHWM), in KiB.
/// An ffmpeg that stops reporting progress (here: stopped with SIGSTOP) is killed after
/// `files.no_progress_timeout`, long before the job's own timeout, and the job fails `timeout`
/// saying why; a healthy long job is not (ffmpeg reports every 2 s).
#[tokio::test]
async fn a_stalled_tool_is_killed_for_reporting_no_progress() {
    let node = LoomNode::start_ready(
        "files-stall",
        NodeOptions::default()
            .env("LOOM_FILES_WORKERS", "1")
            .env("LOOM_FILES_JOB_TIMEOUT", "120s")
            .env("LOOM_FILES_NO_PROGRESS_TIMEOUT", "4s"),
    )
    .await;
    // Two hours of a tone (a few MB of FLAC) take ffmpeg many seconds to turn into Opus.
    let dir = tempfile::tempdir().unwrap();
    let tone = format!("sine=frequency={}:duration=7200:sample_rate=8000", 300 + salt() as u32);
    let long = ffmpeg(dir.path(), "stall.flac", &["-f", "lavfi", "-i", &tone, "-ac", "1"]);
    let (_, f) = upload(&node, long, "audio/flac").await;
    let id = f["id"].as_str().unwrap().to_owned();
    let op = json!({"op": "audio", "format": "opus", "sample_rate": 48000});
    let (_, job) = call(&node, reqwest::Method::POST, &format!("/files/{id}/jobs"), Some(op)).await;
    let children = || {
        let out = Command::new("pgrep").args(["-P", &node.pid().to_string()]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_owned).collect::<Vec<_>>()
    };
    let pids = eventually("the audio job to start ffmpeg", Duration::from_secs(20), || async {
        let p = children();
        (!p.is_empty()).then_some(p)
    })
    .await;
    let stopped = Instant::now();
    for pid in &pids {
        let _ = Command::new("kill").args(["-STOP", pid]).status();
    }
    let path = format!("/jobs/{}", job["id"].as_str().unwrap());
    let failed = eventually("the stalled job to fail", Duration::from_secs(30), || async {
        let (_, j) = call(&node, reqwest::Method::GET, &path, None).await;
        (j["state"] == "failed").then_some(j)
    })
    .await;
    let after = stopped.elapsed();
    assert_eq!(failed["error"]["code"], "timeout", "{failed}");
    assert!(failed["error"]["message"].as_str().unwrap_or_default().contains("no progress"), "{failed}");
    assert!(after >= Duration::from_secs(3) && after < Duration::from_secs(20), "killed {after:?} after the stop");
    assert!(children().is_empty(), "the stalled ffmpeg was killed");
    eprintln!("a stopped ffmpeg was killed {after:?} after it stopped (no-progress timeout 4 s, job timeout 120 s)");
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_corpus_of_hostile_files_ends_every_job_with_a_code_and_bounded_memory() {
    use rand::{RngExt, SeedableRng};
    let node =
        LoomNode::start_ready("files-hostile", NodeOptions::default().env("LOOM_FILES_JOB_TIMEOUT", "20s")).await;
    let dir = tempfile::tempdir().unwrap();
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("image/png", image(256, 192, image::ImageFormat::Png)),
        ("image/jpeg", image(256, 192, image::ImageFormat::Jpeg)),
        ("image/gif", image(128, 96, image::ImageFormat::Gif)),
        ("image/tiff", image(128, 96, image::ImageFormat::Tiff)),
        ("image/webp", image(128, 96, image::ImageFormat::WebP)),
        (
            "video/mp4",
            ffmpeg(
                dir.path(),
                "s.mp4",
                &[
                    "-f",
                    "lavfi",
                    "-i",
                    "testsrc2=size=160x120:rate=10:duration=2",
                    "-c:v",
                    "libx264",
                    "-pix_fmt",
                    "yuv420p",
                ],
            ),
        ),
        ("audio/wav", ffmpeg(dir.path(), "s.wav", &["-f", "lavfi", "-i", "sine=duration=1"])),
        ("application/pdf", pdf(&["fuzz me"], "fuzz")),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x100 + salt() as u64);
    let mut corpus: Vec<(String, Vec<u8>)> = vec![("bomb".into(), bomb())];
    for i in 0..210 {
        let (kind, seed) = &seeds[i % seeds.len()];
        let mut b = seed.clone();
        match i % 5 {
            0 => b.truncate(rng.random_range(1..b.len())),
            1 => {
                for _ in 0..rng.random_range(1..20) {
                    let at = rng.random_range(0..b.len());
                    b[at] = rng.random();
                }
            }
            2 => {
                // The header kept, the rest noise.
                let keep = 32.min(b.len());
                for x in b.iter_mut().skip(keep) {
                    *x = rng.random();
                }
            }
            3 => {
                // A slice of the middle duplicated (length fields now lie).
                let (a, z) = (rng.random_range(0..b.len() / 2), rng.random_range(b.len() / 2..b.len()));
                let dup = b[a..z].to_vec();
                b.splice(a..a, dup);
            }
            _ => {
                // A polyglot: another kind's header in front.
                let other = &seeds[(i + 3) % seeds.len()].1;
                let mut p = other[..other.len().min(64)].to_vec();
                p.extend_from_slice(&b);
                b = p;
            }
        }
        corpus.push((format!("{kind}#{i}"), b));
    }
    let allowed = [
        "too_large",
        "corrupt",
        "unsupported_media",
        "encrypted",
        "no_stream",
        "out_of_range",
        "parser_crashed",
        "timeout",
    ];
    let mut codes: std::collections::BTreeMap<String, usize> = Default::default();
    let mut jobs = 0;
    for (name, bytes) in &corpus {
        let (s, f) = upload(&node, bytes.clone(), "application/octet-stream").await;
        assert!(s == 201 || s == 400, "{name}: upload {s} {f}");
        if s != 201 {
            continue;
        }
        let fid = f["id"].as_str().unwrap();
        for op in [json!({"op": "thumbnail", "sizes": [64], "format": "png"}), json!({"op": "metadata"})] {
            let (s, j) = call(&node, reqwest::Method::POST, &format!("/files/{fid}/jobs"), Some(op.clone())).await;
            if s == 415 || s == 422 {
                *codes.entry(format!("refused:{}", j["code"].as_str().unwrap())).or_default() += 1;
                continue;
            }
            assert!(s == 200 || s == 202, "{name} {op}: {s} {j}");
            let j = run(&node, fid, op.clone()).await;
            jobs += 1;
            let key = match j["state"].as_str() {
                Some("succeeded") => "succeeded".to_owned(),
                Some("failed") => {
                    let code = j["error"]["code"].as_str().unwrap_or("none").to_owned();
                    assert!(allowed.contains(&code.as_str()), "{name} {op}: {j}");
                    code
                }
                other => panic!("{name} {op}: ended {other:?}"),
            };
            *codes.entry(key).or_default() += 1;
        }
    }
    let (s, _) = call(&node, reqwest::Method::GET, "/health", None).await;
    assert_eq!(s, 200, "the node is up after the corpus");
    let peak = peak_rss_kib(node.pid());
    eprintln!("{} hostile files, {jobs} jobs: {codes:?}; node peak RSS {} MiB", corpus.len(), peak / 1024);
    assert!(corpus.len() >= 200);
    assert!(peak < 1024 * 1024, "peak RSS {} MiB over the 1 GiB bound", peak / 1024);
}

#[path = "support/kafka.rs"]
mod kafka;

#[tokio::test]
async fn the_kafka_bridge_turns_requests_into_results_in_order() {
    let p = kafka::prefix("files");
    let (uploaded, processed) = (format!("{p}.uploaded"), format!("{p}.processed"));
    loom_kafka::admin::ensure_topics(&kafka::kafka_section(), &[&uploaded, &processed], 1).await.unwrap();
    let options = s3_options()
        .env("LOOM_KAFKA_BROKERS", infra::kafka_brokers())
        .env("LOOM_KAFKA_SESSION_TIMEOUT", "6s")
        .env("LOOM_KAFKA_HEARTBEAT_INTERVAL", "500ms")
        .env("LOOM_FILES_TOPICS", format!("{uploaded}:{processed}"))
        .env("LOOM_FILES_GROUP", format!("{p}.group"));
    let node = LoomNode::start_ready("files-kafka", options).await;

    // One file uploaded through REST, one object put straight into the bucket.
    let png = image(400, 300, image::ImageFormat::Png);
    let (_, f) = upload(&node, png, "image/png").await;
    let id = f["id"].as_str().unwrap().to_owned();
    let (endpoint, key, secret) = infra::s3();
    let objects = loom_storage::Objects::open(&loom_config::ObjectStoreSection {
        backend: loom_config::ObjectBackend::S3,
        endpoint: Some(endpoint),
        bucket: Some(infra::S3_BUCKET.into()),
        access_key: Some(loom_config::Secret::new(key)),
        secret_key: Some(loom_config::Secret::new(secret)),
        ..Default::default()
    })
    .unwrap();
    let object = format!("incoming/{p}/cam.jpg");
    let jpeg = image(320, 240, image::ImageFormat::Jpeg);
    objects.put(&object, bytes::Bytes::from(jpeg.clone())).await.unwrap();

    let producer = kafka::client_producer();
    let thumb = json!({"op": "thumbnail", "sizes": [64], "format": "png"});
    let requests = [
        json!({"id": id, "ops": [thumb, {"op": "metadata"}, {"op": "sharpen"}]}).to_string(),
        json!({"url": format!("s3://{}/{object}", infra::S3_BUCKET), "ops": [{"op": "metadata"}]}).to_string(),
        "not json at all".to_owned(),
        json!({"id": "f".repeat(64), "ops": []}).to_string(),
    ];
    for (i, r) in requests.iter().enumerate() {
        kafka::produce(&producer, &uploaded, &format!("r{i}"), r.as_bytes()).await;
    }
    let out = eventually("4 results", Duration::from_secs(90), || {
        let processed = processed.clone();
        async move {
            let out = kafka::read_all(&processed).await;
            (out.len() >= 4).then_some(out)
        }
    })
    .await;
    let results: Vec<Value> =
        out.iter().map(|r| serde_json::from_slice(r.payload.as_deref().unwrap()).unwrap()).collect();
    let offsets: Vec<i64> = results.iter().map(|r| r["source"]["offset"].as_i64().unwrap()).collect();
    assert_eq!(offsets, [0, 1, 2, 3], "one result per request, in order");
    let first = &results[0];
    assert_eq!(out[0].key.as_deref(), Some(id.as_bytes()));
    assert_eq!(first["results"][0]["state"], "succeeded", "{first}");
    assert_eq!(first["results"][0]["result"]["outputs"][0]["width"], 64);
    assert_eq!(first["results"][1]["result"]["metadata"]["width"], 400);
    assert_eq!(
        (first["results"][2]["state"].as_str(), first["results"][2]["error"]["code"].as_str()),
        (Some("refused"), Some("invalid_operation"))
    );
    let imported = &results[1];
    assert_eq!(imported["file"]["id"], sha256(&jpeg), "{imported}");
    assert_eq!(imported["file"]["name"], "cam.jpg");
    assert_eq!(imported["results"][0]["result"]["metadata"]["width"], 320);
    assert_eq!(results[2]["error"]["code"], "invalid_request");
    assert_eq!(results[3]["error"]["code"], "not_found");
    // The imported file is a file like any other.
    assert_eq!(content(&node, &sha256(&jpeg)).await, jpeg);
    let (s, v) = call(
        &node,
        reqwest::Method::POST,
        "/files/import",
        Some(json!({"url": format!("s3://{}/{object}", infra::S3_BUCKET)})),
    )
    .await;
    assert_eq!((s, v["id"].as_str()), (201, Some(sha256(&jpeg).as_str())));
    let (s, e) = call(&node, reqwest::Method::POST, "/files/import", Some(json!({"url": "s3://elsewhere/x"}))).await;
    assert_eq!((s, e["code"].as_str()), (400, Some("invalid_request")));
}

/// SSIM and PSNR (dB, 100 for identical) of two same-sized images by ffmpeg's `ssim` and
/// `psnr` filters.
fn ssim(a: &[u8], b: &[u8]) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::write(&pa, a).unwrap();
    std::fs::write(&pb, b).unwrap();
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-i"])
        .arg(&pa)
        .arg("-i")
        .arg(&pb)
        .args([
            "-lavfi",
            "[0:v]format=rgb24,split[x1][x2];[1:v]format=rgb24,split[y1][y2];[x1][y1]ssim;[x2][y2]psnr",
            "-f",
            "null",
            "-",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let figure = |key: &str| err.rsplit(key).next().and_then(|s| s.split_whitespace().next()).unwrap_or("0").to_owned();
    let psnr = figure("average:");
    (figure("All:").parse().unwrap_or(0.0), if psnr == "inf" { 100.0 } else { psnr.parse().unwrap_or(0.0) })
}

/// The oracle of the PDF corpus: pypdf's page count and text per document (or why it could not).
fn pypdf_oracle(dir: &std::path::Path) -> Value {
    let script = r#"
import json, os, sys, warnings
warnings.simplefilter("ignore")
from pypdf import PdfReader
out = {}
for f in sorted(os.listdir(sys.argv[1])):
    if not f.endswith(".pdf"):
        continue
    try:
        r = PdfReader(os.path.join(sys.argv[1], f))
        if r.is_encrypted and not r.decrypt(""):
            out[f] = {"encrypted": True}
            continue
        out[f] = {"pages": len(r.pages), "text": " ".join(p.extract_text() or "" for p in r.pages)}
    except Exception as e:
        out[f] = {"error": type(e).__name__}
print(json.dumps(out))
"#;
    let out = Command::new(infra::python()).args(["-c", script]).arg(dir).output().expect("python with pypdf");
    assert!(out.status.success(), "pypdf oracle: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn tokens(text: &str) -> std::collections::HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|t| !t.is_empty()).map(str::to_lowercase).collect()
}

/// The registry corpora: every PDF of the pypdf 5.4.0 sdist (page counts and text against
/// pypdf; token overlap reported per document) and every camera image of the piexif 1.1.3 sdist
/// (EXIF against `exiftool -json -n`; 256-px thumbnails against an ffmpeg-scaled reference by
/// SSIM), on the S3 store.
#[tokio::test]
async fn registry_corpora_agree_with_pypdf_exiftool_and_ffmpeg() {
    let node = LoomNode::start_ready("files-corpora", s3_options()).await;

    // PDFs.
    let pdfs = infra::pypdf_dir();
    let oracle = pypdf_oracle(&pdfs);
    let (mut compared, mut good, mut low) = (0, 0, Vec::new());
    for (name, want) in oracle.as_object().unwrap() {
        let bytes = std::fs::read(pdfs.join(name)).unwrap();
        let (s, f) = upload(&node, bytes, "application/pdf").await;
        assert_eq!(s, 201, "{name}: {f}");
        let t = run(&node, f["id"].as_str().unwrap(), json!({"op": "text"})).await;
        let state = t["state"].as_str().unwrap_or("");
        if want["encrypted"] == true {
            assert_eq!((state, t["error"]["code"].as_str()), ("failed", Some("encrypted")), "{name}: {t}");
            continue;
        }
        if want.get("error").is_some() {
            assert!(state == "succeeded" || t["error"]["code"].is_string(), "{name}: {t}");
            continue;
        }
        assert_eq!(state, "succeeded", "{name} opens in pypdf: {t}");
        assert_eq!(t["result"]["page_count"], want["pages"], "{name}: page count against pypdf");
        let theirs = tokens(want["text"].as_str().unwrap_or(""));
        if theirs.len() < 5 {
            continue; // image-only or nearly empty pages: no text to compare
        }
        let ours: String = t["result"]["pages"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let ours = tokens(&ours);
        let overlap = theirs.intersection(&ours).count() as f64 / theirs.len() as f64;
        compared += 1;
        if overlap >= 0.9 {
            good += 1;
        } else {
            low.push(format!("{name} {overlap:.2}"));
        }
    }
    eprintln!("pypdf corpus: {good}/{compared} documents with ≥ 0.9 token overlap against pypdf; below: {low:?}");
    assert!(compared >= 25, "compared {compared} documents");
    assert!(good as f64 >= 0.8 * compared as f64, "{good}/{compared} ≥ 0.9; below: {low:?}");

    // Camera images.
    let images = infra::piexif_dir();
    let mut files: Vec<_> = std::fs::read_dir(&images).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let (mut exif_checked, mut ssims, mut mismatches) = (0, Vec::new(), Vec::new());
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        let out = Command::new("exiftool").args(["-json", "-n"]).arg(&path).output().unwrap();
        let tool: Value = serde_json::from_slice::<Value>(&out.stdout).unwrap()[0].clone();
        let (s, f) = upload(&node, bytes.clone(), "image/jpeg").await;
        if bytes.is_empty() {
            assert_eq!((s, f["code"].as_str()), (400, Some("empty_file")), "{name}");
            continue;
        }
        assert_eq!(s, 201, "{name}: {f}");
        let id = f["id"].as_str().unwrap().to_owned();
        let m = run(&node, &id, json!({"op": "metadata"})).await;
        if !tool["MIMEType"].as_str().is_some_and(|t| t.starts_with("image/")) {
            assert!(m["state"] == "failed" && m["error"]["code"].is_string(), "{name} is no image: {m}");
            continue;
        }
        assert_eq!(m["state"], "succeeded", "{name}: {m}");
        let exif = &m["result"]["metadata"]["exif"];
        let text = |v: &Value| v.as_str().map(|s| s.trim_matches(|c: char| c == '\0' || c.is_whitespace()).to_owned());
        let mut differ = Vec::new();
        for (ours, theirs) in [("make", "Make"), ("model", "Model")] {
            if tool.get(theirs).is_some() && text(&exif[ours]) != text(&tool[theirs]) {
                differ.push(format!("{ours} {} vs {}", exif[ours], tool[theirs]));
            }
        }
        if let Some(o) = tool.get("Orientation").filter(|o| exif["orientation"] != **o) {
            differ.push(format!("orientation {} vs {o}", exif["orientation"]));
        }
        if let Some(d) = tool["DateTimeOriginal"].as_str() {
            let ours = exif["datetime_original"].as_str().map(|x| x.replace('-', ":").replace('T', " "));
            if ours.as_deref() != Some(d) {
                differ.push(format!("datetime {ours:?} vs {d}"));
            }
        }
        for (ours, theirs) in [("lat", "GPSLatitude"), ("lon", "GPSLongitude")] {
            if let Some(b) = tool[theirs].as_f64() {
                let a = exif["gps"][ours].as_f64().unwrap_or(f64::NAN);
                if (a - b).abs() >= 1e-5 {
                    differ.push(format!("{ours} {a} vs {b}"));
                }
            }
        }
        if !differ.is_empty() {
            mismatches.push(format!("{name}: {}", differ.join("; ")));
        }
        exif_checked += 1;

        // Thumbnails by SSIM against ffmpeg's area-averaged scaling to the same size, for the
        // images shown as stored (orientation 1 or none) in formats ffmpeg decodes.
        if tool["Orientation"].as_u64().unwrap_or(1) != 1 || !name.ends_with(".jpg") {
            continue;
        }
        let t = run(&node, &id, json!({"op": "thumbnail", "sizes": [256], "format": "png"})).await;
        assert_eq!(t["state"], "succeeded", "{name}: {t}");
        let o = &t["result"]["outputs"][0];
        let ours = content(&node, o["id"].as_str().unwrap()).await;
        let dir = tempfile::tempdir().unwrap();
        let reference = dir.path().join("ref.png");
        // Area averaging when shrinking, bilinear (Loom's triangle filter) when enlarging.
        let enlarging = o["width"].as_u64() > tool["ImageWidth"].as_u64();
        let flags = if enlarging { "bilinear" } else { "area" };
        let scale = format!("scale={}:{}:flags={flags}", o["width"], o["height"]);
        let ok = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-y", "-i"])
            .arg(&path)
            .args(["-vf", &scale, "-frames:v", "1"])
            .arg(&reference)
            .status()
            .unwrap();
        if !ok.success() {
            continue; // ffmpeg cannot decode it (e.g. an odd sampling); Loom did
        }
        let (score, psnr) = ssim(&ours, &std::fs::read(&reference).unwrap());
        ssims.push((name.clone(), score, psnr));
    }
    eprintln!(
        "piexif corpus: EXIF checked on {exif_checked} images, differing from exiftool: {mismatches:?}; thumbnail SSIM vs ffmpeg: {ssims:?}"
    );
    assert!(mismatches.is_empty(), "EXIF differs from exiftool -n: {mismatches:#?}");
    assert!(exif_checked >= 12, "checked {exif_checked}");
    assert!(ssims.len() >= 8, "{ssims:?}");
    // On flat images SSIM's luminance term is dominated by its constants (one level of
    // difference in a channel near 0 gives 0.7); those must instead be within 40 dB PSNR.
    let below: Vec<_> = ssims.iter().filter(|(_, s, p)| *s < 0.95 && *p < 40.0).collect();
    assert!(below.is_empty(), "thumbnails with SSIM < 0.95 (and PSNR < 40 dB) against ffmpeg: {below:?}");
}

/// w3m's rendering of an HTML file as text (the oracle of `text` on HTML), read in `charset`
/// (w3m's own detection of a declared charset is unreliable, so the test says it).
fn w3m_text(path: &std::path::Path, charset: &str) -> String {
    let out = Command::new("w3m")
        .args(["-dump", "-T", "text/html", "-O", "UTF-8", "-cols", "200", "-I", charset])
        .arg(path)
        .output();
    let out = out.expect("w3m is installed by scripts/infra.sh");
    assert!(out.status.success(), "w3m: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `text` on HTML against `w3m -dump`: the pages `pydoc -w` writes for 24 standard-library
/// modules (tables, `<font>`, entities, `<pre>`), plus pages in windows-1252 and Shift_JIS that
/// declare their charset, one that does not, and one whose scripts and styles hold markup.
/// Token sets (lowercased alphanumeric runs) are compared by Jaccard index per document.
#[tokio::test]
async fn html_text_agrees_with_w3m() {
    let node = LoomNode::start_ready("files-html", NodeOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let modules = [
        "json",
        "collections",
        "argparse",
        "pathlib",
        "re",
        "string",
        "textwrap",
        "csv",
        "heapq",
        "bisect",
        "functools",
        "datetime",
        "email",
        "http",
        "urllib",
        "logging",
        "unittest",
        "fractions",
        "statistics",
        "shutil",
        "tempfile",
        "zipfile",
        "difflib",
        "calendar",
    ];
    let out = Command::new(infra::python()).args(["-m", "pydoc", "-w"]).args(modules).current_dir(dir.path()).output();
    assert!(out.expect("pydoc").status.success());
    // (file, bytes, title, the charset it declares — w3m reads it in that one).
    let crafted: [(&str, Vec<u8>, &str, &str); 4] = [
        (
            "latin.html",
            b"<html><head><meta charset=\"windows-1252\"><title>Caf\xe9</title></head><body><p>Caf\xe9 cr\xe8me br\xfbl\xe9e \x96 \x80 5</p></body></html>".to_vec(),
            "Caf\u{e9}",
            "windows-1252",
        ),
        (
            "sjis.html",
            b"<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=Shift_JIS\"><title>\x93\xfa\x96\x7b</title></head><body><p>\x93\xfa\x96\x7b\x8c\xea</p><p>Tokyo</p></body></html>".to_vec(),
            "日本",
            "Shift_JIS",
        ),
        // No declaration and not UTF-8: windows-1252, the standard's fallback (checked below).
        ("undeclared.html", b"<!DOCTYPE html><p>na\xefve fa\xe7ade</p>".to_vec(), "", "windows-1252"),
        (
            "scripted.html",
            b"<!doctype html><html><head><title>S</title><style>p::before { content: '<b>no</b>' }</style></head>\
<body><script>var s = '<p>hidden</p>'; if (1 < 2) {}</script><h1>Visible &amp; kept</h1>\
<ul><li>one</li><li>two</li></ul><table><tr><td>a1</td><td>b1</td></tr></table><noscript>x</noscript></body></html>"
                .to_vec(),
            "S",
            "UTF-8",
        ),
    ];
    for (name, bytes, _, _) in &crafted {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let mut files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 26, "pydoc wrote {} pages", files.len());
    let mut scores = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(path).unwrap();
        let (s, f) = upload(&node, bytes.clone(), "text/html").await;
        assert_eq!(s, 201, "{name}: {f}");
        assert_eq!(f["media_type"], "text/html", "{name} sniffed as HTML: {f}");
        let t = run(&node, f["id"].as_str().unwrap(), json!({"op": "text"})).await;
        assert_eq!(t["state"], "succeeded", "{name}: {t}");
        let ours = t["result"]["pages"][0]["text"].as_str().unwrap_or_default().to_owned();
        let known = crafted.iter().find(|(n, ..)| *n == name);
        let theirs = tokens(&w3m_text(path, known.map_or("UTF-8", |k| k.3)));
        let mine = tokens(&ours);
        let union = theirs.union(&mine).count().max(1);
        let jaccard = theirs.intersection(&mine).count() as f64 / union as f64;
        if let Some((_, _, title, _)) = known {
            if !title.is_empty() {
                assert_eq!(t["result"]["metadata"]["title"], *title, "{name}: title");
            }
            assert!(jaccard >= 0.99, "{name}: {jaccard:.3}: ours {ours:?} vs w3m {theirs:?}");
        }
        scores.push((jaccard, name));
    }
    let undeclared = std::fs::read(dir.path().join("undeclared.html")).unwrap();
    let (_, f) = upload(&node, undeclared, "text/html").await;
    let t = run(&node, f["id"].as_str().unwrap(), json!({"op": "text"})).await;
    assert_eq!(t["result"]["pages"][0]["text"], "na\u{ef}ve fa\u{e7}ade", "{t}");
    assert_eq!(t["result"]["metadata"]["encoding"], "windows-1252", "{t}");
    let scripted = std::fs::read(dir.path().join("scripted.html")).unwrap();
    let (_, f) = upload(&node, scripted, "text/html").await;
    let t = run(&node, f["id"].as_str().unwrap(), json!({"op": "text"})).await;
    assert_eq!(t["result"]["pages"][0]["text"], "Visible & kept\none\ntwo\na1\tb1\nx", "{t}");
    let m = run(&node, f["id"].as_str().unwrap(), json!({"op": "metadata"})).await;
    assert_eq!(m["result"]["metadata"]["encoding"], "UTF-8", "{m}");

    scores.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mean = scores.iter().map(|s| s.0).sum::<f64>() / scores.len() as f64;
    eprintln!(
        "html vs w3m: {} documents, mean Jaccard {mean:.3}, lowest {:?}",
        scores.len(),
        &scores[..scores.len().min(5)]
    );
    assert!(mean >= 0.95, "mean Jaccard {mean:.3}");
    assert!(scores[0].0 >= 0.9, "lowest {:?}", scores[0]);
}
