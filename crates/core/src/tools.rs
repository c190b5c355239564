//! Function calling in Sluice's own terms: the tools a request offers, how the model
//! may use them, the calls it makes (whole, and piece by piece while streaming), and the
//! assembly of streamed pieces into whole calls for clients that want them whole.

use serde::{Deserialize, Serialize};

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// Its name.
    pub name: String,
    /// What it does, for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of its arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Value>,
    /// Whether the arguments must follow the schema exactly (OpenAI's `strict`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides.
    Auto,
    /// No tool may be called.
    None,
    /// Some tool must be called.
    Required,
    /// This function must be called.
    Function(String),
}

/// A whole call the model made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Call id; the `tool` message answering it carries the same id.
    pub id: String,
    /// The function called.
    pub name: String,
    /// Its arguments as JSON text, exactly as the model wrote them.
    pub arguments: String,
}

impl ToolCall {
    /// A fresh call id in OpenAI's style, for calls whose upstream gives none (Ollama).
    pub fn new_id() -> String {
        format!("call_{:024x}", rand::random::<u128>() >> 32)
    }
}

/// A piece of a streamed tool call: the first piece of a call carries its id and name,
/// later pieces more argument text. Pieces of one call share its `index`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    /// Which call of the answer this piece belongs to (0, 1, ...).
    pub index: u32,
    /// The call id, on the first piece.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The function name, on the first piece.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// More argument text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub arguments: String,
}

impl ToolCallDelta {
    /// A whole call as one piece.
    pub fn whole(index: u32, call: ToolCall) -> ToolCallDelta {
        ToolCallDelta { index, id: Some(call.id), name: Some(call.name), arguments: call.arguments }
    }
}

/// Joins streamed pieces into whole calls, in index order.
#[derive(Debug, Default, Clone)]
pub struct ToolCallAssembler {
    calls: Vec<(u32, ToolCall)>,
}

impl ToolCallAssembler {
    /// Adds a piece.
    pub fn push(&mut self, d: &ToolCallDelta) {
        let at = match self.calls.iter().position(|(i, _)| *i == d.index) {
            Some(at) => at,
            None => {
                let empty = ToolCall { id: String::new(), name: String::new(), arguments: String::new() };
                self.calls.push((d.index, empty));
                self.calls.len() - 1
            }
        };
        let call = &mut self.calls[at].1;
        if let Some(id) = &d.id {
            call.id.clone_from(id);
        }
        if let Some(name) = &d.name {
            call.name.push_str(name);
        }
        call.arguments.push_str(&d.arguments);
    }

    /// True when no piece arrived.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// The whole calls; a call whose upstream gave no id gets a fresh one.
    pub fn finish(mut self) -> Vec<ToolCall> {
        self.calls.sort_by_key(|(i, _)| *i);
        self.calls
            .into_iter()
            .map(|(_, mut c)| {
                if c.id.is_empty() {
                    c.id = ToolCall::new_id();
                }
                c
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_join_per_index_in_order() {
        let mut a = ToolCallAssembler::default();
        let piece = |index, id: Option<&str>, name: Option<&str>, args: &str| ToolCallDelta {
            index,
            id: id.map(Into::into),
            name: name.map(Into::into),
            arguments: args.into(),
        };
        a.push(&piece(1, Some("b"), Some("time"), ""));
        a.push(&piece(0, Some("a"), Some("weather"), "{\"ci"));
        a.push(&piece(0, None, None, "ty\":\"Oslo\"}"));
        a.push(&piece(1, None, None, "{}"));
        let calls = a.finish();
        assert_eq!(calls.len(), 2);
        assert_eq!((calls[0].id.as_str(), calls[0].name.as_str()), ("a", "weather"));
        assert_eq!(calls[0].arguments, "{\"city\":\"Oslo\"}");
        assert_eq!((calls[1].id.as_str(), calls[1].arguments.as_str()), ("b", "{}"));
    }

    #[test]
    fn missing_ids_are_made_up_once() {
        let mut a = ToolCallAssembler::default();
        a.push(&ToolCallDelta { index: 0, id: None, name: Some("f".into()), arguments: "{}".into() });
        let calls = a.finish();
        assert!(calls[0].id.starts_with("call_") && calls[0].id.len() == 29, "{}", calls[0].id);
        assert_ne!(ToolCall::new_id(), ToolCall::new_id());
    }
}
