//! `candor serve`'s Ollama API on the real default model, driven on loopback by the official
//! `ollama` Python client (crates/cli/tests/ollama_client.py): chat and generate, streamed and
//! not, equal to the OpenAI route's greedy answer; list, show and ps with the verified digest and
//! provenance; the refused store routes; unknown models; `format` (JSON, a schema) constrained;
//! `think` accepted; unsupported `tools`; each route's JSON against Ollama's documented examples; and the API key.
//!
//! The Python comes from CANDOR_TEST_PYTHON (default python3) and needs `ollama` and `httpx`.
//! Without them these tests are skipped locally, but fail when CI=true.

mod common;

use common::server::{http, python, script, serial, text, Server};
use common::{pulled, MODEL, REFERENCE_CACHE};
use std::path::PathBuf;

fn client_script() -> PathBuf {
    script("ollama_client.py")
}

/// The Python with `ollama` and `httpx`, or None (skip) outside CI.
fn py() -> Option<String> {
    python(&client_script(), "ollama httpx")
}

/// One scenario of the Ollama client script; its output.
fn client(server: &Server, py: &str, scenario: &str, extra: &[&str]) -> String {
    let unset = ["OLLAMA_HOST", "OLLAMA_API_KEY"];
    text(
        &server
            .client(py, &client_script(), scenario, extra, &unset)
            .stdout,
    )
}

#[test]
fn ollama_api_answers_the_ollama_client() {
    let _g = serial();
    pulled(MODEL);
    let server = Server::start(&REFERENCE_CACHE);

    // Plain HTTP checks that run with or without the Python client.
    let (status, body) = http(&server.addr, "GET", "/api/tags", "").unwrap();
    assert_eq!(status, 200, "{body}");
    let tags: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        tags["models"][0]["name"],
        format!("{MODEL}:latest"),
        "{body}"
    );
    let (status, body) = http(
        &server.addr,
        "POST",
        "/api/chat",
        r#"{"model":"nope","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .unwrap();
    assert_eq!(status, 404, "{body}");
    let e: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .starts_with("model 'nope' not found"),
        "{body}"
    );
    let (status, body) = http(&server.addr, "POST", "/api/pull", r#"{"model":"x"}"#).unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("candor pull"), "{body}");

    let Some(py) = py() else { return };
    eprintln!("{}", client(&server, &py, "functional", &[]));
}

#[test]
fn ollama_api_requires_the_api_key() {
    let _g = serial();
    pulled(MODEL);
    let server = Server::start(&["--api-key", "sk-test-key"]);
    let (status, body) = http(&server.addr, "GET", "/api/tags", "").unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body.starts_with(r#"{"error":"#), "{body}");
    let (status, _) = http(&server.addr, "GET", "/health", "").unwrap();
    assert_eq!(status, 200, "/health needs no key");
    let Some(py) = py() else { return };
    client(&server, &py, "auth", &["--api-key", "sk-test-key"]);
}
