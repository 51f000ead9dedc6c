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
    /// The dated text the terms were read from (`2024-02-21`), when the terms depend on which
    /// text applies; absent means the current text at `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub terms: LicenseTerms,
    /// Other licenses or terms the model is also subject to (a base model's license, terms of a
    /// model whose outputs it was trained on). Their terms flow into `effective_terms`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional: Vec<AdditionalTerms>,
}

/// A license or set of terms that applies on top of the model's own license.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdditionalTerms {
    /// SPDX expression (`LicenseRef-…` for custom terms).
    pub spdx: String,
    pub name: String,
    pub url: String,
    /// Why these terms apply, with where the publisher says so.
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub terms: LicenseTerms,
}

impl License {
    /// Every license the model is under, its own first: (SPDX expression, human name).
    pub fn each(&self) -> impl Iterator<Item = (&str, &str)> {
        std::iter::once((self.spdx.as_str(), self.name.as_str())).chain(
            self.additional
                .iter()
                .map(|a| (a.spdx.as_str(), a.name.as_str())),
        )
    }

    /// Every license the model is under by its human name, joined with ` + ` (as refusals and
    /// overrides name what must be accepted).
    pub fn names(&self) -> String {
        self.each()
            .map(|(_, name)| name)
            .collect::<Vec<_>>()
            .join(" + ")
    }

    /// Every license the model is under, as one SPDX expression: the model's own `AND` each
    /// additional one. Equal to `spdx` when there are no additional terms.
    pub fn expression(&self) -> String {
        let parts: Vec<&str> = self.each().map(|(spdx, _)| spdx).collect();
        if parts.len() == 1 {
            return self.spdx.clone();
        }
        parts
            .iter()
            .map(|p| {
                if p.trim().contains(' ') {
                    format!("({})", p.trim())
                } else {
                    p.trim().to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// The terms that bind a user: the model's own combined with every additional set, the most
    /// restrictive value winning (a grant needs every license to give it; a restriction in any
    /// one applies).
    pub fn effective_terms(&self) -> LicenseTerms {
        self.additional
            .iter()
            .fold(self.terms.clone(), |acc, a| acc.combined_with(&a.terms))
    }
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

    /// Both sets of terms at once: grants where both grant, restrictions where either restricts,
    /// the lower non-zero threshold, every excluded region and every notice.
    pub fn combined_with(&self, other: &LicenseTerms) -> LicenseTerms {
        let threshold = |a: u64, b: u64| match (a, b) {
            (0, x) | (x, 0) => x,
            (a, b) => a.min(b),
        };
        let text = |a: &Option<String>, b: &Option<String>| match (a, b) {
            (Some(a), Some(b)) if a != b => Some(format!("{a}; {b}")),
            (a, b) => a.clone().or_else(|| b.clone()),
        };
        let mut regions = self.region_exclusions.clone();
        for r in &other.region_exclusions {
            if !regions.contains(r) {
                regions.push(r.clone());
            }
        }
        LicenseTerms {
            commercial_use: self.commercial_use && other.commercial_use,
            redistribution: self.redistribution && other.redistribution,
            derivatives: self.derivatives && other.derivatives,
            non_commercial_only: self.non_commercial_only || other.non_commercial_only,
            non_production_only: self.non_production_only || other.non_production_only,
            field_of_use_restrictions: self.field_of_use_restrictions
                || other.field_of_use_restrictions,
            restrictions_flow_down: self.restrictions_flow_down || other.restrictions_flow_down,
            policy_may_change_unilaterally: self.policy_may_change_unilaterally
                || other.policy_may_change_unilaterally,
            mau_threshold: threshold(self.mau_threshold, other.mau_threshold),
            revenue_threshold_usd: threshold(
                self.revenue_threshold_usd,
                other.revenue_threshold_usd,
            ),
            no_training_other_models: self.no_training_other_models
                || other.no_training_other_models,
            outputs_restricted: self.outputs_restricted || other.outputs_restricted,
            region_exclusions: regions,
            must_accept: self.must_accept || other.must_accept,
            licensor_may_restrict_remotely: self.licensor_may_restrict_remotely
                || other.licensor_may_restrict_remotely,
            must_use_latest_version: self.must_use_latest_version || other.must_use_latest_version,
            hosted_service_needs_license: self.hosted_service_needs_license
                || other.hosted_service_needs_license,
            attribution_notice: text(&self.attribution_notice, &other.attribution_notice),
            display_phrase: text(&self.display_phrase, &other.display_phrase),
            derivative_name_prefix: text(
                &self.derivative_name_prefix,
                &other.derivative_name_prefix,
            ),
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
            version: None,
            terms: LicenseTerms::permissive(),
            additional: Vec::new(),
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
            version: None,
            terms: LicenseTerms::unknown(),
            additional: Vec::new(),
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

    #[test]
    fn additional_terms_flow_into_the_effective_terms() {
        let mut gemma = LicenseTerms::permissive();
        gemma.field_of_use_restrictions = true;
        gemma.must_accept = true;
        gemma.licensor_may_restrict_remotely = true;
        gemma.mau_threshold = 500;
        gemma.region_exclusions = vec!["EU:multimodal".into()];
        gemma.attribution_notice = Some("Gemma notice".into());
        let mut own = LicenseTerms::permissive();
        own.mau_threshold = 1000;
        own.attribution_notice = Some("own notice".into());
        let mut l = apache();
        l.terms = own;
        assert_eq!(l.expression(), "Apache-2.0");
        assert!(!l.effective_terms().must_accept);
        l.additional.push(AdditionalTerms {
            spdx: "LicenseRef-Gemma-Terms-of-Use".into(),
            name: "Gemma Terms of Use".into(),
            url: "https://ai.google.dev/gemma/terms".into(),
            reason: "trained on Gemma outputs".into(),
            version: None,
            terms: gemma,
        });
        assert_eq!(
            l.expression(),
            "Apache-2.0 AND LicenseRef-Gemma-Terms-of-Use"
        );
        assert!(is_valid_spdx_expression(&l.expression()));
        assert!(!is_osi_approved(&l.expression()));
        let t = l.effective_terms();
        assert!(t.must_accept && t.field_of_use_restrictions && t.licensor_may_restrict_remotely);
        assert!(t.commercial_use && t.redistribution);
        assert_eq!(t.mau_threshold, 500, "the lower threshold binds");
        assert_eq!(t.region_exclusions, vec!["EU:multimodal".to_string()]);
        assert_eq!(
            t.attribution_notice.as_deref(),
            Some("own notice; Gemma notice")
        );
        // The model's own terms are kept as written.
        assert!(!l.terms.must_accept);
        // Combining is idempotent: the same terms twice change nothing.
        assert_eq!(t.combined_with(&t), t);
    }
}
