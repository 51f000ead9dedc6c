//! Stage 4: OpenSSF model-signing bundles — the manifest's `[signature]` and the command line's
//! `--signature`. Every file handed over must be covered by a signature that verified, and be the
//! very file (same identity, same digest) that the hash stage read.

use std::collections::HashMap;
use std::path::PathBuf;

use super::Check;
use crate::{
    error::{Error, ErrorKind, Result},
    files::FileIdentity,
    report::{Reason, SignatureCheckReport, SignatureSource},
    signature::{self, SignatureOptions, SignatureReport, VerifyKey},
};

/// What the signature checks found.
pub(super) struct Signatures {
    pub reports: Vec<SignatureCheckReport>,
    /// At least one signature verified and none failed.
    pub signed: bool,
    /// The summary of a `--signature` that verified: it vouches for a model without a manifest.
    pub command_line: Option<String>,
}

/// One bundle to check: where it came from, the key, the options and the fix if it fails.
struct Planned<'a> {
    source: SignatureSource,
    bundle: PathBuf,
    key: &'a VerifyKey,
    options: SignatureOptions,
}

pub(super) fn check(c: &mut Check) -> Result<Signatures> {
    let mut found = Signatures {
        reports: Vec::new(),
        signed: false,
        command_line: None,
    };
    let mut failed = false;
    for p in planned(c) {
        let shown = p.bundle.display().to_string();
        match signature::verify_bundle(&p.bundle, &c.root, p.key, &p.options) {
            Ok(rep) => {
                let problems = uncovered(c, &rep);
                for w in &rep.warnings {
                    c.warnings.push(format!("{shown}: {w}"));
                }
                let error = (!problems.is_empty()).then(|| problems.join("; "));
                if let Some(e) = &error {
                    failed = true;
                    c.refuse(Reason::SignatureInvalid {
                        bundle: shown.clone(),
                        source: p.source,
                        error: format!("{shown}: {e}"),
                        files: Vec::new(),
                    });
                } else if p.source == SignatureSource::CommandLine {
                    found.command_line = Some(rep.summary());
                }
                found.reports.push(SignatureCheckReport {
                    source: p.source,
                    bundle: shown,
                    verified: error.is_none(),
                    signature: Some(rep),
                    error,
                });
            }
            // A key or bundle type the user chose that cannot work: a usage error, not a verdict.
            Err(e) if p.source == SignatureSource::CommandLine && e.kind() == ErrorKind::Usage => {
                return Err(Error::Signature(e))
            }
            Err(e) if e.kind() != ErrorKind::Io => {
                failed = true;
                c.refuse(Reason::SignatureInvalid {
                    bundle: shown.clone(),
                    source: p.source,
                    error: e.to_string(),
                    files: e.file_problems().to_vec(),
                });
                found.reports.push(SignatureCheckReport {
                    source: p.source,
                    bundle: shown,
                    verified: false,
                    signature: None,
                    error: Some(e.to_string()),
                });
            }
            Err(e) => return Err(Error::Signature(e)),
        }
    }
    found.signed = !failed && found.reports.iter().any(|r| r.verified);
    Ok(found)
}

/// The bundles to check, each told the digests the hash stage computed (so files are not read
/// twice, and a file swapped in between is caught).
fn planned<'a>(c: &Check<'a>) -> Vec<Planned<'a>> {
    let known: HashMap<String, ([u8; 32], FileIdentity)> = c
        .checked
        .iter()
        .filter_map(|s| {
            Some((
                s.disk_path.clone(),
                (s.actual?, s.opened.as_ref()?.identity),
            ))
        })
        .collect();
    let mut out = Vec::new();
    if let Some(spec) = c.manifest.and_then(|m| m.signature.as_ref()) {
        out.push(Planned {
            source: SignatureSource::Manifest,
            bundle: c.root.join(&spec.path),
            key: spec.verify_key(),
            options: SignatureOptions {
                allow_unsigned_files: c.opts.allow_extra,
                expected_subject_digest: spec.expect_subject_digest,
                threads: c.opts.threads,
                known_digests: known.clone(),
                ..Default::default()
            },
        });
    }
    if let Some(sc) = &c.opts.signature {
        let mut options = sc.options.clone();
        options.known_digests = known;
        if options.threads == 0 {
            options.threads = c.opts.threads;
        }
        out.push(Planned {
            source: SignatureSource::CommandLine,
            bundle: sc.bundle.clone(),
            key: &sc.key,
            options,
        });
    }
    out
}

/// Files the verified signature does not vouch for: not covered, changed between the checks,
/// or with another digest than the signed one.
fn uncovered(c: &Check, rep: &SignatureReport) -> Vec<String> {
    let mut problems = Vec::new();
    for s in &c.checked {
        if !rep.covers(&s.disk_path) {
            problems.push(format!("{}: not covered by the signature", s.report_path));
            continue;
        }
        let id = rep.identities.iter().find(|(p, _)| *p == s.disk_path);
        if let (Some(o), Some((_, id))) = (&s.opened, id) {
            if o.identity != *id {
                problems.push(format!(
                    "{}: changed between the hash and the signature checks",
                    s.report_path
                ));
            }
        }
        if let (Some(a), Some(h)) = (s.actual, rep.file_sha256(&s.disk_path)) {
            if hex::encode(a) != h {
                problems.push(format!(
                    "{}: sha256 {} is not the signed {h}",
                    s.report_path,
                    hex::encode(a)
                ));
            }
        }
    }
    problems
}
