//! What a file is, from its first bytes (magic numbers by the `infer` crate, then a text check),
//! and whether the type the client declared contradicts it. Pure.

/// How many leading bytes the sniffer looks at.
pub const HEAD: usize = 8192;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sniffed {
    /// The media type the bytes say.
    pub media_type: String,
    /// The declared type (its essence, lowercased), when one was sent.
    pub declared: Option<String>,
    /// The declared type names another kind of file than the bytes.
    pub mismatch: bool,
}

/// Sniffs `head` (the first [`HEAD`] bytes, or the whole file if shorter).
pub fn sniff(head: &[u8], declared: Option<&str>) -> Sniffed {
    let media_type = match infer::get(head) {
        Some(t) => t.mime_type().to_owned(),
        None if html_signature(head) => "text/html".to_owned(),
        None if looks_like_text(head) => "text/plain".to_owned(),
        None => "application/octet-stream".to_owned(),
    };
    let declared = declared.map(essence).filter(|d| !d.is_empty());
    let mismatch = declared.as_deref().is_some_and(|d| {
        !matches!(d, "application/octet-stream" | "binary/octet-stream") && canonical(d) != canonical(&media_type)
    });
    Sniffed { media_type, declared, mismatch }
}

/// `Type/Subtype; charset=…` → `type/subtype`.
fn essence(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// Aliases clients send for the same type.
fn canonical(t: &str) -> &str {
    match t {
        "image/jpg" | "image/pjpeg" => "image/jpeg",
        "image/x-png" => "image/png",
        "audio/mp3" | "audio/x-mp3" => "audio/mpeg",
        "audio/x-wav" | "audio/wave" => "audio/wav",
        "application/x-pdf" => "application/pdf",
        "text/html" | "application/xhtml+xml" => "text/html",
        "text/plain" | "text/csv" | "text/markdown" | "application/json" => "text/plain",
        other => other,
    }
}

/// UTF-8 (a cut multi-byte sequence at the end allowed) without control characters other than
/// whitespace.
fn looks_like_text(head: &[u8]) -> bool {
    if head.is_empty() {
        return false;
    }
    let valid = match std::str::from_utf8(head) {
        Ok(s) => s,
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or(""),
        Err(_) => return false,
    };
    !valid.is_empty() && valid.chars().all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t' | '\u{c}'))
}

/// The WHATWG MIME Sniffing standard's HTML signatures (§7.1): after leading white space, one
/// of these tags (ASCII case-insensitive) followed by a space or `>`. Byte patterns, so an HTML
/// document in windows-1252 or Shift_JIS is HTML too, and a fragment starting `<div>` is one.
fn html_signature(head: &[u8]) -> bool {
    const TAGS: &[&[u8]] = &[
        b"<!doctype html",
        b"<html",
        b"<head",
        b"<script",
        b"<iframe",
        b"<h1",
        b"<div",
        b"<font",
        b"<table",
        b"<a",
        b"<style",
        b"<title",
        b"<b",
        b"<body",
        b"<br",
        b"<p",
        b"<!--",
    ];
    let start = head.iter().position(|b| !matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ')).unwrap_or(head.len());
    let rest = &head[start..];
    TAGS.iter().any(|tag| {
        rest.len() > tag.len() && rest[..tag.len()].eq_ignore_ascii_case(tag) && matches!(rest[tag.len()], b' ' | b'>')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    const JPEG: &[u8] = b"\xff\xd8\xff\xe0\0\x10JFIF\0";
    const PDF: &[u8] = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n";

    #[test]
    fn the_bytes_decide_and_contradictions_are_reported() {
        let cases: [(&[u8], Option<&str>, &str, bool); 17] = [
            (PNG, Some("image/png"), "image/png", false),
            (PNG, Some("IMAGE/PNG; foo=bar"), "image/png", false),
            (PNG, Some("image/x-png"), "image/png", false),
            (PNG, Some("image/jpeg"), "image/png", true),
            (JPEG, Some("image/jpg"), "image/jpeg", false),
            (PDF, Some("application/pdf"), "application/pdf", false),
            (PDF, Some("image/png"), "application/pdf", true),
            (PNG, Some("application/octet-stream"), "image/png", false),
            (PNG, None, "image/png", false),
            (b"hello, world\n", Some("text/plain; charset=utf-8"), "text/plain", false),
            (b"<!DOCTYPE html><html>", Some("text/html"), "text/html", false),
            (b"  <div class=x>fragment</div>", None, "text/html", false),
            (b"<HTML><p>caf\xe9 in windows-1252</p>", Some("text/html"), "text/html", false),
            (b"<!-- c --><p>x</p>", None, "text/html", false),
            (b"<bogus>not html</bogus>", None, "text/plain", false),
            (b"<pre>is text</pre>", None, "text/plain", false),
            (b"\0\x01\x02garbage", Some("image/png"), "application/octet-stream", true),
        ];
        for (head, declared, want, mismatch) in cases {
            let s = sniff(head, declared);
            assert_eq!((s.media_type.as_str(), s.mismatch), (want, mismatch), "{declared:?} {head:?}");
        }
    }

    #[test]
    fn text_cut_inside_a_multibyte_character_is_still_text() {
        let s = "città ".repeat(3);
        let cut = &s.as_bytes()[..s.len() - 2];
        assert_eq!(sniff(cut, None).media_type, "text/plain");
        assert_eq!(sniff(b"", None).media_type, "application/octet-stream");
    }
}
