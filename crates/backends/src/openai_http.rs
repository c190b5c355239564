//! OpenAI-compatible HTTP backend: vLLM, llama.cpp's server, LM Studio, hosted APIs.
//!
//! Chat requests go to `/chat/completions`; raw prompts to `/completions`. Streams are
//! always requested with `include_usage` so token counts survive translation.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderName, HeaderValue, Method};
use sluice_protocol::openai as oa;

use super::{
    Backend, BackendError, EventStream, ModelInfo,
    http_client::{Response, Transport, bearer, json_content_type},
    sse::{SseDecoder, SseItem},
    upstream::{EventQueue, StreamFormat, UpstreamEvents},
};
use sluice_core::{
    backend::{UpstreamError, carry_plan},
    carry::WireDialect,
    chat::{
        ChatRequest, DoneDetails, EmbedRequest, Embeddings, Event, FinishReason, Input, Message, Role, Usage,
    },
    scrub::scrub,
};

/// An OpenAI-compatible upstream.
pub struct OpenAiHttp {
    name: String,
    transport: Arc<Transport>,
    post_headers: Arc<[(HeaderName, HeaderValue)]>,
    get_headers: Arc<[(HeaderName, HeaderValue)]>,
}

impl OpenAiHttp {
    /// A backend reached through `transport` (base URL e.g. `http://127.0.0.1:8000/v1`),
    /// sending `api_key` as a bearer token when given.
    pub fn new(name: &str, transport: Transport, api_key: Option<&str>) -> Self {
        let auth = api_key.and_then(bearer);
        OpenAiHttp {
            name: name.to_owned(),
            transport: Arc::new(transport),
            post_headers: std::iter::once(json_content_type()).chain(auth.clone()).collect(),
            get_headers: auth.into_iter().collect(),
        }
    }

    /// POSTs `body` to `path`; the future owns everything it needs.
    fn post(
        &self,
        path: &'static str,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<Response, BackendError>> + Send + 'static {
        let (t, h) = (self.transport.clone(), self.post_headers.clone());
        async move { t.request(Method::POST, path, &h, Bytes::from(body)).await }
    }
}

fn to_wire_messages(req: &ChatRequest, carry: bool) -> Vec<oa::ChatMessage> {
    let msg = |role: Role, text: &str| oa::ChatMessage {
        role: role.as_str().to_owned(),
        content: Some(oa::MessageContent::Text(text.to_owned())),
        name: None,
        extra: oa::Fields::new(),
    };
    // A client of this dialect gets its own spelling back: `developer`, `name`, ...
    let carried = |m: &Message| {
        let mut wire = msg(m.role, &m.content);
        if carry {
            wire.extra = m.extra.clone();
            if let Some(serde_json::Value::String(role)) = wire.extra.remove("role") {
                wire.role = role;
            }
            if let Some(serde_json::Value::String(name)) = wire.extra.remove("name") {
                wire.name = Some(name);
            }
        }
        wire
    };
    match &req.input {
        Input::Chat(messages) => messages.iter().map(carried).collect(),
        Input::Text { prompt, system, .. } => system
            .iter()
            .map(|s| msg(Role::System, s))
            .chain(std::iter::once(msg(Role::User, prompt)))
            .collect(),
    }
}

/// Ollama's `repeat_penalty` has no counterpart in OpenAI's API (vLLM's
/// `repetition_penalty` is another scale): refused by name rather than dropped.
fn refuse_repeat_penalty(req: &ChatRequest, backend: &str) -> Result<(), BackendError> {
    match req.sampling.repeat_penalty {
        None => Ok(()),
        Some(_) => Err(BackendError::UnsupportedField {
            param: "options.repeat_penalty".into(),
            message: format!(
                "'options.repeat_penalty' is not supported by model backend '{backend}' (an \
                 OpenAI-compatible upstream has no counterpart for it)"
            ),
        }),
    }
}

/// Serializes the request for the upstream; returns the path and the body. The
/// upstream is always asked to stream (with usage), whatever the client asked: a whole
/// answer is assembled by the gateway, so the first-token deadline guards only the
/// first token, never the whole generation. With `carry`, the fields the client sent
/// that Sluice does not model go along unchanged.
fn encode_request(req: &ChatRequest, carry: bool) -> Result<(&'static str, Vec<u8>), BackendError> {
    let s = &req.sampling;
    let stop = (!s.stop.is_empty()).then(|| sluice_protocol::common::OneOrMany::Many(s.stop.clone()));
    let stream_options = Some(oa::StreamOptions { include_usage: Some(true) });
    let mut extra = if carry { req.carried.fields.clone() } else { oa::Fields::new() };
    // Sent from the canonical request.
    extra.remove("user");
    // The client named its cap `max_completion_tokens`: so does the upstream request.
    let completion_cap = extra.remove("max_completion_tokens").is_some();
    let (max_tokens, max_completion_tokens) =
        if completion_cap { (None, s.max_tokens) } else { (s.max_tokens, None) };
    let body = match &req.input {
        Input::Text { prompt, raw: true, .. } => serde_json::to_vec(&oa::CompletionRequest {
            model: req.model.clone(),
            prompt: Some(sluice_protocol::common::OneOrMany::One(prompt.clone())),
            stream: Some(true),
            stream_options,
            max_tokens: s.max_tokens,
            temperature: s.temperature,
            top_p: s.top_p,
            seed: s.seed,
            stop,
            user: req.user.clone(),
            suffix: None,
            presence_penalty: s.presence_penalty,
            frequency_penalty: s.frequency_penalty,
            extra,
        })
        .map(|b| ("/completions", b)),
        _ => serde_json::to_vec(&oa::ChatCompletionRequest {
            model: req.model.clone(),
            messages: to_wire_messages(req, carry),
            stream: Some(true),
            stream_options,
            max_tokens,
            max_completion_tokens,
            temperature: s.temperature,
            top_p: s.top_p,
            top_k: s.top_k,
            min_p: s.min_p,
            seed: s.seed,
            stop,
            user: req.user.clone(),
            presence_penalty: s.presence_penalty,
            frequency_penalty: s.frequency_penalty,
            n: None,
            extra,
        })
        .map(|b| ("/chat/completions", b)),
    };
    body.map_err(|e| BackendError::Protocol(format!("encoding request: {e}")))
}

impl Backend for OpenAiHttp {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "openai"
    }

    fn carries(&self) -> Option<WireDialect> {
        Some(WireDialect::OpenAi)
    }

    fn chat(
        &self,
        _ctx: &sluice_core::context::RequestContext,
        req: ChatRequest,
    ) -> BoxFuture<'static, Result<EventStream, BackendError>> {
        let sent = carry_plan(&req, Some(WireDialect::OpenAi), &self.name)
            .and_then(|carry| refuse_repeat_penalty(&req, &self.name).map(|()| carry))
            .and_then(|carry| encode_request(&req, carry))
            .map(|(path, body)| self.post(path, body));
        Box::pin(async move {
            let resp = sent?.await?;
            if !resp.is_success() {
                return Err(resp.into_error().await);
            }
            Ok(UpstreamEvents::boxed(resp.body, OpenAiSse::default()))
        })
    }

    fn embed(&self, req: EmbedRequest) -> BoxFuture<'static, Result<Embeddings, BackendError>> {
        let input = if req.tokens.is_empty() {
            oa::EmbeddingInput::Text(sluice_protocol::common::OneOrMany::Many(req.input))
        } else {
            oa::EmbeddingInput::TokenLists(req.tokens)
        };
        let body = serde_json::to_vec(&oa::EmbeddingRequest {
            model: req.model,
            input,
            dimensions: req.dimensions,
            encoding_format: None,
            user: None,
        });
        let rb = body.map(|b| self.post("/embeddings", b));
        Box::pin(async move {
            let resp = rb.map_err(|e| BackendError::Protocol(e.to_string()))?.await?;
            if !resp.is_success() {
                return Err(resp.into_error().await);
            }
            let body = resp.bytes().await?;
            let mut r: oa::EmbeddingResponse = serde_json::from_slice(&body)
                .map_err(|e| BackendError::Protocol(format!("malformed embeddings: {e}")))?;
            r.data.sort_by_key(|d| d.index);
            Ok(Embeddings {
                vectors: r
                    .data
                    .into_iter()
                    .map(|d| match d.embedding {
                        oa::EmbeddingVector::Float(v) => Ok(v),
                        oa::EmbeddingVector::Base64(_) => {
                            Err(BackendError::Protocol("unrequested base64 embedding".into()))
                        }
                    })
                    .collect::<Result<_, _>>()?,
                prompt_tokens: r.usage.prompt_tokens,
                // OpenAI does not say; a load, if any, hides in the latency.
                load: std::time::Duration::ZERO,
            })
        })
    }

    fn models(&self) -> BoxFuture<'static, Result<Vec<ModelInfo>, BackendError>> {
        let (t, h) = (self.transport.clone(), self.get_headers.clone());
        Box::pin(async move {
            let resp = t.request(Method::GET, "/models", &h, Bytes::new()).await?;
            if !resp.is_success() {
                return Err(resp.into_error().await);
            }
            let body = resp.bytes().await?;
            let list: oa::ModelList = serde_json::from_slice(&body)
                .map_err(|e| BackendError::Protocol(format!("malformed model list: {e}")))?;
            Ok(list.data.into_iter().map(|m| ModelInfo { name: m.id, ..Default::default() }).collect())
        })
    }
}

/// Decoder for OpenAI's SSE stream (chat and legacy completions chunks alike).
#[derive(Default)]
pub struct OpenAiSse {
    decoder: SseDecoder,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    /// What the upstream said beyond Sluice's terms: the fingerprint, usage details, a
    /// finish reason Sluice has no name for.
    details: DoneDetails,
    finished: bool,
}

impl OpenAiSse {
    fn event(&mut self, data: &[u8], out: &mut EventQueue) {
        if data == b"[DONE]" {
            self.finish_ok(out);
            return;
        }
        let chunk: oa::StreamChunkView<'_> = match serde_json::from_slice(data) {
            Ok(c) => c,
            Err(e) => return self.fail(BackendError::Protocol(format!("malformed chunk: {e}")), out),
        };
        if let Some(err) = chunk.error {
            let message = if err.message.is_empty() { "upstream error".to_owned() } else { err.message };
            let detail = UpstreamError { kind: err.kind, code: err.code, param: err.param };
            let err = BackendError::Status {
                status: 500,
                message: scrub(&message),
                retry_after: None,
                detail: Some(Box::new(detail)),
            };
            return self.fail(err, out);
        }
        for choice in chunk.choices {
            let text = choice.delta.and_then(|d| d.content).or(choice.text);
            if let Some(text) = text.filter(|t| !t.is_empty()) {
                out.push_back(Ok(Event::Delta(text.0.into_owned())));
            }
            if let Some(reason) = choice.finish_reason {
                let known = FinishReason::known(&reason);
                self.finish = Some(known.unwrap_or_default());
                self.details.finish_reason = known.is_none().then(|| reason.0.into_owned());
            }
        }
        if let Some(fp) = chunk.system_fingerprint.filter(|_| self.details.system_fingerprint.is_none()) {
            self.details.system_fingerprint = Some(fp.0.into_owned());
        }
        if let Some(u) = chunk.usage {
            self.usage =
                Some(Usage { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens });
            self.details.usage = u.details;
            self.details.usage.retain(|_, v| !v.is_null());
        }
    }

    fn finish_ok(&mut self, out: &mut EventQueue) {
        let details = std::mem::take(&mut self.details);
        out.push_back(Ok(Event::Done {
            finish_reason: self.finish.unwrap_or_default(),
            usage: self.usage,
            timings: None,
            details: (!details.is_empty())
                .then(|| Box::new(DoneDetails { dialect: Some(WireDialect::OpenAi), ..details })),
        }));
        self.finished = true;
    }

    fn fail(&mut self, err: BackendError, out: &mut EventQueue) {
        tracing::warn!(error = ?err, "upstream stream failed");
        out.push_back(Err(err));
        self.finished = true;
    }
}

impl StreamFormat for OpenAiSse {
    fn push(&mut self, chunk: &[u8]) {
        self.decoder.push(chunk);
    }

    fn decode_one(&mut self, out: &mut EventQueue) -> bool {
        if self.finished {
            return false;
        }
        match self.decoder.next_event() {
            Some(SseItem::Data(d)) => self.event(&d, out),
            Some(SseItem::TooLarge) => self.fail(BackendError::Protocol("oversized event".into()), out),
            None => return false,
        }
        true
    }

    fn end(&mut self, out: &mut EventQueue) {
        if self.finished {
            return;
        }
        if let Some(d) = self.decoder.finish() {
            self.event(&d, out);
        }
        if self.finished {
            return;
        }
        if self.finish.is_some() {
            // Some servers end after the finish_reason chunk without `[DONE]`.
            self.finish_ok(out);
        } else {
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

    fn run(frames: &[&str], eof: bool) -> Vec<Result<Event, BackendError>> {
        let mut f = OpenAiSse::default();
        let mut out = EventQueue::new();
        for fr in frames {
            f.feed(fr.as_bytes(), &mut out);
        }
        if eof {
            f.end(&mut out);
        }
        out.into_iter().collect()
    }

    #[test]
    fn the_upstream_always_streams_with_usage() {
        for input in [Input::Chat(vec![]), Input::Text { prompt: "p".into(), system: None, raw: true }] {
            let req = ChatRequest { model: "m".into(), input, stream: false, ..Default::default() };
            let (_, body) = encode_request(&req, false).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["stream"], true, "{v}");
            assert_eq!(v["stream_options"]["include_usage"], true, "{v}");
        }
    }

    #[test]
    fn deltas_finish_and_usage() {
        let ev = run(
            &[
                "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n",
                "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: {\"choices\":[{\"delta\":{},\"finish_reason\":\"length\"}]}\n\n",
                "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\ndata: [DONE]\n\n",
            ],
            false,
        );
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].as_ref().unwrap(), &Event::Delta("Hi".into()));
        assert_eq!(
            ev[1].as_ref().unwrap(),
            &Event::Done {
                finish_reason: FinishReason::Length,
                usage: Some(Usage { prompt_tokens: 3, completion_tokens: 1 }),
                timings: None,
                details: None,
            }
        );
    }

    #[test]
    fn malformed_chunk_is_an_error_and_ends() {
        let ev = run(
            &["data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {nope\n\ndata: [DONE]\n\n"],
            true,
        );
        assert_eq!(ev.len(), 2);
        assert!(matches!(ev[1], Err(BackendError::Protocol(_))));
    }

    #[test]
    fn cut_stream_is_interrupted() {
        let ev = run(&["data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"], true);
        assert!(matches!(ev.last(), Some(Err(BackendError::Interrupted(_)))));
    }

    #[test]
    fn error_object_in_stream_is_reported() {
        let ev = run(&["data: {\"error\":{\"message\":\"overloaded\"}}\n\n"], false);
        assert!(matches!(&ev[0], Err(BackendError::Status { message, .. }) if message == "overloaded"));
    }
}
