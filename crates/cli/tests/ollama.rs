//! `candor serve`'s Ollama API on the real default model, driven on loopback by the official
//! `ollama` Python client (crates/cli/tests/ollama_client.py): chat and generate, streamed and
//! not, equal to the OpenAI route's greedy answer; list, show and ps with the verified digest and
//! provenance; the refused store routes; unknown models; `format` (JSON, a schema) constrained;
//! `think` accepted; unsupported `tools`; each route's JSON against Ollama's documented examples; and the API key.
//!
//! The Python comes from CANDOR_TEST_PYTHON (default python3) and needs `ollama` and `httpx`.
//! Without them these tests are skipped locally, but fail when CI=true.

mod common;

use common::server::{http, serial, text, Client, Server};
use common::{pulled, MODEL, REFERENCE_CACHE};

/// The Ollama client script, or None (skip) outside CI without `ollama` and `httpx`.
fn ollama() -> Option<Client> {
    Client::find(
        "ollama_client.py",
        "ollama httpx",
        &["OLLAMA_HOST", "OLLAMA_API_KEY"],
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

    let Some(ollama) = ollama() else { return };
    eprintln!("{}", text(&ollama.run(&server, "functional", &[]).stdout));
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
    let Some(ollama) = ollama() else { return };
    ollama.run(&server, "auth", &["--api-key", "sk-test-key"]);
}
