//! A license is recorded in a manifest by its SPDX expression (or `LicenseRef-…` for custom
//! licenses such as Gemma's), its Hugging Face card id and its key terms as explicit fields: the same
//! family changes terms between versions, so nothing is inferred from a name.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct License {
    /// SPDX expression, e.g. `Apache-2.0` or `LicenseRef-Gemma-Terms-of-Use`.
    pub spdx: String,
    /// Human name, e.g. "Gemma Terms of Use".
    pub name: String,
    /// Hugging Face model-card id (`apache-2.0`, `gemma`, `llama3.1`, `other`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hf_id: Option<String>,
    /// With `hf_id = "other"`: the card's `license_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hf_license_name: Option<String>,
    pub url: String,
    pub terms: LicenseTerms,
}

/// The machine-checkable essence of a license. Every boolean is required: a missing term is a
/// manifest error rather than a silent default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenseTerms {
    pub commercial_use: bool,
    pub redistribution: bool,
    pub derivatives: bool,
    /// Research or non-commercial use only (Mistral MRL, Qwen research).
    pub non_commercial_only: bool,
    /// Non-production use only (Mistral MNPL).
    pub non_production_only: bool,
    /// An acceptable-use or prohibited-use policy, or RAIL-style use restrictions.
    pub field_of_use_restrictions: bool,
    /// Restrictions must be passed on to downstream users and derivatives.
    pub restrictions_flow_down: bool,
    /// The licensor may change the use policy on its own.
    pub policy_may_change_unilaterally: bool,
    /// Monthly active users above which a separate license is needed; 0 = none.
    pub mau_threshold: u64,
    /// Revenue above which a separate license or royalty applies; 0 = none.
    pub revenue_threshold_usd: u64,
    /// Using the model or its outputs to improve other models is forbidden.
    pub no_training_other_models: bool,
    /// Outputs carry restrictions.
    pub outputs_restricted: bool,
    /// Regions or groups excluded from the grant, e.g. `["EU:multimodal"]`.
    pub region_exclusions: Vec<String>,
    /// The user must accept the license before use (gated on the hub).
    pub must_accept: bool,
    /// The licensor reserves the right to restrict usage, remotely or otherwise.
    pub licensor_may_restrict_remotely: bool,
    /// Users must make reasonable efforts to use the latest version.
    pub must_use_latest_version: bool,
    /// Offering the model as a hosted service needs a separate license.
    pub hosted_service_needs_license: bool,
    /// Notice text that must accompany redistribution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribution_notice: Option<String>,
    /// Phrase that must be displayed ("Built with Llama").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_phrase: Option<String>,
    /// Derivative model names must begin with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derivative_name_prefix: Option<String>,
}

impl LicenseTerms {
    /// The terms of a permissive license with nothing to accept (Apache-2.0, MIT).
    pub fn permissive() -> Self {
        LicenseTerms {
            commercial_use: true,
            redistribution: true,
            derivatives: true,
            non_commercial_only: false,
            non_production_only: false,
            field_of_use_restrictions: false,
            restrictions_flow_down: false,
            policy_may_change_unilaterally: false,
            mau_threshold: 0,
            revenue_threshold_usd: 0,
            no_training_other_models: false,
            outputs_restricted: false,
            region_exclusions: Vec::new(),
            must_accept: false,
            licensor_may_restrict_remotely: false,
            must_use_latest_version: false,
            hosted_service_needs_license: false,
            attribution_notice: None,
            display_phrase: None,
            derivative_name_prefix: None,
        }
    }

    /// Conservative terms for a license we know nothing about.
    pub fn unknown() -> Self {
        LicenseTerms {
            commercial_use: false,
            redistribution: false,
            derivatives: false,
            non_commercial_only: true,
            field_of_use_restrictions: true,
            ..Self::permissive()
        }
    }

    /// The terms that restrict use, one short line each, for "license at a glance".
    pub fn at_a_glance(&self) -> Vec<String> {
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        let mut out = vec![
            format!("commercial use: {}", yes_no(self.commercial_use)),
            format!("redistribution: {}", yes_no(self.redistribution)),
            format!("derivatives: {}", yes_no(self.derivatives)),
        ];
        let mut push = |cond: bool, s: &str| {
            if cond {
                out.push(s.to_string())
            }
        };
        push(self.must_accept, "must be accepted before use");
        push(self.non_commercial_only, "non-commercial use only");
        push(self.non_production_only, "non-production use only");
        push(
            self.field_of_use_restrictions,
            "field-of-use restrictions (use policy applies)",
        );
        push(
            self.restrictions_flow_down,
            "restrictions must be passed on to downstream users",
        );
        push(
            self.policy_may_change_unilaterally,
            "the licensor may change the use policy",
        );
        push(
            self.licensor_may_restrict_remotely,
            "the licensor may restrict usage remotely",
        );
        push(
            self.no_training_other_models,
            "no training of other models with it or its outputs",
        );
        push(self.outputs_restricted, "outputs are restricted");
        push(
            self.must_use_latest_version,
            "must make reasonable efforts to use the latest version",
        );
        push(
            self.hosted_service_needs_license,
            "hosted-service use needs a separate license",
        );
        if self.mau_threshold > 0 {
            out.push(format!(
                "separate license above {} monthly active users",
                self.mau_threshold
            ));
        }
        if self.revenue_threshold_usd > 0 {
            out.push(format!(
                "separate terms above USD {} revenue",
                self.revenue_threshold_usd
            ));
        }
        if !self.region_exclusions.is_empty() {
            out.push(format!("excluded: {}", self.region_exclusions.join(", ")));
        }
        if let Some(p) = &self.derivative_name_prefix {
            out.push(format!("derivative names must begin with \"{p}\""));
        }
        if let Some(p) = &self.display_phrase {
            out.push(format!("display \"{p}\""));
        }
        if let Some(n) = &self.attribution_notice {
            out.push(format!("notice: \"{n}\""));
        }
        out
    }
}

/// Hugging Face card ids that name an SPDX license under another spelling.
const HF_TO_SPDX: &[(&str, &str)] = &[
    ("apache-2.0", "Apache-2.0"),
    ("mit", "MIT"),
    ("bsd-2-clause", "BSD-2-Clause"),
    ("bsd-3-clause", "BSD-3-Clause"),
    ("cc0-1.0", "CC0-1.0"),
    ("cc-by-4.0", "CC-BY-4.0"),
    ("cc-by-sa-4.0", "CC-BY-SA-4.0"),
    ("cc-by-nc-4.0", "CC-BY-NC-4.0"),
    ("gpl-3.0", "GPL-3.0-only"),
    ("lgpl-3.0", "LGPL-3.0-only"),
    ("mpl-2.0", "MPL-2.0"),
    ("unlicense", "Unlicense"),
    ("cdla-permissive-2.0", "CDLA-Permissive-2.0"),
    ("openrail", "LicenseRef-OpenRAIL"),
    ("gemma", "LicenseRef-Gemma-Terms-of-Use"),
];

/// A comparable form of a license identifier: SPDX ids and Hugging Face ids that name the same
/// license compare equal ("apache-2.0" and "Apache-2.0"); everything else compares
/// case-insensitively after trimming.
pub fn normalize(id: &str) -> String {
    let t = id.trim();
    let lower = t.to_ascii_lowercase();
    for (hf, spdx) in HF_TO_SPDX {
        if lower == *hf {
            return spdx.to_ascii_lowercase();
        }
    }
    lower
}

/// Whether a license string a model declares names the manifest's license.
///
/// Accepted spellings: the SPDX expression, the Hugging Face id (also as mapped to SPDX), the
/// license's name, and with `other` the `license_name`.
pub fn declared_matches(declared: &str, license: &License) -> bool {
    let d = normalize(declared);
    if d.is_empty() {
        return false;
    }
    let mut candidates = vec![normalize(&license.spdx), normalize(&license.name)];
    if let Some(h) = &license.hf_id {
        candidates.push(normalize(h));
    }
    if let Some(n) = &license.hf_license_name {
        candidates.push(normalize(n));
    }
    if let Some(rest) = license.spdx.strip_prefix("LicenseRef-") {
        candidates.push(normalize(rest));
    }
    candidates.contains(&d)
}

/// Whether a string parses as an SPDX expression (custom licenses as `LicenseRef-…`).
pub fn is_valid_spdx_expression(expr: &str) -> bool {
    spdx::Expression::parse(expr).is_ok()
}

/// Whether every license an expression may require is OSI-approved (`OR` needs one branch).
/// `LicenseRef-…` licenses are never OSI-approved.
/// Whether `expr` parses and holds when each SPDX id in it counts as `ok` says; custom
/// (`LicenseRef-`) licenses never count, and an expression that does not parse never holds.
fn holds_for(expr: &str, ok: impl Fn(spdx::LicenseId) -> bool) -> bool {
    match spdx::Expression::parse(expr) {
        Ok(e) => e.evaluate(|req| match &req.license {
            spdx::LicenseItem::Spdx { id, .. } => ok(*id),
            spdx::LicenseItem::Other { .. } => false,
        }),
        Err(_) => false,
    }
}

pub fn is_osi_approved(expr: &str) -> bool {
    holds_for(expr, |id| id.is_osi_approved())
}

/// The Model Openness Framework's open licenses for data-type components (weights, datasets).
const MOF_OPEN_DATA: &[&str] = &[
    "CDLA-Permissive-1.0",
    "CDLA-Permissive-2.0",
    "CC0-1.0",
    "PDDL-1.0",
    "C-UDA-1.0",
    "CC-PDDC",
    "CC-BY-4.0",
    "OpenMDW-1.0",
];

/// The Model Openness Framework's open licenses for documentation.
const MOF_OPEN_DOC: &[&str] = &[
    "CC-BY-4.0",
    "CC-BY-SA-3.0",
    "CC-BY-SA-4.0",
    "CC0-1.0",
    "Apache-2.0",
    "OpenMDW-1.0",
];

fn all_ids_in(expr: &str, allowed: &[&str]) -> bool {
    holds_for(expr, |id| {
        allowed.iter().any(|a| a.eq_ignore_ascii_case(id.name))
    })
}

/// A license the MOF counts as open for data (weights, datasets); CC-BY-4.0 is included as
/// provenance.md's permissive-weights rule lists it.
pub fn is_open_data_license(expr: &str) -> bool {
    all_ids_in(expr, MOF_OPEN_DATA)
}

/// A license the MOF counts as open for documentation.
pub fn is_open_doc_license(expr: &str) -> bool {
    all_ids_in(expr, MOF_OPEN_DOC)
}

/// Every license id an expression mentions (custom ones as written), for policy lists.
pub fn license_ids(expr: &str) -> Vec<String> {
    match spdx::Expression::parse(expr) {
        Ok(e) => e
            .requirements()
            .map(|r| match &r.req.license {
                spdx::LicenseItem::Spdx { id, .. } => id.name.to_string(),
                spdx::LicenseItem::Other { .. } => r.req.license.to_string(),
            })
            .collect(),
        Err(_) => vec![expr.trim().to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apache() -> License {
        License {
            spdx: "Apache-2.0".into(),
            name: "Apache License 2.0".into(),
            hf_id: Some("apache-2.0".into()),
            hf_license_name: None,
            url: "https://www.apache.org/licenses/LICENSE-2.0".into(),
            terms: LicenseTerms::permissive(),
        }
    }

    #[test]
    fn hf_id_and_spdx_compare_equal() {
        assert_eq!(normalize("apache-2.0"), normalize("Apache-2.0"));
        assert!(declared_matches("apache-2.0", &apache()));
        assert!(declared_matches("Apache-2.0", &apache()));
        assert!(!declared_matches("mit", &apache()));
        assert!(!declared_matches("", &apache()));
    }

    #[test]
    fn gemma_spellings() {
        let gemma = License {
            spdx: "LicenseRef-Gemma-Terms-of-Use".into(),
            name: "Gemma Terms of Use".into(),
            hf_id: Some("gemma".into()),
            hf_license_name: None,
            url: "https://ai.google.dev/gemma/terms".into(),
            terms: LicenseTerms::unknown(),
        };
        assert!(declared_matches("gemma", &gemma));
        assert!(declared_matches("Gemma Terms of Use", &gemma));
        assert!(!declared_matches("apache-2.0", &gemma));
    }

    #[test]
    fn osi_and_mof_lists() {
        assert!(is_osi_approved("Apache-2.0"));
        assert!(is_osi_approved("MIT OR LicenseRef-X"));
        assert!(!is_osi_approved("MIT AND LicenseRef-X"));
        assert!(!is_osi_approved("LicenseRef-Gemma-Terms-of-Use"));
        assert!(!is_osi_approved("not a license ("));
        assert!(is_open_data_license("CDLA-Permissive-2.0"));
        assert!(!is_open_data_license("Apache-2.0"));
        assert!(is_open_doc_license("Apache-2.0"));
        assert!(is_valid_spdx_expression("LicenseRef-Gemma-Terms-of-Use"));
        assert_eq!(license_ids("MIT AND Apache-2.0"), vec!["MIT", "Apache-2.0"]);
    }
}
