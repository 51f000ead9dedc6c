//! `candor pull` through hf-hub, and `candor manifest import`, against a local server that speaks
//! the Hugging Face download protocol (resolve URLs, ETag / X-Repo-Commit headers, Range
//! requests) and the API routes import reads (revision, paths-info), on loopback only.

mod common;

use common::{assert_contains, both, stderr};
use std::io::{BufRead, BufReader, Read, Write};
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
    serve_hub(Hub {
        served: files,
        ..Hub::default()
    })
}

/// A hub: the files it serves, and what its API publishes about the repo at `REVISION`.
#[derive(Default)]
struct Hub {
    /// name, bytes served, ETag.
    served: Vec<(String, Vec<u8>, String)>,
    /// name, bytes the API describes (LFS sha256 or git blob id), and whether it is in LFS. Empty:
    /// the API routes answer 404.
    published: Vec<(String, Vec<u8>, bool)>,
    /// The model card metadata (`cardData`).
    card: serde_json::Value,
    /// An answer to the revision route that replaces the real one.
    revision_body: Option<Vec<u8>>,
    /// An answer to the paths-info route that replaces the real one.
    paths_info_body: Option<Vec<u8>>,
}

fn serve_hub(hub: Hub) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let hub = Arc::new(hub);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let hub = hub.clone();
            std::thread::spawn(move || handle(stream, &hub));
        }
    });
    format!("http://{addr}")
}

fn handle(mut stream: TcpStream, hub: &Hub) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let mut range_start = None;
    let mut content_length = 0;
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
        if let Some(n) = lower.strip_prefix("content-length:") {
            content_length = n.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; content_length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
    let api = format!("/api/models/{REPO}/");
    if let Some(route) = path
        .strip_prefix(&api)
        .filter(|_| !hub.published.is_empty())
    {
        let answer = match route.split_once('/') {
            Some(("revision", rev)) => revision_answer(hub, rev),
            Some(("paths-info", rev)) if rev == REVISION => Some(
                hub.paths_info_body
                    .clone()
                    .unwrap_or_else(|| paths_info_answer(hub, &body)),
            ),
            _ => None,
        };
        respond_json(&mut stream, answer);
        return;
    }
    let prefix = format!("/{REPO}/resolve/{REVISION}/");
    let found = path
        .strip_prefix(&prefix)
        .and_then(|name| hub.served.iter().find(|f| f.0 == name));
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

/// `GET /api/models/{repo}/revision/{rev}`: the commit, the file names, the card.
fn revision_answer(hub: &Hub, rev: &str) -> Option<Vec<u8>> {
    if rev != REVISION {
        return None;
    }
    if let Some(b) = &hub.revision_body {
        return Some(b.clone());
    }
    let siblings: Vec<_> = hub
        .published
        .iter()
        .map(|(name, ..)| serde_json::json!({ "rfilename": name }))
        .collect();
    let v = serde_json::json!({
        "id": REPO,
        "sha": REVISION,
        "siblings": siblings,
        "cardData": hub.card,
        "config": { "model_type": "llama" },
    });
    Some(v.to_string().into_bytes())
}

/// `POST /api/models/{repo}/paths-info/{rev}` with a form of `paths`: size and hash of each.
fn paths_info_answer(hub: &Hub, form: &[u8]) -> Vec<u8> {
    let entries: Vec<_> = url::form_urlencoded::parse(form)
        .filter(|(k, _)| k == "paths")
        .filter_map(|(_, path)| hub.published.iter().find(|f| f.0 == path))
        .map(|(name, bytes, lfs)| {
            let blob = {
                use sha1::Digest;
                let mut h = sha1::Sha1::new();
                h.update(format!("blob {}\0", bytes.len()).as_bytes());
                h.update(bytes);
                hex::encode(h.finalize())
            };
            let mut e = serde_json::json!({
                "type": "file", "path": name, "size": bytes.len(), "oid": blob,
            });
            if *lfs {
                e["lfs"] = serde_json::json!({
                    "oid": sha256_hex(bytes), "size": bytes.len(), "pointerSize": 134,
                });
            }
            e
        })
        .collect();
    serde_json::Value::Array(entries).to_string().into_bytes()
}

fn respond_json(stream: &mut TcpStream, body: Option<Vec<u8>>) {
    let (status, body) = match body {
        Some(b) => ("200 OK", b),
        None => ("404 Not Found", b"{\"error\":\"not found\"}".to_vec()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
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

#[test]
fn pull_from_a_hub_into_the_hf_cache_then_verify_and_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, hf) = (tmp.path().join("home"), tmp.path().join("hf"));
    setup(&home);
    let endpoint = serve(files(None));
    succeeds(
        &home,
        &hf,
        &endpoint,
        &["pull", "tiny-llama", "--allow-unlisted"],
    );
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
    succeeds(&home, &hf, &endpoint, &["verify", "tiny-llama"]);
    runs_three_tokens(&home, &hf, &endpoint, "tiny-llama");
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
    assert_eq!(o.status.code(), Some(3), "{}", both(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("sha256 mismatch"),
        "{}",
        both(&o)
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
    assert_ne!(o.status.code(), Some(0), "{}", both(&o));
}

const FIXTURE_FILES: [&str; 3] = ["model.safetensors", "config.json", "tokenizer.json"];

/// A hub publishing the fixture at `REVISION`: the weights in LFS, config and tokenizer in git.
fn fixture_hub(card: serde_json::Value) -> Hub {
    let published = FIXTURE_FILES
        .iter()
        .map(|n| {
            let bytes = std::fs::read(fixture().join(n)).unwrap();
            (n.to_string(), bytes, *n == "model.safetensors")
        })
        .collect();
    Hub {
        served: files(None),
        published,
        card,
        ..Hub::default()
    }
}

fn import(home: &Path, hf: &Path, endpoint: &str, args: &[&str]) -> Output {
    candor(home, hf, endpoint)
        .args(["manifest", "import"])
        .arg(format!("hf:{REPO}@{REVISION}"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs candor with `args`, which must succeed.
fn succeeds(home: &Path, hf: &Path, endpoint: &str, args: &[&str]) -> Output {
    let o = candor(home, hf, endpoint).args(args).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    o
}

/// `candor run` of `model`: three greedy tokens of a fixed prompt, which must succeed.
fn runs_three_tokens(home: &Path, hf: &Path, endpoint: &str, model: &str) -> Output {
    let args = ["run", "-m", model, "t1 t2 t3", "-n", "3", "--temp", "0"];
    succeeds(home, hf, endpoint, &args)
}

fn no_panic(o: &Output) {
    assert!(!stderr(o).contains("panicked"), "{}", both(o));
}

#[test]
fn import_with_a_curated_base_model_then_pull_verify_and_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, hf) = (tmp.path().join("home"), tmp.path().join("hf"));
    let card = serde_json::json!({
        "license": "apache-2.0",
        "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct",
    });
    let endpoint = serve_hub(fixture_hub(card));
    let o = import(&home, &hf, &endpoint, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let text = std::fs::read_to_string(home.join("manifests/tiny-llama.toml")).unwrap();
    assert!(text.contains("attestation = \"hub\""), "{text}");
    assert!(text.contains(&format!("commit = \"{REVISION}\"")), "{text}");
    assert!(text.contains("profile = \"smollm2\""), "{text}");
    assert!(
        text.contains("sha256_fetched = [\"config.json\", \"tokenizer.json\"]"),
        "{text}"
    );
    for name in FIXTURE_FILES {
        let sha = sha256_hex(&std::fs::read(fixture().join(name)).unwrap());
        assert!(text.contains(&sha), "{name}'s sha256 is listed: {text}");
    }
    // Hashed while fetched, then verified against license, openness and the default policy.
    let o = succeeds(&home, &hf, &endpoint, &["pull", "tiny-llama"]);
    assert!(stderr(&o).contains("verified and ready"), "{}", both(&o));
    let o = succeeds(&home, &hf, &endpoint, &["verify", "tiny-llama"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("[hub]"),
        "{}",
        both(&o)
    );
    runs_three_tokens(&home, &hf, &endpoint, "tiny-llama");
    // A second import does not overwrite the first without --force.
    let o = import(&home, &hf, &endpoint, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    assert!(stderr(&o).contains("--force"), "{}", both(&o));
}

#[test]
fn an_unassessed_import_is_refused_by_default_like_an_unlisted_model() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, hf) = (tmp.path().join("home"), tmp.path().join("hf"));
    let card =
        serde_json::json!({ "license": "apache-2.0", "base_model": ["someone/unknown-base"] });
    let endpoint = serve_hub(fixture_hub(card));
    let o = import(&home, &hf, &endpoint, &["--id", "tiny-hub"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(stderr(&o).contains("NOT assessed"), "{}", both(&o));
    let o = succeeds(&home, &hf, &endpoint, &["pull", "tiny-hub"]);
    assert!(stderr(&o).contains("refused for now"), "{}", both(&o));
    let o = candor(&home, &hf, &endpoint)
        .args(["verify", "tiny-hub"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", both(&o));
    assert_contains(&both(&o), "without a curated license and openness profile");
    succeeds(
        &home,
        &hf,
        &endpoint,
        &["verify", "tiny-hub", "--allow-unlisted"],
    );
}

#[test]
fn a_hub_publishing_a_wrong_hash_fails_the_pull_and_nothing_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, hf) = (tmp.path().join("home"), tmp.path().join("hf"));
    let mut hub = fixture_hub(serde_json::json!({}));
    // The API describes other weights than the ones served.
    let weights = &mut hub.published[0].1;
    weights[1000] ^= 1;
    let endpoint = serve_hub(hub);
    let o = import(&home, &hf, &endpoint, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let o = candor(&home, &hf, &endpoint)
        .args(["pull", "tiny-llama", "--allow-unlisted"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", both(&o));
    assert!(stderr(&o).contains("sha256 mismatch"), "{}", both(&o));
    let o = candor(&home, &hf, &endpoint)
        .args(["verify", "tiny-llama", "--allow-unlisted"])
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0), "{}", both(&o));
}

#[test]
fn content_that_changes_under_the_same_commit_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, hf) = (tmp.path().join("home"), tmp.path().join("hf"));
    let endpoint = serve_hub(fixture_hub(serde_json::json!({})));
    let o = import(&home, &hf, &endpoint, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    // Later the same commit serves other weights: the pull refuses them.
    let mut changed = fixture_hub(serde_json::json!({}));
    changed.served = files(Some("model.safetensors"));
    let endpoint = serve_hub(changed);
    let o = candor(&home, &hf, &endpoint)
        .args(["pull", "tiny-llama", "--allow-unlisted"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", both(&o));
    let snapshot = hf
        .join("models--candor-test--tiny-llama/snapshots")
        .join(REVISION);
    assert!(!snapshot.join("model.safetensors").exists());

    // A small file served with other bytes than the git blob the commit holds is not hashed
    // into a manifest at all.
    let home2 = tmp.path().join("home2");
    let mut lying = fixture_hub(serde_json::json!({}));
    lying.served = files(Some("config.json"));
    let endpoint = serve_hub(lying);
    let o = import(&home2, &hf, &endpoint, &[]);
    assert_eq!(o.status.code(), Some(3), "{}", both(&o));
    assert!(
        stderr(&o).contains("are not the file the hub lists"),
        "{}",
        both(&o)
    );
    assert!(!home2.join("manifests/tiny-llama.toml").exists());
}

#[test]
fn a_branch_instead_of_a_commit_is_refused_before_any_request() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, hf) = (tmp.path().join("home"), tmp.path().join("hf"));
    // Nothing listens here: the refusal must not depend on the network.
    let o = candor(&home, &hf, "http://127.0.0.1:9")
        .args(["manifest", "import", &format!("hf:{REPO}@main")])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    assert!(
        stderr(&o).contains("only a commit pins content"),
        "{}",
        both(&o)
    );
}

#[test]
fn a_file_the_repo_does_not_hold_is_an_error_listing_what_it_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, hf) = (tmp.path().join("home"), tmp.path().join("hf"));
    let endpoint = serve_hub(fixture_hub(serde_json::json!({})));
    let o = import(&home, &hf, &endpoint, &["model-q4.gguf"]);
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    let e = stderr(&o);
    assert!(e.contains("model-q4.gguf is not in"), "{e}");
    assert!(
        e.contains("model.safetensors, config.json, tokenizer.json"),
        "{e}"
    );
    let o = import(&home, &hf, &endpoint, &["--id", "Tiny Llama"]);
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    assert!(
        stderr(&o).contains("manifest id 'Tiny Llama'"),
        "{}",
        both(&o)
    );
    // A shipped manifest's id is not taken over by an import.
    let o = import(&home, &hf, &endpoint, &["--id", "smollm2-135m-instruct"]);
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    assert!(stderr(&o).contains("shipped with candor"), "{}", both(&o));
    assert!(!home.join("manifests").join("tiny-llama.toml").exists());
}

#[test]
fn malformed_or_huge_api_answers_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, hf) = (tmp.path().join("home"), tmp.path().join("hf"));
    let cases: [(Vec<u8>, &str); 4] = [
        (
            b"<html>rate limited</html>".to_vec(),
            "not the JSON expected",
        ),
        (b"{\"sha\": 7}".to_vec(), "not the JSON expected"),
        // Bigger than any repo's metadata: read up to the limit, then refused.
        (vec![b' '; 17 << 20], "larger than"),
        (
            format!("{{\"sha\": \"{}\", \"siblings\": []}}", "f".repeat(40)).into_bytes(),
            "not the commit asked for",
        ),
    ];
    for (body, want) in cases {
        let mut hub = fixture_hub(serde_json::json!({}));
        hub.revision_body = Some(body);
        let endpoint = serve_hub(hub);
        let o = import(&home, &hf, &endpoint, &[]);
        no_panic(&o);
        assert!(matches!(o.status.code(), Some(1 | 3)), "{}", both(&o));
        assert!(stderr(&o).contains(want), "{want}: {}", both(&o));
    }
    let sha = sha256_hex(b"x");
    let cases: [(String, &str); 4] = [
        ("[]".into(), "does not describe the file model.safetensors"),
        (
            format!(r#"[{{"type":"file","path":"model.safetensors","size":1,"lfs":{{"oid":"{sha}","size":2}}}}]"#),
            "LFS size 2 differs",
        ),
        (
            r#"[{"type":"file","path":"model.safetensors","size":1,"lfs":{"oid":"../etc","size":1}}]"#.into(),
            "not a sha256",
        ),
        (r#"[{"type":"file","path":"model.safetensors"}]"#.into(), "not the JSON expected"),
    ];
    for (body, want) in cases {
        let mut hub = fixture_hub(serde_json::json!({}));
        hub.paths_info_body = Some(body.into_bytes());
        let endpoint = serve_hub(hub);
        let o = import(&home, &hf, &endpoint, &[]);
        no_panic(&o);
        assert_eq!(o.status.code(), Some(1), "{}", both(&o));
        assert!(stderr(&o).contains(want), "{want}: {}", both(&o));
    }
    assert!(!home.join("manifests").exists());
}

#[test]
fn a_gguf_import_reads_the_architecture_from_the_header_by_range_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, hf) = (tmp.path().join("home"), tmp.path().join("hf"));
    let name = "tiny-qwen2.gguf";
    let bytes = std::fs::read(fixture().join("../tiny-gguf").join(name)).unwrap();
    let sha = sha256_hex(&bytes);
    // The API names no GGUF architecture (and its config summary says llama): only the
    // file's own header can tell.
    let endpoint = serve_hub(Hub {
        served: vec![(name.to_string(), bytes.clone(), sha.clone())],
        published: vec![(name.to_string(), bytes, true)],
        card: serde_json::json!({}),
        ..Hub::default()
    });
    let o = import(&home, &hf, &endpoint, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let text = std::fs::read_to_string(home.join("manifests/tiny-qwen2.toml")).unwrap();
    assert!(text.contains("architecture = \"qwen2\""), "{text}");
    assert!(text.contains(&sha), "{text}");
    succeeds(
        &home,
        &hf,
        &endpoint,
        &["pull", "tiny-qwen2", "--allow-unlisted"],
    );
    succeeds(
        &home,
        &hf,
        &endpoint,
        &["verify", "tiny-qwen2", "--allow-unlisted"],
    );
}
