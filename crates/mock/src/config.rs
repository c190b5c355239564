//! Server-wide configuration of the mock: how many tokens, how fast, and which fault to
//! inject. A `[mock ...]` directive in a request can override most of it per request
//! (see the `directive` module).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

/// Model name served when [`MockConfig::models`] is left at its default.
pub const DEFAULT_MODEL: &str = "mock-model";

/// Everything that shapes the mock's replies.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Tokens streamed per reply (a request's `max_tokens` / `num_predict` may lower it).
    pub tokens: usize,
    /// Delay between consecutive tokens.
    pub token_delay: Duration,
    /// Delay before the first token (time to first token).
    pub first_token_delay: Duration,
    /// Fault to inject, if any.
    pub behavior: Behavior,
    /// Whether tokens flow freely or are released one by one by a test.
    pub pace: Pace,
    /// Models the mock knows; any other model name gets a 404 in the request's dialect.
    pub models: Vec<String>,
    /// If set, every `/v1` route demands `Authorization: Bearer <key>` and answers 401
    /// in the OpenAI error shape otherwise. Ollama routes never check keys.
    pub require_api_key: Option<String>,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            tokens: 8,
            token_delay: Duration::ZERO,
            first_token_delay: Duration::ZERO,
            behavior: Behavior::Normal,
            pace: Pace::Auto,
            models: vec![DEFAULT_MODEL.to_owned()],
            require_api_key: None,
        }
    }
}

impl MockConfig {
    /// True if `name` is one of [`MockConfig::models`]. Ollama-style names match with or
    /// without the `:latest` tag, as they do on a real Ollama.
    pub fn knows_model(&self, name: &str) -> bool {
        let bare = name.strip_suffix(":latest").unwrap_or(name);
        self.models.iter().any(|m| m == name || m.strip_suffix(":latest").unwrap_or(m) == bare)
    }
}

/// A fault the mock injects into generation requests.
///
/// For the `*After(k)` variants, `k` counts content tokens; if `k` exceeds the number of
/// tokens in the reply, the reply completes normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Behavior {
    /// Reply normally.
    #[default]
    Normal,
    /// Accept the request and never send anything, not even the status line.
    Hang,
    /// Stream `k` tokens, then go silent forever with the connection kept open.
    HangAfter(usize),
    /// Answer with this HTTP status and the dialect's error body
    /// (429 also sets `Retry-After: 1`).
    Status(u16),
    /// Stream `k` tokens, then abort the connection: no final chunk, no `[DONE]`.
    DropAfter(usize),
    /// Stream `k` tokens, then one garbage line (`data: {not json` in SSE, `{not json` in
    /// NDJSON), then carry on with the rest of the reply as normal.
    MalformedAfter(usize),
}

/// How tokens are released.
#[derive(Debug, Clone, Default)]
pub enum Pace {
    /// Tokens follow the configured delays only.
    #[default]
    Auto,
    /// Every token, the first included, also waits for one permit of this semaphore, so
    /// a test can release tokens one at a time with `add_permits(1)`. Closing the
    /// semaphore releases all remaining tokens.
    Manual(Arc<Semaphore>),
}

impl Pace {
    /// A manual pace with no permits yet, and the semaphore a test uses to release tokens.
    pub fn manual() -> (Pace, Arc<Semaphore>) {
        let gate = Arc::new(Semaphore::new(0));
        (Pace::Manual(Arc::clone(&gate)), gate)
    }
}
