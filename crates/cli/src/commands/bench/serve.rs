//! `candor bench --serve URL`: N concurrent streaming clients against any OpenAI-compatible
//! server (candor serve, llama-server, vLLM), one concurrency level after another, reported in
//! `vllm bench serve`'s field names so the servers can be compared side by side.
//!
//! Each level sends a fixed number of requests of a fixed prompt length and `max_tokens`; each
//! client sends its next request when its stream ends. Before the levels, one request that is
//! not counted checks that the server answers and warms it up.
//!
//! - [`prompt`]: the seeded random prompts.
//! - [`stream`]: one streamed request and its timings.
//! - [`stats`]: a level's throughput and latency statistics.

mod prompt;
mod stats;
mod stream;

use crate::args::{BenchArgs, ServeEndpoint};
use crate::error::CliError;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use stats::{Level, Sample};
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use stream::Client;
use url::Url;

/// A models list with many hundred entries stays well under this.
const MAX_MODELS_BYTES: u64 = 4 << 20;

/// The whole run, as `--json` prints it.
#[derive(Serialize)]
struct Report {
    base_url: String,
    model_id: String,
    /// vLLM's backend names: "openai-chat" or "openai" (completions).
    endpoint_type: &'static str,
    random_input_len: usize,
    random_output_len: usize,
    temperature: f32,
    seed: u64,
    date: String,
    levels: Vec<Level>,
}

pub fn run(url: &str, args: &BenchArgs) -> Result<()> {
    let o = &args.serve;
    let clients = &o.clients;
    let max_clients = clients.iter().copied().max().unwrap_or(0);
    if clients.is_empty() || clients.contains(&0) {
        return Err(CliError::usage("--clients takes numbers of at least 1, e.g. 1,2,4,8").into());
    }
    if let Some(r) = o.requests.filter(|&r| r < max_clients) {
        return Err(CliError::usage(format!(
            "--requests {r} is fewer than the {max_clients} clients of a level; give at least {max_clients}"
        ))
        .into());
    }
    if o.prompt_tokens == 0 || o.output_tokens == 0 {
        return Err(
            CliError::usage("--prompt-tokens and --output-tokens must be at least 1").into(),
        );
    }
    let base = base_url(url)?;
    let agent = ureq::AgentBuilder::new()
        .timeout(stream::timeout(o.timeout))
        // The benchmark measures the server named, never one a redirect points to.
        .redirects(0)
        .max_idle_connections(max_clients)
        .max_idle_connections_per_host(max_clients)
        .user_agent(concat!("candor-bench/", env!("CARGO_PKG_VERSION")))
        .build();
    let listed = first_model(&agent, &base, o.api_key.as_deref(), args.model.is_none())?;
    let model = args.model.clone().or(listed).unwrap_or_default();
    let path = match o.endpoint {
        ServeEndpoint::Chat => "/v1/chat/completions",
        ServeEndpoint::Completions => "/v1/completions",
    };
    let client = Client {
        agent,
        url: format!("{base}{path}"),
        api_key: o.api_key.clone(),
        endpoint: o.endpoint,
        model: model.clone(),
        max_tokens: o.output_tokens,
        temperature: o.temperature,
    };

    eprintln!("candor: benchmarking {} at {base}{path}", shown(&model));
    if let Err(e) = client.send(&prompt::words(o.seed, u64::MAX, o.prompt_tokens)) {
        return Err(CliError::runtime(format!(
            "the first request to {base}{path} failed: {e}\n  hint: {}",
            hint(&e)
        ))
        .into());
    }
    let mut levels = Vec::new();
    let mut sent = 0u64;
    for &n in clients {
        let requests = o.requests.unwrap_or(2 * n);
        eprintln!("candor: {n} clients, {requests} requests");
        let prompts: Vec<String> = (0..requests as u64)
            .map(|i| prompt::words(o.seed, sent + i, o.prompt_tokens))
            .collect();
        sent += requests as u64;
        let (outcomes, duration) = run_level(&client, n, &prompts);
        let level = Level::new(n, &outcomes, duration, o.prompt_tokens as u64);
        if let Some(e) = &level.first_error {
            eprintln!(
                "candor: {} of {} requests failed with {n} clients; the first: {e}",
                level.failed, level.num_prompts
            );
        }
        levels.push(level);
    }

    let report = Report {
        base_url: base,
        model_id: model,
        endpoint_type: match o.endpoint {
            ServeEndpoint::Chat => "openai-chat",
            ServeEndpoint::Completions => "openai",
        },
        random_input_len: o.prompt_tokens,
        random_output_len: o.output_tokens,
        temperature: o.temperature,
        seed: o.seed,
        date: jiff::Timestamp::now().to_string(),
        levels,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    let failed: usize = report.levels.iter().map(|l| l.failed).sum();
    if failed > 0 {
        let total: usize = report.levels.iter().map(|l| l.num_prompts).sum();
        let first = report.levels.iter().find_map(|l| l.first_error.as_deref());
        return Err(CliError::runtime(format!(
            "{failed} of {total} requests failed (the first: {}); the numbers above count only the completed ones",
            first.unwrap_or("")
        ))
        .into());
    }
    Ok(())
}

/// `clients` threads sending `prompts` one after another, each as soon as its last stream
/// ended. The outcomes in the order they ended, and the level's wall time.
fn run_level(
    client: &Client,
    clients: usize,
    prompts: &[String],
) -> (Vec<Result<Sample, String>>, Duration) {
    let next = AtomicUsize::new(0);
    let outcomes = Mutex::new(Vec::with_capacity(prompts.len()));
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..clients {
            s.spawn(|| {
                while let Some(prompt) = prompts.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let outcome = client.send(prompt);
                    outcomes
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(outcome);
                }
            });
        }
    });
    let duration = start.elapsed();
    let outcomes = outcomes
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    (outcomes, duration)
}

/// The server's root URL: `http://host:port`, with a trailing `/` or `/v1` dropped.
fn base_url(raw: &str) -> Result<String> {
    let url = Url::parse(raw)
        .ok()
        .filter(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host().is_some()
                && u.query().is_none()
                && u.fragment().is_none()
        })
        .ok_or_else(|| {
            CliError::usage(format!(
                "--serve '{raw}' is not an http(s) URL of a server, e.g. http://127.0.0.1:8080"
            ))
        })?;
    let s = url.as_str().trim_end_matches('/');
    Ok(s.strip_suffix("/v1").unwrap_or(s).to_string())
}

#[derive(Deserialize)]
struct ModelList {
    data: Vec<ModelEntry>,
}

#[derive(Deserialize)]
struct ModelEntry {
    id: String,
}

/// Checks that the server answers (GET /v1/models) and returns the first model it lists. A
/// server without the list is fine when the model is named (`needed` false).
fn first_model(
    agent: &ureq::Agent,
    base: &str,
    api_key: Option<&str>,
    needed: bool,
) -> Result<Option<String>> {
    let url = format!("{base}/v1/models");
    let mut request = agent.get(&url);
    if let Some(key) = api_key {
        request = request.set("Authorization", &format!("Bearer {key}"));
    }
    let refused = |why: String| -> anyhow::Error {
        CliError::runtime(format!(
            "{url}: {why}\n  hint: {}",
            if needed {
                "name the model with --model"
            } else {
                "check the URL"
            }
        ))
        .into()
    };
    let response = match request.call() {
        Ok(r) => r,
        Err(ureq::Error::Transport(t)) => {
            let why = stream::describe(ureq::Error::Transport(t));
            if why == "timed out" {
                return Err(CliError::runtime(format!(
                    "{url} did not answer: timed out\n  hint: {}",
                    hint(&why)
                ))
                .into());
            }
            return Err(CliError::runtime(format!(
                "could not reach {base}: {why}\n  hint: is the server running? Start one with `candor serve`, \
                 or check the host and port of --serve"
            ))
            .into());
        }
        Err(ureq::Error::Status(code @ (401 | 403), r)) => {
            let why = stream::describe(ureq::Error::Status(code, r));
            return Err(CliError::runtime(format!("{url}: {why}\n  hint: {}", hint(&why))).into());
        }
        Err(e) if needed => return Err(refused(stream::describe(e))),
        Err(_) => return Ok(None),
    };
    let mut body = Vec::new();
    response
        .into_reader()
        .take(MAX_MODELS_BYTES + 1)
        .read_to_end(&mut body)
        .map_err(|e| refused(format!("reading the models list: {e}")))?;
    if !needed {
        return Ok(None);
    }
    if body.len() as u64 > MAX_MODELS_BYTES {
        return Err(refused(format!(
            "the models list is larger than {} MiB",
            MAX_MODELS_BYTES >> 20
        )));
    }
    let list: ModelList = serde_json::from_slice(&body)
        .map_err(|e| refused(format!("not an OpenAI models list ({e})")))?;
    match list.data.into_iter().next() {
        Some(m) if !m.id.is_empty() => Ok(Some(m.id)),
        _ => Err(refused("the server lists no models".into())),
    }
}

/// What to try when a request failed.
fn hint(error: &str) -> &'static str {
    if error.starts_with("HTTP 401") || error.starts_with("HTTP 403") {
        "the server wants an API key: pass --api-key KEY or set OPENAI_API_KEY"
    } else if error.starts_with("HTTP 404") {
        "check --model against the server's GET /v1/models and --endpoint against what it serves"
    } else if error.starts_with("HTTP 400") || error.starts_with("HTTP 422") {
        "the server refused the request; check --model, --output-tokens and --prompt-tokens against its limits"
    } else if error == "timed out" {
        "raise --timeout, or lower --output-tokens"
    } else {
        "check the server's log"
    }
}

/// A name from the server, printable on a terminal.
fn shown(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect()
}

fn ms(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{x:.1}"))
}

/// A Markdown table, one row per level, as `candor bench` prints one.
fn print_table(r: &Report) {
    let mut table = crate::table::markdown([
        "clients",
        "requests",
        "failed",
        "req/s",
        "output t/s",
        "TTFT ms median",
        "TTFT ms p99",
        "ITL ms median",
        "ITL ms p99",
        "TPOT ms median",
        "TPOT ms p99",
    ]);
    for column in 0..11 {
        crate::table::align_right(&mut table, column);
    }
    for l in &r.levels {
        table.add_row([
            l.max_concurrency.to_string(),
            l.num_prompts.to_string(),
            l.failed.to_string(),
            format!("{:.2}", l.request_throughput),
            format!("{:.2}", l.output_throughput),
            ms(l.median_ttft_ms),
            ms(l.p99_ttft_ms),
            ms(l.median_itl_ms),
            ms(l.p99_itl_ms),
            ms(l.median_tpot_ms),
            ms(l.p99_tpot_ms),
        ]);
    }
    crate::table::print(&table);
    let counts = match r
        .levels
        .iter()
        .map(|l| l.token_counts)
        .find(|&c| c != "usage")
    {
        None => "token counts from the server's usage".to_string(),
        Some(c) => format!(
            "token counts from the {} (the server sent no usage for some requests)",
            if c == "stream" {
                "chunks streamed"
            } else {
                "usage where sent, else the chunks streamed"
            }
        ),
    };
    eprintln!(
        "candor: {} {}, {} prompt words, max_tokens {}, temperature {}; {counts}",
        shown(&r.model_id),
        r.endpoint_type,
        r.random_input_len,
        r.random_output_len,
        r.temperature
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_url_drops_a_trailing_v1_and_refuses_non_http() {
        assert_eq!(
            base_url("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            base_url("http://127.0.0.1:8080/v1/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(base_url("https://h/proxy/v1").unwrap(), "https://h/proxy");
        for bad in ["127.0.0.1:8080", "ftp://h", "http://h/?q=1", "nonsense"] {
            assert!(base_url(bad).is_err(), "{bad}");
        }
    }
}
