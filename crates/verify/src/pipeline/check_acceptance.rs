//! Stage 9: a license that must be accepted (Gemma's, Llama's) loads only with a recorded
//! acceptance, which is then printed as an override on every load.

use super::Check;
use crate::{manifest::Attestation, report::Reason};

pub(super) fn check(c: &mut Check) {
    let Some(m) = c.manifest else { return };
    if m.license.terms.must_accept {
        match c.opts.acceptances.find(m) {
            Some(a) => c.overrides.push(format!(
                "license {} accepted on {}; its terms apply",
                m.license.name,
                a.accepted_at_local()
            )),
            None => c.refuse(
                Reason::LicenseNotAccepted {
                    manifest_id: m.id().into(),
                    license: m.license.name.clone(),
                },
                format!("read the terms and run `candor license accept {}`", m.id()),
            ),
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
            match &hub.profile {
                Some(p) => format!("license and openness from the curated profile {p}"),
                None => "license and openness not assessed".into(),
            }
        )),
        _ => {}
    }
}
