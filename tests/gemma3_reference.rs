//! Gemma 3 270M (Q4_K_M GGUF, the restricted-license model) against transformers: the tokenizer
//! built from GGUF metadata (SentencePiece-style) and greedy continuations.

mod common;

use candor_engine::{FinishReason, GenerateParams, Grammar, GrammarKind, SamplingParams};
use common::*;

#[test]
fn gemma3_gguf_follows_transformers_greedy() {
    let mut model = load_gemma();
    let reference = read_json("gemma3/transformers_greedy.json");
    for c in reference["continuations"].as_array().unwrap() {
        let prompt = c["prompt"].as_str().unwrap();
        let ids = model.tokenizer().encode(prompt, true).unwrap();
        assert_eq!(ids, as_u32s(&c["prompt_ids"]), "token ids of {prompt:?}");
        let want = as_u32s(&c["tokens"]);
        let params = GenerateParams {
            max_tokens: want.len(),
            sampling: SamplingParams::greedy(),
            ..Default::default()
        };
        let got = model.generate(&ids, &params, &mut |_| true).unwrap().tokens;
        // SentencePiece pieces and byte fallback, streamed a token at a time as generation
        // does, end at the whole decode.
        let all: Vec<u32> = ids.iter().chain(&got).copied().collect();
        let mut stream = candor_engine::tokenizer::DecodeStream::default();
        for n in 1..=all.len() {
            let text = stream.text(model.tokenizer(), &all[..n]).unwrap();
            assert_eq!(
                text,
                model.tokenizer().decode(&all[..n]).unwrap(),
                "after {n}"
            );
        }
        // SentencePiece: `▁` is a space, `<0x..>` a byte (Gemma puts no space before the text;
        // BOS, a control token, stands for none).
        let bytes = model.tokenizer().token_bytes();
        let joined: Vec<u8> = ids[1..]
            .iter()
            .flat_map(|&t| bytes[t as usize].clone())
            .collect();
        assert_eq!(
            String::from_utf8_lossy(&joined),
            prompt,
            "token bytes of {prompt:?}"
        );
        let agree = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
        assert!(
            agree >= 6,
            "{prompt:?}: only {agree} tokens agree\n got {got:?}\nwant {want:?}"
        );
    }
}

/// Constrained decoding over a SentencePiece vocabulary: the output matches, and a schema's
/// JSON parses with the values the schema allows.
#[test]
fn gemma3_constrained_outputs_match_their_grammar() {
    let mut model = load_gemma();
    let ids = model
        .tokenizer()
        .encode(
            "Question: what is the date of the first moon landing?\nAnswer:",
            true,
        )
        .unwrap();
    let rx = r" (19|20)[0-9]{2}-(0[1-9]|1[0-2])-[0-3][0-9]";
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "year": {"type": "integer", "minimum": 1900, "maximum": 2100},
            "crew": {"type": "array", "items": {"enum": ["Armstrong", "Aldrin", "Collins"]},
                     "minItems": 1, "maxItems": 3}
        },
        "required": ["year", "crew"],
        "additionalProperties": false
    });
    for seed in 0..3 {
        let params = |kind: GrammarKind| GenerateParams {
            max_tokens: 60,
            sampling: SamplingParams {
                temperature: 1.0,
                seed,
                ..Default::default()
            },
            grammar: Some(Grammar::new(kind, "test")),
            ..Default::default()
        };
        let out = model
            .generate(&ids, &params(GrammarKind::Regex(rx.into())), &mut |_| true)
            .unwrap();
        let t = out.text.as_bytes();
        assert_eq!(out.finish_reason, FinishReason::Stop, "{:?}", out.text);
        assert!(
            t.len() == 11 && t[0] == b' ' && t[5] == b'-' && t[8] == b'-',
            "{:?}",
            out.text
        );
        let out = model
            .generate(
                &ids,
                &params(GrammarKind::JsonSchema(schema.clone())),
                &mut |_| true,
            )
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out.text).unwrap();
        let year = v["year"].as_i64().unwrap();
        let crew = v["crew"].as_array().unwrap();
        assert!((1900..=2100).contains(&year), "{v}");
        assert!((1..=3).contains(&crew.len()), "{v}");
        assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
    }
}
