//! One request's resolved reply: server config, then the request's directive, then its
//! token limit, folded into a [`Plan`] that both dialects execute the same way. Also the
//! deterministic token text and the prompt word count.

use std::fmt::Write as _;
use std::time::Duration;

use bytes::BytesMut;
use tokio::time::Instant;

use crate::config::{Behavior, MockConfig, Pace};
use crate::directive::Directive;

/// Why the reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    /// The mock produced all the tokens it meant to.
    Stop,
    /// The request's token limit cut the reply short.
    Length,
}

impl Finish {
    /// The `finish_reason` / `done_reason` string, the same in both dialects.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// The fault, if any, that interrupts the token loop at a given token index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interrupt {
    /// Go silent forever.
    Hang,
    /// Abort the connection.
    Drop,
    /// Send one garbage line, then carry on.
    Malformed,
}

/// What the reply's tokens are: leading reasoning, then text or the argument text of
/// one tool call; and whether text tokens carry log probabilities.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Leading tokens that are reasoning.
    pub(crate) reasoning: usize,
    /// The function the rest of the tokens call.
    pub(crate) call: Option<String>,
    /// `Some(n)`: every text token carries its log probability and `n` alternatives.
    pub(crate) logprobs: Option<u8>,
    /// OpenAI answers carry vendor fields ([`VENDOR_FIELDS`]).
    pub(crate) vendor: bool,
}

/// The vendor fields of `vendor=1`, as the members of a JSON object.
pub(crate) const VENDOR_FIELDS: &str = r#""service_tier":"default","provider":"mock-provider""#;

/// What one token of the reply is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// Reasoning text.
    Reasoning,
    /// Answer text.
    Text,
    /// Argument text of the call; `first` for the call's first piece.
    Argument {
        /// Whether this is the call's first piece (it carries the id and name).
        first: bool,
    },
}

impl Shape {
    /// The shape a directive asks for; `tool_turn` (the last message is a tool result)
    /// turns a call into text.
    pub(crate) fn new(directive: Option<&Directive>, tool_turn: bool, logprobs: Option<u8>) -> Shape {
        let d = directive.cloned().unwrap_or_default();
        Shape {
            reasoning: d.reasoning.unwrap_or(0),
            call: d.call.filter(|_| !tool_turn),
            logprobs,
            vendor: d.vendor,
        }
    }

    /// What token `index` is.
    pub(crate) fn part(&self, index: usize) -> Part {
        if index < self.reasoning {
            Part::Reasoning
        } else if self.call.is_some() {
            Part::Argument { first: index == self.reasoning }
        } else {
            Part::Text
        }
    }

    /// The whole reply split into reasoning, text and the call's argument text (`None`
    /// without a call).
    pub(crate) fn split(&self, produced: usize) -> (String, String, Option<String>) {
        let (mut reasoning, mut text, mut args) = (BytesMut::new(), BytesMut::new(), None::<BytesMut>);
        for index in 0..produced {
            match self.part(index) {
                Part::Reasoning => push_token(&mut reasoning, index),
                Part::Text => push_token(&mut text, index),
                Part::Argument { .. } => push_token(args.get_or_insert_with(BytesMut::new), index),
            }
        }
        let s = |b: BytesMut| String::from_utf8_lossy(&b).into_owned();
        let args =
            self.call.as_ref().map(|_| format!("{ARGS_OPEN}{}{ARGS_CLOSE}", args.map(s).unwrap_or_default()));
        (s(reasoning), s(text), args)
    }
}

/// The argument text of a call opens and closes around its tokens.
pub(crate) const ARGS_OPEN: &str = "{\"q\":\"";
/// See [`ARGS_OPEN`].
pub(crate) const ARGS_CLOSE: &str = "\"}";

/// Token `index`'s log probability: a made-up but deterministic figure.
pub(crate) fn logprob(index: usize, alternative: usize) -> f32 {
    #[allow(clippy::cast_precision_loss)] // small test numbers
    let v = -((index % 10) as f32) / 10.0 - alternative as f32;
    v
}

/// One request's reply, fully resolved.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Tokens to emit.
    pub(crate) tokens: usize,
    /// Why the reply ends once they are emitted.
    pub(crate) finish: Finish,
    /// Delay between tokens.
    pub(crate) token_delay: Duration,
    /// Delay before the first token.
    pub(crate) first_token_delay: Duration,
    /// Fault to inject.
    pub(crate) behavior: Behavior,
    /// Token release mode.
    pub(crate) pace: Pace,
}

impl Plan {
    /// Resolves the reply: `cfg`, overridden by `directive`, capped by `limit`.
    pub(crate) fn new(cfg: &MockConfig, directive: Option<Directive>, limit: Option<u64>) -> Plan {
        let d = directive.unwrap_or_default();
        let wanted = d.tokens.unwrap_or(cfg.tokens);
        let limit = limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX));
        let (tokens, finish) = match limit {
            Some(limit) if limit < wanted => (limit, Finish::Length),
            _ => (wanted, Finish::Stop),
        };
        Plan {
            tokens,
            finish,
            token_delay: d.token_delay.unwrap_or(cfg.token_delay),
            first_token_delay: d.first_token_delay.unwrap_or(cfg.first_token_delay),
            behavior: d.behavior.unwrap_or(cfg.behavior),
            pace: cfg.pace.clone(),
        }
    }

    /// The fault that fires just before token `index` (`index == tokens` means just
    /// before the end of the reply).
    pub(crate) fn interrupt_at(&self, index: usize) -> Option<Interrupt> {
        match self.behavior {
            Behavior::HangAfter(k) if k == index => Some(Interrupt::Hang),
            Behavior::DropAfter(k) if k == index => Some(Interrupt::Drop),
            Behavior::MalformedAfter(k) if k == index => Some(Interrupt::Malformed),
            _ => None,
        }
    }

    /// Waits until token `index` may be emitted: its permit (manual pace), then its
    /// deadline. Deadlines are measured from `start`, so delays do not drift.
    pub(crate) async fn gate(&self, index: usize, start: Instant) {
        if let Pace::Manual(permits) = &self.pace {
            // A closed semaphore releases everything that is left.
            if let Ok(permit) = permits.acquire().await {
                permit.forget();
            }
        }
        let due = self.first_token_delay + self.token_delay * u32::try_from(index).unwrap_or(u32::MAX);
        if !due.is_zero() {
            tokio::time::sleep_until(start + due).await;
        }
    }
}

/// Appends the text of token `index` (`"t{index} "`) to `out`.
pub(crate) fn push_token(out: &mut BytesMut, index: usize) {
    // Writing into a BytesMut cannot fail.
    let _ = write!(out, "t{index} ");
}

/// The whole reply text for `tokens` tokens.
pub(crate) fn reply_text(tokens: usize) -> String {
    let mut out = BytesMut::with_capacity(tokens * 6);
    for index in 0..tokens {
        push_token(&mut out, index);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Prompt tokens as the mock counts them: whitespace-separated words.
pub(crate) fn count_words<'a>(texts: impl IntoIterator<Item = &'a str>) -> usize {
    texts.into_iter().map(|t| t.split_whitespace().count()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_below_tokens_means_length() {
        let cfg = MockConfig::default();
        let plan = Plan::new(&cfg, None, Some(3));
        assert_eq!((plan.tokens, plan.finish), (3, Finish::Length));
        let plan = Plan::new(&cfg, None, Some(8));
        assert_eq!((plan.tokens, plan.finish), (8, Finish::Stop));
    }

    #[test]
    fn directive_overrides_config() {
        let cfg = MockConfig::default();
        let d = Directive { tokens: Some(2), behavior: Some(Behavior::Hang), ..Directive::default() };
        let plan = Plan::new(&cfg, Some(d), None);
        assert_eq!((plan.tokens, plan.behavior), (2, Behavior::Hang));
    }

    #[test]
    fn shapes_split_reasoning_text_and_calls() {
        let d = Directive { reasoning: Some(1), call: Some("f".into()), ..Directive::default() };
        let shape = Shape::new(Some(&d), false, None);
        assert_eq!(shape.part(0), Part::Reasoning);
        assert_eq!(shape.part(1), Part::Argument { first: true });
        assert_eq!(shape.split(3), ("t0 ".into(), String::new(), Some("{\"q\":\"t1 t2 \"}".into())));
        let answered = Shape::new(Some(&d), true, None);
        assert_eq!(answered.split(2), ("t0 ".into(), "t1 ".into(), None), "after a tool result: text");
    }

    #[test]
    fn text_and_words() {
        assert_eq!(reply_text(3), "t0 t1 t2 ");
        assert_eq!(count_words(["a b", " c\n"]), 3);
    }
}
