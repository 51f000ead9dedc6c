//! Stage 9: a license that must be accepted (Gemma's, Llama's) loads only with a recorded
//! acceptance, which is then printed as an override on every load.

use super::Check;
use crate::{manifest::Attestation, report::Reason};

pub(super) fn check(c: &mut Check) {
    let Some(m) = c.manifest else { return };
    // Additional terms that must be accepted (Gemma's, carried by a model trained on Gemma
    // outputs) make the whole license must-accept.
    if m.license.effective_terms().must_accept {
        let names = m.license.names();
        match c.opts.acceptances.find(m) {
            Some(a) => c.overrides.push(format!(
                "license {names} accepted on {}; its terms apply",
                a.accepted_at_local()
            )),
            None => c.refuse(Reason::LicenseNotAccepted {
                manifest_id: m.id().into(),
                license: names,
            }),
        }
    }
    match (&m.attestation, &m.hub) {
        (Attestation::SelfAttested, _) => c.warnings.push(format!(
            "manifest {} is self-attested: written from local files, not checked against a publisher",
            m.id()
        )),
        (Attestation::Hub, Some(hub)) => c.warnings.push(format!(
            "manifest {} was imported from Hugging Face {}@{}: the hashes are the hub's, {}",
            m.id(),
            hub.repo,
            hub.commit.get(..12).unwrap_or(&hub.commit),
            match &m.profile {
                Some(p) => format!("license and openness from the family profile {p}"),
                None => "license and openness not assessed".into(),
            }
        )),
        _ => {}
    }
}
