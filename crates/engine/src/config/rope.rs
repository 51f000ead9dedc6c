//! RoPE variants beyond the plain rotation: Llama 3.x frequency scaling and Phi-3's LongRoPE.

use crate::error::{Error, Result};

/// Llama 3.x frequency-dependent RoPE scaling (`rope_type = "llama3"`).
#[derive(Debug, Clone, PartialEq)]
pub struct Llama3RopeScaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: usize,
}

/// Phi-3's LongRoPE: every rotary frequency divided by a factor of its own, from one list for
/// contexts up to the trained length and another for longer ones (chosen by the context size,
/// as llama.cpp does), and cos/sin multiplied by `attn_factor`.
#[derive(Debug, Clone, PartialEq)]
pub struct LongRope {
    pub original_context: usize,
    pub attn_factor: f64,
    /// (short, long) from config.json; a GGUF file stores them as tensors instead.
    pub factors: Option<(Vec<f32>, Vec<f32>)>,
}

impl LongRope {
    /// Refuses numbers that would turn every rotation into NaN or infinity.
    pub fn validate(&self) -> Result<()> {
        if !(self.attn_factor.is_finite() && self.attn_factor > 0.0) || self.original_context == 0 {
            return Err(Error::malformed(format!(
                "LongRoPE: attention factor {} and trained length {} must be positive",
                self.attn_factor, self.original_context
            )));
        }
        if let Some((short, long)) = &self.factors {
            check_rope_factors(short)?;
            check_rope_factors(long)?;
        }
        Ok(())
    }
}

/// RoPE frequency divisors must be finite and positive.
pub fn check_rope_factors(f: &[f32]) -> Result<()> {
    match f.iter().find(|x| !(x.is_finite() && **x > 0.0)) {
        Some(x) => Err(Error::malformed(format!(
            "RoPE frequency factor {x} is not a positive number"
        ))),
        None => Ok(()),
    }
}
