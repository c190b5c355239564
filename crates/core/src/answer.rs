//! A whole answer, assembled from a generation's events: the text, the reasoning, the
//! tool calls joined from their pieces, the log probabilities and how it ended. Every
//! non-streamed response and every stored answer is built here, so no event kind is
//! dropped on the way to a whole answer.

use crate::{
    chat::{DoneDetails, Event, FinishReason, Timings, Usage},
    output::TokenLogprob,
    tools::{ToolCall, ToolCallAssembler},
};

/// Events folded into one answer.
#[derive(Debug, Default)]
pub struct AnswerBuilder {
    answer: Answer,
    calls: ToolCallAssembler,
    deltas: u32,
}

/// A whole answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    /// The text.
    pub text: String,
    /// The reasoning, empty when the model gave none.
    pub reasoning: String,
    /// The calls the model made, whole.
    pub tool_calls: Vec<ToolCall>,
    /// Per-token log probabilities, when they were asked for and given.
    pub logprobs: Option<Vec<TokenLogprob>>,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Token counts, when the backend reported them.
    pub usage: Option<Usage>,
    /// Timings, when the backend reported them.
    pub timings: Option<Timings>,
    /// What else the upstream said about the end.
    pub details: Option<Box<DoneDetails>>,
    /// Text, reasoning and tool-call events seen (a stand-in token count when the
    /// backend reports none).
    pub deltas: u32,
}

impl AnswerBuilder {
    /// Adds an event; true once it was the end (`Done`).
    pub fn push(&mut self, ev: Event) -> bool {
        let a = &mut self.answer;
        match ev {
            Event::Delta(t) => {
                self.deltas += 1;
                a.text.push_str(&t);
            }
            Event::Reasoning(t) => {
                self.deltas += 1;
                a.reasoning.push_str(&t);
            }
            Event::ToolCall(d) => {
                self.deltas += 1;
                self.calls.push(&d);
            }
            Event::Logprobs(l) => a.logprobs.get_or_insert_with(Vec::new).extend(l),
            Event::Done { finish_reason, usage, timings, details } => {
                a.finish_reason = finish_reason;
                a.usage = usage;
                a.timings = timings;
                a.details = details;
                return true;
            }
        }
        false
    }

    /// The answer so far (the whole one after `Done`).
    pub fn finish(self) -> Answer {
        let mut answer = self.answer;
        answer.tool_calls = self.calls.finish();
        answer.deltas = self.deltas;
        // Some upstreams end a tool-calling turn with `stop`; clients look for
        // `tool_calls` to run the tools.
        if !answer.tool_calls.is_empty() && answer.finish_reason == FinishReason::Stop {
            answer.finish_reason = FinishReason::ToolCalls;
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::ToolCallDelta;

    #[test]
    fn every_kind_of_event_lands_in_the_answer() {
        let mut b = AnswerBuilder::default();
        let lp = |t: &str| TokenLogprob { token: t.into(), logprob: -0.5, bytes: None, top: Vec::new() };
        let events = [
            Event::Reasoning("think ".into()),
            Event::Reasoning("hard".into()),
            Event::Delta("Hi".into()),
            Event::Logprobs(vec![lp("Hi")]),
            Event::ToolCall(ToolCallDelta {
                index: 0,
                id: Some("c1".into()),
                name: Some("f".into()),
                arguments: "{\"a\":".into(),
            }),
            Event::ToolCall(ToolCallDelta { index: 0, id: None, name: None, arguments: "1}".into() }),
        ];
        for e in events {
            assert!(!b.push(e));
        }
        assert!(b.push(Event::Done {
            finish_reason: FinishReason::Stop,
            usage: None,
            timings: None,
            details: None
        }));
        let a = b.finish();
        assert_eq!((a.text.as_str(), a.reasoning.as_str()), ("Hi", "think hard"));
        assert_eq!(
            a.tool_calls,
            vec![ToolCall { id: "c1".into(), name: "f".into(), arguments: "{\"a\":1}".into() }]
        );
        assert_eq!(a.logprobs.unwrap()[0].token, "Hi");
        assert_eq!(a.finish_reason, FinishReason::ToolCalls, "a turn that called tools ends with tool_calls");
        assert_eq!(a.deltas, 5);
    }
}
