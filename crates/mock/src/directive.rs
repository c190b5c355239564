//! The per-request override: a `[mock key=value ...]` directive inside the last user
//! message (chat) or the prompt (completions, generate) replaces parts of the server's
//! [`MockConfig`](crate::MockConfig) for that one request, so a test can drive any
//! behaviour through the gateway in either dialect.
//!
//! Keys (any subset, any order): `tokens=N`, `delay_ms=N`, `first_ms=N`,
//! `mode=normal|hang|hang_after:K|status:CODE|drop_after:K|malformed_after:K`,
//! `reasoning=N` (the first N tokens are reasoning, as thinking models stream it) and
//! `call=NAME` (the tokens after the reasoning are the argument text of one call to the
//! function NAME; a conversation whose last message is a tool result gets text instead,
//! so a function-calling round trip ends), and `vendor=1` (OpenAI answers carry vendor
//! fields Sluice does not model: `service_tier` and a router's `provider`).

use std::time::Duration;

use crate::config::Behavior;

/// What a directive overrides; `None` fields keep the server's setting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directive {
    /// Tokens in the reply.
    pub tokens: Option<usize>,
    /// Delay between tokens.
    pub token_delay: Option<Duration>,
    /// Delay before the first token.
    pub first_token_delay: Option<Duration>,
    /// Fault to inject.
    pub behavior: Option<Behavior>,
    /// Leading tokens that are reasoning.
    pub reasoning: Option<usize>,
    /// Function the reply calls with its remaining tokens as argument text.
    pub call: Option<String>,
    /// OpenAI answers carry vendor fields (`service_tier`, `provider`).
    pub vendor: bool,
}

/// A directive that could not be understood; the request is answered with 400 so a
/// typo never silently turns into a normal reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad mock directive: {0}")]
pub struct DirectiveError(String);

const OPEN: &str = "[mock";

impl Directive {
    /// Finds and parses the first directive in `text`; `Ok(None)` if there is none.
    pub fn find(text: &str) -> Result<Option<Directive>, DirectiveError> {
        let mut rest = text;
        while let Some(at) = rest.find(OPEN) {
            let after = &rest[at + OPEN.len()..];
            // "[mockery" is prose, not a directive.
            if after.starts_with(|c: char| c.is_whitespace() || c == ']') {
                let end = after.find(']').ok_or_else(|| DirectiveError("missing closing `]`".to_owned()))?;
                return Directive::parse_body(&after[..end]).map(Some);
            }
            rest = after;
        }
        Ok(None)
    }

    fn parse_body(body: &str) -> Result<Directive, DirectiveError> {
        let mut directive = Directive::default();
        for pair in body.split_whitespace() {
            let (key, value) =
                pair.split_once('=').ok_or_else(|| DirectiveError(format!("`{pair}` is not key=value")))?;
            match key {
                "tokens" => directive.tokens = Some(number(key, value)?),
                "delay_ms" => directive.token_delay = Some(millis(key, value)?),
                "first_ms" => directive.first_token_delay = Some(millis(key, value)?),
                "mode" => directive.behavior = Some(behavior(value)?),
                "reasoning" => directive.reasoning = Some(number(key, value)?),
                "call" if !value.is_empty() => directive.call = Some(value.to_owned()),
                "vendor" => directive.vendor = number(key, value)? > 0,
                _ => return Err(DirectiveError(format!("unknown key `{key}`"))),
            }
        }
        Ok(directive)
    }
}

impl std::str::FromStr for Behavior {
    type Err = DirectiveError;

    /// Parses a mode as written in a directive: `normal`, `hang`, `status:500`, ...
    fn from_str(s: &str) -> Result<Behavior, DirectiveError> {
        behavior(s)
    }
}

fn number(key: &str, value: &str) -> Result<usize, DirectiveError> {
    value.parse().map_err(|_| DirectiveError(format!("`{key}` wants a number, got `{value}`")))
}

fn millis(key: &str, value: &str) -> Result<Duration, DirectiveError> {
    let ms =
        value.parse().map_err(|_| DirectiveError(format!("`{key}` wants milliseconds, got `{value}`")))?;
    Ok(Duration::from_millis(ms))
}

fn behavior(value: &str) -> Result<Behavior, DirectiveError> {
    let (name, arg) = match value.split_once(':') {
        Some((name, arg)) => (name, Some(arg)),
        None => (value, None),
    };
    let arg = |what: &str| {
        arg.ok_or_else(|| DirectiveError(format!("mode `{name}` wants `{name}:{what}`")))
            .and_then(|a| number("mode", a))
    };
    match name {
        "normal" => Ok(Behavior::Normal),
        "hang" => Ok(Behavior::Hang),
        "hang_after" => Ok(Behavior::HangAfter(arg("K")?)),
        "drop_after" => Ok(Behavior::DropAfter(arg("K")?)),
        "malformed_after" => Ok(Behavior::MalformedAfter(arg("K")?)),
        "status" => {
            let code = arg("CODE")?;
            match u16::try_from(code) {
                Ok(code) if (100..=599).contains(&code) => Ok(Behavior::Status(code)),
                _ => Err(DirectiveError(format!("status `{code}` is not an HTTP status"))),
            }
        }
        _ => Err(DirectiveError(format!("unknown mode `{value}`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_directive_is_none() {
        assert_eq!(Directive::find("hello [mockery] world"), Ok(None));
        assert_eq!(Directive::find(""), Ok(None));
    }

    #[test]
    fn parses_every_key() {
        let d = Directive::find("hi [mock tokens=5 delay_ms=10 first_ms=50 mode=hang_after:3] x")
            .unwrap()
            .unwrap();
        assert_eq!(d.tokens, Some(5));
        assert_eq!(d.token_delay, Some(Duration::from_millis(10)));
        assert_eq!(d.first_token_delay, Some(Duration::from_millis(50)));
        assert_eq!(d.behavior, Some(Behavior::HangAfter(3)));
    }

    #[test]
    fn parses_reasoning_and_calls() {
        let d = Directive::find("[mock reasoning=2 call=get_weather]").unwrap().unwrap();
        assert_eq!((d.reasoning, d.call.as_deref()), (Some(2), Some("get_weather")));
        assert!(Directive::find("[mock call=]").is_err());
    }

    #[test]
    fn parses_each_mode() {
        let mode = |m: &str| Directive::find(&format!("[mock mode={m}]")).unwrap().unwrap().behavior;
        assert_eq!(mode("normal"), Some(Behavior::Normal));
        assert_eq!(mode("hang"), Some(Behavior::Hang));
        assert_eq!(mode("status:429"), Some(Behavior::Status(429)));
        assert_eq!(mode("drop_after:2"), Some(Behavior::DropAfter(2)));
        assert_eq!(mode("malformed_after:0"), Some(Behavior::MalformedAfter(0)));
    }

    #[test]
    fn modes_parse_on_their_own() {
        assert_eq!("status:500".parse::<Behavior>(), Ok(Behavior::Status(500)));
        assert!("explode".parse::<Behavior>().is_err());
    }

    #[test]
    fn empty_directive_overrides_nothing() {
        assert_eq!(Directive::find("[mock]"), Ok(Some(Directive::default())));
    }

    #[test]
    fn rejects_mistakes() {
        for bad in [
            "[mock tokens=x]",
            "[mock colour=red]",
            "[mock mode=explode]",
            "[mock mode=hang_after]",
            "[mock mode=status:1000]",
            "[mock tokens]",
            "[mock tokens=3",
        ] {
            assert!(Directive::find(bad).is_err(), "{bad} should be rejected");
        }
    }
}
