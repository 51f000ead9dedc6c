//! `candor serve` on loopback for the server tests (OpenAI and Ollama APIs): one server at a
//! time, started on a free port from the shared candor home, its log kept for failure messages,
//! and the Python client scripts that drive it.

use super::{candor_in, home, MODEL};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// One server at a time: they share the machine's cores, and the load test measures.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A client script in this directory.
fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(name)
}

/// The Python that runs `script`, or None (skip) outside CI when it lacks `packages`; in CI a
/// missing package fails the test.
fn python(script: &Path, packages: &str) -> Option<String> {
    let py = std::env::var("CANDOR_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    match Command::new(&py).arg(script).arg("check").output() {
        Ok(o) if o.status.success() => Some(py),
        o => {
            let why = match o {
                Ok(o) => text(&o.stderr),
                Err(e) => e.to_string(),
            };
            let msg = format!(
                "`{py}` cannot import {packages} (pip install {packages}, or point \
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

/// A Python client script in this directory, with the interpreter that runs it.
pub struct Client {
    py: String,
    script: PathBuf,
    /// The client library's own address and key variables, removed so that only the
    /// arguments point it at the server.
    unset: &'static [&'static str],
}

impl Client {
    /// The script `name`, when a Python with `packages` runs it; None (skip) outside CI as
    /// [`python`] says.
    pub fn find(name: &str, packages: &str, unset: &'static [&'static str]) -> Option<Client> {
        let script = script(name);
        let py = python(&script, packages)?;
        Some(Client { py, script, unset })
    }

    /// Runs one scenario against `server`, failing the test if it fails.
    pub fn run(&self, server: &Server, scenario: &str, extra: &[&str]) -> Output {
        let mut cmd = Command::new(&self.py);
        cmd.arg(&self.script)
            .arg(scenario)
            .args(["--base-url", &server.url(), "--model", MODEL])
            .args(extra)
            .env("NO_PROXY", "127.0.0.1")
            .env("no_proxy", "127.0.0.1");
        for var in self.unset {
            cmd.env_remove(var);
        }
        let o = cmd.output().expect("python runs");
        assert!(
            o.status.success(),
            "{scenario} failed\n--- client stdout\n{}\n--- client stderr\n{}\n--- server log\n{}",
            text(&o.stdout),
            text(&o.stderr),
            server.log()
        );
        o
    }
}

pub struct Server {
    pub child: Child,
    pub addr: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `candor serve -m MODEL` with `extra` on a free loopback port and waits until
    /// /health answers.
    pub fn start(extra: &[&str]) -> Server {
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

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Peak resident memory (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
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
pub fn http(addr: &str, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
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
