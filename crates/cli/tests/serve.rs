//! `candor serve` on the real default model, driven on loopback by the official `openai` Python
//! client (crates/cli/tests/openai_client.py): chat, streaming, completions, the models list with
//! provenance, invalid requests, a client leaving mid-stream, structured outputs (the client's
//! `parse()` with a Pydantic model, regex and Lark extensions), log-probabilities, an agent loop
//! with tool calls (`required`, `auto`, a named function, `none`; streamed and not), the API key,
//! a full queue, SIGTERM, and a bounded load test whose latency percentiles and peak RSS are printed.
//!
//! The Python comes from CANDOR_TEST_PYTHON (default python3) and needs `openai` and `httpx`.
//! Without them these tests are skipped locally, but fail when CI=true.
//! See the load test's numbers with `cargo test --release -p candor --test serve -- --nocapture`.

mod common;

use common::server::{http, serial, text, Client, Server};
use common::{assert_contains, candor_in, home, pulled, MODEL, REFERENCE_CACHE};
use std::process::Command;
use std::time::{Duration, Instant};

fn candor() -> Command {
    let mut c = candor_in(&home());
    c.env_remove("CANDOR_API_KEY");
    c
}

/// The OpenAI client script, or None (skip) outside CI without `openai`, `httpx` and
/// `prometheus_client`.
fn openai() -> Option<Client> {
    let unset = &["OPENAI_API_KEY", "OPENAI_BASE_URL"];
    Client::find("openai_client.py", "openai httpx prometheus-client", unset)
}

/// Runs one scenario against a server started with the default options, printing its log.
fn on_a_default_server(scenario: &str) {
    let _g = serial();
    pulled(MODEL);
    let Some(openai) = openai() else { return };
    let server = Server::start(&REFERENCE_CACHE);
    let o = openai.run(&server, scenario, &[]);
    eprintln!("{}", text(&o.stdout));
}

#[test]
fn serve_answers_the_openai_client() {
    on_a_default_server("functional");
}

#[test]
fn serve_constrains_outputs_and_reports_logprobs() {
    on_a_default_server("structured");
}

#[test]
fn serve_runs_an_agent_loop_with_tool_calls() {
    on_a_default_server("tools");
}

#[test]
fn serve_requires_the_api_key() {
    let _g = serial();
    pulled(MODEL);
    let Some(openai) = openai() else { return };
    let server = Server::start(&["--api-key", "sk-test-key"]);
    openai.run(&server, "auth", &["--api-key", "sk-test-key"]);
}

#[test]
fn serve_answers_429_when_the_queue_is_full() {
    let _g = serial();
    pulled(MODEL);
    let Some(openai) = openai() else { return };
    let server = Server::start(&["--queue-size", "1", "--parallel", "1"]);
    openai.run(&server, "queue", &[]);
}

#[test]
fn serve_finishes_in_flight_requests_on_sigterm() {
    let _g = serial();
    pulled(MODEL);
    let Some(openai) = openai() else { return };
    let mut server = Server::start(&[]);
    let pid = server.pid().to_string();
    openai.run(&server, "shutdown", &["--pid", &pid]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not exit after SIGTERM:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(server.log().contains("server stopped"), "{}", server.log());
}

/// 32 concurrent streaming clients, 200 requests of up to 16 tokens. The deadline (900 s, override
/// with CANDOR_SERVE_LOAD_DEADLINE) only guards against a hang — speed is reported, not asserted —
/// and is generous because a shared 2-core machine can be several times slower than an idle one.
/// None may fail (the default queue of 64 holds all 32 clients' requests, so
/// no 429 is expected and the client does not retry), every stream must be complete and equal the
/// greedy reference. Prints throughput, latency percentiles and the server's peak RSS.
#[test]
fn serve_load_test() {
    let _g = serial();
    pulled(MODEL);
    let Some(openai) = openai() else { return };
    let server = Server::start(&[]);
    let deadline = std::env::var("CANDOR_SERVE_LOAD_DEADLINE").unwrap_or_else(|_| "900".into());
    let o = openai.run(
        &server,
        "load",
        &[
            "--clients",
            "32",
            "--requests",
            "200",
            "--max-tokens",
            "16",
            "--deadline",
            &deadline,
        ],
    );
    let out = text(&o.stdout);
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("LOAD "))
        .expect("the load test prints its summary");
    let summary: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(summary["failed"], 0);
    assert_eq!(summary["completed"], 200);
    let rss = server.peak_rss_kib();
    eprintln!(
        "serve load test: {line}\nserver peak RSS (VmHWM): {} MiB",
        rss.map(|k| format!("{:.1}", k as f64 / 1024.0))
            .unwrap_or_else(|| "unknown".into())
    );
    let (status, health) = http(&server.addr, "GET", "/health", "").unwrap();
    assert_eq!(status, 200, "{health}");
    let h: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(h["models"][0]["failed"], 0, "{health}");
}

#[test]
fn serve_serves_only_models_that_pass_verification() {
    let _g = serial();
    let dir = pulled(MODEL);
    // A model path no manifest lists: refused, as by `candor run`, so nothing can be served.
    let unlisted = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let o = candor()
        .arg("serve")
        .arg("-m")
        .arg(&unlisted)
        .args(["--port", "0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", text(&o.stderr));
    assert_contains(&text(&o.stderr), "not serving");
    assert_contains(&text(&o.stderr), "--allow-unlisted");

    // Next to a verified model, the refused one is left out and the verified one served.
    let server = Server::start(&["-m", unlisted.to_str().unwrap()]);
    assert!(server.log().contains("not serving"), "{}", server.log());
    let (status, body) = http(&server.addr, "GET", "/v1/models", "").unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [MODEL]);
    let p = &v["data"][0]["provenance"];
    assert_eq!(p["manifest"]["id"], MODEL, "{body}");
    assert!(p["root_digest"].is_string(), "{body}");

    // Plain HTTP checks of the error contract.
    let (status, body) = http(
        &server.addr,
        "POST",
        "/v1/chat/completions",
        r#"{"model":"smollm2-135m-instruct-q4_1","messages":[{"role":"user","content":"hi"}],"n":3}"#,
    )
    .unwrap();
    assert_eq!(status, 400, "{body}");
    let e: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["error"]["param"], "n", "{body}");
    assert_eq!(e["error"]["type"], "invalid_request_error", "{body}");
    let (status, body) = http(
        &server.addr,
        "POST",
        "/v1/completions",
        r#"{"model":"SmolLM2-135M-Instruct.Q4_1.gguf","prompt":"hi"}"#,
    )
    .unwrap();
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("model_not_found"), "{body}");
}
