//! Engine configuration: what the caller chooses, and the concrete values the engine
//! settles on once the model's own limits are known.

use std::path::{Path, PathBuf};

/// File name of the default model, as placed by `scripts/fetch-model.sh`.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct-Q4_1.gguf";

/// Context windows larger than this are not allocated unless asked for explicitly
/// (the KV cache holds `n_parallel` full windows).
pub const MAX_DEFAULT_CONTEXT: u32 = 4096;

/// Default logical batch: most tokens handed to one decode call.
pub const DEFAULT_BATCH: u32 = 512;

/// Default physical batch: most tokens computed at once inside a decode call.
pub const DEFAULT_UBATCH: u32 = 512;

/// Default host memory for the KV state of evicted sequences, per model (1 GiB: 32
/// conversations of ~400 tokens of SmolLM2 did not fit 256 MiB, and LRU then missed every turn).
pub const DEFAULT_KV_CACHE_BYTES: u64 = 1 << 30;

/// Whether llama.cpp runs attention as one fused kernel (flash attention).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlashAttention {
    /// llama.cpp decides per device (on for the CPU).
    #[default]
    Auto,
    /// Always.
    On,
    /// Never (a quantized V cache then cannot be used).
    Off,
}

/// Element type of the KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvCacheType {
    /// 16-bit floats: 2 bytes a value.
    #[default]
    F16,
    /// 8-bit blocks (34 bytes per 32 values): about half the memory; needs flash attention.
    Q8_0,
}

impl KvCacheType {
    /// Bytes of `values` cached values of this type.
    pub fn bytes(self, values: u64) -> u64 {
        match self {
            KvCacheType::F16 => values * 2,
            KvCacheType::Q8_0 => values.div_ceil(32) * 34,
        }
    }
}

/// How to load and run one model.
///
/// Only `model_path` is required; every `None` is derived from the model or the machine.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Path of the GGUF file.
    pub model_path: PathBuf,
    /// Context window of one sequence (prompt plus completion), in tokens.
    /// Default: the model's training context, capped at [`MAX_DEFAULT_CONTEXT`].
    /// Each of the `n_parallel` slots gets KV cells for a full window.
    pub n_ctx: Option<u32>,
    /// CPU threads used for decoding. Default: all available cores.
    pub n_threads: Option<usize>,
    /// Sequences decoded together in one batch; further requests queue.
    pub n_parallel: usize,
    /// Most tokens submitted to one decode call (prompt chunks are cut to fit).
    pub n_batch: u32,
    /// Most tokens llama.cpp computes at once inside a decode call (the physical batch;
    /// at most `n_batch`). Default: [`DEFAULT_UBATCH`].
    pub n_ubatch: u32,
    /// CPU threads used for prompt chunks (several tokens at once). Default: `n_threads`.
    pub n_threads_batch: Option<usize>,
    /// Whether attention runs as one fused kernel (flash attention).
    pub flash_attention: FlashAttention,
    /// Element type of the KV cache cells.
    pub kv_cache_type: KvCacheType,
    /// Bytes of host memory for the KV state of sequences pushed out of their slot, so
    /// that a conversation's next turn restores its history instead of reading it again
    /// (least recently used dropped first; 0 turns it off).
    pub kv_cache_bytes: u64,
    /// Requests allowed to wait for a free sequence before `QueueFull` is returned.
    pub max_queue: usize,
    /// Whether [`crate::Engine::embed`] is allowed. Its context is created on first use.
    pub embeddings: bool,
    /// A Jinja chat template used instead of the model's own (`tokenizer.chat_template`),
    /// e.g. one with a `tools` section for a model whose template has none.
    pub chat_template: Option<String>,
}

impl EngineConfig {
    /// A configuration with defaults for everything but the model path.
    pub fn new(model_path: impl Into<PathBuf>) -> Self {
        Self {
            model_path: model_path.into(),
            n_ctx: None,
            n_threads: None,
            n_parallel: 4,
            n_batch: DEFAULT_BATCH,
            n_ubatch: DEFAULT_UBATCH,
            n_threads_batch: None,
            flash_attention: FlashAttention::Auto,
            kv_cache_type: KvCacheType::F16,
            kv_cache_bytes: DEFAULT_KV_CACHE_BYTES,
            max_queue: 64,
            embeddings: true,
            chat_template: None,
        }
    }

    /// Settles every optional value against the model's training context.
    pub(crate) fn resolve(&self, n_ctx_train: u32) -> Result<Resolved, String> {
        if self.n_parallel == 0 || self.n_parallel > 256 {
            return Err(format!("n_parallel must be 1..=256, got {}", self.n_parallel));
        }
        if self.n_batch < 32 || (self.n_batch as usize) < self.n_parallel {
            return Err(format!("n_batch must be at least 32 and at least n_parallel, got {}", self.n_batch));
        }
        if self.n_ubatch == 0 || self.n_ubatch > self.n_batch {
            return Err(format!("n_ubatch must be 1..=n_batch ({}), got {}", self.n_batch, self.n_ubatch));
        }
        if self.kv_cache_type == KvCacheType::Q8_0 && self.flash_attention == FlashAttention::Off {
            return Err("a q8_0 KV cache needs flash attention (llama.cpp quantizes V only with it)".into());
        }
        let default_ctx =
            if n_ctx_train == 0 { MAX_DEFAULT_CONTEXT } else { n_ctx_train.min(MAX_DEFAULT_CONTEXT) };
        let n_ctx = self.n_ctx.unwrap_or(default_ctx).max(16);
        let n_threads = self
            .n_threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
            .max(1);
        let n_threads_batch = self.n_threads_batch.unwrap_or(n_threads).max(1);
        Ok(Resolved {
            n_ctx,
            n_threads: i32::try_from(n_threads).unwrap_or(i32::MAX),
            n_threads_batch: i32::try_from(n_threads_batch).unwrap_or(i32::MAX),
            n_parallel: self.n_parallel,
            n_batch: self.n_batch,
            n_ubatch: self.n_ubatch,
            flash_attention: self.flash_attention,
            kv_cache_type: self.kv_cache_type,
            kv_cache_bytes: self.kv_cache_bytes,
        })
    }
}

/// Concrete values the engine thread runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub n_ctx: u32,
    pub n_threads: i32,
    pub n_threads_batch: i32,
    pub n_parallel: usize,
    pub n_batch: u32,
    pub n_ubatch: u32,
    pub flash_attention: FlashAttention,
    pub kv_cache_type: KvCacheType,
    pub kv_cache_bytes: u64,
}

impl Resolved {
    /// KV cells allocated: one full window per slot.
    pub(crate) fn kv_cells(&self) -> u32 {
        let slots = u32::try_from(self.n_parallel).unwrap_or(u32::MAX);
        self.n_ctx.saturating_mul(slots)
    }
}

/// The directory `scripts/fetch-model.sh` uses when given none:
/// `$SLUICE_MODEL_DIR`, else `$XDG_DATA_HOME/sluice/models`, else
/// `$HOME/.local/share/sluice/models`. `None` when no variable is set at all.
pub fn default_model_dir() -> Option<PathBuf> {
    let non_empty = |key: &str| std::env::var_os(key).filter(|v| !v.is_empty());
    if let Some(dir) = non_empty("SLUICE_MODEL_DIR") {
        return Some(PathBuf::from(dir));
    }
    let data = non_empty("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| non_empty("HOME").map(|home| Path::new(&home).join(".local/share")))?;
    Some(data.join("sluice/models"))
}

/// Where the default model lives once fetched (it may not exist yet).
pub fn default_model_path() -> Option<PathBuf> {
    default_model_dir().map(|dir| dir.join(DEFAULT_MODEL_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_model_and_cap_the_context() {
        let cfg = EngineConfig::new("m.gguf");
        let r = cfg.resolve(32_768).unwrap();
        assert_eq!(r.n_ctx, MAX_DEFAULT_CONTEXT);
        assert!(r.n_threads >= 1);
        let small = cfg.resolve(2048).unwrap();
        assert_eq!(small.n_ctx, 2048);
        let explicit = EngineConfig { n_ctx: Some(8192), ..EngineConfig::new("m.gguf") };
        assert_eq!(explicit.resolve(8192).unwrap().n_ctx, 8192);
    }

    #[test]
    fn batch_and_kv_knobs_are_validated() {
        let ok =
            EngineConfig { n_batch: 1024, n_ubatch: 256, n_threads_batch: Some(3), ..EngineConfig::new("m") };
        let r = ok.resolve(8192).unwrap();
        assert_eq!((r.n_batch, r.n_ubatch, r.n_threads_batch), (1024, 256, 3));
        let defaults = EngineConfig { n_threads: Some(2), ..EngineConfig::new("m") }.resolve(8192).unwrap();
        assert_eq!(defaults.n_threads_batch, 2, "prompt threads follow threads");
        let big_ubatch = EngineConfig { n_ubatch: 1024, ..EngineConfig::new("m") };
        assert!(big_ubatch.resolve(8192).unwrap_err().contains("n_ubatch"));
        let q8_without_fa = EngineConfig {
            kv_cache_type: KvCacheType::Q8_0,
            flash_attention: FlashAttention::Off,
            ..EngineConfig::new("m")
        };
        assert!(q8_without_fa.resolve(8192).unwrap_err().contains("flash attention"));
        let q8 = EngineConfig { kv_cache_type: KvCacheType::Q8_0, ..EngineConfig::new("m") };
        assert!(q8.resolve(8192).is_ok());
    }

    #[test]
    fn kv_cache_types_know_their_size() {
        assert_eq!(KvCacheType::F16.bytes(64), 128);
        assert_eq!(KvCacheType::Q8_0.bytes(64), 68);
        assert_eq!(KvCacheType::Q8_0.bytes(65), 102);
    }

    #[test]
    fn rejects_zero_parallel() {
        let cfg = EngineConfig { n_parallel: 0, ..EngineConfig::new("m.gguf") };
        assert!(cfg.resolve(8192).is_err());
    }
}
