//! The engine against transformers on tiny random-weight models, one per architecture
//! (tests/fixtures/tiny-*, made by tests/fixtures/make_fixtures.py).

mod common;

use candor_engine::{CacheType, GenerateParams, LoadOptions, SamplingParams};
use common::*;

/// With an f32 KV cache, as transformers computes.
const TOLERANCE: f32 = 1e-4;
/// With the default f16 cache: each cached value rounded to 11 bits moves these tiny models'
/// logits by up to about 1e-3 (measured: 4e-4 to 1.1e-3).
const F16_TOLERANCE: f32 = 5e-3;

/// The safetensors directory `tiny-{arch}/`, as transformers saved it.
fn check(arch: &str) {
    check_model(arch, &fixtures().join(format!("tiny-{arch}")));
}

/// The same weights converted to GGUF by llama.cpp's converter (`tiny-gguf/tiny-{arch}.gguf`):
/// llama.cpp's tensor names, metadata keys and (for Llama) its Q/K permutation.
fn check_gguf(arch: &str) {
    check_model(
        arch,
        &fixtures().join(format!("tiny-gguf/tiny-{arch}.gguf")),
    );
}

fn check_model(arch: &str, path: &std::path::Path) {
    let reference = read_json(&format!("tiny-{arch}/reference.json"));
    let prompt = as_u32s(&reference["prompt_ids"]);
    // Phi-3 picks its LongRoPE factors by context size (as llama.cpp does), transformers by
    // sequence length: a context within the trained 64 positions matches its short factors.
    let ctx_size = matches!(arch, "phi3" | "phi4mini").then_some(64);
    let expected = reference["logits"].as_array().unwrap();
    // Every position of the prompt in one batch, with each cache format.
    for (cache_type, tolerance) in [(CacheType::F32, TOLERANCE), (CacheType::F16, F16_TOLERANCE)] {
        let opts = LoadOptions {
            ctx_size,
            cache_type: Some(cache_type),
            ..Default::default()
        };
        let mut model = load_unlisted_with(path, &opts);
        let logits = model
            .forward(&prompt, true)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(logits.len(), expected.len());
        for (pos, (got, want)) in logits.iter().zip(expected).enumerate() {
            let d = max_abs_diff(got, &as_f32s(want));
            assert!(
                d < tolerance,
                "{arch}, {cache_type} cache: position {pos} differs by {d}"
            );
        }
    }

    let opts = LoadOptions {
        ctx_size,
        cache_type: Some(CacheType::F32),
        ..Default::default()
    };
    let mut model = load_unlisted_with(path, &opts);

    // The KV-cache path: each greedy token fed one at a time.
    let greedy = as_u32s(&reference["greedy_new_tokens"]);
    let steps = reference["generate_step_logits"].as_array().unwrap();
    model.reset();
    let mut last = model
        .forward(&prompt, false)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap()
        .remove(0);
    for (k, want) in steps.iter().enumerate() {
        let d = max_abs_diff(&last, &as_f32s(want));
        assert!(d < TOLERANCE, "{arch}: decode step {k} differs by {d}");
        if k + 1 < steps.len() {
            last = model
                .forward(&[greedy[k]], false)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap()
                .remove(0);
        }
    }

    // Greedy generation through the public API.
    model.reset();
    let params = GenerateParams {
        max_tokens: greedy.len(),
        sampling: SamplingParams::greedy(),
        ..Default::default()
    };
    let out = model.generate(&prompt, &params, &mut |_| true).unwrap();
    assert_eq!(out.tokens, greedy, "{arch}: greedy tokens");
}

#[test]
fn llama_with_llama3_rope_scaling_matches_transformers() {
    check("llama");
}

#[test]
fn mistral_with_sliding_window_matches_transformers() {
    check("mistral");
}

#[test]
fn qwen2_with_qkv_bias_matches_transformers() {
    check("qwen2");
}

#[test]
fn phi3_with_fused_projections_and_longrope_matches_transformers() {
    check("phi3");
}

/// Phi-4-mini's variant: RoPE on the first 12 of 16 dimensions of each head, LongRoPE factors
/// sized for them, tied embeddings.
#[test]
fn phi3_with_partial_rotary_and_longrope_matches_transformers() {
    check("phi4mini");
}

/// Four layers, the last one without RoPE.
#[test]
fn smollm3_with_no_rope_layers_matches_transformers() {
    check("smollm3");
}

#[test]
fn gemma2_with_attention_softcapping_matches_transformers() {
    check("gemma2");
}

#[test]
fn gemma3_matches_transformers() {
    check("gemma3");
}

#[test]
fn qwen3_with_per_head_qk_norm_matches_transformers() {
    check("qwen3");
}

#[test]
fn olmo2_with_output_norms_matches_transformers() {
    check("olmo2");
}

/// Not Mistral: llama.cpp converts it as `llama` without its sliding window (and runs it so),
/// and not Gemma 3: llama.cpp fixes its global layers at every sixth, the fixture's second
/// layer is global. Both are covered by the safetensors checks above.
#[test]
fn gguf_conversions_match_transformers() {
    for arch in [
        "llama", "qwen2", "qwen3", "olmo2", "gemma2", "phi3", "phi4mini", "smollm3",
    ] {
        check_gguf(arch);
    }
}

/// Every model candor ships a manifest for is one the engine can run.
#[test]
fn every_shipped_manifest_names_a_supported_architecture() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests");
    let all = candor_verify::manifests_in_dir(&dir).expect("the shipped manifests load");
    for m in &all {
        if let Err(e) = candor_engine::Architecture::parse(&m.model.architecture) {
            panic!("{}: {e}", m.id());
        }
    }
}
