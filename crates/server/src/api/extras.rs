//! What both dialects parse alike beyond text: tool definitions (Ollama takes OpenAI's
//! shape), tool calls in the history, images. Each refusal names the field.

use sluice_protocol::openai as oa;

use sluice_core::{
    error::GatewayError,
    media::Image,
    tools::{Tool, ToolCall},
};

/// Most tools one request may offer (OpenAI's own limit).
const MAX_TOOLS: usize = 128;

fn bad(field: &str, message: impl std::fmt::Display) -> GatewayError {
    GatewayError::bad_request(format!("{field}: {message}"), Some(field))
}

/// Tool definitions, checked: function tools with a usable name and an object schema.
pub fn tools(wire: Option<Vec<oa::Tool>>) -> Result<Vec<Tool>, GatewayError> {
    let wire = wire.unwrap_or_default();
    if wire.len() > MAX_TOOLS {
        return Err(bad("tools", format_args!("at most {MAX_TOOLS} tools are allowed")));
    }
    let mut out: Vec<Tool> = Vec::with_capacity(wire.len());
    for (i, t) in wire.into_iter().enumerate() {
        if t.kind != "function" {
            return Err(bad(
                &format!("tools[{i}].type"),
                format_args!("only 'function' tools are supported, got '{}'", t.kind),
            ));
        }
        let Some(f) = t.function else {
            return Err(bad(&format!("tools[{i}].function"), "is required"));
        };
        let name_ok = !f.name.is_empty()
            && f.name.len() <= 64
            && f.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        if !name_ok {
            return Err(bad(
                &format!("tools[{i}].function.name"),
                "must be 1 to 64 letters, digits, '_', '-' or '.'",
            ));
        }
        if out.iter().any(|o| o.name == f.name) {
            return Err(bad(
                &format!("tools[{i}].function.name"),
                format_args!("'{}' is defined twice", f.name),
            ));
        }
        if f.parameters.as_ref().is_some_and(|p| !p.is_object()) {
            return Err(bad(&format!("tools[{i}].function.parameters"), "must be a JSON Schema object"));
        }
        out.push(Tool {
            name: f.name,
            description: f.description,
            parameters: f.parameters,
            strict: f.strict,
        });
    }
    Ok(out)
}

/// The tool calls of history message `i`, from OpenAI's shape.
pub fn openai_tool_calls(i: usize, calls: Vec<oa::ToolCall>) -> Result<Vec<ToolCall>, GatewayError> {
    calls
        .into_iter()
        .enumerate()
        .map(|(j, c)| {
            if c.kind != "function" {
                return Err(bad(&format!("messages[{i}].tool_calls[{j}].type"), "must be 'function'"));
            }
            Ok(ToolCall { id: c.id, name: c.function.name, arguments: c.function.arguments })
        })
        .collect()
}

/// An image from an OpenAI `image_url` part at `field`.
pub fn image_url(field: &str, url: String, detail: Option<String>) -> Result<Image, GatewayError> {
    Image::from_url(url, detail).map_err(|e| bad(field, e))
}

/// An image from Ollama's base64 at `field`.
pub fn image_base64(field: &str, data: String) -> Result<Image, GatewayError> {
    Image::from_base64(data).map_err(|e| bad(field, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(kind: &str, name: &str, parameters: Option<serde_json::Value>) -> oa::Tool {
        oa::Tool {
            kind: kind.into(),
            function: Some(oa::FunctionDef {
                name: name.into(),
                description: None,
                parameters,
                strict: None,
            }),
        }
    }

    #[test]
    fn tools_are_checked_field_by_field() {
        let ok =
            tools(Some(vec![tool("function", "get_weather", Some(serde_json::json!({"type":"object"})))]));
        assert_eq!(ok.unwrap()[0].name, "get_weather");
        let cases = [
            (vec![tool("code_interpreter", "x", None)], "tools[0].type"),
            (vec![tool("function", "bad name", None)], "tools[0].function.name"),
            (vec![tool("function", "f", Some(serde_json::json!("x")))], "tools[0].function.parameters"),
            (vec![tool("function", "f", None), tool("function", "f", None)], "tools[1].function.name"),
        ];
        for (wire, field) in cases {
            assert_eq!(tools(Some(wire)).unwrap_err().param(), Some(field));
        }
    }
}
