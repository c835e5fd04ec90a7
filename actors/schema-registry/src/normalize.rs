//! Schema identity. Confluent gives identical schemas one global id; "identical" here means the
//! same schema type, the same canonical JSON (object keys sorted, insignificant whitespace
//! removed) and the same references. The fingerprint is the SHA-256 of that canonical form.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::model::Reference;

/// Canonical JSON text: keys sorted recursively, no whitespace. Sorted explicitly, so it holds
/// whether or not some dependency turns on serde_json's `preserve_order`.
pub fn canonical(schema: &Value) -> String {
    let mut out = String::new();
    write(schema, &mut out);
    out
}

fn write(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

pub fn fingerprint(schema_type: &str, schema: &Value, references: &[Reference]) -> String {
    let mut h = Sha256::new();
    h.update(schema_type.as_bytes());
    h.update([0]);
    h.update(canonical(schema).as_bytes());
    for r in references {
        h.update([0]);
        h.update(format!("{}\u{1}{}\u{1}{}", r.name, r.subject, r.version).as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn key_order_and_whitespace_do_not_matter_but_content_does() {
        let a: Value = serde_json::from_str(r#"{"type":"object","properties":{"a":{"type":"string"}}}"#).unwrap();
        let b: Value =
            serde_json::from_str("{ \"properties\": {\"a\": {\"type\": \"string\"}},\n \"type\": \"object\" }")
                .unwrap();
        let c = json!({"type": "object", "properties": {"a": {"type": "number"}}});
        assert_eq!(fingerprint("JSON", &a, &[]), fingerprint("JSON", &b, &[]));
        assert_ne!(fingerprint("JSON", &a, &[]), fingerprint("JSON", &c, &[]));
        let r = Reference { name: "x.json".into(), subject: "x".into(), version: 1 };
        assert_ne!(fingerprint("JSON", &a, &[]), fingerprint("JSON", &a, &[r]));
    }
}
