//! What the agent has to send, waiting for the socket.
//!
//! Jobs put their text here and the connection's writer takes everything at once. A
//! delta goes out in its own frame as soon as the writer is free; only while a write
//! is in progress do further deltas of the same job merge into one pending frame.
//! No timer decides when to flush: the socket's own pace does (adaptive coalescing).
//! Frames of one job keep their order (chunks, then done or error).

use std::{collections::HashMap, sync::Mutex};

use sluice_protocol::agent::ToGateway;
use tokio::sync::Notify;

/// Frames waiting for the writer.
#[derive(Default)]
pub struct Outbox {
    state: Mutex<State>,
    ready: Notify,
}

#[derive(Default)]
struct State {
    control: Vec<ToGateway>,
    order: Vec<u64>,
    pending: HashMap<u64, Pending>,
    load: Option<ToGateway>,
    closed: bool,
}

#[derive(Default)]
struct Pending {
    /// Frames before `delta`: events other than text, and the text that came before
    /// each of them (order within a job matters: a tool call after its text).
    before: Vec<ToGateway>,
    delta: String,
    end: Option<ToGateway>,
}

impl Outbox {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let r = f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
        self.ready.notify_one();
        r
    }

    /// Queues generated text of `job`.
    pub fn delta(&self, job: u64, text: String) {
        self.with(|s| {
            let p = s.pending_mut(job);
            if p.end.is_none() {
                if p.delta.is_empty() { p.delta = text } else { p.delta.push_str(&text) }
            }
        });
    }

    /// Queues a frame of `job` other than text and its end (reasoning, a tool call
    /// piece, log probabilities), after the text queued before it.
    pub fn event(&self, job: u64, frame: ToGateway) {
        self.with(|s| {
            let p = s.pending_mut(job);
            if p.end.is_none() {
                let text = std::mem::take(&mut p.delta);
                push_chunks(&mut p.before, job, &text);
                p.before.push(frame);
            }
        });
    }

    /// Queues the last frame of `job` (done or error).
    pub fn end(&self, job: u64, frame: ToGateway) {
        self.with(|s| {
            let p = s.pending_mut(job);
            p.end.get_or_insert(frame);
        });
    }

    /// Queues a frame that belongs to no job (pong).
    pub fn control(&self, frame: ToGateway) {
        self.with(|s| s.control.push(frame));
    }

    /// Sets the load report to send; a newer report replaces one not yet sent.
    pub fn load(&self, frame: ToGateway) {
        self.with(|s| s.load = Some(frame));
    }

    /// No more frames: the writer sends what is queued, then stops.
    pub fn close(&self) {
        self.with(|s| s.closed = true);
    }

    /// Moves every queued frame into `out`, waiting until there is one; false once the
    /// outbox is closed and empty.
    pub async fn next_batch(&self, out: &mut Vec<ToGateway>) -> bool {
        loop {
            {
                let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if s.take_into(out) {
                    return true;
                }
                if s.closed {
                    return false;
                }
            }
            // notify_one keeps a permit when nobody waits, so nothing queued between the
            // check above and this await is missed.
            self.ready.notified().await;
        }
    }
}

/// Longest text in one chunk frame, well under the gateway's default frame limit.
pub const MAX_CHUNK_BYTES: usize = 256 << 10;

/// Text of `job` as chunk frames of at most [`MAX_CHUNK_BYTES`]: the gateway refuses
/// large frames (`agents.max_frame_bytes`).
fn push_chunks(out: &mut Vec<ToGateway>, job: u64, text: &str) {
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = rest.len().min(MAX_CHUNK_BYTES);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push(ToGateway::Chunk { job, delta: rest[..cut].to_owned() });
        rest = &rest[cut..];
    }
}

impl State {
    fn pending_mut(&mut self, job: u64) -> &mut Pending {
        self.pending.entry(job).or_insert_with(|| {
            self.order.push(job);
            Pending::default()
        })
    }

    fn take_into(&mut self, out: &mut Vec<ToGateway>) -> bool {
        let before = out.len();
        out.append(&mut self.control);
        for job in self.order.drain(..) {
            let Some(p) = self.pending.remove(&job) else { continue };
            out.extend(p.before);
            push_chunks(out, job, &p.delta);
            out.extend(p.end);
        }
        out.extend(self.load.take());
        out.len() > before
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn chunk(job: u64, d: &str) -> ToGateway {
        ToGateway::Chunk { job, delta: d.into() }
    }

    /// However much text piles up while the socket is busy, no frame carries more
    /// than [`MAX_CHUNK_BYTES`] of it, and the text is whole, in order.
    #[test]
    fn merged_text_goes_out_in_bounded_chunks() {
        let mut state = State::default();
        let text = "é".repeat(300_000);
        state.pending_mut(1).delta = text.clone();
        let mut out = Vec::new();
        assert!(state.take_into(&mut out));
        let mut joined = String::new();
        for frame in &out {
            let ToGateway::Chunk { delta, .. } = frame else { panic!("{frame:?}") };
            assert!(delta.len() <= MAX_CHUNK_BYTES);
            joined.push_str(delta);
        }
        assert_eq!(out.len(), 3);
        assert_eq!(joined, text);
    }

    #[tokio::test]
    async fn deltas_merge_only_while_the_writer_is_busy() {
        let o = Outbox::default();
        let mut out = Vec::new();
        o.delta(1, "a".into());
        assert!(o.next_batch(&mut out).await);
        assert_eq!(out, [chunk(1, "a")]);
        out.clear();
        // The writer is "busy" now: everything queued meanwhile leaves as one frame per job,
        // each job's frames in order.
        o.delta(1, "b".into());
        o.delta(2, "x".into());
        o.delta(1, "c".into());
        o.end(1, ToGateway::Done { job: 1, finish_reason: "stop".into(), usage: None, details: None });
        o.control(ToGateway::Pong { nonce: 3 });
        assert!(o.next_batch(&mut out).await);
        assert_eq!(
            out,
            [
                ToGateway::Pong { nonce: 3 },
                chunk(1, "bc"),
                ToGateway::Done { job: 1, finish_reason: "stop".into(), usage: None, details: None },
                chunk(2, "x"),
            ]
        );
    }

    #[tokio::test]
    async fn close_drains_then_ends() {
        let o = Outbox::default();
        o.delta(1, "a".into());
        o.close();
        let mut out = Vec::new();
        assert!(o.next_batch(&mut out).await);
        assert!(!o.next_batch(&mut out).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_writer_wakes_on_the_first_delta() {
        let o = std::sync::Arc::new(Outbox::default());
        let o2 = o.clone();
        let writer = tokio::spawn(async move {
            let mut out = Vec::new();
            o2.next_batch(&mut out).await;
            out
        });
        tokio::task::yield_now().await;
        o.delta(4, "t".into());
        let out = tokio::time::timeout(std::time::Duration::from_secs(1), writer).await.unwrap().unwrap();
        assert_eq!(out, [chunk(4, "t")]);
    }

    #[tokio::test]
    async fn events_keep_their_place_between_texts() {
        let o = Outbox::default();
        o.delta(1, "Let me ".into());
        o.delta(1, "check.".into());
        let call = ToGateway::ToolCall { job: 1, call: serde_json::json!({"index": 0, "name": "f"}) };
        o.event(1, call.clone());
        o.delta(1, "after".into());
        o.end(1, ToGateway::Pong { nonce: 0 });
        o.event(1, ToGateway::Reasoning { job: 1, delta: "too late".into() });
        let mut out = Vec::new();
        assert!(o.next_batch(&mut out).await);
        assert_eq!(
            out,
            vec![chunk(1, "Let me check."), call, chunk(1, "after"), ToGateway::Pong { nonce: 0 }]
        );
    }
}
