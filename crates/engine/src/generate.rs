//! Text generation: prompt in one batch, then one token at a time, streamed as text.

use crate::chat::ToolCall;
use crate::error::{Error, Result};
use crate::grammar::{Constraint, Grammar};
use crate::model::Model;
use crate::sampling::{Sampler, SamplingParams};
use crate::tokenizer::{DecodeStream, Tokenizer};
use crate::tools::{parse_calls, ToolFormat, Tools};
use candle_core::Tensor;
use serde::Serialize;
use std::time::Instant;

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
        let bytes = tokenizer.token_bytes().get(token as usize).cloned();
        let mut bytes = bytes.unwrap_or_default();
        if bytes.first() == Some(&crate::tokenizer::SPECIAL) {
            bytes.remove(0);
        }
        Self {
            token,
            text: tokenizer.token_text(token),
            bytes,
            logprob,
        }
    }
}

/// Token `chosen`'s log-probability under `logits` at `temperature` (1 when it is 0), and the
/// `top` likeliest tokens'.
fn token_logprob(
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
/// show the beginning of a stop string before it is known not to be one. For a thinking model,
/// it tells the reasoning (`<think>…</think>`) from the answer, and never shows the tags.
struct TextStream {
    stop: Vec<String>,
    /// Hold back text from where a tool call may start.
    calls: Option<ToolFormat>,
    think: Think,
    /// All text decoded so far.
    text: String,
    /// How much of `text` has been handed out.
    emitted: usize,
}

const THINK_OPEN: &str = "<think>";
const THINK_CLOSE: &str = "</think>";

/// Where a thinking model's reasoning is in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Think {
    /// No reasoning: all text is the answer.
    Off,
    /// The output may open with `<think>`: not known yet.
    Maybe,
    /// Reasoning from `start` on, not closed yet.
    Open { start: usize },
    /// Reasoning in `start..end`, the answer from `answer` on.
    Closed {
        start: usize,
        end: usize,
        answer: usize,
    },
}

impl Think {
    fn new(reasoning: Reasoning) -> Self {
        match reasoning {
            Reasoning::Off | Reasoning::Auto => Think::Off,
            Reasoning::Split { opened: false } => Think::Maybe,
            Reasoning::Split { opened: true } => Think::Open { start: 0 },
        }
    }

    /// The state once `text` is known.
    fn after(self, text: &str) -> Self {
        match self {
            Think::Maybe => {
                let body = text.trim_start();
                let at = text.len() - body.len();
                if body.starts_with(THINK_OPEN) {
                    Think::Open {
                        start: at + THINK_OPEN.len(),
                    }
                    .after(text)
                } else if THINK_OPEN.starts_with(body) {
                    Think::Maybe
                } else {
                    Think::Off
                }
            }
            Think::Open { start } => match text[start..].find(THINK_CLOSE) {
                Some(i) => {
                    let end = start + i;
                    let rest = &text[end + THINK_CLOSE.len()..];
                    let answer = text.len() - rest.trim_start().len();
                    Think::Closed { start, end, answer }
                }
                None => self,
            },
            other => other,
        }
    }

    /// The spans of the text: (from, to, Some(reasoning?)) shown, None for tags left out.
    fn spans(self) -> Vec<(usize, usize, Option<bool>)> {
        match self {
            Think::Off => vec![(0, usize::MAX, Some(false))],
            Think::Maybe => vec![],
            Think::Open { start } => vec![(0, start, None), (start, usize::MAX, Some(true))],
            Think::Closed { start, end, answer } => vec![
                (0, start, None),
                (start, end, Some(true)),
                (end, answer, None),
                (answer, usize::MAX, Some(false)),
            ],
        }
    }

    /// Where the answer starts, once known.
    fn answer(self) -> Option<usize> {
        match self {
            Think::Off => Some(0),
            Think::Closed { answer, .. } => Some(answer),
            Think::Maybe | Think::Open { .. } => None,
        }
    }
}

impl TextStream {
    fn new(stop: Vec<String>, calls: Option<ToolFormat>, reasoning: Reasoning) -> Self {
        Self {
            stop,
            calls,
            think: Think::new(reasoning),
            text: String::new(),
            emitted: 0,
        }
    }

    /// Updates with the decoding of all generated tokens. Returns the next safe pieces (text,
    /// is it reasoning) and whether a stop string was found (the text is then cut before it).
    fn update(&mut self, decoded: String) -> (Vec<(String, bool)>, bool) {
        self.text = decoded;
        if let Some(cut) = self
            .stop
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| self.text.find(s.as_str()))
            .min()
        {
            self.text.truncate(cut);
            return (self.finish(), true);
        }
        self.think = self.think.after(&self.text);
        if self.think == Think::Maybe {
            // Nothing is shown until it is known whether the output opens with reasoning.
            return (Vec::new(), false);
        }
        // An incomplete character decodes to U+FFFD at the end: wait for the next token.
        let mut safe = self.text.len();
        if self.text.ends_with('\u{FFFD}') {
            safe -= '\u{FFFD}'.len_utf8();
        }
        // Hold back a suffix that could be the start of a stop string or of `</think>`.
        let close = matches!(self.think, Think::Open { .. }).then_some(THINK_CLOSE);
        for s in self.stop.iter().map(String::as_str).chain(close) {
            for (i, _) in s.char_indices().skip(1) {
                if self.text[..safe].ends_with(&s[..i]) {
                    safe = safe.min(self.text.len() - i);
                }
            }
        }
        if let (Some(format), Some(answer)) = (self.calls, self.think.answer()) {
            if let Some(at) = format.withhold_from(&self.text[answer..]) {
                safe = safe.min(answer + at);
            }
        }
        (self.take(safe), false)
    }

    fn take(&mut self, upto: usize) -> Vec<(String, bool)> {
        if upto <= self.emitted || !self.text.is_char_boundary(upto) {
            return Vec::new();
        }
        let mut pieces = Vec::new();
        for (from, to, shown) in self.think.spans() {
            let (from, to) = (from.max(self.emitted), to.min(upto));
            if let (Some(reasoning), true) = (shown, from < to) {
                pieces.push((self.text[from..to].to_string(), reasoning));
            }
        }
        self.emitted = upto;
        pieces
    }

    /// Whatever is left once generation ends.
    fn finish(&mut self) -> Vec<(String, bool)> {
        if self.think == Think::Maybe {
            // The output never opened reasoning.
            self.think = Think::Off;
        }
        self.take(self.text.len())
    }

    /// The reasoning, for a thinking model that wrote some.
    fn reasoning(&self) -> Option<String> {
        match self.think {
            Think::Open { start } => Some(self.text[start..].trim().to_string()),
            Think::Closed { start, end, .. } => Some(self.text[start..end].trim().to_string()),
            Think::Off | Think::Maybe => None,
        }
    }

    /// The answer: the text after the reasoning (none while it is still open).
    fn answer(&self) -> &str {
        match self.think {
            Think::Open { .. } => "",
            t => &self.text[t.answer().unwrap_or(0)..],
        }
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

#[cfg(test)]
mod tests {
    use super::{Reasoning, TextStream};
    use crate::tools::ToolFormat;

    fn plain(stop: &[&str]) -> TextStream {
        let stop = stop.iter().map(|s| s.to_string()).collect();
        TextStream::new(stop, None, Reasoning::Off)
    }

    /// The pieces as one string, reasoning in brackets.
    fn shown(pieces: Vec<(String, bool)>) -> String {
        pieces
            .into_iter()
            .map(|(t, r)| if r { format!("[{t}]") } else { t })
            .collect()
    }

    #[test]
    fn stream_holds_back_incomplete_characters() {
        let mut s = plain(&[]);
        assert_eq!(shown(s.update("ab\u{FFFD}".into()).0), "ab");
        assert_eq!(shown(s.update("abé".into()).0), "é");
    }

    #[test]
    fn stream_cuts_at_stop_string_and_never_shows_it() {
        let mut s = plain(&["\nUser:"]);
        assert_eq!(
            s.update("Hi\nUs".into()),
            (vec![("Hi".to_string(), false)], false)
        );
        assert_eq!(s.update("Hi\nUser: x".into()), (vec![], true));
        assert_eq!(s.text, "Hi");
    }

    #[test]
    fn stream_releases_a_false_stop_prefix() {
        let mut s = plain(&["END"]);
        assert_eq!(shown(s.update("xE".into()).0), "x");
        assert_eq!(shown(s.update("xEx".into()).0), "Ex");
    }

    #[test]
    fn reasoning_comes_apart_from_the_answer_without_its_tags() {
        let mut s = TextStream::new(vec![], None, Reasoning::Split { opened: false });
        let mut out = String::new();
        for text in [
            "<th",
            "<think>\nHm",
            "<think>\nHmm.</th",
            "<think>\nHmm.</think>\n\n",
            "<think>\nHmm.</think>\n\nYes.",
        ] {
            out += &shown(s.update(text.into()).0);
        }
        out += &shown(s.finish());
        assert_eq!(out, "[\nHm][m.]Yes.");
        assert_eq!(
            (s.reasoning().as_deref(), s.answer()),
            (Some("Hmm."), "Yes.")
        );

        // The prompt opened it (DeepSeek-R1); never closed, all of it is reasoning.
        let mut s = TextStream::new(vec![], None, Reasoning::Split { opened: true });
        assert_eq!(shown(s.update("Let me see".into()).0), "[Let me see]");
        assert_eq!(
            (s.reasoning().as_deref(), s.answer()),
            (Some("Let me see"), "")
        );

        // No `<think>` at the start: all answer.
        let mut s = TextStream::new(vec![], None, Reasoning::Split { opened: false });
        assert_eq!(shown(s.update(" <".into()).0), "");
        assert_eq!(shown(s.update(" <b>".into()).0), " <b>");
        assert_eq!(s.reasoning(), None);
    }

    #[test]
    fn a_call_after_reasoning_is_held_back() {
        let mut s = TextStream::new(
            vec![],
            Some(ToolFormat::Hermes),
            Reasoning::Split { opened: true },
        );
        let all = "x</think>Sure. <tool_call>\n{";
        assert_eq!(shown(s.update(all.into()).0), "[x]Sure. ");
        assert_eq!(s.answer(), "Sure. <tool_call>\n{");
    }
}
