//! Log-probabilities of generated tokens, as OpenAI's `logprobs` report them.

use crate::tokenizer::Tokenizer;
use serde::Serialize;

/// A generated token and how likely it was, with the likeliest alternatives. The
/// probabilities are those of the distribution the token was drawn from: the model's logits
/// after the grammar's mask (−∞ outside it) and the repetition penalty, divided by the
/// temperature when it is above 0, before top-k, top-p and min-p cut the tail.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TokenLogprob {
    pub chosen: ScoredToken,
    /// The likeliest tokens at this position, best first (the chosen one among them if it is).
    pub top: Vec<ScoredToken>,
}

/// A token and its log-probability.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ScoredToken {
    pub token: u32,
    /// Its text (lossy where it is part of a character), a control token's name.
    pub text: String,
    pub bytes: Vec<u8>,
    pub logprob: f32,
}

impl ScoredToken {
    fn new(tokenizer: &Tokenizer, token: u32, logprob: f32) -> Self {
        let bytes = tokenizer.shown_bytes(token);
        Self {
            token,
            // Lossy where the token is part of a character.
            text: String::from_utf8_lossy(bytes).into_owned(),
            bytes: bytes.to_vec(),
            logprob,
        }
    }
}

/// Token `chosen`'s log-probability under `logits` at `temperature` (1 when it is 0), and the
/// `top` likeliest tokens'.
pub(super) fn token_logprob(
    tokenizer: &Tokenizer,
    logits: &[f32],
    chosen: u32,
    top: usize,
    temperature: f32,
) -> TokenLogprob {
    let t = if temperature > 0.0 { temperature } else { 1.0 };
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| (((l - max) / t) as f64).exp()).sum();
    let log_sum = sum.ln() as f32;
    let logprob = |l: f32| (l - max) / t - log_sum;
    let mut best: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .filter(|(_, l)| **l > f32::NEG_INFINITY)
        .map(|(i, &l)| (i as u32, l))
        .collect();
    let top = top.min(best.len());
    if top > 0 && top < best.len() {
        best.select_nth_unstable_by(top - 1, |a, b| b.1.total_cmp(&a.1));
    }
    best.truncate(top);
    best.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let chosen_logit = logits
        .get(chosen as usize)
        .copied()
        .unwrap_or(f32::NEG_INFINITY);
    TokenLogprob {
        chosen: ScoredToken::new(tokenizer, chosen, logprob(chosen_logit)),
        top: best
            .into_iter()
            .map(|(id, l)| ScoredToken::new(tokenizer, id, logprob(l)))
            .collect(),
    }
}
