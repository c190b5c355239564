//! Tool calling on the embedded engine, in the Hermes/Qwen convention most GGUF chat
//! templates use: the tools go to the template as `tools`, and the model answers a call
//! with `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`.
//!
//! With `tool_choice` `required` or a named function the whole answer is constrained by
//! the engine's grammar to one such call whose arguments match the function's schema.
//! With `auto` the model writes freely; an answer that starts with `<tool_call>` is held
//! back and parsed at its end (an answer that does not is streamed as it comes). Calls
//! become canonical tool-call events with fresh `call_` ids and finish reason
//! `tool_calls`; output that opens a call but does not parse goes out as text.

use std::collections::VecDeque;

use sluice_core::chat::{Event, FinishReason, Message};
use sluice_core::tools::{Tool, ToolCall, ToolCallDelta, ToolChoice};
use sluice_engine::{OutputFormat, TOOL_CALL_CLOSE, TOOL_CALL_OPEN, ToolSchema};

use super::BackendError;

/// The template's `tools`: each function in OpenAI's shape, as HF templates expect.
pub(super) fn template_tools(tools: &[Tool]) -> Vec<serde_json::Value> {
    tools
        .iter()
        .map(|t| {
            let mut function = serde_json::Map::new();
            function.insert("name".into(), t.name.clone().into());
            if let Some(d) = &t.description {
                function.insert("description".into(), d.clone().into());
            }
            let parameters = t.parameters.clone().unwrap_or_else(|| serde_json::json!({"type": "object"}));
            function.insert("parameters".into(), parameters);
            serde_json::json!({"type": "function", "function": function})
        })
        .collect()
}

/// An assistant message's calls as HF templates read them: the arguments as a JSON
/// object when they parse (templates write them with `tojson`), else the text.
pub(super) fn template_calls(m: &Message) -> Vec<serde_json::Value> {
    m.tool_calls
        .iter()
        .map(|c| {
            let arguments = serde_json::from_str::<serde_json::Value>(&c.arguments)
                .unwrap_or_else(|_| c.arguments.clone().into());
            serde_json::json!({
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": arguments},
            })
        })
        .collect()
}

/// The grammar for a `tool_choice` that forces a call: every tool for `required`, the
/// named one for a function. `None` for `auto` (and no choice). A name that is not
/// among the tools is a 400 naming `tool_choice`.
pub(super) fn forced_format(
    tools: &[Tool],
    choice: Option<&ToolChoice>,
) -> Result<Option<OutputFormat>, BackendError> {
    let schema = |t: &Tool| ToolSchema { name: t.name.clone(), parameters: t.parameters.clone() };
    match choice {
        Some(ToolChoice::Required) => Ok(Some(OutputFormat::ToolCall(tools.iter().map(schema).collect()))),
        Some(ToolChoice::Function(name)) => match tools.iter().find(|t| &t.name == name) {
            Some(t) => Ok(Some(OutputFormat::ToolCall(vec![schema(t)]))),
            None => Err(BackendError::UnsupportedField {
                param: "tool_choice".into(),
                message: format!("'tool_choice' names the function '{name}', which is not among 'tools'"),
            }),
        },
        Some(ToolChoice::Auto | ToolChoice::None) | None => Ok(None),
    }
}

/// The calls in a whole answer: every `<tool_call>` block (the closing tag may be
/// missing at the very end), each a JSON object with a string `name` and `arguments`
/// (an object, or JSON text). `None` when the answer is not only calls.
pub(super) fn parse_calls(text: &str) -> Option<Vec<ToolCall>> {
    let mut rest = text.trim();
    let mut calls = Vec::new();
    while !rest.is_empty() {
        let body = rest.strip_prefix(TOOL_CALL_OPEN)?;
        let (json, after) = body.split_once(TOOL_CALL_CLOSE).unwrap_or((body, ""));
        let value: serde_json::Value = serde_json::from_str(json.trim()).ok()?;
        let name = value.get("name")?.as_str()?.to_owned();
        let arguments = match value.get("arguments").or_else(|| value.get("parameters")) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v @ serde_json::Value::Object(_)) => v.to_string(),
            None => "{}".to_owned(),
            Some(_) => return None,
        };
        calls.push(ToolCall { id: ToolCall::new_id(), name, arguments });
        rest = after.trim_start();
    }
    (!calls.is_empty()).then_some(calls)
}

/// Where an answer stands: not yet known to be a call, plain text, or a call.
#[derive(Debug)]
enum Mode {
    /// The text so far (after leading whitespace) could still be `<tool_call>`: held.
    Undecided,
    /// Plain text: events pass through.
    Text,
    /// A call: text is collected until the end.
    Calls,
}

/// Turns the engine's text events into tool-call events when the answer is a call.
#[derive(Debug)]
pub(super) struct CallParser {
    mode: Mode,
    /// The answer's text while undecided or a call.
    text: String,
    /// Events held while undecided, in order.
    held: Vec<Event>,
}

impl CallParser {
    /// A parser for one answer.
    pub(super) fn new() -> CallParser {
        CallParser { mode: Mode::Undecided, text: String::new(), held: Vec::new() }
    }

    /// Takes the next event; pushes what may go out now onto `out`.
    pub(super) fn push(&mut self, ev: Event, out: &mut VecDeque<Event>) {
        match (&self.mode, ev) {
            (Mode::Text, ev) => out.push_back(ev),
            (_, Event::Done { finish_reason, usage, timings, details }) => {
                let calls = match self.mode {
                    Mode::Calls => parse_calls(&self.text),
                    _ => None,
                };
                match calls {
                    Some(calls) => {
                        // Log probabilities of the call's tokens stay with it.
                        out.extend(self.held.drain(..).filter(|e| matches!(e, Event::Logprobs(_))));
                        for (index, call) in (0u32..).zip(calls) {
                            out.push_back(Event::ToolCall(ToolCallDelta::whole(index, call)));
                        }
                        let finish_reason = if finish_reason == FinishReason::Stop {
                            FinishReason::ToolCalls
                        } else {
                            finish_reason
                        };
                        out.push_back(Event::Done { finish_reason, usage, timings, details });
                    }
                    None => {
                        // Not a call after all: the text as the model wrote it.
                        if matches!(self.mode, Mode::Calls) {
                            self.held.retain(|e| matches!(e, Event::Logprobs(_)));
                            self.held.push(Event::Delta(std::mem::take(&mut self.text)));
                        }
                        out.extend(self.held.drain(..));
                        out.push_back(Event::Done { finish_reason, usage, timings, details });
                    }
                }
            }
            (Mode::Calls, ev) => {
                if let Event::Delta(t) = &ev {
                    self.text.push_str(t);
                }
                self.held.push(ev);
            }
            (Mode::Undecided, ev) => {
                if let Event::Delta(t) = &ev {
                    self.text.push_str(t);
                }
                self.held.push(ev);
                let start = self.text.trim_start();
                if start.starts_with(TOOL_CALL_OPEN) {
                    self.mode = Mode::Calls;
                } else if !TOOL_CALL_OPEN.starts_with(start) {
                    self.mode = Mode::Text;
                    self.text.clear();
                    out.extend(self.held.drain(..));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(reason: FinishReason) -> Event {
        Event::Done { finish_reason: reason, usage: None, timings: None, details: None }
    }

    fn run(pieces: &[&str], reason: FinishReason) -> Vec<Event> {
        let mut parser = CallParser::new();
        let mut out = VecDeque::new();
        for p in pieces {
            parser.push(Event::Delta((*p).to_owned()), &mut out);
        }
        parser.push(done(reason), &mut out);
        out.into()
    }

    #[test]
    fn a_call_becomes_a_tool_call_event_with_a_fresh_id() {
        let out = run(
            &[
                "<tool",
                "_call>\n{\"name\": \"get_weather\", ",
                "\"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>",
            ],
            FinishReason::Stop,
        );
        assert_eq!(out.len(), 2, "{out:?}");
        let Event::ToolCall(d) = &out[0] else { panic!("{out:?}") };
        assert_eq!((d.index, d.name.as_deref()), (0, Some("get_weather")));
        assert!(d.id.as_deref().is_some_and(|id| id.starts_with("call_")), "{d:?}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&d.arguments).unwrap()["city"], "Oslo");
        assert!(matches!(out[1], Event::Done { finish_reason: FinishReason::ToolCalls, .. }));
    }

    #[test]
    fn several_calls_and_a_missing_last_close_tag_parse() {
        let text = "<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n<tool_call>{\"name\": \"b\", \"arguments\": \"{\\\"x\\\":1}\"}";
        let calls = parse_calls(text).unwrap();
        assert_eq!(calls.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(calls[1].arguments, "{\"x\":1}", "string arguments are kept as written");
        assert!(parse_calls("<tool_call>{\"name\": 1}</tool_call>").is_none());
        assert!(parse_calls("<tool_call>{\"name\": \"a\"}</tool_call> and some prose").is_none());
    }

    #[test]
    fn text_streams_through_once_it_cannot_be_a_call() {
        let out = run(&["  <to", "day is sunny"], FinishReason::Stop);
        assert_eq!(out[0], Event::Delta("  <to".into()), "held until it diverged, then released in order");
        assert_eq!(out[1], Event::Delta("day is sunny".into()));
        assert!(matches!(out[2], Event::Done { finish_reason: FinishReason::Stop, .. }));
    }

    #[test]
    fn a_call_that_does_not_parse_goes_out_as_text() {
        let out = run(&["<tool_call>\n{\"name\": \"f\", \"argu"], FinishReason::Length);
        assert_eq!(out[0], Event::Delta("<tool_call>\n{\"name\": \"f\", \"argu".into()));
        assert!(matches!(out[1], Event::Done { finish_reason: FinishReason::Length, .. }));
        let short = run(&["<tool"], FinishReason::Stop);
        assert_eq!(short[0], Event::Delta("<tool".into()), "a prefix at the end is text");
    }

    #[test]
    fn forced_choices_build_grammars_and_unknown_names_are_refused() {
        let tools = [Tool { name: "f".into(), description: None, parameters: None, strict: None }];
        assert!(
            matches!(forced_format(&tools, Some(&ToolChoice::Required)), Ok(Some(OutputFormat::ToolCall(t))) if t.len() == 1)
        );
        assert!(matches!(forced_format(&tools, Some(&ToolChoice::Auto)), Ok(None)));
        let err = forced_format(&tools, Some(&ToolChoice::Function("g".into()))).unwrap_err();
        assert!(
            matches!(&err, BackendError::UnsupportedField { param, .. } if param == "tool_choice"),
            "{err}"
        );
        let shown = template_tools(&tools);
        assert_eq!(shown[0]["function"]["parameters"]["type"], "object");
        assert_eq!(shown[0]["type"], "function");
    }
}
