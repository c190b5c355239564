//! The host cache of evicted sequences: when a slot is taken by a request that shares
//! little with what the slot held, that sequence's KV state is copied to host memory
//! first; a later request whose prompt starts with those tokens gets it restored into
//! a slot instead of reading its history again. Matched by token prefix (any client
//! benefits), bounded in bytes, least recently used dropped first.

use llama_cpp_2::SeqState;
use llama_cpp_2::token::LlamaToken;

/// One saved sequence: exactly the tokens whose KV cells `state` holds.
#[derive(Debug)]
pub(crate) struct Saved<S = SeqState> {
    pub tokens: Vec<LlamaToken>,
    pub state: S,
    bytes: u64,
    last_used: u64,
}

/// Saved sequences within a byte budget. Generic over the state so the bookkeeping is
/// tested without a model.
#[derive(Debug)]
pub(crate) struct HostCache<S = SeqState> {
    budget: u64,
    used: u64,
    clock: u64,
    entries: Vec<Saved<S>>,
}

/// What an insertion did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Inserted {
    /// Whether the state was kept (false: larger than the whole budget).
    pub kept: bool,
    /// Entries dropped to make room (least recently used first).
    pub evicted: usize,
}

impl<S> HostCache<S> {
    pub(crate) fn new(budget: u64) -> Self {
        Self { budget, used: 0, clock: 0, entries: Vec::new() }
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.budget > 0
    }

    /// Bytes held now.
    pub(crate) fn used(&self) -> u64 {
        self.used
    }

    /// Sequences held now.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Keeps `state` (of `bytes` bytes) for `tokens`. Entries whose tokens are a prefix
    /// of `tokens` are dropped: the new one covers them. Then the least recently used
    /// entries go until the new one fits.
    pub(crate) fn insert(&mut self, tokens: Vec<LlamaToken>, state: S, bytes: u64) -> Inserted {
        if bytes > self.budget {
            return Inserted::default();
        }
        self.entries.retain(|e| !tokens.starts_with(&e.tokens));
        self.recount();
        let mut evicted = 0;
        while self.used + bytes > self.budget {
            let Some(oldest) =
                self.entries.iter().enumerate().min_by_key(|(_, e)| e.last_used).map(|(i, _)| i)
            else {
                break;
            };
            let gone = self.entries.swap_remove(oldest);
            self.used -= gone.bytes;
            evicted += 1;
        }
        self.clock += 1;
        self.used += bytes;
        self.entries.push(Saved { tokens, state, bytes, last_used: self.clock });
        Inserted { kept: true, evicted }
    }

    /// Takes out the entry sharing the longest prefix with `prompt`, if that prefix is
    /// longer than `better_than` tokens.
    pub(crate) fn take_best(
        &mut self,
        prompt: &[LlamaToken],
        better_than: usize,
    ) -> Option<(Saved<S>, usize)> {
        let (index, shared) = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (i, common_prefix(&e.tokens, prompt)))
            .max_by_key(|&(i, shared)| (shared, self.entries[i].last_used))?;
        if shared <= better_than {
            return None;
        }
        let entry = self.entries.swap_remove(index);
        self.used -= entry.bytes;
        Some((entry, shared))
    }

    fn recount(&mut self) {
        self.used = self.entries.iter().map(|e| e.bytes).sum();
    }
}

/// Length of the common prefix of two token lists.
pub(crate) fn common_prefix<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(ids: &[i32]) -> Vec<LlamaToken> {
        ids.iter().map(|&id| LlamaToken::new(id)).collect()
    }

    #[test]
    fn longest_prefix_wins_and_is_taken_out() {
        let mut cache = HostCache::new(100);
        cache.insert(toks(&[1, 2, 3]), "a", 10);
        cache.insert(toks(&[1, 2, 9, 9]), "b", 10);
        let (entry, shared) = cache.take_best(&toks(&[1, 2, 3, 4]), 0).unwrap();
        assert_eq!((entry.state, shared), ("a", 3));
        assert_eq!((cache.len(), cache.used()), (1, 10));
        // Not better than what the caller already has: left in place.
        assert!(cache.take_best(&toks(&[1, 2, 9]), 3).is_none());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn least_recently_used_go_first_and_the_budget_holds() {
        let mut cache = HostCache::new(25);
        cache.insert(toks(&[1]), "a", 10);
        cache.insert(toks(&[2]), "b", 10);
        let inserted = cache.insert(toks(&[3]), "c", 10);
        assert_eq!(inserted, Inserted { kept: true, evicted: 1 });
        assert!(cache.used() <= 25);
        assert!(cache.take_best(&toks(&[1]), 0).is_none(), "the oldest went");
        assert!(cache.take_best(&toks(&[2]), 0).is_some());
        // Larger than the whole budget: not kept, nothing dropped for it.
        assert_eq!(cache.insert(toks(&[4]), "d", 26), Inserted::default());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_longer_save_of_the_same_conversation_replaces_the_shorter() {
        let mut cache = HostCache::new(100);
        cache.insert(toks(&[1, 2]), "turn 1", 10);
        cache.insert(toks(&[1, 2, 3, 4]), "turn 2", 20);
        assert_eq!((cache.len(), cache.used()), (1, 20));
    }
}
