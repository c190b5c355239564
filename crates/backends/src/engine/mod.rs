//! The embedded llama.cpp engine as a backend: one [`EngineBackend`] per model, over a
//! [`ManagedEngine`] that loads the model at start or on first use and unloads it after
//! its keep-alive. Tokens come straight from the engine thread's channel; dropping the
//! stream frees the sequence at the engine's next step.

pub mod config;
pub mod digest;
pub mod gguf;
mod tools;

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use futures_util::{StreamExt, future::BoxFuture};
use sluice_engine::{
    ChatMessage, EngineError, GenEvent, GenerateRequest, ManagedEngine, OutputFormat, Prompt,
    Sampling as EngineSampling,
};
use sluice_protocol::ollama::{ModelDetails, ShowResponse};
use tokio::time::Instant;

use self::{config::ResolvedModel, digest::DigestCache};
use super::{Backend, BackendError, EventStream, ModelInfo, RunningModel};
use sluice_core::backend::BackendMetric;
use sluice_core::{
    carry::WireDialect,
    chat::{
        ChatRequest, DoneDetails, EmbedRequest, Embeddings, Event, FinishReason, Input, KeepAlive, Sampling,
        Timings, Usage,
    },
    output::{ResponseFormat, Think, TokenLogprob, TopLogprob},
    tools::ToolChoice,
};

/// How long discovery waits for a model file's digest; a larger file is hashed on in
/// the background and its digest appears at a later discovery.
const DIGEST_WAIT: Duration = Duration::from_secs(3);

/// One GGUF model served in-process.
pub struct EngineBackend {
    name: String,
    model: String,
    engine: ManagedEngine,
    default_keep_alive: KeepAlive,
    digests: Arc<DigestCache>,
    /// `/api/show` of the model file, with the file's size and mtime it was read at.
    shown: Arc<ShowCache>,
}

/// A model file's size and modification time: when they change, it is read again.
type FileStamp = (u64, Option<SystemTime>);

/// The last `/api/show` read from a model file, by the file's stamp.
type ShowCache = std::sync::Mutex<Option<(FileStamp, Arc<ShowResponse>)>>;

impl EngineBackend {
    /// A backend for `model`; nothing is loaded yet.
    pub fn new(model: &ResolvedModel) -> EngineBackend {
        EngineBackend {
            name: format!("engine:{}", model.name),
            model: model.name.clone(),
            engine: ManagedEngine::new(model.engine.clone(), engine_keep_alive(model.keep_alive)),
            default_keep_alive: model.keep_alive,
            digests: DigestCache::new(),
            shown: Arc::default(),
        }
    }

    /// The managed engine, for stats and tests.
    pub fn engine(&self) -> &ManagedEngine {
        &self.engine
    }

    fn details(&self) -> Option<ModelDetails> {
        let info = self.engine.info()?;
        Some(ModelDetails {
            parent_model: String::new(),
            format: "gguf".into(),
            family: info.architecture.clone(),
            families: Some(vec![info.architecture.clone()]),
            parameter_size: parameter_size(info.parameters),
            quantization_level: info.quantization.clone(),
        })
    }

    /// What the model can do; its chat template is known only while it is loaded.
    fn capabilities(&self) -> Vec<String> {
        let config = self.engine.config();
        let template =
            config.chat_template.clone().or_else(|| self.engine.info().and_then(|info| info.chat_template));
        capabilities(config.embeddings, template.as_deref())
    }
}

/// The model file's `/api/show`, read once per version of the file (off the async
/// threads: the header holds the whole vocabulary); `None` if it cannot be read.
async fn show_of(
    cache: &ShowCache,
    stamp: FileStamp,
    path: std::path::PathBuf,
    n_ctx: Option<u32>,
) -> Option<Arc<ShowResponse>> {
    {
        let guard = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, show)) = guard.as_ref().filter(|(s, _)| *s == stamp) {
            return Some(Arc::clone(show));
        }
    }
    let read = tokio::task::spawn_blocking(move || gguf::read(&path).map(|m| (m, path))).await.ok()?;
    let (meta, path) = match read {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the model file's metadata");
            return None;
        }
    };
    let show = Arc::new(show_response(&meta, &path, n_ctx));
    *cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((stamp, Arc::clone(&show)));
    Some(show)
}

/// Ollama's `/api/show` for a GGUF file: its metadata as `model_info`, its chat
/// template, the context Sluice runs it with as `parameters`, and a modelfile saying so.
fn show_response(meta: &gguf::Metadata, path: &std::path::Path, n_ctx: Option<u32>) -> ShowResponse {
    use std::fmt::Write as _;
    let arch = meta.str("general.architecture").unwrap_or_default().to_owned();
    let mut model_info = meta.keys.clone();
    // Ollama leaves the template out of model_info: it has its own field.
    let template = model_info.remove("tokenizer.chat_template").and_then(|t| t.as_str().map(str::to_owned));
    model_info.insert("general.parameter_count".into(), meta.parameters.into());
    let trained = meta.keys.get(&format!("{arch}.context_length")).and_then(serde_json::Value::as_u64);
    let n_ctx = n_ctx.map(u64::from).or(trained);
    let parameters = n_ctx.map(|n| format!("num_ctx {n}")).unwrap_or_default();
    let license = meta.str("general.license").map(str::to_owned);
    let mut modelfile = format!(
        "# Modelfile generated by Sluice (models are configured in sluice.toml)\nFROM {}\n",
        path.display()
    );
    if let Some(t) = &template {
        let _ = writeln!(modelfile, "TEMPLATE \"\"\"{t}\"\"\"");
    }
    if !parameters.is_empty() {
        let _ = writeln!(modelfile, "PARAMETER {parameters}");
    }
    if let Some(l) = &license {
        let _ = writeln!(modelfile, "LICENSE \"\"\"{l}\"\"\"");
    }
    let quantization = meta
        .keys
        .get("general.file_type")
        .and_then(serde_json::Value::as_u64)
        .map(|t| sluice_engine::file_type_name(u32::try_from(t).unwrap_or(u32::MAX)))
        .unwrap_or_default();
    ShowResponse {
        modelfile,
        parameters,
        template: template.unwrap_or_default(),
        details: ModelDetails {
            parent_model: String::new(),
            format: "gguf".into(),
            family: arch.clone(),
            families: Some(vec![arch]),
            parameter_size: parameter_size(meta.parameters),
            quantization_level: quantization,
        },
        model_info,
        license,
        ..ShowResponse::default()
    }
}

/// Ollama's capability names for an engine model: it chats; it embeds when embeddings
/// are enabled; it takes tools when its chat template mentions them; it writes JSON
/// to a schema (the constraint runs in its sampler, whatever the model); it reports
/// log probabilities (computed from its logits, whatever the model).
fn capabilities(embeddings: bool, chat_template: Option<&str>) -> Vec<String> {
    let mut caps = vec!["completion".to_owned()];
    if embeddings {
        caps.push("embedding".to_owned());
    }
    if chat_template.is_some_and(|t| t.contains("tools")) {
        caps.push("tools".to_owned());
    }
    caps.push(sluice_core::capabilities::JSON_SCHEMA.to_owned());
    caps.push(sluice_core::capabilities::LOGPROBS.to_owned());
    caps
}

fn engine_keep_alive(k: KeepAlive) -> sluice_engine::KeepAlive {
    match k {
        KeepAlive::Forever => sluice_engine::KeepAlive::Forever,
        KeepAlive::For(d) => sluice_engine::KeepAlive::For(d),
    }
}

/// `135M`, `1.5B`: Ollama's way of writing a parameter count.
fn parameter_size(n: u64) -> String {
    #[allow(clippy::cast_precision_loss)] // display only
    let n = n as f64;
    if n >= 1e9 { format!("{:.1}B", n / 1e9) } else { format!("{:.0}M", n / 1e6) }
}

impl Backend for EngineBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "engine"
    }

    fn chat(
        &self,
        _ctx: &sluice_core::context::RequestContext,
        req: ChatRequest,
    ) -> BoxFuture<'static, Result<EventStream, BackendError>> {
        // Ollama's `context` is the engine's own token ids: it takes them (and gives
        // them back) on `/api/generate`.
        let mut req = req;
        let context = match take_context(&mut req) {
            Ok(context) => context,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        // The engine speaks neither dialect: carried fields are dropped, or refused
        // when they would change the answer.
        if let Err(e) = sluice_core::backend::carry_plan(&req, None, &self.name) {
            return Box::pin(async move { Err(e) });
        }
        let engine = self.engine.clone();
        let takes_tools = self.capabilities().iter().any(|c| c == sluice_core::capabilities::TOOLS);
        let refused = unsupported(&req, &self.model, takes_tools);
        Box::pin(async move {
            if let Some(e) = refused {
                return Err(e);
            }
            let calls_possible = !req.tools.is_empty() && req.tool_choice != Some(ToolChoice::None);
            let mut request = generate_request(req)?;
            let give_context = context.is_some();
            if let Some(context) = context.filter(|c| !c.is_empty()) {
                request.prompt = Prompt::Continue { context, then: Box::new(request.prompt) };
            }
            let prompt = give_context.then(|| request.prompt.clone());
            let (generation, load) = engine.generate_timed(request).await.map_err(backend_error)?;
            let mut answer = String::new();
            let events = generation.map(move |ev| match ev {
                GenEvent::Token(text) => {
                    if give_context {
                        answer.push_str(&text);
                    }
                    Ok(Event::Delta(text))
                }
                GenEvent::Logprobs(l) => Ok(Event::Logprobs(l.into_iter().map(token_logprob).collect())),
                GenEvent::Done(s) => Ok(Event::Done {
                    finish_reason: match s.finish_reason {
                        sluice_engine::FinishReason::Stop => FinishReason::Stop,
                        sluice_engine::FinishReason::Length => FinishReason::Length,
                    },
                    usage: Some(Usage {
                        prompt_tokens: u32::try_from(s.prompt_tokens).unwrap_or(u32::MAX),
                        completion_tokens: u32::try_from(s.completion_tokens).unwrap_or(u32::MAX),
                    }),
                    timings: Some(Timings { load, prompt_eval: s.prompt_eval, eval: s.eval }),
                    details: prompt.as_ref().and_then(|p| context_out(&engine, p, &answer)),
                }),
                GenEvent::Error(e) => Err(backend_error(e)),
            });
            if !calls_possible {
                return Ok(Box::pin(events) as EventStream);
            }
            let mut parser = tools::CallParser::new();
            let events = events.flat_map(move |ev| {
                let mut out = std::collections::VecDeque::new();
                let ev = ev.map(|ev| parser.push(ev, &mut out));
                let out: Vec<Result<Event, BackendError>> = match ev {
                    Ok(()) => out.into_iter().map(Ok).collect(),
                    Err(e) => vec![Err(e)],
                };
                futures_util::stream::iter(out)
            });
            Ok(Box::pin(events) as EventStream)
        })
    }

    fn embed(&self, req: EmbedRequest) -> BoxFuture<'static, Result<Embeddings, BackendError>> {
        let engine = self.engine.clone();
        // Token ids are the model's own; texts are tokenized by it. OpenAI refuses
        // inputs over the context (no `truncate`); Ollama cuts them by default.
        let input = if req.tokens.is_empty() {
            sluice_engine::EmbedInput::Texts(req.input)
        } else {
            sluice_engine::EmbedInput::Tokens(req.tokens)
        };
        let truncate = req.truncate.unwrap_or(false);
        Box::pin(async move {
            let (vectors, prompt_tokens, load) =
                engine.embed_timed(input, truncate).await.map_err(backend_error)?;
            // The engine's vectors have the model's width; it cannot shorten them.
            if let Some(want) =
                req.dimensions.filter(|d| vectors.first().is_some_and(|v| v.len() != *d as usize))
            {
                return Err(BackendError::UnsupportedField {
                    param: "dimensions".into(),
                    message: format!(
                        "'dimensions' {want} is not supported by this model: its vectors have {} dimensions",
                        vectors.first().map_or(0, Vec::len)
                    ),
                });
            }
            Ok(Embeddings { vectors, prompt_tokens: u32::try_from(prompt_tokens).unwrap_or(u32::MAX), load })
        })
    }

    fn models(&self) -> BoxFuture<'static, Result<Vec<ModelInfo>, BackendError>> {
        let path = self.engine.config().model_path.clone();
        let digests = Arc::clone(&self.digests);
        let info = ModelInfo {
            name: self.model.clone(),
            details: self.details(),
            capabilities: Some(self.capabilities()),
            ..ModelInfo::default()
        };
        let (shown, n_ctx) = (Arc::clone(&self.shown), self.engine.config().n_ctx);
        let embeddings = self.engine.config().embeddings;
        let template_override = self.engine.config().chat_template.clone();
        Box::pin(async move {
            let meta = match tokio::fs::metadata(&path).await {
                Ok(m) if m.is_file() => m,
                _ => return Err(BackendError::Connect(format!("model file {} is missing", path.display()))),
            };
            let modified_at = meta.modified().ok().map(|t| humantime::format_rfc3339(t).to_string());
            let digest = digests.digest(&path, DIGEST_WAIT).await;
            let stamp = (meta.len(), meta.modified().ok());
            let show = show_of(&shown, stamp, path, n_ctx).await;
            let details = info.details.clone().or_else(|| show.as_ref().map(|s| s.details.clone()));
            let mut show = show.map(|s| Box::new((*s).clone()));
            let mut capabilities = info.capabilities.clone();
            if let Some(s) = show.as_mut() {
                // The template in use says whether it takes tools, loaded or not: the
                // configured override, else the file's own.
                if let Some(t) = &template_override {
                    s.template.clone_from(t);
                }
                capabilities = Some(self::capabilities(embeddings, Some(&s.template)));
                s.capabilities.clone_from(&capabilities);
                s.modified_at.clone_from(&modified_at);
            }
            Ok(vec![ModelInfo {
                size: Some(meta.len()),
                digest,
                modified_at,
                details,
                show,
                capabilities,
                ..info
            }])
        })
    }

    fn capabilities(&self, _model: &str) -> Option<Vec<String>> {
        Some(self.capabilities())
    }

    fn running(&self) -> Vec<RunningModel> {
        let Some(info) = self.engine.info() else { return Vec::new() };
        let unloads_at = self
            .engine
            .unloads_at()
            .and_then(|at| SystemTime::now().checked_add(at.saturating_duration_since(Instant::now())));
        vec![RunningModel {
            name: self.model.clone(),
            // Weights and KV cells, plus the host cache of evicted conversations.
            size: info.memory_bytes + self.engine.stats().kv_host_bytes,
            // The engine runs on the CPU: none of it is in accelerator memory.
            size_vram: Some(0),
            unloads_at,
            details: self.details(),
            context_length: Some(info.context_length),
        }]
    }

    fn queued(&self) -> Option<u64> {
        Some(u64::try_from(self.engine.stats().queued_requests).unwrap_or(u64::MAX))
    }

    fn metrics(&self) -> Vec<BackendMetric> {
        let stats = self.engine.stats();
        let metric = |name, help, counter, value| BackendMetric {
            name,
            help,
            counter,
            model: self.model.clone(),
            value,
        };
        vec![
            metric(
                "sluice_engine_prompt_tokens_evaluated",
                "Prompt tokens run through the model.",
                true,
                stats.prompt_tokens_evaluated,
            ),
            metric(
                "sluice_engine_prompt_tokens_reused",
                "Prompt tokens whose KV cells a slot already held.",
                true,
                stats.prompt_tokens_reused,
            ),
            metric(
                "sluice_engine_kv_host_saves",
                "Sequences copied to the host KV cache when their slot was taken.",
                true,
                stats.kv_host_saves,
            ),
            metric(
                "sluice_engine_kv_host_hits",
                "Requests whose prompt matched a sequence in the host KV cache.",
                true,
                stats.kv_host_hits,
            ),
            metric(
                "sluice_engine_kv_host_restores",
                "Sequences restored from the host KV cache into a slot.",
                true,
                stats.kv_host_restores,
            ),
            metric(
                "sluice_engine_kv_host_restored_tokens",
                "Prompt tokens restored from the host KV cache instead of evaluated.",
                true,
                stats.kv_host_restored_tokens,
            ),
            metric(
                "sluice_engine_kv_host_evictions",
                "Sequences dropped from the host KV cache to stay within kv_cache_bytes.",
                true,
                stats.kv_host_evictions,
            ),
            metric(
                "sluice_engine_kv_host_bytes",
                "Bytes held by the host KV cache.",
                false,
                stats.kv_host_bytes,
            ),
            metric(
                "sluice_engine_kv_host_entries",
                "Sequences held by the host KV cache.",
                false,
                stats.kv_host_entries,
            ),
        ]
    }

    fn set_keep_alive(&self, model: &str, keep_alive: Option<KeepAlive>) {
        if model == self.model {
            self.engine.set_keep_alive(engine_keep_alive(keep_alive.unwrap_or(self.default_keep_alive)));
        }
    }

    fn load(&self, _model: &str) -> BoxFuture<'static, Result<(), BackendError>> {
        let engine = self.engine.clone();
        Box::pin(async move { engine.preload().await.map_err(backend_error) })
    }
}

/// Takes Ollama's `context` out of what `req` carries: `Some(ids)` for an Ollama
/// `/api/generate` through the chat template (the ids to read first, and a sign to give
/// the new context back), `None` otherwise. A raw prompt ignores it, as Ollama does.
fn take_context(req: &mut ChatRequest) -> Result<Option<Vec<u32>>, BackendError> {
    let templated = matches!(req.input, Input::Text { raw: false, .. });
    if req.carried.dialect != Some(WireDialect::Ollama) || !matches!(req.input, Input::Text { .. }) {
        return Ok(None);
    }
    let given = req.carried.fields.remove("context");
    if !templated {
        return Ok(None);
    }
    let ids = match given {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()))
            .collect::<Option<Vec<u32>>>()
            .ok_or_else(|| BackendError::UnsupportedField {
                param: "context".into(),
                message: "'context' must be a list of token ids (non-negative integers)".into(),
            })?,
        Some(_) => {
            return Err(BackendError::UnsupportedField {
                param: "context".into(),
                message: "'context' must be a list of token ids".into(),
            });
        }
    };
    Ok(Some(ids))
}

/// Ollama's `context` to give back after a templated `/api/generate`: the tokens of
/// the prompt (the earlier context included) and of the answer, as Ollama builds it.
fn context_out(engine: &ManagedEngine, prompt: &Prompt, answer: &str) -> Option<Box<DoneDetails>> {
    let mut ids = engine.prompt_tokens(prompt)?.ok()?;
    ids.extend(engine.text_tokens(answer)?);
    let mut fields = sluice_core::carry::Fields::new();
    fields.insert("context".into(), serde_json::Value::from(ids));
    Some(Box::new(DoneDetails { dialect: Some(WireDialect::Ollama), fields, ..DoneDetails::default() }))
}

/// What the engine cannot do for `req`, named with the field and the model: tools
/// need a chat template that renders them (`takes_tools`).
fn unsupported(req: &ChatRequest, model: &str, takes_tools: bool) -> Option<BackendError> {
    let messages = match &req.input {
        Input::Chat(m) => m.as_slice(),
        Input::Text { .. } => &[],
    };
    let field = if messages.iter().any(|m| !m.images.is_empty()) {
        "images"
    } else if !req.tools.is_empty() && !takes_tools {
        "tools"
    } else if matches!(req.think, Some(Think::On | Think::Level(_))) {
        "think"
    } else {
        return None;
    };
    Some(BackendError::Unsupported(format!("model '{model}' does not support '{field}'")))
}

/// The engine's request for a canonical one. Ollama's `generate` without `raw` goes
/// through the chat template, as Ollama does; legacy completions and `raw` do not.
/// Tools go to the template unless `tool_choice` is `none`; a choice that forces a
/// call constrains the whole answer to one (and so cannot be combined with a
/// `response_format`).
fn generate_request(req: ChatRequest) -> Result<GenerateRequest, BackendError> {
    let prompt = match req.input {
        Input::Chat(messages) => Prompt::Chat(
            messages
                .into_iter()
                .map(|m| {
                    let tool_calls = tools::template_calls(&m);
                    ChatMessage {
                        tool_calls,
                        tool_call_id: m.tool_call_id,
                        name: m.name,
                        ..ChatMessage::new(m.role.as_str(), m.content)
                    }
                })
                .collect(),
        ),
        Input::Text { prompt, raw: true, .. } => Prompt::Text(prompt),
        Input::Text { prompt, system, raw: false } => {
            let mut messages: Vec<ChatMessage> = system.into_iter().map(ChatMessage::system).collect();
            messages.push(ChatMessage::user(prompt));
            Prompt::Chat(messages)
        }
    };
    let mut sampling = sampling(&req.sampling);
    sampling.logprobs = req.logprobs;
    sampling.format = req.response_format.map(|format| match format {
        ResponseFormat::JsonObject => OutputFormat::Json,
        ResponseFormat::JsonSchema { schema, .. } => OutputFormat::JsonSchema(schema),
    });
    let offered = !req.tools.is_empty() && req.tool_choice != Some(ToolChoice::None);
    let tools = if offered { tools::template_tools(&req.tools) } else { Vec::new() };
    if let Some(forced) = tools::forced_format(&req.tools, req.tool_choice.as_ref().filter(|_| offered))? {
        if sampling.format.is_some() {
            return Err(BackendError::UnsupportedField {
                param: "response_format".into(),
                message: "'response_format' cannot be combined with a 'tool_choice' that forces a call on this model"
                    .into(),
            });
        }
        sampling.format = Some(forced);
    }
    Ok(GenerateRequest { prompt, sampling, tools })
}

fn sampling(s: &Sampling) -> EngineSampling {
    let d = EngineSampling::default();
    EngineSampling {
        temperature: s.temperature.unwrap_or(d.temperature),
        top_p: s.top_p.unwrap_or(d.top_p),
        top_k: s.top_k.unwrap_or(d.top_k),
        min_p: s.min_p.unwrap_or(d.min_p),
        repeat_penalty: s.repeat_penalty.unwrap_or(d.repeat_penalty),
        // Ollama's `seed: -1` means "random".
        seed: s.seed.and_then(|v| u64::try_from(v).ok()),
        max_tokens: s.max_tokens,
        stop: s.stop.clone(),
        format: None,
        logprobs: None,
    }
}

/// A token's log probabilities in the canonical shape.
fn token_logprob(l: sluice_engine::TokenLogprob) -> TokenLogprob {
    TokenLogprob {
        token: l.token,
        logprob: l.logprob,
        bytes: Some(l.bytes),
        top: l
            .top
            .into_iter()
            .map(|t| TopLogprob { token: t.token, logprob: t.logprob, bytes: Some(t.bytes) })
            .collect(),
    }
}

/// The backend error for an engine error; the cause of a server-side failure is logged.
fn backend_error(e: EngineError) -> BackendError {
    match e {
        EngineError::ContextOverflow { prompt_tokens, context } => BackendError::ContextOverflow {
            prompt_tokens: u32::try_from(prompt_tokens).unwrap_or(u32::MAX),
            context: u32::try_from(context).unwrap_or(u32::MAX),
        },
        EngineError::InvalidSchema(cause) => BackendError::UnsupportedField {
            param: "response_format".into(),
            message: format!(
                "the JSON schema in 'response_format' ('format' in Ollama's API) cannot be enforced: {cause}"
            ),
        },
        EngineError::InvalidRequest(message) | EngineError::Template(message) => {
            BackendError::status(400, message)
        }
        EngineError::QueueFull(_) => BackendError::Overloaded,
        EngineError::EmbeddingsDisabled => {
            BackendError::Unsupported("embeddings are not enabled for this model".into())
        }
        EngineError::Load(cause) => {
            tracing::error!(%cause, "model failed to load");
            BackendError::status(503, "the model could not be loaded")
        }
        EngineError::Decode(cause) => BackendError::Interrupted(cause),
        EngineError::Closed => BackendError::Interrupted("the engine stopped".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::chat::{Message, Role};

    #[test]
    fn generate_templates_unless_raw() {
        let text = |raw| ChatRequest {
            input: Input::Text { prompt: "hi".into(), system: Some("be brief".into()), raw },
            ..ChatRequest::default()
        };
        match generate_request(text(false)).unwrap().prompt {
            Prompt::Chat(m) => assert_eq!(m, vec![ChatMessage::system("be brief"), ChatMessage::user("hi")]),
            Prompt::Text(_) | Prompt::Continue { .. } => {
                panic!("non-raw generate must use the chat template")
            }
        }
        assert!(matches!(generate_request(text(true)).unwrap().prompt, Prompt::Text(p) if p == "hi"));
        let chat = ChatRequest {
            input: Input::Chat(vec![Message::new(Role::Tool, "42")]),
            ..ChatRequest::default()
        };
        assert!(matches!(generate_request(chat).unwrap().prompt, Prompt::Chat(m) if m[0].role == "tool"));
    }

    #[test]
    fn response_formats_become_engine_output_formats() {
        let with = |format| ChatRequest { response_format: Some(format), ..ChatRequest::default() };
        assert_eq!(
            generate_request(with(ResponseFormat::JsonObject)).unwrap().sampling.format,
            Some(OutputFormat::Json)
        );
        let schema = serde_json::json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        let format =
            ResponseFormat::JsonSchema { name: Some("x".into()), description: None, schema, strict: None };
        assert!(matches!(
            generate_request(with(format)).unwrap().sampling.format,
            Some(OutputFormat::JsonSchema(s)) if s["properties"]["a"]["type"] == "integer"
        ));
        assert_eq!(generate_request(ChatRequest::default()).unwrap().sampling.format, None);
        let refused = backend_error(EngineError::InvalidSchema("Unknown type: strin".into()));
        assert_eq!(refused.status_code(), http::StatusCode::BAD_REQUEST);
        assert!(
            matches!(&refused, BackendError::UnsupportedField { param, .. } if param == "response_format")
        );
        assert!(refused.to_string().contains("strin"), "{refused}");
    }

    #[test]
    fn sampling_keeps_engine_defaults_and_maps_seeds() {
        let s = sampling(&Sampling { temperature: Some(0.0), seed: Some(-1), ..Sampling::default() });
        assert_eq!(s.temperature, 0.0);
        assert_eq!(s.top_k, EngineSampling::default().top_k);
        assert_eq!(s.seed, None, "a negative seed means random");
        assert_eq!(sampling(&Sampling { seed: Some(7), ..Sampling::default() }).seed, Some(7));
    }

    #[test]
    fn capabilities_follow_the_config_and_the_template() {
        assert_eq!(capabilities(false, None), ["completion", "json_schema", "logprobs"]);
        assert_eq!(
            capabilities(true, Some("{{ messages }}")),
            ["completion", "embedding", "json_schema", "logprobs"]
        );
        let tool_template = "{% if tools %}{{ tools | tojson }}{% endif %}{{ messages }}";
        assert_eq!(
            capabilities(false, Some(tool_template)),
            ["completion", "tools", "json_schema", "logprobs"]
        );
    }

    #[test]
    fn errors_map_to_statuses() {
        let overflow = backend_error(EngineError::ContextOverflow { prompt_tokens: 5000, context: 4096 });
        assert_eq!(overflow.status_code(), http::StatusCode::BAD_REQUEST);
        let msg = overflow.to_string();
        assert!(msg.contains("5000") && msg.contains("4096"), "{msg}");
        assert_eq!(
            backend_error(EngineError::QueueFull(3)).status_code(),
            http::StatusCode::SERVICE_UNAVAILABLE
        );
        let load = backend_error(EngineError::Load("/secret/path: bad magic".into()));
        assert!(!load.to_string().contains("secret"), "load causes stay in the log");
        assert_eq!(parameter_size(134_515_008), "135M");
        assert_eq!(parameter_size(1_543_714_304), "1.5B");
    }
}
