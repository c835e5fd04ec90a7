//! Build script: records the git commit (or `LOOM_GIT_COMMIT` when building outside a git
//! checkout, as in Docker) and the build profile for `/version`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=LOOM_GIT_COMMIT");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for path in [".git/HEAD", ".git/refs/heads"] {
        let p = root.join(path);
        if p.exists() {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
    let commit = std::env::var("LOOM_GIT_COMMIT").ok().filter(|c| !c.is_empty()).or_else(|| {
        Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .current_dir(&root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    });
    println!("cargo:rustc-env=LOOM_GIT_COMMIT={}", commit.unwrap_or_else(|| "unknown".into()));
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=LOOM_BUILD_PROFILE={profile}");
}
