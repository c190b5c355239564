//! The engine's one error type, shared by loading, generation and embeddings.

/// Everything that can go wrong in the embedded engine.
///
/// Variants are coarse on purpose: callers map them to a status (`ContextOverflow`
/// and `InvalidRequest` are the client's fault, `QueueFull` is overload, the rest
/// are server-side); the message carries detail for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The model or its context could not be loaded.
    #[error("failed to load model: {0}")]
    Load(String),
    /// The prompt does not fit in one sequence's context window.
    #[error("prompt is {prompt_tokens} tokens but the context window is {context} tokens")]
    ContextOverflow {
        /// Tokens in the rendered and tokenized prompt.
        prompt_tokens: usize,
        /// Tokens one sequence may hold (prompt plus completion).
        context: usize,
    },
    /// The request is malformed (empty prompt, unrenderable chat, bad sampling value).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The requested output schema is not valid JSON Schema, or uses something the
    /// constraint cannot enforce.
    #[error("the JSON schema cannot be enforced: {0}")]
    InvalidSchema(String),
    /// The chat template from the model metadata failed to render.
    #[error("chat template error: {0}")]
    Template(String),
    /// Too many requests are already waiting for a free sequence slot.
    #[error("engine queue is full ({0} requests waiting)")]
    QueueFull(usize),
    /// This engine was loaded without embeddings support.
    #[error("embeddings are not enabled for this engine")]
    EmbeddingsDisabled,
    /// llama.cpp reported a failure while decoding.
    #[error("decode failed: {0}")]
    Decode(String),
    /// The engine thread has stopped (unloaded, shut down or crashed).
    #[error("engine is closed")]
    Closed,
}

impl EngineError {
    /// `true` when the request itself was at fault and retrying it unchanged cannot help.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            Self::ContextOverflow { .. }
                | Self::InvalidRequest(_)
                | Self::InvalidSchema(_)
                | Self::Template(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_overflow_names_both_lengths() {
        let err = EngineError::ContextOverflow { prompt_tokens: 9000, context: 8192 };
        let msg = err.to_string();
        assert!(msg.contains("9000") && msg.contains("8192"), "{msg}");
        assert!(err.is_client_error());
        assert!(!EngineError::Closed.is_client_error());
    }
}
