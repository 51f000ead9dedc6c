//! Text generation: prompt in one batch, then one token at a time, streamed as text.

use crate::error::{Error, Result};
use crate::model::Model;
use crate::sampling::{Sampler, SamplingParams};
use crate::tokenizer::{DecodeStream, Tokenizer};
use candle_core::Tensor;
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct GenerateParams {
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation ends before any of these strings; they are not part of the output.
    pub stop: Vec<String>,
}

impl Default for GenerateParams {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            sampling: SamplingParams::default(),
            stop: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model produced an end-of-sequence token.
    Eos,
    /// A stop string appeared.
    Stop,
    /// `max_tokens` were generated.
    Length,
    /// The context is full.
    Context,
    /// The caller asked to stop.
    Cancelled,
}

#[derive(Debug, Clone, Serialize)]
pub struct Completion {
    pub text: String,
    pub tokens: Vec<u32>,
    pub prompt_tokens: usize,
    /// Prompt tokens that were already in the KV cache and not recomputed.
    pub cached_prompt_tokens: usize,
    pub finish_reason: FinishReason,
    pub prompt_seconds: f64,
    pub generate_seconds: f64,
}

impl Completion {
    pub fn prompt_tokens_per_second(&self) -> f64 {
        rate(
            self.prompt_tokens - self.cached_prompt_tokens,
            self.prompt_seconds,
        )
    }
    /// Decode speed: tokens after the first (which comes from the prompt pass) per second.
    pub fn tokens_per_second(&self) -> f64 {
        rate(self.tokens.len(), self.generate_seconds)
    }
}

fn rate(n: usize, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

/// Turns a growing token sequence into text pieces that never split a UTF-8 character and never
/// show the beginning of a stop string before it is known not to be one.
struct TextStream {
    stop: Vec<String>,
    /// All text decoded so far.
    text: String,
    /// How much of `text` has been handed out.
    emitted: usize,
}

impl TextStream {
    fn new(stop: Vec<String>) -> Self {
        Self {
            stop,
            text: String::new(),
            emitted: 0,
        }
    }

    /// Updates with the decoding of all generated tokens. Returns the next safe piece and
    /// whether a stop string was found (the text is then cut before it).
    fn update(&mut self, decoded: String) -> (String, bool) {
        self.text = decoded;
        if let Some(cut) = self
            .stop
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| self.text.find(s.as_str()))
            .min()
        {
            self.text.truncate(cut);
            return (self.take(self.text.len()), true);
        }
        // An incomplete character decodes to U+FFFD at the end: wait for the next token.
        let mut safe = self.text.len();
        if self.text.ends_with('\u{FFFD}') {
            safe -= '\u{FFFD}'.len_utf8();
        }
        // Hold back a suffix that could be the start of a stop string.
        for s in self.stop.iter().filter(|s| !s.is_empty()) {
            for (i, _) in s.char_indices().skip(1) {
                if self.text[..safe].ends_with(&s[..i]) {
                    safe = safe.min(self.text.len() - i).min(safe);
                }
            }
        }
        (self.take(safe), false)
    }

    fn take(&mut self, upto: usize) -> String {
        if upto <= self.emitted || !self.text.is_char_boundary(upto) {
            return String::new();
        }
        let piece = self.text[self.emitted..upto].to_string();
        self.emitted = upto;
        piece
    }

    /// Whatever is left once generation ends.
    fn finish(&mut self) -> String {
        self.take(self.text.len())
    }
}

/// One generation's state between forward passes: the sampler, the tokens so far and the
/// text handed out. Whoever runs the network (`Model::generate` for one sequence, the server's
/// scheduler for many) feeds it each step's logits; it says which token to feed next or why
/// the generation ended. Both paths share it, so a request ends the same way alone or batched.
pub struct Generation {
    max_tokens: usize,
    sampler: Sampler,
    /// The prompt and the tokens generated so far (repetition penalties look at both).
    history: Vec<u32>,
    tokens: Vec<u32>,
    stream: TextStream,
    decoded: DecodeStream,
    prompt_tokens: usize,
    cached_prompt_tokens: usize,
    started: Instant,
    /// When the prompt's logits arrived: the end of prompt processing.
    first_logits: Option<Instant>,
}

/// What to do after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Feed this token and call [`Generation::advance`] with its logits.
    Feed(u32),
    /// The generation is over; [`Generation::finish`] gives the completion.
    Finished(FinishReason),
}

impl Generation {
    /// Starts generating after `prompt`, of which `cached` tokens were in the cache already.
    pub fn new(prompt: &[u32], cached: usize, params: &GenerateParams) -> Result<Self> {
        Ok(Self {
            max_tokens: params.max_tokens,
            sampler: Sampler::new(params.sampling.clone())?,
            history: prompt.to_vec(),
            tokens: Vec::new(),
            stream: TextStream::new(params.stop.clone()),
            decoded: DecodeStream::default(),
            prompt_tokens: prompt.len(),
            cached_prompt_tokens: cached,
            started: Instant::now(),
            first_logits: None,
        })
    }

    /// Tokens generated so far.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Samples the next token from `logits` (the last fed position's), hands any new text to
    /// `on_text` (false cancels) and says what comes next. `ctx_full`: the sequence's cache
    /// holds as many positions as the context.
    pub fn advance(
        &mut self,
        logits: &mut [f32],
        tokenizer: &Tokenizer,
        ctx_full: bool,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Next> {
        self.first_logits.get_or_insert_with(Instant::now);
        if self.tokens.len() >= self.max_tokens {
            return Ok(Next::Finished(FinishReason::Length));
        }
        let next = self.sampler.sample(logits, &self.history);
        if tokenizer.is_stop(next) {
            return Ok(Next::Finished(FinishReason::Eos));
        }
        self.tokens.push(next);
        self.history.push(next);
        let (piece, stopped) = self
            .stream
            .update(self.decoded.text(tokenizer, &self.tokens)?);
        if !piece.is_empty() && !on_text(&piece) {
            return Ok(Next::Finished(FinishReason::Cancelled));
        }
        Ok(Next::Finished(if stopped {
            FinishReason::Stop
        } else if self.tokens.len() >= self.max_tokens {
            FinishReason::Length
        } else if ctx_full {
            FinishReason::Context
        } else {
            return Ok(Next::Feed(next));
        }))
    }

    /// Ends the generation: hands out any text held back (unless cancelled) and returns it all.
    pub fn finish(
        mut self,
        finish_reason: FinishReason,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Completion {
        let rest = self.stream.finish();
        if !rest.is_empty() && finish_reason != FinishReason::Cancelled {
            on_text(&rest);
        }
        let now = Instant::now();
        let first = self.first_logits.unwrap_or(now);
        Completion {
            text: self.stream.text,
            tokens: self.tokens,
            prompt_tokens: self.prompt_tokens,
            cached_prompt_tokens: self.cached_prompt_tokens,
            finish_reason,
            prompt_seconds: (first - self.started).as_secs_f64(),
            generate_seconds: (now - first).as_secs_f64(),
        }
    }
}

impl Model {
    /// Generates a continuation of `prompt` (token ids). Tokens already in the KV cache as a
    /// prefix of `prompt` are reused, the rest is processed in one batch. `on_text` receives
    /// each new piece of text; returning false cancels.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        params: &GenerateParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Completion> {
        if prompt.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        let ctx = self.info().ctx_size;
        if prompt.len() > ctx {
            return Err(Error::PromptTooLong {
                tokens: prompt.len(),
                context: ctx,
                max: self.info().context_length,
            });
        }
        // Reuse the longest cached prefix, but always recompute at least the last prompt token
        // so that there are logits to sample from.
        let common = reusable_prefix(self.cached_tokens(), prompt);
        self.truncate(common);
        let mut generation = Generation::new(prompt, common, params)?;
        let mut logits = last_row(&self.forward(&prompt[common..], false)?)?;
        let finish = loop {
            let ctx_full = self.cached_tokens().len() >= ctx;
            match generation.advance(&mut logits, self.tokenizer(), ctx_full, on_text)? {
                Next::Feed(next) => logits = last_row(&self.forward(&[next], false)?)?,
                Next::Finished(reason) => break reason,
            }
        };
        Ok(generation.finish(finish, on_text))
    }
}

/// How many of `cached`'s tokens a generation after `prompt` can keep: the common prefix, but
/// never the whole prompt, so that its last token is fed again and gives logits to sample from.
pub fn reusable_prefix(cached: &[u32], prompt: &[u32]) -> usize {
    cached
        .iter()
        .zip(prompt)
        .take_while(|(a, b)| a == b)
        .count()
        .min(prompt.len().saturating_sub(1))
}

pub(crate) fn last_row(logits: &Tensor) -> Result<Vec<f32>> {
    let n = logits.dim(0)?;
    Ok(logits.get(n - 1)?.to_vec1::<f32>()?)
}

#[cfg(test)]
mod tests {
    use super::TextStream;

    #[test]
    fn stream_holds_back_incomplete_characters() {
        let stop = vec![];
        let mut s = TextStream::new(stop);
        assert_eq!(s.update("ab\u{FFFD}".into()).0, "ab");
        assert_eq!(s.update("abé".into()).0, "é");
    }

    #[test]
    fn stream_cuts_at_stop_string_and_never_shows_it() {
        let stop = vec!["\nUser:".to_string()];
        let mut s = TextStream::new(stop);
        assert_eq!(s.update("Hi\nUs".into()), ("Hi".to_string(), false));
        assert_eq!(s.update("Hi\nUser: x".into()), ("".to_string(), true));
        assert_eq!(s.text, "Hi");
    }

    #[test]
    fn stream_releases_a_false_stop_prefix() {
        let stop = vec!["END".to_string()];
        let mut s = TextStream::new(stop);
        assert_eq!(s.update("xE".into()).0, "x");
        assert_eq!(s.update("xEx".into()).0, "Ex");
    }
}
