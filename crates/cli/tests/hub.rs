//! `candor pull` through hf-hub against a local server that speaks the Hugging Face download
//! protocol (resolve URLs, ETag / X-Repo-Commit headers, Range requests), on loopback only.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

const REPO: &str = "candor-test/tiny-llama";
const REVISION: &str = "0123456789abcdef0123456789abcdef01234567";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny-llama")
}

/// Serves `files` (name → bytes) at `/{REPO}/resolve/{REVISION}/{name}` until the test ends.
fn serve(files: Vec<(String, Vec<u8>, String)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let files = Arc::new(files);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let files = files.clone();
            std::thread::spawn(move || handle(stream, &files));
        }
    });
    format!("http://{addr}")
}

fn handle(mut stream: TcpStream, files: &[(String, Vec<u8>, String)]) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let mut range_start = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(r) = lower.strip_prefix("range: bytes=") {
            range_start = r
                .trim()
                .split('-')
                .next()
                .and_then(|s| s.parse::<usize>().ok());
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
    let prefix = format!("/{REPO}/resolve/{REVISION}/");
    let found = path
        .strip_prefix(&prefix)
        .and_then(|name| files.iter().find(|f| f.0 == name));
    let Some((_, body, sha)) = found else {
        let _ = stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let start = range_start.unwrap_or(0).min(body.len());
    // hf-hub probes with `Range: bytes=0-0` and reads the size from Content-Range; a full
    // body from the start is as good an answer as one byte.
    let end = body.len();
    let part = &body[start..end];
    let head = format!(
        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {}-{}/{}\r\nETag: \"{sha}\"\r\nX-Repo-Commit: {REVISION}\r\nConnection: close\r\n\r\n",
        part.len(),
        start,
        end.saturating_sub(1),
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(part);
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// A candor home with a user manifest for the tiny fixture whose first source is the local hub.
fn setup(home: &Path) {
    let o = Command::new(env!("CARGO_BIN_EXE_candor"))
        .env("CANDOR_HOME", home)
        .args(["manifest", "init", "--id", "tiny-llama"])
        .arg(fixture())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut manifest = String::from_utf8(o.stdout).unwrap();
    manifest.push_str(&format!(
        "\n[[sources]]\nkind = \"huggingface\"\nrepo = \"{REPO}\"\nrevision = \"{REVISION}\"\n"
    ));
    std::fs::create_dir_all(home.join("manifests")).unwrap();
    std::fs::write(home.join("manifests/tiny-llama.toml"), manifest).unwrap();
}

fn files(corrupt: Option<&str>) -> Vec<(String, Vec<u8>, String)> {
    ["model.safetensors", "config.json", "tokenizer.json"]
        .iter()
        .map(|name| {
            let mut bytes = std::fs::read(fixture().join(name)).unwrap();
            let sha = sha256_hex(&bytes);
            if corrupt == Some(*name) {
                let i = bytes.len() / 2;
                bytes[i] ^= 0x40;
            }
            (name.to_string(), bytes, sha)
        })
        .collect()
}

fn candor(home: &Path, hf: &Path, endpoint: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_candor"));
    c.env("CANDOR_HOME", home)
        .env("HF_HUB_CACHE", hf)
        .env("HF_ENDPOINT", endpoint)
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("HF_HOME")
        .stdin(Stdio::null());
    c
}

fn show(o: &Output) -> String {
    format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn pull_from_a_hub_into_the_hf_cache_then_verify_and_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, hf) = (tmp.path().join("home"), tmp.path().join("hf"));
    setup(&home);
    let endpoint = serve(files(None));
    let o = candor(&home, &hf, &endpoint)
        .args(["pull", "tiny-llama", "--allow-unlisted"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let snapshot = hf
        .join("models--candor-test--tiny-llama/snapshots")
        .join(REVISION);
    for name in ["model.safetensors", "config.json", "tokenizer.json"] {
        let p = snapshot.join(name);
        assert!(
            std::fs::symlink_metadata(&p)
                .unwrap()
                .file_type()
                .is_symlink(),
            "{name} is a cache link"
        );
    }
    // The snapshot links are followed only into this repo's blobs, and the bytes are hashed.
    let o = candor(&home, &hf, &endpoint)
        .args(["verify", "tiny-llama"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let o = candor(&home, &hf, &endpoint)
        .args([
            "run",
            "-m",
            "tiny-llama",
            "t1 t2 t3",
            "-n",
            "3",
            "--temp",
            "0",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
}

#[test]
fn a_hub_serving_other_bytes_fails_the_pull_and_leaves_nothing_that_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, hf) = (tmp.path().join("home"), tmp.path().join("hf"));
    setup(&home);
    let endpoint = serve(files(Some("model.safetensors")));
    let o = candor(&home, &hf, &endpoint)
        .args(["pull", "tiny-llama"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("sha256 mismatch"),
        "{}",
        show(&o)
    );
    let snapshot = hf
        .join("models--candor-test--tiny-llama/snapshots")
        .join(REVISION);
    assert!(
        !snapshot.join("model.safetensors").exists(),
        "the bad download was removed"
    );
    let o = candor(&home, &hf, &endpoint)
        .args(["verify", "tiny-llama"])
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0), "{}", show(&o));
}
