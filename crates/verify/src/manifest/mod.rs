//! The manifest: one TOML file per model variant, named `<id>.toml`. It pins what a publisher
//! published (files with size and sha256, where to fetch them), under which license, and how open
//! the release is. Parsing is strict: unknown fields, bad digests and unsafe paths are errors that
//! name the line.

mod context;
mod convert;
mod limits;
pub(crate) mod problems;
mod profile;
mod raw;
mod rules;
mod schema;
mod signature;
mod sources;

use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

pub use problems::{ManifestProblem, PathProblem};
pub use profile::{Profiles, PROFILES_DIR};
pub use rules::{parse_sha256, valid_id, validate_rel_path};
pub use schema::{
    Attestation, BaseModelRelation, ChunkPart, FileEntry, FileFormat, FileRole, HubOrigin,
    ModelInfo, SignatureMethod, SignatureSpec, Source,
};

use crate::{
    error::{Error, Result},
    license::License,
    openness::{self, Assessment, Openness},
};
use context::Ctx;
use limits::MAX_MANIFEST_BYTES;
pub use limits::SCHEMA_VERSION;

#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub schema_version: u32,
    pub attestation: Attestation,
    pub model: ModelInfo,
    pub sources: Vec<Source>,
    pub files: Vec<FileEntry>,
    pub license: License,
    pub openness: Openness,
    /// The OMS-style root digest, if the manifest records one (checked against `files` on load).
    pub root_digest: Option<[u8; 32]>,
    /// Hugging Face repos (`owner/name`) known to publish these files at a commit that was not
    /// recorded. Information only: nothing is fetched from them, as only a commit pins content.
    pub hf_repos_revision_unknown: Vec<String>,
    /// An OpenSSF model-signing bundle that must verify before the model is used.
    pub signature: Option<SignatureSpec>,
    /// The family profile that supplied `license` and `openness`, if the manifest names one.
    pub profile: Option<String>,
    /// Where a `hub` manifest was imported from (`[hub]`); present exactly for that attestation.
    pub hub: Option<HubOrigin>,
    id: String,
    digest: [u8; 32],
    path: Option<PathBuf>,
}

/// sha256 over the concatenated raw 32-byte digests, in byte-wise sorted path order (the OpenSSF
/// model-signing subject digest), so one hex string identifies the whole file set.
pub fn root_digest<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8; 32])>) -> [u8; 32] {
    let mut v: Vec<(&str, &[u8; 32])> = files.into_iter().collect();
    v.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut h = Sha256::new();
    for (_, d) in v {
        h.update(d);
    }
    h.finalize().into()
}

impl Manifest {
    /// Load and validate a manifest file; its id is the file stem. A profile it names is looked
    /// up in `families/` next to it.
    pub fn load(path: &Path) -> Result<Manifest> {
        Self::load_with(path, &Profiles::none())
    }

    /// Like `load`, looking up a profile in `families/` next to the file first, then in
    /// `fallback` (e.g. the profiles bundled with the binary).
    pub fn load_with(path: &Path, fallback: &Profiles) -> Result<Manifest> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let problem = |p| Error::Manifest {
            path: path.to_path_buf(),
            line: None,
            problem: p,
        };
        if meta.len() > MAX_MANIFEST_BYTES {
            return Err(problem(ManifestProblem::TooLarge));
        }
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let text = std::str::from_utf8(&bytes).map_err(|_| problem(ManifestProblem::NotUtf8))?;
        let id = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        Self::parse_with(text, id, path, &Profiles::next_to(path).then(fallback))
    }

    /// Parse manifest text. `origin` names the file in errors; a profile the text names is
    /// looked up in `families/` next to `origin`.
    pub fn parse(text: &str, id: &str, origin: &Path) -> Result<Manifest> {
        Self::parse_with(text, id, origin, &Profiles::next_to(origin))
    }

    /// Parse manifest text, looking up a profile it names in `profiles` only.
    pub fn parse_with(
        text: &str,
        id: &str,
        origin: &Path,
        profiles: &Profiles,
    ) -> Result<Manifest> {
        let ctx = Ctx { text, path: origin };
        let raw = convert::read_raw(&ctx, id)?;
        let files = convert::files(&ctx, raw.files)?;
        let sources = raw
            .sources
            .into_iter()
            .map(|s| sources::convert_source(&ctx, s, &files))
            .collect::<Result<Vec<_>>>()?;
        let hf_repos_revision_unknown =
            convert::hf_repos_revision_unknown(&ctx, raw.hf_repos_revision_unknown)?;
        convert::check_model(&ctx, &raw.model)?;
        let mut digest = Sha256::new();
        digest.update(text.as_bytes());
        let (license, openness, profile) = match raw.profile {
            Some(name) => {
                for (table, inline) in [
                    ("license", raw.license.as_ref().map(|l| l.span())),
                    ("openness", raw.openness.as_ref().map(|o| o.span())),
                ] {
                    if let Some(span) = inline {
                        return Err(ctx.err(
                            Some(span),
                            ManifestProblem::ProfileWithInline {
                                profile: name.get_ref().clone(),
                                table,
                            },
                        ));
                    }
                }
                let p = profile::resolve(&ctx, &name, profiles)?;
                // The digest names everything the manifest means, so it covers the profile too:
                // a changed profile invalidates cached verdicts as a changed manifest does.
                digest.update(b"\0profile\0");
                digest.update(p.found.name.as_bytes());
                digest.update(b"\0");
                digest.update(p.found.text.as_bytes());
                (p.license, p.openness, Some(p.found.name))
            }
            None => {
                let license = raw
                    .license
                    .ok_or_else(|| ctx.err(None, ManifestProblem::MissingTable("license")))?
                    .into_inner();
                let openness = raw
                    .openness
                    .ok_or_else(|| ctx.err(None, ManifestProblem::MissingTable("openness")))?
                    .into_inner();
                convert::check_license_and_openness(&ctx, &license, &openness)?;
                (license, openness, None)
            }
        };
        let root_digest = raw
            .integrity
            .map(|i| convert::integrity(&ctx, i, &files))
            .transpose()?;
        let signature = raw
            .signature
            .map(|s| signature::convert_signature(&ctx, s))
            .transpose()?;
        // Fail safe: a manifest that does not say it is published is treated as a user's own.
        let attestation = raw.attestation.unwrap_or(Attestation::SelfAttested);
        let hub = convert::hub(&ctx, attestation, raw.hub, &files, &sources)?;
        Ok(Manifest {
            schema_version: SCHEMA_VERSION,
            attestation,
            model: raw.model,
            sources,
            files,
            license,
            openness,
            root_digest,
            hf_repos_revision_unknown,
            signature,
            profile,
            hub,
            id: id.to_string(),
            digest: digest.finalize().into(),
            path: Some(origin.to_path_buf()),
        })
    }

    /// Build a manifest in code (used by `candor manifest init`); `digest` is computed from its
    /// TOML form.
    pub fn new(
        id: &str,
        attestation: Attestation,
        model: ModelInfo,
        sources: Vec<Source>,
        files: Vec<FileEntry>,
        license: License,
        openness: Openness,
    ) -> Manifest {
        let mut m = Manifest {
            schema_version: SCHEMA_VERSION,
            attestation,
            model,
            sources,
            files,
            license,
            openness,
            root_digest: None,
            hf_repos_revision_unknown: Vec::new(),
            signature: None,
            profile: None,
            hub: None,
            id: id.to_string(),
            digest: [0; 32],
            path: None,
        };
        m.root_digest = Some(m.computed_root_digest());
        m.digest = Sha256::digest(m.to_toml().as_bytes()).into();
        m
    }

    /// The same manifest, imported from a Hugging Face repo at a commit (`candor manifest
    /// import`): attestation `hub` with its `[hub]` table.
    pub fn imported_from_hub(mut self, hub: HubOrigin) -> Manifest {
        self.attestation = Attestation::Hub;
        self.hub = Some(hub);
        self.digest = Sha256::digest(self.to_toml().as_bytes()).into();
        self
    }

    /// A `hub` manifest that names no family profile: its license terms and openness are
    /// unknown, and the policy treats it like an unlisted model.
    pub fn is_unassessed(&self) -> bool {
        self.attestation == Attestation::Hub && self.profile.is_none()
    }

    /// The manifest id: the file stem (`smollm2-135m-instruct-q4_1`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// sha256 of the manifest text; part of the verification cache key.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// The file this manifest was read from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn is_published(&self) -> bool {
        self.attestation == Attestation::Published
    }

    /// The OMS-style root digest of the listed files.
    pub fn computed_root_digest(&self) -> [u8; 32] {
        root_digest(self.files.iter().map(|f| (f.path.as_str(), &f.sha256)))
    }

    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.path == path)
    }

    pub fn weights(&self) -> impl Iterator<Item = &FileEntry> {
        self.files.iter().filter(|f| f.role == FileRole::Weights)
    }

    /// The achieved openness level and why higher levels are not reached.
    pub fn assess_openness(&self) -> Assessment {
        openness::assess(&self.openness, &self.license)
    }

    /// The manifest as TOML (what `candor manifest init` writes).
    pub fn to_toml(&self) -> String {
        #[derive(Serialize)]
        struct Integrity {
            root_digest: String,
        }
        #[derive(Serialize)]
        struct Out<'a> {
            schema_version: u32,
            attestation: Attestation,
            #[serde(skip_serializing_if = "Option::is_none")]
            profile: Option<&'a str>,
            #[serde(skip_serializing_if = "<[_]>::is_empty")]
            hf_repos_revision_unknown: &'a [String],
            model: &'a ModelInfo,
            #[serde(skip_serializing_if = "<[_]>::is_empty")]
            sources: &'a [Source],
            files: &'a [FileEntry],
            // A profile supplies these; the manifest then must not repeat them.
            #[serde(skip_serializing_if = "Option::is_none")]
            license: Option<&'a License>,
            #[serde(skip_serializing_if = "Option::is_none")]
            openness: Option<&'a Openness>,
            integrity: Integrity,
            #[serde(skip_serializing_if = "Option::is_none")]
            signature: Option<&'a SignatureSpec>,
            #[serde(skip_serializing_if = "Option::is_none")]
            hub: Option<&'a HubOrigin>,
        }
        let out = Out {
            schema_version: self.schema_version,
            attestation: self.attestation,
            profile: self.profile.as_deref(),
            hf_repos_revision_unknown: &self.hf_repos_revision_unknown,
            model: &self.model,
            sources: &self.sources,
            files: &self.files,
            license: self.profile.is_none().then_some(&self.license),
            openness: self.profile.is_none().then_some(&self.openness),
            integrity: Integrity {
                root_digest: hex::encode(self.computed_root_digest()),
            },
            signature: self.signature.as_ref(),
            hub: self.hub.as_ref(),
        };
        toml::to_string(&out).unwrap_or_else(|e| format!("# could not serialize manifest: {e}\n"))
    }
}

/// Every `*.toml` manifest in a directory, sorted by id, with profiles from its `families/`.
/// The first invalid one is an error.
pub fn manifests_in_dir(dir: &Path) -> Result<Vec<Manifest>> {
    manifests_in_dir_with(dir, &Profiles::none())
}

/// Like `manifests_in_dir`, looking up profiles in the directory's `families/` first, then in
/// `fallback`.
pub fn manifests_in_dir_with(dir: &Path, fallback: &Profiles) -> Result<Vec<Manifest>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut paths = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "toml") && p.is_file() {
            paths.push(p);
        }
    }
    paths.sort();
    paths
        .iter()
        .map(|p| Manifest::load_with(p, fallback))
        .collect()
}

/// The manifest `<dir>/<id>.toml`.
pub fn find_manifest(dir: &Path, id: &str) -> Result<Manifest> {
    let not_found = || Error::ManifestNotFound {
        id: id.to_string(),
        dir: dir.to_path_buf(),
    };
    if !rules::valid_id(id) {
        return Err(not_found());
    }
    let p = dir.join(format!("{id}.toml"));
    if !p.is_file() {
        return Err(not_found());
    }
    Manifest::load(&p)
}
