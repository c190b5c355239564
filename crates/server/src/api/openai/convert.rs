//! OpenAI requests → the canonical [`ChatRequest`], with validation that names the
//! offending field.

use sluice_protocol::openai as oa;

use sluice_core::{
    carry::{Carried, WireDialect},
    chat::{ChatRequest, Input, Message, Sampling},
    error::GatewayError,
};

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

/// Validates a chat completion request and converts it.
pub fn chat_request(r: oa::ChatCompletionRequest) -> Result<(ChatRequest, bool), GatewayError> {
    check_common(&r.model, r.n, r.temperature, r.top_p)?;
    if r.messages.is_empty() {
        return Err(GatewayError::bad_request(
            "'messages' must contain at least one message",
            Some("messages"),
        ));
    }
    let mut messages = Vec::with_capacity(r.messages.len());
    for (i, mut m) in r.messages.into_iter().enumerate() {
        let role = crate::api::role_at(&m.role, i)?;
        // Carried: the participant name, and a role spelled otherwise than Sluice's own.
        let mut extra = std::mem::take(&mut m.extra);
        if let Some(name) = m.name.take() {
            extra.insert("name".into(), name.into());
        }
        if m.role != role.as_str() {
            extra.insert("role".into(), m.role.clone().into());
        }
        let content = match &m.content {
            Some(c) if c.has_non_text() => {
                return Err(GatewayError::bad_request(
                    format!("messages[{i}].content: only text parts are supported"),
                    Some(&format!("messages[{i}].content")),
                ));
            }
            Some(c) => c.text().into_owned(),
            None => String::new(),
        };
        messages.push(Message { role, content, extra });
    }
    let mut carried = Carried { dialect: Some(WireDialect::OpenAi), fields: r.extra, ..Carried::default() };
    if let Some(user) = &r.user {
        // Mapped (the canonical `user`), and named when a backend drops it.
        carried.fields.insert("user".into(), user.clone().into());
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
    };
    Ok((req, include_usage))
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
    };
    Ok((req, include_usage))
}

fn stop_list(stop: Option<sluice_protocol::common::OneOrMany>) -> Result<Vec<String>, GatewayError> {
    crate::api::stop_sequences(stop.map(|s| s.into_vec()).unwrap_or_default(), "stop")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::parse_json;
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
