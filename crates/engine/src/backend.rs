//! The process-wide llama.cpp backend. llama.cpp allows one initialisation per
//! process, so every engine (and every reload) shares this one, which lives until
//! the process exits; its log output is routed to `tracing` at the same time.

use std::sync::OnceLock;

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::{LogOptions, send_logs_to_tracing};

use crate::EngineError;

static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();

/// The shared backend, initialised on first call.
pub(crate) fn get() -> Result<&'static LlamaBackend, EngineError> {
    BACKEND
        .get_or_init(|| {
            send_logs_to_tracing(LogOptions::default());
            LlamaBackend::init().map_err(|err| err.to_string())
        })
        .as_ref()
        .map_err(|err| EngineError::Load(format!("llama.cpp backend: {err}")))
}
