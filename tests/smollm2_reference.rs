//! The default model (SmolLM2-135M-Instruct Q4_1) against reference implementations:
//! transformers' tokenizer and chat template, a quantized reference's greedy tokens, and
//! transformers in f32 on the same weights dequantized into a safetensors directory.

mod common;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candor_engine::tokenizer::{Tokenizer, SPECIAL};
use candor_engine::{
    CacheType, FinishReason, GenerateParams, LoadOptions, Message, Model, SamplingParams,
};
use common::*;
use std::collections::HashMap;
use std::path::Path;

fn greedy(model: &mut Model, prompt: &[u32], max_tokens: usize) -> candor_engine::Completion {
    let params = GenerateParams {
        max_tokens,
        sampling: SamplingParams::greedy(),
        ..Default::default()
    };
    model.generate(prompt, &params, &mut |_| true).unwrap()
}

#[test]
fn tokenizer_built_from_gguf_matches_transformers() {
    let model = load_default();
    let reference = read_json("smollm2/tokenizer_reference.json");
    let cases = reference["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let with = model.tokenizer().encode(text, true).unwrap();
        let without = model.tokenizer().encode(text, false).unwrap();
        assert_eq!(
            with,
            as_u32s(&case["ids_add_special_tokens_true"]),
            "ids of {text:?}"
        );
        assert_eq!(
            without,
            as_u32s(&case["ids_add_special_tokens_false"]),
            "ids of {text:?}"
        );
        assert_eq!(
            model.tokenizer().decode(&without).unwrap(),
            case["decoded"].as_str().unwrap()
        );
        assert_decodes_token_by_token(model.tokenizer(), &without);
        assert_token_bytes_spell(model.tokenizer(), &without, text.as_bytes());
    }
}

/// The grammar engine's and log-probabilities' token bytes, joined, are the text that was
/// tokenized (control tokens aside, which stand for no text).
pub fn assert_token_bytes_spell(tokenizer: &Tokenizer, ids: &[u32], text: &[u8]) {
    let bytes = tokenizer.token_bytes();
    if ids
        .iter()
        .any(|&t| bytes[t as usize].first() == Some(&SPECIAL))
    {
        return;
    }
    let joined: Vec<u8> = ids
        .iter()
        .flat_map(|&t| bytes[t as usize].clone())
        .collect();
    assert_eq!(
        String::from_utf8_lossy(&joined),
        String::from_utf8_lossy(text),
        "token bytes of {ids:?}"
    );
}

/// Streaming decode, one token at a time as generation does, ends at the whole decode and only
/// ever shows a character once it is complete.
fn assert_decodes_token_by_token(tokenizer: &Tokenizer, ids: &[u32]) {
    let mut stream = candor_engine::tokenizer::DecodeStream::default();
    for n in 1..=ids.len() {
        let text = stream.text(tokenizer, &ids[..n]).unwrap();
        assert_eq!(
            text,
            tokenizer.decode(&ids[..n]).unwrap(),
            "after {n} of {ids:?}"
        );
    }
}

#[test]
fn chat_template_renders_byte_identical_to_transformers() {
    let model = load_default();
    let reference = read_json("smollm2/chat_reference.json");
    for conv in reference["conversations"].as_array().unwrap() {
        let messages: Vec<Message> = conv["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| Message::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
            .collect();
        let add = conv["add_generation_prompt"].as_bool().unwrap();
        let text = model
            .chat_template()
            .unwrap()
            .render(&messages, add)
            .unwrap();
        assert_eq!(text, conv["text"].as_str().unwrap(), "{}", conv["name"]);
        let ids = model.tokenizer().encode(&text, false).unwrap();
        assert_eq!(ids, as_u32s(&conv["ids"]), "{}", conv["name"]);
    }
}

/// How far below candor's top logit the reference's token may be where they differ. The
/// quantized model rounds its activations to 8 bits, so last-bit differences in the arithmetic
/// move its logits by up to ~0.9 (measured between candle's own prompt and decode paths on
/// these prompts); a choice decided by less is a near-tie either way.
const NEAR_TIE: f32 = 0.3;

/// The reference is stock candle's quantized Llama, whose attention rounds differently from
/// candor's own kernel: fed the reference's tokens, candor must rank each next reference token
/// first or within a near-tie of first, at every step, and most prompts must continue alike
/// for at least 16 tokens when left to themselves. The reference keeps its keys and values in
/// f32, and so does candor here: the default f16 cache moves logits by more than these
/// near-ties (its cost is the perplexity test's), so with it 4 of the 5 prompts part from the
/// reference at gaps of 0.08–0.18.
#[test]
fn quantized_greedy_matches_the_quantized_reference() {
    let opts = LoadOptions {
        cache_type: Some(CacheType::F32),
        ..Default::default()
    };
    let mut model = Model::load(&verify_default().files, &opts).unwrap();
    let reference = read_json("smollm2/quantized_reference.json");
    let continuations = reference["continuations"].as_array().unwrap();
    let mut alike = 0;
    for c in continuations {
        let prompt = c["prompt"].as_str().unwrap();
        let ids = if c["chat"].as_bool().unwrap() {
            let t = model
                .chat_template()
                .unwrap()
                .render(&[Message::new("user", prompt)], true)
                .unwrap();
            model.tokenizer().encode(&t, false).unwrap()
        } else {
            model.tokenizer().encode(prompt, true).unwrap()
        };
        let want = as_u32s(&c["tokens"]);
        model.reset();
        let mut logits = model.forward(&ids, false).unwrap();
        for (step, &w) in want.iter().enumerate() {
            let l = logits.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let top = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            if top > l[w as usize] {
                eprintln!(
                    "{prompt:?} step {step}: a near-tie of {}",
                    top - l[w as usize]
                );
            }
            assert!(
                top - l[w as usize] <= NEAR_TIE,
                "{prompt:?} step {step}: the reference's token {w} is {} below the top logit",
                top - l[w as usize]
            );
            logits = model.forward(&[w], false).unwrap();
        }
        let got = greedy(&mut model, &ids, want.len()).tokens;
        let agree = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
        eprintln!(
            "{prompt:?}: the first {agree} of {} tokens agree",
            want.len()
        );
        alike += usize::from(agree >= 16.min(want.len()));
    }
    assert!(
        2 * alike > continuations.len(),
        "only {alike} of {} prompts continue alike",
        continuations.len()
    );
    // The two examples the engine issue quotes.
    let ids = model
        .tokenizer()
        .encode("The capital of France is", true)
        .unwrap();
    let out = greedy(&mut model, &ids, 19);
    // The reference goes on "\n\nThe United States has…", a near-tie after "The" (above).
    assert!(out.text.starts_with(" Paris.\n\nThe "), "{:?}", out.text);
    let t = model
        .chat_template()
        .unwrap()
        .render(&[Message::new("user", "What is 2+2?")], true)
        .unwrap();
    let ids = model.tokenizer().encode(&t, false).unwrap();
    let out = greedy(&mut model, &ids, 64);
    assert_eq!(out.text, "The answer to this classic math problem is 4.");
    assert_eq!(out.finish_reason, FinishReason::Eos);
}

/// Writes the default model as a Hugging Face f32 safetensors directory: candle dequantizes each
/// tensor (exact for these formats), and the Q/K rows llama.cpp permuted for its RoPE layout are
/// put back in Hugging Face order.
fn export_f32(gguf: &Path, out: &Path) {
    let mut f = std::fs::File::open(gguf).unwrap();
    let ct = gguf_file::Content::read(&mut f).unwrap();
    let md = |k: &str| ct.metadata.get(k).unwrap().clone();
    let n_head = md("llama.attention.head_count").to_u32().unwrap() as usize;
    let n_kv = md("llama.attention.head_count_kv").to_u32().unwrap() as usize;
    let n_layer = md("llama.block_count").to_u32().unwrap() as usize;
    let unpermute = |t: Tensor, heads: usize| -> Tensor {
        let (rows, cols) = t.dims2().unwrap();
        t.reshape((heads, rows / heads / 2, 2, cols))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((rows, cols))
            .unwrap()
    };
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for name in ct.tensor_infos.keys() {
        let t = ct
            .tensor(&mut f, name, &Device::Cpu)
            .unwrap()
            .dequantize(&Device::Cpu)
            .unwrap();
        let (hf, t) = match name.as_str() {
            "token_embd.weight" => ("model.embed_tokens.weight".to_string(), t),
            "output_norm.weight" => ("model.norm.weight".to_string(), t),
            "output.weight" => ("lm_head.weight".to_string(), t),
            n => {
                let rest = n.strip_prefix("blk.").unwrap();
                let (layer, w) = rest.split_once('.').unwrap();
                let p = format!("model.layers.{layer}.");
                match w {
                    "attn_q.weight" => (p + "self_attn.q_proj.weight", unpermute(t, n_head)),
                    "attn_k.weight" => (p + "self_attn.k_proj.weight", unpermute(t, n_kv)),
                    "attn_v.weight" => (p + "self_attn.v_proj.weight", t),
                    "attn_output.weight" => (p + "self_attn.o_proj.weight", t),
                    "attn_norm.weight" => (p + "input_layernorm.weight", t),
                    "ffn_norm.weight" => (p + "post_attention_layernorm.weight", t),
                    "ffn_gate.weight" => (p + "mlp.gate_proj.weight", t),
                    "ffn_up.weight" => (p + "mlp.up_proj.weight", t),
                    "ffn_down.weight" => (p + "mlp.down_proj.weight", t),
                    other => panic!("unexpected tensor {other}"),
                }
            }
        };
        tensors.insert(hf, t);
    }
    std::fs::create_dir_all(out).unwrap();
    candle_core::safetensors::save(&tensors, out.join("model.safetensors")).unwrap();
    let config = serde_json::json!({
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": md("llama.embedding_length").to_u32().unwrap(),
        "intermediate_size": md("llama.feed_forward_length").to_u32().unwrap(),
        "num_hidden_layers": n_layer,
        "num_attention_heads": n_head,
        "num_key_value_heads": n_kv,
        "vocab_size": ct.tensor_infos["token_embd.weight"].shape.dims()[0],
        "rms_norm_eps": md("llama.attention.layer_norm_rms_epsilon").to_f32().unwrap(),
        "rope_theta": md("llama.rope.freq_base").to_f32().unwrap(),
        "max_position_embeddings": md("llama.context_length").to_u32().unwrap(),
        "tie_word_embeddings": !ct.tensor_infos.contains_key("output.weight"),
        "bos_token_id": 1,
        "eos_token_id": 2,
    });
    std::fs::write(out.join("config.json"), config.to_string()).unwrap();
    std::fs::copy(
        fixtures().join("smollm2/tokenizer.json"),
        out.join("tokenizer.json"),
    )
    .unwrap();
    let tc = serde_json::json!({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"});
    std::fs::write(out.join("tokenizer_config.json"), tc.to_string()).unwrap();
}

fn f32_model() -> Model {
    let out = tempfile::tempdir().unwrap();
    export_f32(&default_model_dir().join(DEFAULT_FILE), out.path());
    // Keys and values in f32 too, as transformers keeps them.
    let opts = LoadOptions {
        cache_type: Some(CacheType::F32),
        ..Default::default()
    };
    load_unlisted_with(out.path(), &opts)
}

#[test]
fn f32_safetensors_greedy_and_logits_match_transformers() {
    let mut model = f32_model();
    let reference = read_json("smollm2/f32_reference.json");
    for case in reference["greedy"].as_array().unwrap() {
        let prompt = as_u32s(&case["prompt_ids"]);
        let want = as_u32s(&case["new_tokens"]);
        let out = greedy(&mut model, &prompt, want.len());
        let mut got = out.tokens.clone();
        if out.finish_reason == FinishReason::Eos {
            got.push(2);
        }
        assert_eq!(got, want, "{}", case["name"]);
    }
    let last = &reference["last_position_logits"];
    model.reset();
    let logits = model
        .forward(&as_u32s(&last["prompt_ids"]), false)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap()
        .remove(0);
    let d = max_abs_diff(&logits, &as_f32s(&last["logits"]));
    assert!(d < 1e-3, "last-position logits differ by {d}");

    // Reported log-probabilities are the log-softmax of those logits: transformers' in f64.
    let want = as_f32s(&last["logits"]);
    let max = want.iter().fold(f64::NEG_INFINITY, |m, &l| m.max(l as f64));
    let log_sum = want
        .iter()
        .map(|&l| (l as f64 - max).exp())
        .sum::<f64>()
        .ln();
    let reference = |t: u32| want[t as usize] as f64 - max - log_sum;
    model.reset();
    let params = GenerateParams {
        max_tokens: 1,
        sampling: SamplingParams::greedy(),
        logprobs: Some(5),
        ..Default::default()
    };
    let out = model
        .generate(&as_u32s(&last["prompt_ids"]), &params, &mut |_| true)
        .unwrap();
    let lp = &out.logprobs[0].chosen;
    let top = &out.logprobs[0].top;
    assert_eq!(lp.token, last["argmax"].as_u64().unwrap() as u32);
    assert!(
        (lp.logprob as f64 - reference(lp.token)).abs() < 1e-3,
        "{lp:?}"
    );
    let mut order: Vec<u32> = (0..want.len() as u32).collect();
    order.sort_by(|&a, &b| want[b as usize].total_cmp(&want[a as usize]));
    for (alt, &id) in top.iter().zip(&order) {
        assert_eq!(alt.token, id, "alternatives in transformers' order");
        assert!((alt.logprob as f64 - reference(id)).abs() < 1e-3, "{alt:?}");
    }
    assert_eq!(top.len(), 5);
}

#[test]
fn f32_perplexity_is_within_a_thousandth_of_transformers() {
    let mut model = f32_model();
    let reference = read_json("smollm2/f32_reference.json");
    let want = reference["perplexity"]["perplexity"].as_f64().unwrap();
    let text = std::fs::read_to_string(fixtures().join("smollm2/perplexity.txt")).unwrap();
    let got = model.perplexity(&text).unwrap();
    assert_eq!(
        got.tokens as u64,
        reference["perplexity"]["num_scored"].as_u64().unwrap()
    );
    let rel = (got.perplexity - want).abs() / want;
    assert!(
        rel < 1e-3,
        "perplexity {} vs transformers {want} (relative {rel})",
        got.perplexity
    );
}

/// The KV cache's formats cost the default model little: perplexity on the fixture text within
/// 1% of an f32 cache's, and each format really rounds (its perplexity is not the f32 one). The
/// fixture's 387 tokens are a coarse measure: the 8-bit activations turn last-bit changes into
/// whole steps, so changing only the attention's summation order moved its perplexity by 0.56%
/// (f16 −0.53%, q8_0 −0.40% when measured). On 24k tokens of the README every format and both
/// summation orders stay within 0.1% of each other (README).
#[test]
fn kv_cache_formats_keep_perplexity_within_a_percent() {
    let text = std::fs::read_to_string(fixtures().join("smollm2/perplexity.txt")).unwrap();
    let files = verify_default().files;
    let perplexity = |kind: CacheType| {
        let opts = LoadOptions {
            cache_type: Some(kind),
            ..Default::default()
        };
        let mut model = Model::load(&files, &opts).unwrap();
        assert_eq!(model.info().cache_type, kind);
        model.perplexity(&text).unwrap().perplexity
    };
    let exact = perplexity(CacheType::F32);
    for kind in [CacheType::F16, CacheType::Q8_0] {
        let p = perplexity(kind);
        let rel = (p - exact).abs() / exact;
        assert!(
            rel < 1e-2,
            "{kind}: perplexity {p} vs {exact} with f32 (relative {rel})"
        );
        assert_ne!(
            p, exact,
            "{kind} gave the f32 cache's perplexity to the last bit"
        );
    }
    assert_eq!(
        load_default().info().cache_type,
        CacheType::F16,
        "the default"
    );
}

/// Every family's call format compiles to a grammar, and under `required` the default model's
/// output parses back into calls whose arguments the schema allows.
#[test]
fn tool_call_grammars_of_every_family_hold() {
    use candor_engine::tools::parse_calls;
    use candor_engine::{Tool, ToolChoice, ToolFormat, Tools};
    let mut model = load_default();
    let tools = |choice| Tools {
        tools: vec![Tool {
            name: "get_weather".into(),
            description: Some("The current weather in a city".into()),
            parameters: serde_json::json!({"type": "object",
                "properties": {"city": {"type": "string", "maxLength": 30}},
                "required": ["city"], "additionalProperties": false}),
        }],
        choice,
        parallel: false,
    };
    let prompt = model
        .tokenizer()
        .encode("The weather in Paris, as a function call:", false)
        .unwrap();
    for format in [ToolFormat::Hermes, ToolFormat::Llama3, ToolFormat::Mistral] {
        let auto = tools(ToolChoice::Auto).grammar(format).unwrap().unwrap();
        auto.check(model.tokenizer()).unwrap();
        let required = tools(ToolChoice::Required);
        let params = GenerateParams {
            max_tokens: 80,
            sampling: SamplingParams::greedy(),
            grammar: required.grammar(format).unwrap(),
            ..Default::default()
        };
        let out = model.generate(&prompt, &params, &mut |_| true).unwrap();
        assert_eq!(
            out.finish_reason,
            FinishReason::Stop,
            "{format:?}: {:?}",
            out.text
        );
        let (_, calls) = parse_calls(format, &out.text, &required);
        assert_eq!(calls.len(), 1, "{format:?}: {:?}", out.text);
        let city = calls[0].function.arguments["city"].as_str().unwrap();
        assert!(city.chars().count() <= 30, "{format:?}: {city:?}");
    }

    // Under `auto` the model writes text first; once it opens a call, the grammar holds it to
    // the tool's schema (the examples' argument is not the tool's: only the grammar gives `city`).
    let few_shot = "Example: <tool_call>{\"name\": \"get_weather\", \"arguments\": {\"town\": \"Oslo\"}}</tool_call>\n\
                    Example: <tool_call>{\"name\": \"get_weather\", \"arguments\": {\"town\": \"Rome\"}}</tool_call>\n\
                    Example: ";
    let prompt = model.tokenizer().encode(few_shot, false).unwrap();
    let auto = tools(ToolChoice::Auto);
    let mut called = 0;
    for seed in 0..16 {
        let params = GenerateParams {
            max_tokens: 60,
            sampling: SamplingParams {
                temperature: 1.0,
                seed,
                ..Default::default()
            },
            grammar: auto.grammar(ToolFormat::Hermes).unwrap(),
            ..Default::default()
        };
        let out = model.generate(&prompt, &params, &mut |_| true).unwrap();
        let (_, calls) = parse_calls(ToolFormat::Hermes, &out.text, &auto);
        if out.text.contains("<tool_call>") {
            assert_eq!(calls.len(), 1, "{:?}", out.text);
            assert!(
                calls[0].function.arguments["city"].is_string(),
                "{:?}",
                out.text
            );
            called += 1;
        }
    }
    assert!(called > 0, "no seed opened a call");
}
