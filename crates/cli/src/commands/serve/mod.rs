//! `candor serve`: an HTTP server with OpenAI's and Ollama's APIs that only serves verified
//! models.
//!
//! - [`openai`]: OpenAI's API (`/v1/chat/completions`, `/v1/completions`, `/v1/models`).
//! - [`ollama`]: Ollama's native API (`/api/chat`, `/api/generate`, `/api/tags`, ...) on the same
//!   models and queues.
//! - [`wire`]: what both APIs' request bodies share (typed fields, sampling, stop strings).
//! - [`error`]: error bodies and status codes.
//! - [`metrics`]: `/metrics`, the models' counters in Prometheus' format.
//! - [`routes`]: the served models, the API key, `/health`, and handing requests to a model's
//!   queue ([`candor_engine::serving`], one worker thread per model).
//!
//! Every model goes through the same verify-then-load path as `candor run`; one that fails is
//! not served, and when none can be, the command exits with the verifier's exit code.

pub mod error;
pub mod metrics;
pub mod ollama;
pub mod openai;
pub mod routes;
pub mod wire;

use crate::args::{ModelArgs, ServeArgs, DEFAULT_MODEL};
use crate::error::CliError;
use crate::home::Home;
use crate::load::{load_for, Loaded};
use anyhow::{Context, Result};
use candor_engine::serving::Batching;
use routes::{AppState, ServedModel};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long in-flight requests may run on after SIGINT/SIGTERM before they are cancelled.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub fn run(home: &Home, args: &ServeArgs) -> Result<()> {
    check_args(args)?;
    let names: Vec<String> = if args.models.is_empty() {
        vec![DEFAULT_MODEL.to_string()]
    } else {
        args.models.clone()
    };

    let cancel = Arc::new(AtomicBool::new(false));
    let mut served = Vec::new();
    let mut workers = Vec::new();
    let mut first_error = None;
    for name in &names {
        let id = served_id(name);
        if served.iter().any(|m: &ServedModel| m.id == id) {
            return Err(CliError::usage(format!("the model `{id}` is given twice")).into());
        }
        let margs = ModelArgs {
            model: name.clone(),
            runtime: args.runtime.clone(),
        };
        match load_for(home, &margs, args.parallel, args.kv_budget) {
            Ok(loaded) => {
                let (model, worker) = start_model(id, loaded, args, cancel.clone())?;
                eprintln!("candor: serving {}", model.id);
                workers.push(worker);
                served.push(model);
            }
            Err(e) => {
                // Same report as a refused `candor run`, then carry on with the other models.
                eprintln!("candor: not serving {name}: {e:#}");
                if let Some(r) = e
                    .chain()
                    .find_map(|c| c.downcast_ref::<crate::error::Refusal>())
                {
                    eprint!("{}", r.findings());
                }
                first_error.get_or_insert(e);
            }
        }
    }
    if served.is_empty() {
        let e = first_error.expect("at least one model was tried");
        return Err(e.context("no model can be served"));
    }
    if args.api_key.is_none() && !is_loopback(&args.host) {
        eprintln!(
            "candor: warning: listening on {} without --api-key: anyone who can reach it can use it",
            args.host
        );
    }

    let state = Arc::new(AppState {
        models: served,
        api_key: args.api_key.clone().filter(|k| !k.is_empty()),
        default_max_tokens: args.max_tokens,
        draining: AtomicBool::new(false),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("candor-http")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(serve(args, state, cancel.clone()))?;
    // Stop the workers: anything still generating ends at its next token.
    cancel.store(true, Ordering::Relaxed);
    drop(workers);
    Ok(())
}

/// Refuses settings that would serve nothing.
fn check_args(args: &ServeArgs) -> Result<()> {
    if args.queue_size == 0 {
        return Err(CliError::usage("--queue-size must be at least 1").into());
    }
    if args.parallel == 0 {
        return Err(CliError::usage("--parallel must be at least 1").into());
    }
    if args.batch_size == 0 {
        return Err(CliError::usage("--batch-size must be at least 1").into());
    }
    if args.kv_budget == Some(0) {
        return Err(CliError::usage("--kv-budget must be at least 1 token").into());
    }
    if args.max_tokens == 0 {
        return Err(CliError::usage("--max-tokens must be at least 1").into());
    }
    Ok(())
}

/// Starts the worker thread of one verified model and describes it for the API.
fn start_model(
    id: String,
    loaded: Loaded,
    args: &ServeArgs,
    cancel: Arc<AtomicBool>,
) -> Result<(ServedModel, std::thread::JoinHandle<()>)> {
    let license_text = ollama::license_text(&loaded.verification);
    let (model, details) = describe(loaded);
    let info = model.info().clone();
    let vocab_size = info.vocab_size;
    let accelerator = !model.device().is_cpu();
    let tokenizer = model.tokenizer();
    let eos_id = match tokenizer.eos().map(|e| tokenizer.encode(e, false)) {
        Some(Ok(ids)) if ids.len() == 1 && tokenizer.is_stop(ids[0]) => Some(ids[0]),
        _ => None,
    };
    let chat_template = model.chat_template().ok().map(|t| t.source().to_string());
    let owned_by = details["provenance"]["publisher"]
        .as_str()
        .unwrap_or("candor")
        .to_string();
    let verified_at = details["provenance"]["verified_at_unix"]
        .as_u64()
        .unwrap_or_default();
    let batching = Batching {
        parallel: args.parallel,
        batch_size: args.batch_size,
        prefix_cache: !args.no_prefix_cache,
        kv_budget: args.kv_budget,
    };
    let (queue, handle) =
        candor_engine::serving::spawn(&id, model, batching, args.queue_size, cancel)
            .context("starting a model worker thread")?;
    let model = ServedModel {
        id,
        owned_by,
        verified_at,
        vocab_size,
        info,
        accelerator,
        eos_id,
        chat_template,
        license_text,
        details,
        queue,
    };
    Ok((model, handle))
}

async fn serve(args: &ServeArgs, state: Arc<AppState>, cancel: Arc<AtomicBool>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("listening on {}:{}", args.host, args.port))?;
    let addr = listener.local_addr()?;
    // One line a script (or the tests, with --port 0) can read the address from.
    eprintln!(
        "candor: listening on http://{addr} (OpenAI API at http://{addr}/v1, Ollama API at http://{addr}/api)"
    );
    let app = routes::router(state.clone());
    let shutdown = {
        let state = state.clone();
        async move {
            signal().await;
            state.draining.store(true, Ordering::Relaxed);
            eprintln!(
                "candor: shutting down: finishing requests in flight (at most {}s; again to stop now)",
                SHUTDOWN_GRACE.as_secs()
            );
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(SHUTDOWN_GRACE) => {
                        eprintln!("candor: cancelling the requests still in flight");
                        cancel.store(true, Ordering::Relaxed);
                    }
                    _ = signal() => {
                        eprintln!("candor: stopped");
                        std::process::exit(130);
                    }
                }
            });
        }
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP")?;
    eprintln!("candor: server stopped");
    Ok(())
}

/// SIGINT or SIGTERM.
async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The name clients use for a model: the manifest id as given, or a path's file or directory
/// name.
fn served_id(name: &str) -> String {
    let path = std::path::Path::new(name);
    if path.exists() {
        if let Some(n) = path.file_name().and_then(|n| n.to_str()) {
            return n.to_string();
        }
    }
    name.to_string()
}

/// Splits a loaded model into the model and what `/v1/models` says about it: its provenance
/// (each file's sha256, the root digest, license, openness achieved, when and how long
/// verification took) and its shape.
fn describe(loaded: Loaded) -> (candor_engine::Model, Value) {
    let r = &loaded.verification.report;
    // Whole seconds: `verified_at_unix` and `verified_at` are the same moment.
    let now = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
        .expect("the current time is a valid timestamp");
    let files: Vec<Value> = r
        .files
        .iter()
        .map(|f| {
            json!({
                "path": f.path,
                "sha256": f.actual_sha256,
                "size": f.actual_size,
                "role": f.role,
                "status": f.status,
            })
        })
        .collect();
    let provenance = json!({
        "target": r.target,
        "manifest": r.manifest.as_ref().map(|m| json!({
            "id": m.id,
            "attestation": m.attestation,
            "digest": m.digest,
        })),
        "publisher": r.model.as_ref().map(|m| m.publisher.clone()),
        "root_digest": r.root_digest,
        "files": files,
        "license": r.license.as_ref().map(|l| l.expression.clone()),
        "license_name": r.license.as_ref().map(|l| l.name.clone()),
        "openness": r.openness.as_ref().map(|o| o.achieved),
        "openness_claimed": r.openness.as_ref().map(|o| o.claimed),
        "decision": r.decision.outcome,
        "overrides": r.decision.overrides,
        "warnings": r.warnings,
        "verified_at": now.to_string(),
        "verified_at_unix": now.as_second(),
        "verification_ms": loaded.verify_time.as_secs_f64() * 1e3,
        "load_ms": loaded.load_time.as_secs_f64() * 1e3,
    });
    let info = loaded.model.info();
    let details = json!({
        "provenance": provenance,
        "info": {
            "architecture": info.architecture,
            "format": info.format,
            "weight_type": info.weight_type,
            "parameters": info.parameters,
            "context_length": info.context_length,
            "ctx_size": info.ctx_size,
            "cache_type": info.cache_type,
        },
    });
    (loaded.model, details)
}
