//! Bundles the repository's manifests into the binary, so `candor` knows the published models
//! wherever it is installed.

use std::{
    env, fs,
    path::{Path, PathBuf},
};

fn main() {
    // The commit `candor bench` reports as its build; rebuilt when HEAD moves.
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        let git_dir = PathBuf::from(git_dir);
        let branch = git(&["symbolic-ref", "-q", "HEAD"]);
        let watched = [
            Some("HEAD".to_string()),
            branch,
            Some("packed-refs".to_string()),
        ];
        // Only files that exist: cargo treats a missing one as always changed.
        for p in watched.into_iter().flatten().map(|p| git_dir.join(p)) {
            if p.is_file() {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        }
    }
    println!("cargo:rustc-env=CANDOR_COMMIT={commit}");
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("../../manifests");
    // The manifests, and the family profiles they name (`families/`), bundled alike.
    let mut out = bundle("BUNDLED", &dir);
    out.push_str(&bundle("BUNDLED_PROFILES", &dir.join("families")));
    fs::write(
        PathBuf::from(env::var("OUT_DIR").unwrap()).join("bundled_manifests.rs"),
        out,
    )
    .unwrap();
}

/// `pub static NAME: &[(stem, text)]` for every `*.toml` in `dir`, sorted by stem.
fn bundle(name: &str, dir: &Path) -> String {
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut entries: Vec<(String, PathBuf)> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
                .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
                .collect()
        })
        .unwrap_or_default();
    entries.sort();
    let mut out = format!("pub static {name}: &[(&str, &str)] = &[\n");
    for (id, path) in &entries {
        println!("cargo:rerun-if-changed={}", path.display());
        let abs = path.canonicalize().unwrap();
        out.push_str(&format!(
            "    ({id:?}, include_str!({:?})),\n",
            abs.display().to_string()
        ));
    }
    out.push_str("];\n");
    out
}
