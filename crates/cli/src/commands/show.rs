//! `candor show MODEL`: what a model is, read from its header and its manifest, without loading it.

use crate::args::ShowArgs;
use crate::home::Home;
use crate::load::{verify_model, verify_options};
use crate::resolve::resolve;
use anyhow::Result;
use candor_verify::formats::gguf::GgufHeader;
use candor_verify::{Report, Verdict};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Serialize, Default)]
struct Facts {
    architecture: Option<String>,
    parameters: Option<u64>,
    quantization: Option<String>,
    context_length: Option<u64>,
    layers: Option<u64>,
    embedding_length: Option<u64>,
}

#[derive(Serialize)]
struct Shown<'a> {
    model: &'a str,
    facts: Facts,
    verification: &'static str,
    report: Option<&'a Report>,
    error: Option<String>,
}

pub fn run(home: &Home, args: &ShowArgs) -> Result<()> {
    let resolved = resolve(home, &args.model)?;
    let mut opts = verify_options(home, &Default::default())?;
    // `show` reports on any model, listed or not; the decision below says whether it may load.
    opts.allow_unlisted = true;
    let verdict = verify_model(&resolved, &opts);
    let (state, report, error) = match &verdict {
        Ok(Verdict::Allowed(v)) => ("verified", Some(&v.report), None),
        Ok(Verdict::Refused(r)) => {
            let state = r.decision.outcome.state();
            (
                state,
                Some(&**r),
                Some(format!("{state}: {}", r.decision.summary())),
            )
        }
        Err(e) => ("not verified", None, Some(e.to_string())),
    };
    let facts = match &verdict {
        Ok(Verdict::Allowed(v)) => v
            .weights()
            .find_map(|f| GgufHeader::read(f.file()).ok())
            .map(facts_of)
            .unwrap_or_default(),
        _ => Facts::default(),
    };
    let shown = Shown {
        model: &args.model,
        facts,
        verification: state,
        report,
        error,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&shown)?);
        return Ok(());
    }
    let f = &shown.facts;
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let facts = crate::table::key_values([
        ("model", args.model.clone()),
        ("architecture", or_dash(f.architecture.clone())),
        ("parameters", or_dash(f.parameters.map(human_count))),
        ("quantization", or_dash(f.quantization.clone())),
        (
            "context length",
            or_dash(f.context_length.map(|n| n.to_string())),
        ),
        ("layers", or_dash(f.layers.map(|n| n.to_string()))),
        ("verification", state.to_string()),
    ]);
    crate::table::print(&facts);
    if let Some(r) = report {
        println!();
        print!("{}", r.render());
    } else if let Some(e) = &shown.error {
        println!("  {e}");
    }
    Ok(())
}

fn facts_of(h: GgufHeader) -> Facts {
    let arch = h.architecture().map(str::to_string);
    let num = |key: &str| {
        arch.as_ref()
            .and_then(|a| h.get(&format!("{a}.{key}")))
            .and_then(|v| v.as_u64())
    };
    let mut by_type: BTreeMap<&str, u64> = BTreeMap::new();
    let mut params = 0u64;
    for t in &h.tensors {
        let n: u64 = t.dims.iter().product();
        params += n;
        *by_type.entry(t.type_name).or_default() += n;
    }
    Facts {
        context_length: num("context_length"),
        layers: num("block_count"),
        embedding_length: num("embedding_length"),
        quantization: by_type
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(t, _)| t.to_string()),
        parameters: Some(params),
        architecture: arch,
    }
}

fn human_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n => n.to_string(),
    }
}
