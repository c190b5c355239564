//! One sequence slot of the batch, and the request running in it: its sampler, its
//! place in the prompt, and the path from a sampled token to text on its channel.

use std::time::Instant;

use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::vocab::LlamaVocab;
use tokio::sync::mpsc::UnboundedSender;

use crate::grammar::Constraint;
use crate::logprobs::TokenLogprob;
use crate::stop::{Filtered, StopFilter};
use crate::utf8::Utf8Buffer;
use crate::{EngineError, FinishReason, GenEvent, Sampling, Summary};

/// A tokenized request on its way from a caller to a slot.
#[derive(Debug)]
pub(crate) struct Pending {
    pub tokens: Vec<LlamaToken>,
    pub sampling: Sampling,
    /// The compiled output format, if the request has one; it becomes part of this
    /// sequence's own sampler chain.
    pub constraint: Option<Constraint>,
    pub events: UnboundedSender<GenEvent>,
}

/// One llama.cpp sequence id and what its KV cells currently hold.
#[derive(Debug)]
pub(crate) struct Slot {
    pub seq_id: i32,
    /// Exactly the tokens in this sequence's KV cells, position by position. Kept
    /// after a sequence finishes so the next request can reuse a common prefix.
    pub cached: Vec<LlamaToken>,
    /// Logical time of last use, for least-recently-used choices.
    pub last_used: u64,
    /// The running request, if any.
    pub seq: Option<Sequence>,
}

/// What happened after a token was sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The token was emitted and must be decoded next step.
    Continue,
    /// The sequence ended; the summary is sent once the slot is released, so that
    /// stats are already up to date when the caller sees it.
    Finished(Summary),
    /// The caller has gone away.
    Cancelled,
}

/// A request running in a slot.
#[derive(Debug)]
pub(crate) struct Sequence {
    events: UnboundedSender<GenEvent>,
    sampler: LlamaSampler,
    prompt: Vec<LlamaToken>,
    /// Index of the first prompt token not yet decoded.
    next_prompt: usize,
    /// The last sampled token, to be decoded in the next step.
    pub next_token: Option<LlamaToken>,
    /// Admission order, so prompt chunks are served first come, first served.
    pub admitted_as: u64,
    generated: usize,
    max_tokens: Option<usize>,
    utf8: Utf8Buffer,
    stop: StopFilter,
    admitted_at: Instant,
    first_token_at: Option<Instant>,
    /// Present when the request asked for log probabilities.
    logprobs: Option<Box<PendingLogprobs>>,
}

/// Log probabilities of tokens whose text has not been sent yet. Text is held back by
/// the UTF-8 buffer and the stop filter, so each token's entry remembers where its
/// text starts in the filter's input; an entry goes out just before the first text
/// that includes part of its token, and entries whose text only ever reached a
/// matched stop string are dropped.
#[derive(Debug)]
struct PendingLogprobs {
    /// Alternatives per token.
    top: usize,
    /// Entries in token order, with the offset of their text in the filter's input.
    queue: std::collections::VecDeque<(usize, TokenLogprob)>,
    /// Bytes fed into the stop filter so far.
    fed: usize,
    /// Bytes of text sent so far (a prefix of what was fed).
    sent: usize,
}

impl PendingLogprobs {
    /// The entries whose text starts before `end`.
    fn take_until(&mut self, end: usize) -> Vec<TokenLogprob> {
        let n = self.queue.iter().take_while(|(start, _)| *start < end).count();
        self.queue.drain(..n).map(|(_, lp)| lp).collect()
    }
}

impl Sequence {
    pub(crate) fn new(pending: Pending, sampler: LlamaSampler, reused: usize, admitted_as: u64) -> Self {
        Self {
            stop: StopFilter::new(&pending.sampling.stop),
            max_tokens: pending.sampling.max_tokens.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            events: pending.events,
            sampler,
            prompt: pending.tokens,
            next_prompt: reused,
            next_token: None,
            admitted_as,
            generated: 0,
            utf8: Utf8Buffer::default(),
            admitted_at: Instant::now(),
            first_token_at: None,
            logprobs: pending.sampling.logprobs.map(|top| {
                Box::new(PendingLogprobs {
                    top: usize::from(top),
                    queue: std::collections::VecDeque::new(),
                    fed: 0,
                    sent: 0,
                })
            }),
        }
    }

    /// How many alternatives to report per token; `None` when the request asked for
    /// no log probabilities (then none are computed).
    pub(crate) fn top_logprobs(&self) -> Option<usize> {
        self.logprobs.as_ref().map(|l| l.top)
    }

    /// The prompt tokens still to be decoded.
    pub(crate) fn remaining_prompt(&self) -> &[LlamaToken] {
        &self.prompt[self.next_prompt..]
    }

    /// Marks the next `n` prompt tokens as decoded and returns them.
    pub(crate) fn advance_prompt(&mut self, n: usize) -> &[LlamaToken] {
        let start = self.next_prompt;
        self.next_prompt = (start + n).min(self.prompt.len());
        &self.prompt[start..self.next_prompt]
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.events.is_closed()
    }

    pub(crate) fn sampler(&mut self) -> &mut LlamaSampler {
        &mut self.sampler
    }

    /// Takes a freshly sampled token, with its log probabilities when the request asked
    /// for them. `in_kv` is how many tokens the sequence has in the KV cache; `n_ctx`
    /// bounds prompt plus completion.
    pub(crate) fn accept(
        &mut self,
        token: LlamaToken,
        logprob: Option<TokenLogprob>,
        vocab: &LlamaVocab<'_>,
        in_kv: usize,
        n_ctx: usize,
    ) -> Outcome {
        self.first_token_at.get_or_insert_with(Instant::now);
        if vocab.is_eog(token) {
            return self.finish(FinishReason::Stop, true);
        }
        self.generated += 1;
        let text = self.utf8.push(&vocab.token_to_piece(token, false, None));
        if let (Some(pending), Some(logprob)) = (self.logprobs.as_mut(), logprob) {
            pending.queue.push_back((pending.fed, logprob));
            pending.fed += text.len();
        }
        match self.stop.push(&text) {
            Filtered::Stop(before) => {
                if !self.send_text(before) {
                    return Outcome::Cancelled;
                }
                return self.finish(FinishReason::Stop, false);
            }
            Filtered::Emit(text) => {
                if !self.send_text(text) {
                    return Outcome::Cancelled;
                }
            }
        }
        let max_reached = self.max_tokens.is_some_and(|max| self.generated >= max);
        // The token would be decoded at position `in_kv`; it must stay inside the window.
        if max_reached || in_kv + 1 >= n_ctx {
            return self.finish(FinishReason::Length, true);
        }
        self.next_token = Some(token);
        Outcome::Continue
    }

    /// Tokens generated so far.
    pub(crate) fn generated(&self) -> usize {
        self.generated
    }

    /// Sends the final event of a finished sequence.
    pub(crate) fn send_done(&self, summary: Summary) {
        let _ = self.events.send(GenEvent::Done(summary));
    }

    /// Sends the final event of a failed sequence.
    pub(crate) fn fail(&self, err: EngineError) {
        let _ = self.events.send(GenEvent::Error(err));
    }

    fn finish(&mut self, reason: FinishReason, flush: bool) -> Outcome {
        let mut reason = reason;
        let mut stopped = !flush;
        if flush {
            let tail = self.utf8.finish();
            if let Some(pending) = self.logprobs.as_mut() {
                pending.fed += tail.len();
            }
            let mut text = match self.stop.push(&tail) {
                Filtered::Emit(text) => text,
                Filtered::Stop(text) => {
                    reason = FinishReason::Stop;
                    stopped = true;
                    text
                }
            };
            text.push_str(&self.stop.finish());
            if !self.send_text(text) {
                return Outcome::Cancelled;
            }
        }
        // Without a stop string, every generated token's text was sent: report any
        // left (a token with no text of its own).
        if let Some(pending) = self.logprobs.as_mut().filter(|_| !stopped) {
            let rest = pending.take_until(usize::MAX);
            if !rest.is_empty() && self.events.send(GenEvent::Logprobs(rest)).is_err() {
                return Outcome::Cancelled;
            }
        }
        let now = Instant::now();
        let first = self.first_token_at.unwrap_or(now);
        let summary = Summary {
            finish_reason: reason,
            prompt_tokens: self.prompt.len(),
            completion_tokens: self.generated,
            prompt_eval: first.saturating_duration_since(self.admitted_at),
            eval: now.saturating_duration_since(first),
        };
        Outcome::Finished(summary)
    }

    /// Sends non-empty text, preceded by the log probabilities of the tokens it
    /// begins to cover; `false` when the caller is gone.
    fn send_text(&mut self, text: String) -> bool {
        if text.is_empty() {
            return true;
        }
        if let Some(pending) = self.logprobs.as_mut() {
            pending.sent += text.len();
            let covered = pending.take_until(pending.sent);
            if !covered.is_empty() && self.events.send(GenEvent::Logprobs(covered)).is_err() {
                return false;
            }
        }
        self.events.send(GenEvent::Token(text)).is_ok()
    }
}
