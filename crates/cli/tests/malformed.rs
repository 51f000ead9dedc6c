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

fn cases() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut v: Vec<(&str, &str, Vec<u8>)> = Vec::new();
    let g = |b: GgufBuilder| b.build();
    // GGUF
    v.push((
        "G1 bad version",
        "x.gguf",
        g(GgufBuilder {
            version: 9,
            ..gguf()
        }),
    ));
    v.push((
        "G1 byte-swapped version",
        "x.gguf",
        g(GgufBuilder {
            version: 0x0300_0000,
            ..gguf()
        }),
    ));
    v.push((
        "G2 huge tensor count",
        "x.gguf",
        g(GgufBuilder {
            tensor_count: Some(1 << 63),
            ..GgufBuilder::new()
        }),
    ));
    v.push((
        "G2 huge kv count",
        "x.gguf",
        g(GgufBuilder {
            kv_count: Some(1 << 63),
            ..GgufBuilder::new()
        }),
    ));
    v.push((
        "G3 string length u64::MAX",
        "x.gguf",
        g(GgufBuilder::new().kv_raw("k", 8, u64::MAX.to_le_bytes().to_vec())),
    ));
    let mut nested = 9u32.to_le_bytes().to_vec();
    nested.extend(9u32.to_le_bytes());
    nested.extend(1u64.to_le_bytes());
    nested.extend(4u32.to_le_bytes());
    nested.extend(0u64.to_le_bytes());
    v.push((
        "G4 nested array",
        "x.gguf",
        g(gguf().kv_raw("arr", 9, nested)),
    ));
    let mut big = 4u32.to_le_bytes().to_vec();
    big.extend((1u64 << 40).to_le_bytes());
    v.push((
        "G4 array count 2^40",
        "x.gguf",
        g(gguf().kv_raw("arr", 9, big)),
    ));
    v.push((
        "G5 unknown value type",
        "x.gguf",
        g(gguf().kv_raw("k", 13, vec![0; 8])),
    ));
    v.push((
        "G5 bool byte 2",
        "x.gguf",
        g(gguf().kv_raw("k", 7, vec![2])),
    ));
    v.push((
        "G6 duplicate key",
        "x.gguf",
        g(gguf().kv_str("a", "x").kv_str("a", "y")),
    ));
    v.push(("G6 empty key", "x.gguf", g(gguf().kv_str("", "x"))));
    v.push((
        "G6 non-UTF-8 string",
        "x.gguf",
        g(gguf().kv_raw("k", 8, str_bytes(&[0xff, 0xfe]))),
    ));
    v.push((
        "G7 alignment 0",
        "x.gguf",
        g(gguf().kv_u32("general.alignment", 0)),
    ));
    v.push((
        "G7 alignment 3",
        "x.gguf",
        g(gguf().kv_u32("general.alignment", 3)),
    ));
    v.push((
        "G8 five dimensions",
        "x.gguf",
        g(GgufBuilder::new().tensor("t", &[1, 1, 1, 1, 32], F32, 128)),
    ));
    v.push((
        "G9 element count overflow",
        "x.gguf",
        g(GgufBuilder::new().tensor("t", &[1 << 40, 1 << 40], F32, 0)),
    ));
    v.push((
        "G10 row not a multiple of the block",
        "x.gguf",
        g(GgufBuilder::new().tensor("t", &[100], Q4_0, 64)),
    ));
    v.push((
        "G11 unknown ggml type",
        "x.gguf",
        g(GgufBuilder::new().tensor("t", &[32], 99, 128)),
    ));
    v.push((
        "G12 duplicate tensor",
        "x.gguf",
        g(gguf().tensor("token_embd.weight", &[32, 2], F32, 256)),
    ));
    let mut overlap = gguf().tensor("b", &[32], F32, 128);
    overlap.tensors[1].3 = 0;
    v.push(("G13 overlapping tensors", "x.gguf", g(overlap)));
    let mut beyond = gguf();
    beyond.tensors[0].3 = u64::MAX - 50;
    v.push(("G14 offset wraps", "x.gguf", g(beyond)));
    let full = gguf().build();
    v.push(("G15 truncated header", "x.gguf", full[..30].to_vec()));
    v.push((
        "G15 truncated data",
        "x.gguf",
        full[..full.len() - 100].to_vec(),
    ));
    v.push((
        "G16 legacy GGJT magic",
        "x.gguf",
        b"tjgg\x01\x00\x00\x00rest".to_vec(),
    ));
    v.push((
        "G16 safetensors bytes named .gguf",
        "x.gguf",
        safetensors(
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
            4,
        ),
    ));
    // safetensors
    v.push(("S1 empty file", "model.safetensors", vec![]));
    v.push((
        "S1 shorter than 8 bytes",
        "model.safetensors",
        vec![1, 2, 3],
    ));
    v.push((
        "S2 header length 2^63",
        "model.safetensors",
        (1u64 << 63).to_le_bytes().to_vec(),
    ));
    v.push((
        "S4 header not JSON",
        "model.safetensors",
        safetensors("{not json", 0),
    ));
    v.push((
        "S4 header a JSON array",
        "model.safetensors",
        safetensors("[1,2]", 0),
    ));
    let dup = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    v.push((
        "S5 duplicate tensor name",
        "model.safetensors",
        safetensors(dup, 4),
    ));
    v.push((
        "S6 unknown dtype",
        "model.safetensors",
        safetensors(
            r#"{"a":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}"#,
            16,
        ),
    ));
    v.push((
        "S7 end before begin",
        "model.safetensors",
        safetensors(
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#,
            4,
        ),
    ));
    let overlap = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    v.push((
        "S7 overlapping tensors",
        "model.safetensors",
        safetensors(overlap, 4),
    ));
    v.push((
        "S8 bytes after the last tensor",
        "model.safetensors",
        safetensors(
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
            12,
        ),
    ));
    v.push((
        "S9 shape product overflows",
        "model.safetensors",
        safetensors(
            r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,2],"data_offsets":[0,4]}}"#,
            4,
        ),
    ));
    v.push((
        "S10 size does not match shape",
        "model.safetensors",
        safetensors(
            r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,4]}}"#,
            4,
        ),
    ));
    // Pickle
    v.push((
        "P1 pickle checkpoint",
        "model.bin",
        b"\x80\x02}q\x00.".to_vec(),
    ));
    v.push((
        "P1 pickle renamed .safetensors",
        "model.safetensors",
        b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00}.".to_vec(),
    ));
    v.push((
        "P1 torch zip checkpoint",
        "model.pt",
        b"PK\x03\x04archive/data.pkl".to_vec(),
    ));
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
    // F1: a weight file that is a symlink out of the model directory, and a FIFO.
    symlink("/etc/passwd", dir.join("model.gguf")).unwrap();
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
    std::fs::remove_file(dir.join("model.gguf")).unwrap();
    let fifo = dir.join("model.gguf");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    let started = Instant::now();
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
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a FIFO must not hang the verifier"
    );
}
