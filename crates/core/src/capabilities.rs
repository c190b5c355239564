//! What a request needs of a model beyond text, and whether a route has it. Routing
//! sends a request only to routes that can take everything it asks for; when no route
//! of the model can, the client gets a 400 naming the field and the model, never an
//! answer that quietly ignored the field.
//!
//! Capabilities are named in Ollama's words where Ollama has one (`tools`, `vision`,
//! `thinking`), and `json_schema` (structured output) and `logprobs` besides. A route
//! whose capabilities are unknown (an OpenAI-compatible upstream without configured
//! `capabilities`) is assumed to take the request: the upstream itself then decides.

use crate::{
    chat::{ChatRequest, Input},
    error::GatewayError,
    output::Think,
};

/// Function calling.
pub const TOOLS: &str = "tools";
/// Image inputs.
pub const VISION: &str = "vision";
/// Structured output: JSON, or JSON matching a schema.
pub const JSON_SCHEMA: &str = "json_schema";
/// Per-token log probabilities.
pub const LOGPROBS: &str = "logprobs";
/// Reasoning before the answer.
pub const THINKING: &str = "thinking";

/// One capability a request needs, with the field that needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    /// The capability.
    pub capability: &'static str,
    /// The request field (OpenAI's name) that asks for it.
    pub field: &'static str,
    /// How the field reads in a message (both dialects' names where they differ).
    pub what: &'static str,
}

/// Everything `req` needs beyond plain text, in a stable order.
pub fn needs(req: &ChatRequest) -> Vec<Need> {
    let mut out = Vec::new();
    let need = |capability, field, what| Need { capability, field, what };
    if !req.tools.is_empty() {
        out.push(need(TOOLS, "tools", "'tools'"));
    }
    if let Input::Chat(messages) = &req.input
        && messages.iter().any(|m| !m.images.is_empty())
    {
        out.push(need(VISION, "images", "images ('image_url' parts, 'images')"));
    }
    if req.response_format.is_some() {
        out.push(need(JSON_SCHEMA, "response_format", "structured output ('response_format', 'format')"));
    }
    if req.logprobs.is_some() {
        out.push(need(LOGPROBS, "logprobs", "'logprobs'"));
    }
    if matches!(req.think, Some(Think::On | Think::Level(_))) {
        out.push(need(THINKING, "think", "thinking ('think', 'reasoning_effort')"));
    }
    out
}

/// True when a route with `capabilities` (`None`: unknown) can take every need.
pub fn satisfies(capabilities: Option<&[String]>, needs: &[Need]) -> bool {
    capabilities.is_none_or(|caps| needs.iter().all(|n| caps.iter().any(|c| c == n.capability)))
}

/// The 400 for a request `model` cannot serve: names the first need no route has.
pub fn refusal<'a>(
    model: &str,
    needs: &[Need],
    routes: impl Iterator<Item = Option<&'a [String]>> + Clone,
) -> GatewayError {
    let missing = needs
        .iter()
        .find(|n| !routes.clone().any(|caps| satisfies(caps, std::slice::from_ref(n))))
        .or(needs.first());
    match missing {
        Some(n) => {
            GatewayError::bad_request(format!("model '{model}' does not support {}", n.what), Some(n.field))
        }
        None => GatewayError::bad_request(format!("model '{model}' cannot take this request"), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{chat::Message, chat::Role, media::Image, output::ResponseFormat, tools::Tool};

    fn caps(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn needs_follow_the_request() {
        let mut req = ChatRequest::default();
        assert!(needs(&req).is_empty());
        let mut m = Message::new(Role::User, "what is this?");
        m.images.push(Image { url: "https://x/y.png".into(), detail: None });
        req.input = Input::Chat(vec![m]);
        req.tools = vec![Tool { name: "f".into(), description: None, parameters: None, strict: None }];
        req.response_format = Some(ResponseFormat::JsonObject);
        req.think = Some(Think::Off);
        let names: Vec<_> = needs(&req).iter().map(|n| n.capability).collect();
        assert_eq!(names, [TOOLS, VISION, JSON_SCHEMA], "think: false needs nothing");
    }

    #[test]
    fn unknown_capabilities_take_anything_known_ones_must_list_it() {
        let n = [Need { capability: TOOLS, field: "tools", what: "'tools'" }];
        assert!(satisfies(None, &n));
        assert!(satisfies(Some(&caps(&["completion", "tools"])), &n));
        assert!(!satisfies(Some(&caps(&["completion"])), &n));
        assert!(satisfies(Some(&caps(&["completion"])), &[]));
    }

    #[test]
    fn the_refusal_names_the_missing_field_and_the_model() {
        let n = [
            Need { capability: TOOLS, field: "tools", what: "'tools'" },
            Need { capability: VISION, field: "images", what: "images" },
        ];
        let a = caps(&["tools"]);
        let routes = [Some(a.as_slice())];
        let e = refusal("smollm2", &n, routes.iter().copied());
        assert_eq!(e.status_code(), 400);
        assert_eq!(e.param(), Some("images"));
        assert!(e.client_message().contains("smollm2"), "{}", e.client_message());
    }
}
