//! Stage 6: what the files say about themselves — a GGUF's license, base models and
//! architecture, a model card's front matter — recorded for the report and, where a manifest
//! lists the model, compared with it (re-uploads often mislabel the license).

use super::check_headers::GgufHeaders;
use super::Check;
use crate::{
    files::open_in_dir,
    filetypes::read_bounded,
    formats::gguf::GgufHeader,
    license,
    manifest::{FileRole, Manifest},
    model_card::{self, CardInfo},
    report::{Declared, FileStatus, Reason},
};

pub(super) fn compare(c: &mut Check, gguf: &GgufHeaders) -> Declared {
    let mut declared = Declared::default();
    for (path, h) in gguf {
        // A split GGUF's later parts carry only the tensors: keep what the first part declared.
        let base_models = base_models_of(h);
        if declared.gguf_architecture.is_none() {
            declared.gguf_architecture = h.architecture().map(str::to_string);
        }
        if declared.gguf_license.is_none() {
            declared.gguf_license = h.license().map(str::to_string);
        }
        if declared.gguf_license_name.is_none() {
            declared.gguf_license_name = h.license_name().map(str::to_string);
        }
        if declared.gguf_base_models.is_empty() {
            declared.gguf_base_models = base_models.clone();
        }
        if let Some(m) = c.manifest {
            compare_gguf(c, m, path, h, &base_models);
        }
    }
    if let Some((card_path, info)) = read_card(c) {
        declared.card_license = info.license.clone();
        declared.card_license_name = info.license_name.clone();
        declared.card_base_models = info.base_model.clone();
        if let Some(m) = c.manifest {
            compare_card(c, m, &card_path, &info);
        }
    }
    declared
}

/// `general.base_model.*`: the repo URL, else organization/name.
fn base_models_of(h: &GgufHeader) -> Vec<String> {
    h.base_models()
        .into_iter()
        .filter_map(|b| {
            b.repo_url.or_else(|| match (b.organization, b.name) {
                (Some(o), Some(n)) => Some(format!("{o}/{}", n.replace(' ', "-"))),
                (None, Some(n)) => Some(n),
                _ => None,
            })
        })
        .collect()
}

fn compare_gguf(c: &mut Check, m: &Manifest, path: &str, h: &GgufHeader, base_models: &[String]) {
    let src = |k: &str| format!("{path} (GGUF {k})");
    let licenses = [
        ("general.license", h.license(), &m.license.spdx),
        ("general.license.name", h.license_name(), &m.license.name),
    ];
    for (key, declared, manifest) in licenses {
        if let Some(l) = declared.filter(|l| !license::declared_matches(l, &m.license)) {
            let reason = Reason::DeclaredLicenseMismatch {
                source: src(key),
                declared: l.into(),
                manifest: manifest.clone(),
            };
            c.refuse(reason);
        }
    }
    compare_base_models(c, m, &src("general.base_model"), base_models);
    if let Some(a) = h.architecture() {
        if !a.eq_ignore_ascii_case(&m.model.architecture) {
            let reason = Reason::DeclaredArchitectureMismatch {
                source: src("general.architecture"),
                declared: a.into(),
                manifest: m.model.architecture.clone(),
            };
            c.refuse(reason);
        }
    }
}

fn compare_card(c: &mut Check, m: &Manifest, card_path: &str, info: &CardInfo) {
    let src = format!("{card_path} (front matter)");
    // `license: other` with a `license_name` names the license by the latter.
    let card_id = match (info.license.as_deref(), info.license_name.as_deref()) {
        (Some("other"), Some(n)) => Some(n),
        (Some(l), _) => Some(l),
        (None, n) => n,
    };
    if let Some(l) = card_id.filter(|l| !license::declared_matches(l, &m.license)) {
        let reason = Reason::DeclaredLicenseMismatch {
            source: src.clone(),
            declared: l.into(),
            manifest: m.license.spdx.clone(),
        };
        c.refuse(reason);
    }
    compare_base_models(c, m, &src, &info.base_model);
}

fn compare_base_models(c: &mut Check, m: &Manifest, source: &str, declared: &[String]) {
    for b in declared {
        if !base_model_matches(b, &m.model.base_models) {
            let reason = Reason::DeclaredBaseModelMismatch {
                source: source.to_string(),
                declared: b.clone(),
                manifest: m.model.base_models.clone(),
            };
            c.refuse(reason);
        }
    }
}

fn base_model_matches(declared: &str, listed: &[String]) -> bool {
    let d = declared.trim().trim_end_matches('/').to_ascii_lowercase();
    listed.iter().any(|b| {
        let b = b.to_ascii_lowercase();
        d == b || d.ends_with(&format!("/{b}"))
    })
}

/// The model card to compare: a listed `model_card` file (already hashed), or for an unlisted
/// model a README.md next to the weights.
fn read_card(c: &mut Check) -> Option<(String, CardInfo)> {
    let (path, bytes) = match c.manifest {
        Some(_) => {
            let s = c.checked.iter().find(|s| {
                s.entry
                    .as_ref()
                    .is_some_and(|e| e.role == FileRole::ModelCard)
                    && s.status == FileStatus::Ok
            })?;
            (
                s.report_path.clone(),
                read_bounded(&s.opened.as_ref()?.file, model_card::MAX_CARD_BYTES).ok()?,
            )
        }
        None => {
            let o = open_in_dir(&c.root, "README.md", None).ok()?;
            (
                "README.md".to_string(),
                read_bounded(&o.file, model_card::MAX_CARD_BYTES).ok()?,
            )
        }
    };
    match model_card::parse(&bytes) {
        Ok(info) => Some((path, info)),
        Err(e) => {
            c.warnings
                .push(format!("{path}: model card front matter not read: {e}"));
            None
        }
    }
}
