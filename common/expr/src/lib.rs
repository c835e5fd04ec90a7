//! CEL expressions as every Loom service takes them (the router's rules and replay filters, the
//! enrichment rules): one compiler with the same limits and error positions everywhere, one
//! standard environment per thread, and the JSON pointer writes rule actions make. Pure: no I/O.
//!
//! Limits (checked before the recursive CEL parser sees the text): at most [`MAX_EXPRESSION`]
//! bytes and [`MAX_NESTING`] levels of brackets.

use cel::{Context, Program};
use serde_json::Value;

pub use cel;

/// Longest expression source accepted.
pub const MAX_EXPRESSION: usize = 4096;
/// Deepest bracket nesting accepted.
pub const MAX_NESTING: i32 = 64;

/// Why an expression does not compile.
#[derive(Debug, Clone, PartialEq)]
pub struct ExprError {
    pub message: String,
    /// Line and column inside the expression, when the CEL parser gave one.
    pub position: Option<(isize, isize)>,
}

/// A compiled expression.
#[derive(Debug)]
pub struct Expr {
    program: Program,
    /// `true` / `false` literals, decided without a CEL scope.
    constant: Option<bool>,
}

impl Expr {
    pub fn compile(source: &str) -> Result<Expr, ExprError> {
        let err = |message: String| ExprError { message, position: None };
        if source.trim().is_empty() {
            return Err(err("empty expression".into()));
        }
        if source.len() > MAX_EXPRESSION {
            return Err(err(format!("expression longer than {MAX_EXPRESSION} bytes")));
        }
        let depth = source.chars().fold((0i32, 0i32), |(d, max), c| match c {
            '(' | '[' | '{' => (d + 1, max.max(d + 1)),
            ')' | ']' | '}' => (d - 1, max),
            _ => (d, max),
        });
        if depth.1 > MAX_NESTING {
            return Err(err(format!("expression nested more than {MAX_NESTING} levels")));
        }
        let constant = match source.trim() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        };
        Program::compile(source).map(|program| Expr { program, constant }).map_err(|e| match e.errors.first() {
            Some(first) => ExprError { message: first.msg.clone(), position: Some(first.pos) },
            None => err(e.to_string()),
        })
    }

    /// `Some(b)` for the literals `true` and `false`: no scope is needed to evaluate them.
    pub fn constant(&self) -> Option<bool> {
        self.constant
    }

    /// Evaluates in `scope` (built by the caller on [`with_root`]'s environment).
    pub fn eval(&self, scope: &Context<'_, '_>) -> Result<cel::Value, String> {
        match self.constant {
            Some(b) => Ok(cel::Value::Bool(b)),
            None => self.program.execute(scope).map_err(|e| e.to_string()),
        }
    }

    /// Evaluates to a boolean; anything else is an error naming what it was.
    pub fn test(&self, scope: &Context<'_, '_>) -> Result<bool, String> {
        match self.eval(scope)? {
            cel::Value::Bool(b) => Ok(b),
            other => Err(format!("evaluated to {other:?}, not a bool")),
        }
    }
}

thread_local! {
    /// The standard CEL environment, built once per thread: building it registers every
    /// standard function, far more work than evaluating an expression. Evaluations get child
    /// scopes of it.
    static ROOT: Context<'static, 'static> = Context::default();
}

/// Runs `f` with this thread's standard environment; scopes are `root.new_inner_scope()`.
pub fn with_root<R>(f: impl FnOnce(&Context<'static, 'static>) -> R) -> R {
    ROOT.with(f)
}

/// A scalar's text (for templates and headers); `None` for lists, maps, null, bytes.
pub fn scalar_text(v: &cel::Value) -> Option<String> {
    Some(match v {
        cel::Value::String(s) => s.to_string(),
        cel::Value::Int(i) => i.to_string(),
        cel::Value::UInt(u) => u.to_string(),
        cel::Value::Float(f) => f.to_string(),
        cel::Value::Bool(b) => b.to_string(),
        _ => return None,
    })
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// True for a pointer to a field below the root (`/device/id`), the only kind actions write.
pub fn field_pointer(p: &str) -> bool {
    p.starts_with('/') && p.len() > 1
}

/// Writes `value` at `path`; the parent must exist and be an object.
pub fn set_pointer(root: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let (parent, last) = path.rsplit_once('/').ok_or("not a pointer")?;
    let target = if parent.is_empty() { Some(root) } else { root.pointer_mut(parent) };
    match target {
        Some(Value::Object(m)) => {
            m.insert(unescape(last), value);
            Ok(())
        }
        Some(_) => Err(format!("{parent} is not an object")),
        None => Err(format!("{parent} does not exist")),
    }
}

/// Writes `value` at `path`, creating missing (or null) parents as objects; a parent that is
/// another kind of value is an error, never overwritten.
pub fn set_pointer_creating(root: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let rest = path.strip_prefix('/').ok_or("not a pointer")?;
    let tokens: Vec<String> = rest.split('/').map(unescape).collect();
    let (last, parents) = tokens.split_last().ok_or("not a pointer")?;
    let mut at = root;
    for (i, t) in parents.iter().enumerate() {
        if at.is_null() {
            *at = Value::Object(Default::default());
        }
        at = match at {
            Value::Object(m) => m.entry(t.clone()).or_insert(Value::Null),
            _ => return Err(format!("/{} is not an object", tokens[..i].join("/"))),
        };
    }
    if at.is_null() {
        *at = Value::Object(Default::default());
    }
    match at {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        _ => Err(format!("/{} is not an object", parents.join("/"))),
    }
}

/// Removes and returns the value at `path`, if its parent is an object holding it.
pub fn remove_pointer(root: &mut Value, path: &str) -> Option<Value> {
    let (parent, last) = path.rsplit_once('/')?;
    let target = if parent.is_empty() { Some(root) } else { root.pointer_mut(parent) };
    match target {
        Some(Value::Object(m)) => m.remove(&unescape(last)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn compile_limits_and_positions() {
        let deep = format!("{}1{}", "(".repeat(65), ")".repeat(65));
        let long = "1 + ".repeat(1100) + "1";
        let cases: [(&str, Result<(), &str>); 6] = [
            ("event.x > 1", Ok(())),
            ("true", Ok(())),
            ("", Err("empty expression")),
            ("event.x >", Err("")),
            (&deep, Err("nested more than 64")),
            (&long, Err("longer than 4096")),
        ];
        for (src, want) in cases {
            match (Expr::compile(src), want) {
                (Ok(_), Ok(())) => {}
                (Err(e), Err(part)) => assert!(e.message.contains(part), "{src}: {e:?}"),
                (got, want) => panic!("{src}: {:?} vs {want:?}", got.err()),
            }
        }
        assert!(Expr::compile("event.x >").unwrap_err().position.is_some());
        assert_eq!(Expr::compile(" true ").unwrap().constant(), Some(true));
    }

    #[test]
    fn evaluation_over_json() {
        let e = Expr::compile("event.temp > 30.0 && event.site == 'a'").unwrap();
        let run = |event: Value| {
            with_root(|root| {
                let mut s = root.new_inner_scope();
                s.add_variable("event", event).unwrap();
                e.test(&s)
            })
        };
        assert_eq!(run(json!({"temp": 31.5, "site": "a"})), Ok(true));
        assert_eq!(run(json!({"temp": 10.0, "site": "a"})), Ok(false));
        assert!(run(json!({"site": "a"})).is_err());
        let n = Expr::compile("1 + 1").unwrap();
        assert!(with_root(|root| n.test(&root.new_inner_scope())).unwrap_err().contains("not a bool"));
    }

    #[test]
    fn pointer_writes() {
        let cases = [
            (json!({"a": {}}), "/a/b", Ok(json!({"a": {"b": 1}})), Ok(json!({"a": {"b": 1}}))),
            (json!({}), "/a/b", Err(()), Ok(json!({"a": {"b": 1}}))),
            (json!({"a": null}), "/a/b", Err(()), Ok(json!({"a": {"b": 1}}))),
            (json!({"a": 3}), "/a/b", Err(()), Err(())),
            (json!({}), "/x~1y", Ok(json!({"x/y": 1})), Ok(json!({"x/y": 1}))),
        ];
        for (doc, path, plain, creating) in cases {
            let mut a = doc.clone();
            assert_eq!(set_pointer(&mut a, path, json!(1)).map(|_| a).map_err(|_| ()), plain, "{path}");
            let mut b = doc.clone();
            assert_eq!(set_pointer_creating(&mut b, path, json!(1)).map(|_| b).map_err(|_| ()), creating, "{path}");
        }
        let mut d = json!({"a": {"b": 1}});
        assert_eq!(remove_pointer(&mut d, "/a/b"), Some(json!(1)));
        assert_eq!(remove_pointer(&mut d, "/a/b"), None);
        assert!(field_pointer("/a") && !field_pointer("/") && !field_pointer("a"));
    }
}
