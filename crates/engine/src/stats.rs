//! Engine counters (monotonic atomics) and the load gauge (a `watch` channel, so
//! callers can await the engine becoming idle instead of polling).

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

/// A snapshot of an engine's counters, from [`crate::Engine::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Prompt tokens run through the model.
    pub prompt_tokens_evaluated: u64,
    /// Prompt tokens whose KV cells were reused from a slot's previous sequence.
    pub prompt_tokens_reused: u64,
    /// Tokens generated (end-of-generation tokens not counted).
    pub completion_tokens: u64,
    /// Sequences admitted to a slot.
    pub sequences_started: u64,
    /// Requests dropped by their caller before they finished (queued or running).
    pub sequences_cancelled: u64,
    /// Sequences whose KV state was copied to the host cache when their slot was taken.
    pub kv_host_saves: u64,
    /// Requests whose prompt matched a sequence in the host cache better than any slot.
    pub kv_host_hits: u64,
    /// Host-cached sequences put back into a slot.
    pub kv_host_restores: u64,
    /// Prompt tokens restored from the host cache instead of being evaluated.
    pub kv_host_restored_tokens: u64,
    /// Host-cached sequences dropped to stay within `kv_cache_bytes`.
    pub kv_host_evictions: u64,
    /// Bytes held by the host cache right now.
    pub kv_host_bytes: u64,
    /// Sequences held by the host cache right now.
    pub kv_host_entries: u64,
    /// Sequences in a slot right now.
    pub active_sequences: usize,
    /// Requests waiting for a free slot right now.
    pub queued_requests: usize,
}

/// Monotonic counters, shared by the engine thread (writer) and handles (readers).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub prompt_tokens_evaluated: AtomicU64,
    pub prompt_tokens_reused: AtomicU64,
    pub completion_tokens: AtomicU64,
    pub sequences_started: AtomicU64,
    pub sequences_cancelled: AtomicU64,
    pub kv_host_saves: AtomicU64,
    pub kv_host_hits: AtomicU64,
    pub kv_host_restores: AtomicU64,
    pub kv_host_restored_tokens: AtomicU64,
    pub kv_host_evictions: AtomicU64,
    /// Gauges, set (not added) by the engine thread.
    pub kv_host_bytes: AtomicU64,
    pub kv_host_entries: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub(crate) fn set(gauge: &AtomicU64, value: u64) {
        gauge.store(value, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, load: Load) -> EngineStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        EngineStats {
            prompt_tokens_evaluated: get(&self.prompt_tokens_evaluated),
            prompt_tokens_reused: get(&self.prompt_tokens_reused),
            completion_tokens: get(&self.completion_tokens),
            sequences_started: get(&self.sequences_started),
            sequences_cancelled: get(&self.sequences_cancelled),
            kv_host_saves: get(&self.kv_host_saves),
            kv_host_hits: get(&self.kv_host_hits),
            kv_host_restores: get(&self.kv_host_restores),
            kv_host_restored_tokens: get(&self.kv_host_restored_tokens),
            kv_host_evictions: get(&self.kv_host_evictions),
            kv_host_bytes: get(&self.kv_host_bytes),
            kv_host_entries: get(&self.kv_host_entries),
            active_sequences: load.active,
            queued_requests: load.queued,
        }
    }
}

/// Work the engine holds right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Load {
    /// Generation requests sent but not yet in a slot.
    pub queued: usize,
    /// Sequences in a slot.
    pub active: usize,
    /// Embedding requests sent but not yet answered.
    pub embeddings: usize,
}

impl Load {
    pub(crate) fn is_idle(&self) -> bool {
        self.queued == 0 && self.active == 0 && self.embeddings == 0
    }
}

/// The load gauge; every change wakes the watchers.
#[derive(Debug)]
pub(crate) struct LoadGauge(watch::Sender<Load>);

impl Default for LoadGauge {
    fn default() -> Self {
        Self(watch::Sender::new(Load::default()))
    }
}

impl LoadGauge {
    pub(crate) fn get(&self) -> Load {
        *self.0.borrow()
    }

    pub(crate) fn update(&self, change: impl FnOnce(&mut Load)) {
        self.0.send_modify(change);
    }

    /// Counts one more queued request unless `limit` requests (generations waiting for
    /// a slot and embedding requests, which share the engine thread) are already waiting.
    pub(crate) fn try_enqueue(&self, limit: usize) -> bool {
        self.0.send_if_modified(|load| {
            if load.queued + load.embeddings >= limit {
                return false;
            }
            load.queued += 1;
            true
        })
    }

    /// Counts one more embedding request, under the same bound as [`Self::try_enqueue`].
    pub(crate) fn try_enqueue_embed(&self, limit: usize) -> bool {
        self.0.send_if_modified(|load| {
            if load.queued + load.embeddings >= limit {
                return false;
            }
            load.embeddings += 1;
            true
        })
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Load> {
        self.0.subscribe()
    }
}
