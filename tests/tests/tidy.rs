//! Repository hygiene: every Rust file opens with a `//!` line saying what it is for, and no
//! file carries an absolute path of a developer machine.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(name.as_str(), "target" | ".git" | "data" | "node_modules") {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap()
}

#[test]
fn every_rust_file_starts_with_a_module_doc() {
    let mut files = Vec::new();
    rust_files(&root(), &mut files);
    assert!(files.len() > 20, "found only {} files", files.len());
    let missing: Vec<String> = files
        .iter()
        .filter(|f| !std::fs::read_to_string(f).unwrap().starts_with("//!"))
        .map(|f| f.strip_prefix(root()).unwrap().display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a leading //! doc line: {missing:?}");
}

#[test]
fn no_machine_specific_absolute_paths() {
    let mut files = Vec::new();
    rust_files(&root(), &mut files);
    for extra in ["cluster.toml", "docker-compose.yml", "scripts/test.sh", "scripts/infra.sh", ".ci/run", "README.md"] {
        files.push(root().join(extra));
    }
    let needles = ["/work/main", "/root/", "/home/"];
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for needle in needles {
            assert!(!text.contains(needle) || file.ends_with("tidy.rs"), "{} contains {needle}", file.display());
        }
    }
}

/// Every service route is registered through `routes!(handler)`, which reads the handler's
/// `#[utoipa::path]`: a plain axum `.route(…)` would serve a path the port's OpenAPI document
/// does not describe. The live half of this check is `tests/openapi.rs`.
#[test]
fn service_routes_are_registered_with_their_openapi_operation() {
    let mut files = Vec::new();
    for dir in ["actors", "common/http/src", "common/service/src"] {
        rust_files(&root().join(dir), &mut files);
    }
    let mut plain = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // Unit tests may build throwaway routers.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (n, line) in code.lines().enumerate() {
            // axum's registrations take the path literal first (`router.route(record, …)`
            // elsewhere is the event router's own method).
            if [".route(\"", ".nest(\"", ".route_service(\"", ".nest_service(\""].iter().any(|p| line.contains(p)) {
                plain.push(format!("{}:{}: {}", file.strip_prefix(root()).unwrap().display(), n + 1, line.trim()));
            }
        }
    }
    assert!(plain.is_empty(), "routes registered without an OpenAPI operation:\n{}", plain.join("\n"));
}
