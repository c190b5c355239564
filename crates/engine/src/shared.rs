//! The state the engine handles and the engine thread share: the loaded model, its
//! settings and template, and the live counters.

use std::sync::{Arc, atomic::AtomicBool};

use llama_cpp_2::model::LlamaModel;

use crate::ModelInfo;
use crate::config::Resolved;
use crate::grammar::Grammars;
use crate::stats::{Counters, LoadGauge};
use crate::template::ChatTemplate;

/// State shared by the handles and the engine thread.
#[derive(Debug)]
pub(crate) struct Shared {
    pub model: LlamaModel,
    pub resolved: Resolved,
    pub counters: Arc<Counters>,
    pub load: LoadGauge,
    /// Set when the engine thread has exited (all handles dropped, or a panic).
    pub closed: AtomicBool,
    pub template: ChatTemplate,
    pub info: ModelInfo,
    pub max_queue: usize,
    pub embeddings: bool,
    /// Compiles structured-output constraints for this model.
    pub grammars: Grammars,
}

impl Shared {
    pub(crate) fn info(&self) -> &ModelInfo {
        &self.info
    }
}
