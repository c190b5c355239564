//! Ollama backend over its native API (`/api/chat`, `/api/generate`, `/api/tags`,
//! `/api/embed`), streaming NDJSON.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::Method;
use sluice_protocol::ollama as ol;

use super::{
    Backend, BackendError, EventStream, ModelInfo,
    http_client::{Response, Transport, json_content_type},
    ndjson::{LineDecoder, LineItem},
    upstream::{EventQueue, StreamFormat, UpstreamEvents},
};
use sluice_core::{
    backend::carry_plan,
    carry::WireDialect,
    chat::{ChatRequest, DoneDetails, EmbedRequest, Embeddings, Event, FinishReason, Input, Timings, Usage},
};

/// An Ollama server.
pub struct OllamaHttp {
    name: String,
    transport: Arc<Transport>,
}

impl OllamaHttp {
    /// A backend reached through `transport` (base URL e.g. `http://127.0.0.1:11434`).
    pub fn new(name: &str, transport: Transport) -> Self {
        OllamaHttp { name: name.to_owned(), transport: Arc::new(transport) }
    }

    /// The base URL without a trailing `/api` a user may have put there.
    pub fn base_url(url: &str) -> &str {
        let base = url.trim_end_matches('/');
        base.strip_suffix("/api").unwrap_or(base)
    }

    fn post(
        &self,
        path: &'static str,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<Response, BackendError>> + Send + 'static {
        let t = self.transport.clone();
        async move { t.request(Method::POST, path, &[json_content_type()], Bytes::from(body)).await }
    }
}

fn options(req: &ChatRequest, carry: bool) -> Option<ol::Options> {
    let s = &req.sampling;
    let o = ol::Options {
        num_predict: s.max_tokens.map(i64::from),
        temperature: s.temperature,
        top_p: s.top_p,
        top_k: s.top_k,
        min_p: s.min_p,
        repeat_penalty: s.repeat_penalty,
        seed: s.seed,
        stop: (!s.stop.is_empty()).then(|| sluice_protocol::common::OneOrMany::Many(s.stop.clone())),
        num_ctx: None,
        presence_penalty: s.presence_penalty,
        frequency_penalty: s.frequency_penalty,
        extra: if carry { req.carried.options.clone() } else { ol::Fields::new() },
    };
    let empty = o.extra.is_empty()
        && o.presence_penalty.is_none()
        && o.frequency_penalty.is_none()
        && o.num_predict.is_none()
        && o.temperature.is_none()
        && o.top_p.is_none()
        && o.top_k.is_none()
        && o.min_p.is_none()
        && o.repeat_penalty.is_none()
        && o.seed.is_none()
        && o.stop.is_none();
    (!empty).then_some(o)
}

/// Serializes the request for the upstream; returns the path and the body. The
/// upstream always streams, whatever the client asked: the gateway assembles whole
/// answers, so the first-token deadline never limits a whole generation. With `carry`,
/// the fields an Ollama client sent that Sluice does not model go along unchanged.
fn encode_request(req: &ChatRequest, carry: bool) -> Result<(&'static str, Vec<u8>), BackendError> {
    let extra = if carry { req.carried.fields.clone() } else { ol::Fields::new() };
    let encoded = match &req.input {
        Input::Chat(messages) => serde_json::to_vec(&ol::ChatRequest {
            model: req.model.clone(),
            messages: messages
                .iter()
                .map(|m| ol::Message {
                    role: m.role.as_str().to_owned(),
                    content: m.content.clone(),
                    images: None,
                    extra: if carry { m.extra.clone() } else { ol::Fields::new() },
                })
                .collect(),
            stream: Some(true),
            options: options(req, carry),
            keep_alive: None,
            format: None,
            extra,
        })
        .map(|b| ("/api/chat", b)),
        Input::Text { prompt, system, raw } => serde_json::to_vec(&ol::GenerateRequest {
            model: req.model.clone(),
            prompt: prompt.clone(),
            system: system.clone(),
            raw: raw.then_some(true),
            stream: Some(true),
            options: options(req, carry),
            extra,
            ..Default::default()
        })
        .map(|b| ("/api/generate", b)),
    };
    encoded.map_err(|e| BackendError::Protocol(format!("encoding request: {e}")))
}

impl Backend for OllamaHttp {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "ollama"
    }

    fn carries(&self) -> Option<WireDialect> {
        Some(WireDialect::Ollama)
    }

    fn chat(
        &self,
        _ctx: &sluice_core::context::RequestContext,
        req: ChatRequest,
    ) -> BoxFuture<'static, Result<EventStream, BackendError>> {
        let rb = carry_plan(&req, Some(WireDialect::Ollama), &self.name)
            .and_then(|carry| encode_request(&req, carry))
            .map(|(path, body)| self.post(path, body));
        Box::pin(async move {
            let resp = rb?.await?;
            if !resp.is_success() {
                return Err(resp.into_error().await);
            }
            Ok(UpstreamEvents::boxed(resp.body, OllamaNdjson::default()))
        })
    }

    fn embed(&self, req: EmbedRequest) -> BoxFuture<'static, Result<Embeddings, BackendError>> {
        if !req.tokens.is_empty() {
            return Box::pin(async { Err(token_input_refused("an Ollama upstream")) });
        }
        let body = serde_json::to_vec(&ol::EmbedRequest {
            model: req.model,
            input: sluice_protocol::common::OneOrMany::Many(req.input),
            truncate: req.truncate,
            keep_alive: None,
            dimensions: req.dimensions,
        });
        let rb = body.map(|b| self.post("/api/embed", b));
        Box::pin(async move {
            let resp = rb.map_err(|e| BackendError::Protocol(e.to_string()))?.await?;
            if !resp.is_success() {
                return Err(resp.into_error().await);
            }
            let body = resp.bytes().await?;
            let r: ol::EmbedResponse = serde_json::from_slice(&body)
                .map_err(|e| BackendError::Protocol(format!("malformed embeddings: {e}")))?;
            Ok(Embeddings {
                vectors: r.embeddings,
                prompt_tokens: r.prompt_eval_count,
                load: Duration::from_nanos(r.load_duration),
            })
        })
    }

    fn models(&self) -> BoxFuture<'static, Result<Vec<ModelInfo>, BackendError>> {
        let t = self.transport.clone();
        Box::pin(async move {
            let resp = t.request(Method::GET, "/api/tags", &[], Bytes::new()).await?;
            if !resp.is_success() {
                return Err(resp.into_error().await);
            }
            let body = resp.bytes().await?;
            let tags: ol::TagList = serde_json::from_slice(&body)
                .map_err(|e| BackendError::Protocol(format!("malformed tag list: {e}")))?;
            let models = tags.models.into_iter().map(|m| {
                let t = t.clone();
                async move {
                    let show = show(&t, &m.name).await;
                    ModelInfo {
                        capabilities: show.as_ref().and_then(|s| s.capabilities.clone()),
                        show: show.map(Box::new),
                        name: m.name,
                        size: Some(m.size),
                        details: Some(m.details),
                        digest: m.digest.filter(|d| !d.is_empty()),
                        modified_at: m.modified_at.filter(|d| !d.is_empty()),
                    }
                }
            });
            Ok(futures_util::future::join_all(models).await)
        })
    }
}

/// The upstream's `/api/show` of the model (capabilities are `None` where older
/// Ollama versions do not say); `None` if it does not answer.
async fn show(t: &Transport, model: &str) -> Option<ol::ShowResponse> {
    let body = serde_json::to_vec(&ol::ShowRequest { model: Some(model.to_owned()), name: None }).ok()?;
    let resp = t.request(Method::POST, "/api/show", &[json_content_type()], Bytes::from(body)).await.ok()?;
    if !resp.is_success() {
        return None;
    }
    let body = resp.bytes().await.ok()?;
    match serde_json::from_slice::<ol::ShowResponse>(&body) {
        Ok(show) => Some(show),
        Err(e) => {
            tracing::debug!(model, error = %e, "malformed /api/show answer");
            None
        }
    }
}

/// The 400 for embedding inputs given as token ids to a backend that takes text only.
pub fn token_input_refused(what: &str) -> BackendError {
    BackendError::UnsupportedField {
        param: "input".into(),
        message: format!(
            "'input' as token ids is not supported by {what}: send the text (LangChain: \
             OpenAIEmbeddings(check_embedding_ctx_length=False))"
        ),
    }
}

/// Decoder for Ollama's NDJSON stream (chat and generate lines alike).
#[derive(Default)]
pub struct OllamaNdjson {
    decoder: LineDecoder,
    finished: bool,
}

impl OllamaNdjson {
    fn line(&mut self, line: &[u8], out: &mut EventQueue) {
        let v: ol::StreamLineView<'_> = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => return self.fail(BackendError::Protocol(format!("malformed line: {e}")), out),
        };
        if let Some(err) = v.error {
            return self.fail(BackendError::status(500, sluice_core::scrub::scrub(&err)), out);
        }
        let text = v.message.and_then(|m| m.content).or(v.response);
        if let Some(text) = text.filter(|t| !t.is_empty()) {
            out.push_back(Ok(Event::Delta(text.0.into_owned())));
        }
        if v.done {
            let ns = |n: Option<u64>| Duration::from_nanos(n.unwrap_or(0));
            let known = v.done_reason.as_deref().map(|r| (r, FinishReason::known(r)));
            let mut details = DoneDetails { dialect: Some(WireDialect::Ollama), ..DoneDetails::default() };
            if let Some((raw, None)) = known {
                details.finish_reason = Some(raw.to_owned());
            }
            if let Some(context) = v.context {
                details.fields.insert("context".into(), context);
            }
            out.push_back(Ok(Event::Done {
                finish_reason: known.and_then(|(_, k)| k).unwrap_or_default(),
                usage: Some(Usage {
                    prompt_tokens: v.prompt_eval_count.unwrap_or(0),
                    completion_tokens: v.eval_count.unwrap_or(0),
                }),
                timings: Some(Timings {
                    load: ns(v.load_duration),
                    prompt_eval: ns(v.prompt_eval_duration),
                    eval: ns(v.eval_duration),
                }),
                details: (!details.is_empty()).then(|| Box::new(details)),
            }));
            self.finished = true;
        }
    }

    fn fail(&mut self, err: BackendError, out: &mut EventQueue) {
        tracing::warn!(error = ?err, "upstream stream failed");
        out.push_back(Err(err));
        self.finished = true;
    }
}

impl StreamFormat for OllamaNdjson {
    fn push(&mut self, chunk: &[u8]) {
        self.decoder.push(chunk);
    }

    fn decode_one(&mut self, out: &mut EventQueue) -> bool {
        if self.finished {
            return false;
        }
        match self.decoder.next_line() {
            Some(LineItem::Line(l)) => self.line(&l, out),
            Some(LineItem::TooLarge) => self.fail(BackendError::Protocol("oversized line".into()), out),
            None => return false,
        }
        true
    }

    fn end(&mut self, out: &mut EventQueue) {
        if !self.finished
            && let Some(l) = self.decoder.finish()
        {
            self.line(&l, out);
        }
        if !self.finished {
            self.fail(BackendError::Interrupted("stream ended before the answer finished".into()), out);
        }
    }

    fn finished(&self) -> bool {
        self.finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_always_streams() {
        let inputs = [Input::Chat(vec![]), Input::Text { prompt: "p".into(), system: None, raw: false }];
        for input in inputs {
            let req = ChatRequest { model: "m".into(), input, stream: false, ..Default::default() };
            let (_, body) = encode_request(&req, false).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["stream"], true, "{v}");
        }
    }

    #[test]
    fn lines_to_events() {
        let mut f = OllamaNdjson::default();
        let mut out = EventQueue::new();
        f.feed(b"{\"message\":{\"role\":\"assistant\",\"content\":\"a\"},\"done\":false}\n{\"message\":{\"content\":\"\"},\"done\":true,\"done_reason\":\"length\",\"eval_count\":1,\"prompt_eval_count\":2,\"eval_duration\":5}\n", &mut out);
        assert!(f.finished());
        let ev: Vec<_> = out.into_iter().map(Result::unwrap).collect();
        assert_eq!(ev[0], Event::Delta("a".into()));
        let Event::Done { finish_reason, usage, timings, .. } = &ev[1] else { panic!("{ev:?}") };
        assert_eq!(*finish_reason, FinishReason::Length);
        assert_eq!(usage.unwrap().completion_tokens, 1);
        assert_eq!(timings.unwrap().eval, Duration::from_nanos(5));
    }

    #[test]
    fn error_line_and_truncation() {
        let mut f = OllamaNdjson::default();
        let mut out = EventQueue::new();
        f.feed(b"{\"error\":\"model crashed\"}\n", &mut out);
        assert!(matches!(&out[0], Err(BackendError::Status { message, .. }) if message == "model crashed"));
        let mut f = OllamaNdjson::default();
        let mut out = EventQueue::new();
        f.feed(b"{\"response\":\"x\",\"done\":false}\n", &mut out);
        f.end(&mut out);
        assert!(matches!(out.back(), Some(Err(BackendError::Interrupted(_)))));
    }
}
