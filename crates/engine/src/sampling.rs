//! Choosing the next token from logits: greedy, or sampled after repetition penalty, top-k,
//! top-p, min-p and temperature (llama.cpp's order). Same seed, same choices.

use crate::error::{Error, Result};
use rand::distr::{weighted::WeightedIndex, Distribution};
use rand::rngs::StdRng;
use rand::SeedableRng;

#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    /// 1.0 means off.
    pub repeat_penalty: f32,
    /// How many recent tokens the repetition penalty looks at.
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: Some(40),
            top_p: Some(0.95),
            min_p: Some(0.05),
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 299792458,
        }
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidOption(m));
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad(format!("temperature {} must be ≥ 0", self.temperature));
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return bad(format!("top-p {p} must be in (0, 1]"));
            }
        }
        if let Some(p) = self.min_p {
            if !(0.0..=1.0).contains(&p) {
                return bad(format!("min-p {p} must be in [0, 1]"));
            }
        }
        if self.top_k == Some(0) {
            return bad("top-k must be ≥ 1 (leave it out to disable)".into());
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return bad(format!(
                "repeat penalty {} must be > 0",
                self.repeat_penalty
            ));
        }
        Ok(())
    }
}

pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Result<Self> {
        params.validate()?;
        let rng = StdRng::seed_from_u64(params.seed);
        Ok(Self { params, rng })
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks the next token; `history` is what came before (prompt and output).
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        let p = &self.params;
        if p.repeat_penalty != 1.0 {
            let start = history.len().saturating_sub(p.repeat_last_n);
            let mut seen = history[start..].to_vec();
            seen.sort_unstable();
            seen.dedup();
            for &t in &seen {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = if *l > 0.0 {
                        *l / p.repeat_penalty
                    } else {
                        *l * p.repeat_penalty
                    };
                }
            }
        }
        if p.temperature == 0.0 {
            return argmax(logits);
        }
        let mut cand = candidates(logits, p.top_k);
        if cand.is_empty() {
            return 0;
        }
        let probs = softmax(cand.iter().map(|c| c.1), 1.0);
        if let Some(top_p) = p.top_p {
            let mut acc = 0.0;
            let mut keep = cand.len();
            for (i, pr) in probs.iter().enumerate() {
                acc += pr;
                if acc >= top_p {
                    keep = i + 1;
                    break;
                }
            }
            cand.truncate(keep);
        }
        if let Some(min_p) = p.min_p {
            let probs = softmax(cand.iter().map(|c| c.1), 1.0);
            let floor = probs[0] * min_p;
            let keep = probs.iter().take_while(|&&pr| pr >= floor).count().max(1);
            cand.truncate(keep);
        }
        let probs = softmax(cand.iter().map(|c| c.1), p.temperature);
        match WeightedIndex::new(&probs) {
            Ok(dist) => cand[dist.sample(&mut self.rng)].0,
            Err(_) => cand[0].0,
        }
    }
}

/// The `top_k` best candidates (all without it) as (token, logit), best first, equal logits
/// by token id; NaN logits are never candidates. With a top-k, one pass keeps the best so far
/// in order and passes over every stretch of logits below the worst of them: most of a
/// vocabulary.
fn candidates(logits: &[f32], top_k: Option<usize>) -> Vec<(u32, f32)> {
    use std::cmp::Ordering::Greater;
    let k = match top_k {
        Some(k) if k < logits.len() => k,
        _ => {
            let all = logits.iter().enumerate().filter(|(_, l)| !l.is_nan());
            let mut cand: Vec<(u32, f32)> = all.map(|(i, &l)| (i as u32, l)).collect();
            // Stable: equal logits stay in token order.
            cand.sort_by(|a, b| b.1.total_cmp(&a.1));
            return cand;
        }
    };
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    const CHUNK: usize = 16;
    for (c, chunk) in logits.chunks(CHUNK).enumerate() {
        // A whole chunk below the worst kept is passed over with one vector comparison.
        if best.len() == k {
            let worst = best[k - 1].1;
            if !chunk.iter().fold(false, |hit, &l| hit | (l >= worst)) {
                continue;
            }
        }
        for (j, &l) in chunk.iter().enumerate() {
            if l.is_nan() || best.len() == k && l.total_cmp(&best[k - 1].1) != Greater {
                continue;
            }
            // After every kept logit at least as high: a later token loses a tie.
            let at = best.partition_point(|b| b.1.total_cmp(&l) != std::cmp::Ordering::Less);
            best.insert(at, ((c * CHUNK + j) as u32, l));
            best.truncate(k);
        }
    }
    best
}

fn argmax(logits: &[f32]) -> u32 {
    let mut best = (0usize, f32::NEG_INFINITY);
    for (i, &l) in logits.iter().enumerate() {
        if l > best.1 {
            best = (i, l);
        }
    }
    best.0 as u32
}

fn softmax(logits: impl Iterator<Item = f32> + Clone, temperature: f32) -> Vec<f32> {
    let max = logits.clone().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.map(|l| ((l - max) / temperature).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_maximum() {
        let mut s = Sampler::new(SamplingParams::greedy()).unwrap();
        assert_eq!(s.sample(&mut [0.1, 3.0, -1.0, 2.9], &[]), 1);
    }

    #[test]
    fn same_seed_same_choices() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let run = |seed| {
            let mut s = Sampler::new(SamplingParams {
                seed,
                top_k: None,
                top_p: None,
                min_p: None,
                temperature: 1.0,
                ..Default::default()
            })
            .unwrap();
            (0..50)
                .map(|_| s.sample(&mut logits.clone(), &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn top_k_one_is_greedy() {
        let mut s = Sampler::new(SamplingParams {
            top_k: Some(1),
            temperature: 5.0,
            ..Default::default()
        })
        .unwrap();
        for _ in 0..20 {
            assert_eq!(s.sample(&mut [0.0, 1.0, 0.5], &[]), 1);
        }
    }

    #[test]
    fn top_k_candidates_are_the_best_in_order() {
        // Few distinct values (many ties), NaN and infinities among them.
        let logits: Vec<f32> = (0..5000u32)
            .map(|i| match i % 97 {
                0 => f32::NAN,
                1 => f32::NEG_INFINITY,
                2 if i < 300 => f32::INFINITY,
                _ => ((i * 7919) % 61) as f32 * 0.25 - 3.0,
            })
            .collect();
        let mut all: Vec<(u32, f32)> = (0..)
            .zip(logits.iter().copied())
            .filter(|(_, l)| !l.is_nan())
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        for k in [1, 2, 40, 1000, 4947, 4948, 6000] {
            let want = &all[..k.min(all.len())];
            assert_eq!(candidates(&logits, Some(k)), want, "k = {k}");
        }
        assert_eq!(candidates(&logits, None), all);
    }

    #[test]
    fn repeat_penalty_demotes_seen_tokens() {
        let mut s = Sampler::new(SamplingParams {
            repeat_penalty: 2.0,
            ..SamplingParams::greedy()
        })
        .unwrap();
        assert_eq!(s.sample(&mut [1.0, 1.5, 0.0], &[1]), 0);
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        // With min-p 0.5 only tokens at least half as likely as the best survive.
        let mut s = Sampler::new(SamplingParams {
            min_p: Some(0.5),
            top_k: None,
            top_p: None,
            temperature: 1.0,
            ..Default::default()
        })
        .unwrap();
        for _ in 0..50 {
            assert_eq!(s.sample(&mut [10.0, 0.0, 0.0, 0.0], &[]), 0);
        }
    }

    #[test]
    fn invalid_options_are_errors() {
        assert!(Sampler::new(SamplingParams {
            top_p: Some(1.5),
            ..Default::default()
        })
        .is_err());
        assert!(Sampler::new(SamplingParams {
            temperature: -1.0,
            ..Default::default()
        })
        .is_err());
        assert!(Sampler::new(SamplingParams {
            top_k: Some(0),
            ..Default::default()
        })
        .is_err());
    }
}
