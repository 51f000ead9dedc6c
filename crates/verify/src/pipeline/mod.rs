//! `verify`, stage by stage: select the files, open them safely, hash them (through the
//! verification cache), check signatures, validate weight headers, compare what the files
//! declare with the manifest, judge the openness claim, apply the policy and the recorded
//! license acceptances, then assemble the report and decide. On success the opened, hashed
//! handles are handed over; on refusal the error carries the full report.
//!
//! Each stage is a module named for what it does; they share what they learn through [`Check`].

mod apply_policy;
mod assemble_report;
mod check_acceptance;
mod check_headers;
mod check_signatures;
mod compare_declared;
mod hash_files;
mod judge_openness;
mod open_files;
mod select_files;

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::{
    acceptance::AcceptanceStore,
    error::Result,
    files::{OpenedFile, VerifiedFile},
    filetypes,
    hashing::Progress,
    manifest::{FileEntry, FileFormat, FileRole, Manifest},
    openness::Level,
    policy::Policy,
    report::{FileReport, FileStatus, Finding, FixContext, Outcome, Reason, Report},
    signature::{SignatureOptions, VerifyKey},
};

#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Ignore the verification cache and hash every file.
    pub rehash: bool,
    /// Directory of the verification cache (the candor home); `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// `--accept-openness LEVEL`: load a model whose claim exceeds its achieved level, provided
    /// LEVEL is the achieved level.
    pub accept_openness: Option<Level>,
    /// `--allow-unlisted`.
    pub allow_unlisted: bool,
    /// Do not refuse weight files the manifest does not list.
    pub allow_extra: bool,
    pub policy: Policy,
    /// Where the policy came from, for messages and fixes.
    pub policy_source: Option<PathBuf>,
    pub acceptances: AcceptanceStore,
    /// Hashing threads; 0 = the number of CPUs.
    pub threads: usize,
    /// `--signature FILE` with `--public-key` or `--certificate-chain`: an OpenSSF model-signing
    /// bundle to verify over the model directory, besides any the manifest requires. A verified
    /// one vouches for a model that has no manifest.
    pub signature: Option<SignatureCheck>,
}

/// An OpenSSF model-signing bundle to check, and what it must verify with.
#[derive(Debug, Clone)]
pub struct SignatureCheck {
    pub bundle: PathBuf,
    pub key: VerifyKey,
    pub options: SignatureOptions,
}

impl VerifyOptions {
    /// Options that use the candor home: its cache, its acceptances and its `candor.toml`.
    pub fn with_home(home: &Path) -> Result<Self> {
        let policy_path = home.join(crate::policy::POLICY_FILE);
        Ok(VerifyOptions {
            cache_dir: Some(home.to_path_buf()),
            policy: Policy::load_from_home(home)?,
            policy_source: policy_path.exists().then_some(policy_path),
            acceptances: AcceptanceStore::load(home),
            ..Default::default()
        })
    }

    /// Where the policy came from, as a fix names it.
    fn policy_name(&self) -> String {
        self.policy_source
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "the policy".into())
    }
}

/// A successful verification: the report and the opened, hashed files in manifest order.
#[derive(Debug)]
pub struct Verification {
    pub report: Report,
    pub files: Vec<VerifiedFile>,
}

impl Verification {
    pub fn weights(&self) -> impl Iterator<Item = &VerifiedFile> {
        self.files
            .iter()
            .filter(|f| f.role.is_none_or(|r| r == FileRole::Weights))
    }
    pub fn file_by_role(&self, role: FileRole) -> Option<&VerifiedFile> {
        self.files.iter().find(|f| f.role == Some(role))
    }
    pub fn file(&self, rel_path: &str) -> Option<&VerifiedFile> {
        self.files.iter().find(|f| f.rel_path == rel_path)
    }
    pub fn into_files(self) -> Vec<VerifiedFile> {
        self.files
    }
}

/// What verification decided. A refusal is an outcome with its report, not an error: errors
/// are for checks that could not run (I/O, a bad manifest or option).
#[derive(Debug)]
pub enum Verdict {
    /// The files may be used; the report says what was checked and which overrides apply.
    Allowed(Box<Verification>),
    /// Integrity failure, malformed file or refusal by license, openness or policy: the report's
    /// decision says which, with each reason and its fix.
    Refused(Box<Report>),
}

impl Verdict {
    pub fn report(&self) -> &Report {
        match self {
            Verdict::Allowed(v) => &v.report,
            Verdict::Refused(r) => r,
        }
    }

    /// The verified files, or the refusal's report.
    pub fn allowed(self) -> std::result::Result<Verification, Box<Report>> {
        match self {
            Verdict::Allowed(v) => Ok(*v),
            Verdict::Refused(r) => Err(r),
        }
    }
}

/// Verify `target` (a model directory or a single file) against `manifest`, or as an unlisted
/// model when `manifest` is `None`.
pub fn verify(
    manifest: Option<&Manifest>,
    target: &Path,
    opts: &VerifyOptions,
    progress: &dyn Progress,
) -> Result<Verdict> {
    let started = Instant::now();
    let mut check = select_files::select(manifest, target, opts)?;
    open_files::open(&mut check)?;
    let hashed_bytes = hash_files::hash(&mut check, progress)?;
    hash_files::compare(&mut check);
    let signatures = check_signatures::check(&mut check)?;
    let headers = check_headers::validate(&mut check);
    let declared = compare_declared::compare(&mut check, &headers);
    let assessment = judge_openness::judge(&mut check);
    let achieved = assessment.as_ref().map_or(Level::Closed, |a| a.achieved);
    apply_policy::apply(&mut check, achieved, &signatures);
    check_acceptance::check(&mut check);
    let report = assemble_report::assemble(
        check.report_parts(target),
        declared,
        signatures.reports,
        assessment,
        hashed_bytes,
        started,
    );
    Ok(match report.decision.outcome {
        Outcome::Allowed => Verdict::Allowed(Box::new(Verification {
            files: check.into_verified(),
            report,
        })),
        _ => Verdict::Refused(Box::new(report)),
    })
}

/// What the stages have learnt so far, and what they found.
struct Check<'a> {
    manifest: Option<&'a Manifest>,
    opts: &'a VerifyOptions,
    /// The model directory (canonical); every file is opened relative to it.
    root: PathBuf,
    checked: Vec<CheckedFile>,
    /// Weight files next to a manifest's files that it does not list.
    extra: Vec<FileReport>,
    findings: Vec<Finding>,
    warnings: Vec<String>,
    overrides: Vec<String>,
}

impl Check<'_> {
    /// A reason to refuse, with what would let the user go on.
    fn refuse(&mut self, reason: Reason) {
        let policy = self.opts.policy_name();
        let ctx = FixContext {
            manifest: self.manifest,
            policy: &policy,
        };
        self.findings.push(Finding {
            kind: reason.kind(),
            message: reason.message(),
            fix: Some(reason.fix(&ctx)),
            reason,
        });
    }

    fn report_parts<'s>(&'s mut self, target: &'s Path) -> assemble_report::Parts<'s> {
        assemble_report::Parts {
            target,
            manifest: self.manifest,
            opts: self.opts,
            checked: &self.checked,
            extra: std::mem::take(&mut self.extra),
            findings: std::mem::take(&mut self.findings),
            warnings: std::mem::take(&mut self.warnings),
            overrides: std::mem::take(&mut self.overrides),
        }
    }

    /// The opened, hashed handles, once the decision allows them.
    fn into_verified(self) -> Vec<VerifiedFile> {
        self.checked
            .into_iter()
            .map(|s| {
                let role = s.role();
                let format = s.format();
                let o = s.opened.expect("allowed implies opened");
                VerifiedFile {
                    rel_path: s.report_path,
                    size: o.identity.size,
                    sha256: s.actual.expect("allowed implies hashed"),
                    role: Some(role),
                    format,
                    identity: o.identity,
                    opened_path: o.opened_path,
                    file: o.file,
                }
            })
            .collect()
    }
}

/// One file under check.
struct CheckedFile {
    /// The path the report names (the manifest's).
    report_path: String,
    /// The path on disk, relative to the root.
    disk_path: String,
    entry: Option<FileEntry>,
    opened: Option<OpenedFile>,
    actual: Option<[u8; 32]>,
    cached: bool,
    status: FileStatus,
    /// The weights format the file's header showed when it validated.
    detected: Option<FileFormat>,
}

impl CheckedFile {
    fn new(report_path: String, disk_path: String, entry: Option<FileEntry>) -> Self {
        CheckedFile {
            report_path,
            disk_path,
            status: if entry.is_some() {
                FileStatus::Ok
            } else {
                FileStatus::Unlisted
            },
            entry,
            opened: None,
            actual: None,
            cached: false,
            detected: None,
        }
    }

    /// What the file is: for weights, the format their validated header showed; otherwise the
    /// manifest's format or, for an unlisted file, the one its name implies.
    fn format(&self) -> Option<FileFormat> {
        self.detected
            .or(self.entry.as_ref().map(|e| e.format))
            .or_else(|| filetypes::kind_of(&self.disk_path).format)
    }

    /// The manifest's role, or for an unlisted file the role its name implies.
    fn role(&self) -> FileRole {
        match &self.entry {
            Some(e) => e.role,
            None => filetypes::role_of(&self.disk_path),
        }
    }
}
