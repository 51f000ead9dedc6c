//! What a model's server has done and is doing: counters the scheduler updates as it goes, read
//! at any time for `/health` and `/metrics` without stopping it.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histograms' buckets, from a fast token on a small
/// model to a first token behind a long queue.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Counts of observations per bucket, as Prometheus histograms keep them.
#[derive(Debug, Clone, Serialize)]
pub struct Histogram {
    /// Observations at most `LATENCY_BUCKETS[i]` (not cumulative); the last entry counts
    /// those above every bound.
    pub buckets: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: vec![0; LATENCY_BUCKETS.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }
}

impl Histogram {
    fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i] += 1;
        self.sum += secs;
        self.count += 1;
    }
}

/// Live counters of one model's scheduler.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub slots: usize,
    pub queued: AtomicUsize,
    pub slots_busy: AtomicUsize,
    /// Positions cached across all slots, and the bytes their caches hold.
    pub kv_tokens: AtomicUsize,
    pub kv_bytes: AtomicUsize,
    /// The most KV positions allocated at once, and the budget they are held to.
    pub kv_peak_tokens: AtomicUsize,
    pub kv_budget: Option<usize>,
    pub completed: AtomicU64,
    pub cancelled: AtomicU64,
    pub failed: AtomicU64,
    /// Refused at once: the queue was full.
    pub rejected: AtomicU64,
    pub prompt_tokens: AtomicU64,
    /// Prompt tokens whose keys and values came from a cached prefix.
    pub cached_prompt_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    latencies: Mutex<Latencies>,
}

#[derive(Debug, Default, Clone)]
struct Latencies {
    time_to_first_token: Histogram,
    inter_token: Histogram,
}

/// A reading of [`Metrics`], for `/health` (its counters) and `/metrics` (all of it).
#[derive(Debug, Clone, Serialize)]
pub struct StatsSnapshot {
    /// Requests waiting for a slot.
    pub queued: usize,
    /// Whether any slot is generating.
    pub busy: bool,
    pub slots: usize,
    pub slots_busy: usize,
    pub kv_tokens: usize,
    pub kv_bytes: usize,
    /// The most KV cache positions allocated at once across the slots.
    pub kv_peak_tokens: usize,
    /// `--kv-budget`, when given.
    pub kv_budget_tokens: Option<usize>,
    pub completed: u64,
    pub cancelled: u64,
    pub failed: u64,
    pub rejected: u64,
    pub prompt_tokens: u64,
    pub cached_prompt_tokens: u64,
    pub generated_tokens: u64,
    #[serde(skip)]
    pub time_to_first_token: Histogram,
    #[serde(skip)]
    pub inter_token: Histogram,
}

impl Metrics {
    pub fn new(slots: usize, kv_budget: Option<usize>) -> Self {
        Self {
            slots,
            kv_budget,
            ..Self::default()
        }
    }

    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn first_token(&self, after: Duration) {
        self.latencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .time_to_first_token
            .observe(after);
    }

    pub fn next_token(&self, after: Duration) {
        self.latencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .inter_token
            .observe(after);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let busy = self.slots_busy.load(Ordering::Relaxed);
        let lat = self
            .latencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        StatsSnapshot {
            queued: self.queued.load(Ordering::Relaxed),
            busy: busy > 0,
            slots: self.slots,
            slots_busy: busy,
            kv_tokens: self.kv_tokens.load(Ordering::Relaxed),
            kv_bytes: self.kv_bytes.load(Ordering::Relaxed),
            kv_peak_tokens: self.kv_peak_tokens.load(Ordering::Relaxed),
            kv_budget_tokens: self.kv_budget,
            completed: get(&self.completed),
            cancelled: get(&self.cancelled),
            failed: get(&self.failed),
            rejected: get(&self.rejected),
            prompt_tokens: get(&self.prompt_tokens),
            cached_prompt_tokens: get(&self.cached_prompt_tokens),
            generated_tokens: get(&self.generated_tokens),
            time_to_first_token: lat.time_to_first_token,
            inter_token: lat.inter_token,
        }
    }
}
