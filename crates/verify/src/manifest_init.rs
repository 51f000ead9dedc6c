//! `candor manifest init`: a self-attested manifest written from local files — sizes and
//! hashes computed here, license, architecture and base models read from GGUF metadata, the
//! model card and config.json. It is never mistaken for a published one (its attestation says
//! so, and verification warns on every load).

use std::{fs::File, path::Path};

use crate::{
    error::{Error, Result},
    files::{open_in_dir, OpenError},
    filetypes::{self, read_bounded, FileKind},
    formats::{self, gguf::GgufHeader, Header},
    hashing::{self, Progress},
    license::{self, License, LicenseTerms},
    manifest::{Attestation, FileEntry, FileRole, Manifest, ModelInfo},
    model_card::{self, CardInfo},
    openness::{Component, ComponentGrade, Level, Openness},
};

/// A transformers `config.json` larger than this is not read for its architecture.
const MAX_CONFIG_BYTES: usize = 1 << 20;

/// The architecture a transformers `config.json` names: `model_type` ("llama"), else the first
/// of `architectures`. None when the file is not such JSON.
pub fn config_architecture(bytes: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let name = v.get("model_type").and_then(|t| t.as_str()).or_else(|| {
        v.get("architectures")
            .and_then(|a| a.get(0))
            .and_then(|t| t.as_str())
    })?;
    // A name, not free text: it goes into the manifest as is.
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    ok.then(|| name.to_string())
}

impl Manifest {
    /// A self-attested manifest for the model files in `dir` (what `candor manifest init` writes):
    /// sizes and hashes computed here, license, architecture and base models read from GGUF
    /// metadata and the README front matter. Openness is not assessed: only the weights are
    /// graded, from the license.
    pub fn self_attested_from_dir(
        dir: &Path,
        id: &str,
        progress: &dyn Progress,
    ) -> Result<Manifest> {
        let found = read_files(dir, progress)?;
        let g = |f: fn(&GgufHeader) -> Option<&str>| {
            found.gguf.as_ref().and_then(f).map(str::to_string)
        };
        let card = &found.card;
        let license = license_of(found.gguf.as_ref(), card);
        let model = ModelInfo {
            name: g(|h| h.get_str("general.name")).unwrap_or_else(|| id.to_string()),
            publisher: g(|h| h.get_str("general.organization")).unwrap_or_else(|| "unknown".into()),
            architecture: g(GgufHeader::architecture)
                .or(found.config_architecture.clone())
                .unwrap_or_else(|| "unknown".into()),
            version: None,
            parameter_count: None,
            homepage: None,
            base_models: base_models_of(found.gguf.as_ref(), card),
            base_model_relation: None,
        };
        let openness = weights_only_openness(license::is_osi_approved(&license.spdx));
        Ok(Manifest::new(
            id,
            Attestation::SelfAttested,
            model,
            Vec::new(),
            found.files,
            license,
            openness,
        ))
    }
}

/// The model's files, hashed, and what they say about the model.
struct Found {
    files: Vec<FileEntry>,
    /// The first GGUF's header.
    gguf: Option<GgufHeader>,
    card: CardInfo,
    config_architecture: Option<String>,
}

/// Opens (safely), hashes (in parallel) and reads every model file in `dir`.
fn read_files(dir: &Path, progress: &dyn Progress) -> Result<Found> {
    let root = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
    let paths = filetypes::model_files_in(&root, dir)?;
    let mut opened = Vec::new();
    for p in &paths {
        let o = open_in_dir(&root, p, None).map_err(|e| match e {
            OpenError::Io(e) => Error::io(root.join(p), e),
            other => Error::Usage(format!("{p}: {other}")),
        })?;
        opened.push(o);
    }
    let jobs: Vec<(&str, &File)> = paths
        .iter()
        .map(String::as_str)
        .zip(opened.iter().map(|o| &o.file))
        .collect();
    let hashes = hashing::sha256_files(&jobs, filetypes::hashing_threads(0), progress);
    let mut found = Found {
        files: Vec::new(),
        gguf: None,
        card: CardInfo::default(),
        config_architecture: None,
    };
    for ((p, o), h) in paths.iter().zip(&opened).zip(hashes) {
        let (sha256, size) = h.map_err(|e| Error::io(root.join(p), e))?;
        // The same table verification uses: a name it hands over is a name init can list.
        let FileKind {
            role,
            format: Some(format),
        } = filetypes::kind_of(p)
        else {
            return Err(Error::Usage(format!(
                "{p}: not a format candor loads (only GGUF and safetensors)"
            )));
        };
        if role == FileRole::Weights {
            let h = formats::validate_weights(&o.file, p, Some(format)).map_err(|source| {
                Error::Format {
                    path: root.join(p),
                    source,
                }
            })?;
            if let (Header::Gguf(h), None) = (h, &found.gguf) {
                found.gguf = Some(h);
            }
        }
        if role == FileRole::ModelCard {
            if let Ok(b) = read_bounded(&o.file, model_card::MAX_CARD_BYTES) {
                found.card = model_card::parse(&b).unwrap_or_default();
            }
        }
        if p == "config.json" {
            found.config_architecture = read_bounded(&o.file, MAX_CONFIG_BYTES)
                .ok()
                .and_then(|b| config_architecture(&b));
        }
        found.files.push(FileEntry {
            path: p.clone(),
            size,
            sha256,
            role,
            format,
            hash_sources: Vec::new(),
            size_sources: None,
        });
    }
    Ok(found)
}

/// The license the files declare (GGUF first, then the model card), as an SPDX id where it is
/// one candor knows, else a `LicenseRef-`; terms are assumed permissive only for OSI licenses.
pub(crate) fn license_of(gguf: Option<&GgufHeader>, card: &CardInfo) -> License {
    let g = |f: fn(&GgufHeader) -> Option<&str>| gguf.and_then(f).map(str::to_string);
    let declared = g(GgufHeader::license)
        .or(card.license.clone().filter(|l| l != "other"))
        .or(card.license_name.clone());
    let spdx = match declared.as_deref() {
        Some(d) => {
            let norm = license::normalize(d);
            let mapped = [
                "Apache-2.0",
                "MIT",
                "BSD-3-Clause",
                "CC-BY-4.0",
                "CC0-1.0",
                "LicenseRef-Gemma-Terms-of-Use",
            ]
            .into_iter()
            .find(|s| license::normalize(s) == norm);
            match mapped {
                Some(s) => s.to_string(),
                None if license::is_valid_spdx_expression(d) => d.to_string(),
                None => format!(
                    "LicenseRef-{}",
                    d.chars()
                        .map(|c| if c.is_ascii_alphanumeric() || c == '.' {
                            c
                        } else {
                            '-'
                        })
                        .collect::<String>()
                ),
            }
        }
        None => "LicenseRef-unknown".to_string(),
    };
    let osi = license::is_osi_approved(&spdx);
    License {
        name: g(GgufHeader::license_name)
            .or(card.license_name.clone())
            .unwrap_or_else(|| spdx.clone()),
        hf_id: card.license.clone(),
        hf_license_name: card.license_name.clone(),
        url: g(GgufHeader::license_link)
            .or(card.license_link.clone())
            .unwrap_or_else(|| "unknown".into()),
        terms: if osi {
            LicenseTerms::permissive()
        } else {
            LicenseTerms::unknown()
        },
        spdx,
        version: None,
        additional: Vec::new(),
    }
}

/// The model card's base models, then those a GGUF names by repository URL.
fn base_models_of(gguf: Option<&GgufHeader>, card: &CardInfo) -> Vec<String> {
    let mut base_models = card.base_model.clone();
    if let Some(h) = gguf {
        for b in h.base_models() {
            if let Some(u) = b.repo_url {
                let id = u
                    .trim_end_matches('/')
                    .rsplitn(3, '/')
                    .take(2)
                    .collect::<Vec<_>>();
                if id.len() == 2 {
                    let id = format!("{}/{}", id[1], id[0]);
                    if !base_models.iter().any(|x| x.eq_ignore_ascii_case(&id)) {
                        base_models.push(id);
                    }
                }
            }
        }
    }
    base_models
}

/// Only the weights are graded (they are here); nothing else is assessed.
fn weights_only_openness(osi: bool) -> Openness {
    let mut components = std::collections::BTreeMap::new();
    components.insert(
        Component::ModelParametersFinal,
        ComponentGrade {
            grade: if osi {
                crate::openness::Grade::Open
            } else {
                crate::openness::Grade::Partial
            },
            license: None,
            evidence: None,
            note: Some("weights present locally; not checked against a publisher".into()),
        },
    );
    Openness {
        claimed: Level::Closed,
        claimed_wording: "not recorded (self-attested manifest)".into(),
        claim_source: "candor manifest init".into(),
        assessed_by: Some("candor manifest init".into()),
        assessed_at: None,
        components,
    }
}
