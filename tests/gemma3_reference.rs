//! Gemma 3 270M (Q4_K_M GGUF, the restricted-license model) against transformers: the tokenizer
//! built from GGUF metadata (SentencePiece-style) and greedy continuations.

mod common;

use candor_engine::{GenerateParams, SamplingParams};
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
            stop: vec![],
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
        let agree = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
        assert!(
            agree >= 6,
            "{prompt:?}: only {agree} tokens agree\n got {got:?}\nwant {want:?}"
        );
    }
}
