//! The GGUF tokenizer path on small synthetic vocabularies shaped like the real ones.

use super::*;
use candle_core::quantized::gguf_file::{Content, Value as V, VersionedMagic};

/// GGUF token types (llama.cpp's `llama_token_type`).
const NORMAL: u32 = 1;
const UNKNOWN: u32 = 2;
const BYTE: u32 = 6;

fn content(entries: Vec<(&str, V)>) -> Content {
    Content {
        magic: VersionedMagic::GgufV3,
        metadata: entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        tensor_infos: Default::default(),
        tensor_data_offset: 0,
    }
}

fn strings(v: &[&str]) -> V {
    V::Array(v.iter().map(|s| V::String(s.to_string())).collect())
}

/// Mistral v0.3's shape: a SentencePiece vocabulary whose control tokens ([INST], [/INST],
/// [TOOL_CALLS]) sit among the pieces, byte tokens for what the pieces miss, BOS added.
fn mistral_v03_like() -> Tokenizer {
    let tokens = [
        "<unk>",
        "<s>",
        "</s>",
        "[INST]",
        "[/INST]",
        "[TOOL_CALLS]",
        "<0x0A>",
        "\u{2581}",
        "h",
        "i",
        "\u{2581}h",
        "hi",
        "\u{2581}hi",
    ];
    let types = [
        UNKNOWN,
        TOKEN_TYPE_CONTROL,
        TOKEN_TYPE_CONTROL,
        TOKEN_TYPE_CONTROL,
        TOKEN_TYPE_CONTROL,
        TOKEN_TYPE_CONTROL,
        BYTE,
        NORMAL,
        NORMAL,
        NORMAL,
        NORMAL,
        NORMAL,
        NORMAL,
    ];
    let scores = [
        0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -5.0, -6.0, -7.0, -2.0, -3.0, -1.0,
    ];
    let ct = content(vec![
        ("tokenizer.ggml.model", V::String("llama".into())),
        ("tokenizer.ggml.tokens", strings(&tokens)),
        (
            "tokenizer.ggml.token_type",
            V::Array(types.iter().map(|&t| V::I32(t as i32)).collect()),
        ),
        (
            "tokenizer.ggml.scores",
            V::Array(scores.iter().map(|&s| V::F32(s)).collect()),
        ),
        ("tokenizer.ggml.bos_token_id", V::U32(1)),
        ("tokenizer.ggml.eos_token_id", V::U32(2)),
        ("tokenizer.ggml.unknown_token_id", V::U32(0)),
        ("tokenizer.ggml.add_space_prefix", V::Bool(true)),
    ]);
    Tokenizer::from_gguf(&ct).unwrap()
}

#[test]
fn sentencepiece_control_tokens_are_matched_whole() {
    let t = mistral_v03_like();
    // BOS first; the control tokens whole, never split into pieces; like llama.cpp, the text
    // after a control token gets the SentencePiece space prefix again ("▁" then "▁hi").
    assert_eq!(
        t.encode("[INST] hi[/INST]", true).unwrap(),
        [1, 3, 7, 12, 4]
    );
    assert_eq!(t.encode("[TOOL_CALLS]", false).unwrap(), [5]);
    // Plain text: the prefix, the best-scoring merges, a byte token for the newline.
    assert_eq!(t.encode("hi\n", false).unwrap(), [12, 6]);
    assert_eq!(t.decode(&[12, 6]).unwrap(), "hi\n");
    assert!(t.is_stop(2) && !t.is_stop(4));
    assert_eq!((t.bos(), t.eos()), (Some("<s>"), Some("</s>")));
}

/// A GPT-2-style byte-level vocabulary with `pre`: "hi", " hi", "o" + "W" merged by one merge.
fn byte_level(pre: &str) -> Result<Tokenizer> {
    let tokens = [
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "h",
        "i",
        "\u{120}",
        "hi",
        "\u{120}hi",
        "o",
        "W",
        "oW",
    ];
    let mut types = vec![NORMAL as i32; tokens.len()];
    types[..3].fill(TOKEN_TYPE_CONTROL as i32);
    let ct = content(vec![
        ("tokenizer.ggml.model", V::String("gpt2".into())),
        ("tokenizer.ggml.pre", V::String(pre.into())),
        ("tokenizer.ggml.tokens", strings(&tokens)),
        (
            "tokenizer.ggml.token_type",
            V::Array(types.into_iter().map(V::I32).collect()),
        ),
        (
            "tokenizer.ggml.merges",
            strings(&["h i", "\u{120} hi", "o W"]),
        ),
        ("tokenizer.ggml.eos_token_id", V::U32(0)),
    ]);
    Tokenizer::from_gguf(&ct)
}

/// Phi-4's cl100k vocabulary is marked `dbrx` by llama.cpp's converter, Phi-4-mini's o200k
/// one `gpt-4o`; o200k splits a word before an upper-case letter that follows lower-case ones.
#[test]
fn phi4_pre_tokenizers() {
    let dbrx = byte_level("dbrx").unwrap();
    assert_eq!(dbrx.encode("hi hi", false).unwrap(), [6, 7]);
    assert_eq!(dbrx.encode("oW", false).unwrap(), [10]);
    assert_eq!(
        dbrx.encode("<|im_start|>hi<|im_end|>", false).unwrap(),
        [1, 6, 2]
    );
    assert!(dbrx.is_stop(0) && dbrx.is_stop(2));
    let gpt4o = byte_level("gpt-4o").unwrap();
    assert_eq!(gpt4o.encode("hi hi", false).unwrap(), [6, 7]);
    assert_eq!(gpt4o.encode("oW", false).unwrap(), [8, 9]);
    assert_eq!(gpt4o.decode(&[6, 7]).unwrap(), "hi hi");
    assert!(matches!(
        byte_level("no-such-pre"),
        Err(Error::Unsupported(_))
    ));
}
