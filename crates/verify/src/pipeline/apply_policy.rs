//! Stage 8: the user's policy (minimum level, allowed and denied licenses, commercial use,
//! signatures, unlisted models). A model without a manifest whose signature verified with a key
//! the user named is not unlisted: the signer vouches for its files.

use super::check_signatures::Signatures;
use super::Check;
use crate::{openness::Level, policy::Subject, report::Reason};

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
        c.refuse(Reason::Policy { violation: v });
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
