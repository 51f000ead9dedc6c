//! Serving one model to many callers: a worker thread owns the model and runs up to
//! `parallel` requests at once in shared forward passes ([`scheduler`]); the others wait in a
//! bounded queue, and a full queue is refused at once instead of growing. Each request streams
//! its [`Event`]s back on its own channel; when the caller drops its [`Events`] (a client
//! disconnected) the request leaves its slot at the next step.
//!
//! - [`scheduler`]: slots, prompt chunks and the prefix cache.
//! - [`metrics`]: counters and latency histograms for `/health` and `/metrics`.

pub mod metrics;
mod scheduler;

use crate::{Completion, GenerateParams, Message, Model, TokenLogprob, ToolFormat};
use metrics::Metrics;
pub use metrics::{Histogram, StatsSnapshot, LATENCY_BUCKETS};
pub use scheduler::Batching;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// What the model is asked to continue.
#[derive(Debug, Clone)]
pub enum Input {
    /// A conversation, rendered with the model's chat template.
    Chat(Vec<Message>),
    /// Text, tokenized as it is (with BOS unless it continues a context).
    Text(String),
    /// Token ids, as they are.
    Tokens(Vec<u32>),
}

/// One generation request.
#[derive(Debug, Clone)]
pub struct Task {
    pub input: Input,
    pub params: GenerateParams,
    /// Send each text piece (streaming) or only the end.
    pub stream: bool,
    /// Token ids of an earlier exchange to continue; the input follows them without a second
    /// BOS.
    pub context: Vec<u32>,
    /// A context window smaller than the model's: longer prompts are refused and generation
    /// stops when it is full.
    pub ctx_limit: Option<usize>,
}

/// What a queued request reports, in order: `Started`, any `Text`, then `Done` or `Error`.
#[derive(Debug)]
pub enum Event {
    /// The prompt is tokenized and accepted; generation begins. `prompt` holds its token ids.
    Started {
        prompt: Vec<u32>,
    },
    /// A piece of the output (of a thinking model's reasoning, or of its answer), and the
    /// log-probabilities of the tokens behind it when the request asked for them.
    Text {
        text: String,
        reasoning: bool,
        logprobs: Vec<TokenLogprob>,
    },
    Done(Completion),
    Error(ServeError),
}

/// Why a request was refused or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The engine refused the input or failed on it.
    #[error(transparent)]
    Engine(#[from] crate::Error),
    /// The prompt is longer than the request's own [`Task::ctx_limit`].
    #[error("the prompt has {tokens} tokens but the request's context holds {limit}")]
    OverContextLimit { tokens: usize, limit: usize },
    /// The prompt alone needs more KV cache positions than the server's budget holds.
    #[error("the prompt has {tokens} tokens but the server's KV cache budget holds {budget}")]
    OverKvBudget { tokens: usize, budget: usize },
    /// As many requests as the queue holds already wait.
    #[error("the queue is full")]
    QueueFull,
    /// The server is stopping: the request was not (or no longer) run.
    #[error("shutting down")]
    ShuttingDown,
    /// Generation panicked; the request's cache was reset for the next one.
    #[error("generation failed: {0}")]
    Panicked(String),
    /// The forward pass the request was part of failed.
    #[error("the forward pass failed: {0}")]
    StepFailed(String),
    /// The worker ended without answering.
    #[error("the model's worker stopped")]
    WorkerStopped,
}

struct Job {
    task: Task,
    events: UnboundedSender<Event>,
    /// When it was queued: the start of its time to first token.
    submitted: Instant,
}

/// The sending side of a model's queue.
pub struct Queue {
    tx: SyncSender<Job>,
    metrics: Arc<Metrics>,
}

impl Queue {
    /// Queues a request, or refuses it when the queue is full or the worker is gone.
    pub fn submit(&self, task: Task) -> Result<Events, ServeError> {
        let (events, rx) = unbounded_channel();
        // Count before sending so the worker never decrements below zero.
        self.metrics.queued.fetch_add(1, Ordering::Relaxed);
        let job = Job {
            task,
            events,
            submitted: Instant::now(),
        };
        match self.tx.try_send(job) {
            Ok(()) => Ok(Events { rx }),
            Err(e) => {
                self.metrics.queued.fetch_sub(1, Ordering::Relaxed);
                Err(match e {
                    TrySendError::Full(_) => {
                        Metrics::add(&self.metrics.rejected, 1);
                        ServeError::QueueFull
                    }
                    TrySendError::Disconnected(_) => ServeError::ShuttingDown,
                })
            }
        }
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.metrics.snapshot()
    }
}

/// The receiving side of one request. Dropping it cancels the request.
pub struct Events {
    rx: UnboundedReceiver<Event>,
}

impl Events {
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// Waits until the worker takes the request, so that a refused prompt is known before any
    /// answer is sent. Returns the prompt's token ids.
    pub async fn started(&mut self) -> Result<Vec<u32>, ServeError> {
        match self.rx.recv().await {
            Some(Event::Started { prompt }) => Ok(prompt),
            Some(Event::Error(e)) => Err(e),
            _ => Err(ServeError::WorkerStopped),
        }
    }

    /// Waits for the end of the request.
    pub async fn finish(mut self) -> Result<Completion, ServeError> {
        loop {
            match self.rx.recv().await {
                Some(Event::Done(c)) => return Ok(c),
                Some(Event::Error(e)) => return Err(e),
                Some(_) => {}
                None => return Err(ServeError::WorkerStopped),
            }
        }
    }
}

/// Starts the worker thread for `model`: `batching.parallel` slots and room for `queue_size`
/// waiting requests. `cancel` set ends every generation at its next token and refuses requests
/// still queued.
pub fn spawn(
    name: &str,
    model: Model,
    batching: Batching,
    queue_size: usize,
    cancel: Arc<AtomicBool>,
) -> std::io::Result<(Queue, std::thread::JoinHandle<()>)> {
    let (tx, rx) = sync_channel(queue_size);
    let metrics = Arc::new(Metrics::new(batching.parallel.max(1), batching.kv_budget));
    let m = metrics.clone();
    let handle = std::thread::Builder::new()
        .name(format!("model {name}"))
        .spawn(move || scheduler::Scheduler::new(model, rx, &m, &cancel, batching).run())?;
    Ok((Queue { tx, metrics }, handle))
}

/// The prompt's token ids, checked against the context, and the parameters bounded by it.
pub(super) fn prepare(
    model: &Model,
    task: &Task,
) -> Result<(Vec<u32>, GenerateParams), ServeError> {
    let continued = !task.context.is_empty();
    let mut params = task.params.clone();
    let mut ids = match &task.input {
        Input::Chat(messages) => {
            let template = model.chat_template()?;
            let text = match &params.tools {
                Some(tools) => {
                    let format = ToolFormat::of(template);
                    if let Some(g) = tools.grammar(format)? {
                        if params.grammar.is_some() {
                            return Err(crate::Error::InvalidOption(
                                "a response format and tool calls cannot both constrain one \
                                 answer; leave one out (or send tool_choice \"none\")"
                                    .into(),
                            )
                            .into());
                        }
                        params.grammar = Some(g);
                    }
                    params.tool_format = Some(format);
                    tools.render(template, messages)?
                }
                None => template.render(messages, true)?,
            };
            params.reasoning = params.reasoning.resolve(Some(template), &text);
            // The template writes any BOS itself; a continuation already has one.
            let text = match model.tokenizer().bos() {
                Some(bos) if continued => text.strip_prefix(bos).unwrap_or(&text).to_string(),
                _ => text,
            };
            model.tokenizer().encode(&text, false)?
        }
        Input::Text(_) | Input::Tokens(_) if params.tools.is_some() => {
            return Err(crate::Error::InvalidOption("tools need a chat conversation".into()).into())
        }
        Input::Text(text) => {
            params.reasoning = params.reasoning.resolve(None, text);
            model.tokenizer().encode(text, !continued)?
        }
        Input::Tokens(ids) => ids.clone(),
    };
    if continued {
        ids.splice(0..0, task.context.iter().copied());
    }
    if ids.is_empty() {
        return Err(crate::Error::EmptyPrompt.into());
    }
    let info = model.info();
    let ctx = task
        .ctx_limit
        .map_or(info.ctx_size, |n| n.min(info.ctx_size));
    if ids.len() > ctx && ctx < info.ctx_size {
        return Err(ServeError::OverContextLimit {
            tokens: ids.len(),
            limit: ctx,
        });
    }
    if ids.len() > ctx {
        return Err(crate::Error::PromptTooLong {
            tokens: ids.len(),
            context: ctx,
            max: info.context_length,
        }
        .into());
    }
    if task.ctx_limit.is_some() {
        // The prompt and every generated token but the last take a place in the window.
        params.max_tokens = params.max_tokens.min(ctx - ids.len() + 1);
    }
    Ok((ids, params))
}
