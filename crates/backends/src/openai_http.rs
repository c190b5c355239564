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
    output::{ResponseFormat, Think, TokenLogprob, TopLogprob},
    scrub::scrub,
    tools::{ToolCallDelta, ToolChoice},
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

/// A canonical message in OpenAI's shape. With `carry` (a client of this dialect), its
/// own spelling comes back: `developer`, `name`, other fields it sent.
fn wire_message(m: &Message, carry: bool) -> oa::ChatMessage {
    let content = if m.images.is_empty() {
        // A turn that only called tools has no content, as OpenAI clients send it.
        (!m.content.is_empty() || m.tool_calls.is_empty())
            .then(|| oa::MessageContent::Text(m.content.clone()))
    } else {
        let text = (!m.content.is_empty()).then(|| oa::ContentPart::text(m.content.clone()));
        let images = m.images.iter().map(|i| oa::ContentPart::image(i.url.clone(), i.detail.clone()));
        Some(oa::MessageContent::Parts(text.into_iter().chain(images).collect()))
    };
    let mut wire = oa::ChatMessage {
        role: m.role.as_str().to_owned(),
        content,
        name: None,
        tool_calls: (!m.tool_calls.is_empty()).then(|| {
            m.tool_calls
                .iter()
                .map(|c| oa::ToolCall {
                    id: c.id.clone(),
                    kind: "function".into(),
                    function: oa::FunctionCall { name: c.name.clone(), arguments: c.arguments.clone() },
                })
                .collect()
        }),
        tool_call_id: m.tool_call_id.clone(),
        reasoning_content: m.reasoning.clone(),
        extra: oa::Fields::new(),
    };
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
}

fn to_wire_messages(req: &ChatRequest, carry: bool) -> Vec<oa::ChatMessage> {
    match &req.input {
        Input::Chat(messages) => messages.iter().map(|m| wire_message(m, carry)).collect(),
        Input::Text { prompt, system, .. } => system
            .iter()
            .map(|s| wire_message(&Message::new(Role::System, s.clone()), false))
            .chain(std::iter::once(wire_message(&Message::new(Role::User, prompt.clone()), false)))
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

fn wire_tools(req: &ChatRequest) -> Option<Vec<oa::Tool>> {
    (!req.tools.is_empty()).then(|| {
        req.tools
            .iter()
            .map(|t| oa::Tool {
                kind: "function".into(),
                function: Some(oa::FunctionDef {
                    name: t.name.clone(),
                    description: t.description.clone(),
                    parameters: t.parameters.clone(),
                    strict: t.strict,
                }),
            })
            .collect()
    })
}

fn wire_tool_choice(c: &ToolChoice) -> serde_json::Value {
    match c {
        ToolChoice::Auto => "auto".into(),
        ToolChoice::None => "none".into(),
        ToolChoice::Required => "required".into(),
        ToolChoice::Function(name) => serde_json::json!({"type": "function", "function": {"name": name}}),
    }
}

fn wire_format(f: &ResponseFormat) -> oa::ResponseFormat {
    match f {
        ResponseFormat::JsonObject => oa::ResponseFormat::JsonObject,
        ResponseFormat::JsonSchema { name, description, schema, strict } => oa::ResponseFormat::JsonSchema {
            json_schema: oa::JsonSchemaFormat {
                // OpenAI requires a name; an Ollama client's schema has none.
                name: name.clone().unwrap_or_else(|| "response".into()),
                description: description.clone(),
                schema: Some(schema.clone()),
                strict: *strict,
            },
        },
    }
}

/// Refuses what an OpenAI-compatible upstream has no field for, rather than sending the
/// request without it.
fn check_expressible(req: &ChatRequest) -> Result<(), BackendError> {
    let raw = matches!(req.input, Input::Text { raw: true, .. });
    let unsupported = |m: &str| Err(BackendError::Unsupported(m.to_owned()));
    if raw && (req.response_format.is_some() || !req.tools.is_empty() || req.logprobs.is_some()) {
        return unsupported(
            "a raw prompt cannot ask an OpenAI-compatible upstream for a format, tools or log probabilities",
        );
    }
    if req.think == Some(Think::Off) {
        return unsupported("'think': false cannot be expressed to an OpenAI-compatible upstream");
    }
    Ok(())
}

/// Serializes the request for the upstream; returns the path and the body. The
/// upstream is always asked to stream (with usage), whatever the client asked: a whole
/// answer is assembled by the gateway, so the first-token deadline guards only the
/// first token, never the whole generation. With `carry`, the fields the client sent
/// that Sluice does not model go along unchanged.
fn encode_request(req: &ChatRequest, carry: bool) -> Result<(&'static str, Vec<u8>), BackendError> {
    check_expressible(req)?;
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
            tools: wire_tools(req),
            tool_choice: req.tool_choice.as_ref().map(wire_tool_choice),
            parallel_tool_calls: req.parallel_tool_calls,
            response_format: req.response_format.as_ref().map(wire_format),
            logprobs: req.logprobs.map(|_| true),
            top_logprobs: req.logprobs.filter(|n| *n > 0),
            reasoning_effort: match &req.think {
                Some(Think::Level(l)) => Some(l.clone()),
                _ => None,
            },
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

fn token_logprob(t: oa::TokenLogprob) -> TokenLogprob {
    TokenLogprob {
        token: t.token,
        logprob: t.logprob,
        bytes: t.bytes,
        top: t
            .top_logprobs
            .into_iter()
            .map(|a| TopLogprob { token: a.token, logprob: a.logprob, bytes: a.bytes })
            .collect(),
    }
}

/// Vendor fields kept from one answer at most (a guard against a runaway upstream).
const MAX_VENDOR_FIELDS: usize = 32;

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
        // The chunks that end an answer (finish reason, usage) also bring the
        // upstream's vendor fields to the client: read those once more, whole.
        if chunk.usage.is_some() || chunk.choices.iter().any(|c| c.finish_reason.is_some()) {
            self.vendor_fields(data);
        }
        for choice in chunk.choices {
            // Log probabilities go first: they describe the text that follows.
            if let Some(content) = choice.logprobs.and_then(|l| l.content).filter(|c| !c.is_empty()) {
                out.push_back(Ok(Event::Logprobs(content.into_iter().map(token_logprob).collect())));
            }
            let (mut text, mut reasoning, mut calls) = (choice.text, None, None);
            if let Some(d) = choice.delta {
                text = d.content.or(text);
                reasoning = d.reasoning_content.or(d.reasoning);
                calls = d.tool_calls;
            }
            if let Some(r) = reasoning.filter(|t| !t.is_empty()) {
                out.push_back(Ok(Event::Reasoning(r.0.into_owned())));
            }
            if let Some(text) = text.filter(|t| !t.is_empty()) {
                out.push_back(Ok(Event::Delta(text.0.into_owned())));
            }
            for c in calls.into_iter().flatten() {
                let (name, arguments) = match c.function {
                    Some(f) => (f.name.map(|n| n.0.into_owned()), f.arguments.map(|a| a.0.into_owned())),
                    None => (None, None),
                };
                out.push_back(Ok(Event::ToolCall(ToolCallDelta {
                    index: c.index,
                    id: c.id.map(|i| i.0.into_owned()),
                    name,
                    arguments: arguments.unwrap_or_default(),
                })));
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

    /// Keeps the top-level fields of `data` Sluice does not write itself (vendor
    /// extensions such as `service_tier` or a router's `provider`), for clients of the
    /// same dialect.
    fn vendor_fields(&mut self, data: &[u8]) {
        /// Written by the gateway itself, or meaningless once re-chunked.
        const OWN: [&str; 9] = [
            "id",
            "object",
            "created",
            "model",
            "choices",
            "usage",
            "system_fingerprint",
            "error",
            "obfuscation",
        ];
        let Ok(all) = serde_json::from_slice::<oa::Fields>(data) else { return };
        for (k, v) in all {
            if !OWN.contains(&k.as_str()) && !v.is_null() && self.details.fields.len() < MAX_VENDOR_FIELDS {
                self.details.fields.insert(k, v);
            }
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
    fn tools_images_formats_and_history_reach_the_upstream() {
        use sluice_core::{
            media::Image,
            tools::{Tool, ToolCall},
        };
        let mut user = Message::new(Role::User, "look");
        user.images.push(Image { url: "data:image/png;base64,AAAA".into(), detail: Some("high".into()) });
        let mut called = Message::new(Role::Assistant, "");
        called.tool_calls.push(ToolCall { id: "c1".into(), name: "f".into(), arguments: "{\"a\":1}".into() });
        let mut result = Message::new(Role::Tool, "42");
        result.tool_call_id = Some("c1".into());
        let req = ChatRequest {
            model: "m".into(),
            input: Input::Chat(vec![user, called, result]),
            tools: vec![Tool { name: "f".into(), description: None, parameters: None, strict: Some(true) }],
            tool_choice: Some(ToolChoice::Function("f".into())),
            response_format: Some(ResponseFormat::JsonSchema {
                name: None,
                description: None,
                schema: serde_json::json!({"type": "object"}),
                strict: Some(true),
            }),
            logprobs: Some(2),
            ..Default::default()
        };
        let (_, body) = encode_request(&req, false).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["messages"][0]["content"][0], serde_json::json!({"type": "text", "text": "look"}));
        assert_eq!(v["messages"][0]["content"][1]["image_url"]["url"], "data:image/png;base64,AAAA");
        assert!(v["messages"][1]["content"].is_null(), "a turn of tool calls has no content: {v}");
        assert_eq!(v["messages"][1]["tool_calls"][0]["function"]["arguments"], "{\"a\":1}");
        assert_eq!(v["messages"][2]["tool_call_id"], "c1");
        assert_eq!(v["tools"][0]["function"]["strict"], true);
        assert_eq!(v["tool_choice"]["function"]["name"], "f");
        assert_eq!(v["response_format"]["json_schema"]["name"], "response", "OpenAI requires a name: {v}");
        assert_eq!((v["logprobs"].as_bool(), v["top_logprobs"].as_u64()), (Some(true), Some(2)));
    }

    #[test]
    fn reasoning_tool_call_pieces_and_logprobs_become_events() {
        let ev = run(
            &[
                "data: {\"choices\":[{\"delta\":{\"reasoning_content\":\"hm\"}}]}\n\n",
                "data: {\"choices\":[{\"delta\":{\"content\":\"a\"},\"logprobs\":{\"content\":[{\"token\":\"a\",\"logprob\":-0.1,\"bytes\":[97],\"top_logprobs\":[]}]}}]}\n\n",
                "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}}]}\n\n",
                "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n",
            ],
            false,
        );
        let ev: Vec<Event> = ev.into_iter().map(Result::unwrap).collect();
        assert_eq!(ev[0], Event::Reasoning("hm".into()));
        assert!(matches!(&ev[1], Event::Logprobs(l) if l[0].token == "a"), "log probabilities come first");
        assert_eq!(ev[2], Event::Delta("a".into()));
        assert_eq!(
            ev[3],
            Event::ToolCall(ToolCallDelta {
                index: 0,
                id: Some("c".into()),
                name: Some("f".into()),
                arguments: String::new()
            })
        );
        assert_eq!(
            ev[4],
            Event::ToolCall(ToolCallDelta { index: 0, id: None, name: None, arguments: "{}".into() })
        );
        assert!(matches!(ev[5], Event::Done { finish_reason: FinishReason::ToolCalls, .. }));
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
