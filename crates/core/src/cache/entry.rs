//! A stored answer: the events of one generation that completed, replayed as they
//! came so each dialect's encoder renders it in the client's own format, streamed or
//! whole. Also its byte form for Redis (versioned JSON) and its weight for the
//! in-memory store's size bound.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures_util::Stream;
use serde::{Deserialize, Serialize};

use crate::{
    backend::BackendError,
    chat::{DoneDetails, Event, FinishReason, Timings, Usage},
    output::TokenLogprob,
    tools::ToolCallDelta,
};

/// The events of a completed generation (the last one is `Done`) and who made them.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Every event, in order, ending with `Event::Done`.
    pub events: Arc<[Event]>,
    /// The backend that generated it.
    pub backend: Arc<str>,
}

/// Fixed cost counted per event, for the allocation and enum around the text.
const EVENT_OVERHEAD: usize = 48;

impl Entry {
    /// An entry, if `events` is a whole answer (ends with `Done`).
    pub fn complete(events: Arc<[Event]>, backend: Arc<str>) -> Option<Entry> {
        matches!(events.last(), Some(Event::Done { .. })).then_some(Entry { events, backend })
    }

    /// Approximate bytes held, for the size bound.
    pub fn weight(&self) -> u32 {
        let text: usize = self
            .events
            .iter()
            .map(|e| match e {
                Event::Delta(t) | Event::Reasoning(t) => t.len(),
                Event::ToolCall(d) => {
                    d.arguments.len()
                        + d.id.as_ref().map_or(0, String::len)
                        + d.name.as_ref().map_or(0, String::len)
                }
                Event::Logprobs(l) => l.len() * 64,
                Event::Done { .. } => 0,
            })
            .sum();
        let total = 128 + self.backend.len() + text + EVENT_OVERHEAD * self.events.len();
        u32::try_from(total).unwrap_or(u32::MAX)
    }

    /// The Redis value: this entry and when it was stored (Unix milliseconds).
    pub fn to_bytes(&self, stored_at_ms: u64) -> Vec<u8> {
        let wire = Wire {
            v: 1,
            at: stored_at_ms,
            backend: self.backend.to_string(),
            events: self.events.iter().map(WireEvent::from).collect(),
        };
        // Plain data into a Vec cannot fail to serialize.
        serde_json::to_vec(&wire).unwrap_or_default()
    }

    /// Reads a Redis value back: the entry and when it was stored. `None` for anything
    /// else (another version, a foreign key, a truncated value).
    pub fn from_bytes(bytes: &[u8]) -> Option<(Entry, u64)> {
        let wire: Wire = serde_json::from_slice(bytes).ok().filter(|w: &Wire| w.v == 1)?;
        let events: Arc<[Event]> = wire.events.into_iter().map(Event::from).collect();
        Some((Entry::complete(events, wire.backend.into())?, wire.at))
    }

    /// A stream replaying the events.
    pub fn replay(&self) -> Replay {
        Replay { events: self.events.clone(), next: 0 }
    }
}

/// Replays a stored answer, one event per poll, never pending.
pub struct Replay {
    events: Arc<[Event]>,
    next: usize,
}

impl Stream for Replay {
    type Item = Result<Event, BackendError>;

    fn poll_next(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let ev = this.events.get(this.next).cloned();
        this.next += 1;
        Poll::Ready(ev.map(Ok))
    }
}

#[derive(Serialize, Deserialize)]
struct Wire {
    v: u8,
    at: u64,
    backend: String,
    events: Vec<WireEvent>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum WireEvent {
    /// Text.
    D(String),
    /// Reasoning text.
    R(String),
    /// A piece of a tool call.
    T(ToolCallDelta),
    /// Log probabilities.
    L(Vec<TokenLogprob>),
    /// The end: finish reason, [prompt, completion] tokens, [load, prompt, eval] ns.
    Done {
        finish: String,
        usage: Option<[u32; 2]>,
        timings: Option<[u64; 3]>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        details: Option<Box<DoneDetails>>,
    },
}

impl From<&Event> for WireEvent {
    fn from(e: &Event) -> Self {
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        match e {
            Event::Delta(t) => WireEvent::D(t.clone()),
            Event::Reasoning(t) => WireEvent::R(t.clone()),
            Event::ToolCall(d) => WireEvent::T(d.clone()),
            Event::Logprobs(l) => WireEvent::L(l.clone()),
            Event::Done { finish_reason, usage, timings, details } => WireEvent::Done {
                finish: finish_reason.as_str().to_owned(),
                usage: usage.map(|u| [u.prompt_tokens, u.completion_tokens]),
                timings: timings.map(|t| [ns(t.load), ns(t.prompt_eval), ns(t.eval)]),
                details: details.clone(),
            },
        }
    }
}

impl From<WireEvent> for Event {
    fn from(e: WireEvent) -> Self {
        match e {
            WireEvent::D(t) => Event::Delta(t),
            WireEvent::R(t) => Event::Reasoning(t),
            WireEvent::T(d) => Event::ToolCall(d),
            WireEvent::L(l) => Event::Logprobs(l),
            WireEvent::Done { finish, usage, timings, details } => Event::Done {
                finish_reason: FinishReason::parse(&finish),
                usage: usage.map(|[p, c]| Usage { prompt_tokens: p, completion_tokens: c }),
                timings: timings.map(|[l, p, e]| Timings {
                    load: Duration::from_nanos(l),
                    prompt_eval: Duration::from_nanos(p),
                    eval: Duration::from_nanos(e),
                }),
                details,
            },
        }
    }
}

/// A finished answer with `text` as its deltas, for tests.
#[cfg(test)]
pub(crate) fn sample_answer(text: &[&str]) -> Entry {
    let mut events: Vec<Event> = text.iter().map(|t| Event::Delta((*t).to_owned())).collect();
    events.push(Event::Done {
        finish_reason: FinishReason::Length,
        usage: Some(Usage { prompt_tokens: 3, completion_tokens: 2 }),
        timings: Some(Timings {
            load: Duration::from_millis(1),
            prompt_eval: Duration::from_nanos(7),
            eval: Duration::ZERO,
        }),
        details: None,
    });
    Entry::complete(events.into(), "b".into()).expect("ends with Done")
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    #[test]
    fn only_finished_answers_are_entries() {
        assert!(Entry::complete(vec![Event::Delta("x".into())].into(), "b".into()).is_none());
        assert!(Entry::complete(Vec::new().into(), "b".into()).is_none());
    }

    #[test]
    fn bytes_round_trip() {
        let e = sample_answer(&["a\"", "é\n"]);
        let (back, at) = Entry::from_bytes(&e.to_bytes(42)).unwrap();
        assert_eq!((back, at), (e, 42));
        assert!(Entry::from_bytes(b"{\"v\":2}").is_none());
        assert!(Entry::from_bytes(b"garbage").is_none());
    }

    #[tokio::test]
    async fn replay_yields_every_event_then_ends() {
        let e = sample_answer(&["a", "b"]);
        let got: Vec<Event> = e.replay().map(Result::unwrap).collect().await;
        assert_eq!(&got[..], &e.events[..]);
        assert!(e.weight() > 2 * EVENT_OVERHEAD as u32);
    }
}
