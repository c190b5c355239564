//! Ollama requests → the canonical [`ChatRequest`], with validation that names the
//! offending field.

use sluice_protocol::ollama as ol;

use sluice_core::{
    carry::{Carried, Fields, WireDialect},
    chat::{ChatRequest, Input, Message, Sampling},
    error::GatewayError,
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

fn check_format(format: &Option<serde_json::Value>) -> Result<(), GatewayError> {
    match format {
        None | Some(serde_json::Value::Null) => Ok(()),
        Some(serde_json::Value::String(s)) if s.is_empty() => Ok(()),
        Some(_) => Err(GatewayError::bad_request(
            "'format' (structured output) is not supported yet",
            Some("format"),
        )),
    }
}

fn check_model(model: &str) -> Result<(), GatewayError> {
    if model.is_empty() {
        return Err(GatewayError::bad_request("model is required", Some("model")));
    }
    Ok(())
}

/// Validates an `/api/chat` request and converts it.
pub fn chat_request(mut r: ol::ChatRequest) -> Result<ChatRequest, GatewayError> {
    check_model(&r.model)?;
    check_format(&r.format)?;
    let carried = carried(std::mem::take(&mut r.extra), r.keep_alive.as_ref(), r.options.as_mut());
    let mut messages = Vec::with_capacity(r.messages.len());
    for (i, m) in r.messages.into_iter().enumerate() {
        let role = crate::api::role_at(&m.role, i)?;
        if m.images.as_ref().is_some_and(|v| !v.is_empty()) {
            return Err(GatewayError::bad_request(
                format!("messages[{i}].images: images are not supported"),
                Some(&format!("messages[{i}].images")),
            ));
        }
        let mut extra = m.extra;
        if m.role != role.as_str() {
            extra.insert("role".into(), m.role.into());
        }
        messages.push(Message { role, content: m.content, extra });
    }
    Ok(ChatRequest {
        model: r.model,
        input: Input::Chat(messages),
        sampling: sampling(r.options)?,
        stream: r.stream.unwrap_or(true),
        user: None,
        carried,
    })
}

/// Validates an `/api/generate` request and converts it.
pub fn generate_request(mut r: ol::GenerateRequest) -> Result<ChatRequest, GatewayError> {
    check_model(&r.model)?;
    check_format(&r.format)?;
    let carried = carried(std::mem::take(&mut r.extra), r.keep_alive.as_ref(), r.options.as_mut());
    Ok(ChatRequest {
        model: r.model,
        input: Input::Text { prompt: r.prompt, system: r.system, raw: r.raw.unwrap_or(false) },
        sampling: sampling(r.options)?,
        stream: r.stream.unwrap_or(true),
        user: None,
        carried,
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
    fn invalid_fields_are_named() {
        let r: ol::ChatRequest =
            parse_json(br#"{"model":"m","messages":[{"role":"robot","content":"x"}]}"#).unwrap();
        assert_eq!(chat_request(r).unwrap_err().param(), Some("messages[0].role"));
        let r: ol::GenerateRequest = parse_json(br#"{"model":"m","prompt":"x","format":"json"}"#).unwrap();
        assert_eq!(generate_request(r).unwrap_err().param(), Some("format"));
        let r: ol::GenerateRequest = parse_json(br#"{"model":"","prompt":"x"}"#).unwrap();
        assert_eq!(generate_request(r).unwrap_err().param(), Some("model"));
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
