//! The verification report: what was checked, what was found, and the decision with its reasons,
//! the overrides used and the fix for each refusal. `Report::to_json` has a stable schema
//! (`schema_version`, documented in manifests/README.md); `Report::render` is for people.

use std::fmt::Write as _;

use serde::Serialize;

use crate::{
    error::ErrorKind,
    files::UnsafeFile,
    formats::FormatError,
    license::LicenseTerms,
    manifest::{Attestation, FileFormat, FileRole, HubOrigin, Manifest, ModelInfo},
    openness::{Component, Grade, Level, LevelFailure},
    policy::PolicyViolation,
    signature::{FileProblem, SignatureReport},
};

/// Version of the JSON report schema. Fields may be added within a version, never removed or
/// changed in meaning.
pub const REPORT_SCHEMA_VERSION: u32 = 1;

/// One reason a model is not loaded.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Reason {
    HashMismatch {
        path: String,
        expected: String,
        actual: String,
    },
    SizeMismatch {
        path: String,
        expected: u64,
        actual: u64,
    },
    MissingFile {
        path: String,
    },
    ExtraFile {
        path: String,
    },
    UnsafeFile {
        path: String,
        problem: UnsafeFile,
    },
    MalformedFile {
        path: String,
        #[serde(serialize_with = "ser_display")]
        error: FormatError,
    },
    DeclaredLicenseMismatch {
        source: String,
        declared: String,
        manifest: String,
    },
    DeclaredBaseModelMismatch {
        source: String,
        declared: String,
        manifest: Vec<String>,
    },
    DeclaredArchitectureMismatch {
        source: String,
        declared: String,
        manifest: String,
    },
    ClaimAboveAchieved {
        claimed: Level,
        achieved: Level,
        rules: Vec<String>,
    },
    Policy {
        violation: PolicyViolation,
    },
    LicenseNotAccepted {
        manifest_id: String,
        license: String,
    },
    /// An OpenSSF model-signing bundle that does not verify, or does not cover a file.
    SignatureInvalid {
        bundle: String,
        source: SignatureSource,
        error: String,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        files: Vec<FileProblem>,
    },
}

fn ser_display<S: serde::Serializer, T: std::fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

impl Reason {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Reason::HashMismatch { .. }
            | Reason::SizeMismatch { .. }
            | Reason::MissingFile { .. }
            | Reason::ExtraFile { .. }
            | Reason::UnsafeFile { .. }
            | Reason::SignatureInvalid { .. } => ErrorKind::Integrity,
            Reason::MalformedFile { .. } => ErrorKind::Malformed,
            _ => ErrorKind::Refused,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Reason::HashMismatch {
                path,
                expected,
                actual,
            } => {
                format!("{path}: sha256 mismatch: expected {expected}, got {actual}")
            }
            Reason::SizeMismatch {
                path,
                expected,
                actual,
            } => {
                format!("{path}: size mismatch: expected {expected} bytes, found {actual}")
            }
            Reason::MissingFile { path } => format!("{path}: listed in the manifest but missing"),
            Reason::ExtraFile { path } => format!("{path}: weight file not listed in the manifest"),
            Reason::UnsafeFile { path, problem } => format!("{path}: {problem}"),
            Reason::MalformedFile { path, error } => format!("{path}: {error}"),
            Reason::DeclaredLicenseMismatch {
                source,
                declared,
                manifest,
            } => {
                format!(
                    "{source} declares license \"{declared}\" but the manifest records {manifest}"
                )
            }
            Reason::DeclaredBaseModelMismatch {
                source,
                declared,
                manifest,
            } => format!(
                "{source} declares base model \"{declared}\" but the manifest lists [{}]",
                manifest.join(", ")
            ),
            Reason::DeclaredArchitectureMismatch {
                source,
                declared,
                manifest,
            } => {
                format!("{source} declares architecture \"{declared}\" but the manifest records {manifest}")
            }
            Reason::ClaimAboveAchieved {
                claimed,
                achieved,
                rules,
            } => format!(
                "the publisher claims {claimed} but the manifest's grades achieve {achieved}: {}",
                rules.join("; ")
            ),
            Reason::Policy { violation } => violation.to_string(),
            Reason::LicenseNotAccepted { license, .. } => {
                format!("{license} must be accepted before use and has not been")
            }
            Reason::SignatureInvalid { error, .. } => format!("signature: {error}"),
        }
    }

    /// What would let the user go on: the sentence printed under `message`.
    pub fn fix(&self, ctx: &FixContext) -> String {
        let refetch = || match ctx.manifest {
            Some(m) => format!(
                "run `candor pull {}` to fetch the published files again",
                m.id()
            ),
            None => "fetch the file again from its publisher".into(),
        };
        let correct = |field: &str| match ctx.manifest {
            Some(m) => format!("correct {field} in manifest {}", m.id()),
            None => format!("correct {field} in the manifest"),
        };
        match self {
            // Without a manifest a digest is only compared with its Hugging Face blob name.
            Reason::HashMismatch { .. } if ctx.manifest.is_none() => {
                "delete the blob from the Hugging Face cache and download it again".into()
            }
            // A size only one source gave may be the manifest's error rather than the file's.
            Reason::SizeMismatch { path, .. } => {
                let lone = ctx
                    .manifest
                    .and_then(|m| m.files.iter().find(|f| &f.path == path))
                    .and_then(|f| f.size_sources.as_ref())
                    .filter(|l| l.len() == 1);
                match lone {
                    Some(l) => format!(
                        "{}; the manifest's size was seen in one source only ({}), so if the file is the published one the manifest may be wrong: report it",
                        refetch(),
                        l[0]
                    ),
                    None => refetch(),
                }
            }
            Reason::HashMismatch { .. } | Reason::MissingFile { .. } => refetch(),
            Reason::ExtraFile { .. } => {
                "remove the file from the model directory, or pass --allow-extra".into()
            }
            Reason::UnsafeFile { .. } => {
                "replace the link or special file with the regular file itself".into()
            }
            Reason::MalformedFile { error, .. } => match error {
                FormatError::Pickle(_) | FormatError::Zip(_) => {
                    "convert the checkpoint to safetensors or GGUF with trusted tools".into()
                }
                FormatError::SafetensorsIndex(_) => {
                    "the shards and their index disagree; fetch the model again from its publisher"
                        .into()
                }
                FormatError::GgufSplit(_) => {
                    "keep every part of the split model, and nothing else, in its directory; fetch missing parts from the publisher"
                        .into()
                }
                _ => "the file is damaged or not a model candor can load; fetch it again from its publisher".into(),
            },
            Reason::DeclaredLicenseMismatch { .. } => format!(
                "{}, or fetch the file the manifest lists",
                correct("[license]")
            ),
            Reason::DeclaredBaseModelMismatch { .. } => correct("[model].base_models"),
            Reason::DeclaredArchitectureMismatch { .. } => correct("[model].architecture"),
            Reason::ClaimAboveAchieved { achieved, .. } => {
                format!("pass --accept-openness {achieved} to load it as what it is")
            }
            Reason::Policy { violation } => violation.fix(ctx.policy),
            Reason::LicenseNotAccepted { manifest_id, .. } => {
                format!("read the terms and run `candor license accept {manifest_id}`")
            }
            Reason::SignatureInvalid { source, .. } => match (source, ctx.manifest) {
                (SignatureSource::Manifest, Some(m)) => {
                    let spec = m.signature.as_ref();
                    format!(
                        "fetch the model and its signature {} again from the publisher; the manifest {} pins {}",
                        spec.map(|s| s.path.as_str()).unwrap_or("bundle"),
                        m.id(),
                        spec.map(|s| s.verify_key().describe()).unwrap_or_default()
                    )
                }
                _ => "the files are not what was signed, or the signature is not from this key: fetch them again from the signer, or check --public-key / --certificate-chain".into(),
            },
        }
    }
}

/// What a fix may name: the manifest (its id, its signature) and where the policy came from.
pub struct FixContext<'a> {
    pub manifest: Option<&'a Manifest>,
    /// The policy file's path, or "the policy" for the built-in one.
    pub policy: &'a str,
}

/// A reason with its class, its sentence and the fix (what would load the model anyway).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub kind: ErrorKind,
    #[serde(flatten)]
    pub reason: Reason,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Allowed,
    IntegrityFailure,
    Malformed,
    Refused,
}

impl Outcome {
    /// A model's state after this outcome, as `list` and `show` print it.
    pub fn state(self) -> &'static str {
        match self {
            Outcome::Allowed => "verified",
            Outcome::IntegrityFailure => "integrity failure",
            Outcome::Malformed => "malformed",
            Outcome::Refused => "refused",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub outcome: Outcome,
    pub findings: Vec<Finding>,
    /// Overrides in force for this load (accepted licenses, `--accept-openness`, unlisted…).
    pub overrides: Vec<String>,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        self.outcome == Outcome::Allowed
    }

    pub fn has(&self, pred: impl Fn(&Reason) -> bool) -> bool {
        self.findings.iter().any(|f| pred(&f.reason))
    }

    pub fn reasons(&self) -> impl Iterator<Item = &Reason> {
        self.findings.iter().map(|f| &f.reason)
    }

    /// One line for error messages.
    pub fn summary(&self) -> String {
        match self.findings.first() {
            None => "ok".into(),
            Some(f) if self.findings.len() == 1 => f.message.clone(),
            Some(f) => format!("{} (and {} more)", f.message, self.findings.len() - 1),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    Ok,
    HashMismatch,
    SizeMismatch,
    Missing,
    Extra,
    Unsafe,
    Malformed,
    /// Hashed, but no manifest to compare with.
    Unlisted,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileReport {
    pub path: String,
    pub role: Option<FileRole>,
    pub format: Option<FileFormat>,
    pub status: FileStatus,
    pub expected_size: Option<u64>,
    pub actual_size: Option<u64>,
    pub expected_sha256: Option<String>,
    pub actual_sha256: Option<String>,
    /// The sha256 came from the verification cache (file identity unchanged).
    pub cached: bool,
    /// Where the manifest's sha256 was seen published.
    pub hash_sources: Vec<String>,
    /// Where the manifest's size was seen, when fewer sources give it than the sha256.
    pub size_sources: Option<Vec<String>>,
}

/// Where a signature check was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureSource {
    /// The manifest's `[signature]` table.
    Manifest,
    /// `--signature FILE` with `--public-key` or `--certificate-chain`.
    CommandLine,
}

/// One OpenSSF model-signing bundle checked during verification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SignatureCheckReport {
    pub source: SignatureSource,
    pub bundle: String,
    pub verified: bool,
    /// What the signature says (present whenever the bundle itself verified).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ManifestSummary {
    pub id: String,
    pub attestation: Attestation,
    pub path: Option<String>,
    pub digest: String,
    /// The family profile that supplied the license and openness tables.
    pub profile: Option<String>,
    /// For a `hub` manifest: the repo and commit it was imported from, and its profile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub: Option<HubOrigin>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LicenseReport {
    /// The model's own license.
    pub spdx: String,
    pub name: String,
    pub url: String,
    pub hf_id: Option<String>,
    /// The dated text the terms were read from, if pinned.
    pub version: Option<String>,
    /// Every license that applies: `spdx` and each additional one, joined with `AND`.
    pub expression: String,
    /// Licenses or terms that apply on top of the model's own.
    pub additional: Vec<AdditionalLicenseReport>,
    /// Whether every license in `expression` is OSI-approved.
    pub osi_approved: bool,
    /// The effective terms (own and additional combined), one line each.
    pub at_a_glance: Vec<String>,
    /// The effective terms.
    pub terms: LicenseTerms,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdditionalLicenseReport {
    pub spdx: String,
    pub name: String,
    pub url: String,
    pub reason: String,
    pub version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComponentReport {
    pub component: Component,
    pub grade: Grade,
    pub license: Option<String>,
    pub evidence: Option<String>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpennessReport {
    pub claimed: Level,
    pub claimed_wording: String,
    pub claim_source: String,
    pub achieved: Level,
    pub mof_class: Option<&'static str>,
    pub osai_score: f64,
    pub components: Vec<ComponentReport>,
    pub unmet: Vec<LevelFailure>,
}

/// What the model files themselves declare.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Declared {
    pub gguf_architecture: Option<String>,
    pub gguf_license: Option<String>,
    pub gguf_license_name: Option<String>,
    pub gguf_base_models: Vec<String>,
    pub card_license: Option<String>,
    pub card_license_name: Option<String>,
    pub card_base_models: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    pub files: usize,
    pub hashed_bytes: u64,
    pub cache_hits: usize,
    pub elapsed_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub target: String,
    /// `None` for an unlisted model.
    pub manifest: Option<ManifestSummary>,
    pub model: Option<ModelInfo>,
    pub files: Vec<FileReport>,
    /// Root digest of the files as found (when every listed file was hashed).
    pub root_digest: Option<String>,
    /// Root digest the manifest implies.
    pub expected_root_digest: Option<String>,
    pub license: Option<LicenseReport>,
    pub declared: Declared,
    pub openness: Option<OpennessReport>,
    /// OpenSSF model-signing bundles checked (the manifest's `[signature]`, `--signature`).
    pub signatures: Vec<SignatureCheckReport>,
    pub policy_source: Option<String>,
    pub decision: Decision,
    pub warnings: Vec<String>,
    pub stats: Stats,
}

impl Report {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The report for people.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = self.render_into(&mut o);
        o
    }

    fn render_into(&self, o: &mut String) -> std::fmt::Result {
        self.render_model(o)?;
        self.render_files(o)?;
        self.render_signatures(o)?;
        self.render_license(o)?;
        self.render_openness(o)?;
        self.render_decision(o)
    }

    /// Which model, by whom, from which manifest.
    fn render_model(&self, o: &mut String) -> std::fmt::Result {
        match (&self.manifest, &self.model) {
            (Some(m), Some(model)) => {
                writeln!(o, "model     {} ({})", model.name, m.id)?;
                writeln!(o, "publisher {}", model.publisher)?;
                if !model.base_models.is_empty() {
                    let rel = model
                        .base_model_relation
                        .map(|r| format!(" ({r:?})").to_lowercase())
                        .unwrap_or_default();
                    writeln!(o, "base      {}{rel}", model.base_models.join(", "))?;
                }
                writeln!(
                    o,
                    "manifest  {} [{}]",
                    m.path.as_deref().unwrap_or(&m.id),
                    m.attestation
                )?;
                if let Some(p) = &m.profile {
                    writeln!(o, "profile   {p} (license and openness of the family)")?;
                }
            }
            _ => writeln!(o, "model     {} (unlisted: no manifest)", self.target)?,
        }
        Ok(())
    }

    /// Each file with its size and hash, then the root digest.
    fn render_files(&self, o: &mut String) -> std::fmt::Result {
        writeln!(o, "\nfiles")?;
        let mut files = table();
        for f in &self.files {
            let status = match f.status {
                FileStatus::Ok => "ok",
                FileStatus::HashMismatch => "FAIL sha256",
                FileStatus::SizeMismatch => "FAIL size",
                FileStatus::Missing => "FAIL missing",
                FileStatus::Extra => "FAIL extra",
                FileStatus::Unsafe => "FAIL unsafe",
                FileStatus::Malformed => "FAIL malformed",
                FileStatus::Unlisted => "unlisted",
            };
            let size = f
                .actual_size
                .or(f.expected_size)
                .map(|s| format!("{s} bytes"))
                .unwrap_or_default();
            let cached = if f.cached { " (cached)" } else { "" };
            let hashes = if f.status == FileStatus::HashMismatch {
                format!(
                    "\nexpected {}\nactual   {}",
                    f.expected_sha256.as_deref().unwrap_or("?"),
                    f.actual_sha256.as_deref().unwrap_or("?")
                )
            } else if let Some(h) = f.actual_sha256.as_deref().or(f.expected_sha256.as_deref()) {
                format!("\nsha256 {h}")
            } else {
                String::new()
            };
            let mut hashes = hashes;
            if !f.hash_sources.is_empty() {
                let _ = write!(
                    hashes,
                    "\nsha256 published in: {}",
                    f.hash_sources.join("; ")
                );
            }
            if let Some(list) = &f.size_sources {
                let n = list.len();
                let only = if n == 1 { " only" } else { "" };
                let _ = write!(
                    hashes,
                    "\nsize seen in {n} source{}{only}: {}",
                    if n == 1 { "" } else { "s" },
                    list.join("; ")
                );
            }
            // The hash lines make the path's cell wide: it goes last.
            files.add_row([
                status.to_string(),
                format!("{size}{cached}"),
                format!("{}{hashes}", f.path),
            ]);
        }
        write_table(o, &files)?;
        if let Some(r) = self
            .root_digest
            .as_ref()
            .or(self.expected_root_digest.as_ref())
        {
            writeln!(o, "  root digest {r}")?;
        }
        Ok(())
    }

    /// Each signature bundle checked, and who signed.
    fn render_signatures(&self, o: &mut String) -> std::fmt::Result {
        for sc in &self.signatures {
            let state = if sc.verified { "verified" } else { "FAILED" };
            writeln!(o, "\nsignature {} [{state}]", sc.bundle)?;
            if let Some(r) = &sc.signature {
                writeln!(o, "          {}", r.summary())?;
                for c in r.signer.certificates.iter().skip(1) {
                    writeln!(o, "          issued by '{}'", c.subject)?;
                }
                writeln!(
                    o,
                    "          subject '{}' root digest {}",
                    r.model_name, r.subject_digest
                )?;
                if !r.unsigned_files.is_empty() {
                    writeln!(
                        o,
                        "          unsigned files allowed: {}",
                        r.unsigned_files.join(", ")
                    )?;
                }
            }
            if let Some(e) = &sc.error {
                writeln!(o, "          {e}")?;
            }
        }
        Ok(())
    }

    /// The license and its key terms.
    fn render_license(&self, o: &mut String) -> std::fmt::Result {
        if let Some(l) = &self.license {
            let version = l
                .version
                .as_deref()
                .map(|v| format!(", text of {v}"))
                .unwrap_or_default();
            writeln!(o, "\nlicense   {} ({}{version})", l.name, l.spdx)?;
            writeln!(o, "          {}", l.url)?;
            for a in &l.additional {
                writeln!(o, "  and     {} ({})", a.name, a.spdx)?;
                writeln!(o, "          {}", a.url)?;
                writeln!(o, "          because {}", a.reason)?;
            }
            if !l.additional.is_empty() {
                writeln!(o, "  terms of all of them together:")?;
            }
            for t in &l.at_a_glance {
                writeln!(o, "  - {t}")?;
            }
        }
        Ok(())
    }

    /// Achieved and claimed openness, each component's grade, and what the next level lacks.
    fn render_openness(&self, o: &mut String) -> std::fmt::Result {
        if let Some(op) = &self.openness {
            writeln!(
                o,
                "\nopenness  achieved {}, claimed {} (\"{}\", {})",
                op.achieved, op.claimed, op.claimed_wording, op.claim_source
            )?;
            writeln!(
                o,
                "          MOF class {}, OSAI-style score {:.2}",
                op.mof_class.unwrap_or("none"),
                op.osai_score
            )?;
            let mut components = table();
            for c in &op.components {
                components.add_row([
                    c.component.as_str(),
                    c.grade.as_str(),
                    c.license.as_deref().unwrap_or(""),
                ]);
            }
            write_table(o, &components)?;
            if let Some(next) = op.unmet.first() {
                writeln!(o, "  not {}:", next.level)?;
                for r in &next.reasons {
                    writeln!(o, "    - {r}")?;
                }
            }
        }
        Ok(())
    }

    /// Warnings, overrides in force, the decision and its reasons with their fixes.
    fn render_decision(&self, o: &mut String) -> std::fmt::Result {
        writeln!(o)?;
        for w in &self.warnings {
            writeln!(o, "warning: {w}")?;
        }
        for ov in &self.decision.overrides {
            writeln!(o, "override: {ov}")?;
        }
        let verdict = match self.decision.outcome {
            Outcome::Allowed => "ALLOWED",
            Outcome::IntegrityFailure => "REFUSED (integrity)",
            Outcome::Malformed => "REFUSED (malformed file)",
            Outcome::Refused => "REFUSED",
        };
        writeln!(o, "decision: {verdict}")?;
        for f in &self.decision.findings {
            writeln!(o, "  - {}", f.message)?;
            if let Some(fix) = &f.fix {
                writeln!(o, "    fix: {fix}")?;
            }
        }
        Ok(())
    }
}

/// A borderless table for the report's lists (files, components): aligned columns, two spaces
/// between them.
fn table() -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING);
    t
}

/// Writes `table` indented by two spaces, without trailing blanks.
fn write_table(o: &mut String, table: &comfy_table::Table) -> std::fmt::Result {
    for line in table.lines() {
        // The first column's left padding is the indent's first space.
        writeln!(o, " {}", line.trim_end())?;
    }
    Ok(())
}
