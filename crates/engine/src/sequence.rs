//! One sequence's state: the tokens it has seen and their keys and values in every layer.
//!
//! The network's weights are shared; a sequence is what one conversation adds. `candor run`
//! keeps one in the model, the server one per slot, so several sequences can share a forward
//! pass ([`crate::Model::forward_batch`]) and a finished one keeps its cache for the next request
//! that starts with the same tokens.

use crate::kv_cache::{CacheType, KvCache};

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
    /// `max_positions` positions in the format `kind`.
    pub(crate) fn new(layers: usize, max_positions: usize, kind: CacheType) -> Self {
        Self {
            tokens: Vec::new(),
            layers: vec![KvCache::new(kind, max_positions); layers],
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
