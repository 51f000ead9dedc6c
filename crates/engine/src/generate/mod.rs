//! Text generation: prompt in one batch, then one token at a time, streamed as text.
//!
//! - `text`: the growing text, cut into pieces safe to hand out; reasoning apart.
//! - `logprobs`: the log-probabilities reported with each token.

mod logprobs;
mod text;

use crate::chat::ToolCall;
use crate::error::{Error, Result};
use crate::grammar::{Constraint, Grammar};
use crate::model::Model;
use crate::sampling::{Sampler, SamplingParams};
use crate::tokenizer::{DecodeStream, Tokenizer};
use crate::tools::{parse_calls, ToolFormat, Tools};
use candle_core::Tensor;
use logprobs::token_logprob;
pub use logprobs::{ScoredToken, TokenLogprob};
use serde::Serialize;
use std::time::Instant;
use text::{TextStream, THINK_OPEN};

#[derive(Debug, Clone)]
pub struct GenerateParams {
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation ends before any of these strings; they are not part of the output.
    pub stop: Vec<String>,
    /// What the output must match; generation ends when the match is complete.
    pub grammar: Option<Grammar>,
    /// Report each generated token's log-probability and this many most likely alternatives
    /// (at most [`MAX_TOP_LOGPROBS`]). None: report nothing.
    pub logprobs: Option<usize>,
    /// Functions the model may call (chat only): rendered into the prompt, their calls
    /// constrained by a grammar and parsed out of the output.
    pub tools: Option<Tools>,
    /// How the model writes calls; set when the prompt is rendered with `tools`.
    pub tool_format: Option<ToolFormat>,
    /// Whether the output's `<think>…</think>` reasoning is told apart from the answer.
    pub reasoning: Reasoning,
}

/// Whether a generation tells a thinking model's reasoning from its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reasoning {
    /// The output is all answer.
    #[default]
    Off,
    /// Split when the chat template thinks (writes `<think>`); resolved by [`Reasoning::resolve`].
    Auto,
    /// Reasoning in `<think>…</think>` comes apart; `opened`: the prompt already opened it
    /// (DeepSeek-R1's template ends with `<think>`), else the output may.
    Split { opened: bool },
}

impl Reasoning {
    /// What to do for `prompt`, rendered by `template` (None: a raw prompt, no template).
    pub fn resolve(self, template: Option<&crate::ChatTemplate>, prompt: &str) -> Self {
        let opened = prompt.trim_end().ends_with(THINK_OPEN);
        let thinks = template.is_some_and(|t| t.source().contains(THINK_OPEN));
        match self {
            Reasoning::Auto if !thinks => Reasoning::Off,
            Reasoning::Off => Reasoning::Off,
            Reasoning::Auto | Reasoning::Split { .. } => Reasoning::Split { opened },
        }
    }
}
/// The most alternatives a token's log-probability report lists (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

impl Default for GenerateParams {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            sampling: SamplingParams::default(),
            stop: Vec::new(),
            grammar: None,
            logprobs: None,
            tools: None,
            tool_format: None,
            reasoning: Reasoning::Off,
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
    /// The model called tools ([`Completion::tool_calls`]).
    ToolCalls,
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
    /// One entry per generated token when [`GenerateParams::logprobs`] asked for them.
    pub logprobs: Vec<TokenLogprob>,
    /// The calls parsed out of the output; `text` is then what came before them.
    pub tool_calls: Vec<ToolCall>,
    /// A thinking model's reasoning (`<think>…</think>`), apart from its answer in `text`.
    pub reasoning: Option<String>,
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

/// One generation's state between forward passes: the sampler, the tokens so far and the
/// text handed out. Whoever runs the network (`Model::generate` for one sequence, the server's
/// scheduler for many) feeds it each step's logits; it says which token to feed next or why
/// the generation ended. Both paths share it, so a request ends the same way alone or batched.
pub struct Generation {
    max_tokens: usize,
    sampler: Sampler,
    constraint: Option<Constraint>,
    /// How many alternatives to report with each token's log-probability; None: no report.
    top_logprobs: Option<usize>,
    logprobs: Vec<TokenLogprob>,
    /// Log-probabilities already handed out with a piece of text.
    logprobs_sent: usize,
    /// The prompt and the tokens generated so far (repetition penalties look at both).
    history: Vec<u32>,
    tokens: Vec<u32>,
    stream: TextStream,
    decoded: DecodeStream,
    tools: Option<(Tools, ToolFormat)>,
    prompt_tokens: usize,
    cached_prompt_tokens: usize,
    started: Instant,
    /// When the prompt's logits arrived: the end of prompt processing.
    first_logits: Option<Instant>,
}

/// A piece of a generation's text as it is made.
#[derive(Debug, Clone, Copy)]
pub struct Piece<'a> {
    pub text: &'a str,
    /// Part of a thinking model's reasoning, not of its answer.
    pub reasoning: bool,
    /// The log-probabilities of the tokens behind it (empty unless asked for).
    pub logprobs: &'a [TokenLogprob],
}

/// Where a generation's text goes as it is made. Returning false cancels.
pub type OnText<'a> = dyn FnMut(Piece) -> bool + 'a;

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
    /// Fails on invalid options and on a grammar that does not compile.
    pub fn new(
        prompt: &[u32],
        cached: usize,
        params: &GenerateParams,
        tokenizer: &Tokenizer,
    ) -> Result<Self> {
        if params.logprobs.is_some_and(|n| n > MAX_TOP_LOGPROBS) {
            return Err(Error::InvalidOption(format!(
                "at most {MAX_TOP_LOGPROBS} top log-probabilities per token"
            )));
        }
        let constraint = match &params.grammar {
            Some(g) => Some(Constraint::new(g, tokenizer)?),
            None => None,
        };
        Ok(Self {
            max_tokens: params.max_tokens,
            sampler: Sampler::new(params.sampling.clone())?,
            constraint,
            top_logprobs: params.logprobs,
            logprobs: Vec::new(),
            logprobs_sent: 0,
            history: prompt.to_vec(),
            tokens: Vec::new(),
            stream: TextStream::new(params.stop.clone(), params.tool_format, params.reasoning),
            tools: params.tools.clone().zip(params.tool_format),
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

    /// Samples the next token from `logits` (the last fed position's), hands any new text and
    /// the log-probabilities of the tokens behind it to `on_text` (false cancels) and says
    /// what comes next. `ctx_full`: the sequence's cache holds as many positions as the context.
    pub fn advance(
        &mut self,
        logits: &mut [f32],
        tokenizer: &Tokenizer,
        ctx_full: bool,
        on_text: &mut OnText,
    ) -> Result<Next> {
        self.first_logits.get_or_insert_with(Instant::now);
        if self.tokens.len() >= self.max_tokens {
            return Ok(Next::Finished(FinishReason::Length));
        }
        if let Some(c) = &mut self.constraint {
            c.mask(logits)?;
        }
        let next = self.sampler.sample(logits, &self.history);
        if tokenizer.is_stop(next) {
            return Ok(Next::Finished(FinishReason::Eos));
        }
        if let Some(c) = &mut self.constraint {
            c.commit(next)?;
        }
        if let Some(top) = self.top_logprobs {
            let t = self.sampler.params().temperature;
            self.logprobs
                .push(token_logprob(tokenizer, logits, next, top, t));
        }
        self.tokens.push(next);
        self.history.push(next);
        let (pieces, stopped) = self
            .stream
            .update(self.decoded.text(tokenizer, &self.tokens)?);
        if !self.hand_out(&pieces, on_text) {
            return Ok(Next::Finished(FinishReason::Cancelled));
        }
        let complete = self
            .constraint
            .as_ref()
            .is_some_and(Constraint::is_finished);
        Ok(Next::Finished(if stopped || complete {
            FinishReason::Stop
        } else if self.tokens.len() >= self.max_tokens {
            FinishReason::Length
        } else if ctx_full {
            FinishReason::Context
        } else {
            return Ok(Next::Feed(next));
        }))
    }

    /// Hands `pieces` to `on_text`, the log-probabilities not handed out yet with the first;
    /// false when the caller cancels.
    fn hand_out(&mut self, pieces: &[(String, bool)], on_text: &mut OnText) -> bool {
        for (text, reasoning) in pieces {
            let logprobs = &self.logprobs[self.logprobs_sent..];
            self.logprobs_sent = self.logprobs.len();
            let piece = Piece {
                text,
                reasoning: *reasoning,
                logprobs,
            };
            if !on_text(piece) {
                return false;
            }
        }
        true
    }

    /// Ends the generation: hands out any text held back (unless cancelled) and returns it all.
    pub fn finish(mut self, mut finish_reason: FinishReason, on_text: &mut OnText) -> Completion {
        let mut tool_calls = Vec::new();
        if let Some((tools, format)) = &self.tools {
            let answer = self.stream.answer();
            let (content, calls) = parse_calls(*format, answer, tools);
            if !calls.is_empty() {
                // The calls were held back; what came before them is the answer's text.
                let cut = self.stream.text.len() - answer.len() + content.len();
                self.stream.text.truncate(cut);
                tool_calls = calls;
                if matches!(finish_reason, FinishReason::Eos | FinishReason::Stop) {
                    finish_reason = FinishReason::ToolCalls;
                }
            }
        }
        let mut rest = self.stream.finish();
        if finish_reason != FinishReason::Cancelled {
            if rest.is_empty() && self.logprobs_sent < self.logprobs.len() {
                // Tokens whose text a stop string cut: their log-probabilities still go out.
                rest.push((String::new(), false));
            }
            self.hand_out(&rest, on_text);
        }
        let now = Instant::now();
        let first = self.first_logits.unwrap_or(now);
        Completion {
            text: self.stream.answer().to_string(),
            reasoning: self.stream.reasoning(),
            tokens: self.tokens,
            prompt_tokens: self.prompt_tokens,
            cached_prompt_tokens: self.cached_prompt_tokens,
            finish_reason,
            prompt_seconds: (first - self.started).as_secs_f64(),
            generate_seconds: (now - first).as_secs_f64(),
            logprobs: self.logprobs,
            tool_calls,
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
        on_text: &mut OnText,
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
        let mut generation = Generation::new(prompt, common, params, self.tokenizer())?;
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
