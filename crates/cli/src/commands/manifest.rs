//! `candor manifest init DIR`: a self-attested manifest from local files.

use crate::args::ManifestCommand;
use crate::progress::Bars;
use anyhow::{Context, Result};
use candor_verify::Manifest;

pub fn run(cmd: &ManifestCommand) -> Result<()> {
    match cmd {
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
