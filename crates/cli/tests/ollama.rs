//! `candor serve`'s Ollama API on the real default model, driven on loopback by the official
//! `ollama` Python client (crates/cli/tests/ollama_client.py): chat and generate, streamed and
//! not, equal to the OpenAI route's greedy answer; list, show and ps with the verified digest and
//! provenance; the refused store routes; unknown models; unsupported `format`, `tools` and
//! `think`; each route's JSON against Ollama's documented examples; and the API key.
//!
//! The Python comes from CANDOR_TEST_PYTHON (default python3) and needs `ollama` and `httpx`.
//! Without them these tests are skipped locally, but fail when CI=true.

mod common;

use common::{candor_in, home, stderr, MODEL};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// One server at a time: they share the machine's cores.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Pulls the model once per test process; fails loudly when it cannot (no skipping).
fn pulled() {
    static PULLED: OnceLock<()> = OnceLock::new();
    PULLED.get_or_init(|| {
        let o = candor_in(&home()).args(["pull", MODEL]).output().unwrap();
        assert!(
            o.status.success(),
            "`candor pull {MODEL}` failed:\n{}",
            stderr(&o)
        );
    });
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ollama_client.py")
}

/// The Python that runs the client script, or None (skip) outside CI when it lacks `ollama`.
fn python() -> Option<String> {
    let py = std::env::var("CANDOR_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    match Command::new(&py).arg(script()).arg("check").output() {
        Ok(o) if o.status.success() => Some(py),
        o => {
            let why = match o {
                Ok(o) => text(&o.stderr),
                Err(e) => e.to_string(),
            };
            let msg = format!(
                "`{py}` cannot import ollama and httpx (pip install ollama httpx, or point \
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

struct Server {
    child: Child,
    addr: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `candor serve` on a free loopback port and waits until it listens.
    fn start(extra: &[&str]) -> Server {
        let mut child = candor_in(&home())
            .env_remove("CANDOR_API_KEY")
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
        let Ok(addr) = rx.recv_timeout(Duration::from_secs(300)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server did not start:\n{}", log.lock().unwrap());
        };
        let server = Server { child, addr, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !matches!(http(&server.addr, "GET", "/health", ""), Ok((200, _))) {
            assert!(Instant::now() < deadline, "/health never answered");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// Runs one scenario of the client script against this server.
    fn client(&self, py: &str, scenario: &str, extra: &[&str]) -> String {
        let o = Command::new(py)
            .arg(script())
            .arg(scenario)
            .args([
                "--base-url",
                &format!("http://{}", self.addr),
                "--model",
                MODEL,
            ])
            .args(extra)
            .env_remove("OLLAMA_HOST")
            .env_remove("OLLAMA_API_KEY")
            .env("NO_PROXY", "127.0.0.1")
            .env("no_proxy", "127.0.0.1")
            .output()
            .expect("python runs");
        assert!(
            o.status.success(),
            "{scenario} failed\n--- client stdout\n{}\n--- client stderr\n{}\n--- server log\n{}",
            text(&o.stdout),
            text(&o.stderr),
            self.log.lock().unwrap()
        );
        text(&o.stdout)
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
    let body = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    Ok((status, body.to_string()))
}

#[test]
fn ollama_api_answers_the_ollama_client() {
    let _g = serial();
    pulled();
    let server = Server::start(&[]);

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

    let Some(py) = python() else { return };
    eprintln!("{}", server.client(&py, "functional", &[]));
}

#[test]
fn ollama_api_requires_the_api_key() {
    let _g = serial();
    pulled();
    let server = Server::start(&["--api-key", "sk-test-key"]);
    let (status, body) = http(&server.addr, "GET", "/api/tags", "").unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body.starts_with(r#"{"error":"#), "{body}");
    let (status, _) = http(&server.addr, "GET", "/health", "").unwrap();
    assert_eq!(status, 200, "/health needs no key");
    let Some(py) = python() else { return };
    server.client(&py, "auth", &["--api-key", "sk-test-key"]);
}
