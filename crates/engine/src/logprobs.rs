//! Log probabilities of generated tokens, computed from the logits as the model gave
//! them: a log-softmax over the whole vocabulary before any sampler (penalties,
//! temperature, top-k/p, an output constraint) touched them, as llama-server's
//! `n_probs` does with `post_sampling_probs` off. Only computed for sequences that
//! asked for them.

use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::vocab::LlamaVocab;

/// Most alternatives a request may ask for per token (OpenAI's `top_logprobs` bound).
pub const MAX_TOP_LOGPROBS: u8 = 20;

/// One generated token's log probability and its likeliest alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    /// The token's text (special tokens spelled out; invalid UTF-8 replaced).
    pub token: String,
    /// The token's bytes (a token may hold part of a UTF-8 character).
    pub bytes: Vec<u8>,
    /// Its natural-log probability.
    pub logprob: f32,
    /// The likeliest tokens at this position, likeliest first (ties: lower id first);
    /// as many as asked for, the chosen token among them when it is likely enough.
    pub top: Vec<TopLogprob>,
}

/// An alternative token at one position.
#[derive(Debug, Clone, PartialEq)]
pub struct TopLogprob {
    /// The token's text.
    pub token: String,
    /// The token's bytes.
    pub bytes: Vec<u8>,
    /// Its natural-log probability.
    pub logprob: f32,
}

/// The log probability of `chosen` and the `top` likeliest tokens, from one position's
/// raw logits.
pub(crate) fn of(logits: &[f32], chosen: LlamaToken, top: usize, vocab: &LlamaVocab<'_>) -> TokenLogprob {
    let lse = log_sum_exp(logits);
    let logprob_of = |id: usize| logits.get(id).map_or(f32::NEG_INFINITY, |l| l - lse);
    let piece = |id: i32| {
        let bytes = vocab.token_to_piece(LlamaToken::new(id), true, None);
        (String::from_utf8_lossy(&bytes).into_owned(), bytes)
    };
    let (token, bytes) = piece(chosen.0);
    let top = top_ids(logits, top)
        .into_iter()
        .map(|id| {
            let (token, bytes) = piece(i32::try_from(id).unwrap_or(0));
            TopLogprob { token, bytes, logprob: logprob_of(id) }
        })
        .collect();
    TokenLogprob { token, bytes, logprob: logprob_of(usize::try_from(chosen.0).unwrap_or(usize::MAX)), top }
}

/// `ln(sum(exp(x)))`, computed stably.
fn log_sum_exp(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return max;
    }
    let sum: f32 = logits.iter().map(|l| (l - max).exp()).sum();
    max + sum.ln()
}

/// The ids of the `n` largest logits, largest first, ties by lower id. One pass with a
/// small sorted buffer: `n` is at most [`MAX_TOP_LOGPROBS`].
fn top_ids(logits: &[f32], n: usize) -> Vec<usize> {
    let mut best: Vec<(f32, usize)> = Vec::with_capacity(n + 1);
    if n == 0 {
        return Vec::new();
    }
    for (id, &logit) in logits.iter().enumerate() {
        if best.len() == n && best.last().is_some_and(|&(worst, _)| logit <= worst) {
            continue;
        }
        // After every element with a logit at least as large (earlier ids win ties).
        let at = best.partition_point(|&(l, _)| l >= logit);
        best.insert(at, (logit, id));
        best.truncate(n);
    }
    best.into_iter().map(|(_, id)| id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_ids_are_the_largest_in_order_with_ties_by_id() {
        let logits = [0.5, 3.0, -1.0, 3.0, 2.0, f32::NEG_INFINITY];
        assert_eq!(top_ids(&logits, 3), [1, 3, 4]);
        assert_eq!(top_ids(&logits, 0), Vec::<usize>::new());
        assert_eq!(top_ids(&logits, 10), [1, 3, 4, 0, 2, 5]);
    }

    #[test]
    fn log_sum_exp_normalises() {
        let logits = [1000.0_f32, 1000.0];
        assert!((log_sum_exp(&logits) - (1000.0 + 2f32.ln())).abs() < 1e-3);
        let small = [0.0_f32, 0.0, 0.0, 0.0];
        let total: f32 = small.iter().map(|l| (l - log_sum_exp(&small)).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
    }
}
