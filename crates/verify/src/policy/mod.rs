//! The user's policy (`candor.toml` in the candor home, or `--policy FILE`). Every key is
//! optional; an unknown key, an empty list, an empty string or an unknown level is an error, so a
//! typo never silently loosens the policy.

use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::{
    error::{Error, Result},
    license::{self, License},
    openness::Level,
};

pub(crate) mod problem;

pub use problem::PolicyProblem;

pub const POLICY_FILE: &str = "candor.toml";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// The lowest achieved openness level a model may have.
    pub min_level: Option<Level>,
    /// If set, the model's license (every id in its expression) must be one of these.
    pub allow_licenses: Option<Vec<String>>,
    /// Licenses never loaded.
    pub deny_licenses: Vec<String>,
    /// The license must allow commercial use.
    pub require_commercial_use: bool,
    /// The model must carry a verified OpenSSF model-signing signature (the manifest's
    /// `[signature]`, or `--signature` on the command line).
    pub require_signature: bool,
    /// Models without a manifest may be loaded.
    pub allow_unlisted: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    min_level: Option<Spanned<String>>,
    allow_licenses: Option<Spanned<Vec<String>>>,
    deny_licenses: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    require_commercial_use: bool,
    #[serde(default)]
    require_signature: bool,
    #[serde(default)]
    allow_unlisted: bool,
}

/// A rule of the policy that a model breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum PolicyViolation {
    BelowMinLevel {
        required: Level,
        achieved: Level,
    },
    LicenseNotAllowed {
        license: String,
        allowed: Vec<String>,
    },
    LicenseDenied {
        license: String,
        denied: String,
    },
    CommercialUseRequired {
        license: String,
    },
    SignatureRequired,
    UnlistedNotAllowed,
    /// A manifest imported from the hub whose license and openness no curated profile supplied.
    UnassessedNotAllowed,
}

impl PolicyViolation {
    /// What would let the model load anyway; `policy` names where the policy came from.
    pub fn fix(&self, policy: &str) -> String {
        match self {
            PolicyViolation::UnlistedNotAllowed => {
                "pass --allow-unlisted, set allow_unlisted = true in the policy, or write a manifest with `candor manifest init`".to_string()
            }
            PolicyViolation::UnassessedNotAllowed => format!(
                "pass --allow-unlisted or set allow_unlisted = true in {policy} to load it with unassessed terms, or name a family profile in the manifest (profile = \"NAME\", from manifests/families/ or your own in the families/ folder next to it)"
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
}

impl std::fmt::Display for PolicyViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyViolation::BelowMinLevel { required, achieved } => {
                write!(
                    f,
                    "policy min_level = \"{required}\"; the model achieves {achieved}"
                )
            }
            PolicyViolation::LicenseNotAllowed { license, allowed } => {
                write!(
                    f,
                    "policy allow_licenses = [{}] does not include {license}",
                    allowed.join(", ")
                )
            }
            PolicyViolation::LicenseDenied { license, denied } => {
                write!(
                    f,
                    "policy deny_licenses includes {denied} (model license: {license})"
                )
            }
            PolicyViolation::CommercialUseRequired { license } => {
                write!(
                    f,
                    "policy require_commercial_use = true; {license} does not allow commercial use"
                )
            }
            PolicyViolation::SignatureRequired => {
                write!(
                    f,
                    "policy require_signature = true; the model has no verified signature"
                )
            }
            PolicyViolation::UnlistedNotAllowed => {
                write!(
                    f,
                    "the model has no manifest and the policy does not allow unlisted models"
                )
            }
            PolicyViolation::UnassessedNotAllowed => {
                write!(
                    f,
                    "the manifest was imported from the hub without a curated license and openness profile; the policy refuses such models as it refuses unlisted ones"
                )
            }
        }
    }
}

/// What the policy judges.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// `None` for an unlisted model (license unknown).
    pub license: Option<&'a License>,
    pub achieved: Level,
    pub signed: bool,
    pub unlisted: bool,
    /// Listed by a `hub` manifest whose license and openness are not assessed.
    pub unassessed: bool,
}

fn matches_entry(entry: &str, id: &str, license: &License) -> bool {
    let e = license::normalize(entry);
    e == license::normalize(id)
        || e == license::normalize(&license.spdx)
        || license
            .hf_id
            .as_deref()
            .is_some_and(|h| e == license::normalize(h))
}

impl Policy {
    /// Parse policy text; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Policy> {
        let line_of = |off: usize| {
            text.as_bytes()[..off.min(text.len())]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1
        };
        let err = |span: Option<std::ops::Range<usize>>, problem| Error::Policy {
            path: origin.to_path_buf(),
            line: span.map(|s| line_of(s.start)),
            problem,
        };
        let raw: RawPolicy = toml::from_str(text).map_err(|e| {
            err(
                e.span(),
                PolicyProblem::Syntax(e.message().trim().to_string()),
            )
        })?;
        let min_level = match raw.min_level {
            None => None,
            Some(s) => Some(s.get_ref().parse::<Level>().map_err(|_| {
                err(
                    Some(s.span()),
                    PolicyProblem::UnknownLevel(s.get_ref().clone()),
                )
            })?),
        };
        let list =
            |v: Option<Spanned<Vec<String>>>, name: &'static str| -> Result<Option<Vec<String>>> {
                match v {
                    None => Ok(None),
                    Some(s) if s.get_ref().is_empty() => {
                        Err(err(Some(s.span()), PolicyProblem::EmptyList(name)))
                    }
                    Some(s) if s.get_ref().iter().any(|x| x.trim().is_empty()) => {
                        Err(err(Some(s.span()), PolicyProblem::EmptyValue(name)))
                    }
                    Some(s) => Ok(Some(s.into_inner())),
                }
            };
        Ok(Policy {
            min_level,
            allow_licenses: list(raw.allow_licenses, "allow_licenses")?,
            deny_licenses: list(raw.deny_licenses, "deny_licenses")?.unwrap_or_default(),
            require_commercial_use: raw.require_commercial_use,
            require_signature: raw.require_signature,
            allow_unlisted: raw.allow_unlisted,
        })
    }

    pub fn load(path: &Path) -> Result<Policy> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if meta.len() > 1 << 20 {
            return Err(Error::Policy {
                path: path.to_path_buf(),
                line: None,
                problem: PolicyProblem::Syntax("policy file larger than 1 MiB".into()),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// `<home>/candor.toml` if it exists, else the default policy (no constraints beyond refusing
    /// unlisted models).
    pub fn load_from_home(home: &Path) -> Result<Policy> {
        let p = home.join(POLICY_FILE);
        if p.exists() {
            Self::load(&p)
        } else {
            Ok(Policy::default())
        }
    }

    /// Every rule the subject breaks. `allow_unlisted_flag` is the CLI's `--allow-unlisted`.
    pub fn evaluate(&self, s: &Subject<'_>, allow_unlisted_flag: bool) -> Vec<PolicyViolation> {
        let mut out = Vec::new();
        // Hashes alone say nothing about terms: a model whose license and openness nobody
        // assessed needs the same consent as one without a manifest.
        let unlisted_ok = self.allow_unlisted || allow_unlisted_flag;
        if s.unlisted && !unlisted_ok {
            out.push(PolicyViolation::UnlistedNotAllowed);
        }
        if s.unassessed && !unlisted_ok {
            out.push(PolicyViolation::UnassessedNotAllowed);
        }
        if let Some(min) = self.min_level {
            if s.achieved < min {
                out.push(PolicyViolation::BelowMinLevel {
                    required: min,
                    achieved: s.achieved,
                });
            }
        }
        // Additional terms (a base model's license, terms carried from training data) count as
        // much as the model's own license.
        let expr = s.license.map(License::expression);
        let shown = expr.clone().unwrap_or_else(|| "an unknown license".into());
        if let Some(allowed) = &self.allow_licenses {
            let ok = s.license.zip(expr.as_deref()).is_some_and(|(l, expr)| {
                let ids = license::license_ids(expr);
                allowed
                    .iter()
                    .any(|a| license::normalize(a) == license::normalize(expr))
                    || (!ids.is_empty()
                        && ids
                            .iter()
                            .all(|id| allowed.iter().any(|a| matches_entry(a, id, l))))
            });
            if !ok {
                out.push(PolicyViolation::LicenseNotAllowed {
                    license: shown.clone(),
                    allowed: allowed.clone(),
                });
            }
        }
        if let Some((l, expr)) = s.license.zip(expr.as_deref()) {
            for id in license::license_ids(expr) {
                if let Some(d) = self.deny_licenses.iter().find(|d| matches_entry(d, &id, l)) {
                    out.push(PolicyViolation::LicenseDenied {
                        license: expr.to_string(),
                        denied: d.clone(),
                    });
                    break;
                }
            }
        }
        if self.require_commercial_use
            && !s.license.is_some_and(|l| {
                let t = l.effective_terms();
                t.commercial_use && !t.non_commercial_only
            })
        {
            out.push(PolicyViolation::CommercialUseRequired { license: shown });
        }
        if self.require_signature && !s.signed {
            out.push(PolicyViolation::SignatureRequired);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::license::LicenseTerms;

    fn p(text: &str) -> Result<Policy> {
        Policy::parse(text, Path::new("candor.toml"))
    }

    fn problem(r: Result<Policy>) -> (Option<usize>, PolicyProblem) {
        match r {
            Err(Error::Policy { line, problem, .. }) => (line, problem),
            other => panic!("expected a policy error, got {other:?}"),
        }
    }

    fn lic(spdx: &str, hf: &str, commercial: bool) -> License {
        let mut terms = LicenseTerms::permissive();
        terms.commercial_use = commercial;
        License {
            spdx: spdx.into(),
            name: spdx.into(),
            hf_id: Some(hf.into()),
            hf_license_name: None,
            url: "u".into(),
            version: None,
            terms,
            additional: Vec::new(),
        }
    }

    /// A model with `license` (an unlisted one without), at `achieved`, unsigned and assessed.
    fn subject(license: Option<&License>, achieved: Level) -> Subject<'_> {
        Subject {
            license,
            achieved,
            signed: false,
            unlisted: license.is_none(),
            unassessed: false,
        }
    }

    #[test]
    fn unassessed_terms_need_the_consent_unlisted_models_need() {
        let l = lic("Apache-2.0", "apache-2.0", false);
        let s = Subject {
            unassessed: true,
            ..subject(Some(&l), Level::Closed)
        };
        let default = Policy::default();
        assert_eq!(
            default.evaluate(&s, false),
            vec![PolicyViolation::UnassessedNotAllowed]
        );
        assert!(default.evaluate(&s, true).is_empty(), "--allow-unlisted");
        let allowing = p("allow_unlisted = true").unwrap();
        assert!(allowing.evaluate(&s, false).is_empty());
    }

    #[test]
    fn empty_policy_only_refuses_unlisted() {
        let pol = p("").unwrap();
        assert_eq!(pol, Policy::default());
        let l = lic("Apache-2.0", "apache-2.0", true);
        let s = subject(Some(&l), Level::Closed);
        assert!(pol.evaluate(&s, false).is_empty());
        let s = subject(None, Level::Closed);
        assert_eq!(
            pol.evaluate(&s, false),
            vec![PolicyViolation::UnlistedNotAllowed]
        );
        assert!(pol.evaluate(&s, true).is_empty());
    }

    #[test]
    fn fails_closed_on_bad_values() {
        assert_eq!(
            problem(p("min_level = \"opensource\"")),
            (Some(1), PolicyProblem::UnknownLevel("opensource".into()))
        );
        assert_eq!(
            problem(p("min_level = \"\"")).1,
            PolicyProblem::UnknownLevel(String::new())
        );
        assert_eq!(
            problem(p("\nallow_licenses = []")),
            (Some(2), PolicyProblem::EmptyList("allow_licenses"))
        );
        assert_eq!(
            problem(p("deny_licenses = [\"\"]")).1,
            PolicyProblem::EmptyValue("deny_licenses")
        );
        assert!(matches!(
            problem(p("\n\nmin_levle = \"open-source\"")),
            (Some(3), PolicyProblem::Syntax(_))
        ));
        assert!(matches!(
            problem(p("allow_unlisted = \"yes\"")),
            (Some(1), PolicyProblem::Syntax(_))
        ));
    }

    /// Every rule on its own and all their combinations, against a permissive commercial license
    /// and a restricted non-commercial one, at every level.
    #[test]
    fn truth_table() {
        let apache = lic("Apache-2.0", "apache-2.0", true);
        let restricted = lic("LicenseRef-Gemma-Terms-of-Use", "gemma", false);
        for bits in 0u32..64 {
            let min_level = (bits & 1 != 0).then_some(Level::OpenSource);
            let allow = (bits & 2 != 0).then(|| vec!["Apache-2.0".to_string()]);
            let deny = if bits & 4 != 0 {
                vec!["gemma".to_string()]
            } else {
                vec![]
            };
            let commercial = bits & 8 != 0;
            let signature = bits & 16 != 0;
            let unlisted_ok = bits & 32 != 0;
            let pol = Policy {
                min_level,
                allow_licenses: allow.clone(),
                deny_licenses: deny.clone(),
                require_commercial_use: commercial,
                require_signature: signature,
                allow_unlisted: unlisted_ok,
            };
            for level in Level::ALL {
                for (l, is_apache) in [(&apache, true), (&restricted, false)] {
                    for signed in [false, true] {
                        for unlisted in [false, true] {
                            let license = if unlisted { None } else { Some(l) };
                            let s = Subject {
                                signed,
                                ..subject(license, level)
                            };
                            let got = pol.evaluate(&s, false);
                            let has = |f: fn(&PolicyViolation) -> bool| got.iter().any(f);
                            let known_apache = !unlisted && is_apache;
                            assert_eq!(
                                has(|v| matches!(v, PolicyViolation::UnlistedNotAllowed)),
                                unlisted && !unlisted_ok
                            );
                            assert_eq!(
                                has(|v| matches!(v, PolicyViolation::BelowMinLevel { .. })),
                                min_level.is_some_and(|m| level < m)
                            );
                            assert_eq!(
                                has(|v| matches!(v, PolicyViolation::LicenseNotAllowed { .. })),
                                allow.is_some() && !known_apache
                            );
                            assert_eq!(
                                has(|v| matches!(v, PolicyViolation::LicenseDenied { .. })),
                                !deny.is_empty() && !unlisted && !is_apache
                            );
                            assert_eq!(
                                has(|v| matches!(v, PolicyViolation::CommercialUseRequired { .. })),
                                commercial && !known_apache
                            );
                            assert_eq!(
                                has(|v| matches!(v, PolicyViolation::SignatureRequired)),
                                signature && !signed
                            );
                            let any_expected = (unlisted && !unlisted_ok)
                                || min_level.is_some_and(|m| level < m)
                                || (allow.is_some() && !known_apache)
                                || (!deny.is_empty() && !unlisted && !is_apache)
                                || (commercial && !known_apache)
                                || (signature && !signed);
                            assert_eq!(
                                !got.is_empty(),
                                any_expected,
                                "bits {bits:06b} level {level} {got:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn license_lists_accept_hf_spellings() {
        let pol = p("allow_licenses = [\"apache-2.0\", \"MIT\"]\ndeny_licenses = [\"LicenseRef-Gemma-Terms-of-Use\"]").unwrap();
        let apache = lic("Apache-2.0", "apache-2.0", true);
        let s = subject(Some(&apache), Level::OpenSource);
        assert!(pol.evaluate(&s, false).is_empty());
        let gemma = lic("LicenseRef-Gemma-Terms-of-Use", "gemma", true);
        let s = subject(Some(&gemma), Level::OpenWeights);
        let v = pol.evaluate(&s, false);
        assert!(v
            .iter()
            .any(|v| matches!(v, PolicyViolation::LicenseDenied { .. })));
        assert!(v
            .iter()
            .any(|v| matches!(v, PolicyViolation::LicenseNotAllowed { .. })));
    }
}
