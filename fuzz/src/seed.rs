//! Writes the seed corpora: the checklist's malformed inputs (built in code) plus real inputs
//! (shipped manifests, the tiny fixtures' headers). Run from fuzz/: `cargo run --bin seed`.

use candor_verify::formats::gguf::build::{str_bytes, GgufBuilder};
use candor_verify::formats::safetensors::build::file as st_file;
use std::fs;
use std::path::Path;

fn put(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(name), bytes).unwrap();
}

fn main() {
    // GGUF: a valid small file and the checklist's G cases.
    let ok = GgufBuilder::new()
        .kv_str("general.architecture", "llama")
        .kv_u32("general.alignment", 32)
        .tensor("token_embd.weight", &[32, 4], 0, 512);
    put("gguf_header", "valid", &ok.build());
    let mut v = ok.build();
    v[4] = 9;
    put("gguf_header", "g1-version", &v);
    let huge = GgufBuilder { tensor_count: Some(1 << 63), ..GgufBuilder::new() };
    put("gguf_header", "g2-count", &huge.build());
    put("gguf_header", "g3-string", &GgufBuilder::new().kv_raw("k", 8, u64::MAX.to_le_bytes().to_vec()).build());
    put("gguf_header", "g7-alignment0", &GgufBuilder::new().kv_u32("general.alignment", 0).build());
    put("gguf_header", "g9-dims", &GgufBuilder::new().tensor("t", &[1 << 40, 1 << 40], 0, 0).build());
    put("gguf_header", "g11-type", &GgufBuilder::new().tensor("t", &[32], 99, 0).build());
    put("gguf_header", "g6-dup", &GgufBuilder::new().kv_str("a", "x").kv_str("a", "y").build());
    let mut arr = 9u32.to_le_bytes().to_vec();
    arr.extend(9u32.to_le_bytes());
    arr.extend((1u64 << 40).to_le_bytes());
    put("gguf_header", "g4-nested", &GgufBuilder::new().kv_raw("arr", 9, arr).build());
    put("gguf_header", "g15-truncated", &ok.build()[..20]);
    let _ = str_bytes;

    // safetensors: valid and the S cases.
    put("safetensors_header", "valid", &st_file(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, 8));
    put("safetensors_header", "s2-len", &(u64::MAX).to_le_bytes());
    put("safetensors_header", "s5-dup", &st_file(r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, 4));
    put("safetensors_header", "s7-overlap", &st_file(r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, 4));
    put("safetensors_header", "s9-overflow", &st_file(r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,2],"data_offsets":[0,4]}}"#, 4));
    put("safetensors_header", "s11-index", br#"{"weight_map":{"a":"../x.safetensors"}}"#);
    if let Ok(b) = fs::read("../tests/fixtures/tiny-llama/model.safetensors") {
        let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
        put("safetensors_header", "tiny-llama", &b[..(8 + n).min(b.len())]);
    }

    // Manifests: every shipped one.
    for e in fs::read_dir("../manifests").unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "toml") {
            put("manifest", &p.file_name().unwrap().to_string_lossy(), &fs::read(&p).unwrap());
        }
    }
    put("manifest", "p4-path", b"schema_version = 1\n[[files]]\npath = \"../x\"\n");

    // Model cards.
    put("model_card", "card", b"---\nlicense: apache-2.0\nbase_model:\n- HuggingFaceTB/SmolLM2-135M\n---\n# Model\n");
    put("model_card", "other", b"---\nlicense: other\nlicense_name: mrl\nlicense_link: https://mistral.ai/licenses/MRL-0.1.md\n---\n");
    put("model_card", "unterminated", b"---\nlicense: [\n");
}
