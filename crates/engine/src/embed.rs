//! Sentence embeddings: a second, small context with embeddings enabled and mean
//! pooling, created on first use. Vectors are L2-normalised.

use std::num::NonZeroU32;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use crate::EngineError;
use crate::config::Resolved;

/// Longest input embedded; mean pooling needs a whole input in one micro-batch, and
/// the compute buffers grow with it.
pub const MAX_EMBED_TOKENS: u32 = 2048;

/// The embedding context and its batch.
pub(crate) struct Embedder<'m> {
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    n_ctx: usize,
}

impl<'m> Embedder<'m> {
    pub(crate) fn new(model: &'m LlamaModel, resolved: &Resolved) -> Result<Self, EngineError> {
        let n_ctx = embed_window(resolved);
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(n_ctx)
            .with_n_ubatch(n_ctx)
            .with_n_seq_max(1)
            .with_n_threads(resolved.n_threads)
            .with_n_threads_batch(resolved.n_threads_batch)
            .with_embeddings(true)
            .with_pooling_type(LlamaPoolingType::Mean);
        let ctx = model
            .new_context(crate::backend::get()?, params)
            .map_err(|err| EngineError::Load(format!("embedding context: {err}")))?;
        let n_ctx = usize::try_from(n_ctx).unwrap_or(usize::MAX);
        Ok(Self { ctx, batch: LlamaBatch::new(n_ctx, 1), n_ctx })
    }

    /// The normalised, mean-pooled vector of one input.
    pub(crate) fn embed_one(&mut self, tokens: &[LlamaToken]) -> Result<Vec<f32>, EngineError> {
        if tokens.len() > self.n_ctx {
            return Err(EngineError::ContextOverflow { prompt_tokens: tokens.len(), context: self.n_ctx });
        }
        self.ctx.clear_kv_cache();
        self.batch.clear();
        self.batch.add_sequence(tokens, 0, false).map_err(|err| EngineError::Decode(err.to_string()))?;
        self.ctx.decode(&mut self.batch).map_err(|err| EngineError::Decode(err.to_string()))?;
        let pooled = self
            .ctx
            .embeddings_seq_ith(0)
            .map_err(|err| EngineError::Decode(format!("no pooled embedding: {err}")))?;
        Ok(normalized(pooled))
    }
}

/// The embedding window for this configuration.
pub(crate) fn embed_window(resolved: &Resolved) -> u32 {
    resolved.n_ctx.min(MAX_EMBED_TOKENS)
}

fn normalized(vector: &[f32]) -> Vec<f32> {
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 { vector.iter().map(|x| x / norm).collect() } else { vector.to_vec() }
}

#[cfg(test)]
mod tests {
    use super::normalized;

    #[test]
    fn vectors_come_out_unit_length() {
        assert_eq!(normalized(&[3.0, 4.0]), vec![0.6, 0.8]);
        assert_eq!(normalized(&[0.0, 0.0]), vec![0.0, 0.0]);
    }
}
