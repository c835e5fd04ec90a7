//! `tracing` subscriber setup: JSON lines (or pretty text) on stdout, filtered by `LOOM_LOG`, with
//! the node name stamped on every line. Request and service fields come from spans (`span.*`).

use std::io::{self, Write};

use loom_config::LogFormat;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Checks a filter string without installing anything (used by `loom config check`).
pub fn parse_filter(filter: &str) -> Result<EnvFilter, String> {
    EnvFilter::builder().parse(filter).map_err(|e| format!("`log.filter`: `{filter}` is not a valid filter: {e}"))
}

/// Installs the global subscriber. Call once, before anything logs.
pub fn init_logging(filter: &str, format: LogFormat, node: &str) -> Result<(), String> {
    let filter = parse_filter(filter)?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(true);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(NodeStamp::new(node))
            .try_init(),
        LogFormat::Pretty => builder.with_writer(io::stdout).try_init(),
    };
    result.map_err(|e| format!("cannot install the log subscriber: {e}"))
}

/// A writer that inserts `"node":"<name>",` after the opening brace of each JSON line, so every
/// line names its node without a span having to be entered on every task.
#[derive(Clone)]
struct NodeStamp {
    prefix: Vec<u8>,
}

impl NodeStamp {
    fn new(node: &str) -> Self {
        let name = serde_escape(node);
        NodeStamp { prefix: format!("{{\"node\":\"{name}\",").into_bytes() }
    }
}

/// Node names are validated to `[A-Za-z0-9._-]`, but escape anyway so a line is always JSON.
fn serde_escape(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).collect()
}

struct StampedLine<'a> {
    prefix: &'a [u8],
}

impl Write for StampedLine<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut out = io::stdout().lock();
        match buf.first() {
            Some(b'{') => {
                let mut line = Vec::with_capacity(buf.len() + self.prefix.len());
                line.extend_from_slice(self.prefix);
                line.extend_from_slice(&buf[1..]);
                out.write_all(&line)?;
            }
            _ => out.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stdout().flush()
    }
}

impl<'a> MakeWriter<'a> for NodeStamp {
    type Writer = StampedLine<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        StampedLine { prefix: &self.prefix }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked() {
        assert!(parse_filter("info,loom_http=debug").is_ok());
        let err = parse_filter("info,=[").unwrap_err();
        assert!(err.starts_with("`log.filter`"), "{err}");
    }

    #[test]
    fn node_names_are_sanitized() {
        assert_eq!(serde_escape("loom-1"), "loom-1");
        assert_eq!(serde_escape("a\"b\\c"), "abc");
    }
}
