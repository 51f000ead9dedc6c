//! `candor manifest init DIR`: a self-attested manifest from local files; `candor manifest
//! import hf:OWNER/REPO@COMMIT`: a manifest from what a Hugging Face repo publishes at a commit.

mod hub_api;
mod import;
mod profile;

use crate::args::ManifestCommand;
use crate::home::Home;
use crate::progress::Bars;
use anyhow::{Context, Result};
use candor_verify::Manifest;

pub fn run(home: &Home, cmd: &ManifestCommand) -> Result<()> {
    match cmd {
        ManifestCommand::Import {
            source,
            files,
            output,
            id,
            force,
        } => import::run(
            home,
            &import::ImportRequest {
                source,
                files,
                output: output.as_deref(),
                id: id.as_deref(),
                force: *force,
            },
        ),
        ManifestCommand::Init { dir, output, id } => {
            let id = match id {
                Some(id) => id.clone(),
                None => dir
                    .canonicalize()
                    .ok()
                    .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .unwrap_or_else(|| "model".into()),
            };
            let m = Manifest::self_attested_from_dir(dir, &id, &Bars::new("hashing"))?;
            let text = m.to_toml();
            match output {
                Some(path) => {
                    std::fs::write(path, &text)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!(
                        "candor: wrote a self-attested manifest for {} file(s) to {}; review its license and openness before relying on it",
                        m.files.len(),
                        path.display()
                    );
                }
                None => print!("{text}"),
            }
            Ok(())
        }
    }
}
