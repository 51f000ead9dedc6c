//! Verify, then load: the one path every command that runs a model goes through.

use crate::args::{DeviceArg, ModelArgs, PolicyArgs};
use crate::error::{CliError, Refusal};
use crate::home::Home;
use crate::progress::Bars;
use crate::resolve::{resolve, Resolved};
use anyhow::{Context, Result};
use candor_engine::{DeviceKind, LoadOptions, Model};
use candor_verify::{Policy, Verdict, Verification, VerifyOptions};
use std::time::{Duration, Instant};

/// Verification options from the home and the command line.
pub fn verify_options(home: &Home, p: &PolicyArgs) -> Result<VerifyOptions> {
    let mut opts = VerifyOptions::with_home(home.root())?;
    if let Some(path) = &p.policy {
        opts.policy = Policy::load(path)?;
        opts.policy_source = Some(path.clone());
    }
    opts.allow_unlisted = p.allow_unlisted;
    opts.rehash = p.rehash;
    opts.accept_openness = p.accept_openness;
    Ok(opts)
}

/// Verifies the model named by `model`; an allowed one has its overrides in force and warnings
/// printed.
pub fn verify_model(resolved: &Resolved, opts: &VerifyOptions) -> candor_verify::Result<Verdict> {
    let bars = Bars::new("hashing");
    let verdict = candor_verify::verify(resolved.manifest.as_ref(), &resolved.target, opts, &bars)?;
    if let Verdict::Allowed(v) = &verdict {
        for o in &v.report.decision.overrides {
            eprintln!("candor: override in force: {o}");
        }
        for w in &v.report.warnings {
            eprintln!("candor: warning: {w}");
        }
    }
    Ok(verdict)
}

/// The verified files, or the refusal as the error (`main` prints its reasons and exits with
/// its outcome's code).
pub fn require_allowed(verdict: Verdict) -> Result<Verification> {
    verdict.allowed().map_err(|r| Refusal(r).into())
}

pub struct Loaded {
    pub model: Model,
    pub verification: Verification,
    pub verify_time: Duration,
    pub load_time: Duration,
}

/// Resolves, pulls when needed (manifest ids only), verifies and loads a model for one
/// sequence.
pub fn load(home: &Home, model_args: &ModelArgs) -> Result<Loaded> {
    load_for(home, model_args, 1, None)
}

/// [`load`], for `sequences` sequences at once (the server's slots), each with a context, or
/// sharing `kv_budget` positions of KV cache.
pub fn load_for(
    home: &Home,
    model_args: &ModelArgs,
    sequences: usize,
    kv_budget: Option<usize>,
) -> Result<Loaded> {
    let args = &model_args.runtime;
    if let Some(n) = args.threads {
        if n == 0 {
            return Err(CliError::usage("--threads must be at least 1").into());
        }
        // candle sizes its thread pool from the same variable as rayon, read once at first use.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    let resolved = match resolve(home, &model_args.model) {
        Ok(r) => r,
        Err(e) if std::path::Path::new(&model_args.model).exists() => return Err(e),
        Err(e) => match home.manifest(&model_args.model)? {
            // Known but not on disk: fetch it first, as `ollama run` does.
            Some(_) => {
                eprintln!(
                    "candor: {} is not on this machine; pulling it",
                    model_args.model
                );
                crate::commands::pull::pull(home, &model_args.model)?;
                resolve(home, &model_args.model)?
            }
            None => return Err(e),
        },
    };
    let opts = verify_options(home, &args.policy)?;
    let t0 = Instant::now();
    let verification = require_allowed(verify_model(&resolved, &opts)?)?;
    let verify_time = t0.elapsed();
    let load_opts = LoadOptions {
        device: match args.device {
            DeviceArg::Cpu => DeviceKind::Cpu,
            DeviceArg::Cuda => DeviceKind::Cuda,
            DeviceArg::Metal => DeviceKind::Metal,
        },
        ctx_size: args.ctx_size,
        sequences,
        kv_budget,
        cache_type: args.cache_type,
    };
    let t1 = Instant::now();
    let model = Model::load(&verification.files, &load_opts)
        .with_context(|| format!("loading {}", model_args.model))?;
    Ok(Loaded {
        model,
        verification,
        verify_time,
        load_time: t1.elapsed(),
    })
}
