//! From the raw TOML form to a checked manifest, table by table: the text itself, `[[files]]`,
//! `hf_repos_revision_unknown`, the fields that must say something, `[integrity]` and `[hub]`.

use std::collections::HashSet;

use toml::Spanned;

use super::{
    problems::Ctx,
    raw::{RawFile, RawHub, RawIntegrity, RawManifest},
    root_digest,
    rules::{is_lower_hex, valid_id, validate_rel_path},
    Attestation, FileEntry, FileFormat, FileRole, HubOrigin, ManifestProblem, ModelInfo, Source,
    MAX_MANIFEST_BYTES, SCHEMA_VERSION,
};
use crate::{error::Result, license, license::License, openness::Openness};

/// The text as TOML of a schema version this crate reads, under an id that can name a file.
pub(super) fn read_raw(ctx: &Ctx<'_>, id: &str) -> Result<RawManifest> {
    if ctx.text.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(ctx.err(None, ManifestProblem::TooLarge));
    }
    if !valid_id(id) {
        return Err(ctx.err(None, ManifestProblem::BadId(id.to_string())));
    }
    let raw: RawManifest = toml::from_str(ctx.text).map_err(|e| {
        ctx.err(
            e.span(),
            ManifestProblem::Syntax(e.message().trim().to_string()),
        )
    })?;
    if *raw.schema_version.get_ref() != SCHEMA_VERSION {
        return Err(ctx.err(
            Some(raw.schema_version.span()),
            ManifestProblem::UnsupportedSchemaVersion(*raw.schema_version.get_ref()),
        ));
    }
    Ok(raw)
}

/// `[[files]]`: at least one, safe relative paths that differ even case-insensitively, digests,
/// and a weights format for weights.
pub(super) fn files(ctx: &Ctx<'_>, raw: Vec<RawFile>) -> Result<Vec<FileEntry>> {
    let mut files = Vec::with_capacity(raw.len());
    let mut seen = HashSet::new();
    for f in raw {
        let path = f.path.get_ref().clone();
        let at = Some(f.path.span());
        validate_rel_path(&path).map_err(|why| {
            ctx.err(
                at.clone(),
                ManifestProblem::BadPath {
                    path: path.clone(),
                    why,
                },
            )
        })?;
        // Case-insensitive file systems would make two such entries one file.
        if !seen.insert(path.to_lowercase()) {
            return Err(ctx.err(at, ManifestProblem::DuplicatePath(path)));
        }
        let sha256 = ctx.digest(&f.sha256)?;
        if f.role == FileRole::Weights
            && !matches!(f.format, FileFormat::Gguf | FileFormat::Safetensors)
        {
            return Err(ctx.err(at, ManifestProblem::BadWeightsFormat(path)));
        }
        files.push(FileEntry {
            path,
            size: f.size,
            sha256,
            role: f.role,
            format: f.format,
        });
    }
    if files.is_empty() {
        return Err(ctx.err(None, ManifestProblem::NoFiles));
    }
    Ok(files)
}

/// `hf_repos_revision_unknown`: distinct `owner/name` repos.
pub(super) fn hf_repos_revision_unknown(
    ctx: &Ctx<'_>,
    raw: Vec<Spanned<String>>,
) -> Result<Vec<String>> {
    let mut repos: Vec<String> = Vec::with_capacity(raw.len());
    for r in raw {
        let repo = r.get_ref();
        if repo.split('/').count() != 2
            || repo
                .split('/')
                .any(|p| p.trim().is_empty() || p == "." || p == "..")
            || repos.contains(repo)
        {
            return Err(ctx.err(
                Some(r.span()),
                ManifestProblem::BadSource {
                    kind: "huggingface".into(),
                    message: format!(
                        "hf_repos_revision_unknown entry '{repo}' is not a distinct owner/name"
                    ),
                },
            ));
        }
        repos.push(repo.clone());
    }
    Ok(repos)
}

/// The license is an SPDX expression, and the fields a report shows are not blank.
pub(super) fn check_required_fields(
    ctx: &Ctx<'_>,
    license: &License,
    model: &ModelInfo,
    openness: &Openness,
) -> Result<()> {
    if !license::is_valid_spdx_expression(&license.spdx) {
        return Err(ctx.err(
            ctx.line_of_key("license", "spdx"),
            ManifestProblem::BadSpdx(license.spdx.clone()),
        ));
    }
    for (field, value) in [
        ("license.name", &license.name),
        ("license.url", &license.url),
        ("model.name", &model.name),
        ("model.publisher", &model.publisher),
        ("model.architecture", &model.architecture),
        ("openness.claimed_wording", &openness.claimed_wording),
        ("openness.claim_source", &openness.claim_source),
    ] {
        if value.trim().is_empty() {
            let (table, key) = field.split_once('.').unwrap_or(("", field));
            return Err(ctx.err(
                ctx.line_of_key(table, key),
                ManifestProblem::EmptyField(field),
            ));
        }
    }
    Ok(())
}

/// `[integrity]`: the recorded root digest must be the one the listed files give.
pub(super) fn integrity(ctx: &Ctx<'_>, raw: RawIntegrity, files: &[FileEntry]) -> Result<[u8; 32]> {
    let recorded = ctx.digest(&raw.root_digest)?;
    let computed = root_digest(files.iter().map(|f| (f.path.as_str(), &f.sha256)));
    if recorded != computed {
        return Err(ctx.err(
            Some(raw.root_digest.span()),
            ManifestProblem::RootDigestMismatch {
                recorded: hex::encode(recorded),
                computed: hex::encode(computed),
            },
        ));
    }
    Ok(recorded)
}

/// `[hub]`: present exactly when the attestation is `hub`; a repo and a full commit that are also
/// a `huggingface` source (so `candor pull` fetches what was imported), and fetched-hash entries
/// that are listed files.
pub(super) fn hub(
    ctx: &Ctx<'_>,
    attestation: Attestation,
    raw: Option<Spanned<RawHub>>,
    files: &[FileEntry],
    sources: &[Source],
) -> Result<Option<HubOrigin>> {
    let bad =
        |span: Option<std::ops::Range<usize>>, m: String| ctx.err(span, ManifestProblem::BadHub(m));
    let raw = match (attestation, raw) {
        (Attestation::Hub, Some(r)) => r,
        (Attestation::Hub, None) => {
            return Err(bad(
                None,
                "attestation \"hub\" needs a [hub] table naming the repo and commit".into(),
            ))
        }
        (_, Some(r)) => {
            return Err(bad(
                Some(r.span()),
                format!(
                "the table belongs to attestation = \"hub\" only (this manifest is {attestation})"
            ),
            ))
        }
        (_, None) => return Ok(None),
    };
    let span = raw.span();
    let raw = raw.into_inner();
    let repo = raw.repo.get_ref();
    if repo.split('/').count() != 2
        || repo
            .split('/')
            .any(|p| p.trim().is_empty() || p == "." || p == "..")
    {
        return Err(bad(
            Some(raw.repo.span()),
            format!("repo '{repo}' is not owner/name"),
        ));
    }
    let commit = raw.commit.get_ref();
    if !is_lower_hex(commit, 40) {
        return Err(ctx.err(
            Some(raw.commit.span()),
            ManifestProblem::BadRevision(commit.clone()),
        ));
    }
    let fetched_from = |s: &Source| matches!(s, Source::Huggingface { repo: r, revision } if r == repo && revision == commit);
    if !sources.iter().any(fetched_from) {
        return Err(bad(
            Some(span),
            format!("{repo}@{commit} must also be a [[sources]] entry of kind huggingface"),
        ));
    }
    let profile = match raw.profile {
        Some(p) if p.get_ref().trim().is_empty() => {
            return Err(bad(Some(p.span()), "profile is empty".into()))
        }
        p => p.map(Spanned::into_inner),
    };
    let mut sha256_fetched: Vec<String> = Vec::with_capacity(raw.sha256_fetched.len());
    for f in raw.sha256_fetched {
        let path = f.get_ref();
        if !files.iter().any(|e| &e.path == path) || sha256_fetched.contains(path) {
            return Err(bad(
                Some(f.span()),
                format!("sha256_fetched entry '{path}' is not a distinct listed file"),
            ));
        }
        sha256_fetched.push(path.clone());
    }
    Ok(Some(HubOrigin {
        repo: repo.clone(),
        commit: commit.clone(),
        profile,
        sha256_fetched,
    }))
}
