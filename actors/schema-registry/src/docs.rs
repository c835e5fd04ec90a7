//! Generated documentation of a subject version: a fields table (path, type, required,
//! constraints, description, examples) and the changelog, as HTML (default) or Markdown
//! (`Accept: text/markdown`). Pure rendering; every schema-provided string is escaped.

use serde_json::Value;

use crate::evolution::{Diff, Field};

/// One changelog entry: the version and its diff from the previous one.
pub struct Step<'a> {
    pub version: i32,
    pub id: i32,
    pub diff: Option<&'a Diff>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn md(s: &str) -> String {
    s.replace('<', "&lt;").replace('|', "\\|").replace('\n', " ")
}

fn examples(f: &Field) -> String {
    f.examples.iter().map(Value::to_string).collect::<Vec<_>>().join(", ")
}

pub fn html(
    subject: &str,
    version: i32,
    id: i32,
    title: Option<&str>,
    fields: &[Field],
    history: &[Step<'_>],
) -> String {
    let mut out = String::new();
    out.push_str("<!doctype html><html><head><meta charset=\"utf-8\">");
    out.push_str(&format!("<title>{} v{version}</title>", esc(subject)));
    out.push_str("<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}.breaking{color:#b00}</style></head><body>");
    out.push_str(&format!("<h1>{}</h1><p>version {version} · schema id {id}</p>", esc(subject)));
    if let Some(t) = title {
        out.push_str(&format!("<p>{}</p>", esc(t)));
    }
    out.push_str("<h2>Fields</h2><table><tr><th>Field</th><th>Type</th><th>Required</th><th>Constraints</th><th>Description</th><th>Examples</th></tr>");
    for f in fields {
        out.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&f.path),
            esc(&f.kind),
            if f.required { "yes" } else { "no" },
            esc(&f.constraints.join("; ")),
            esc(f.description.as_deref().unwrap_or("")),
            esc(&examples(f))
        ));
    }
    out.push_str("</table><h2>Changelog</h2><ul>");
    for step in history {
        out.push_str(&format!("<li>v{} (id {})", step.version, step.id));
        match step.diff {
            None => out.push_str(": first version"),
            Some(d) => {
                if !d.breaking.is_empty() {
                    out.push_str(" <span class=\"breaking\">breaking</span>");
                }
                out.push_str("<ul>");
                for c in &d.changes {
                    out.push_str(&format!("<li>{} <code>{}</code>: {}</li>", c.kind, esc(&c.path), esc(&c.detail)));
                }
                out.push_str("</ul>");
            }
        }
        out.push_str("</li>");
    }
    out.push_str("</ul></body></html>\n");
    out
}

pub fn markdown(
    subject: &str,
    version: i32,
    id: i32,
    title: Option<&str>,
    fields: &[Field],
    history: &[Step<'_>],
) -> String {
    let mut out = format!("# {subject}\n\nversion {version} · schema id {id}\n\n");
    if let Some(t) = title {
        out.push_str(&format!("{}\n\n", md(t)));
    }
    out.push_str(
        "## Fields\n\n| Field | Type | Required | Constraints | Description | Examples |\n|---|---|---|---|---|---|\n",
    );
    for f in fields {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} |\n",
            md(&f.path),
            md(&f.kind),
            if f.required { "yes" } else { "no" },
            md(&f.constraints.join("; ")),
            md(f.description.as_deref().unwrap_or("")),
            md(&examples(f))
        ));
    }
    out.push_str("\n## Changelog\n\n");
    for step in history {
        match step.diff {
            None => out.push_str(&format!("- v{} (id {}): first version\n", step.version, step.id)),
            Some(d) => {
                let tag = if d.breaking.is_empty() { "" } else { " **breaking**" };
                out.push_str(&format!("- v{} (id {}){tag}\n", step.version, step.id));
                for c in &d.changes {
                    out.push_str(&format!("  - {} `{}`: {}\n", c.kind, md(&c.path), md(&c.detail)));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::evolution::{diff, fields};

    #[test]
    fn html_escapes_and_markdown_tables_render() {
        let s = json!({"type": "object", "properties": {"note": {"type": "string", "description": "<script>alert(1)</script> | pipe"}}});
        let f = fields(&s);
        let d = diff(&json!({"type": "object"}), &s);
        let steps = [Step { version: 1, id: 1, diff: None }, Step { version: 2, id: 3, diff: Some(&d) }];
        let h = html("s<x>", 2, 3, Some("Notes"), &f, &steps);
        assert!(!h.contains("<script>") && h.contains("&lt;script&gt;") && h.contains("s&lt;x&gt;"));
        let m = markdown("s", 2, 3, None, &f, &steps);
        assert!(m.contains("| `/note` | string | no |  | &lt;script>alert(1)&lt;/script> \\| pipe |  |"), "{m}");
        assert!(m.contains("- v2 (id 3)"));
    }
}
