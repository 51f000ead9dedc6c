//! From the raw TOML form to a checked manifest, table by table: the text itself, `[[files]]`,
//! `hf_repos_revision_unknown`, the fields that must say something, `[integrity]` and `[hub]`.

use std::collections::HashSet;

use toml::Spanned;

use super::{
    context::Ctx,
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
        let hash_sources = source_notes(ctx, f.hash_sources, "hash_sources")?;
        let size_sources = match f.size_sources {
            Some(list) if list.is_empty() => {
                return Err(ctx.err(at, ManifestProblem::EmptySizeSources(path)))
            }
            Some(list) => Some(source_notes(ctx, list, "size_sources")?),
            None => None,
        };
        files.push(FileEntry {
            path,
            size: f.size,
            sha256,
            role: f.role,
            format: f.format,
            hash_sources,
            size_sources,
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

/// The fields a report shows about the model are not blank.
pub(super) fn check_model(ctx: &Ctx<'_>, model: &ModelInfo) -> Result<()> {
    not_blank(
        ctx,
        &[
            ("model.name", &model.name),
            ("model.publisher", &model.publisher),
            ("model.architecture", &model.architecture),
        ],
    )
}

/// The license (and every additional one) is an SPDX expression, and the fields a report shows
/// are not blank.
pub(super) fn check_license_and_openness(
    ctx: &Ctx<'_>,
    license: &License,
    openness: &Openness,
) -> Result<()> {
    for (spdx, _) in license.each() {
        if !license::is_valid_spdx_expression(spdx) {
            return Err(ctx.err(
                ctx.line_of_key("license", "spdx"),
                ManifestProblem::BadSpdx(spdx.into()),
            ));
        }
    }
    not_blank(
        ctx,
        &[
            ("license.name", &license.name),
            ("license.url", &license.url),
            ("openness.claimed_wording", &openness.claimed_wording),
            ("openness.claim_source", &openness.claim_source),
        ],
    )?;
    for a in &license.additional {
        not_blank(
            ctx,
            &[
                ("license.additional.name", &a.name),
                ("license.additional.url", &a.url),
                ("license.additional.reason", &a.reason),
            ],
        )?;
    }
    Ok(())
}

fn not_blank(ctx: &Ctx<'_>, fields: &[(&'static str, &String)]) -> Result<()> {
    for &(field, value) in fields {
        if value.trim().is_empty() {
            let (table, key) = field.rsplit_once('.').unwrap_or(("", field));
            return Err(ctx.err(
                ctx.line_of_key(table, key),
                ManifestProblem::EmptyField(field),
            ));
        }
    }
    Ok(())
}

/// `hash_sources` / `size_sources` entries: each says where, so none may be blank or repeated.
fn source_notes(
    ctx: &Ctx<'_>,
    raw: Vec<Spanned<String>>,
    field: &'static str,
) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    for s in raw {
        let v = s.get_ref().trim();
        if v.is_empty() || out.iter().any(|o| o == v) {
            return Err(ctx.err(
                Some(s.span()),
                ManifestProblem::BadSourceNote {
                    field,
                    value: s.get_ref().clone(),
                },
            ));
        }
        out.push(v.to_string());
    }
    Ok(out)
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
        sha256_fetched,
    }))
}
