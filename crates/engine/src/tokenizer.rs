//! Tokenizers: a model's tokenizer.json, or the equivalent built from GGUF metadata so that a
//! single .gguf file is enough to run.
//!
//! GGUF metadata is translated into the same `tokenizers` components a tokenizer.json would
//! describe (the BPE model built directly, the small parts from their JSON form), so both paths
//! share one implementation of BPE.

use crate::config::Metadata;
use crate::error::{Error, Result};
use candle_core::quantized::gguf_file;
use rayon::prelude::*;
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};
use tokenizers::models::bpe::{Vocab, BPE};

/// GGUF token types (llama.cpp's `llama_token_type`).
const TOKEN_TYPE_CONTROL: u32 = 3;
const TOKEN_TYPE_USER_DEFINED: u32 = 4;

/// Upper bound on vocabulary size read from an untrusted header.
const MAX_VOCAB: usize = 1 << 20;

mod token_bytes;
pub use token_bytes::SPECIAL;

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos: Option<(u32, String)>,
    eos: Option<(u32, String)>,
    /// Tokens that end generation: EOS, end-of-turn and similar.
    stop_ids: Vec<u32>,
    /// Each token's bytes, read from the vocabulary on first use.
    bytes: OnceLock<Vec<Vec<u8>>>,
    /// The grammar engine's view of this vocabulary, built on the first constrained request.
    pub(crate) grammars: OnceLock<std::result::Result<Arc<llguidance::ParserFactory>, String>>,
}

impl Tokenizer {
    /// Loads a tokenizer.json, with special-token facts from tokenizer_config.json /
    /// generation_config.json when present.
    pub fn from_json(
        json: &[u8],
        tokenizer_config: Option<&Value>,
        generation_config: Option<&Value>,
    ) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(json)
            .map_err(|e| Error::Tokenizer(format!("tokenizer.json: {e}")))?;
        let token = |key: &str| -> Option<(u32, String)> {
            let v = tokenizer_config?.get(key)?;
            let s = v
                .as_str()
                .or_else(|| v.get("content").and_then(|c| c.as_str()))?;
            Some((inner.token_to_id(s)?, s.to_string()))
        };
        let bos = token("bos_token");
        let eos = token("eos_token");
        let mut stop_ids: Vec<u32> = eos.iter().map(|(id, _)| *id).collect();
        if let Some(g) = generation_config.and_then(|g| g.get("eos_token_id")) {
            match g {
                Value::Number(n) => stop_ids.extend(n.as_u64().map(|x| x as u32)),
                Value::Array(a) => {
                    stop_ids.extend(a.iter().filter_map(|x| x.as_u64()).map(|x| x as u32))
                }
                _ => {}
            }
        }
        let mut t = Self::new(inner, bos, eos, stop_ids);
        t.add_end_of_turn_tokens();
        Ok(t)
    }

    /// Builds the tokenizer described by GGUF `tokenizer.ggml.*` metadata.
    pub fn from_gguf(ct: &gguf_file::Content) -> Result<Self> {
        let model = Metadata(ct).string("tokenizer.ggml.model")?;
        let vocab = GgufVocab::read(ct)?;
        let bos_id = vocab.id("tokenizer.ggml.bos_token_id")?;
        let eos_id = vocab.id("tokenizer.ggml.eos_token_id")?;
        let mut stop_ids: Vec<u32> = Vec::new();
        for key in [
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.eot_token_id",
            "tokenizer.ggml.eom_token_id",
        ] {
            stop_ids.extend(vocab.id(key)?);
        }
        let add_bos = match ct.metadata.get("tokenizer.ggml.add_bos_token") {
            Some(gguf_file::Value::Bool(b)) => *b,
            // llama.cpp's defaults: SentencePiece models add BOS, BPE models do not.
            _ => model == "llama",
        };
        let parts = match model.as_str() {
            "gpt2" => vocab.byte_level_bpe()?,
            "llama" => vocab.sentencepiece_bpe()?,
            other => {
                return Err(Error::Unsupported(format!(
                "GGUF tokenizer model `{other}` (supported: gpt2-style BPE, llama/SentencePiece); \
                     put the model's tokenizer.json next to it"
            )))
            }
        };
        let post = match (add_bos, bos_id) {
            (true, Some(id)) => bos_template(&vocab.tokens[id as usize], id),
            _ => Value::Null,
        };
        let mut inner = parts.build(post)?;
        inner
            .add_tokens(vocab.special_tokens())
            .map_err(|e| Error::Tokenizer(format!("GGUF tokenizer special tokens: {e}")))?;
        let named = |id: Option<u32>| id.map(|i| (i, vocab.tokens[i as usize].clone()));
        let mut t = Self::new(inner, named(bos_id), named(eos_id), stop_ids);
        t.add_end_of_turn_tokens();
        Ok(t)
    }

    fn new(
        inner: tokenizers::Tokenizer,
        bos: Option<(u32, String)>,
        eos: Option<(u32, String)>,
        stop_ids: Vec<u32>,
    ) -> Self {
        Self {
            inner,
            bos,
            eos,
            stop_ids,
            bytes: OnceLock::new(),
            grammars: OnceLock::new(),
        }
    }

    /// Chat models end a turn with a dedicated token that is not always declared as EOS.
    fn add_end_of_turn_tokens(&mut self) {
        for s in [
            "<|im_end|>",
            "<end_of_turn>",
            "<|eot_id|>",
            "<|end|>",
            "<|endoftext|>",
        ] {
            if let Some(id) = self.inner.token_to_id(s) {
                if !self.stop_ids.contains(&id) {
                    self.stop_ids.push(id);
                }
            }
        }
    }

    /// Token ids of `text`; `special` adds what the tokenizer adds by default (e.g. BOS).
    pub fn encode(&self, text: &str, special: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, special)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`, special tokens included (as transformers' `decode` does by default).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn bos(&self) -> Option<&str> {
        self.bos.as_ref().map(|(_, s)| s.as_str())
    }

    pub fn eos(&self) -> Option<&str> {
        self.eos.as_ref().map(|(_, s)| s.as_str())
    }

    pub fn is_stop(&self, id: u32) -> bool {
        self.stop_ids.contains(&id)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Tokens that end generation.
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    /// Every token's bytes, indexed by id; a control token's are [`SPECIAL`] and its name.
    pub fn token_bytes(&self) -> &[Vec<u8>] {
        self.bytes
            .get_or_init(|| token_bytes::vocabulary_bytes(&self.inner))
    }

    /// One token's bytes as people read them: a control token's name without the marker.
    pub fn shown_bytes(&self, id: u32) -> &[u8] {
        let bytes = self.token_bytes().get(id as usize).map_or(&[][..], |b| b);
        match bytes.split_first() {
            Some((&SPECIAL, name)) => name,
            _ => bytes,
        }
    }
}

/// A GGUF file's vocabulary: its tokens and their types, checked against each other.
struct GgufVocab<'a> {
    md: Metadata<'a>,
    tokens: Vec<String>,
    types: Option<Vec<u32>>,
}

impl<'a> GgufVocab<'a> {
    fn read(ct: &'a gguf_file::Content) -> Result<Self> {
        let md = Metadata(ct);
        let tokens = md
            .string_array_opt("tokenizer.ggml.tokens")?
            .ok_or_else(|| Error::Tokenizer("GGUF has no tokenizer.ggml.tokens".into()))?;
        if tokens.is_empty() || tokens.len() > MAX_VOCAB {
            return Err(Error::Tokenizer(format!(
                "implausible vocabulary size {}",
                tokens.len()
            )));
        }
        let types = md.u32_array_opt("tokenizer.ggml.token_type")?;
        if let Some(t) = &types {
            if t.len() != tokens.len() {
                return Err(Error::Tokenizer(format!(
                    "{} token types for {} tokens",
                    t.len(),
                    tokens.len()
                )));
            }
        }
        Ok(Self { md, tokens, types })
    }

    /// The token id stored under `key`, refused when it is outside the vocabulary.
    fn id(&self, key: &str) -> Result<Option<u32>> {
        match self.md.usize_opt(key)? {
            Some(id) if id < self.tokens.len() => Ok(Some(id as u32)),
            Some(id) => Err(Error::Tokenizer(format!(
                "{key} = {id} is outside the vocabulary"
            ))),
            None => Ok(None),
        }
    }

    /// Control and user-defined tokens, matched whole and never split.
    fn special_tokens(&self) -> Vec<tokenizers::AddedToken> {
        self.tokens
            .iter()
            .enumerate()
            .filter(|(id, _)| {
                let ty = self.types.as_ref().map_or(0, |t| t[*id]);
                ty == TOKEN_TYPE_CONTROL || ty == TOKEN_TYPE_USER_DEFINED
            })
            .map(|(_, tok)| {
                tokenizers::AddedToken::from(tok.clone(), true)
                    .single_word(false)
                    .lstrip(false)
                    .rstrip(false)
                    .normalized(false)
            })
            .collect()
    }

    /// Each token's id, as the BPE model takes it. The BPE model is built directly: as a JSON
    /// document, a 262k-token vocabulary and its merges took hundreds of megabytes and a second
    /// to parse.
    fn vocab(&self) -> Vocab {
        self.tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect()
    }

    /// GPT-2-style byte-level BPE (`tokenizer.ggml.model = "gpt2"`).
    fn byte_level_bpe(&self) -> Result<GgufTokenizerParts> {
        let merges = self
            .md
            .string_array_opt("tokenizer.ggml.merges")?
            .ok_or_else(|| {
                Error::Tokenizer("BPE tokenizer without tokenizer.ggml.merges".into())
            })?;
        let merges = merges
            .iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| Error::Tokenizer(format!("GGUF merge `{m}` is not a pair")))
            })
            .collect::<Result<Vec<_>>>()?;
        let pre = self
            .md
            .string_opt("tokenizer.ggml.pre")?
            .unwrap_or_else(|| "default".into());
        Ok(GgufTokenizerParts {
            bpe: BPE::builder().vocab_and_merges(self.vocab(), merges),
            normalizer: Value::Null,
            pre_tokenizer: gpt2_pre_tokenizer(&pre)?,
            decoder: json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}),
        })
    }

    /// SentencePiece's BPE (`tokenizer.ggml.model = "llama"`): merges from the scores, `▁`
    /// for spaces, unknown bytes as byte tokens.
    fn sentencepiece_bpe(&self) -> Result<GgufTokenizerParts> {
        let scores = self
            .md
            .f32_array_opt("tokenizer.ggml.scores")?
            .unwrap_or_default();
        let vocab = self.vocab();
        let merges = sentencepiece_merges(&self.tokens, &scores, &vocab);
        let prefix = match self.md.0.metadata.get("tokenizer.ggml.add_space_prefix") {
            Some(gguf_file::Value::Bool(b)) => *b,
            _ => true,
        };
        let mut bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .fuse_unk(true)
            .byte_fallback(true);
        if let Some(i) = self.id("tokenizer.ggml.unknown_token_id")? {
            bpe = bpe.unk_token(self.tokens[i as usize].clone());
        }
        let mut norms = vec![];
        if prefix {
            norms.push(json!({"type": "Prepend", "prepend": "\u{2581}"}));
        }
        norms.push(json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"}));
        let mut decoders = vec![
            json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
            json!({"type": "ByteFallback"}),
            json!({"type": "Fuse"}),
        ];
        if prefix {
            decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
        }
        Ok(GgufTokenizerParts {
            bpe,
            normalizer: json!({"type": "Sequence", "normalizers": norms}),
            pre_tokenizer: Value::Null,
            decoder: json!({"type": "Sequence", "decoders": decoders}),
        })
    }
}

/// A GGUF tokenizer's BPE model, and its other components in their tokenizer.json form
/// (null where it has none).
struct GgufTokenizerParts {
    bpe: tokenizers::models::bpe::BpeBuilder,
    normalizer: Value,
    pre_tokenizer: Value,
    decoder: Value,
}

impl GgufTokenizerParts {
    fn build(self, post: Value) -> Result<tokenizers::Tokenizer> {
        let bpe = self.bpe.build().map_err(|e| {
            Error::Tokenizer(format!("building the tokenizer from GGUF metadata: {e}"))
        })?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner
            .with_normalizer(component::<tokenizers::NormalizerWrapper>(self.normalizer)?)
            .map_err(|e| Error::Tokenizer(format!("GGUF tokenizer normalizer: {e}")))?;
        inner
            .with_pre_tokenizer(component::<tokenizers::PreTokenizerWrapper>(
                self.pre_tokenizer,
            )?)
            .with_post_processor(component::<tokenizers::PostProcessorWrapper>(post)?)
            .with_decoder(component::<tokenizers::DecoderWrapper>(self.decoder)?);
        Ok(inner)
    }
}

/// The post-processor that puts BOS token `b` (id `id`) before every sequence.
fn bos_template(b: &str, id: u32) -> Value {
    json!({
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": b, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": b, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": b, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {b.to_string(): {"id": b, "ids": [id], "tokens": [b]}},
    })
}

/// A tokenizer component from its tokenizer.json form (None for null).
fn component<T: serde::de::DeserializeOwned>(v: Value) -> Result<Option<T>> {
    if v.is_null() {
        return Ok(None);
    }
    serde_json::from_value(v)
        .map(Some)
        .map_err(|e| Error::Tokenizer(format!("building the tokenizer from GGUF metadata: {e}")))
}

/// Pre-tokenizers of the BPE vocabularies llama.cpp names in `tokenizer.ggml.pre`.
fn gpt2_pre_tokenizer(pre: &str) -> Result<Value> {
    let byte_level = |regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": regex});
    let split = |pattern: &str| json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false});
    const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    // o200k's split (Phi-4-mini): words break at an upper-case letter after lower-case ones.
    const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    Ok(match pre {
        // SmolLM: every digit on its own, then GPT-2's byte-level split.
        "smollm" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
        "gpt2" | "default" => byte_level(true),
        // DBRX's (cl100k's, as in OLMo 2 and Phi-4) split is Llama 3's, as llama.cpp treats it.
        "llama3" | "llama-bpe" | "smaug-bpe" | "dbrx" => {
            json!({"type": "Sequence", "pretokenizers": [split(LLAMA3), byte_level(false)]})
        }
        "qwen2" | "deepseek-r1-qwen" => {
            json!({"type": "Sequence", "pretokenizers": [split(QWEN2), byte_level(false)]})
        }
        "gpt-4o" => json!({"type": "Sequence", "pretokenizers": [split(GPT4O), byte_level(false)]}),
        other => {
            return Err(Error::Unsupported(format!(
                "GGUF pre-tokenizer `{other}` (supported: smollm, gpt2, llama-bpe, dbrx, qwen2, \
                 deepseek-r1-qwen, gpt-4o); \
                 put the model's tokenizer.json next to it"
            )))
        }
    })
}

/// Recovers BPE merges from a SentencePiece vocabulary (`vocab` maps each piece to its id):
/// every split of a piece into two pieces of the vocabulary is a merge, ranked by the merged
/// piece's score (then id). Gemma's 262k pieces give 515k merges; the pieces are split across
/// the threads, looked up in the vocabulary the BPE model takes (a second map of the pieces,
/// with the standard library's slower hash, took a tenth of Gemma 3 270M's load time).
fn sentencepiece_merges(tokens: &[String], scores: &[f32], vocab: &Vocab) -> Vec<(String, String)> {
    let mut merges: Vec<(f32, usize, u32, u32)> = tokens
        .par_iter()
        .enumerate()
        .flat_map_iter(|(id, piece)| {
            piece.char_indices().skip(1).filter_map(move |(split, _)| {
                let (l, r) = piece.split_at(split);
                let (&li, &ri) = (vocab.get(l)?, vocab.get(r)?);
                Some((scores.get(id).copied().unwrap_or(0.0), id, li, ri))
            })
        })
        .collect();
    merges.par_sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    merges
        .into_iter()
        .map(|(_, _, l, r)| (tokens[l as usize].clone(), tokens[r as usize].clone()))
        .collect()
}

/// The text of a token sequence that grows during generation, decoding at each step only the
/// tokens since the last complete piece (and the one before them, which gives the decoder its
/// context: a leading space, a byte sequence) instead of the whole sequence again, which made
/// long generations quadratic. Equal to [`Tokenizer::decode`] of the whole sequence.
#[derive(Debug, Default)]
pub struct DecodeStream {
    /// Tokens `prefix..read` are the context of the window; `..read` are decoded into `text`.
    prefix: usize,
    read: usize,
    text: String,
}

impl DecodeStream {
    /// The decoding of all of `tokens`, the same sequence as at the last call with tokens
    /// appended. A trailing incomplete character shows as U+FFFD, as in a whole decode.
    pub fn text(&mut self, tokenizer: &Tokenizer, tokens: &[u32]) -> Result<String> {
        let context = tokenizer.decode(&tokens[self.prefix..self.read])?;
        let window = tokenizer.decode(&tokens[self.prefix..])?;
        let Some(tail) = window.strip_prefix(context.as_str()) else {
            // A decoder that rewrites earlier text: decode it all.
            return tokenizer.decode(tokens);
        };
        let full = format!("{}{tail}", self.text);
        if !tail.is_empty() && !tail.ends_with('\u{FFFD}') {
            self.text.push_str(tail);
            (self.prefix, self.read) = (self.read, tokens.len());
        }
        Ok(full)
    }
}

#[cfg(test)]
mod tests;
