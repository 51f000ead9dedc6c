//! What one concurrency level measured, in the field names `vllm bench serve` writes, so results
//! from candor and from vLLM's tool line up: throughput over the level's wall time, and the mean,
//! median, standard deviation and 99th percentile of each latency, computed as vLLM computes them
//! (numpy's linear-interpolation percentile, population standard deviation).

use serde::Serialize;
use std::time::Duration;

/// What one successful request measured.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// From sending the request to the first chunk carrying text.
    pub ttft: Duration,
    /// From sending the request to the end of its stream.
    pub latency: Duration,
    /// Between successive chunks carrying text.
    pub itl: Vec<Duration>,
    /// The server's `usage.completion_tokens`, else the chunks carrying text.
    pub output_tokens: u64,
    /// The server's `usage.prompt_tokens`, when it sent usage.
    pub input_tokens: Option<u64>,
    /// Times it was sent again after the server closed the connection unanswered; its times
    /// count from the first try.
    pub retries: u32,
}

impl Sample {
    /// Time per output token after the first; none for a one-token answer.
    pub fn tpot(&self) -> Option<Duration> {
        let after_first = self.latency.checked_sub(self.ttft)?;
        (self.output_tokens > 1).then(|| after_first.div_f64((self.output_tokens - 1) as f64))
    }
}

/// One concurrency level's report.
#[derive(Debug, Serialize)]
pub struct Level {
    pub max_concurrency: usize,
    pub num_prompts: usize,
    pub completed: usize,
    pub failed: usize,
    /// The first failed request's error, as the server or the connection gave it.
    pub first_error: Option<String>,
    /// Retries of requests the server closed unanswered (each completed request's count).
    pub retries: u64,
    /// Seconds from the first request sent to the last one finished.
    pub duration: f64,
    pub total_input_tokens: u64,
    pub total_output_tokens: u64,
    /// Where the token counts come from: "usage" (the server's own counts), "stream" (chunks
    /// carrying text, and prompt words), or "mixed".
    pub token_counts: &'static str,
    pub request_throughput: f64,
    pub output_throughput: f64,
    pub total_token_throughput: f64,
    pub mean_ttft_ms: Option<f64>,
    pub median_ttft_ms: Option<f64>,
    pub std_ttft_ms: Option<f64>,
    pub p99_ttft_ms: Option<f64>,
    pub mean_tpot_ms: Option<f64>,
    pub median_tpot_ms: Option<f64>,
    pub std_tpot_ms: Option<f64>,
    pub p99_tpot_ms: Option<f64>,
    pub mean_itl_ms: Option<f64>,
    pub median_itl_ms: Option<f64>,
    pub std_itl_ms: Option<f64>,
    pub p99_itl_ms: Option<f64>,
    pub mean_e2el_ms: Option<f64>,
    pub median_e2el_ms: Option<f64>,
    pub std_e2el_ms: Option<f64>,
    pub p99_e2el_ms: Option<f64>,
}

impl Level {
    /// The report of a level run with `clients`, whose requests ended as `outcomes` within
    /// `duration`. A request without usage counts `prompt_words` input tokens.
    pub fn new(
        clients: usize,
        outcomes: &[Result<Sample, String>],
        duration: Duration,
        prompt_words: u64,
    ) -> Level {
        let ok: Vec<&Sample> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
        let first_error = outcomes.iter().find_map(|o| o.as_ref().err().cloned());
        let with_usage = ok.iter().filter(|s| s.input_tokens.is_some()).count();
        let total_input_tokens = ok.iter().fold(0u64, |t, s| {
            t.saturating_add(s.input_tokens.unwrap_or(prompt_words))
        });
        let total_output_tokens = ok
            .iter()
            .fold(0u64, |t, s| t.saturating_add(s.output_tokens));
        let secs = duration.as_secs_f64();
        let per_sec = |n: f64| if secs > 0.0 { n / secs } else { 0.0 };
        let ms = |d: &Duration| d.as_secs_f64() * 1e3;
        let ttft = Summary::of(ok.iter().map(|s| ms(&s.ttft)).collect());
        let tpot = Summary::of(ok.iter().filter_map(|s| s.tpot()).map(|d| ms(&d)).collect());
        let itl = Summary::of(ok.iter().flat_map(|s| s.itl.iter().map(ms)).collect());
        let e2el = Summary::of(ok.iter().map(|s| ms(&s.latency)).collect());
        Level {
            max_concurrency: clients,
            num_prompts: outcomes.len(),
            completed: ok.len(),
            failed: outcomes.len() - ok.len(),
            first_error,
            retries: ok.iter().map(|s| u64::from(s.retries)).sum(),
            duration: secs,
            total_input_tokens,
            total_output_tokens,
            token_counts: match with_usage {
                0 => "stream",
                n if n == ok.len() => "usage",
                _ => "mixed",
            },
            request_throughput: per_sec(ok.len() as f64),
            output_throughput: per_sec(total_output_tokens as f64),
            total_token_throughput: per_sec(
                total_input_tokens.saturating_add(total_output_tokens) as f64
            ),
            mean_ttft_ms: ttft.mean,
            median_ttft_ms: ttft.median,
            std_ttft_ms: ttft.std,
            p99_ttft_ms: ttft.p99,
            mean_tpot_ms: tpot.mean,
            median_tpot_ms: tpot.median,
            std_tpot_ms: tpot.std,
            p99_tpot_ms: tpot.p99,
            mean_itl_ms: itl.mean,
            median_itl_ms: itl.median,
            std_itl_ms: itl.std,
            p99_itl_ms: itl.p99,
            mean_e2el_ms: e2el.mean,
            median_e2el_ms: e2el.median,
            std_e2el_ms: e2el.std,
            p99_e2el_ms: e2el.p99,
        }
    }
}

/// Mean, median, standard deviation and 99th percentile; none of them without values.
#[derive(Debug, Default, PartialEq)]
struct Summary {
    mean: Option<f64>,
    median: Option<f64>,
    std: Option<f64>,
    p99: Option<f64>,
}

impl Summary {
    fn of(mut xs: Vec<f64>) -> Summary {
        if xs.is_empty() {
            return Summary::default();
        }
        xs.sort_by(f64::total_cmp);
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        Summary {
            mean: Some(mean),
            median: Some(percentile(&xs, 50.0)),
            std: Some(var.sqrt()),
            p99: Some(percentile(&xs, 99.0)),
        }
    }
}

/// The `p`th percentile of sorted, non-empty `xs`, interpolating linearly between the two
/// nearest ranks (numpy's default).
fn percentile(xs: &[f64], p: f64) -> f64 {
    let rank = p / 100.0 * (xs.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = (lo + 1).min(xs.len() - 1);
    xs[lo] + (rank - lo as f64) * (xs[hi] - xs[lo])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(x: u64) -> Duration {
        Duration::from_millis(x)
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn percentiles_interpolate_as_numpy_does() {
        // numpy.percentile([1, 2, 3, 4], 50) == 2.5, 99 -> 3.97; [1..=100], 99 -> 99.01.
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), 2.5);
        assert!((percentile(&[1.0, 2.0, 3.0, 4.0], 99.0) - 3.97).abs() < 1e-12);
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert!((percentile(&hundred, 99.0) - 99.01).abs() < 1e-9);
        assert_eq!(percentile(&[5.0], 99.0), 5.0);
        let s = Summary::of(vec![4.0, 1.0, 3.0, 2.0]);
        assert!(close(s.mean, 2.5) && close(s.median, 2.5));
        assert!(close(s.std, 1.25f64.sqrt()), "{s:?}");
        assert_eq!(Summary::of(vec![]), Summary::default());
    }

    #[test]
    fn a_level_reports_ttft_itl_tpot_and_throughput() {
        // Request a: first text at 100 ms, then 3 more chunks 20, 30, 10 ms apart: 4 tokens,
        // ends at 160 ms, so TPOT = (160 - 100) / 3 = 20 ms. Request b: one token at 50 ms,
        // ending at 60 ms: no TPOT, no ITL. Request c failed.
        let a = Sample {
            ttft: ms(100),
            latency: ms(160),
            itl: vec![ms(20), ms(30), ms(10)],
            output_tokens: 4,
            input_tokens: Some(30),
            retries: 1,
        };
        let b = Sample {
            ttft: ms(50),
            latency: ms(60),
            itl: vec![],
            output_tokens: 1,
            input_tokens: None,
            retries: 0,
        };
        assert_eq!(a.tpot(), Some(ms(20)));
        assert_eq!(b.tpot(), None);
        let outcomes = [Ok(a), Err("HTTP 500: overloaded".to_string()), Ok(b)];
        let l = Level::new(2, &outcomes, ms(500), 16);
        assert_eq!((l.num_prompts, l.completed, l.failed), (3, 2, 1));
        assert_eq!(l.first_error.as_deref(), Some("HTTP 500: overloaded"));
        assert_eq!(l.retries, 1);
        assert_eq!((l.total_input_tokens, l.total_output_tokens), (46, 5));
        assert_eq!(l.token_counts, "mixed");
        assert!((l.request_throughput - 4.0).abs() < 1e-9);
        assert!((l.output_throughput - 10.0).abs() < 1e-9);
        assert!((l.total_token_throughput - 102.0).abs() < 1e-9);
        assert!(close(l.mean_ttft_ms, 75.0) && close(l.median_ttft_ms, 75.0));
        assert!(close(l.p99_ttft_ms, 50.0 + 0.99 * 50.0));
        assert!(close(l.mean_itl_ms, 20.0) && close(l.median_itl_ms, 20.0));
        assert!(close(l.p99_itl_ms, 20.0 + 0.98 * 10.0));
        assert!(close(l.mean_tpot_ms, 20.0) && close(l.p99_tpot_ms, 20.0));
        assert!(close(l.mean_e2el_ms, 110.0));
    }

    #[test]
    fn a_level_where_every_request_failed_has_no_latencies() {
        let outcomes = [Err("connection reset".to_string()), Err("timed out".into())];
        let l = Level::new(2, &outcomes, ms(10), 16);
        assert_eq!((l.completed, l.failed, l.total_output_tokens), (0, 2, 0));
        assert_eq!(l.first_error.as_deref(), Some("connection reset"));
        assert_eq!(
            (l.mean_ttft_ms, l.p99_itl_ms, l.median_tpot_ms),
            (None, None, None)
        );
        assert_eq!(l.request_throughput, 0.0);
    }
}
