//! Stage 8: the user's policy (minimum level, allowed and denied licenses, commercial use,
//! signatures, unlisted models). A model without a manifest whose signature verified with a key
//! the user named is not unlisted: the signer vouches for its files.

use super::check_signatures::Signatures;
use super::Check;
use crate::{
    openness::Level,
    policy::{PolicyViolation, Subject},
    report::Reason,
};

pub(super) fn apply(c: &mut Check, achieved: Level, signatures: &Signatures) {
    let unlisted = c.manifest.is_none();
    let unassessed = c.manifest.is_some_and(|m| m.is_unassessed());
    let vouched = unlisted && signatures.signed && signatures.command_line.is_some();
    if let (true, Some(summary)) = (vouched, &signatures.command_line) {
        c.overrides.push(format!(
            "no manifest: the files are trusted because the signature verified ({summary}); license and openness are unknown"
        ));
    }
    let subject = Subject {
        license: c.manifest.map(|m| &m.license),
        achieved,
        signed: signatures.signed,
        unlisted: unlisted && !vouched,
        unassessed,
    };
    let opts = c.opts;
    for v in opts.policy.evaluate(&subject, opts.allow_unlisted) {
        let fix = fix_for(&v, &policy_name(c));
        c.refuse(Reason::Policy { violation: v }, fix);
    }
    if unlisted && !vouched && (opts.allow_unlisted || opts.policy.allow_unlisted) {
        let by = if opts.allow_unlisted {
            "--allow-unlisted"
        } else {
            "policy allow_unlisted"
        };
        c.overrides.push(format!(
            "{by}: loading a model without a manifest (nothing was compared with a publisher)"
        ));
    }
    if unassessed && (opts.allow_unlisted || opts.policy.allow_unlisted) {
        let by = if opts.allow_unlisted {
            "--allow-unlisted"
        } else {
            "policy allow_unlisted"
        };
        c.overrides.push(format!(
            "{by}: loading a model whose license and openness nobody assessed (its hashes are the hub's)"
        ));
    }
}

fn policy_name(c: &Check) -> String {
    c.opts
        .policy_source
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "the policy".into())
}

/// What would let the model load despite `v`.
fn fix_for(v: &PolicyViolation, policy: &str) -> String {
    match v {
        PolicyViolation::UnlistedNotAllowed => {
            "pass --allow-unlisted, set allow_unlisted = true in the policy, or write a manifest with `candor manifest init`".to_string()
        }
        PolicyViolation::UnassessedNotAllowed => format!(
            "pass --allow-unlisted or set allow_unlisted = true in {policy} to load it with unassessed terms, or assess its [license] and [openness] in the manifest and name their source as profile in its [hub] table"
        ),
        PolicyViolation::BelowMinLevel { achieved, .. } => format!(
            "set min_level = \"{achieved}\" (or lower) in {policy}, or use --policy with another policy"
        ),
        PolicyViolation::LicenseNotAllowed { license, .. } => {
            format!("add {license} to allow_licenses in {policy}")
        }
        PolicyViolation::LicenseDenied { denied, .. } => {
            format!("remove {denied} from deny_licenses in {policy}")
        }
        PolicyViolation::CommercialUseRequired { .. } => {
            format!("set require_commercial_use = false in {policy}")
        }
        PolicyViolation::SignatureRequired => format!(
            "verify an OpenSSF model-signing bundle: a [signature] table in the manifest, or --signature FILE with --public-key KEY or --certificate-chain CA; or set require_signature = false in {policy}"
        ),
    }
}
