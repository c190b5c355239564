//! `sluice-engine`: llama.cpp embedded in-process, behind a small async API.
//!
//! The only crate of Sluice that builds C++ and the only one allowed `unsafe`
//! (it needs none of its own: `llama-cpp-2` wraps the FFI).
//!
//! ```no_run
//! # async fn demo() -> Result<(), sluice_engine::EngineError> {
//! use futures::StreamExt;
//! use sluice_engine::{ChatMessage, Engine, EngineConfig, GenEvent, GenerateRequest, Prompt, Sampling};
//!
//! let engine = Engine::load(EngineConfig::new("SmolLM2-135M-Instruct-Q4_1.gguf"))?;
//! let mut generation = engine.generate(GenerateRequest {
//!     prompt: Prompt::Chat(vec![ChatMessage::user("Hello!")]),
//!     sampling: Sampling { max_tokens: Some(32), ..Sampling::greedy() },
//!     tools: Vec::new(),
//! })?;
//! while let Some(event) = generation.next().await {
//!     match event {
//!         GenEvent::Token(text) => print!("{text}"),
//!         GenEvent::Logprobs(_) => {}
//!         GenEvent::Done(summary) => println!("\n{summary:?}"),
//!         GenEvent::Error(err) => return Err(err),
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`engine`](Engine): the cloneable handle; loads the model, renders and tokenizes
//!   prompts on the caller's thread, sends commands to the engine thread.
//! - `worker`: the engine thread that owns the llama.cpp contexts.
//! - `scheduler`: continuous batching, prefix reuse and the KV cell budget.
//! - `host_cache`: KV state of evicted sequences in host memory, matched by prefix.
//! - `slot`: one sequence: sampling, detokenizing, stop strings, events.
//! - `sampling`, `grammar`, `logprobs`, `template`, `stop`, `utf8`: the pieces a sequence is made of
//!   (`grammar`: structured output, enforced inside the sampler chain).
//! - `embed`: the lazily created embedding context.
//! - [`managed`](ManagedEngine): load on demand, unload after `keep_alive`.
//! - `shared`: the state the handles and the engine thread share.
//! - `config`, `info`, `stats`, `error`, `backend`: plumbing.

mod backend;
mod config;
mod embed;
mod engine;
mod error;
mod grammar;
mod host_cache;
mod info;
mod logprobs;
mod managed;
mod request;
mod sampling;
mod scheduler;
mod shared;
mod slot;
mod stats;
mod stop;
mod template;
mod utf8;
mod worker;

pub use config::{
    DEFAULT_BATCH, DEFAULT_KV_CACHE_BYTES, DEFAULT_MODEL_FILE, DEFAULT_UBATCH, EngineConfig, FlashAttention,
    KvCacheType, MAX_DEFAULT_CONTEXT, default_model_dir, default_model_path,
};
pub use embed::MAX_EMBED_TOKENS;
pub use engine::{EmbedInput, Engine};
pub use engine::{MAX_EMBED_INPUTS, MAX_EMBED_REQUEST_TOKENS};
pub use error::EngineError;
pub use grammar::{TOOL_CALL_CLOSE, TOOL_CALL_OPEN, tool_call_grammar};
pub use info::{ModelInfo, file_type_name};
pub use logprobs::{MAX_TOP_LOGPROBS, TokenLogprob, TopLogprob};
pub use managed::{KeepAlive, ManagedEngine};
pub use request::{
    ChatMessage, Completion, FinishReason, GenEvent, GenerateRequest, Generation, OutputFormat, Prompt,
    Sampling, Summary, ToolSchema,
};
pub use stats::EngineStats;
pub use template::{MAX_RENDERED_BYTES, TEMPLATE_FUEL, render_chat_template};
