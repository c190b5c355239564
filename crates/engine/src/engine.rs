//! The `Engine` handle: loads a model, starts its engine thread, and turns requests
//! into commands for it. Templating and tokenization happen on the caller's thread
//! (the model is `Sync`), so a prompt that cannot fit is refused before it queues.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::{mpsc as tokio_mpsc, oneshot};

use crate::embed::embed_window;
use crate::grammar::Grammars;
use crate::shared::Shared;
use crate::slot::Pending;
use crate::stats::{Counters, LoadGauge};
use crate::template::{CHATML, ChatTemplate};
use crate::worker::{self, Command};
use crate::{
    ChatMessage, EngineConfig, EngineError, EngineStats, GenerateRequest, Generation, ModelInfo, Prompt,
};

/// Most inputs in one embedding request.
pub const MAX_EMBED_INPUTS: usize = 2048;

/// Most tokens in one embedding request, all inputs together.
pub const MAX_EMBED_REQUEST_TOKENS: usize = 300_000;

/// Where the engine thread answers an embedding request.
pub(crate) type EmbedReply = oneshot::Receiver<Result<Vec<Vec<f32>>, EngineError>>;

/// A loaded model and the thread that runs it.
///
/// Cheap to clone; all clones talk to the same engine thread. The thread exits, and
/// the model and its KV cache are freed, once every clone is dropped and the last
/// running sequence has finished.
#[derive(Debug, Clone)]
pub struct Engine {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
}

impl Engine {
    /// Loads the model, allocates its context and starts the engine thread.
    ///
    /// Blocks while the weights are mapped and the KV cache allocated (well under a
    /// second for small models); call it from `spawn_blocking` in async code.
    pub fn load(config: EngineConfig) -> Result<Self, EngineError> {
        Self::load_with_counters(config, Arc::default())
    }

    /// Like [`Engine::load`], counting into `counters` (kept across reloads).
    pub(crate) fn load_with_counters(
        config: EngineConfig,
        counters: Arc<Counters>,
    ) -> Result<Self, EngineError> {
        let backend = crate::backend::get()?;
        let path = &config.model_path;
        if !path.is_file() {
            return Err(EngineError::Load(format!("{}: no such file", path.display())));
        }
        let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
            .map_err(|err| EngineError::Load(format!("{}: {err}", path.display())))?;
        let resolved = config.resolve(model.n_ctx_train()).map_err(EngineError::Load)?;
        let template = chat_template(&model, config.chat_template.clone())?;
        let mut info = ModelInfo::read(&model, path, &resolved);
        if config.chat_template.is_some() {
            info.chat_template.clone_from(&config.chat_template);
        }
        tracing::info!(
            model = %info.name, n_ctx = resolved.n_ctx,
            n_parallel = resolved.n_parallel, n_threads = resolved.n_threads,
            "loaded model"
        );
        let shared = Arc::new(Shared {
            model,
            resolved,
            counters,
            load: LoadGauge::default(),
            closed: AtomicBool::new(false),
            template,
            info,
            max_queue: config.max_queue,
            embeddings: config.embeddings,
            grammars: Grammars::default(),
        });
        let commands = worker::spawn(Arc::clone(&shared))?;
        Ok(Self { commands, shared })
    }

    /// Queues a generation and returns its event stream at once.
    ///
    /// Fails without queueing when the request is invalid, its output format cannot be
    /// enforced ([`EngineError::InvalidSchema`]), the prompt does not fit the context
    /// window ([`EngineError::ContextOverflow`]) or the queue is full. A format is
    /// compiled here, at a CPU cost that grows with the schema (and, the first time per
    /// model, a walk over the vocabulary): [`ManagedEngine`](crate::ManagedEngine)
    /// calls this off the async threads when a request has one.
    pub fn generate(&self, request: GenerateRequest) -> Result<Generation, EngineError> {
        request.sampling.validate()?;
        let constraint = match &request.sampling.format {
            Some(format) => Some(self.shared.grammars.compile(&self.shared.model, format)?),
            None => None,
        };
        let tokens = self.tokenize_prompt(&request.prompt, &request.tools)?;
        let context = usize::try_from(self.shared.resolved.n_ctx).unwrap_or(usize::MAX);
        // The prompt must leave room for at least one generated token.
        if tokens.len() >= context {
            return Err(EngineError::ContextOverflow { prompt_tokens: tokens.len(), context });
        }
        if !self.shared.load.try_enqueue(self.shared.max_queue) {
            return Err(EngineError::QueueFull(self.shared.max_queue));
        }
        let prompt_tokens = tokens.len();
        let (events, receiver) = tokio_mpsc::unbounded_channel();
        let pending = Pending { tokens, sampling: request.sampling, constraint, events };
        if self.commands.send(Command::Generate(pending)).is_err() {
            self.shared.load.update(|load| load.queued = load.queued.saturating_sub(1));
            return Err(EngineError::Closed);
        }
        Ok(Generation::new(receiver, prompt_tokens))
    }

    /// Embeds each input as one L2-normalised, mean-pooled vector.
    pub async fn embed(&self, inputs: Vec<String>) -> Result<Vec<Vec<f32>>, EngineError> {
        self.submit_embed(&EmbedInput::Texts(inputs), false)?.await.map_err(|_| EngineError::Closed)?
    }

    /// Embeds texts or token ids; an input longer than the embedding window is cut to
    /// it when `truncate` (the start is kept), else refused.
    pub async fn embed_with(&self, input: EmbedInput, truncate: bool) -> Result<Vec<Vec<f32>>, EngineError> {
        self.submit_embed(&input, truncate)?.await.map_err(|_| EngineError::Closed)?
    }

    /// Validates and queues an embedding request; the answer arrives on the receiver.
    pub(crate) fn submit_embed(&self, input: &EmbedInput, truncate: bool) -> Result<EmbedReply, EngineError> {
        let tokenized = self.tokenize_embed(input, truncate)?;
        self.queue_embed(tokenized)
    }

    /// Tokenizes embedding inputs (token ids are checked against the vocabulary),
    /// checking each fits the embedding window — or cutting it to the window when
    /// `truncate` — and all together stay within [`MAX_EMBED_INPUTS`] and
    /// [`MAX_EMBED_REQUEST_TOKENS`]. Costs CPU in proportion to the input: call it off
    /// the async runtime's threads.
    pub(crate) fn tokenize_embed(
        &self,
        input: &EmbedInput,
        truncate: bool,
    ) -> Result<Vec<Vec<LlamaToken>>, EngineError> {
        if !self.shared.embeddings {
            return Err(EngineError::EmbeddingsDisabled);
        }
        if input.len() > MAX_EMBED_INPUTS {
            return Err(EngineError::InvalidRequest(format!(
                "at most {MAX_EMBED_INPUTS} embedding inputs per request, got {}",
                input.len()
            )));
        }
        let window = usize::try_from(embed_window(&self.shared.resolved)).unwrap_or(usize::MAX);
        let n_vocab = u32::try_from(self.shared.model.n_vocab()).unwrap_or(0);
        let mut tokenized = Vec::with_capacity(input.len());
        let mut total = 0usize;
        for i in 0..input.len() {
            let mut tokens = match input {
                EmbedInput::Texts(texts) => self.tokenize(&texts[i], true),
                EmbedInput::Tokens(ids) => {
                    if let Some(bad) = ids[i].iter().find(|&&t| t >= n_vocab) {
                        return Err(EngineError::InvalidRequest(format!(
                            "token id {bad} is not in the model's vocabulary of {n_vocab} tokens"
                        )));
                    }
                    // In range of the vocabulary, so of i32 too.
                    ids[i].iter().map(|&t| LlamaToken::new(i32::try_from(t).unwrap_or(0))).collect()
                }
            };
            if tokens.is_empty() {
                return Err(EngineError::InvalidRequest("empty embedding input".into()));
            }
            if tokens.len() > window {
                if !truncate {
                    return Err(EngineError::ContextOverflow {
                        prompt_tokens: tokens.len(),
                        context: window,
                    });
                }
                // As Ollama does: the start of the input is kept.
                tokens.truncate(window);
            }
            total += tokens.len();
            if total > MAX_EMBED_REQUEST_TOKENS {
                return Err(EngineError::InvalidRequest(format!(
                    "the embedding inputs are more than {MAX_EMBED_REQUEST_TOKENS} tokens together"
                )));
            }
            tokenized.push(tokens);
        }
        Ok(tokenized)
    }

    /// Queues tokenized embedding inputs, counted in the queue bound. The engine thread
    /// stops between inputs once the receiver is dropped.
    pub(crate) fn queue_embed(&self, tokenized: Vec<Vec<LlamaToken>>) -> Result<EmbedReply, EngineError> {
        let (reply, answer) = oneshot::channel();
        if !self.shared.load.try_enqueue_embed(self.shared.max_queue) {
            return Err(EngineError::QueueFull(self.shared.max_queue));
        }
        if self.commands.send(Command::Embed { inputs: tokenized, reply }).is_err() {
            self.shared.load.update(|load| load.embeddings = load.embeddings.saturating_sub(1));
            return Err(EngineError::Closed);
        }
        Ok(answer)
    }

    /// Renders a conversation with the model's chat template, as `generate` would.
    pub fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, EngineError> {
        self.shared.template.render(messages, &[])
    }

    /// Renders a conversation offering `tools` (see [`GenerateRequest::tools`]).
    pub fn render_chat_with_tools(
        &self,
        messages: &[ChatMessage],
        tools: &[serde_json::Value],
    ) -> Result<String, EngineError> {
        self.shared.template.render(messages, tools)
    }

    /// Counts the tokens of a prompt, as `generate` would see it.
    pub fn count_tokens(&self, prompt: &Prompt) -> Result<usize, EngineError> {
        self.tokenize_prompt(prompt, &[]).map(|tokens| tokens.len())
    }

    /// Facts about the loaded model.
    pub fn info(&self) -> &ModelInfo {
        &self.shared.info
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> EngineStats {
        self.shared.counters.snapshot(self.shared.load.get())
    }

    /// `true` once the engine thread has stopped; every request then fails with
    /// [`EngineError::Closed`].
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// `true` when nothing is queued, running or being embedded.
    pub fn is_idle(&self) -> bool {
        self.shared.load.get().is_idle()
    }

    /// Resolves once nothing is queued, running or being embedded.
    pub async fn wait_idle(&self) {
        let mut load = self.shared.load.subscribe();
        // The sender lives in `self.shared`, so the channel cannot close while we wait.
        let _ = load.wait_for(|load| load.is_idle()).await;
    }

    /// Subscribes to idle/busy changes (used by the keep-alive logic).
    pub(crate) fn watch_idle(&self) -> tokio::sync::watch::Receiver<crate::stats::Load> {
        self.shared.load.subscribe()
    }

    /// The token ids the model reads for `prompt` (Ollama's `context` is built from them).
    pub fn prompt_tokens(&self, prompt: &Prompt) -> Result<Vec<u32>, EngineError> {
        Ok(self.tokenize_prompt(prompt, &[])?.into_iter().map(|t| u32::try_from(t.0).unwrap_or(0)).collect())
    }

    /// The token ids of `text` as the model would generate it: no BOS token, special
    /// tokens written out read as text.
    pub fn text_tokens(&self, text: &str) -> Vec<u32> {
        self.shared
            .model
            .vocab()
            .tokenize(text.as_bytes(), false, false)
            .into_iter()
            .map(|t| u32::try_from(t.0).unwrap_or(0))
            .collect()
    }

    fn tokenize_prompt(
        &self,
        prompt: &Prompt,
        tools: &[serde_json::Value],
    ) -> Result<Vec<LlamaToken>, EngineError> {
        let tokens = self.tokenize_part(prompt, tools, true)?;
        if tokens.is_empty() {
            return Err(EngineError::InvalidRequest("empty prompt".into()));
        }
        Ok(tokens)
    }

    fn tokenize_part(
        &self,
        prompt: &Prompt,
        tools: &[serde_json::Value],
        first: bool,
    ) -> Result<Vec<LlamaToken>, EngineError> {
        Ok(match prompt {
            Prompt::Chat(messages) => {
                let text = self.shared.template.render(messages, tools)?;
                self.tokenize(&text, first && !self.shared.template.starts_with_bos(&text))
            }
            Prompt::Text(text) => self.tokenize(text, first),
            Prompt::Continue { context, then } => {
                let n_vocab = u32::try_from(self.shared.model.n_vocab()).unwrap_or(0);
                if let Some(bad) = context.iter().find(|&&t| t >= n_vocab) {
                    return Err(EngineError::InvalidRequest(format!(
                        "context: token id {bad} is not in the model's vocabulary of {n_vocab} tokens"
                    )));
                }
                // In range of the vocabulary, so of i32 too.
                let mut tokens: Vec<LlamaToken> =
                    context.iter().map(|&t| LlamaToken::new(i32::try_from(t).unwrap_or(0))).collect();
                tokens.extend(self.tokenize_part(then, tools, first && context.is_empty())?);
                tokens
            }
        })
    }

    /// Special tokens written in the text (e.g. `<|im_start|>`) are parsed as such;
    /// `add_bos` lets the model add its BOS token if it wants one.
    fn tokenize(&self, text: &str, add_bos: bool) -> Vec<LlamaToken> {
        self.shared.model.vocab().tokenize(text.as_bytes(), add_bos, true)
    }
}

/// What to embed: texts, or token ids of the model's vocabulary (OpenAI's `[[int]]`
/// form, what LangChain's `OpenAIEmbeddings` sends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmbedInput {
    /// Texts, tokenized by the model.
    Texts(Vec<String>),
    /// Token ids, used as they are.
    Tokens(Vec<Vec<u32>>),
}

impl EmbedInput {
    /// Number of inputs.
    pub fn len(&self) -> usize {
        match self {
            EmbedInput::Texts(t) => t.len(),
            EmbedInput::Tokens(t) => t.len(),
        }
    }

    /// True when there is no input.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The configured override, else the model's chat template, else ChatML.
fn chat_template(model: &LlamaModel, configured: Option<String>) -> Result<ChatTemplate, EngineError> {
    let source = configured
        .or_else(|| model.chat_template(None).ok().and_then(|template| template.to_string().ok()))
        .unwrap_or_else(|| CHATML.to_owned());
    let vocab = model.vocab();
    let piece = |token| String::from_utf8_lossy(&vocab.token_to_piece(token, true, None)).into_owned();
    ChatTemplate::new(source, piece(vocab.bos()), piece(vocab.eos()))
        .map_err(|err| EngineError::Load(err.to_string()))
}
