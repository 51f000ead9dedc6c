//! Openness is graded per Model Openness Framework component with the OSAI index's tri-state
//! (plus `absent`), and the achieved level is computed from the grades and the license terms. A
//! publisher's claim is kept verbatim, and is only believed as far as the grades carry it.

use std::{collections::BTreeMap, fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::license::{self, License};

/// Openness levels, lowest to highest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    Closed,
    OpenWeights,
    OpenWeightsPermissive,
    OpenSource,
    OpenScience,
}

impl Level {
    pub const ALL: [Level; 5] = [
        Level::Closed,
        Level::OpenWeights,
        Level::OpenWeightsPermissive,
        Level::OpenSource,
        Level::OpenScience,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Closed => "closed",
            Level::OpenWeights => "open-weights",
            Level::OpenWeightsPermissive => "open-weights-permissive",
            Level::OpenSource => "open-source",
            Level::OpenScience => "open-science",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown openness level '{0}' (expected one of: closed, open-weights, open-weights-permissive, open-source, open-science)")]
pub struct UnknownLevel(pub String);

impl FromStr for Level {
    type Err = UnknownLevel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Level::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| UnknownLevel(s.to_string()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grade {
    Open,
    Partial,
    Closed,
    Absent,
}

impl Grade {
    fn score(self) -> f64 {
        match self {
            Grade::Open => 1.0,
            Grade::Partial => 0.5,
            Grade::Closed | Grade::Absent => 0.0,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Grade::Open => "open",
            Grade::Partial => "partial",
            Grade::Closed => "closed",
            Grade::Absent => "absent",
        }
    }
}

/// The Model Openness Framework's 17 components.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    ModelArchitecture,
    DataPreprocessingCode,
    TrainingCode,
    InferenceCode,
    EvaluationCode,
    SupportingLibraries,
    ModelParametersFinal,
    ModelParametersIntermediate,
    Datasets,
    EvaluationData,
    ModelMetadata,
    SampleModelOutputs,
    ModelCard,
    DataCard,
    TechnicalReport,
    ResearchPaper,
    EvaluationResults,
}

/// What kind of license suits a component, per the MOF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ContentType {
    Code,
    Data,
    Doc,
}

impl Component {
    pub const ALL: [Component; 17] = [
        Component::ModelArchitecture,
        Component::DataPreprocessingCode,
        Component::TrainingCode,
        Component::InferenceCode,
        Component::EvaluationCode,
        Component::SupportingLibraries,
        Component::ModelParametersFinal,
        Component::ModelParametersIntermediate,
        Component::Datasets,
        Component::EvaluationData,
        Component::ModelMetadata,
        Component::SampleModelOutputs,
        Component::ModelCard,
        Component::DataCard,
        Component::TechnicalReport,
        Component::ResearchPaper,
        Component::EvaluationResults,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Component::ModelArchitecture => "model_architecture",
            Component::DataPreprocessingCode => "data_preprocessing_code",
            Component::TrainingCode => "training_code",
            Component::InferenceCode => "inference_code",
            Component::EvaluationCode => "evaluation_code",
            Component::SupportingLibraries => "supporting_libraries",
            Component::ModelParametersFinal => "model_parameters_final",
            Component::ModelParametersIntermediate => "model_parameters_intermediate",
            Component::Datasets => "datasets",
            Component::EvaluationData => "evaluation_data",
            Component::ModelMetadata => "model_metadata",
            Component::SampleModelOutputs => "sample_model_outputs",
            Component::ModelCard => "model_card",
            Component::DataCard => "data_card",
            Component::TechnicalReport => "technical_report",
            Component::ResearchPaper => "research_paper",
            Component::EvaluationResults => "evaluation_results",
        }
    }

    fn content_type(self) -> ContentType {
        use Component::*;
        match self {
            ModelArchitecture
            | DataPreprocessingCode
            | TrainingCode
            | InferenceCode
            | EvaluationCode
            | SupportingLibraries => ContentType::Code,
            ModelParametersFinal
            | ModelParametersIntermediate
            | Datasets
            | EvaluationData
            | ModelMetadata
            | SampleModelOutputs => ContentType::Data,
            ModelCard | DataCard | TechnicalReport | ResearchPaper | EvaluationResults => {
                ContentType::Doc
            }
        }
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentGrade {
    pub grade: Grade,
    /// SPDX expression; when omitted the manifest's `[license].spdx` applies (MOF inheritance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// Where the component can be found or the grade is justified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Openness {
    /// The publisher's claim, mapped onto our levels.
    pub claimed: Level,
    /// The publisher's own words, verbatim ("open models", "fully open").
    pub claimed_wording: String,
    /// Where the publisher says it.
    pub claim_source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assessed_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assessed_at: Option<String>,
    /// One entry per MOF component; an omitted component is `absent`.
    #[serde(default)]
    pub components: BTreeMap<Component, ComponentGrade>,
}

impl Openness {
    pub fn grade(&self, c: Component) -> Grade {
        self.components
            .get(&c)
            .map(|g| g.grade)
            .unwrap_or(Grade::Absent)
    }
}

/// Why a level is not reached: one sentence per failed rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LevelFailure {
    pub level: Level,
    pub reasons: Vec<String>,
}

/// The computed openness of a manifest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assessment {
    pub achieved: Level,
    /// For every level above the achieved one, the rules it fails.
    pub unmet: Vec<LevelFailure>,
    /// MOF class reached: "I", "II", "III" or none.
    pub mof_class: Option<&'static str>,
    /// Mean of open = 1, partial = 0.5, closed/absent = 0 over the 17 components (OSAI-style).
    pub osai_score: f64,
}

impl Assessment {
    /// The reasons `level` is not reached (empty if it is).
    pub fn failures_for(&self, level: Level) -> Vec<String> {
        self.unmet
            .iter()
            .filter(|f| f.level <= level)
            .flat_map(|f| f.reasons.clone())
            .collect()
    }
}

struct Rules<'a> {
    openness: &'a Openness,
    license: &'a License,
}

impl Rules<'_> {
    fn license_of(&self, c: Component) -> String {
        let own = self
            .openness
            .components
            .get(&c)
            .and_then(|g| g.license.clone())
            .unwrap_or_else(|| self.license.spdx.clone());
        if c != Component::ModelParametersFinal {
            return own;
        }
        // Additional terms bind the weights whatever the component's own entry says.
        let ids = license::license_ids(&own);
        let mut expr = own;
        for a in &self.license.additional {
            if !license::license_ids(&a.spdx)
                .iter()
                .all(|id| ids.contains(id))
            {
                expr = format!("{} AND {}", paren(&expr), paren(&a.spdx));
            }
        }
        expr
    }

    fn require_grade(&self, level: Level, c: Component, ok: &[Grade], out: &mut Vec<String>) {
        let g = self.openness.grade(c);
        if !ok.contains(&g) {
            let want: Vec<&str> = ok.iter().map(|g| g.as_str()).collect();
            out.push(format!(
                "{level} requires {c} {}; manifest grades it {}",
                want.join(" or "),
                g.as_str()
            ));
        }
    }

    /// `c` graded open, and under a license that `licensed` accepts (`what` names that kind).
    fn require_open_under(
        &self,
        level: Level,
        c: Component,
        licensed: fn(&str) -> bool,
        what: &str,
        out: &mut Vec<String>,
    ) {
        let before = out.len();
        self.require_grade(level, c, &[Grade::Open], out);
        if out.len() > before {
            return;
        }
        let lic = self.license_of(c);
        if !licensed(&lic) {
            out.push(format!(
                "{level} requires {c} under {what}; manifest records {lic}"
            ));
        }
    }

    fn open_weights(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.require_grade(
            Level::OpenWeights,
            Component::ModelParametersFinal,
            &[Grade::Open, Grade::Partial],
            &mut out,
        );
        out
    }

    fn permissive(&self) -> Vec<String> {
        let level = Level::OpenWeightsPermissive;
        let mut out = Vec::new();
        self.require_grade(
            level,
            Component::ModelParametersFinal,
            &[Grade::Open],
            &mut out,
        );
        let lic = self.license_of(Component::ModelParametersFinal);
        if !(license::is_osi_approved(&lic) || license::is_open_data_license(&lic)) {
            out.push(format!(
                "{level} requires model_parameters_final under an OSI-approved or open data license; manifest records {lic}"
            ));
        }
        let t = &self.license.effective_terms();
        let mut term = |bad: bool, what: &str| {
            if bad {
                out.push(format!(
                    "{level} requires {what}; license terms say otherwise"
                ));
            }
        };
        term(!t.commercial_use, "commercial use allowed");
        term(!t.redistribution, "redistribution allowed");
        term(!t.derivatives, "derivatives allowed");
        term(t.non_commercial_only, "no non-commercial-only clause");
        term(t.non_production_only, "no non-production-only clause");
        term(t.field_of_use_restrictions, "no field-of-use restrictions");
        term(t.mau_threshold > 0, "no user-count threshold");
        term(t.revenue_threshold_usd > 0, "no revenue threshold");
        term(
            t.no_training_other_models,
            "no ban on training other models",
        );
        term(!t.region_exclusions.is_empty(), "no region exclusions");
        term(
            t.licensor_may_restrict_remotely,
            "no right of the licensor to restrict usage",
        );
        out
    }

    fn open_source(&self) -> Vec<String> {
        let level = Level::OpenSource;
        let mut out = Vec::new();
        for c in [
            Component::ModelArchitecture,
            Component::InferenceCode,
            Component::TrainingCode,
            Component::DataPreprocessingCode,
        ] {
            self.require_open_under(
                level,
                c,
                license::is_osi_approved,
                "an OSI-approved license",
                &mut out,
            );
        }
        self.require_grade(level, Component::DataCard, &[Grade::Open], &mut out);
        self.require_grade(
            level,
            Component::Datasets,
            &[Grade::Open, Grade::Partial],
            &mut out,
        );
        out
    }

    fn class_components(class: u8) -> &'static [Component] {
        use Component::*;
        match class {
            3 => &[
                ModelArchitecture,
                ModelParametersFinal,
                ModelCard,
                DataCard,
                TechnicalReport,
                EvaluationResults,
            ],
            2 => &[TrainingCode, InferenceCode, EvaluationCode, EvaluationData],
            _ => &[
                Datasets,
                DataPreprocessingCode,
                ModelParametersIntermediate,
                ResearchPaper,
            ],
        }
    }

    /// MOF class rules: each required component open under a license suited to its type.
    fn mof_class(&self, class: u8) -> Vec<String> {
        let level = Level::OpenScience;
        let mut out = Vec::new();
        let has_paper = self.openness.grade(Component::ResearchPaper) == Grade::Open;
        for cls in (class..=3).rev() {
            for &c in Self::class_components(cls) {
                // Class I accepts a research paper in place of the technical report.
                if c == Component::TechnicalReport && class == 1 && has_paper {
                    continue;
                }
                let licensed: fn(&str) -> bool = match c.content_type() {
                    ContentType::Code => license::is_osi_approved,
                    ContentType::Data => license::is_open_data_license,
                    ContentType::Doc => license::is_open_doc_license,
                };
                self.require_open_under(
                    level,
                    c,
                    licensed,
                    "an open license suited to its type",
                    &mut out,
                );
            }
        }
        out
    }
}

/// An SPDX expression ready to be joined with `AND`.
fn paren(expr: &str) -> String {
    let e = expr.trim();
    if e.contains(' ') {
        format!("({e})")
    } else {
        e.to_string()
    }
}

/// Compute the highest level whose rules (and those of every level below it) hold.
pub fn assess(openness: &Openness, license: &License) -> Assessment {
    let rules = Rules { openness, license };
    let checks: [(Level, Vec<String>); 4] = [
        (Level::OpenWeights, rules.open_weights()),
        (Level::OpenWeightsPermissive, rules.permissive()),
        (Level::OpenSource, rules.open_source()),
        (Level::OpenScience, rules.mof_class(1)),
    ];
    let mut achieved = Level::Closed;
    let mut broken = false;
    let mut unmet = Vec::new();
    for (level, reasons) in checks {
        if reasons.is_empty() && !broken {
            achieved = level;
        } else {
            broken = true;
            unmet.push(LevelFailure { level, reasons });
        }
    }
    let mof_class = if rules.mof_class(1).is_empty() {
        Some("I")
    } else if rules.mof_class(2).is_empty() {
        Some("II")
    } else if rules.mof_class(3).is_empty() {
        Some("III")
    } else {
        None
    };
    let osai_score = Component::ALL
        .iter()
        .map(|c| openness.grade(*c).score())
        .sum::<f64>()
        / Component::ALL.len() as f64;
    Assessment {
        achieved,
        unmet,
        mof_class,
        osai_score: (osai_score * 1000.0).round() / 1000.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::license::LicenseTerms;

    fn lic(spdx: &str, terms: LicenseTerms) -> License {
        License {
            spdx: spdx.into(),
            name: spdx.into(),
            hf_id: None,
            hf_license_name: None,
            url: "https://example.org".into(),
            version: None,
            terms,
            additional: Vec::new(),
        }
    }

    fn grades(list: &[(Component, Grade)]) -> Openness {
        Openness {
            claimed: Level::OpenWeights,
            claimed_wording: "open".into(),
            claim_source: "https://example.org".into(),
            assessed_by: None,
            assessed_at: None,
            components: list
                .iter()
                .map(|(c, g)| {
                    (
                        *c,
                        ComponentGrade {
                            grade: *g,
                            license: None,
                            evidence: None,
                            note: None,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn nothing_published_is_closed() {
        let a = assess(&grades(&[]), &lic("Apache-2.0", LicenseTerms::permissive()));
        assert_eq!(a.achieved, Level::Closed);
        assert_eq!(a.mof_class, None);
        assert!(a.failures_for(Level::OpenWeights)[0].contains("model_parameters_final"));
    }

    #[test]
    fn gated_weights_are_open_weights_only() {
        use Component::*;
        let a = assess(
            &grades(&[(ModelParametersFinal, Grade::Partial)]),
            &lic("Apache-2.0", LicenseTerms::permissive()),
        );
        assert_eq!(a.achieved, Level::OpenWeights);
    }

    #[test]
    fn restricted_license_stops_at_open_weights() {
        use Component::*;
        let mut terms = LicenseTerms::permissive();
        terms.field_of_use_restrictions = true;
        let a = assess(
            &grades(&[(ModelParametersFinal, Grade::Open)]),
            &lic("LicenseRef-X", terms),
        );
        assert_eq!(a.achieved, Level::OpenWeights);
        let f = a.failures_for(Level::OpenWeightsPermissive);
        assert!(f.iter().any(|r| r.contains("field-of-use")), "{f:?}");
        assert!(f.iter().any(|r| r.contains("OSI-approved")), "{f:?}");
    }

    #[test]
    fn open_source_names_the_failing_component() {
        use Component::*;
        let o = grades(&[
            (ModelParametersFinal, Grade::Open),
            (ModelArchitecture, Grade::Open),
            (InferenceCode, Grade::Open),
            (TrainingCode, Grade::Closed),
            (DataPreprocessingCode, Grade::Open),
            (DataCard, Grade::Open),
            (Datasets, Grade::Partial),
        ]);
        let a = assess(&o, &lic("Apache-2.0", LicenseTerms::permissive()));
        assert_eq!(a.achieved, Level::OpenWeightsPermissive);
        assert_eq!(
            a.failures_for(Level::OpenSource),
            vec!["open-source requires training_code open; manifest grades it closed".to_string()]
        );
    }

    #[test]
    fn full_release_under_open_licenses_is_open_science() {
        let mut o = grades(&[]);
        for c in Component::ALL {
            let license = match c.content_type() {
                ContentType::Code => "Apache-2.0",
                ContentType::Data => "CDLA-Permissive-2.0",
                ContentType::Doc => "CC-BY-4.0",
            };
            o.components.insert(
                c,
                ComponentGrade {
                    grade: Grade::Open,
                    license: Some(license.into()),
                    evidence: None,
                    note: None,
                },
            );
        }
        let a = assess(&o, &lic("Apache-2.0", LicenseTerms::permissive()));
        assert_eq!(a.achieved, Level::OpenScience);
        assert_eq!(a.mof_class, Some("I"));
        assert_eq!(a.osai_score, 1.0);
    }

    #[test]
    fn levels_parse_and_order() {
        assert_eq!("open-source".parse::<Level>().unwrap(), Level::OpenSource);
        assert!("opensource".parse::<Level>().is_err());
        assert!(Level::OpenWeights < Level::OpenWeightsPermissive);
        assert!(Level::OpenSource < Level::OpenScience);
    }
}
