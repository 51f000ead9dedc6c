//! `candor list`: models on this machine, or with --available the manifests candor ships.

use crate::args::ListArgs;
use crate::home::{hf_cache_dir, Home};
use crate::resolve::{locate, Resolved};
use anyhow::Result;
use candor_verify::{Manifest, NoProgress, Source};
use serde::Serialize;
use std::path::PathBuf;

#[derive(Serialize)]
struct Row {
    model: String,
    manifest: Option<String>,
    license: String,
    openness: String,
    size: u64,
    /// One word or two: verified, refused, integrity failure, malformed, pulled, not pulled,
    /// incomplete, unlisted.
    state: String,
    /// Why a model may not be used, as the verifier words it.
    reason: Option<String>,
    /// What would let it be used.
    to_proceed: Option<String>,
    path: Option<String>,
}

pub fn run(home: &Home, args: &ListArgs) -> Result<()> {
    let manifests = home.manifests()?;
    let rows = if args.available {
        available(home, &manifests)
    } else {
        local(home, &manifests)?
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no models yet; `candor list --available` shows what candor can fetch and check");
        return Ok(());
    }
    let mut table = crate::table::new(["MODEL", "LICENSE", "OPENNESS", "SIZE", "STATE"]);
    crate::table::align_right(&mut table, 3);
    for r in &rows {
        table.add_row([
            r.model.clone(),
            r.license.clone(),
            r.openness.clone(),
            crate::table::bytes(r.size),
            r.state.clone(),
        ]);
    }
    crate::table::print(&table);
    // The reasons read as sentences below the table, not squeezed into a column.
    for r in rows.iter().filter(|r| r.reason.is_some()) {
        println!();
        println!(
            "{} is {}: {}",
            r.model,
            r.state,
            r.reason.as_deref().unwrap_or("")
        );
        if let Some(fix) = &r.to_proceed {
            println!("  to proceed: {fix}");
        }
    }
    Ok(())
}

fn level_of(m: &Manifest) -> String {
    m.assess_openness().achieved.as_str().to_string()
}

fn size_of(m: &Manifest) -> u64 {
    m.files.iter().map(|f| f.size).sum()
}

fn available(home: &Home, manifests: &[Manifest]) -> Vec<Row> {
    manifests
        .iter()
        .map(|m| Row {
            model: m.id().to_string(),
            manifest: Some(m.id().to_string()),
            license: m.license.expression(),
            openness: level_of(m),
            size: size_of(m),
            state: if locate(home, m).is_some() {
                "pulled".into()
            } else {
                "not pulled".into()
            },
            reason: None,
            to_proceed: None,
            path: locate(home, m).map(|p| p.display().to_string()),
        })
        .collect()
}

/// Pulled manifests, then anything else in the candor home or the Hugging Face cache.
fn local(home: &Home, manifests: &[Manifest]) -> Result<Vec<Row>> {
    let opts = crate::load::verify_options(home, &Default::default())?;
    let mut rows = Vec::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    for m in manifests {
        if let Some(dir) = locate(home, m) {
            let resolved = Resolved {
                manifest: Some(m.clone()),
                target: dir.clone(),
            };
            let verdict =
                candor_verify::verify(resolved.manifest.as_ref(), &dir, &opts, &NoProgress);
            let report = verdict.as_ref().map(|v| v.report());
            let (state, reason, to_proceed) = match report {
                Ok(r) => {
                    let first = r.decision.findings.first();
                    (
                        r.decision.outcome.state(),
                        first.map(|f| f.message.clone()),
                        first.and_then(|f| f.fix.clone()),
                    )
                }
                Err(e) => ("not verified", Some(e.to_string()), None),
            };
            rows.push(Row {
                model: m.id().to_string(),
                manifest: Some(m.id().to_string()),
                license: m.license.expression(),
                openness: level_of(m),
                size: size_of(m),
                state: state.into(),
                reason,
                to_proceed,
                path: Some(dir.display().to_string()),
            });
            seen.push(dir);
        }
    }
    let mut others: Vec<PathBuf> = Vec::new();
    if let Ok(rd) = std::fs::read_dir(home.root().join("models")) {
        others.extend(
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_dir()),
        );
    }
    if let Some(cache) = hf_cache_dir() {
        if let Ok(rd) = std::fs::read_dir(&cache) {
            for repo in rd.filter_map(|e| e.ok()).map(|e| e.path()) {
                if let Ok(snaps) = std::fs::read_dir(repo.join("snapshots")) {
                    others.extend(snaps.filter_map(|e| e.ok()).map(|e| e.path()));
                }
            }
        }
    }
    for dir in others {
        if seen.contains(&dir) {
            continue;
        }
        let listed = manifests.iter().find(|m| {
            m.sources.iter().any(|s| matches!(s, Source::Huggingface { repo, revision }
                if dir.ends_with(format!("models--{}/snapshots/{revision}", repo.replace('/', "--")))))
        });
        let size = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| std::fs::metadata(e.path()).ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        rows.push(Row {
            model: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            manifest: listed.map(|m| m.id().to_string()),
            license: listed
                .map(|m| m.license.expression())
                .unwrap_or_else(|| "unknown".into()),
            openness: listed.map(level_of).unwrap_or_else(|| "unlisted".into()),
            size,
            state: if listed.is_some() {
                "incomplete".into()
            } else {
                "unlisted".into()
            },
            reason: None,
            to_proceed: None,
            path: Some(dir.display().to_string()),
        });
    }
    Ok(rows)
}
