//! Facts about a loaded model, read once from its GGUF metadata at load time.

use std::path::{Path, PathBuf};

use llama_cpp_2::model::LlamaModel;

use crate::config::Resolved;

/// What [`crate::Engine::info`] reports about the loaded model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// `general.name` from the metadata, else the file stem.
    pub name: String,
    /// The GGUF file.
    pub path: PathBuf,
    /// `general.architecture`, e.g. `llama`.
    pub architecture: String,
    /// Context window of one sequence, in tokens.
    pub context_length: u32,
    /// Context the model was trained with, in tokens.
    pub train_context_length: u32,
    /// Sequences decoded concurrently, each with its own `context_length` of KV cells.
    pub parallel: usize,
    /// Number of weights.
    pub parameters: u64,
    /// Size of the GGUF file, in bytes.
    pub file_size: u64,
    /// Weight format, e.g. `Q4_1` (from `general.file_type`).
    pub quantization: String,
    /// Width of an embedding vector.
    pub embedding_length: usize,
    /// The chat template (`tokenizer.chat_template`), if the model carries one.
    pub chat_template: Option<String>,
    /// Memory held while loaded: weights plus the KV cache (estimated from the
    /// model's dimensions; compute buffers are not included).
    pub memory_bytes: u64,
}

impl ModelInfo {
    pub(crate) fn read(model: &LlamaModel, path: &Path, resolved: &Resolved) -> Self {
        let meta = |key: &str| model.meta_val_str(key).ok().filter(|v| !v.is_empty());
        let name = meta("general.name").unwrap_or_else(|| {
            path.file_stem().map_or_else(|| "model".to_owned(), |s| s.to_string_lossy().into_owned())
        });
        let quantization = meta("general.file_type")
            .and_then(|v| v.parse::<u32>().ok())
            .map_or_else(|| "unknown".to_owned(), file_type_name);
        let file_size = std::fs::metadata(path).map_or(0, |m| m.len());
        Self {
            name,
            path: path.to_path_buf(),
            architecture: meta("general.architecture").unwrap_or_default(),
            context_length: resolved.n_ctx,
            train_context_length: model.n_ctx_train(),
            parallel: resolved.n_parallel,
            parameters: model.n_params(),
            file_size,
            quantization,
            embedding_length: usize::try_from(model.n_embd()).unwrap_or(0),
            chat_template: model.chat_template(None).ok().and_then(|t| t.to_string().ok()),
            memory_bytes: model.size() + kv_cache_bytes(model, resolved),
        }
    }
}

/// Bytes of the K and V cache of every slot, in the configured cell type.
fn kv_cache_bytes(model: &LlamaModel, resolved: &Resolved) -> u64 {
    let n_head = u64::from(model.n_head().max(1));
    let head_dim = u64::try_from(model.n_embd()).unwrap_or(0) / n_head;
    let kv_width = head_dim * u64::from(model.n_head_kv());
    // K and V rows are quantized per layer and cell, so blocks round up per row.
    let rows = 2 * u64::from(model.n_layer()) * u64::from(resolved.kv_cells());
    rows * resolved.kv_cache_type.bytes(kv_width)
}

/// Names of llama.cpp's `llama_ftype` values (`general.file_type`).
pub fn file_type_name(file_type: u32) -> String {
    let name = match file_type {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        39 => "NVFP4",
        40 => "Q1_0",
        41 => "Q2_0",
        other => return format!("ftype {other}"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_types_have_names() {
        assert_eq!(file_type_name(3), "Q4_1");
        assert_eq!(file_type_name(15), "Q4_K_M");
        assert_eq!(file_type_name(999), "ftype 999");
    }
}
