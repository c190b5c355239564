//! Ollama requests → the canonical [`ChatRequest`], with validation that names the
//! offending field.

use sluice_protocol::ollama as ol;

use sluice_core::{
    carry::{Carried, Fields, WireDialect},
    chat::{ChatRequest, Input, KeepAlive, Message, Role, Sampling},
    error::GatewayError,
    output::{ResponseFormat, Think},
    tools::ToolCall,
};

/// The carry of an Ollama request: its unmodeled top-level fields, `keep_alive` (an
/// Ollama upstream manages its own memory by it) and the options Sluice does not map.
fn carried(
    mut fields: Fields,
    keep_alive: Option<&serde_json::Value>,
    options: Option<&mut ol::Options>,
) -> Carried {
    if let Some(k) = keep_alive {
        fields.insert("keep_alive".into(), k.clone());
    }
    let mut c = Carried { dialect: Some(WireDialect::Ollama), fields, ..Carried::default() };
    if let Some(o) = options {
        c.options = std::mem::take(&mut o.extra);
        if let Some(n) = o.num_ctx {
            c.options.insert("num_ctx".into(), n.into());
        }
    }
    c
}
use crate::api::{extras, parse_json};

fn sampling(o: Option<ol::Options>) -> Result<Sampling, GatewayError> {
    let Some(o) = o else { return Ok(Sampling::default()) };
    if o.temperature.is_some_and(|t| !(0.0..=100.0).contains(&t)) {
        return Err(GatewayError::bad_request(
            "options.temperature must not be negative",
            Some("options.temperature"),
        ));
    }
    if o.top_p.is_some_and(|p| !(0.0..=1.0).contains(&p)) {
        return Err(GatewayError::bad_request(
            "options.top_p must be between 0 and 1",
            Some("options.top_p"),
        ));
    }
    Ok(Sampling {
        // Ollama: -1 is unlimited, -2 fills the context; both mean "no cap" here.
        max_tokens: o.num_predict.filter(|n| *n > 0).map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        temperature: o.temperature,
        top_p: o.top_p,
        top_k: o.top_k,
        min_p: o.min_p,
        repeat_penalty: o.repeat_penalty,
        presence_penalty: o.presence_penalty,
        frequency_penalty: o.frequency_penalty,
        seed: o.seed,
        stop: crate::api::stop_sequences(o.stop.map(|s| s.into_vec()).unwrap_or_default(), "options.stop")?,
    })
}

/// Ollama's `format`: `"json"`, or a JSON Schema object.
fn format(format: Option<serde_json::Value>) -> Result<Option<ResponseFormat>, GatewayError> {
    let bad =
        || GatewayError::bad_request("'format' must be \"json\" or a JSON Schema object", Some("format"));
    match format {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
        Some(serde_json::Value::String(s)) if s == "json" => Ok(Some(ResponseFormat::JsonObject)),
        Some(schema @ serde_json::Value::Object(_)) => {
            Ok(Some(ResponseFormat::JsonSchema { name: None, description: None, schema, strict: None }))
        }
        Some(_) => Err(bad()),
    }
}

/// Ollama's `think`: a switch, or a level.
fn think(v: Option<serde_json::Value>) -> Result<Option<Think>, GatewayError> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Bool(true)) => Ok(Some(Think::On)),
        Some(serde_json::Value::Bool(false)) => Ok(Some(Think::Off)),
        Some(serde_json::Value::String(s)) if matches!(s.as_str(), "low" | "medium" | "high") => {
            Ok(Some(Think::Level(s)))
        }
        Some(_) => Err(GatewayError::bad_request(
            "'think' must be true, false, \"low\", \"medium\" or \"high\"",
            Some("think"),
        )),
    }
}

/// `logprobs` and `top_logprobs` as the canonical `Some(top)`.
fn logprobs(on: Option<bool>, top: Option<u8>) -> Result<Option<u8>, GatewayError> {
    match (on.unwrap_or(false), top) {
        (_, Some(n)) if n > 20 => Err(GatewayError::bad_request(
            format!("'top_logprobs' must be between 0 and 20, got {n}"),
            Some("top_logprobs"),
        )),
        (true, top) => Ok(Some(top.unwrap_or(0))),
        (false, _) => Ok(None),
    }
}

/// History message `i` with its images, tool calls and tool result. Ollama's calls
/// carry no ids: each gets one made from its position, and a tool result without a
/// `tool_call_id` is matched to the earliest unanswered call (of its `tool_name`, when
/// given), so the history reads right to an OpenAI upstream.
fn messages(wire: Vec<ol::Message>) -> Result<Vec<Message>, GatewayError> {
    let mut out: Vec<Message> = Vec::with_capacity(wire.len());
    let mut unanswered: Vec<(String, String)> = Vec::new();
    for (i, m) in wire.into_iter().enumerate() {
        let role = crate::api::role_at(&m.role, i)?;
        let mut msg = Message::new(role, m.content);
        msg.extra = m.extra;
        if m.role != role.as_str() {
            msg.extra.insert("role".into(), m.role.into());
        }
        for (j, image) in m.images.unwrap_or_default().into_iter().enumerate() {
            msg.images.push(extras::image_base64(&format!("messages[{i}].images[{j}]"), image)?);
        }
        for (j, c) in m.tool_calls.unwrap_or_default().into_iter().enumerate() {
            let arguments = match c.function.arguments {
                serde_json::Value::Null => "{}".to_owned(),
                serde_json::Value::String(s) => s,
                v => v.to_string(),
            };
            let id = c.id.unwrap_or_else(|| format!("call_{i}_{j}"));
            unanswered.push((id.clone(), c.function.name.clone()));
            msg.tool_calls.push(ToolCall { id, name: c.function.name, arguments });
        }
        msg.reasoning = m.thinking.filter(|t| !t.is_empty());
        msg.name = m.tool_name;
        msg.tool_call_id = m.tool_call_id;
        if role == Role::Tool {
            let answered = match &msg.tool_call_id {
                Some(id) => unanswered.iter().position(|(c, _)| c == id),
                None => unanswered.iter().position(|(_, name)| msg.name.as_ref().is_none_or(|n| n == name)),
            };
            if let Some(at) = answered {
                let (id, name) = unanswered.remove(at);
                msg.tool_call_id.get_or_insert(id);
                msg.name.get_or_insert(name);
            }
        }
        out.push(msg);
    }
    Ok(out)
}

fn check_model(model: &str) -> Result<(), GatewayError> {
    if model.is_empty() {
        return Err(GatewayError::bad_request("model is required", Some("model")));
    }
    Ok(())
}

/// What `POST /api/chat` makes of a body: parsed, validated and converted, with the
/// `keep_alive` it asks for (the handler then applies who may ask for what).
pub fn chat_body(body: &[u8]) -> Result<(ChatRequest, Option<KeepAlive>), GatewayError> {
    let r: ol::ChatRequest = parse_json(body)?;
    let keep_alive = keep_alive(r.keep_alive.as_ref())?;
    Ok((chat_request(r)?, keep_alive))
}

/// What `POST /api/generate` makes of a body, as [`chat_body`].
pub fn generate_body(body: &[u8]) -> Result<(ChatRequest, Option<KeepAlive>), GatewayError> {
    let r: ol::GenerateRequest = parse_json(body)?;
    let keep_alive = keep_alive(r.keep_alive.as_ref())?;
    Ok((generate_request(r)?, keep_alive))
}

/// Ollama's `keep_alive` field, as asked (a 400 naming it if it is no duration).
pub fn keep_alive(v: Option<&serde_json::Value>) -> Result<Option<KeepAlive>, GatewayError> {
    v.map(|v| KeepAlive::parse_value(v).map_err(|m| GatewayError::bad_request(m, Some("keep_alive"))))
        .transpose()
}

/// Validates an `/api/chat` request and converts it.
pub fn chat_request(mut r: ol::ChatRequest) -> Result<ChatRequest, GatewayError> {
    check_model(&r.model)?;
    let carried = carried(std::mem::take(&mut r.extra), r.keep_alive.as_ref(), r.options.as_mut());
    Ok(ChatRequest {
        response_format: format(r.format)?,
        input: Input::Chat(messages(r.messages)?),
        sampling: sampling(r.options)?,
        tools: extras::tools(r.tools)?,
        think: think(r.think)?,
        logprobs: logprobs(r.logprobs, r.top_logprobs)?,
        model: r.model,
        stream: r.stream.unwrap_or(true),
        carried,
        ..ChatRequest::default()
    })
}

/// Validates an `/api/generate` request and converts it.
/// Images make the prompt a one-turn chat (the chat template places them); a raw prompt
/// has nowhere to put them.
pub fn generate_request(mut r: ol::GenerateRequest) -> Result<ChatRequest, GatewayError> {
    check_model(&r.model)?;
    let carried = carried(std::mem::take(&mut r.extra), r.keep_alive.as_ref(), r.options.as_mut());
    let raw = r.raw.unwrap_or(false);
    let images = r.images.take().unwrap_or_default();
    let input = if images.is_empty() {
        Input::Text { prompt: r.prompt, system: r.system, raw }
    } else if raw {
        return Err(GatewayError::bad_request(
            "'images' need the chat template; a raw prompt cannot carry them",
            Some("images"),
        ));
    } else {
        let mut user = Message::new(Role::User, r.prompt);
        for (j, image) in images.into_iter().enumerate() {
            user.images.push(extras::image_base64(&format!("images[{j}]"), image)?);
        }
        Input::Chat(r.system.map(|s| Message::new(Role::System, s)).into_iter().chain([user]).collect())
    };
    Ok(ChatRequest {
        response_format: format(r.format)?,
        input,
        sampling: sampling(r.options)?,
        think: think(r.think)?,
        logprobs: logprobs(r.logprobs, r.top_logprobs)?,
        model: r.model,
        stream: r.stream.unwrap_or(true),
        carried,
        ..ChatRequest::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::parse_json;

    #[test]
    fn chat_defaults_to_streaming_and_maps_options() {
        let r: ol::ChatRequest = parse_json(
            br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"options":{"num_predict":-1,"seed":4,"stop":["a"]}}"#,
        )
        .unwrap();
        let r = chat_request(r).unwrap();
        assert!(r.stream);
        assert_eq!(r.sampling.max_tokens, None);
        assert_eq!(r.sampling.seed, Some(4));
        assert_eq!(r.sampling.stop, vec!["a"]);
    }

    #[test]
    fn tool_results_find_their_calls() {
        let r: ol::ChatRequest = parse_json(
            br#"{"model":"m","format":{"type":"object"},"think":true,"messages":[
                {"role":"user","content":"weather and time?"},
                {"role":"assistant","content":"","tool_calls":[
                    {"function":{"name":"weather","arguments":{"city":"Oslo"}}},
                    {"function":{"name":"time","arguments":{}}}]},
                {"role":"tool","content":"12:00","tool_name":"time"},
                {"role":"tool","content":"sunny"}]}"#,
        )
        .unwrap();
        let r = chat_request(r).unwrap();
        assert!(matches!(r.response_format, Some(ResponseFormat::JsonSchema { name: None, .. })));
        assert_eq!(r.think, Some(Think::On));
        let Input::Chat(m) = &r.input else { panic!() };
        assert_eq!(m[1].tool_calls[0].arguments, r#"{"city":"Oslo"}"#);
        assert_eq!(m[2].tool_call_id, Some(m[1].tool_calls[1].id.clone()), "matched by tool_name");
        assert_eq!(m[3].tool_call_id, Some(m[1].tool_calls[0].id.clone()), "the earliest unanswered call");
        assert_eq!(m[3].name.as_deref(), Some("weather"));
    }

    #[test]
    fn generate_with_images_is_a_chat_turn() {
        let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
        let body =
            format!(r#"{{"model":"m","prompt":"what is it?","system":"be brief","images":["{png}"]}}"#);
        let r = generate_request(parse_json(body.as_bytes()).unwrap()).unwrap();
        let Input::Chat(m) = &r.input else { panic!("{:?}", r.input) };
        assert_eq!((m[0].role, m[1].role), (Role::System, Role::User));
        assert_eq!(m[1].images[0].base64(), Some(png));
        let raw = format!(r#"{{"model":"m","prompt":"x","raw":true,"images":["{png}"]}}"#);
        assert_eq!(
            generate_request(parse_json(raw.as_bytes()).unwrap()).unwrap_err().param(),
            Some("images")
        );
    }

    #[test]
    fn invalid_fields_are_named() {
        let r: ol::ChatRequest =
            parse_json(br#"{"model":"m","messages":[{"role":"robot","content":"x"}]}"#).unwrap();
        assert_eq!(chat_request(r).unwrap_err().param(), Some("messages[0].role"));
        let r: ol::GenerateRequest = parse_json(br#"{"model":"m","prompt":"x","format":"yaml"}"#).unwrap();
        assert_eq!(generate_request(r).unwrap_err().param(), Some("format"));
        let r: ol::GenerateRequest = parse_json(br#"{"model":"m","prompt":"x","think":"very"}"#).unwrap();
        assert_eq!(generate_request(r).unwrap_err().param(), Some("think"));
        let r: ol::ChatRequest =
            parse_json(br#"{"model":"m","messages":[{"role":"user","content":"x","images":["@@"]}]}"#)
                .unwrap();
        assert_eq!(chat_request(r).unwrap_err().param(), Some("messages[0].images[0]"));
        let r: ol::GenerateRequest = parse_json(br#"{"model":"","prompt":"x"}"#).unwrap();
        assert_eq!(generate_request(r).unwrap_err().param(), Some("model"));
        // A number past f32's range is refused, not turned into infinity (which would
        // reach an upstream as `null`).
        let err = parse_json::<ol::GenerateRequest>(
            br#"{"model":"m","prompt":"x","options":{"repeat_penalty":1e39}}"#,
        )
        .unwrap_err();
        assert_eq!(err.status_code(), 400);
        assert!(err.client_message().contains("out of range for a 32-bit float"), "{}", err.client_message());
    }

    /// The engine's stop matcher runs for every token: 16 sequences of at most 256
    /// bytes, as on the OpenAI side.
    #[test]
    fn stop_sequences_are_bounded() {
        let with_stop = |stop: serde_json::Value| {
            let body = serde_json::json!({"model": "m", "prompt": "x", "options": {"stop": stop}});
            generate_request(parse_json(body.to_string().as_bytes()).unwrap())
        };
        let sixteen: Vec<String> = (0..16).map(|i| i.to_string()).collect();
        assert_eq!(with_stop(serde_json::json!(sixteen)).unwrap().sampling.stop.len(), 16);
        let seventeen: Vec<String> = (0..17).map(|i| i.to_string()).collect();
        let err = with_stop(serde_json::json!(seventeen)).unwrap_err();
        assert_eq!(err.param(), Some("options.stop"));
        assert!(err.client_message().contains("at most 16"), "{}", err.client_message());
        assert!(with_stop(serde_json::json!(["x".repeat(256)])).is_ok());
        let err = with_stop(serde_json::json!(["x".repeat(257)])).unwrap_err();
        assert_eq!(err.param(), Some("options.stop"));
    }
}
