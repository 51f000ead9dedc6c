//! Constrained decoding: output that matches a JSON Schema, a regular expression or a Lark
//! grammar by construction. Before each token is sampled, [llguidance] computes which tokens
//! can continue a match and every other token's logit becomes −∞; the end-of-sequence tokens are
//! allowed only where the match is complete.
//!
//! llguidance works on token bytes. Its token trie is built from candor's own tokenizer
//! ([`Tokenizer::token_bytes`]), once per model, on the first constrained request.

use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use serde_json::{json, Value};
use std::sync::Arc;

/// What the output must match.
#[derive(Debug, Clone, PartialEq)]
pub enum GrammarKind {
    /// Any JSON object (OpenAI's `json_object`).
    JsonObject,
    /// JSON that validates against this schema. A keyword the engine cannot enforce is an
    /// error, never silently ignored.
    JsonSchema(Value),
    /// Text that matches this regular expression in full.
    Regex(String),
    /// A grammar in llguidance's Lark dialect.
    Lark(String),
}

/// A constraint and where it came from, which its errors name (a request field, a CLI flag).
#[derive(Debug, Clone, PartialEq)]
pub struct Grammar {
    pub kind: GrammarKind,
    pub origin: String,
}

impl Grammar {
    pub fn new(kind: GrammarKind, origin: impl Into<String>) -> Self {
        Self {
            kind,
            origin: origin.into(),
        }
    }

    fn top_level(&self) -> TopLevelGrammar {
        match &self.kind {
            GrammarKind::JsonObject => {
                TopLevelGrammar::from_json_schema(with_layout(json!({"type": "object"})))
            }
            GrammarKind::JsonSchema(schema) => {
                TopLevelGrammar::from_json_schema(with_layout(schema.clone()))
            }
            GrammarKind::Regex(rx) => TopLevelGrammar::from_regex(rx),
            GrammarKind::Lark(lark) => TopLevelGrammar::from_lark(lark.clone()),
        }
    }

    fn error(&self, message: impl std::fmt::Display) -> Error {
        Error::Grammar {
            origin: self.origin.clone(),
            message: message.to_string(),
        }
    }

    /// Compiles the grammar for `tokenizer`'s vocabulary: the errors a request gets before it
    /// runs (an unsupported schema keyword, a malformed regex).
    pub fn check(&self, tokenizer: &Tokenizer) -> Result<()> {
        Constraint::new(self, tokenizer).map(|_| ())
    }
}

/// JSON laid out as OpenAI's models write it (`{"a": 1, "b": [2, 3]}`) rather than with any
/// whitespace anywhere: a small model allowed free whitespace can pad forever. A schema's own
/// `x-guidance` options win.
fn with_layout(mut schema: Value) -> Value {
    if let Value::Object(o) = &mut schema {
        o.entry("x-guidance").or_insert_with(
            || json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}),
        );
    }
    schema
}

/// One generation's constraint: the parser state after the tokens so far.
pub(crate) struct Constraint {
    matcher: Matcher,
    grammar: Grammar,
}

impl Constraint {
    pub fn new(grammar: &Grammar, tokenizer: &Tokenizer) -> Result<Self> {
        let factory = factory(tokenizer).map_err(|e| grammar.error(e))?;
        let parser = factory
            .create_parser(grammar.top_level())
            .map_err(|e| grammar.error(e))?;
        Ok(Self {
            matcher: Matcher::new(Ok(parser)),
            grammar: grammar.clone(),
        })
    }

    /// Sets the logit of every token the grammar does not allow next to −∞.
    pub fn mask(&mut self, logits: &mut [f32]) -> Result<()> {
        let mask = self
            .matcher
            .compute_mask()
            .map_err(|e| self.grammar.error(e))?;
        let mut any = false;
        for (id, l) in logits.iter_mut().enumerate() {
            if id < mask.len() && mask.is_allowed(id as TokenId) {
                any |= *l > f32::NEG_INFINITY;
            } else {
                *l = f32::NEG_INFINITY;
            }
        }
        if !any {
            return Err(self
                .grammar
                .error("no token of the vocabulary continues it"));
        }
        Ok(())
    }

    /// Advances past `token`, which the last mask allowed.
    pub fn commit(&mut self, token: u32) -> Result<()> {
        self.matcher
            .consume_token(token)
            .map_err(|e| self.grammar.error(e))
    }

    /// The grammar is complete and allows nothing more.
    pub fn is_finished(&self) -> bool {
        self.matcher.is_stopped()
    }
}

/// The tokenizer's grammar engine, built once.
fn factory(tokenizer: &Tokenizer) -> std::result::Result<Arc<ParserFactory>, String> {
    tokenizer
        .grammars
        .get_or_init(|| build_factory(tokenizer))
        .clone()
}

fn build_factory(tokenizer: &Tokenizer) -> std::result::Result<Arc<ParserFactory>, String> {
    let bytes = tokenizer.token_bytes();
    let stops = tokenizer.stop_ids();
    let Some(&eos) = stops.first() else {
        return Err("the model declares no end-of-sequence token, so no output could end".into());
    };
    let info = TokRxInfo::new(bytes.len() as u32, eos);
    let trie = TokTrie::from(&info, bytes).with_eos_tokens(stops);
    let env: TokEnv = Arc::new(Vocabulary { trie });
    let mut factory = ParserFactory::new_simple(&env).map_err(|e| e.to_string())?;
    factory.quiet();
    Ok(Arc::new(factory))
}

/// llguidance's view of a tokenizer: the trie of token bytes. It never tokenizes text for
/// candor (the mask is computed over the whole vocabulary at every step, nothing is forced), so
/// it says its tokenizations are not canonical and uses the trie's greedy one: a SentencePiece
/// tokenizer would put a space before text it is given alone.
struct Vocabulary {
    trie: TokTrie,
}

impl TokenizerEnv for Vocabulary {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.trie.greedy_tokenize(s)
    }

    fn tokenize_is_canonical(&self) -> bool {
        false
    }
}
