//! The worker that runs a model for many requests at once (continuous batching).
//!
//! Up to `parallel` requests hold a slot each. Every step is one forward pass over all of
//! them: each decoding slot feeds its last token, and slots still reading their prompt feed
//! the next chunk of it in what is left of the step's `batch_size` tokens, so a long prompt
//! never stalls the streams already running. New requests take a free slot between steps. With
//! the prefix cache on, a slot keeps its sequence's cache when its request ends; the next
//! request goes to the free slot whose cache shares the longest prefix with its prompt, and
//! skips those tokens.

use super::metrics::Metrics;
use super::{prepare, Event, Job, ServeError};
use crate::generate::{reusable_prefix, Generation, Next};
use crate::{FinishReason, GenerateParams, Model, Piece, SeqStep, Sequence};
use candle_core::Tensor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Instant;

/// How many requests share a forward pass and how many tokens one pass feeds at most.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Slots: requests generating at once.
    pub parallel: usize,
    /// Tokens fed per forward pass at most (decoding slots' one each, then prompt chunks).
    pub batch_size: usize,
    /// Reuse a slot's cached prefix for a new request. On the CPU a request's tokens are the
    /// same either way (the attention kernel treats every query row alike); candle's attention
    /// on a GPU rounds a prompt read in other pieces differently in the last bits.
    pub prefix_cache: bool,
    /// KV cache positions all slots hold at most. A request reserves its prompt and
    /// `max_tokens` (generation is cut to fit); one that does not fit beside those running
    /// waits in the queue, and idle slots' cached prefixes give way, least recently used first.
    /// None: each slot holds up to the context.
    pub kv_budget: Option<usize>,
}

impl Default for Batching {
    fn default() -> Self {
        Self {
            parallel: 1,
            batch_size: 512,
            prefix_cache: true,
            kv_budget: None,
        }
    }
}

/// A request taken from the queue and tokenized, with the KV positions it needs.
struct Ready {
    job: Job,
    prompt: Vec<u32>,
    params: GenerateParams,
    need: usize,
}

/// A request in a slot.
struct Active {
    job: Job,
    prompt: Vec<u32>,
    /// KV positions it may fill (its share of the budget).
    reserved: usize,
    /// Prompt tokens in the slot's sequence so far.
    fed: usize,
    generation: Generation,
    /// The token to feed next, once the prompt is in.
    next: Option<u32>,
    /// When the last token was sampled, for the inter-token latency.
    last_token: Option<Instant>,
}

impl Active {
    /// The tokens it feeds this step when it feeds `n`: its next token, or the next `n` of
    /// its prompt.
    fn input(&self, n: usize) -> &[u32] {
        match &self.next {
            Some(t) => std::slice::from_ref(t),
            None => &self.prompt[self.fed..self.fed + n],
        }
    }
}

struct Slot {
    seq: Sequence,
    active: Option<Active>,
    /// When it was last given a request: among slots with equal prefixes, the least recently
    /// used one is taken, so that recent caches stay.
    used: u64,
}

pub(super) struct Scheduler<'a> {
    model: Model,
    rx: Receiver<Job>,
    metrics: &'a Metrics,
    cancel: &'a AtomicBool,
    batching: Batching,
    slots: Vec<Slot>,
    admitted: u64,
    /// The request at the head of the queue, waiting for room in the KV budget.
    waiting: Option<Ready>,
}

impl<'a> Scheduler<'a> {
    pub fn new(
        model: Model,
        rx: Receiver<Job>,
        metrics: &'a Metrics,
        cancel: &'a AtomicBool,
        batching: Batching,
    ) -> Self {
        let slots = (0..batching.parallel.max(1))
            .map(|_| Slot {
                seq: model.new_sequence(),
                active: None,
                used: 0,
            })
            .collect();
        Self {
            model,
            rx,
            metrics,
            cancel,
            batching,
            slots,
            admitted: 0,
            waiting: None,
        }
    }

    /// Runs until every sender is gone and no request is left.
    pub fn run(mut self) {
        loop {
            if !self.admit() {
                return;
            }
            self.drop_departed();
            if self.slots.iter().any(|s| s.active.is_some()) {
                self.step();
            }
            self.update_gauges();
        }
    }

    /// Moves waiting requests into free slots, in the order they came, while the KV budget has
    /// room; blocks for one when nothing runs. False once the queue is closed and nothing runs.
    fn admit(&mut self) -> bool {
        loop {
            if !self.slots.iter().any(|s| s.active.is_none()) {
                return true;
            }
            let ready = match self.waiting.take() {
                Some(r) => {
                    self.metrics.queued.fetch_sub(1, Ordering::Relaxed);
                    if r.job.events.is_closed() {
                        Metrics::add(&self.metrics.cancelled, 1);
                        continue;
                    }
                    if self.cancel.load(Ordering::Relaxed) {
                        let _ = r.job.events.send(Event::Error(ServeError::ShuttingDown));
                        continue;
                    }
                    r
                }
                None => {
                    let idle = self.slots.iter().all(|s| s.active.is_none());
                    let job = if idle {
                        match self.rx.recv() {
                            Ok(j) => j,
                            Err(_) => return false,
                        }
                    } else {
                        match self.rx.try_recv() {
                            Ok(j) => j,
                            Err(TryRecvError::Empty) => return true,
                            Err(TryRecvError::Disconnected) => return true,
                        }
                    };
                    self.metrics.queued.fetch_sub(1, Ordering::Relaxed);
                    match self.ready(job) {
                        Some(r) => r,
                        None => continue,
                    }
                }
            };
            let slot = self.slot_for(&ready.prompt);
            if !self.make_room(slot, ready.need) {
                // It stays first in line, still counted as queued.
                self.metrics.queued.fetch_add(1, Ordering::Relaxed);
                self.waiting = Some(ready);
                return true;
            }
            self.start(ready, slot);
        }
    }

    /// Tokenizes `job` and sizes its share of the KV cache, or answers it at once when it
    /// cannot run.
    fn ready(&mut self, job: Job) -> Option<Ready> {
        if job.events.is_closed() {
            // The caller left while the job waited.
            Metrics::add(&self.metrics.cancelled, 1);
            return None;
        }
        if self.cancel.load(Ordering::Relaxed) {
            let _ = job.events.send(Event::Error(ServeError::ShuttingDown));
            return None;
        }
        let ctx = self.model.info().ctx_size;
        let budget = self.batching.kv_budget;
        let prepared = prepare(&self.model, &job.task).and_then(|(prompt, mut params)| {
            if let Some(budget) = budget.filter(|&b| b < ctx) {
                if prompt.len() > budget {
                    return Err(ServeError::OverKvBudget {
                        tokens: prompt.len(),
                        budget,
                    });
                }
                // The prompt and every generated token but the last take a position.
                params.max_tokens = params.max_tokens.min(budget - prompt.len() + 1);
            }
            let need = (prompt.len() + params.max_tokens)
                .saturating_sub(1)
                .min(ctx);
            Ok((prompt, params, need))
        });
        match prepared {
            Ok((prompt, params, need)) => Some(Ready {
                job,
                prompt,
                params,
                need,
            }),
            Err(e) => {
                Metrics::add(&self.metrics.failed, 1);
                let _ = job.events.send(Event::Error(e));
                None
            }
        }
    }

    /// The free slot for `prompt`: the one whose cache shares the longest prefix with it, the
    /// least recently used among equals.
    fn slot_for(&self, prompt: &[u32]) -> usize {
        let reuse = self.batching.prefix_cache;
        let reusable = |s: &Slot| match reuse {
            true => reusable_prefix(s.seq.tokens(), prompt),
            false => 0,
        };
        (0..self.slots.len())
            .filter(|&i| self.slots[i].active.is_none())
            .max_by_key(|&i| (reusable(&self.slots[i]), u64::MAX - self.slots[i].used))
            .expect("admit checks for a free slot")
    }

    /// Whether a request needing `need` positions fits in the KV budget in slot `slot`, beside
    /// the running ones, once idle slots hand back their cached prefixes (least recently used
    /// first, the chosen slot's last).
    fn make_room(&mut self, slot: usize, need: usize) -> bool {
        let Some(budget) = self.batching.kv_budget else {
            return true;
        };
        let held = |s: &Slot| match &s.active {
            Some(a) => s.seq.allocated_positions().max(a.reserved),
            None => s.seq.allocated_positions(),
        };
        let running: usize = self
            .slots
            .iter()
            .filter(|s| s.active.is_some())
            .map(held)
            .sum();
        if running + need > budget {
            return false;
        }
        let mut idle: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].active.is_none() && i != slot)
            .collect();
        idle.sort_by_key(|&i| self.slots[i].used);
        idle.push(slot);
        let mut total: usize = self.slots.iter().map(held).sum::<usize>() - held(&self.slots[slot])
            + held(&self.slots[slot]).max(need);
        for i in idle {
            if total <= budget {
                break;
            }
            let freed = if i == slot {
                held(&self.slots[i]).max(need) - need
            } else {
                held(&self.slots[i])
            };
            self.slots[i].seq.release();
            total -= freed;
        }
        total <= budget
    }

    /// Gives `ready` slot `slot`.
    fn start(&mut self, ready: Ready, slot: usize) {
        let Ready {
            job,
            prompt,
            params,
            need,
        } = ready;
        let reuse = self.batching.prefix_cache;
        let slot = &mut self.slots[slot];
        let cached = match reuse {
            true => reusable_prefix(slot.seq.tokens(), &prompt),
            false => 0,
        };
        // Options and grammar are checked before the request is said to start, so that a
        // refusal still gets its status code.
        let generation = match Generation::new(&prompt, cached, &params, self.model.tokenizer()) {
            Ok(g) => g,
            Err(e) => {
                Metrics::add(&self.metrics.failed, 1);
                let _ = job.events.send(Event::Error(e.into()));
                return;
            }
        };
        let started = Event::Started {
            prompt: prompt.clone(),
        };
        if job.events.send(started).is_err() {
            Metrics::add(&self.metrics.cancelled, 1);
            return;
        }
        slot.seq.truncate(cached);
        if self.batching.kv_budget.is_some() {
            slot.seq
                .limit_growth(need.max(slot.seq.allocated_positions()));
        }
        self.admitted += 1;
        slot.used = self.admitted;
        Metrics::add(&self.metrics.prompt_tokens, prompt.len());
        Metrics::add(&self.metrics.cached_prompt_tokens, cached);
        slot.active = Some(Active {
            job,
            prompt,
            reserved: need,
            fed: cached,
            generation,
            next: None,
            last_token: None,
        });
    }

    /// Frees the slots of callers that left (a closed connection): nobody is told.
    fn drop_departed(&mut self) {
        for slot in &mut self.slots {
            if slot
                .active
                .as_ref()
                .is_some_and(|a| a.job.events.is_closed())
            {
                slot.active = None;
                Metrics::add(&self.metrics.cancelled, 1);
            }
        }
    }

    /// One forward pass over every active slot, then a token for each that has read its
    /// prompt. A panic in the forward pass fails every request in it, one while sampling fails
    /// that request alone; either way the worker goes on.
    fn step(&mut self) {
        let plan = self.plan();
        let logits = match catch_unwind(AssertUnwindSafe(|| self.forward(&plan))) {
            Ok(Ok(logits)) => logits,
            Ok(Err(e)) => {
                let why = e.to_string();
                for &(slot, _) in &plan {
                    self.fail(slot, ServeError::StepFailed(why.clone()));
                }
                return;
            }
            Err(panic) => {
                let what = panic_message(&*panic);
                for &(slot, _) in &plan {
                    self.reset_after_panic(slot, &what);
                }
                return;
            }
        };
        for (row, &(slot, n)) in plan.iter().enumerate() {
            if let Err(panic) =
                catch_unwind(AssertUnwindSafe(|| self.advance(slot, n, &logits, row)))
            {
                self.reset_after_panic(slot, &panic_message(&*panic));
            }
        }
    }

    /// Fails slot `slot`'s request after a panic; its cache may be half-written, so the slot
    /// starts from scratch.
    fn reset_after_panic(&mut self, slot: usize, what: &str) {
        self.slots[slot].seq.truncate(0);
        self.fail(slot, ServeError::Panicked(what.to_string()));
    }

    /// Which slots feed how many tokens this step: one for each decoding slot, then prompt
    /// chunks in the order the requests came. A prompt is read in chunks of `batch_size` tokens
    /// counted from where it starts (the last one shorter), whatever else runs, so its
    /// arithmetic is the same alone or batched; a chunk that does not fit in what is left of
    /// this step waits for the next, except the step's first, so every prompt moves on.
    fn plan(&mut self) -> Vec<(usize, usize)> {
        let batch = self.batching.batch_size.max(1);
        let mut plan = Vec::new();
        for (i, s) in self.slots.iter().enumerate() {
            if s.active.as_ref().is_some_and(|a| a.next.is_some()) {
                plan.push((i, 1));
            }
        }
        let mut budget = batch.saturating_sub(plan.len());
        let mut reading: Vec<(u64, usize)> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.active.as_ref().is_some_and(|a| a.next.is_none()))
            .map(|(i, s)| (s.used, i))
            .collect();
        reading.sort();
        let mut first = true;
        for (_, i) in reading {
            let a = self.slots[i].active.as_ref().expect("active");
            let n = (a.prompt.len() - a.fed).min(batch);
            if n > budget && !first {
                continue;
            }
            plan.push((i, n));
            budget = budget.saturating_sub(n);
            first = false;
        }
        // A request whose tokens cannot follow its cache (past the context, outside the
        // vocabulary) ends alone instead of failing the whole pass.
        plan.retain(|&(i, n)| match self.check(i, n) {
            Ok(()) => true,
            Err(e) => {
                self.fail(i, e.into());
                false
            }
        });
        plan
    }

    fn check(&self, i: usize, n: usize) -> crate::Result<()> {
        let s = &self.slots[i];
        let a = s.active.as_ref().expect("planned slots are active");
        self.model.check_step(s.seq.len(), a.input(n))
    }

    /// Runs the planned tokens through the model in one pass; one row of logits per entry.
    fn forward(&mut self, plan: &[(usize, usize)]) -> crate::Result<Tensor> {
        // Each slot lends its tokens and its sequence at once, then the plan takes them in
        // its order.
        let mut lent: Vec<Option<(&Active, &mut Sequence)>> = self
            .slots
            .iter_mut()
            .map(|s| s.active.as_ref().map(|a| (a, &mut s.seq)))
            .collect();
        let mut steps: Vec<SeqStep> = plan
            .iter()
            .map(|&(i, n)| {
                let (a, seq) = lent[i].take().expect("a planned slot is active, once");
                SeqStep {
                    ids: a.input(n),
                    seq,
                }
            })
            .collect();
        self.model.forward_batch(&mut steps, false)
    }

    /// Takes row `row` of `logits` for slot `slot`, which fed `n` tokens.
    fn advance(&mut self, slot: usize, n: usize, logits: &Tensor, row: usize) {
        let ctx = self.model.info().ctx_size;
        let (model, metrics, cancel) = (&self.model, self.metrics, self.cancel);
        let s = &mut self.slots[slot];
        let a = s.active.as_mut().expect("planned slots are active");
        if a.next.is_none() {
            a.fed += n;
            if a.fed < a.prompt.len() {
                return;
            }
        }
        let mut row = match logits.get(row).and_then(|r| r.to_vec1::<f32>()) {
            Ok(r) => r,
            Err(e) => return self.fail(slot, crate::Error::from(e).into()),
        };
        let ctx_full = s.seq.len() >= ctx;
        let before = a.generation.tokens().len();
        let next = a.generation.advance(
            &mut row,
            model.tokenizer(),
            ctx_full,
            &mut on_text(&a.job, cancel),
        );
        if a.generation.tokens().len() > before {
            let now = Instant::now();
            match a.last_token {
                None => metrics.first_token(now - a.job.submitted),
                Some(last) => metrics.next_token(now - last),
            }
            a.last_token = Some(now);
        }
        match next {
            Ok(Next::Feed(t)) => a.next = Some(t),
            Ok(Next::Finished(reason)) => {
                let a = s.active.take().expect("active");
                let completion = a.generation.finish(reason, &mut on_text(&a.job, cancel));
                Metrics::add(&metrics.generated_tokens, completion.tokens.len());
                let counter = if reason == FinishReason::Cancelled {
                    &metrics.cancelled
                } else {
                    &metrics.completed
                };
                Metrics::add(counter, 1);
                let _ = a.job.events.send(Event::Done(completion));
            }
            Err(e) => self.fail(slot, e.into()),
        }
    }

    /// Ends slot `slot`'s request with `e`.
    fn fail(&mut self, slot: usize, e: ServeError) {
        if let Some(a) = self.slots[slot].active.take() {
            Metrics::add(&self.metrics.failed, 1);
            let _ = a.job.events.send(Event::Error(e));
        }
    }

    fn update_gauges(&self) {
        let m = self.metrics;
        let busy = self.slots.iter().filter(|s| s.active.is_some()).count();
        m.slots_busy.store(busy, Ordering::Relaxed);
        let tokens = self.slots.iter().map(|s| s.seq.len()).sum();
        m.kv_tokens.store(tokens, Ordering::Relaxed);
        let bytes = self.slots.iter().map(|s| s.seq.allocated_bytes()).sum();
        m.kv_bytes.store(bytes, Ordering::Relaxed);
        let allocated = self.slots.iter().map(|s| s.seq.allocated_positions()).sum();
        m.kv_peak_tokens.fetch_max(allocated, Ordering::Relaxed);
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// Where a request's text goes: streamed as events, or only checked for a caller that left.
/// False (cancel) once the caller is gone or the server stops.
fn on_text<'j>(job: &'j Job, cancel: &'j AtomicBool) -> impl FnMut(Piece) -> bool + 'j {
    move |piece: Piece| {
        if cancel.load(Ordering::Relaxed) {
            return false;
        }
        if job.task.stream {
            let text = Event::Text {
                text: piece.text.to_string(),
                reasoning: piece.reasoning,
                logprobs: piece.logprobs.to_vec(),
            };
            job.events.send(text).is_ok()
        } else {
            !job.events.is_closed()
        }
    }
}
