//! Perplexity: how well the model predicts a text, exp(mean negative log-likelihood).

use crate::error::{Error, Result};
use crate::layers::log_softmax;
use crate::model::Model;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Perplexity {
    pub perplexity: f64,
    /// Tokens that were scored.
    pub tokens: usize,
    pub windows: usize,
}

impl Model {
    /// Tokenizes `text` without a chat template (BOS added iff the tokenizer adds it by
    /// default), splits it into non-overlapping windows of at most the context size, and scores
    /// every token after the first of each window.
    pub fn perplexity(&mut self, text: &str) -> Result<Perplexity> {
        let ids = self.tokenizer().encode(text, true)?;
        if ids.len() < 2 {
            return Err(Error::InvalidOption(
                "the text needs at least two tokens to score".into(),
            ));
        }
        let window = self.info().ctx_size;
        let (mut nll, mut scored, mut windows) = (0f64, 0usize, 0usize);
        for chunk in ids.chunks(window) {
            if chunk.len() < 2 {
                continue;
            }
            self.reset();
            let logits = self.forward(chunk, true)?;
            let logp = log_softmax(&logits)?.to_vec2::<f32>()?;
            for (i, &next) in chunk.iter().enumerate().skip(1) {
                nll -= logp[i - 1][next as usize] as f64;
                scored += 1;
            }
            windows += 1;
        }
        self.reset();
        Ok(Perplexity {
            perplexity: (nll / scored as f64).exp(),
            tokens: scored,
            windows,
        })
    }
}
