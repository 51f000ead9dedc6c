//! One worker thread per model. The thread owns the model (which is not `Sync`) and takes jobs
//! from a bounded queue, one at a time; a full queue is refused at once instead of growing.
//! Each job streams its events back on its own channel; when the receiving side is gone (the
//! client disconnected, the response was dropped) the generation is cancelled.

use super::api::{ApiError, Input};
use candor_engine::{Completion, FinishReason, GenerateParams, Model};
use serde::Serialize;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

const CLIENT_LEFT: &str = "client_left";

/// What to generate, whichever API asked.
pub struct Task {
    pub input: Input,
    /// Which request field holds the input, for error messages.
    pub input_param: &'static str,
    pub params: GenerateParams,
    /// Send each text piece (streaming) or only the end.
    pub stream: bool,
    /// Token ids of an earlier exchange to continue (Ollama's `context`); the input follows
    /// them without a second BOS.
    pub context: Vec<u32>,
    /// A context window smaller than the model's (Ollama's `options.num_ctx`): longer prompts
    /// are refused and generation stops when it is full.
    pub ctx_limit: Option<usize>,
}

pub struct Job {
    pub task: Task,
    pub events: UnboundedSender<Event>,
}

pub enum Event {
    /// The prompt is tokenized and accepted; generation begins. `prompt` holds its token ids.
    Started {
        prompt: Vec<u32>,
    },
    Text(String),
    Done(Completion),
    Error(ApiError),
}

/// Counters for `/health`.
#[derive(Default, Debug)]
pub struct Stats {
    pub queued: AtomicUsize,
    pub busy: AtomicBool,
    pub completed: AtomicU64,
    pub cancelled: AtomicU64,
    pub failed: AtomicU64,
}

#[derive(Serialize)]
pub struct StatsSnapshot {
    pub queued: usize,
    pub busy: bool,
    pub completed: u64,
    pub cancelled: u64,
    pub failed: u64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            queued: self.queued.load(Ordering::Relaxed),
            busy: self.busy.load(Ordering::Relaxed),
            completed: self.completed.load(Ordering::Relaxed),
            cancelled: self.cancelled.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

/// The sending side of a model's queue.
pub struct Queue {
    tx: SyncSender<Job>,
    pub stats: Arc<Stats>,
}

impl Queue {
    /// Queues a job, or refuses it when `queue_size` jobs already wait (429) or the worker is
    /// gone (503).
    pub fn submit(&self, job: Job, model: &str) -> Result<(), ApiError> {
        // Count before sending so the worker never decrements below zero.
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.stats.queued.fetch_sub(1, Ordering::Relaxed);
                Err(match e {
                    TrySendError::Full(_) => ApiError::queue_full(model),
                    TrySendError::Disconnected(_) => ApiError::shutting_down(),
                })
            }
        }
    }
}

/// Starts the worker thread for `model`. `cancel` set ends every generation at its next token
/// and refuses jobs still queued.
pub fn spawn(
    id: &str,
    model: Model,
    queue_size: usize,
    cancel: Arc<AtomicBool>,
) -> std::io::Result<(Queue, std::thread::JoinHandle<()>)> {
    let (tx, rx) = sync_channel(queue_size);
    let stats = Arc::new(Stats::default());
    let s = stats.clone();
    let handle = std::thread::Builder::new()
        .name(format!("model {id}"))
        .spawn(move || work(model, rx, &s, &cancel))?;
    Ok((Queue { tx, stats }, handle))
}

fn work(mut model: Model, rx: Receiver<Job>, stats: &Stats, cancel: &AtomicBool) {
    while let Ok(job) = rx.recv() {
        stats.queued.fetch_sub(1, Ordering::Relaxed);
        if job.events.is_closed() {
            // The client left while the job waited.
            stats.cancelled.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if cancel.load(Ordering::Relaxed) {
            let _ = job.events.send(Event::Error(ApiError::shutting_down()));
            continue;
        }
        stats.busy.store(true, Ordering::Relaxed);
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| run(&mut model, &job, cancel)));
        stats.busy.store(false, Ordering::Relaxed);
        let event = match outcome {
            Ok(Ok(c)) => {
                if c.finish_reason == FinishReason::Cancelled {
                    stats.cancelled.fetch_add(1, Ordering::Relaxed);
                } else {
                    stats.completed.fetch_add(1, Ordering::Relaxed);
                }
                Event::Done(c)
            }
            Ok(Err(e)) if e.code == Some(CLIENT_LEFT) => {
                stats.cancelled.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Ok(Err(e)) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                Event::Error(e)
            }
            Err(panic) => {
                // The KV cache may be half-written: start the next request from scratch.
                model.reset();
                stats.failed.fetch_add(1, Ordering::Relaxed);
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Event::Error(ApiError::internal(format!("generation failed: {what}")))
            }
        };
        let _ = job.events.send(event);
    }
}

fn run(model: &mut Model, job: &Job, cancel: &AtomicBool) -> Result<Completion, ApiError> {
    let task = &job.task;
    let engine = |e: candor_engine::Error| ApiError::from_engine(&e, task.input_param);
    let continued = !task.context.is_empty();
    let mut ids = match &task.input {
        Input::Chat(messages) => {
            let text = model
                .chat_template()
                .and_then(|t| t.render(messages, true))
                .map_err(engine)?;
            // The template writes any BOS itself; a continuation already has one.
            let text = match model.tokenizer().bos() {
                Some(bos) if continued => text.strip_prefix(bos).unwrap_or(&text).to_string(),
                _ => text,
            };
            model.tokenizer().encode(&text, false).map_err(engine)?
        }
        Input::Text(text) => model.tokenizer().encode(text, !continued).map_err(engine)?,
        Input::Tokens(ids) => ids.clone(),
    };
    if continued {
        ids.splice(0..0, task.context.iter().copied());
    }
    if ids.is_empty() {
        return Err(engine(candor_engine::Error::EmptyPrompt));
    }
    let info = model.info();
    let ctx = task
        .ctx_limit
        .map_or(info.ctx_size, |n| n.min(info.ctx_size));
    if ids.len() > ctx && ctx < info.ctx_size {
        return Err(ApiError::invalid(
            task.input_param,
            format!(
                "the prompt has {} tokens but options.num_ctx is {ctx}",
                ids.len()
            ),
        )
        .with_code("context_length_exceeded"));
    }
    if ids.len() > ctx {
        return Err(engine(candor_engine::Error::PromptTooLong {
            tokens: ids.len(),
            context: ctx,
            max: info.context_length,
        }));
    }
    let mut params = task.params.clone();
    if task.ctx_limit.is_some() {
        // The prompt and every generated token but the last take a place in the window.
        params.max_tokens = params.max_tokens.min(ctx - ids.len() + 1);
    }
    if job
        .events
        .send(Event::Started {
            prompt: ids.clone(),
        })
        .is_err()
    {
        return Err(ApiError::internal("the client left").with_code(CLIENT_LEFT));
    }
    let events = &job.events;
    let stream = task.stream;
    model
        .generate(&ids, &params, &mut |piece| {
            if cancel.load(Ordering::Relaxed) {
                return false;
            }
            if stream {
                events.send(Event::Text(piece.to_string())).is_ok()
            } else {
                !events.is_closed()
            }
        })
        .map_err(engine)
}
