//! The hardening checklist through the `candor` binary: every malformed weight file, built here
//! in code, is refused with exit code 5 (or 3 for unsafe files) and a message — never a panic,
//! a hang or a partial load. The library tests in crates/verify assert the typed error of each.

mod common;

use candor_verify::formats::gguf::build::{str_bytes, GgufBuilder};
use candor_verify::formats::safetensors::build::file as safetensors;
use common::candor_in as candor;
use std::process::Command;
use std::time::{Duration, Instant};

const F32: u32 = 0;
const Q4_0: u32 = 2;

/// A GGUF that is valid apart from what a case changes.
fn gguf() -> GgufBuilder {
    GgufBuilder::new()
        .kv_str("general.architecture", "llama")
        .tensor("token_embd.weight", &[32, 2], F32, 256)
}

/// A safetensors file whose header describes the one tensor "a", followed by `data_len` bytes.
fn tensor_a(dtype: &str, shape: &str, offsets: &str, data_len: usize) -> Vec<u8> {
    safetensors(
        &format!(r#"{{"a":{{"dtype":"{dtype}","shape":{shape},"data_offsets":{offsets}}}}}"#),
        data_len,
    )
}

/// Malformed GGUF files, each written as x.gguf.
fn gguf_cases() -> Vec<(&'static str, Vec<u8>)> {
    let mut nested = 9u32.to_le_bytes().to_vec();
    nested.extend(9u32.to_le_bytes());
    nested.extend(1u64.to_le_bytes());
    nested.extend(4u32.to_le_bytes());
    nested.extend(0u64.to_le_bytes());
    let mut big = 4u32.to_le_bytes().to_vec();
    big.extend((1u64 << 40).to_le_bytes());
    let mut overlap = gguf().tensor("b", &[32], F32, 128);
    overlap.tensors[1].3 = 0;
    let mut beyond = gguf();
    beyond.tensors[0].3 = u64::MAX - 50;
    let full = gguf().build();
    vec![
        (
            "G1 bad version",
            GgufBuilder {
                version: 9,
                ..gguf()
            }
            .build(),
        ),
        (
            "G1 byte-swapped version",
            GgufBuilder {
                version: 0x0300_0000,
                ..gguf()
            }
            .build(),
        ),
        (
            "G2 huge tensor count",
            GgufBuilder {
                tensor_count: Some(1 << 63),
                ..GgufBuilder::new()
            }
            .build(),
        ),
        (
            "G2 huge kv count",
            GgufBuilder {
                kv_count: Some(1 << 63),
                ..GgufBuilder::new()
            }
            .build(),
        ),
        (
            "G3 string length u64::MAX",
            GgufBuilder::new()
                .kv_raw("k", 8, u64::MAX.to_le_bytes().to_vec())
                .build(),
        ),
        ("G4 nested array", gguf().kv_raw("arr", 9, nested).build()),
        ("G4 array count 2^40", gguf().kv_raw("arr", 9, big).build()),
        (
            "G5 unknown value type",
            gguf().kv_raw("k", 13, vec![0; 8]).build(),
        ),
        ("G5 bool byte 2", gguf().kv_raw("k", 7, vec![2]).build()),
        (
            "G6 duplicate key",
            gguf().kv_str("a", "x").kv_str("a", "y").build(),
        ),
        ("G6 empty key", gguf().kv_str("", "x").build()),
        (
            "G6 non-UTF-8 string",
            gguf().kv_raw("k", 8, str_bytes(&[0xff, 0xfe])).build(),
        ),
        (
            "G7 alignment 0",
            gguf().kv_u32("general.alignment", 0).build(),
        ),
        (
            "G7 alignment 3",
            gguf().kv_u32("general.alignment", 3).build(),
        ),
        (
            "G8 five dimensions",
            GgufBuilder::new()
                .tensor("t", &[1, 1, 1, 1, 32], F32, 128)
                .build(),
        ),
        (
            "G9 element count overflow",
            GgufBuilder::new()
                .tensor("t", &[1 << 40, 1 << 40], F32, 0)
                .build(),
        ),
        (
            "G10 row not a multiple of the block",
            GgufBuilder::new().tensor("t", &[100], Q4_0, 64).build(),
        ),
        (
            "G11 unknown ggml type",
            GgufBuilder::new().tensor("t", &[32], 99, 128).build(),
        ),
        (
            "G12 duplicate tensor",
            gguf()
                .tensor("token_embd.weight", &[32, 2], F32, 256)
                .build(),
        ),
        ("G13 overlapping tensors", overlap.build()),
        ("G14 offset wraps", beyond.build()),
        ("G15 truncated header", full[..30].to_vec()),
        ("G15 truncated data", full[..full.len() - 100].to_vec()),
        (
            "G16 legacy GGJT magic",
            b"tjgg\x01\x00\x00\x00rest".to_vec(),
        ),
        (
            "G16 safetensors bytes named .gguf",
            tensor_a("F32", "[1]", "[0,4]", 4),
        ),
    ]
}

/// Malformed safetensors files, each written as model.safetensors.
fn safetensors_cases() -> Vec<(&'static str, Vec<u8>)> {
    let dup = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    let overlap = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    vec![
        ("S1 empty file", vec![]),
        ("S1 shorter than 8 bytes", vec![1, 2, 3]),
        ("S2 header length 2^63", (1u64 << 63).to_le_bytes().to_vec()),
        ("S4 header not JSON", safetensors("{not json", 0)),
        ("S4 header a JSON array", safetensors("[1,2]", 0)),
        ("S5 duplicate tensor name", safetensors(dup, 4)),
        ("S6 unknown dtype", tensor_a("F128", "[1]", "[0,16]", 16)),
        ("S7 end before begin", tensor_a("F32", "[1]", "[4,0]", 4)),
        ("S7 overlapping tensors", safetensors(overlap, 4)),
        (
            "S8 bytes after the last tensor",
            tensor_a("F32", "[1]", "[0,4]", 12),
        ),
        (
            "S9 shape product overflows",
            tensor_a("F32", "[4294967296,4294967296,2]", "[0,4]", 4),
        ),
        (
            "S10 size does not match shape",
            tensor_a("F32", "[3]", "[0,4]", 4),
        ),
    ]
}

/// Every case: (what, file name, bytes).
fn cases() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let named = |name: &'static str| move |(what, bytes)| (what, name, bytes);
    let mut v: Vec<_> = gguf_cases().into_iter().map(named("x.gguf")).collect();
    v.extend(
        safetensors_cases()
            .into_iter()
            .map(named("model.safetensors")),
    );
    // Pickle
    v.extend([
        (
            "P1 pickle checkpoint",
            "model.bin",
            b"\x80\x02}q\x00.".to_vec(),
        ),
        (
            "P1 pickle renamed .safetensors",
            "model.safetensors",
            b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00}.".to_vec(),
        ),
        (
            "P1 torch zip checkpoint",
            "model.pt",
            b"PK\x03\x04archive/data.pkl".to_vec(),
        ),
    ]);
    v
}

#[test]
fn every_malformed_weight_file_is_refused_with_exit_5() {
    let tmp = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (i, (what, name, bytes)) in cases().into_iter().enumerate() {
        let dir = tmp.path().join(format!("case{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(name);
        std::fs::write(&file, &bytes).unwrap();
        for cmd in [
            vec!["verify"],
            vec!["run", "-n", "1", "--allow-unlisted", "-m"],
        ] {
            let started = Instant::now();
            let mut c = candor(tmp.path());
            c.args(&cmd).arg(&file);
            if cmd[0] == "verify" {
                c.arg("--allow-unlisted");
            } else {
                c.arg("hello");
            }
            let o = c.output().unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            let ok =
                o.status.code() == Some(5) && !err.contains("panicked") && err.contains("error");
            if !ok || started.elapsed() > Duration::from_secs(10) {
                failures.push(format!(
                    "{what} ({}): exit {:?}\n{err}",
                    cmd[0],
                    o.status.code()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) not refused cleanly:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn unsafe_files_are_refused_with_exit_3() {
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    std::fs::create_dir_all(&dir).unwrap();
    let refused_as_unsafe = || {
        let o = candor(tmp.path())
            .arg("verify")
            .arg(&dir)
            .arg("--allow-unlisted")
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(3),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    // F1: a weight file that is a symlink out of the model directory, and a FIFO.
    symlink("/etc/passwd", dir.join("model.gguf")).unwrap();
    refused_as_unsafe();
    std::fs::remove_file(dir.join("model.gguf")).unwrap();
    let fifo = dir.join("model.gguf");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    let started = Instant::now();
    refused_as_unsafe();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a FIFO must not hang the verifier"
    );
}

/// A part of a split GGUF (llama.cpp's gguf-split keys), holding the tensors named.
fn split_part(no: u16, count: u16, total: i32, tensors: &[&str]) -> Vec<u8> {
    let mut b = GgufBuilder::new();
    if no == 0 {
        b = b.kv_str("general.architecture", "llama");
    }
    b = b
        .kv_raw("split.no", 2, no.to_le_bytes().to_vec())
        .kv_raw("split.count", 2, count.to_le_bytes().to_vec())
        .kv_raw("split.tensors.count", 5, total.to_le_bytes().to_vec());
    for t in tensors {
        b = b.tensor(t, &[32, 2], F32, 256);
    }
    b.build()
}

#[test]
fn malformed_split_models_are_refused_with_exit_5() {
    let part = |n: u16, of: u16| format!("x-{:05}-of-{of:05}.gguf", n + 1);
    // (what, the files by name, what the error says)
    type Files = Vec<(String, Vec<u8>)>;
    let cases: Vec<(&str, Files, &str)> = vec![
        (
            "a missing part",
            vec![
                (part(0, 3), split_part(0, 3, 3, &["a"])),
                (part(1, 3), split_part(1, 3, 3, &["b"])),
            ],
            "2 parts are here",
        ),
        (
            "parts disagreeing on the count",
            vec![
                (part(0, 2), split_part(0, 2, 2, &["a"])),
                (part(1, 2), split_part(1, 3, 2, &["b"])),
            ],
            "says the model has 2 parts",
        ),
        (
            "a tensor in two parts",
            vec![
                (part(0, 2), split_part(0, 2, 2, &["a"])),
                (part(1, 2), split_part(1, 2, 2, &["a"])),
            ],
            "is in both",
        ),
        (
            "a wrong tensor total",
            vec![
                (part(0, 2), split_part(0, 2, 5, &["a"])),
                (part(1, 2), split_part(1, 2, 5, &["b"])),
            ],
            "declare 5 tensors",
        ),
        (
            "two models in one directory",
            vec![
                ("a.gguf".into(), gguf().build()),
                ("b.gguf".into(), gguf().build()),
            ],
            "not parts of one split model",
        ),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (i, (what, files, message)) in cases.into_iter().enumerate() {
        let dir = tmp.path().join(format!("split{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &files {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        // A part names its siblings; any other file stands alone, so pass the directory.
        let first = match files[0].0.contains("-of-") {
            true => dir.join(&files[0].0),
            false => dir.clone(),
        };
        for args in [
            vec!["verify".into(), dir.clone().into_os_string()],
            vec![
                "run".into(),
                "-n".into(),
                "1".into(),
                "-m".into(),
                first.into_os_string(),
                "hi".into(),
            ],
        ] {
            let o = candor(tmp.path())
                .args(&args)
                .arg("--allow-unlisted")
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            if o.status.code() != Some(5) || !err.contains(message) || err.contains("panicked") {
                failures.push(format!(
                    "{what} ({:?}): exit {:?}\n{err}",
                    args[0],
                    o.status.code()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
