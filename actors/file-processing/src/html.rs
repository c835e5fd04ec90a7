//! Text from HTML (pure): the document's encoding decided the way a browser's prescan does, the
//! bytes tokenized by html5ever's spec tokenizer, and the visible text laid out as lines.
//!
//! - Encoding: a byte-order mark, else a `charset` declared in the first 1,024 bytes
//!   (`<meta charset>` or `http-equiv` content), else UTF-8 when the bytes are valid UTF-8,
//!   else windows-1252 (the HTML standard's fallback). Decoding never fails: bad sequences
//!   become U+FFFD, and the result reports the encoding used.
//! - Text: character data outside `<head>` and outside elements that render nothing
//!   (`script`, `style`, `template`, `iframe`, `object`, `select`, `canvas`; `noscript` is
//!   shown, as to a reader without scripts);
//!   the tokenizer is switched into the raw-text states the tree builder would use, so a `<`
//!   inside a script never leaks text. Block elements and `<br>` end lines, table cells are
//!   separated by tabs, runs of white space collapse to one space except inside `<pre>`.
//! - Metadata: `<title>`, `<html lang>`, `<meta name=description>`, the encoding.
//!
//! Entities are decoded by the tokenizer. Nothing here executes or fetches anything.

use std::cell::RefCell;

use html5ever::tendril::StrTendril;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{
    BufferQueue, CharacterTokens, EndTag, NullCharacterToken, StartTag, TagToken, Token, TokenSink, TokenSinkResult,
    Tokenizer, TokenizerOpts,
};

/// What an HTML document reads as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HtmlText {
    pub text: String,
    pub title: Option<String>,
    pub lang: Option<String>,
    pub description: Option<String>,
    pub encoding: &'static str,
}

/// Elements whose content is never rendered as text.
/// `noscript` is shown: this reader runs no scripts, so it sees what a browser without
/// scripting shows (as w3m and lynx do).
const HIDDEN: &[&str] = &["script", "style", "template", "iframe", "object", "select", "canvas"];
/// What `<head>` holds; any other start tag (or visible text) ends an unclosed head.
const HEAD_CONTENT: &[&str] = &["base", "link", "meta", "noscript", "script", "style", "template", "title"];
/// Elements that start and end a line.
const BLOCKS: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "body",
    "caption",
    "dd",
    "details",
    "dialog",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hgroup",
    "hr",
    "html",
    "legend",
    "li",
    "main",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "summary",
    "table",
    "tbody",
    "tfoot",
    "thead",
    "tr",
    "ul",
];

/// The encoding of `bytes`, per the rules above.
pub fn encoding_of(bytes: &[u8]) -> &'static encoding_rs::Encoding {
    if let Some((enc, _)) = encoding_rs::Encoding::for_bom(bytes) {
        return enc;
    }
    if let Some(enc) = declared_charset(&bytes[..bytes.len().min(1024)]) {
        // A page declaring UTF-16 in ASCII text cannot be UTF-16 (the standard's rule).
        if enc == encoding_rs::UTF_16LE || enc == encoding_rs::UTF_16BE {
            return encoding_rs::UTF_8;
        }
        return enc;
    }
    if std::str::from_utf8(bytes).is_ok() { encoding_rs::UTF_8 } else { encoding_rs::WINDOWS_1252 }
}

/// A `charset=` label in the prescanned bytes (ASCII-case-insensitive), if it names an encoding.
fn declared_charset(head: &[u8]) -> Option<&'static encoding_rs::Encoding> {
    let lower: Vec<u8> = head.iter().map(u8::to_ascii_lowercase).collect();
    let mut from = 0;
    while let Some(i) = find(&lower[from..], b"charset") {
        let mut j = from + i + b"charset".len();
        while lower.get(j).is_some_and(u8::is_ascii_whitespace) {
            j += 1;
        }
        if lower.get(j) == Some(&b'=') {
            j += 1;
            while lower.get(j).is_some_and(|b| b.is_ascii_whitespace() || *b == b'"' || *b == b'\'') {
                j += 1;
            }
            let end = lower[j..]
                .iter()
                .position(|b| b.is_ascii_whitespace() || matches!(b, b'"' | b'\'' | b';' | b'>' | b'/'))
                .map_or(lower.len(), |k| j + k);
            if let Some(enc) = encoding_rs::Encoding::for_label(&lower[j..end]) {
                return Some(enc);
            }
        }
        from = j.max(from + i + 1);
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[derive(Default)]
struct State {
    out: String,
    /// Depth inside elements that render nothing.
    hidden: usize,
    in_head: bool,
    pre: usize,
    in_title: bool,
    title: String,
    lang: Option<String>,
    description: Option<String>,
    /// A space is owed before the next visible character.
    space: bool,
}

impl State {
    fn newline(&mut self) {
        self.space = false;
        if !self.out.is_empty() && !self.out.ends_with('\n') {
            self.out.push('\n');
        }
    }

    fn chars(&mut self, s: &str) {
        if self.in_title {
            self.title.push_str(s);
            return;
        }
        if self.in_head {
            if s.chars().all(char::is_whitespace) {
                return;
            }
            self.in_head = false;
        }
        if self.hidden > 0 {
            return;
        }
        if self.pre > 0 {
            self.out.push_str(s);
            return;
        }
        for c in s.chars() {
            if c.is_whitespace() {
                self.space = true;
            } else {
                if self.space && !self.out.is_empty() && !self.out.ends_with(['\n', '\t']) {
                    self.out.push(' ');
                }
                self.space = false;
                self.out.push(c);
            }
        }
    }
}

struct Sink(RefCell<State>);

fn attr<'a>(tag: &'a html5ever::tokenizer::Tag, name: &str) -> Option<&'a StrTendril> {
    tag.attrs.iter().find(|a| &*a.name.local == name).map(|a| &a.value)
}

impl TokenSink for Sink {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        let mut s = self.0.borrow_mut();
        match token {
            CharacterTokens(t) => s.chars(&t),
            NullCharacterToken => {}
            TagToken(tag) => {
                let name: &str = &tag.name;
                match tag.kind {
                    StartTag => {
                        if name == "html" && s.lang.is_none() {
                            s.lang = attr(&tag, "lang").map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
                        }
                        if name == "meta" && attr(&tag, "name").is_some_and(|n| n.eq_ignore_ascii_case("description")) {
                            s.description = attr(&tag, "content").map(|v| v.trim().to_owned());
                        }
                        if name == "head" {
                            s.in_head = true;
                            return TokenSinkResult::Continue;
                        }
                        if s.in_head && !HEAD_CONTENT.contains(&name) {
                            s.in_head = false;
                        }
                        if name == "title" && s.title.is_empty() && s.hidden == 0 {
                            s.in_title = !tag.self_closing;
                            return TokenSinkResult::RawData(RawKind::Rcdata);
                        }
                        if BLOCKS.contains(&name) {
                            s.newline();
                        }
                        match name {
                            "br" => {
                                s.space = false;
                                s.out.push('\n');
                            }
                            "td" | "th" if !s.out.ends_with('\n') && !s.out.is_empty() => {
                                s.space = false;
                                s.out.push('\t');
                            }
                            "pre" | "textarea" | "listing" => s.pre += 1,
                            _ => {}
                        }
                        if HIDDEN.contains(&name) && !tag.self_closing {
                            s.hidden += 1;
                        }
                        // The raw-text states the tree builder switches to (HTML §13.2.6.4).
                        return match name {
                            "script" => TokenSinkResult::RawData(RawKind::ScriptData),
                            "style" | "xmp" | "iframe" | "noembed" | "noframes" => {
                                TokenSinkResult::RawData(RawKind::Rawtext)
                            }
                            "textarea" => TokenSinkResult::RawData(RawKind::Rcdata),
                            "plaintext" => TokenSinkResult::Plaintext,
                            _ => TokenSinkResult::Continue,
                        };
                    }
                    EndTag => {
                        if name == "title" && s.in_title {
                            s.in_title = false;
                        }
                        if name == "head" {
                            s.in_head = false;
                        }
                        if HIDDEN.contains(&name) {
                            s.hidden = s.hidden.saturating_sub(1);
                        }
                        if matches!(name, "pre" | "textarea" | "listing") {
                            s.pre = s.pre.saturating_sub(1);
                        }
                        if BLOCKS.contains(&name) {
                            s.newline();
                        }
                    }
                }
            }
            _ => {}
        }
        TokenSinkResult::Continue
    }
}

/// The text of an HTML document.
pub fn text(bytes: &[u8]) -> HtmlText {
    let encoding = encoding_of(bytes);
    let (decoded, _, _) = encoding.decode(bytes);
    let tokenizer = Tokenizer::new(Sink(RefCell::new(State::default())), TokenizerOpts::default());
    let queue = BufferQueue::default();
    queue.push_back(StrTendril::from_slice(&decoded));
    let _ = tokenizer.feed(&queue);
    tokenizer.end();
    let s = tokenizer.sink.0.into_inner();
    let lines: Vec<&str> = s.out.lines().map(str::trim_end).collect();
    let mut text = lines.join("\n").trim().to_owned();
    text.truncate(text.trim_end().len());
    let squash = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
    HtmlText {
        text,
        title: Some(squash(&s.title)).filter(|t| !t.is_empty()),
        lang: s.lang,
        description: s.description.map(|d| squash(&d)).filter(|d| !d.is_empty()),
        encoding: encoding.name(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visible_text_laid_out_as_lines() {
        let cases: &[(&str, &str)] = &[
            ("<p>Hello <b>world</b></p><p>again</p>", "Hello world\nagain"),
            ("<script>if (a<b) { document.write('<p>no</p>') }</script><p>yes</p>", "yes"),
            ("<style>p { color: red }</style>shown", "shown"),
            ("<head><title>T</title><meta name=x></head><body>b</body>", "b"),
            ("<head><title>T</title><body>no end of head", "no end of head"),
            ("<head><meta charset=utf-8>text ends the head", "text ends the head"),
            ("a<br>b<br/>c", "a\nb\nc"),
            ("<pre>  two  spaces\n kept</pre>", "two  spaces\n kept"),
            ("<table><tr><td>1</td><td>2</td></tr><tr><td>3</td><td>4</td></tr></table>", "1\t2\n3\t4"),
            ("fish &amp; chips &lt;3 &eacute;", "fish & chips <3 é"),
            ("<ul><li>one</li><li>two</li></ul>", "one\ntwo"),
            ("<template><p>t</p></template><noscript><p>shown</p></noscript>ok", "shown\nok"),
            ("<!-- comment --><p>x</p>", "x"),
            ("   \n\t  ", ""),
            ("<p>unclosed <div>nested", "unclosed\nnested"),
            ("<textarea><b>raw</b></textarea>", "<b>raw</b>"),
        ];
        for (html, want) in cases {
            assert_eq!(text(html.as_bytes()).text, *want, "{html}");
        }
    }

    #[test]
    fn metadata_and_encodings() {
        let doc = "<html lang=de><head><title> Über  uns </title><meta name=\"Description\" content=\" Wer wir sind \"></head><body>x</body></html>";
        let t = text(doc.as_bytes());
        assert_eq!(t.title.as_deref(), Some("Über uns"));
        assert_eq!(t.lang.as_deref(), Some("de"));
        assert_eq!(t.description.as_deref(), Some("Wer wir sind"));
        assert_eq!(t.encoding, "UTF-8");

        let cases: &[(&[u8], &str, &str)] = &[
            (b"<meta charset=\"iso-8859-1\"><p>caf\xe9</p>", "windows-1252", "caf\u{e9}"),
            (
                b"<meta http-equiv=Content-Type content='text/html; charset=Shift_JIS'>\x93\xfa\x96\x7b",
                "Shift_JIS",
                "日本",
            ),
            (b"<p>caf\xe9 sans declaration</p>", "windows-1252", "caf\u{e9} sans declaration"),
            (b"\xef\xbb\xbf<p>bom</p>", "UTF-8", "bom"),
            (b"<meta charset=utf-16><p>ascii</p>", "UTF-8", "ascii"),
            (b"<meta charset=nonsense><p>\xc3\xa9</p>", "UTF-8", "\u{e9}"),
        ];
        for (bytes, enc, want) in cases {
            let t = text(bytes);
            assert_eq!((t.encoding, t.text.as_str()), (*enc, *want), "{}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn hostile_markup_is_bounded_and_never_panics() {
        let deep = "<div>".repeat(100_000) + "deep" + &"</div>".repeat(100_000);
        assert_eq!(text(deep.as_bytes()).text, "deep");
        let unclosed_script = "<p>before</p><script>never closed <p>hidden";
        assert_eq!(text(unclosed_script.as_bytes()).text, "before");
        let garbage: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let _ = text(&garbage);
        assert_eq!(text(b"<title>only title").title.as_deref(), Some("only title"));
    }
}
