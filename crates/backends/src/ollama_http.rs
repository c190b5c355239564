//! Ollama backend over its native API (`/api/chat`, `/api/generate`, `/api/tags`,
//! `/api/embed`), streaming NDJSON.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::Method;
use sluice_protocol::{ollama as ol, openai as oa};

use super::{
    Backend, BackendError, EventStream, ModelInfo,
    http_client::{Response, Transport, json_content_type},
    ndjson::{LineDecoder, LineItem},
    upstream::{EventQueue, StreamFormat, UpstreamEvents},
};
use sluice_core::{
    backend::carry_plan,
    capabilities,
    carry::WireDialect,
    chat::{
        ChatRequest, DoneDetails, EmbedRequest, Embeddings, Event, FinishReason, Input, Message, Role,
        Timings, Usage,
    },
    output::{ResponseFormat, Think, TokenLogprob, TopLogprob},
    tools::{ToolCall, ToolCallDelta, ToolChoice},
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

/// A canonical message in Ollama's shape. Images must be base64 (`data:` URLs): the
/// gateway does not fetch URLs on a client's behalf.
fn wire_message(i: usize, m: &Message, carry: bool) -> Result<ol::Message, BackendError> {
    let images = m
        .images
        .iter()
        .map(|img| {
            img.base64().map(str::to_owned).ok_or_else(|| {
                BackendError::Unsupported(format!(
                    "messages[{i}]: an Ollama backend takes images as data: URLs (base64), not links"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let tool_calls = m
        .tool_calls
        .iter()
        .map(|c| ol::ToolCall {
            id: Some(c.id.clone()),
            function: ol::FunctionCall {
                index: None,
                name: c.name.clone(),
                arguments: serde_json::from_str(&c.arguments)
                    .unwrap_or_else(|_| serde_json::Value::String(c.arguments.clone())),
            },
        })
        .collect::<Vec<_>>();
    Ok(ol::Message {
        role: m.role.as_str().to_owned(),
        content: m.content.clone(),
        thinking: m.reasoning.clone(),
        images: (!images.is_empty()).then_some(images),
        tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
        tool_name: if m.role == Role::Tool { m.name.clone() } else { None },
        tool_call_id: m.tool_call_id.clone(),
        extra: if carry { m.extra.clone() } else { ol::Fields::new() },
    })
}

/// A tool result names its function for Ollama (`tool_name`): from the message, or
/// from the call it answers (an OpenAI client gives only the call id).
fn with_tool_name(mut wire: ol::Message, m: &Message, history: &[Message]) -> ol::Message {
    if m.role == Role::Tool && wire.tool_name.is_none() {
        wire.tool_name = m.tool_call_id.as_ref().and_then(|id| {
            history.iter().flat_map(|h| &h.tool_calls).find(|c| &c.id == id).map(|c| c.name.clone())
        });
    }
    wire
}

fn wire_format(f: &ResponseFormat) -> serde_json::Value {
    match f {
        ResponseFormat::JsonObject => "json".into(),
        ResponseFormat::JsonSchema { schema, .. } => schema.clone(),
    }
}

fn wire_think(t: &Think) -> serde_json::Value {
    match t {
        Think::Off => false.into(),
        Think::On => true.into(),
        Think::Level(l) => l.as_str().into(),
    }
}

/// The tools as Ollama takes them: it has no `tool_choice` (`none` is no tools; `auto`
/// is its only way), and always lets the model call several.
fn wire_tools(req: &ChatRequest) -> Result<Option<Vec<oa::Tool>>, BackendError> {
    match &req.tool_choice {
        Some(ToolChoice::None) => return Ok(None),
        Some(ToolChoice::Required | ToolChoice::Function(_)) => {
            return Err(BackendError::Unsupported(
                "'tool_choice' other than auto or none cannot be expressed to an Ollama backend".into(),
            ));
        }
        Some(ToolChoice::Auto) | None => {}
    }
    if req.parallel_tool_calls == Some(false) {
        return Err(BackendError::Unsupported(
            "'parallel_tool_calls': false cannot be expressed to an Ollama backend".into(),
        ));
    }
    Ok((!req.tools.is_empty()).then(|| {
        req.tools
            .iter()
            .map(|t| oa::Tool {
                kind: "function".into(),
                function: Some(oa::FunctionDef {
                    name: t.name.clone(),
                    description: t.description.clone(),
                    parameters: t.parameters.clone(),
                    strict: None,
                }),
            })
            .collect()
    }))
}

/// Serializes the request for the upstream; returns the path and the body. The
/// upstream always streams, whatever the client asked: the gateway assembles whole
/// answers, so the first-token deadline never limits a whole generation. With `carry`,
/// the fields an Ollama client sent that Sluice does not model go along unchanged.
fn encode_request(req: &ChatRequest, carry: bool) -> Result<(&'static str, Vec<u8>), BackendError> {
    let extra = if carry { req.carried.fields.clone() } else { ol::Fields::new() };
    let format = req.response_format.as_ref().map(wire_format);
    let think = req.think.as_ref().map(wire_think);
    let (logprobs, top_logprobs) = (req.logprobs.map(|_| true), req.logprobs.filter(|n| *n > 0));
    let encoded = match &req.input {
        Input::Chat(messages) => serde_json::to_vec(&ol::ChatRequest {
            model: req.model.clone(),
            messages: messages
                .iter()
                .enumerate()
                .map(|(i, m)| wire_message(i, m, carry).map(|w| with_tool_name(w, m, messages)))
                .collect::<Result<_, _>>()?,
            stream: Some(true),
            options: options(req, carry),
            keep_alive: None,
            format,
            tools: wire_tools(req)?,
            think,
            logprobs,
            top_logprobs,
            extra: extra.clone(),
        })
        .map(|b| ("/api/chat", b)),
        Input::Text { prompt, system, raw } => {
            if !req.tools.is_empty() {
                return Err(BackendError::Unsupported("a prompt without a chat cannot offer tools".into()));
            }
            serde_json::to_vec(&ol::GenerateRequest {
                model: req.model.clone(),
                prompt: prompt.clone(),
                system: system.clone(),
                raw: raw.then_some(true),
                stream: Some(true),
                options: options(req, carry),
                format,
                think,
                logprobs,
                top_logprobs,
                extra,
                ..Default::default()
            })
            .map(|b| ("/api/generate", b))
        }
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
        // Ollama takes `format` (structured output) and `logprobs` for every model that
        // completes, but does not list them (versions before 0.12.11 ignore logprobs).
        Ok(mut show) => {
            show.capabilities = show.capabilities.map(|mut caps| {
                if caps.iter().any(|c| c == "completion") {
                    caps.extend([capabilities::JSON_SCHEMA.to_owned(), capabilities::LOGPROBS.to_owned()]);
                }
                caps
            });
            Some(show)
        }
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

/// Decoder for Ollama's NDJSON stream (chat and generate lines alike). Ollama sends
/// tool calls whole and without ids (older versions): each becomes one piece with an
/// id made here, numbered across the answer.
#[derive(Default)]
pub struct OllamaNdjson {
    decoder: LineDecoder,
    finished: bool,
    calls: u32,
}

fn token_logprob(l: ol::Logprob) -> TokenLogprob {
    TokenLogprob {
        token: l.token,
        logprob: l.logprob,
        bytes: l.bytes,
        top: l
            .top_logprobs
            .unwrap_or_default()
            .into_iter()
            .map(|a| TopLogprob { token: a.token, logprob: a.logprob, bytes: a.bytes })
            .collect(),
    }
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
        if let Some(l) = v.logprobs.filter(|l| !l.is_empty()) {
            out.push_back(Ok(Event::Logprobs(l.into_iter().map(token_logprob).collect())));
        }
        let (mut text, mut thinking, mut calls) = (v.response, v.thinking, None);
        if let Some(m) = v.message {
            text = m.content.or(text);
            thinking = m.thinking.or(thinking);
            calls = m.tool_calls;
        }
        if let Some(t) = thinking.filter(|t| !t.is_empty()) {
            out.push_back(Ok(Event::Reasoning(t.0.into_owned())));
        }
        if let Some(text) = text.filter(|t| !t.is_empty()) {
            out.push_back(Ok(Event::Delta(text.0.into_owned())));
        }
        for c in calls.into_iter().flatten() {
            let arguments = match c.function.arguments {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => "{}".to_owned(),
                v => v.to_string(),
            };
            let call =
                ToolCall { id: c.id.unwrap_or_else(ToolCall::new_id), name: c.function.name, arguments };
            out.push_back(Ok(Event::ToolCall(ToolCallDelta::whole(self.calls, call))));
            self.calls += 1;
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
    fn images_tools_and_options_in_ollamas_shape() {
        use sluice_core::media::Image;
        let mut user = Message::new(Role::User, "look");
        user.images.push(Image { url: "data:image/png;base64,AAAA".into(), detail: None });
        let mut result = Message::new(Role::Tool, "42");
        result.name = Some("f".into());
        let mut req = ChatRequest {
            model: "m".into(),
            input: Input::Chat(vec![user, result]),
            response_format: Some(ResponseFormat::JsonObject),
            think: Some(Think::Level("high".into())),
            ..Default::default()
        };
        let (_, body) = encode_request(&req, false).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["messages"][0]["images"], serde_json::json!(["AAAA"]));
        assert_eq!(v["messages"][1]["tool_name"], "f");
        assert_eq!((v["format"].as_str(), v["think"].as_str()), (Some("json"), Some("high")));
        // What Ollama cannot be told is refused, not dropped.
        req.tool_choice = Some(ToolChoice::Required);
        assert!(matches!(encode_request(&req, false), Err(BackendError::Unsupported(_))));
        req.tool_choice = None;
        let Input::Chat(m) = &mut req.input else { unreachable!() };
        m[0].images[0].url = "https://example.com/cat.png".into();
        assert!(matches!(encode_request(&req, false), Err(BackendError::Unsupported(_))));
    }

    #[test]
    fn thinking_and_whole_tool_calls_get_stable_ids() {
        let mut f = OllamaNdjson::default();
        let mut out = EventQueue::new();
        f.feed(b"{\"message\":{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\"hm\"},\"done\":false}\n{\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":{\"a\":1}}},{\"function\":{\"name\":\"g\",\"arguments\":{}}}]},\"done\":false}\n{\"done\":true,\"done_reason\":\"stop\"}\n", &mut out);
        let ev: Vec<_> = out.into_iter().map(Result::unwrap).collect();
        assert_eq!(ev[0], Event::Reasoning("hm".into()));
        let (Event::ToolCall(a), Event::ToolCall(b)) = (&ev[1], &ev[2]) else { panic!("{ev:?}") };
        assert_eq!((a.index, a.name.as_deref(), a.arguments.as_str()), (0, Some("f"), "{\"a\":1}"));
        assert_eq!((b.index, b.name.as_deref()), (1, Some("g")));
        assert!(a.id.as_deref().is_some_and(|id| id.starts_with("call_")) && a.id != b.id);
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
