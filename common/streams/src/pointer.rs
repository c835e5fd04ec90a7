//! A JSON pointer (RFC 6901) split and unescaped once, at compile time of a spec, so a lookup
//! per record walks ready tokens instead of `Value::pointer`'s split and two `replace`
//! allocations per token. Same answers as `Value::pointer` (the tests compare them).

use serde_json::Value;

/// `Default` is the empty pointer: the whole value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pointer {
    tokens: Vec<String>,
}

impl Pointer {
    /// `p` is `""` (the whole value) or starts with `/`; anything else never resolves, as
    /// with `Value::pointer`.
    pub fn new(p: &str) -> Pointer {
        if p.is_empty() {
            return Pointer { tokens: Vec::new() };
        }
        let Some(rest) = p.strip_prefix('/') else {
            // An unresolvable pointer: a token no object key or index can equal.
            return Pointer { tokens: vec!["\u{0}invalid".into(), String::new()] };
        };
        Pointer { tokens: rest.split('/').map(|t| t.replace("~1", "/").replace("~0", "~")).collect() }
    }

    pub fn get<'a>(&self, mut v: &'a Value) -> Option<&'a Value> {
        for t in &self.tokens {
            v = match v {
                Value::Object(m) => m.get(t.as_str())?,
                Value::Array(a) => a.get(index(t)?)?,
                _ => return None,
            };
        }
        Some(v)
    }
}

/// An array index as RFC 6901 writes it: digits, no leading zero (except `0` itself).
fn index(t: &str) -> Option<usize> {
    if t.is_empty() || (t.len() > 1 && t.starts_with('0')) || t.starts_with('+') {
        return None;
    }
    t.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_like_value_pointer() {
        let doc = json!({"a": {"b/c": [10, {"~d": true}]}, "": 1, "e": null, "01": 2});
        for p in [
            "",
            "/a",
            "/a/b~1c",
            "/a/b~1c/0",
            "/a/b~1c/1/~0d",
            "/a/b~1c/01",
            "/a/b~1c/2",
            "/",
            "/e",
            "/e/x",
            "/01",
            "x",
            "/a/b~1c/-",
        ] {
            assert_eq!(Pointer::new(p).get(&doc), doc.pointer(p), "{p}");
        }
    }
}
