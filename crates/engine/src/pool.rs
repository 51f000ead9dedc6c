//! The threads a forward pass runs on: one rayon pool for candor's kernels and candle's ops,
//! its helpers kept awake through short steps, and candle's own second pool, started empty
//! when nothing needs it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Single-row steps keep the helpers awake only over weights this large; see [`keep_awake`].
const AWAKE_ONE_ROW_BYTES: u64 = 160 << 20;

/// How long a helper kept awake goes without work before it falls back to rayon's idling
/// (a few dozen rounds of looking, then sleep). Longer than the serial work between two of a
/// step's parallel loops; see [`help_until`] for why it must be bounded at all.
const AWAKE_IDLE: Duration = Duration::from_micros(500);

/// Runs `step`, a forward pass over `rows` rows of a model whose weights take `weight_bytes`, on
/// the compute pool (on the caller's thread if the pool could not start).
pub(crate) fn run<R: Send>(rows: usize, weight_bytes: u64, step: impl FnOnce() -> R + Send) -> R {
    match compute_pool() {
        Some(pool) if keep_awake(rows, weight_bytes) => pool.install(|| with_helpers_awake(step)),
        Some(pool) => pool.install(step),
        None => step(),
    }
}

/// Whether a step keeps the pool's other threads awake between its parallel loops: decoding
/// steps do (up to `DECODING_ROWS` rows, a row per sequence), except single rows of small
/// models. Prompts, whose parallel loops are long, let them sleep as rayon does: kept spinning,
/// the cores ran a 128-token prompt of the default model 10% slower. On a small model a single
/// row's step is short, and the spinning core took the time the HTTP threads and the client
/// needed between steps (the default model served to one client about 15% slower, level in the
/// engine's benchmark). From about twice that model's size a step lasts ten milliseconds or more and its
/// serial gaps are a few percent of it, while a helper woken from sleep at each of a token's
/// ~140 loops joins each late (two threads, the 1.7B shape: 114 context switches a token -> 25;
/// decoding 2% faster in interleaved runs of the 1.7B and 3B shapes; served to one client, the
/// 1.7B shape level). Gemma 3 270M (241 MiB): its output projections, after the serial cache
/// append and attention that a sleeping helper dozes through, took 0.79 -> 0.46 ms a token;
/// decoding 78.4 -> 83.9 tok/s (medians of six alternations); served to one client level.
fn keep_awake(rows: usize, weight_bytes: u64) -> bool {
    match rows {
        1 => weight_bytes >= AWAKE_ONE_ROW_BYTES,
        rows => (2..=crate::kernels::DECODING_ROWS).contains(&rows),
    }
}

/// Runs `f` on this pool thread while the pool's other threads look for its parallel loops'
/// work without sleeping.
///
/// A decoding step posts a parallel loop every few tens of microseconds (each matrix,
/// attention, the activations' quantization) with serial work between (norms, RoPE, the cache
/// append). rayon's idle workers fall asleep within about that long, so each loop began by
/// waking one: a futex round trip (48 µs on this project's test VM) and ~130 context switches
/// per eight-row step of the default model. Kept awake, that step took a fifth to a third
/// less time.
fn with_helpers_awake<R>(f: impl FnOnce() -> R) -> R {
    let Some(me) = rayon::current_thread_index() else {
        return f();
    };
    if rayon::current_num_threads() < 2 {
        return f();
    }
    let done = Arc::new(AtomicBool::new(false));
    let helpers_done = done.clone();
    rayon::spawn_broadcast(move |ctx| {
        if ctx.index() != me {
            help_until(&helpers_done);
        }
    });
    let out = f();
    done.store(true, Ordering::Release);
    out
}

/// Runs the pool's pending jobs until `done`, spinning between them, and returns early after
/// [`AWAKE_IDLE`] without any. The bound is what makes a spinning job safe in rayon: a thread
/// waiting inside a job runs other jobs meanwhile, so this one can start on top of a job the
/// step itself waits for, and would then spin until a `done` that never comes.
fn help_until(done: &AtomicBool) {
    let mut last_work = Instant::now();
    while !done.load(Ordering::Acquire) {
        if rayon::yield_now() == Some(rayon::Yield::Executed) {
            last_work = Instant::now();
        } else if last_work.elapsed() > AWAKE_IDLE {
            return;
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Starts candle's second thread pool without workers when nothing needs them.
///
/// Next to rayon, candle 0.11 keeps a "barrier pool" whose threads spin for a while after each
/// use; it runs candle's own quantized matmuls and its element-wise ops on 64K values or more.
/// With as many threads as cores its spinning threads take turns with the rayon pool the model
/// runs in (2 cores, 2 threads, default model: decode 240 -> 370 tok/s and a 128-token prompt
/// 1450 -> 1780 tok/s without them). When candor's kernels take every matrix, that pool has
/// nothing that needs a thread of its own, so it starts with none and its element-wise ops run
/// on the calling thread. candle starts the pool once per process, so the first model loaded
/// decides; `CANDLE_NUM_THREADS`, when set, is left to decide instead.
pub(crate) fn settle_candle_pool(candle_matmuls: bool) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if candle_matmuls || std::env::var_os("CANDLE_NUM_THREADS").is_some() {
            return;
        }
        // candle reads the variable when the pool starts, which is now.
        std::env::set_var("CANDLE_NUM_THREADS", "1");
        candle_core::utils::barrier_pool();
        std::env::remove_var("CANDLE_NUM_THREADS");
    });
}

/// The rayon pool the network runs in. candle-nn's CPU ops (RMSNorm, softmax, RoPE) split rows
/// with rayon; called from outside a pool, every such op hands its work to a pool thread and
/// sleeps until it is done, a context switch per op (hundreds per token). Running the whole
/// step inside the pool makes those calls direct. Sized like candle's own pool; None (run on
/// the caller's thread) if the threads cannot be started.
fn compute_pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(candle_core::utils::get_num_threads())
            .thread_name(|i| format!("candor-compute-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    fn two_threads() -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("pool")
    }

    #[test]
    fn decoding_steps_keep_helpers_awake_but_small_single_rows_and_prompts_do_not() {
        let (small, large) = (100 << 20, AWAKE_ONE_ROW_BYTES);
        assert!(!keep_awake(1, small));
        assert!(keep_awake(1, large));
        assert!(keep_awake(2, small) && keep_awake(crate::kernels::DECODING_ROWS, small));
        assert!(!keep_awake(crate::kernels::DECODING_ROWS + 1, large));
        assert!(!keep_awake(0, large));
    }

    /// A helper whose step never ends (as when it started on top of a job that step waits
    /// for) gives up after the idle bound instead of spinning for ever.
    #[test]
    fn a_helper_without_work_returns() {
        let t = Instant::now();
        two_threads().install(|| help_until(&AtomicBool::new(false)));
        assert!(t.elapsed() >= AWAKE_IDLE);
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    /// Many short steps of nested parallel loops, as decoding makes, each with the helpers
    /// awake: every one finishes, with the right sums. With the idle bound removed this
    /// deadlocked in two of ten runs (it depends on timing); the test waits a minute at most,
    /// so that shows as a failure, not a hang.
    #[test]
    fn steps_with_helpers_awake_finish() {
        let (sent, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let pool = two_threads();
            for step in 0..20_000u64 {
                let sum: u64 = pool.install(|| {
                    with_helpers_awake(|| {
                        (0..64u64)
                            .into_par_iter()
                            .map(|i| (0..i).into_par_iter().map(|j| j + step).sum::<u64>())
                            .sum()
                    })
                });
                let want: u64 = (0..64u64)
                    .map(|i| (0..i).map(|j| j + step).sum::<u64>())
                    .sum();
                assert_eq!(sum, want, "step {step}");
            }
            sent.send(()).expect("the test waits");
        });
        finished
            .recv_timeout(Duration::from_secs(60))
            .expect("20000 steps with helpers awake did not finish within a minute (a deadlock, or a wrong sum above)");
    }
}
