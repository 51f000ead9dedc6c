//! Family profiles: the `[license]` and `[openness]` tables shared by every manifest of one model
//! family and version, kept once in `families/<name>.toml` next to the manifests. A manifest
//! names its profile (`profile = "llama-3.2"`) instead of repeating the tables; loading puts the
//! profile's tables in, so the checked manifest is the same as if they were written inline.

use std::{
    ops::Range,
    path::{Path, PathBuf},
};

use toml::Spanned;

use super::{
    context::Ctx, convert, raw::RawProfile, rules::valid_id, ManifestProblem, MAX_MANIFEST_BYTES,
    SCHEMA_VERSION,
};
use crate::{
    error::{Error, Result},
    license::License,
    openness::Openness,
};

/// The folder, next to a manifests folder, that holds the family profiles.
pub const PROFILES_DIR: &str = "families";

/// Where profiles are looked up, in order: folders (`<dir>/<name>.toml`), then profiles held in
/// memory (those bundled into a binary).
#[derive(Debug, Clone, Default)]
pub struct Profiles {
    dirs: Vec<PathBuf>,
    embedded: Vec<(String, String)>,
}

/// A profile as found: its text and the path that names it in errors.
pub(super) struct FoundProfile {
    pub(super) name: String,
    pub(super) text: String,
    pub(super) origin: PathBuf,
}

/// A profile's tables, checked.
pub(super) struct Resolved {
    pub(super) found: FoundProfile,
    pub(super) license: License,
    pub(super) openness: Openness,
}

impl Profiles {
    /// No profiles: a manifest naming one is an error.
    pub fn none() -> Self {
        Self::default()
    }

    /// The profiles of the manifests folder `manifests_dir`: `<manifests_dir>/families/`.
    pub fn of_manifests_dir(manifests_dir: &Path) -> Self {
        Self::none().then_dir(manifests_dir.join(PROFILES_DIR))
    }

    /// The profiles next to the manifest file `manifest_path`.
    pub fn next_to(manifest_path: &Path) -> Self {
        let dir = manifest_path.parent().unwrap_or(Path::new(""));
        Self::of_manifests_dir(dir)
    }

    /// Also look in the profiles folder `dir` (after those already given).
    pub fn then_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dirs.push(dir.into());
        self
    }

    /// Also use the profile `name` with this text (after those already given).
    pub fn then_embedded(mut self, name: &str, text: &str) -> Self {
        self.embedded.push((name.to_string(), text.to_string()));
        self
    }

    /// Every place in `other` after those in `self`.
    pub fn then(mut self, other: &Profiles) -> Self {
        self.dirs.extend(other.dirs.iter().cloned());
        self.embedded.extend(other.embedded.iter().cloned());
        self
    }

    /// The license and openness the profile `name` supplies, looked up and checked as for a
    /// manifest that names it; errors name `wanted_by`, the manifest that is to name it.
    pub fn tables(&self, name: &str, wanted_by: &Path) -> Result<(License, Openness)> {
        let ctx = Ctx {
            text: "",
            path: wanted_by,
        };
        let r = resolve_at(&ctx, name, None, self)?;
        Ok((r.license, r.openness))
    }

    /// Where a profile named `name` would be looked for, for error messages.
    fn places(&self, name: &str) -> String {
        let mut out: Vec<String> = self
            .dirs
            .iter()
            .map(|d| d.join(format!("{name}.toml")).display().to_string())
            .collect();
        if !self.embedded.is_empty() {
            out.push("the profiles bundled with candor".into());
        }
        if out.is_empty() {
            "no profile folder was given".into()
        } else {
            out.join(", ")
        }
    }

    /// The first profile called `name`. A profile that exists but cannot be read is an error, so
    /// a broken file is never skipped for another one.
    fn find(&self, name: &str) -> std::result::Result<Option<FoundProfile>, String> {
        for dir in &self.dirs {
            let path = dir.join(format!("{name}.toml"));
            let meta = match std::fs::metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
            };
            if !meta.is_file() {
                return Err(format!("{} is not a file", path.display()));
            }
            if meta.len() > MAX_MANIFEST_BYTES {
                return Err(format!(
                    "{} is larger than {MAX_MANIFEST_BYTES} bytes",
                    path.display()
                ));
            }
            let bytes =
                std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let text =
                String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8", path.display()))?;
            return Ok(Some(FoundProfile {
                name: name.to_string(),
                text,
                origin: path,
            }));
        }
        Ok(self
            .embedded
            .iter()
            .find(|(n, _)| n == name)
            .map(|(n, text)| FoundProfile {
                name: n.clone(),
                text: text.clone(),
                origin: PathBuf::from(format!("{PROFILES_DIR}/{n}.toml (bundled)")),
            }))
    }
}

/// Look up and check the profile a manifest names; errors point at the manifest's `profile`
/// line and, for a problem inside the profile, name the profile's file and line.
pub(super) fn resolve(
    ctx: &Ctx<'_>,
    name: &Spanned<String>,
    profiles: &Profiles,
) -> Result<Resolved> {
    resolve_at(ctx, name.get_ref(), Some(name.span()), profiles)
}

/// `resolve` for the profile `name`, named at `at` in the text of `ctx`.
fn resolve_at(
    ctx: &Ctx<'_>,
    name: &str,
    at: Option<Range<usize>>,
    profiles: &Profiles,
) -> Result<Resolved> {
    if !valid_id(name) {
        return Err(ctx.err(at, ManifestProblem::BadProfileName(name.to_string())));
    }
    let in_profile = |origin: &Path, line: Option<usize>, message: String| {
        ctx.err(
            at.clone(),
            ManifestProblem::Profile {
                name: name.to_string(),
                at: format!(
                    "{}{}",
                    origin.display(),
                    line.map(|l| format!(":{l}")).unwrap_or_default()
                ),
                message,
            },
        )
    };
    let found = match profiles.find(name) {
        Ok(Some(f)) => f,
        Ok(None) => {
            return Err(ctx.err(
                at,
                ManifestProblem::ProfileNotFound {
                    name: name.to_string(),
                    looked_in: profiles.places(name),
                },
            ))
        }
        Err(why) => return Err(ctx.err(at, ManifestProblem::ProfileUnreadable(why))),
    };
    let pctx = Ctx {
        text: &found.text,
        path: &found.origin,
    };
    // Problems inside the profile are reported with the profile's own line numbers.
    let inner = |e: Error| match e {
        Error::Manifest {
            path,
            line,
            problem,
        } => in_profile(&path, line, problem.to_string()),
        other => other,
    };
    let raw: RawProfile = toml::from_str(&found.text).map_err(|e| {
        inner(pctx.err(
            e.span(),
            ManifestProblem::Syntax(e.message().trim().to_string()),
        ))
    })?;
    if *raw.schema_version.get_ref() != SCHEMA_VERSION {
        return Err(inner(pctx.err(
            Some(raw.schema_version.span()),
            ManifestProblem::UnsupportedSchemaVersion(*raw.schema_version.get_ref()),
        )));
    }
    if raw.family.get_ref().trim().is_empty() {
        return Err(inner(pctx.err(
            Some(raw.family.span()),
            ManifestProblem::EmptyField("family"),
        )));
    }
    convert::check_license_and_openness(&pctx, &raw.license, &raw.openness).map_err(inner)?;
    Ok(Resolved {
        found,
        license: raw.license,
        openness: raw.openness,
    })
}
