//! Carry, don't rebuild: request fields Sluice does not model travel with the canonical
//! request, and reach an upstream that speaks the client's dialect unchanged.
//!
//! The dialect handlers keep every field they do not map (top-level, per message, and
//! inside Ollama's `options`) in a [`Carried`]. A backend whose upstream speaks the same
//! dialect writes them back into its request body as they came. Any other backend asks
//! [`Carried::plan`] what to do: fields with no effect on the answer (`user`,
//! `metadata`, `store`, ...) and fields nobody documents are dropped and named to the
//! client in `x-sluice-dropped`; a documented field that would change the answer and
//! has no counterpart there is refused with a 400 naming it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// JSON fields by name, as a client or upstream sent them.
pub type Fields = serde_json::Map<String, Value>;

/// The wire dialects a client or an upstream can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireDialect {
    /// OpenAI `/v1` chat and legacy completions.
    OpenAi,
    /// Ollama `/api`.
    Ollama,
    /// OpenAI's Responses API (`/v1/responses`). Clients speak it; no upstream is
    /// called in it (Sluice answers it over chat completions, Ollama or the engine), so
    /// its unmodeled fields are always dropped and named, or refused.
    Responses,
}

impl WireDialect {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            WireDialect::OpenAi => "openai",
            WireDialect::Ollama => "ollama",
            WireDialect::Responses => "responses",
        }
    }
}

/// Unmodeled request fields, as the client sent them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Carried {
    /// The dialect the client spoke; `None` for requests Sluice made itself (UI
    /// generations), which carry nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dialect: Option<WireDialect>,
    /// Top-level fields.
    #[serde(default, skip_serializing_if = "Fields::is_empty")]
    pub fields: Fields,
    /// Fields inside Ollama's `options` object.
    #[serde(default, skip_serializing_if = "Fields::is_empty")]
    pub options: Fields,
}

/// What a backend does with carried fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Write them into the upstream request unchanged (same dialect).
    pub carry: bool,
    /// Fields left out, by their path (`metadata`, `messages[2].name`, `options.num_ctx`).
    pub dropped: Vec<String>,
    /// Fields that would change the answer and have no counterpart: the request is
    /// refused naming the first.
    pub refused: Vec<String>,
}

impl Plan {
    /// The 400 for the first refused field, if any.
    pub fn refusal(&self, backend: &str) -> Option<(String, String)> {
        self.refused.first().map(|f| {
            let msg = format!(
                "'{f}' is not supported by model backend '{backend}' (it has no counterpart there \
                 and would change the answer); leave it out or pick a model served by an upstream \
                 of the client's dialect"
            );
            (f.clone(), msg)
        })
    }
}

/// How a documented field bears on the answer when it cannot be carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bearing {
    /// No effect on the answer (tracking, storage, routing hints): dropped and named.
    Advisory,
    /// Changes the answer: refused unless its value is the documented default.
    Changes,
    /// Not in the dialect's documentation (a vendor extension): dropped and named.
    Unknown,
}

/// OpenAI chat and completions request fields that do not change the answer.
const OPENAI_ADVISORY: &[&str] = &[
    "user",
    "metadata",
    "store",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
    "parallel_tool_calls",
];

/// OpenAI request fields that change the answer.
const OPENAI_CHANGES: &[&str] = &[
    "audio",
    "best_of",
    "echo",
    "function_call",
    "functions",
    "logit_bias",
    "logprobs",
    "modalities",
    "prediction",
    "reasoning_effort",
    "response_format",
    "suffix",
    "tool_choice",
    "tools",
    "top_logprobs",
    "verbosity",
    "web_search_options",
];

/// Responses API request fields that do not change the answer (`store` is not among
/// them: Sluice stores responses itself).
const RESPONSES_ADVISORY: &[&str] = &[
    "user",
    "metadata",
    "service_tier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "safety_identifier",
    "stream_options",
    "include",
    "truncation",
    "parallel_tool_calls",
    // Sluice gives the reasoning text itself (reasoning items' `content`), never a
    // summary of it: the request for one is left out and named.
    "reasoning.summary",
    "reasoning.generate_summary",
];

/// Responses API request fields that change the answer (and that Sluice does not map).
const RESPONSES_CHANGES: &[&str] = &[
    "background",
    "conversation",
    "max_tool_calls",
    "previous_response_id",
    "prompt",
    "top_logprobs",
    "text.verbosity",
];

/// Ollama request fields that change the answer (top level).
const OLLAMA_CHANGES: &[&str] = &["context", "format", "images", "suffix", "template", "think", "tools"];

/// Ollama request fields that do not change the answer (top level).
const OLLAMA_ADVISORY: &[&str] = &["keep_alive"];

/// Ollama `options` that only tune the runtime (memory, threads, batching).
const OLLAMA_RUNTIME_OPTIONS: &[&str] = &[
    "num_ctx",
    "num_batch",
    "num_gpu",
    "main_gpu",
    "low_vram",
    "use_mmap",
    "use_mlock",
    "num_thread",
    "numa",
    "vocab_only",
    "f16_kv",
    "logits_all",
];

/// Ollama `options` that change sampling and have no OpenAI counterpart.
const OLLAMA_SAMPLING_OPTIONS: &[&str] = &[
    "num_keep",
    "typical_p",
    "repeat_last_n",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
    "penalize_newline",
    "tfs_z",
];

/// Fields mapped into the canonical request and also kept so that an upstream of the
/// client's dialect sees them under the client's name (`max_completion_tokens`, which
/// OpenAI's reasoning models require instead of `max_tokens`).
pub const MAPPED: &[&str] = &["max_completion_tokens"];

/// Message fields that do not change the answer.
const MESSAGE_ADVISORY: &[&str] = &["name"];

/// How the top-level field `name` of `dialect` bears on the answer.
pub fn bearing(dialect: WireDialect, name: &str) -> Bearing {
    let (advisory, changes) = match dialect {
        WireDialect::OpenAi => (OPENAI_ADVISORY, OPENAI_CHANGES),
        WireDialect::Ollama => (OLLAMA_ADVISORY, OLLAMA_CHANGES),
        WireDialect::Responses => (RESPONSES_ADVISORY, RESPONSES_CHANGES),
    };
    if advisory.contains(&name) {
        Bearing::Advisory
    } else if changes.contains(&name) {
        Bearing::Changes
    } else {
        Bearing::Unknown
    }
}

/// How an Ollama `options` entry bears on the answer.
pub fn option_bearing(name: &str) -> Bearing {
    if OLLAMA_RUNTIME_OPTIONS.contains(&name) {
        Bearing::Advisory
    } else if OLLAMA_SAMPLING_OPTIONS.contains(&name) {
        Bearing::Changes
    } else {
        Bearing::Unknown
    }
}

/// How a message field bears on the answer (the role is mapped, never dropped).
pub fn message_bearing(name: &str) -> Bearing {
    if MESSAGE_ADVISORY.contains(&name) || name == "role" { Bearing::Advisory } else { Bearing::Unknown }
}

/// True for a value that asks for nothing beyond the default: `null`, `false`, an
/// empty string, list or object, or `["text"]` (the default `modalities`).
fn is_default(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty() || a.len() == 1 && a[0] == "text",
        Value::Object(o) => o.is_empty(),
        Value::Number(_) | Value::Bool(true) => false,
    }
}

impl Carried {
    /// An empty carry for a client of `dialect`.
    pub fn from(dialect: WireDialect) -> Carried {
        Carried { dialect: Some(dialect), ..Carried::default() }
    }

    /// True when nothing is carried.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.options.is_empty()
    }

    /// What a backend whose upstream speaks `target` (`None`: none of the two, e.g.
    /// the embedded engine) does with these fields and with `messages`' own fields
    /// (each message's carried fields, in order).
    pub fn plan<'a>(&self, target: Option<WireDialect>, messages: impl Iterator<Item = &'a Fields>) -> Plan {
        let Some(dialect) = self.dialect else { return Plan::default() };
        if target == Some(dialect) {
            return Plan { carry: true, ..Plan::default() };
        }
        let mut plan = Plan::default();
        let mut sort = |path: String, bearing: Bearing, value: &Value| match bearing {
            Bearing::Changes if !is_default(value) => plan.refused.push(path),
            _ => plan.dropped.push(path),
        };
        // By name: the order clients and tests see does not depend on whether
        // serde_json keeps insertion order (a dependency may turn that on).
        for (name, value) in by_name(&self.fields).into_iter().filter(|(n, _)| !MAPPED.contains(&n.as_str()))
        {
            sort(name.clone(), bearing(dialect, name), value);
        }
        for (name, value) in by_name(&self.options) {
            sort(format!("options.{name}"), option_bearing(name), value);
        }
        for (i, fields) in messages.enumerate() {
            for (name, value) in by_name(fields) {
                // A role spelled the client's way (OpenAI's `developer`) is mapped.
                if name != "role" {
                    sort(format!("messages[{i}].{name}"), message_bearing(name), value);
                }
            }
        }
        plan
    }
}

/// The entries of `fields` sorted by name.
fn by_name(fields: &Fields) -> Vec<(&String, &Value)> {
    let mut v: Vec<(&String, &Value)> = fields.iter().collect();
    v.sort_unstable_by(|a, b| a.0.cmp(b.0));
    v
}

/// Writes `fields` into the JSON object `body`, replacing what is there.
pub fn overlay(body: &mut Value, fields: &Fields) {
    if let Value::Object(obj) = body {
        for (k, v) in fields {
            obj.insert(k.clone(), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn carried(dialect: WireDialect, fields: Value) -> Carried {
        let Value::Object(fields) = fields else { panic!() };
        Carried { dialect: Some(dialect), fields, options: Fields::new() }
    }

    #[test]
    fn same_dialect_carries_everything() {
        let c = carried(WireDialect::OpenAi, json!({"logit_bias": {"1": 5}, "x_vendor": 1}));
        let plan = c.plan(Some(WireDialect::OpenAi), std::iter::empty());
        assert_eq!(plan, Plan { carry: true, ..Plan::default() });
    }

    #[test]
    fn across_dialects_advisory_is_dropped_and_answer_changing_refused() {
        let c = carried(
            WireDialect::OpenAi,
            json!({"metadata": {"a": "b"}, "store": true, "logit_bias": {"1": 5}, "x_vendor": 1,
                   "modalities": ["text"], "logprobs": false, "reasoning_effort": "high"}),
        );
        let name =
            Fields::from_iter([("name".to_owned(), json!("bob")), ("role".into(), json!("developer"))]);
        let plan = c.plan(None, [name].iter());
        assert!(!plan.carry);
        assert_eq!(plan.refused, ["logit_bias", "reasoning_effort"]);
        assert_eq!(
            plan.dropped,
            ["logprobs", "metadata", "modalities", "store", "x_vendor", "messages[0].name"]
        );
        let (param, msg) = plan.refusal("gpu").unwrap();
        assert_eq!(param, "logit_bias");
        assert!(msg.contains("'logit_bias'") && msg.contains("'gpu'"), "{msg}");
    }

    #[test]
    fn ollama_options_are_sorted_by_what_they_do() {
        let mut c = carried(WireDialect::Ollama, json!({"keep_alive": "5m", "template": "{{ .Prompt }}"}));
        c.options = Fields::from_iter([("num_ctx".to_owned(), json!(4096)), ("mirostat".into(), json!(2))]);
        let plan = c.plan(Some(WireDialect::OpenAi), std::iter::empty());
        assert_eq!(plan.refused, ["template", "options.mirostat"]);
        assert_eq!(plan.dropped, ["keep_alive", "options.num_ctx"]);
    }

    #[test]
    fn requests_sluice_made_carry_nothing() {
        let plan = Carried::default().plan(None, std::iter::empty());
        assert_eq!(plan, Plan::default());
    }
}
