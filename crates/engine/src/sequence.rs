//! One sequence's state: the tokens it has seen and their keys and values in every layer.
//!
//! The network's weights are shared; a sequence is what one conversation adds. `candor run`
//! keeps one in the model, the server one per slot, so several sequences can share a forward
//! pass ([`crate::Model::forward_batch`]) and a finished one keeps its cache for the next request
//! that starts with the same tokens.

use crate::error::Result;
use candle_core::Tensor;

/// One sequence's share of a forward pass: its new tokens, after those it has cached.
pub struct SeqStep<'a> {
    pub ids: &'a [u32],
    pub seq: &'a mut Sequence,
}

/// The tokens of a sequence and their keys and values, one cache per layer.
#[derive(Debug, Clone, Default)]
pub struct Sequence {
    tokens: Vec<u32>,
    pub(crate) layers: Vec<KvCache>,
}

impl Sequence {
    /// An empty sequence for a network of `layers` layers whose caches hold at most
    /// `max_positions` positions.
    pub(crate) fn new(layers: usize, max_positions: usize) -> Self {
        Self {
            tokens: Vec::new(),
            layers: vec![KvCache::with_limit(max_positions); layers],
        }
    }

    /// Tokens whose keys and values are cached, in order.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Keeps the first `len` tokens and forgets the rest.
    pub fn truncate(&mut self, len: usize) {
        let len = len.min(self.tokens.len());
        self.tokens.truncate(len);
        self.layers.iter_mut().for_each(|c| c.truncate(len));
    }

    /// Records `ids` as cached once every layer has appended their keys and values.
    pub(crate) fn extend(&mut self, ids: &[u32]) {
        self.tokens.extend_from_slice(ids);
    }

    /// Bytes the caches hold allocated (their capacity, not only the used positions).
    pub fn allocated_bytes(&self) -> usize {
        self.layers.iter().map(KvCache::allocated_bytes).sum()
    }

    /// Positions the caches hold allocated.
    pub fn allocated_positions(&self) -> usize {
        self.layers.first().map_or(0, KvCache::capacity)
    }

    /// Caps how far the caches grow (a request's share of the server's KV budget); what is
    /// allocated already stays.
    pub fn limit_growth(&mut self, positions: usize) {
        self.layers.iter_mut().for_each(|c| c.limit = positions);
    }

    /// Forgets every token and hands the caches' memory back.
    pub fn release(&mut self) {
        self.tokens.clear();
        self.layers.iter_mut().for_each(KvCache::release);
    }
}

/// Key/value cache of one layer: a preallocated buffer that grows by doubling up to its limit,
/// so appending a token is a copy into place (not a concatenation of the whole history) and
/// rewinding a conversation is just a shorter length.
#[derive(Debug, Clone)]
pub struct KvCache {
    k: Option<Tensor>,
    v: Option<Tensor>,
    len: usize,
    /// The most positions it grows to (the context size).
    limit: usize,
}

impl KvCache {
    fn with_limit(limit: usize) -> Self {
        Self {
            k: None,
            v: None,
            len: 0,
            limit,
        }
    }

    /// Appends (1, kv_heads, seq, head_dim) keys and values.
    pub fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<()> {
        let seq = k.dim(2)?;
        let needed = self.len + seq;
        if needed > self.capacity() {
            let new_cap = needed
                .max(self.capacity() * 2)
                .max(64)
                .min(self.limit.max(needed));
            let (b, h, _, d) = k.dims4()?;
            let grow = |old: &Option<Tensor>| -> Result<Tensor> {
                let t = Tensor::zeros((b, h, new_cap, d), k.dtype(), k.device())?;
                if let Some(old) = old {
                    if self.len > 0 {
                        t.slice_set(&old.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
                    }
                }
                Ok(t)
            };
            self.k = Some(grow(&self.k)?);
            self.v = Some(grow(&self.v)?);
        }
        let (kc, vc) = self.buffers().expect("allocated");
        kc.slice_set(&k.contiguous()?, 2, self.len)?;
        vc.slice_set(&v.contiguous()?, 2, self.len)?;
        self.len = needed;
        Ok(())
    }

    /// Views (1, kv_heads, len, head_dim) of the cached keys and values.
    pub fn history(&self) -> Result<(Tensor, Tensor)> {
        let (k, v) = self
            .buffers()
            .ok_or_else(|| candle_core::Error::Msg("empty KV cache".into()))?;
        Ok((k.narrow(2, 0, self.len)?, v.narrow(2, 0, self.len)?))
    }

    /// The whole key and value buffers, (1, kv_heads, capacity, head_dim), of which the first
    /// `len` positions are filled. None before the first append.
    pub(crate) fn buffers(&self) -> Option<(&Tensor, &Tensor)> {
        self.k.as_ref().zip(self.v.as_ref())
    }

    fn capacity(&self) -> usize {
        self.k.as_ref().map_or(0, |t| t.dim(2).unwrap_or(0))
    }

    /// Forgets positions from `len` on.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    fn release(&mut self) {
        (self.k, self.v, self.len) = (None, None, 0);
    }

    fn allocated_bytes(&self) -> usize {
        [&self.k, &self.v]
            .iter()
            .filter_map(|t| t.as_ref())
            .map(|t| t.elem_count() * t.dtype().size_in_bytes())
            .sum()
    }
}
