//! OpenAI requests → the canonical [`ChatRequest`], with validation that names the
//! offending field.

use sluice_protocol::openai as oa;

use sluice_core::{
    carry::{Carried, WireDialect},
    chat::{ChatRequest, Input, Message, Role, Sampling},
    error::GatewayError,
    output::{ResponseFormat, Think},
    tools::{Tool, ToolChoice},
};

use crate::api::{extras, parse_json};

fn check_range(name: &str, v: Option<f32>, lo: f32, hi: f32) -> Result<(), GatewayError> {
    match v {
        Some(x) if !(lo..=hi).contains(&x) => Err(GatewayError::bad_request(
            format!("'{name}' must be between {lo} and {hi}, got {x}"),
            Some(name),
        )),
        _ => Ok(()),
    }
}

fn check_common(
    model: &str,
    n: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
) -> Result<(), GatewayError> {
    if model.is_empty() {
        return Err(GatewayError::bad_request("'model' must not be empty", Some("model")));
    }
    if n.is_some_and(|n| n != 1) {
        return Err(GatewayError::bad_request("only n = 1 is supported", Some("n")));
    }
    check_range("temperature", temperature, 0.0, 2.0)?;
    check_range("top_p", top_p, 0.0, 1.0)
}

fn max_tokens(v: Option<u32>, name: &str) -> Result<Option<u32>, GatewayError> {
    match v {
        Some(0) => Err(GatewayError::bad_request(format!("'{name}' must be at least 1"), Some(name))),
        v => Ok(v),
    }
}

/// What `POST /v1/chat/completions` makes of a body: parsed, validated and converted
/// (with whether usage is asked for in the stream).
pub fn chat_body(body: &[u8]) -> Result<(ChatRequest, bool), GatewayError> {
    chat_request(parse_json(body)?)
}

/// What `POST /v1/completions` makes of a body: parsed, validated and converted.
pub fn completion_body(body: &[u8]) -> Result<(ChatRequest, bool), GatewayError> {
    completion_request(parse_json(body)?)
}

/// Validates a chat completion request and converts it.
pub fn chat_request(r: oa::ChatCompletionRequest) -> Result<(ChatRequest, bool), GatewayError> {
    check_common(&r.model, r.n, r.temperature, r.top_p)?;
    if r.messages.is_empty() {
        return Err(GatewayError::bad_request(
            "'messages' must contain at least one message",
            Some("messages"),
        ));
    }
    let messages =
        r.messages.into_iter().enumerate().map(|(i, m)| message(i, m)).collect::<Result<_, _>>()?;
    // An empty list asks for nothing: carried as sent to an upstream of this dialect.
    let empty_tools = r.tools.as_ref().is_some_and(Vec::is_empty);
    let tools = extras::tools(r.tools)?;
    let tool_choice = r.tool_choice.map(|c| tool_choice(c, &tools)).transpose()?;
    let logprobs = logprobs(r.logprobs, r.top_logprobs)?;
    let mut carried = Carried { dialect: Some(WireDialect::OpenAi), fields: r.extra, ..Carried::default() };
    if let Some(user) = &r.user {
        // Mapped (the canonical `user`), and named when a backend drops it.
        carried.fields.insert("user".into(), user.clone().into());
    }
    if empty_tools {
        carried.fields.insert("tools".into(), serde_json::Value::Array(Vec::new()));
    }
    if r.max_completion_tokens.is_some() {
        // Reasoning models refuse `max_tokens`: the same upstream dialect gets the name sent.
        carried.fields.insert("max_completion_tokens".into(), r.max_completion_tokens.into());
    }
    let include_usage = r.stream_options.and_then(|o| o.include_usage).unwrap_or(false);
    let max = match r.max_completion_tokens {
        Some(_) => max_tokens(r.max_completion_tokens, "max_completion_tokens")?,
        None => max_tokens(r.max_tokens, "max_tokens")?,
    };
    let req = ChatRequest {
        model: r.model,
        input: Input::Chat(messages),
        sampling: Sampling {
            max_tokens: max,
            temperature: r.temperature,
            top_p: r.top_p,
            presence_penalty: r.presence_penalty,
            frequency_penalty: r.frequency_penalty,
            top_k: r.top_k,
            min_p: r.min_p,
            seed: r.seed,
            stop: stop_list(r.stop)?,
            ..Default::default()
        },
        stream: r.stream.unwrap_or(false),
        user: r.user,
        carried,
        tools,
        tool_choice,
        parallel_tool_calls: r.parallel_tool_calls,
        response_format: r.response_format.map(response_format).transpose()?.flatten(),
        logprobs,
        think: r.reasoning_effort.map(Think::Level),
    };
    Ok((req, include_usage))
}

/// History message `i`: text and image parts, tool calls, the call a tool result
/// answers, the reasoning of an earlier answer.
fn message(i: usize, mut m: oa::ChatMessage) -> Result<Message, GatewayError> {
    let role = crate::api::role_at(&m.role, i)?;
    let mut msg = Message::new(role, String::new());
    // Carried: the participant name, and a role spelled otherwise than Sluice's own.
    msg.extra = std::mem::take(&mut m.extra);
    if let Some(name) = m.name.take() {
        msg.extra.insert("name".into(), name.into());
    }
    if m.role != role.as_str() {
        msg.extra.insert("role".into(), m.role.clone().into());
    }
    match m.content {
        Some(oa::MessageContent::Text(t)) => msg.content = t,
        Some(oa::MessageContent::Parts(parts)) => {
            let mut texts = Vec::new();
            for (j, part) in parts.into_iter().enumerate() {
                let field = format!("messages[{i}].content[{j}]");
                match (part.kind.as_str(), part.text, part.image_url) {
                    ("text", Some(text), _) => texts.push(text),
                    ("image_url", _, Some(image)) if role == Role::User => {
                        msg.images.push(extras::image_url(
                            &format!("{field}.image_url"),
                            image.url,
                            image.detail,
                        )?);
                    }
                    ("image_url", _, Some(_)) => {
                        let m = format!("{field}: images are only allowed in user messages");
                        return Err(GatewayError::bad_request(m, Some(&field)));
                    }
                    (kind @ ("text" | "image_url"), _, _) => {
                        let m = format!("{field}: a '{kind}' part needs its '{kind}' field");
                        return Err(GatewayError::bad_request(m, Some(&field)));
                    }
                    (other, _, _) => {
                        let m = format!("{field}: content parts of type '{other}' are not supported");
                        return Err(GatewayError::bad_request(m, Some(&field)));
                    }
                }
            }
            msg.content = texts.join("\n");
        }
        None => {}
    }
    if let Some(calls) = m.tool_calls.filter(|c| !c.is_empty()) {
        if role != Role::Assistant {
            let field = format!("messages[{i}].tool_calls");
            return Err(GatewayError::bad_request(
                format!("{field}: only assistant messages make tool calls"),
                Some(&field),
            ));
        }
        msg.tool_calls = extras::openai_tool_calls(i, calls)?;
    }
    msg.tool_call_id = m.tool_call_id;
    msg.reasoning = m.reasoning_content;
    Ok(msg)
}

/// `tool_choice`: a mode, or one function that must be among the tools.
fn tool_choice(v: serde_json::Value, tools: &[Tool]) -> Result<ToolChoice, GatewayError> {
    let bad = |m: String| GatewayError::bad_request(format!("tool_choice: {m}"), Some("tool_choice"));
    let choice = match &v {
        serde_json::Value::String(s) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => {
                return Err(bad(format!("must be 'auto', 'none', 'required' or a function, got '{other}'")));
            }
        },
        serde_json::Value::Object(o) => {
            let name = o.get("function").and_then(|f| f.get("name")).and_then(|n| n.as_str());
            match (o.get("type").and_then(|t| t.as_str()), name) {
                (Some("function"), Some(name)) => ToolChoice::Function(name.to_owned()),
                _ => return Err(bad("expected {\"type\":\"function\",\"function\":{\"name\":…}}".into())),
            }
        }
        _ => return Err(bad("must be a string or an object".into())),
    };
    match &choice {
        ToolChoice::Required if tools.is_empty() => Err(bad("'required' needs 'tools'".into())),
        ToolChoice::Function(name) if !tools.iter().any(|t| &t.name == name) => {
            Err(bad(format!("no tool named '{name}' in 'tools'")))
        }
        _ => Ok(choice),
    }
}

/// `response_format`; `text` is the default and asks for nothing.
fn response_format(f: oa::ResponseFormat) -> Result<Option<ResponseFormat>, GatewayError> {
    Ok(match f {
        oa::ResponseFormat::Text => None,
        oa::ResponseFormat::JsonObject => Some(ResponseFormat::JsonObject),
        oa::ResponseFormat::JsonSchema { json_schema: j } => {
            let field = "response_format.json_schema.schema";
            let schema = match j.schema {
                Some(s) if s.is_object() => s,
                _ => {
                    return Err(GatewayError::bad_request(
                        format!("{field}: a JSON Schema object is required"),
                        Some(field),
                    ));
                }
            };
            Some(ResponseFormat::JsonSchema {
                name: Some(j.name),
                description: j.description,
                schema,
                strict: j.strict,
            })
        }
    })
}

/// `logprobs` and `top_logprobs` as the canonical `Some(top)`.
fn logprobs(on: Option<bool>, top: Option<u8>) -> Result<Option<u8>, GatewayError> {
    match (on.unwrap_or(false), top) {
        (_, Some(n)) if n > 20 => Err(GatewayError::bad_request(
            format!("'top_logprobs' must be between 0 and 20, got {n}"),
            Some("top_logprobs"),
        )),
        (false, Some(n)) if n > 0 => {
            Err(GatewayError::bad_request("'top_logprobs' needs 'logprobs': true", Some("top_logprobs")))
        }
        (true, top) => Ok(Some(top.unwrap_or(0))),
        (false, _) => Ok(None),
    }
}

/// Validates a legacy completion request and converts it.
pub fn completion_request(mut r: oa::CompletionRequest) -> Result<(ChatRequest, bool), GatewayError> {
    let n = match r.extra.get("n") {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(v.as_u64().and_then(|n| u32::try_from(n).ok()).unwrap_or(u32::MAX)),
    };
    check_common(&r.model, n, r.temperature, r.top_p)?;
    let prompt = match r.prompt.map(|p| p.into_vec()) {
        Some(mut v) if v.len() == 1 => v.remove(0),
        Some(v) if v.is_empty() => String::new(),
        Some(_) => {
            return Err(GatewayError::bad_request(
                "only one prompt per request is supported",
                Some("prompt"),
            ));
        }
        None => return Err(GatewayError::bad_request("'prompt' is required", Some("prompt"))),
    };
    if let Some(suffix) = r.suffix.take() {
        // Carried: an OpenAI upstream inserts; any other backend refuses it by name.
        r.extra.insert("suffix".into(), suffix.into());
    }
    let include_usage = r.stream_options.and_then(|o| o.include_usage).unwrap_or(false);
    let req = ChatRequest {
        model: r.model,
        input: Input::Text { prompt, system: None, raw: true },
        sampling: Sampling {
            max_tokens: max_tokens(r.max_tokens, "max_tokens")?,
            temperature: r.temperature,
            top_p: r.top_p,
            presence_penalty: r.presence_penalty,
            frequency_penalty: r.frequency_penalty,
            seed: r.seed,
            stop: stop_list(r.stop)?,
            ..Default::default()
        },
        stream: r.stream.unwrap_or(false),
        user: r.user,
        carried: Carried { dialect: Some(WireDialect::OpenAi), fields: r.extra, ..Carried::default() },
        ..ChatRequest::default()
    };
    Ok((req, include_usage))
}

fn stop_list(stop: Option<sluice_protocol::common::OneOrMany>) -> Result<Vec<String>, GatewayError> {
    crate::api::stop_sequences(stop.map(|s| s.into_vec()).unwrap_or_default(), "stop")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::chat::Role;

    fn chat(json: &str) -> Result<(ChatRequest, bool), GatewayError> {
        chat_request(parse_json(json.as_bytes())?)
    }

    #[test]
    fn valid_request_converts() {
        let (r, usage) = chat(
            r#"{"model":"m","messages":[{"role":"developer","content":"be brief"},{"role":"user","content":"hi"}],
               "max_tokens":5,"max_completion_tokens":7,"stop":["x"],"seed":3,"stream":true,
               "stream_options":{"include_usage":true},"unknown_field":1}"#,
        )
        .unwrap();
        assert!(usage && r.stream);
        assert_eq!(r.sampling.max_tokens, Some(7));
        assert_eq!(r.sampling.stop, vec!["x"]);
        let Input::Chat(m) = &r.input else { panic!() };
        assert_eq!(m[0].role, Role::System);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{"messages":[]}"#, "model"),
            (r#"{"model":"m","messages":[]}"#, "messages"),
            (r#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#, "messages[0].role"),
            (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":9}"#, "temperature"),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"top_p":1e39}"#,
                "1e39 is out of range for a 32-bit float",
            ),
            (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0}"#, "max_tokens"),
            (r#"{"model":"m","messages":[{"role":"user","content":"x"}],"n":2}"#, "n"),
            (r#"{"model":"m","messages":"hi"}"#, "messages: invalid type"),
            (r#"{"model":"m","messages":[{"role":"user","content":3}]}"#, "messages[0].content"),
        ];
        for (body, needle) in cases {
            let err = chat(body).unwrap_err();
            assert_eq!(err.status_code(), 400);
            let text = format!("{} {:?}", err.client_message(), err.param());
            assert!(text.contains(needle), "{body}: {text}");
        }
    }

    #[test]
    fn completion_prompt_rules() {
        let r = completion_request(parse_json(br#"{"model":"m","prompt":["a"]}"#).unwrap()).unwrap().0;
        assert!(matches!(r.input, Input::Text { raw: true, .. }));
        assert!(completion_request(parse_json(br#"{"model":"m","prompt":["a","b"]}"#).unwrap()).is_err());
        assert!(completion_request(parse_json(br#"{"model":"m"}"#).unwrap()).is_err());
    }
}
