//! Builds one sequence's llama.cpp sampler chain from [`Sampling`] parameters, in
//! llama.cpp's default order: the output constraint (when the request has a format),
//! penalties, top-k, top-p, min-p, temperature, then a seeded draw (or greedy
//! selection when the temperature is zero).
//!
//! The constraint comes first so it sees the whole vocabulary: the later samplers only
//! ever choose among tokens it allows, and the chain's draw accepts the chosen token
//! into it (llama.cpp's `llama_sampler_sample` accepts into every sampler of the chain).

use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use crate::Sampling;
use crate::grammar::Constraint;

/// Tokens the repetition penalty looks back over (llama.cpp's `repeat_last_n`).
const PENALTY_WINDOW: usize = 64;

/// llama.cpp's `LLAMA_DEFAULT_SEED`: asks the sampler to pick a random seed.
const RANDOM_SEED: u32 = u32::MAX;

/// The sampler for one sequence. Its repetition penalty is primed with the end of the
/// prompt, as llama-server does; its constraint starts at the first generated token.
pub(crate) fn build(
    params: &Sampling,
    constraint: Option<Constraint>,
    n_vocab: i32,
    prompt: &[LlamaToken],
) -> LlamaSampler {
    let mut chain = Vec::with_capacity(7);
    if let Some(constraint) = constraint {
        chain.push(constraint.into_sampler());
    }
    if params.repeat_penalty != 1.0 {
        let window = i32::try_from(PENALTY_WINDOW).unwrap_or(64);
        let mut penalties = LlamaSampler::penalties(n_vocab, window, params.repeat_penalty, 0.0, 0.0);
        let start = prompt.len().saturating_sub(PENALTY_WINDOW);
        penalties.accept_many(&prompt[start..]);
        chain.push(penalties);
    }
    if params.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        if params.top_k > 0 {
            chain.push(LlamaSampler::top_k(i32::try_from(params.top_k).unwrap_or(i32::MAX)));
        }
        if params.top_p < 1.0 {
            chain.push(LlamaSampler::top_p(params.top_p, 1));
        }
        if params.min_p > 0.0 {
            chain.push(LlamaSampler::min_p(params.min_p, 1));
        }
        chain.push(LlamaSampler::temp(params.temperature));
        chain.push(LlamaSampler::dist(seed32(params.seed)));
    }
    LlamaSampler::chain_simple(chain)
}

/// Folds a 64-bit seed into the 32 bits llama.cpp takes, avoiding the value that
/// means "random".
fn seed32(seed: Option<u64>) -> u32 {
    match seed {
        None => RANDOM_SEED,
        Some(seed) => {
            let folded = (seed ^ (seed >> 32)) as u32;
            if folded == RANDOM_SEED { 0 } else { folded }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_fold_and_never_mean_random() {
        assert_eq!(seed32(None), RANDOM_SEED);
        assert_eq!(seed32(Some(42)), 42);
        assert_eq!(seed32(Some(u64::from(u32::MAX))), 0);
        assert_ne!(seed32(Some(1 << 32)), seed32(Some(2 << 32)));
    }
}
