//! Responses API requests → the canonical [`ChatRequest`], with validation that names
//! the offending field (`input[2].content[0].type`, `tools[1].type`).
//!
//! Input items become chat messages: `message` items by role, `function_call` items
//! the tool calls of an assistant message, `function_call_output` items `tool`
//! messages, `reasoning` items the reasoning of the next assistant message. Fields the
//! canonical request has no place for are carried under the Responses dialect, so the
//! carry rules name them when dropped and refuse them when they would change the
//! answer ([`sluice_core::carry`]).

use serde_json::Value;
use sluice_protocol::{openai as oa, responses as wire};

use sluice_core::{
    carry::{Carried, WireDialect},
    chat::{ChatRequest, Input, Message, Role, Sampling},
    error::GatewayError,
    output::{ResponseFormat, Think},
    tools::{Tool, ToolCall, ToolChoice},
};

use super::Echo;
use crate::api::extras;

fn bad(field: &str, message: impl std::fmt::Display) -> GatewayError {
    GatewayError::bad_request(format!("{field}: {message}"), Some(field))
}

/// Validates a Responses request and converts it, after the `previous` items its
/// `previous_response_id` continues (none without one); the [`Echo`] is what the
/// response object repeats of the request.
pub fn request(r: wire::ResponseRequest, previous: Vec<Value>) -> Result<(ChatRequest, Echo), GatewayError> {
    if r.model.is_empty() {
        return Err(GatewayError::bad_request("'model' must not be empty", Some("model")));
    }
    for (name, what) in [("temperature", (r.temperature, 2.0)), ("top_p", (r.top_p, 1.0))] {
        if let (Some(x), hi) = what
            && !(0.0..=hi).contains(&x)
        {
            return Err(bad(name, format_args!("must be between 0 and {hi}, got {x}")));
        }
    }
    if r.max_output_tokens == Some(0) {
        return Err(bad("max_output_tokens", "must be at least 1"));
    }
    if let Some(m) = &r.metadata
        && !(m.is_null() || m.as_object().is_some_and(|o| o.values().all(Value::is_string)))
    {
        return Err(bad("metadata", "must be an object of string values"));
    }
    let mut messages = Vec::new();
    if let Some(text) = r.instructions.clone().filter(|t| !t.is_empty()) {
        messages.push(Message::new(Role::System, text));
    }
    // Reasoning items given back belong to the assistant turn that follows them.
    let mut reasoning = None;
    input_items(previous, "previous_response_id", &mut messages, &mut reasoning)?;
    match r.input.clone() {
        Some(Value::String(text)) => messages.push(Message::new(Role::User, text)),
        Some(Value::Array(items)) => input_items(items, "input", &mut messages, &mut reasoning)?,
        None | Some(Value::Null) => {}
        Some(_) => return Err(bad("input", "must be a string or a list of input items")),
    }
    if !messages.iter().any(|m| m.role != Role::System) {
        return Err(bad("input", "must hold at least one message or item"));
    }
    let tools = tools(r.tools.clone().unwrap_or_default())?;
    let tool_choice =
        r.tool_choice.clone().filter(|v| !v.is_null()).map(|v| tool_choice(&v, &tools)).transpose()?;

    let echo = Echo::of(&r);
    let mut carried =
        Carried { dialect: Some(WireDialect::Responses), fields: r.extra, ..Carried::default() };
    if let Some(user) = &r.user {
        carried.fields.insert("user".into(), user.clone().into());
    }
    if let Some(m) = r.metadata.clone().filter(|m| !m.is_null()) {
        carried.fields.insert("metadata".into(), m);
    }
    let mut response_format = None;
    if let Some(text) = &r.text {
        for (k, v) in &text.extra {
            carried.fields.insert(format!("text.{k}"), v.clone());
        }
        response_format = text.format.clone().map(format).transpose()?.flatten();
    }
    let mut think = None;
    if let Some(reasoning) = &r.reasoning {
        for (k, v) in &reasoning.extra {
            carried.fields.insert(format!("reasoning.{k}"), v.clone());
        }
        think = reasoning.effort.clone().map(Think::Level);
    }
    let req = ChatRequest {
        model: r.model,
        input: Input::Chat(messages),
        sampling: Sampling {
            max_tokens: r.max_output_tokens,
            temperature: r.temperature,
            top_p: r.top_p,
            ..Default::default()
        },
        stream: r.stream.unwrap_or(false),
        user: r.user,
        carried,
        tools,
        tool_choice,
        parallel_tool_calls: r.parallel_tool_calls,
        response_format,
        logprobs: None,
        think,
    };
    Ok((req, echo))
}

/// The input items, in order, as chat messages; errors name `field[i]`; `reasoning`
/// is given back reasoning still waiting for its assistant turn.
fn input_items(
    items: Vec<Value>,
    field: &str,
    out: &mut Vec<Message>,
    reasoning: &mut Option<String>,
) -> Result<(), GatewayError> {
    for (i, item) in items.into_iter().enumerate() {
        let at = format!("{field}[{i}]");
        let Value::Object(mut o) = item else {
            return Err(bad(&at, "must be an object"));
        };
        let kind = match o.get("type") {
            None => "message".to_owned(),
            Some(Value::String(t)) => t.clone(),
            Some(_) => return Err(bad(&format!("{at}.type"), "must be a string")),
        };
        match kind.as_str() {
            "message" => {
                let mut m = message(&at, &mut o)?;
                if m.role == Role::Assistant {
                    m.reasoning = reasoning.take();
                }
                out.push(m);
            }
            "function_call" => {
                let call = ToolCall {
                    id: string(&o, &at, "call_id")?,
                    name: string(&o, &at, "name")?,
                    arguments: string(&o, &at, "arguments")?,
                };
                // Calls of one turn join the assistant message just before them.
                match out.last_mut() {
                    Some(m)
                        if m.role == Role::Assistant && (!m.tool_calls.is_empty() || reasoning.is_none()) =>
                    {
                        m.tool_calls.push(call);
                    }
                    _ => {
                        let mut m = Message::new(Role::Assistant, String::new());
                        m.reasoning = reasoning.take();
                        m.tool_calls.push(call);
                        out.push(m);
                    }
                }
            }
            "function_call_output" => {
                let call_id = string(&o, &at, "call_id")?;
                let content = match o.remove("output") {
                    Some(Value::String(s)) => s,
                    Some(Value::Array(parts)) => {
                        let mut texts = Vec::new();
                        for (j, p) in parts.iter().enumerate() {
                            match (
                                p.get("type").and_then(Value::as_str),
                                p.get("text").and_then(Value::as_str),
                            ) {
                                (Some("input_text" | "output_text"), Some(t)) => texts.push(t.to_owned()),
                                _ => {
                                    return Err(bad(
                                        &format!("{at}.output[{j}]"),
                                        "only input_text parts are supported in a function_call_output",
                                    ));
                                }
                            }
                        }
                        texts.join("\n")
                    }
                    _ => return Err(bad(&format!("{at}.output"), "is required (a string)")),
                };
                let name =
                    out.iter().flat_map(|m| &m.tool_calls).find(|c| c.id == call_id).map(|c| c.name.clone());
                let mut m = Message::new(Role::Tool, content);
                m.tool_call_id = Some(call_id);
                m.name = name;
                out.push(m);
            }
            "reasoning" => {
                let mut text = String::new();
                if let Some(Value::Array(parts)) = o.get("content") {
                    for p in parts {
                        if let Some(t) = p.get("text").and_then(Value::as_str) {
                            text.push_str(t);
                        }
                    }
                }
                if !text.is_empty() {
                    reasoning.get_or_insert_with(String::new).push_str(&text);
                }
            }
            "item_reference" => {
                return Err(bad(
                    &format!("{at}.type"),
                    "items cannot be referenced by id; send the item itself, or continue a stored \
                     response with previous_response_id",
                ));
            }
            other => {
                return Err(bad(
                    &format!("{at}.type"),
                    format_args!(
                        "input items of type '{other}' are not supported (message, function_call, \
                         function_call_output and reasoning are)"
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn string(o: &serde_json::Map<String, Value>, at: &str, name: &str) -> Result<String, GatewayError> {
    match o.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(bad(&format!("{at}.{name}"), "is required (a string)")),
    }
}

/// A `message` item: its role and its text and image parts.
fn message(at: &str, o: &mut serde_json::Map<String, Value>) -> Result<Message, GatewayError> {
    let role = match o.get("role").and_then(Value::as_str) {
        Some(r @ ("user" | "assistant" | "system" | "developer")) => Role::parse(r).unwrap_or(Role::User),
        Some(other) => {
            return Err(bad(
                &format!("{at}.role"),
                format_args!("must be 'user', 'assistant', 'system' or 'developer', got '{other}'"),
            ));
        }
        None => return Err(bad(&format!("{at}.role"), "is required")),
    };
    let mut m = Message::new(role, String::new());
    match o.remove("content") {
        Some(Value::String(s)) => m.content = s,
        Some(Value::Array(parts)) => {
            let mut texts = Vec::new();
            for (j, part) in parts.into_iter().enumerate() {
                let field = format!("{at}.content[{j}]");
                let kind = part.get("type").and_then(Value::as_str).unwrap_or_default();
                match kind {
                    "input_text" | "output_text" => match part.get("text").and_then(Value::as_str) {
                        Some(t) => texts.push(t.to_owned()),
                        None => return Err(bad(&format!("{field}.text"), "is required (a string)")),
                    },
                    "input_image" if role == Role::User => {
                        let detail = part.get("detail").and_then(Value::as_str).map(str::to_owned);
                        match part.get("image_url").and_then(Value::as_str) {
                            Some(url) => m.images.push(extras::image_url(
                                &format!("{field}.image_url"),
                                url.to_owned(),
                                detail.filter(|d| d != "auto"),
                            )?),
                            None => {
                                return Err(bad(
                                    &format!("{field}.image_url"),
                                    "is required (an http(s) or data: URL; uploaded files are not supported)",
                                ));
                            }
                        }
                    }
                    "input_image" => return Err(bad(&field, "images are only allowed in user messages")),
                    other => {
                        return Err(bad(
                            &format!("{field}.type"),
                            format_args!(
                                "content parts of type '{other}' are not supported (input_text, \
                                 output_text and input_image are)"
                            ),
                        ));
                    }
                }
            }
            m.content = texts.join("\n");
        }
        _ => return Err(bad(&format!("{at}.content"), "is required (a string or a list of parts)")),
    }
    Ok(m)
}

/// Function tools, checked as chat completions' are; any built-in tool is refused.
fn tools(wire: Vec<Value>) -> Result<Vec<Tool>, GatewayError> {
    let mut out = Vec::with_capacity(wire.len());
    for (i, t) in wire.into_iter().enumerate() {
        let kind = t.get("type").and_then(Value::as_str).unwrap_or_default().to_owned();
        if kind != "function" {
            return Err(bad(
                &format!("tools[{i}].type"),
                format_args!("only 'function' tools are supported, got '{kind}'"),
            ));
        }
        let f: oa::FunctionDef = serde_json::from_value(t)
            .map_err(|e| bad(&format!("tools[{i}]"), format_args!("not a function tool: {e}")))?;
        out.push(oa::Tool { kind, function: Some(f) });
    }
    // The same checks as chat completions; the field paths in Responses' shape.
    extras::tools(Some(out)).map_err(|e| match e {
        GatewayError::BadRequest { message, param } => GatewayError::BadRequest {
            message: message.replace("].function.", "]."),
            param: param.map(|p| p.replace("].function.", "].")),
        },
        e => e,
    })
}

/// `tool_choice`: a mode, or one function that must be among the tools.
fn tool_choice(v: &Value, tools: &[Tool]) -> Result<ToolChoice, GatewayError> {
    let field = "tool_choice";
    let choice = match v {
        Value::String(s) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => {
                return Err(bad(
                    field,
                    format_args!("must be 'auto', 'none', 'required' or a function, got '{other}'"),
                ));
            }
        },
        Value::Object(o) => {
            match (o.get("type").and_then(Value::as_str), o.get("name").and_then(Value::as_str)) {
                (Some("function"), Some(name)) => ToolChoice::Function(name.to_owned()),
                (Some("function"), None) => return Err(bad("tool_choice.name", "is required")),
                (kind, _) => {
                    return Err(bad(
                        "tool_choice.type",
                        format_args!(
                            "only {{\"type\":\"function\",\"name\":…}} is supported, got '{}'",
                            kind.unwrap_or_default()
                        ),
                    ));
                }
            }
        }
        _ => return Err(bad(field, "must be a string or an object")),
    };
    match &choice {
        ToolChoice::Required if tools.is_empty() => Err(bad(field, "'required' needs 'tools'")),
        ToolChoice::Function(name) if !tools.iter().any(|t| &t.name == name) => {
            Err(bad(field, format_args!("no tool named '{name}' in 'tools'")))
        }
        _ => Ok(choice),
    }
}

/// `text.format`; `text` is the default and asks for nothing.
fn format(f: Value) -> Result<Option<ResponseFormat>, GatewayError> {
    let kind = f.get("type").and_then(Value::as_str).unwrap_or_default();
    Ok(match kind {
        "text" => None,
        "json_object" => Some(ResponseFormat::JsonObject),
        "json_schema" => {
            let name = match f.get("name").and_then(Value::as_str) {
                Some(n) if !n.is_empty() => n.to_owned(),
                _ => return Err(bad("text.format.name", "is required for json_schema")),
            };
            let schema = match f.get("schema") {
                Some(s) if s.is_object() => s.clone(),
                _ => return Err(bad("text.format.schema", "a JSON Schema object is required")),
            };
            Some(ResponseFormat::JsonSchema {
                name: Some(name),
                description: f.get("description").and_then(Value::as_str).map(str::to_owned),
                schema,
                strict: f.get("strict").and_then(Value::as_bool),
            })
        }
        other => {
            return Err(bad(
                "text.format.type",
                format_args!("must be 'text', 'json_object' or 'json_schema', got '{other}'"),
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::parse_json;

    fn convert(json: &str) -> Result<ChatRequest, GatewayError> {
        request(parse_json(json.as_bytes())?, Vec::new()).map(|(r, _)| r)
    }

    #[test]
    fn items_become_a_conversation() {
        let r = convert(
            r#"{"model":"m","instructions":"be brief","input":[
                {"role":"user","content":[{"type":"input_text","text":"weather?"},
                  {"type":"input_image","image_url":"data:image/png;base64,iVBORw0KGgo="}]},
                {"type":"reasoning","id":"rs_1","summary":[],"content":[{"type":"reasoning_text","text":"hm"}]},
                {"type":"function_call","call_id":"c1","name":"get","arguments":"{}"},
                {"type":"function_call","call_id":"c2","name":"get","arguments":"{\"a\":1}"},
                {"type":"function_call_output","call_id":"c1","output":"sunny"},
                {"type":"message","role":"assistant","content":[{"type":"output_text","text":"ok"}]},
                {"role":"developer","content":"again"}],
               "tools":[{"type":"function","name":"get","parameters":{"type":"object"}}],
               "tool_choice":{"type":"function","name":"get"},
               "text":{"format":{"type":"json_schema","name":"w","schema":{"type":"object"},"strict":true}},
               "reasoning":{"effort":"low","summary":"auto"},"max_output_tokens":9,"store":true}"#,
        )
        .unwrap();
        let Input::Chat(m) = &r.input else { panic!() };
        let roles: Vec<_> = m.iter().map(|m| m.role).collect();
        use Role::*;
        assert_eq!(roles, [System, User, Assistant, Tool, Assistant, System]);
        assert_eq!(m[1].images.len(), 1);
        assert_eq!(m[2].tool_calls.len(), 2, "one turn's calls join one message");
        assert_eq!(m[2].reasoning.as_deref(), Some("hm"));
        assert_eq!((m[3].tool_call_id.as_deref(), m[3].name.as_deref()), (Some("c1"), Some("get")));
        assert_eq!(r.tool_choice, Some(ToolChoice::Function("get".into())));
        assert!(matches!(r.response_format, Some(ResponseFormat::JsonSchema { strict: Some(true), .. })));
        assert_eq!(r.think, Some(Think::Level("low".into())));
        assert_eq!(r.sampling.max_tokens, Some(9));
        assert_eq!(r.carried.dialect, Some(WireDialect::Responses));
        assert!(r.carried.fields.contains_key("reasoning.summary"));
        assert!(!r.carried.fields.contains_key("store"), "store is Sluice's own, not carried");
    }

    #[test]
    fn a_previous_response_comes_before_the_input_and_instructions_first() {
        let previous = serde_json::json!([
            {"type":"message","role":"user","content":[{"type":"input_text","text":"weather?"}]},
            {"type":"reasoning","id":"rs_1","summary":[],"content":[{"type":"reasoning_text","text":"hm"}],"status":"completed"},
            {"type":"function_call","id":"fc_1","call_id":"c1","name":"get","arguments":"{}","status":"completed"}
        ]);
        let Value::Array(previous) = previous else { panic!() };
        let body = r#"{"model":"m","instructions":"be brief","previous_response_id":"resp_1",
                       "input":[{"type":"function_call_output","call_id":"c1","output":"sunny"}]}"#;
        let (r, echo) = request(parse_json(body.as_bytes()).unwrap(), previous).unwrap();
        let Input::Chat(m) = &r.input else { panic!() };
        let roles: Vec<_> = m.iter().map(|m| m.role).collect();
        use Role::*;
        assert_eq!(roles, [System, User, Assistant, Tool]);
        assert_eq!(m[2].reasoning.as_deref(), Some("hm"), "the previous output's reasoning joins its call");
        assert_eq!(m[3].name.as_deref(), Some("get"), "the output answers the previous response's call");
        assert_eq!(echo.previous_response_id.as_deref(), Some("resp_1"));
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{"input":"hi"}"#, "model"),
            (r#"{"model":"m"}"#, "input"),
            (r#"{"model":"m","input":3}"#, "input"),
            (r#"{"model":"m","input":"hi","tools":[{"type":"web_search"}]}"#, "tools[0].type"),
            (r#"{"model":"m","input":"hi","tools":[{"type":"function","name":"a b"}]}"#, "tools[0].name"),
            (r#"{"model":"m","input":"hi","tool_choice":"required"}"#, "tool_choice"),
            (r#"{"model":"m","input":"hi","tool_choice":{"type":"file_search"}}"#, "tool_choice.type"),
            (r#"{"model":"m","input":[{"role":"wizard","content":"x"}]}"#, "input[0].role"),
            (
                r#"{"model":"m","input":[{"role":"user","content":[{"type":"input_file","file_id":"f"}]}]}"#,
                "input[0].content[0].type",
            ),
            (r#"{"model":"m","input":[{"type":"item_reference","id":"x"}]}"#, "input[0].type"),
            (
                r#"{"model":"m","input":[{"type":"function_call","name":"f","arguments":"{}"}]}"#,
                "input[0].call_id",
            ),
            (
                r#"{"model":"m","input":"hi","text":{"format":{"type":"json_schema","name":"x"}}}"#,
                "text.format.schema",
            ),
            (r#"{"model":"m","input":"hi","text":{"format":{"type":"yaml"}}}"#, "text.format.type"),
            (r#"{"model":"m","input":"hi","temperature":3}"#, "temperature"),
            (r#"{"model":"m","input":"hi","max_output_tokens":0}"#, "max_output_tokens"),
        ];
        for (body, field) in cases {
            let err = convert(body).unwrap_err();
            assert_eq!(err.status_code(), 400, "{body}");
            assert_eq!(err.param(), Some(field), "{body}: {}", err.client_message());
            assert!(err.client_message().contains(field), "{body}: {}", err.client_message());
        }
    }
}
