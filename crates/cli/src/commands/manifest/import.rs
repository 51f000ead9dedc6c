//! `candor manifest import hf:OWNER/REPO@COMMIT [FILES…]`: a manifest from the sizes and hashes
//! a Hugging Face repo publishes at one commit. LFS files carry their sha256 in the hub's
//! metadata; small files kept in git carry only a git blob id, so they are fetched, checked
//! against that id and hashed here (the manifest says which).

use super::hub_api::{
    git_blob_sha1, HubApi, Published, RangedFile, RevisionInfo, MAX_FETCHED_BYTES,
};
use super::profile::{curated_profile, Lookup};
use crate::error::CliError;
use crate::home::Home;
use anyhow::{Context, Result};
use candor_verify::filetypes::{self, COMPANION_FILES};
use candor_verify::manifest::{valid_id, validate_rel_path, FileFormat, FileRole, Profiles};
use candor_verify::manifest_import::{HubFile, HubImport};
use candor_verify::model_card::CardInfo;
use candor_verify::{license, Manifest};
use sha2::Digest;
use std::path::{Path, PathBuf};

/// What `manifest import` was asked for.
pub struct ImportRequest<'a> {
    pub source: &'a str,
    pub files: &'a [String],
    pub output: Option<&'a Path>,
    pub id: Option<&'a str>,
    pub force: bool,
}

pub fn run(home: &Home, req: &ImportRequest<'_>) -> Result<()> {
    let (repo, commit) = parse_source(req.source)?;
    if std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0") {
        return Err(CliError::usage("HF_HUB_OFFLINE is set: importing reads the hub").into());
    }
    let api = HubApi::from_env(&repo, &commit)?;
    let info = api.revision()?;
    let chosen = choose_files(&info, req.files, &repo, &commit)?;
    // Everything that can be refused without downloading is refused first.
    let id = match req.id {
        Some(id) if !valid_id(id) => {
            return Err(CliError::usage(format!(
                "manifest id '{id}' must be lowercase letters, digits, '.', '_' or '-'"
            ))
            .into())
        }
        Some(id) => id.to_string(),
        None => default_id(&repo, &chosen)?,
    };
    if home.is_curated(&id) {
        return Err(CliError::usage(format!(
            "'{id}' is the id of a manifest shipped with candor; pass --id to name the import differently"
        ))
        .into());
    }
    let path = match req.output {
        Some(p) => p.to_path_buf(),
        None => home.user_manifests_dir().join(format!("{id}.toml")),
    };
    refuse_existing(&path, req.force)?;
    let (files, config) = hashes(&api, &chosen)?;
    let card = card_info(info.card_data.as_ref());
    let architecture =
        architecture(&info, &chosen, config.as_deref()).or_else(|| gguf_architecture(&api, &files));
    // Where the written manifest's profile is looked up when it loads.
    let profiles = Profiles::next_to(&path).then(&Home::bundled_profiles());
    let lookup = curated_profile(
        &home.curated_manifests()?,
        &repo,
        &card.base_model,
        &profiles,
        &path,
    )?;
    let profile = match &lookup {
        Lookup::Found(p) => Some((**p).clone()),
        _ => None,
    };
    let manifest = Manifest::imported(HubImport {
        id: id.clone(),
        repo: repo.clone(),
        commit: commit.clone(),
        files,
        card: card.clone(),
        architecture: architecture.clone(),
        profile,
    })?;
    let text = manifest.to_toml();
    // What is written must load: the strict parser is the judge, not this code.
    Manifest::parse_with(&text, &id, &path, &profiles)
        .context("the imported manifest does not load")?;
    write_whole(&path, &text)?;
    report(&manifest, &path, &lookup, &card, architecture.is_none());
    Ok(())
}

/// `hf:OWNER/REPO@COMMIT` as (repo, commit); only a full commit id is accepted.
fn parse_source(source: &str) -> Result<(String, String)> {
    let usage = |m: String| -> anyhow::Error { CliError::usage(m).into() };
    let rest = source.strip_prefix("hf:").ok_or_else(|| {
        usage(format!(
            "'{source}' is not a hub source; write hf:OWNER/REPO@COMMIT"
        ))
    })?;
    let (repo, rev) = rest.rsplit_once('@').ok_or_else(|| {
        usage(format!(
            "'{source}' names no commit; write hf:{rest}@COMMIT with the full 40-hex commit id"
        ))
    })?;
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 96
            && p != "."
            && p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    match repo.split_once('/') {
        Some((owner, name)) if part_ok(owner) && part_ok(name) => {}
        _ => return Err(usage(format!("'{repo}' is not a hub repo id (OWNER/REPO)"))),
    }
    if rev.len() != 40 || !rev.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(usage(format!(
            "'{rev}' is not a commit id: a branch or tag can move to other files later, and only a commit pins content. \
             Use the full 40-hex commit, e.g. from https://huggingface.co/{repo}/commits/{rev}"
        )));
    }
    Ok((repo.to_string(), rev.to_ascii_lowercase()))
}

/// The files to list: those named (each must be in the repo), else the repo's loadable weights
/// at its top level (one GGUF, or safetensors) with the companion files next to them.
fn choose_files(
    info: &RevisionInfo,
    requested: &[String],
    repo: &str,
    commit: &str,
) -> Result<Vec<String>> {
    let names: Vec<&str> = info
        .siblings
        .iter()
        .map(|s| s.rfilename.as_str())
        .filter(|n| validate_rel_path(n).is_ok())
        .collect();
    let listing = |names: &[&str]| {
        const SHOWN: usize = 40;
        let mut s = names
            .iter()
            .take(SHOWN)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        if names.len() > SHOWN {
            s.push_str(&format!(" and {} more", names.len() - SHOWN));
        }
        if s.is_empty() {
            s = "no files".into();
        }
        s
    };
    if !requested.is_empty() {
        let mut out: Vec<String> = Vec::new();
        for f in requested {
            if !names.contains(&f.as_str()) {
                return Err(CliError::usage(format!(
                    "{f} is not in {repo} at {}; the repo holds: {}",
                    &commit[..12],
                    listing(&names)
                ))
                .into());
            }
            if filetypes::kind_of(f).format.is_none() {
                return Err(CliError::usage(format!(
                    "{f} is not a file candor loads or checks (weights must be GGUF or safetensors; companions are {})",
                    COMPANION_FILES.join(", ")
                ))
                .into());
            }
            if !out.contains(f) {
                out.push(f.clone());
            }
        }
        return Ok(out);
    }
    let top = |n: &&str| !n.contains('/');
    let weights: Vec<&str> = names
        .iter()
        .copied()
        .filter(top)
        .filter(|n| {
            let k = filetypes::kind_of(n);
            k.role == FileRole::Weights && k.format.is_some()
        })
        .collect();
    let ggufs = weights
        .iter()
        .filter(|n| filetypes::kind_of(n).format == Some(FileFormat::Gguf))
        .count();
    if weights.is_empty() {
        return Err(CliError::usage(format!(
            "{repo} has no GGUF or safetensors file at its top level; name the files to import (the repo holds: {})",
            listing(&names)
        ))
        .into());
    }
    if ggufs > 0 && weights.len() > 1 {
        return Err(CliError::usage(format!(
            "{repo} holds several models' weights; a manifest lists one, so name it (and any companion files): {}",
            listing(&weights)
        ))
        .into());
    }
    let mut out: Vec<String> = weights.iter().map(|s| s.to_string()).collect();
    out.extend(
        COMPANION_FILES
            .iter()
            .filter(|c| names.contains(c))
            .map(|c| c.to_string()),
    );
    Ok(out)
}

/// Each file's size and sha256: the LFS oid the hub publishes, or, for a file kept in git, the
/// sha256 of its bytes once they match the git blob id the hub publishes. Also returns
/// config.json's bytes when they were fetched.
fn hashes(api: &HubApi, paths: &[String]) -> Result<(Vec<HubFile>, Option<Vec<u8>>)> {
    let published = api.paths_info(paths)?;
    let mut files = Vec::with_capacity(paths.len());
    let mut config = None;
    for (path, p) in paths.iter().zip(published) {
        let file = match p {
            Published::Lfs { size, sha256 } => HubFile {
                path: path.clone(),
                size,
                sha256,
                fetched: false,
            },
            Published::Git { size, blob_sha1 } => {
                if size > MAX_FETCHED_BYTES {
                    return Err(CliError::runtime(format!(
                        "{path}: the hub lists a {size}-byte file kept in git, without an LFS sha256; candor fetches at most {MAX_FETCHED_BYTES} bytes to hash one"
                    ))
                    .into());
                }
                let bytes = api.fetch(path, MAX_FETCHED_BYTES)?;
                let got = git_blob_sha1(&bytes);
                if bytes.len() as u64 != size || got != blob_sha1 {
                    return Err(CliError::integrity(format!(
                        "{path}: the bytes served at {} ({} bytes, git blob {}) are not the file the hub lists for that commit ({size} bytes, git blob {}); refusing to record their hash",
                        api.commit,
                        bytes.len(),
                        hex::encode(got),
                        hex::encode(blob_sha1)
                    ))
                    .into());
                }
                let file = HubFile {
                    path: path.clone(),
                    size,
                    sha256: sha2::Sha256::digest(&bytes).into(),
                    fetched: true,
                };
                if path == "config.json" {
                    config = Some(bytes);
                }
                file
            }
        };
        files.push(file);
    }
    Ok((files, config))
}

/// The model card metadata the hub parsed (`cardData`): license and base models, where they
/// are strings of a sane size.
fn card_info(card: Option<&serde_json::Value>) -> CardInfo {
    let text = |key: &str| {
        card.and_then(|c| c.get(key))
            .and_then(|v| v.as_str())
            .filter(|s| sane(s, 256))
            .map(str::to_string)
    };
    let base_model = match card.and_then(|c| c.get("base_model")) {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    CardInfo {
        license: text("license"),
        license_name: text("license_name"),
        license_link: text("license_link"),
        base_model: base_model
            .into_iter()
            .filter(|b| sane(b, 200) && b.split('/').count() == 2)
            .take(32)
            .collect(),
        base_model_relation: text("base_model_relation"),
    }
}

fn sane(s: &str, max: usize) -> bool {
    !s.trim().is_empty() && s.len() <= max && !s.chars().any(char::is_control)
}

/// The architecture the weights declare: the hub's GGUF summary for a GGUF, else config.json's
/// `model_type` (from the hub's summary or the fetched file).
fn architecture(info: &RevisionInfo, chosen: &[String], config: Option<&[u8]>) -> Option<String> {
    let from = |v: Option<&serde_json::Value>, key: &str| {
        v.and_then(|v| v.get(key))
            .and_then(|a| a.as_str())
            .filter(|a| architecture_name(a))
            .map(str::to_string)
    };
    let gguf = chosen
        .iter()
        .any(|p| filetypes::kind_of(p).format == Some(FileFormat::Gguf));
    if gguf {
        return from(info.gguf.as_ref(), "architecture");
    }
    from(info.config.as_ref(), "model_type")
        .or_else(|| config.and_then(candor_verify::manifest_init::config_architecture))
}

/// The architecture a GGUF's header declares, read by Range requests when the hub's metadata
/// does not say. Any failure leaves it unknown (the import says so).
fn gguf_architecture(api: &HubApi, files: &[HubFile]) -> Option<String> {
    let f = files
        .iter()
        .find(|f| filetypes::kind_of(&f.path).format == Some(FileFormat::Gguf))?;
    let src = RangedFile::new(api, &f.path, f.size);
    match candor_verify::formats::gguf::GgufHeader::read(&src) {
        Ok(h) => h
            .architecture()
            .filter(|a| architecture_name(a))
            .map(str::to_string),
        Err(e) => {
            tracing::info!("reading the GGUF header of {}: {e}", f.path);
            None
        }
    }
}

/// A name, not free text: it goes into the manifest as is.
fn architecture_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

/// The id of the one GGUF's file stem, else of the repo's name: lowercase, and characters a
/// manifest id does not take become '-'.
fn default_id(repo: &str, chosen: &[String]) -> Result<String> {
    let gguf: Vec<&String> = chosen
        .iter()
        .filter(|p| filetypes::kind_of(p).format == Some(FileFormat::Gguf))
        .collect();
    let base = match gguf.as_slice() {
        [one] => {
            let name = one.rsplit('/').next().unwrap_or(one);
            name[..name.len() - ".gguf".len()].to_string()
        }
        _ => repo.rsplit('/').next().unwrap_or(repo).to_string(),
    };
    let id: String = base
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let id = id.trim_start_matches('.').to_string();
    if id.is_empty() || id.len() > 128 {
        return Err(CliError::usage(format!(
            "cannot make a manifest id from '{base}'; pass --id"
        ))
        .into());
    }
    Ok(id)
}

/// An existing file is replaced only with `force`.
fn refuse_existing(path: &Path, force: bool) -> Result<()> {
    if path.exists() && !force {
        return Err(CliError::usage(format!(
            "{} exists; pass --force to replace it",
            path.display()
        ))
        .into());
    }
    Ok(())
}

/// Writes `text` to `path` whole or not at all.
fn write_whole(path: &Path, text: &str) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(&parent)
        .with_context(|| format!("creating a temporary file in {}", parent.display()))?;
    std::io::Write::write_all(&mut tmp, text.as_bytes())?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn report(m: &Manifest, path: &Path, lookup: &Lookup, card: &CardInfo, no_arch: bool) {
    let hub = m.hub.as_ref().expect("an imported manifest has [hub]");
    eprintln!(
        "candor: wrote manifest {} to {}: {} file(s) of {}@{}, {} hashed here from bytes fetched at the commit",
        m.id(),
        path.display(),
        m.files.len(),
        hub.repo,
        &hub.commit[..12],
        hub.sha256_fetched.len()
    );
    match lookup {
        Lookup::Found(p) => {
            eprintln!(
                "candor: license and openness from the curated profile {} ({})",
                p.name, p.license.spdx
            );
            if let Some(declared) = card.license.as_deref() {
                if !license::declared_matches(declared, &p.license) {
                    eprintln!(
                        "candor: warning: the repo's card declares license '{declared}', the profile {}; verification will compare what the files declare",
                        p.license.spdx
                    );
                }
            }
        }
        Lookup::NotFound | Lookup::Ambiguous(_) => {
            let why = match lookup {
                Lookup::Ambiguous(ids) => {
                    format!("the shipped manifests {} disagree about it", ids.join(", "))
                }
                _ => "no shipped manifest covers this repo or its base models".into(),
            };
            eprintln!(
                "candor: license and openness are NOT assessed ({why}); the default policy refuses this model as it refuses an unlisted one, until you pass --allow-unlisted or set allow_unlisted = true in candor.toml"
            );
        }
    }
    if no_arch {
        eprintln!(
            "candor: warning: the hub does not say which architecture the weights are; set [model] architecture in {} before use",
            path.display()
        );
    }
    eprintln!(
        "candor: fetch and check the files with `candor pull {}`",
        m.id()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::manifest::hub_api::Sibling;

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    fn repo_with(names: &[&str]) -> RevisionInfo {
        RevisionInfo {
            sha: COMMIT.into(),
            siblings: names
                .iter()
                .map(|n| Sibling {
                    rfilename: n.to_string(),
                })
                .collect(),
            card_data: None,
            gguf: None,
            config: None,
        }
    }

    #[test]
    fn sources_need_a_repo_and_a_full_commit() {
        let upper = COMMIT.to_uppercase();
        assert_eq!(
            parse_source(&format!("hf:org/m@{upper}")).unwrap(),
            ("org/m".to_string(), COMMIT.to_string())
        );
        for bad in [
            format!("org/m@{COMMIT}"),
            "hf:org/m".into(),
            "hf:org/m@v1.0".into(),
            format!("hf:org/m@{}", &COMMIT[..12]),
            format!("hf:org/m/x@{COMMIT}"),
            format!("hf:org/..@{COMMIT}"),
            format!("hf:org/m?x=1@{COMMIT}"),
        ] {
            assert!(parse_source(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_take_one_model_and_its_companions() {
        let info = repo_with(&[
            ".gitattributes",
            "README.md",
            "config.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors.index.json",
            "onnx/model.onnx",
            "pytorch_model.bin",
        ]);
        let got = choose_files(&info, &[], "org/m", COMMIT).unwrap();
        assert_eq!(
            got,
            [
                "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors",
                "config.json",
                "model.safetensors.index.json",
                "README.md"
            ]
        );
        let several = repo_with(&["m-Q4_K_M.gguf", "m-Q8_0.gguf", "README.md"]);
        let e = choose_files(&several, &[], "org/m", COMMIT)
            .unwrap_err()
            .to_string();
        assert!(e.contains("m-Q4_K_M.gguf, m-Q8_0.gguf"), "{e}");
        let pickle = repo_with(&["pytorch_model.bin"]);
        let e = choose_files(&pickle, &["pytorch_model.bin".into()], "org/m", COMMIT)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a file candor loads"), "{e}");
        let one = choose_files(&several, &["m-Q8_0.gguf".into()], "org/m", COMMIT).unwrap();
        assert_eq!(one, ["m-Q8_0.gguf"]);
        assert_eq!(default_id("org/m-GGUF", &one).unwrap(), "m-q8_0");
        assert_eq!(
            default_id("Org/My Model", &["model.safetensors".into()]).unwrap(),
            "my-model"
        );
    }

    #[test]
    fn card_metadata_is_taken_only_where_it_is_sane() {
        let card = serde_json::json!({
            "license": "apache-2.0",
            "license_name": 7,
            "base_model": ["a/b", "not a repo", "c/d/e", "x\ny/z"],
        });
        let info = card_info(Some(&card));
        assert_eq!(info.license.as_deref(), Some("apache-2.0"));
        assert_eq!(info.license_name, None);
        assert_eq!(info.base_model, ["a/b"]);
    }
}
