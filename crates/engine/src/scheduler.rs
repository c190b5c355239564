//! Continuous batching: every step decodes the next token of each generating sequence
//! together with prompt chunks of newly admitted ones in one `llama_batch`, then
//! samples each sequence from its own logits. Also owns prefix reuse: a new request
//! takes the idle slot whose cached tokens share the longest prefix with its prompt,
//! or a sequence restored from the host cache (`host_cache`) when that shares more.
//!
//! Each slot is one llama.cpp sequence with its own KV stream of `n_ctx` cells, so a
//! sequence never competes for cells and its output does not depend on its neighbours
//! (with one shared pool, greedy output changed with what else was cached).

use std::sync::Arc;
use std::time::Instant;

use llama_cpp_2::LlamaStateSeqFlags;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;

use crate::host_cache::{HostCache, common_prefix};
use crate::shared::Shared;
use crate::slot::{Outcome, Pending, Sequence, Slot};
use crate::stats::Counters;
use crate::{EngineError, logprobs, sampling};

/// While other sequences are generating, a prompt chunk is cut to this fraction of
/// `n_batch`, so their next token is not held up by a long prompt.
const PROMPT_SHARE_WHILE_GENERATING: usize = 4;

/// A slot's sequence is saved to the host cache when admitting a request would drop at
/// least this many of its tokens (shorter ones are cheaper to evaluate again).
const MIN_SAVE_LOSS: usize = 64;

/// A host-cached sequence is restored only when it shares at least this many more
/// prompt tokens than the best free slot (a restore copies the whole sequence).
const MIN_RESTORE_GAIN: usize = 32;

/// Owns the decoding context and the slots; driven one step at a time by the worker.
pub(crate) struct Scheduler<'m> {
    ctx: LlamaContext<'m>,
    model: &'m LlamaModel,
    shared: Arc<Shared>,
    batch: LlamaBatch<'static>,
    slots: Vec<Slot>,
    /// KV state of sequences pushed out of their slot.
    host: HostCache,
    clock: u64,
}

impl<'m> Scheduler<'m> {
    pub(crate) fn new(ctx: LlamaContext<'m>, model: &'m LlamaModel, shared: Arc<Shared>) -> Self {
        let n_parallel = shared.resolved.n_parallel;
        let n_batch = usize::try_from(shared.resolved.n_batch).unwrap_or(512);
        let slots = (0..n_parallel)
            .map(|i| Slot {
                seq_id: i32::try_from(i).unwrap_or(i32::MAX),
                cached: Vec::new(),
                last_used: 0,
                seq: None,
            })
            .collect();
        let host = HostCache::new(shared.resolved.kv_cache_bytes);
        Self { ctx, model, shared, batch: LlamaBatch::new(n_batch, 1), slots, host, clock: 0 }
    }

    /// No sequence is running.
    pub(crate) fn is_idle(&self) -> bool {
        self.slots.iter().all(|slot| slot.seq.is_none())
    }

    /// Puts a request into the free slot whose cache shares the longest prefix with its
    /// prompt and drops the cells past that prefix. Without any shared prefix an empty
    /// slot is preferred, then the least recently used. When the host cache holds a
    /// sequence sharing clearly more, it is restored into the emptiest free slot instead.
    /// A slot's sequence that is about to lose much of its cells is saved to the host
    /// cache first. Hands the request back when no slot is free.
    // Handing the request back is a move on the engine thread, once per step at most.
    #[allow(clippy::result_large_err)]
    pub(crate) fn admit(&mut self, mut pending: Pending) -> Result<(), Pending> {
        let prompt = &pending.tokens;
        let free = || self.slots.iter().enumerate().filter(|(_, slot)| slot.seq.is_none());
        let Some((mut index, slot_prefix)) = free()
            .max_by_key(|(_, slot)| {
                (common_prefix(&slot.cached, prompt), slot.cached.is_empty(), u64::MAX - slot.last_used)
            })
            .map(|(index, slot)| (index, common_prefix(&slot.cached, prompt)))
        else {
            return Err(pending);
        };
        self.clock += 1;
        let restored = if self.host.is_enabled() {
            self.host.take_best(prompt, slot_prefix + MIN_RESTORE_GAIN)
        } else {
            None
        };
        if let Some((saved, shared)) = restored {
            Counters::add(&self.shared.counters.kv_host_hits, 1);
            index = free()
                .max_by_key(|(_, slot)| (slot.cached.is_empty(), u64::MAX - slot.last_used))
                .map_or(index, |(index, _)| index);
            self.save(index);
            let slot = &mut self.slots[index];
            match self.ctx.state_seq_set(&saved.state, slot.seq_id) {
                Ok(()) => {
                    slot.cached = saved.tokens;
                    Counters::add(&self.shared.counters.kv_host_restores, 1);
                    Counters::add(&self.shared.counters.kv_host_restored_tokens, shared);
                }
                Err(err) => {
                    tracing::warn!(error = %err, "restoring a sequence from the host cache failed");
                    let _ = self.ctx.kv_cache_seq_rm(slot.seq_id, None, None);
                    slot.cached.clear();
                }
            }
            self.publish_host_gauges();
        } else if self.host.is_enabled() && self.slots[index].cached.len() >= slot_prefix + MIN_SAVE_LOSS {
            self.save(index);
            self.publish_host_gauges();
        }
        // At least the last prompt token is decoded again: its logits are needed.
        let mut keep = common_prefix(&self.slots[index].cached, prompt).min(prompt.len().saturating_sub(1));
        let slot = &mut self.slots[index];
        if keep < slot.cached.len() {
            let from = u32::try_from(keep).unwrap_or(u32::MAX);
            if self.ctx.kv_cache_seq_rm(slot.seq_id, Some(from), None).is_err() {
                // Some memory types cannot drop a tail; start this slot from scratch.
                let _ = self.ctx.kv_cache_seq_rm(slot.seq_id, None, None);
                keep = 0;
            }
            slot.cached.truncate(keep);
        }
        let constraint = pending.constraint.take();
        let sampler = sampling::build(&pending.sampling, constraint, self.model.n_vocab(), &pending.tokens);
        slot.seq = Some(Sequence::new(pending, sampler, keep, self.clock));
        slot.last_used = self.clock;
        let counters = &self.shared.counters;
        Counters::add(&counters.prompt_tokens_reused, keep);
        Counters::add(&counters.sequences_started, 1);
        self.shared.load.update(|load| {
            load.queued = load.queued.saturating_sub(1);
            load.active += 1;
        });
        Ok(())
    }

    /// Copies slot `index`'s sequence to the host cache (when it holds enough to be
    /// worth it); its cells stay in place.
    fn save(&mut self, index: usize) {
        let slot = &self.slots[index];
        if slot.cached.len() < MIN_SAVE_LOSS {
            return;
        }
        let state = match self.ctx.state_seq_get(slot.seq_id, LlamaStateSeqFlags::empty()) {
            Ok(state) => state,
            Err(err) => {
                tracing::warn!(error = %err, "saving a sequence to the host cache failed");
                return;
            }
        };
        let bytes = u64::try_from(state.byte_len()).unwrap_or(u64::MAX);
        let inserted = self.host.insert(slot.cached.clone(), state, bytes);
        let counters = &self.shared.counters;
        if inserted.kept {
            Counters::add(&counters.kv_host_saves, 1);
        }
        Counters::add(&counters.kv_host_evictions, inserted.evicted);
    }

    fn publish_host_gauges(&self) {
        let counters = &self.shared.counters;
        Counters::set(&counters.kv_host_bytes, self.host.used());
        Counters::set(&counters.kv_host_entries, u64::try_from(self.host.len()).unwrap_or(u64::MAX));
    }

    /// Runs one decode over every active sequence: the next token of each generating
    /// sequence, then prompt chunks, first admitted first, within `n_batch`.
    pub(crate) fn step(&mut self) {
        self.reap_cancelled();
        self.batch.clear();
        let mut outputs = Vec::new();
        let generating = self.add_next_tokens(&mut outputs);
        let n_batch = usize::try_from(self.shared.resolved.n_batch).unwrap_or(512);
        let prompt_budget = if generating == 0 {
            n_batch
        } else {
            (n_batch / PROMPT_SHARE_WHILE_GENERATING).min(n_batch.saturating_sub(generating))
        };
        let prompt_tokens = self.add_prompt_chunks(prompt_budget, &mut outputs);
        if self.batch.n_tokens() == 0 {
            return;
        }
        let started = Instant::now();
        if let Err(err) = self.ctx.decode(&mut self.batch) {
            tracing::error!(error = %err, tokens = self.batch.n_tokens(), "llama_decode failed");
            let active: Vec<usize> = self.active().collect();
            for index in active {
                self.end_with_error(index, EngineError::Decode(err.to_string()));
            }
            return;
        }
        tracing::trace!(
            tokens = self.batch.n_tokens(),
            prompt_tokens,
            elapsed = ?started.elapsed(),
            "decoded"
        );
        Counters::add(&self.shared.counters.prompt_tokens_evaluated, prompt_tokens);
        self.sample(&outputs);
    }

    /// Adds each generating sequence's last sampled token; returns how many.
    fn add_next_tokens(&mut self, outputs: &mut Vec<(usize, i32)>) -> usize {
        let mut added = 0;
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let Some(token) = slot.seq.as_mut().and_then(|seq| seq.next_token.take()) else {
                continue;
            };
            let position = i32::try_from(slot.cached.len()).unwrap_or(i32::MAX);
            // Cannot fail: n_batch >= n_parallel is checked at load.
            if self.batch.add(token, position, &[slot.seq_id], true).is_ok() {
                slot.cached.push(token);
                outputs.push((index, self.batch.n_tokens() - 1));
                added += 1;
            }
        }
        added
    }

    /// Adds prompt chunks up to `budget` tokens; returns how many.
    fn add_prompt_chunks(&mut self, mut budget: usize, outputs: &mut Vec<(usize, i32)>) -> usize {
        let mut added = 0;
        for index in self.prompting_in_order() {
            if budget == 0 {
                break;
            }
            let slot = &mut self.slots[index];
            let Some(seq) = slot.seq.as_mut() else {
                continue;
            };
            let remaining = seq.remaining_prompt().len();
            let take = remaining.min(budget);
            let completes = take == remaining;
            let start = slot.cached.len();
            let chunk = seq.advance_prompt(take);
            for (i, &token) in chunk.iter().enumerate() {
                let position = i32::try_from(start + i).unwrap_or(i32::MAX);
                // Logits only for the last prompt token: that is where sampling starts.
                let logits = completes && i + 1 == take;
                if let Err(err) = self.batch.add(token, position, &[slot.seq_id], logits) {
                    // Unreachable: the budget never exceeds the batch's free room.
                    tracing::error!(error = %err, "prompt chunk overflowed the batch");
                }
            }
            slot.cached.extend_from_slice(chunk);
            added += take;
            budget -= take;
            if completes {
                outputs.push((index, self.batch.n_tokens() - 1));
            }
        }
        added
    }

    fn sample(&mut self, outputs: &[(usize, i32)]) {
        let vocab = self.model.vocab();
        let n_ctx = usize::try_from(self.shared.resolved.n_ctx).unwrap_or(usize::MAX);
        for &(index, batch_index) in outputs {
            let slot = &mut self.slots[index];
            let Some(seq) = slot.seq.as_mut() else {
                continue;
            };
            let token = seq.sampler().sample(&self.ctx, batch_index);
            // Sampling worked on a copy: the context's logits are still the model's own.
            let logprob = seq
                .top_logprobs()
                .map(|top| logprobs::of(self.ctx.get_logits_ith(batch_index), token, top, &vocab));
            let before = seq.generated();
            let outcome = seq.accept(token, logprob, &vocab, slot.cached.len(), n_ctx);
            Counters::add(&self.shared.counters.completion_tokens, seq.generated() - before);
            match outcome {
                Outcome::Continue => {}
                Outcome::Finished(summary) => {
                    if let Some(seq) = self.release(index, false) {
                        seq.send_done(summary);
                    }
                }
                Outcome::Cancelled => {
                    self.release(index, true);
                }
            }
        }
    }

    fn reap_cancelled(&mut self) {
        let cancelled: Vec<usize> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.seq.as_ref().is_some_and(Sequence::is_cancelled))
            .map(|(index, _)| index)
            .collect();
        for index in cancelled {
            self.release(index, true);
        }
    }

    /// Frees a slot and returns its sequence, for the final event. A cancelled
    /// sequence's cells are removed; a finished one's stay for prefix reuse.
    fn release(&mut self, index: usize, cancelled: bool) -> Option<Sequence> {
        self.clock += 1;
        let slot = &mut self.slots[index];
        let seq = slot.seq.take()?;
        slot.last_used = self.clock;
        if cancelled {
            let _ = self.ctx.kv_cache_seq_rm(slot.seq_id, None, None);
            slot.cached.clear();
            Counters::add(&self.shared.counters.sequences_cancelled, 1);
        }
        self.shared.load.update(|load| load.active = load.active.saturating_sub(1));
        Some(seq)
    }

    /// Ends a sequence with an error; its cells are removed.
    fn end_with_error(&mut self, index: usize, err: EngineError) {
        let slot = &mut self.slots[index];
        let _ = self.ctx.kv_cache_seq_rm(slot.seq_id, None, None);
        slot.cached.clear();
        if let Some(seq) = self.release(index, false) {
            seq.fail(err);
        }
    }

    fn prompting_in_order(&self) -> Vec<usize> {
        let mut prompting: Vec<(u64, usize)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| {
                let seq = slot.seq.as_ref()?;
                (!seq.remaining_prompt().is_empty()).then_some((seq.admitted_as, index))
            })
            .collect();
        prompting.sort_unstable();
        prompting.into_iter().map(|(_, index)| index).collect()
    }

    /// Slots with a running sequence.
    fn active(&self) -> impl Iterator<Item = usize> + '_ {
        self.slots.iter().enumerate().filter(|(_, slot)| slot.seq.is_some()).map(|(index, _)| index)
    }
}

#[cfg(test)]
mod tests {
    use super::common_prefix;

    #[test]
    fn common_prefix_counts_matching_leading_items() {
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2, 4]), 2);
        assert_eq!(common_prefix(&[1, 2], &[1, 2, 3]), 2);
        assert_eq!(common_prefix::<u8>(&[], &[1]), 0);
    }
}
