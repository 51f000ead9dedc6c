//! Serving one model to many callers: a worker thread owns the model (which is not `Sync`) and
//! takes requests from a bounded queue, one at a time; a full queue is refused at once instead
//! of growing. Each request streams its [`Event`]s back on its own channel; when the caller drops
//! its [`Events`] (a client disconnected) the generation is cancelled at its next token.

use crate::{Completion, FinishReason, GenerateParams, Message, Model};
use serde::Serialize;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
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
    Text(String),
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
    /// As many requests as the queue holds already wait.
    #[error("the queue is full")]
    QueueFull,
    /// The server is stopping: the request was not (or no longer) run.
    #[error("shutting down")]
    ShuttingDown,
    /// Generation panicked; the model was reset for the next request.
    #[error("generation failed: {0}")]
    Panicked(String),
    /// The worker ended without answering.
    #[error("the model's worker stopped")]
    WorkerStopped,
}

/// Counters for a health check.
#[derive(Default, Debug)]
struct Stats {
    queued: AtomicUsize,
    busy: AtomicBool,
    completed: AtomicU64,
    cancelled: AtomicU64,
    failed: AtomicU64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatsSnapshot {
    pub queued: usize,
    pub busy: bool,
    pub completed: u64,
    pub cancelled: u64,
    pub failed: u64,
}

struct Job {
    task: Task,
    events: UnboundedSender<Event>,
}

/// The sending side of a model's queue.
pub struct Queue {
    tx: SyncSender<Job>,
    stats: Arc<Stats>,
}

impl Queue {
    /// Queues a request, or refuses it when the queue is full or the worker is gone.
    pub fn submit(&self, task: Task) -> Result<Events, ServeError> {
        let (events, rx) = unbounded_channel();
        // Count before sending so the worker never decrements below zero.
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(Job { task, events }) {
            Ok(()) => Ok(Events { rx }),
            Err(e) => {
                self.stats.queued.fetch_sub(1, Ordering::Relaxed);
                Err(match e {
                    TrySendError::Full(_) => ServeError::QueueFull,
                    TrySendError::Disconnected(_) => ServeError::ShuttingDown,
                })
            }
        }
    }

    pub fn stats(&self) -> StatsSnapshot {
        let s = &self.stats;
        StatsSnapshot {
            queued: s.queued.load(Ordering::Relaxed),
            busy: s.busy.load(Ordering::Relaxed),
            completed: s.completed.load(Ordering::Relaxed),
            cancelled: s.cancelled.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
        }
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

/// Starts the worker thread for `model` with room for `queue_size` waiting requests. `cancel`
/// set ends every generation at its next token and refuses requests still queued.
pub fn spawn(
    name: &str,
    model: Model,
    queue_size: usize,
    cancel: Arc<AtomicBool>,
) -> std::io::Result<(Queue, std::thread::JoinHandle<()>)> {
    let (tx, rx) = sync_channel(queue_size);
    let stats = Arc::new(Stats::default());
    let s = stats.clone();
    let handle = std::thread::Builder::new()
        .name(format!("model {name}"))
        .spawn(move || work(model, rx, &s, &cancel))?;
    Ok((Queue { tx, stats }, handle))
}

/// How one job ended, for the counters.
enum Outcome {
    Done(Completion),
    Failed(ServeError),
    /// The caller left before generation began; nobody is told.
    Left,
}

fn work(mut model: Model, rx: Receiver<Job>, stats: &Stats, cancel: &AtomicBool) {
    while let Ok(job) = rx.recv() {
        stats.queued.fetch_sub(1, Ordering::Relaxed);
        if job.events.is_closed() {
            // The caller left while the job waited.
            stats.cancelled.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if cancel.load(Ordering::Relaxed) {
            let _ = job.events.send(Event::Error(ServeError::ShuttingDown));
            continue;
        }
        stats.busy.store(true, Ordering::Relaxed);
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| run(&mut model, &job, cancel)));
        stats.busy.store(false, Ordering::Relaxed);
        let outcome = outcome.unwrap_or_else(|panic| {
            // The KV cache may be half-written: start the next request from scratch.
            model.reset();
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Outcome::Failed(ServeError::Panicked(what))
        });
        let event = match outcome {
            Outcome::Done(c) => {
                let counter = if c.finish_reason == FinishReason::Cancelled {
                    &stats.cancelled
                } else {
                    &stats.completed
                };
                counter.fetch_add(1, Ordering::Relaxed);
                Event::Done(c)
            }
            Outcome::Left => {
                stats.cancelled.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Outcome::Failed(e) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                Event::Error(e)
            }
        };
        let _ = job.events.send(event);
    }
}

fn run(model: &mut Model, job: &Job, cancel: &AtomicBool) -> Outcome {
    let task = &job.task;
    let (ids, params) = match prepare(model, task) {
        Ok(p) => p,
        Err(e) => return Outcome::Failed(e),
    };
    if job
        .events
        .send(Event::Started {
            prompt: ids.clone(),
        })
        .is_err()
    {
        return Outcome::Left;
    }
    let events = &job.events;
    let generated = model.generate(&ids, &params, &mut |piece| {
        if cancel.load(Ordering::Relaxed) {
            return false;
        }
        if task.stream {
            events.send(Event::Text(piece.to_string())).is_ok()
        } else {
            !events.is_closed()
        }
    });
    match generated {
        Ok(c) => Outcome::Done(c),
        Err(e) => Outcome::Failed(e.into()),
    }
}

/// The prompt's token ids, checked against the context, and the parameters bounded by it.
fn prepare(model: &Model, task: &Task) -> Result<(Vec<u32>, GenerateParams), ServeError> {
    let continued = !task.context.is_empty();
    let mut ids = match &task.input {
        Input::Chat(messages) => {
            let text = model.chat_template()?.render(messages, true)?;
            // The template writes any BOS itself; a continuation already has one.
            let text = match model.tokenizer().bos() {
                Some(bos) if continued => text.strip_prefix(bos).unwrap_or(&text).to_string(),
                _ => text,
            };
            model.tokenizer().encode(&text, false)?
        }
        Input::Text(text) => model.tokenizer().encode(text, !continued)?,
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
    let mut params = task.params.clone();
    if task.ctx_limit.is_some() {
        // The prompt and every generated token but the last take a place in the window.
        params.max_tokens = params.max_tokens.min(ctx - ids.len() + 1);
    }
    Ok((ids, params))
}
