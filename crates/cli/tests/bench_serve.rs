//! `candor bench --serve URL`: against `candor serve` on the default model, against a tiny fake
//! server that fails some requests, and against nothing listening.

mod common;

use common::server::{serial, text, Server};
use common::{candor_in, home, pulled, MODEL};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn bench(url: &str, extra: &[&str]) -> Output {
    candor_in(&home())
        .env_remove("OPENAI_API_KEY")
        .args(["bench", "--serve", url])
        .args(extra)
        .output()
        .expect("candor runs")
}

#[test]
fn bench_serve_measures_candor_serve() {
    let _g = serial();
    pulled(MODEL);
    let server = Server::start(&[]);
    let o = bench(
        &server.url(),
        &[
            "--clients",
            "1,2",
            "--requests",
            "2",
            "--prompt-tokens",
            "16",
            "--output-tokens",
            "8",
            "--json",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\n{}",
        text(&o.stderr),
        server.log()
    );
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["model_id"], MODEL, "the first listed model");
    let levels = r["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 2);
    for (l, clients) in levels.iter().zip([1, 2]) {
        let f = |k: &str| l[k].as_f64().unwrap_or_else(|| panic!("{k} in {l}"));
        assert_eq!(l["max_concurrency"], clients);
        assert_eq!(
            (l["completed"].as_u64(), l["failed"].as_u64()),
            (Some(2), Some(0)),
            "{l}"
        );
        assert_eq!(l["token_counts"], "usage", "candor serve sends usage");
        let out = f("total_output_tokens");
        assert!(out > 0.0 && out <= 16.0, "{l}");
        assert!(
            f("total_input_tokens") >= 2.0 * 16.0,
            "prompt words plus the template: {l}"
        );
        let duration = f("duration");
        assert!(
            f("p99_ttft_ms") <= duration * 1e3 && f("p99_e2el_ms") <= duration * 1e3,
            "{l}"
        );
        assert!(f("median_ttft_ms") <= f("median_e2el_ms"), "{l}");
        assert!(
            (f("request_throughput") - 2.0 / duration).abs() < 1e-6,
            "{l}"
        );
        assert!(
            (f("output_throughput") - out / duration).abs() < 1e-6,
            "{l}"
        );
        assert!(f("mean_itl_ms") > 0.0 && f("mean_tpot_ms") > 0.0, "{l}");
    }
}

/// The answer to completion request `n`: status, content type and body; None closes the
/// connection unanswered.
type Answer = fn(usize) -> Option<(&'static str, &'static str, String)>;

fn chunk(t: &str) -> String {
    format!("data: {{\"choices\":[{{\"delta\":{{\"content\":\"{t}\"}}}}]}}\n\n")
}

/// A whole stream of two tokens.
fn two_tokens() -> Option<(&'static str, &'static str, String)> {
    let end = "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
    Some((
        "200 OK",
        "text/event-stream",
        format!("{}{}{end}", chunk("a"), chunk("b")),
    ))
}

/// Every 4th request (after the first) gets HTTP 500 and every 4th, two later, ends its stream
/// with an error event.
fn failing(n: usize) -> Option<(&'static str, &'static str, String)> {
    match n % 4 {
        1 => Some((
            "500 Internal Server Error",
            "application/json",
            r#"{"error":{"message":"fake overload"}}"#.into(),
        )),
        3 => Some((
            "200 OK",
            "text/event-stream",
            format!(
                "{}data: {{\"error\":{{\"message\":\"fake worker died\"}}}}\n\n",
                chunk("a")
            ),
        )),
        _ => two_tokens(),
    }
}

/// Every other request's connection is closed unanswered, as llama-server does to some.
fn closing(n: usize) -> Option<(&'static str, &'static str, String)> {
    match n % 2 {
        1 => None,
        _ => two_tokens(),
    }
}

/// A fake OpenAI server: the models list, and completions answered by `answer`.
fn fake_server(answer: Answer) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let count = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for conn in listener.incoming().map_while(Result::ok) {
            let count = count.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                let _ = r.read_line(&mut line);
                let mut len = 0;
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let _ = r.by_ref().take(len).read_to_end(&mut Vec::new());
                let (status, kind, body) = if line.starts_with("GET /v1/models") {
                    let list = r#"{"object":"list","data":[{"id":"fake"}]}"#;
                    ("200 OK", "application/json", list.to_string())
                } else {
                    let n = count.fetch_add(1, Ordering::SeqCst);
                    match answer(n) {
                        Some(a) => a,
                        None => return,
                    }
                };
                let mut w = conn;
                let _ = write!(w, "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            });
        }
    });
    format!("http://{addr}")
}

#[test]
fn bench_serve_counts_failed_requests_and_shows_the_first_error() {
    let url = fake_server(failing);
    // The first request (the warm-up, number 0) succeeds; then 2 of every 4 fail.
    let o = bench(
        &url,
        &[
            "--clients",
            "1,2",
            "--requests",
            "4",
            "--output-tokens",
            "4",
            "--json",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "failures make the exit code 1: {}",
        text(&o.stderr)
    );
    let r: Value = serde_json::from_slice(&o.stdout).expect("the report is printed all the same");
    assert_eq!(r["model_id"], "fake");
    let mut failed = 0;
    for l in r["levels"].as_array().unwrap() {
        assert_eq!(l["num_prompts"], 4, "{l}");
        assert_eq!(
            l["completed"].as_u64().unwrap() + l["failed"].as_u64().unwrap(),
            4,
            "{l}"
        );
        assert_eq!(l["token_counts"], "stream", "no usage: chunks are counted");
        assert_eq!(
            l["total_output_tokens"].as_u64().unwrap(),
            2 * l["completed"].as_u64().unwrap()
        );
        let e = l["first_error"].as_str().unwrap();
        assert!(
            e.contains("fake overload") || e.contains("fake worker died"),
            "{e}"
        );
        failed += l["failed"].as_u64().unwrap();
    }
    assert_eq!(failed, 4, "{r}");
    let err = text(&o.stderr);
    assert!(err.contains("4 of 8 requests failed"), "{err}");
}

/// A request whose connection the server closes unanswered is sent again (twice at most, as
/// the OpenAI clients do) and counted in `retries`; its times count from the first try.
#[test]
fn bench_serve_retries_requests_the_server_closed_unanswered() {
    let url = fake_server(closing);
    let o = bench(&url, &["--clients", "1", "--requests", "4", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let l = &r["levels"][0];
    assert_eq!(
        (l["completed"].as_u64(), l["failed"].as_u64()),
        (Some(4), Some(0)),
        "{l}"
    );
    // The warm-up took answer 0; each request then meets one closed connection.
    assert_eq!(l["retries"], 4, "{l}");
}

#[test]
fn bench_serve_without_a_server_says_so() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = bench(&format!("http://127.0.0.1:{port}"), &["--clients", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(
        err.contains("could not reach") && err.contains("candor serve"),
        "{err}"
    );
    let o = bench("not-a-url", &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
}

#[test]
fn bench_serve_gives_up_on_a_server_that_never_answers() {
    // Accepts connections and reads the request, but never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().map_while(Result::ok) {
            held.push(conn);
        }
    });
    let t = std::time::Instant::now();
    let o = bench(&url, &["-m", "any", "--clients", "1", "--timeout", "1"]);
    assert!(t.elapsed().as_secs() < 30, "the timeout bounds the wait");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(
        err.contains("timed out") && err.contains("--timeout"),
        "{err}"
    );
}
