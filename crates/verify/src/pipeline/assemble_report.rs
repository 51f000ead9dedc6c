//! Stage 10: the report — every file with its expected and actual size and hash, the root
//! digest, license terms, openness per component, signatures, the findings ordered by severity
//! and the decision they lead to.

use std::path::Path;
use std::time::Instant;

use super::{CheckedFile, VerifyOptions};
use crate::{
    error::ErrorKind,
    license,
    manifest::{self, Manifest},
    openness::{Assessment, Component},
    report::*,
};

/// What the stages leave for the report.
pub(super) struct Parts<'a> {
    pub target: &'a Path,
    pub manifest: Option<&'a Manifest>,
    pub opts: &'a VerifyOptions,
    pub checked: &'a [CheckedFile],
    pub extra: Vec<FileReport>,
    pub findings: Vec<Finding>,
    pub warnings: Vec<String>,
    pub overrides: Vec<String>,
}

pub(super) fn assemble(
    p: Parts,
    declared: Declared,
    signatures: Vec<SignatureCheckReport>,
    assessment: Option<Assessment>,
    hashed_bytes: u64,
    started: Instant,
) -> Report {
    let manifest = p.manifest;
    let mut findings = p.findings;
    // Integrity first, then malformed files, then refusals: the first finding names the outcome.
    let severity = |k: ErrorKind| match k {
        ErrorKind::Integrity => 0,
        ErrorKind::Malformed => 1,
        _ => 2,
    };
    findings.sort_by_key(|f| severity(f.kind));
    let outcome = match findings.first().map(|f| f.kind) {
        None => Outcome::Allowed,
        Some(ErrorKind::Integrity) => Outcome::IntegrityFailure,
        Some(ErrorKind::Malformed) => Outcome::Malformed,
        Some(_) => Outcome::Refused,
    };
    let mut files: Vec<FileReport> = p.checked.iter().map(file_report).collect();
    files.extend(p.extra);
    Report {
        schema_version: REPORT_SCHEMA_VERSION,
        target: p.target.display().to_string(),
        manifest: manifest.map(|m| ManifestSummary {
            id: m.id().into(),
            attestation: m.attestation,
            path: m.path().map(|p| p.display().to_string()),
            digest: hex::encode(m.digest()),
            profile: m.profile.clone(),
            hub: m.hub.clone(),
        }),
        model: manifest.map(|m| m.model.clone()),
        files,
        root_digest: root_digest(manifest, p.checked),
        expected_root_digest: manifest.map(|m| hex::encode(m.computed_root_digest())),
        license: manifest.map(license_report),
        declared,
        signatures,
        openness: manifest.zip(assessment).map(|(m, a)| openness_report(m, a)),
        policy_source: p
            .opts
            .policy_source
            .as_ref()
            .map(|p| p.display().to_string()),
        decision: Decision {
            outcome,
            findings,
            overrides: p.overrides,
        },
        warnings: p.warnings,
        stats: Stats {
            files: p.checked.len(),
            hashed_bytes,
            cache_hits: p.checked.iter().filter(|s| s.cached).count(),
            elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
        },
    }
}

fn file_report(s: &CheckedFile) -> FileReport {
    FileReport {
        path: s.report_path.clone(),
        role: Some(s.role()),
        format: s.entry.as_ref().map(|e| e.format),
        status: s.status,
        expected_size: s.entry.as_ref().map(|e| e.size),
        actual_size: s.opened.as_ref().map(|o| o.identity.size),
        expected_sha256: s.entry.as_ref().map(|e| e.sha256_hex()),
        actual_sha256: s.actual.map(hex::encode),
        cached: s.cached,
        hash_sources: s
            .entry
            .as_ref()
            .map(|e| e.hash_sources.clone())
            .unwrap_or_default(),
        size_sources: s.entry.as_ref().and_then(|e| e.size_sources.clone()),
    }
}

/// The root digest of what was found, once every listed file has been hashed.
fn root_digest(manifest: Option<&Manifest>, checked: &[CheckedFile]) -> Option<String> {
    let all_hashed = checked.iter().all(|s| s.actual.is_some());
    (manifest.is_some() && all_hashed).then(|| {
        hex::encode(manifest::root_digest(checked.iter().map(|s| {
            (s.report_path.as_str(), s.actual.as_ref().expect("hashed"))
        })))
    })
}

fn license_report(m: &Manifest) -> LicenseReport {
    let l = &m.license;
    let terms = l.effective_terms();
    LicenseReport {
        spdx: l.spdx.clone(),
        name: l.name.clone(),
        url: l.url.clone(),
        hf_id: l.hf_id.clone(),
        version: l.version.clone(),
        expression: l.expression(),
        additional: l
            .additional
            .iter()
            .map(|a| AdditionalLicenseReport {
                spdx: a.spdx.clone(),
                name: a.name.clone(),
                url: a.url.clone(),
                reason: a.reason.clone(),
                version: a.version.clone(),
            })
            .collect(),
        osi_approved: license::is_osi_approved(&l.expression()),
        at_a_glance: terms.at_a_glance(),
        terms,
    }
}

fn openness_report(m: &Manifest, a: Assessment) -> OpennessReport {
    OpennessReport {
        claimed: m.openness.claimed,
        claimed_wording: m.openness.claimed_wording.clone(),
        claim_source: m.openness.claim_source.clone(),
        achieved: a.achieved,
        mof_class: a.mof_class,
        osai_score: a.osai_score,
        components: Component::ALL
            .iter()
            .map(|&c| {
                let g = m.openness.components.get(&c);
                ComponentReport {
                    component: c,
                    grade: m.openness.grade(c),
                    license: g.and_then(|g| g.license.clone()),
                    evidence: g.and_then(|g| g.evidence.clone()),
                    note: g.and_then(|g| g.note.clone()),
                }
            })
            .collect(),
        unmet: a.unmet,
    }
}
