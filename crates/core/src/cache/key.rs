//! The cache key: a SHA-256 of the canonical request fields that change the answer.
//!
//! In: the public model (`name` and `name:latest` are one model), the input (chat
//! messages with their carried fields, images, tool calls and tool results, or prompt,
//! system prompt and raw flag), every sampling parameter, the carried request fields
//! with their dialect, the tools and tool choice, the response format, the
//! log-probability settings and the thinking switch.
//! Also in, unless `[cache] scope = "global"`: the tenant (user, service key, keyless
//! owner or anonymous address), so one tenant's answers are never replayed to, nor
//! coalesced with, another's.
//! Out: the stream flag and the end-user id, so a streamed and a whole request share an
//! entry, and the client's dialect when nothing is carried (both dialects build the same
//! [`ChatRequest`], so an answer stored through `/v1` is replayed to `/api`). Every field is written with its
//! length or a tag first, so no two different requests encode to the same bytes.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::{
    carry::{Bearing, bearing, option_bearing},
    chat::{ChatRequest, Input, Message, Sampling},
    context::TenantId,
};

/// Bumped whenever the encoding below changes, so old Redis entries are never misread.
const VERSION: &[u8] = b"sluice-cache-v3";

/// The key of one canonical request.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key([u8; 32]);

impl Key {
    /// The key of `req`, shared by every tenant (`[cache] scope = "global"`).
    pub fn of(req: &ChatRequest) -> Key {
        Key::scoped(req, None)
    }

    /// The key of `req` for `tenant` (`None`: shared by every tenant).
    pub fn scoped(req: &ChatRequest, tenant: Option<&TenantId>) -> Key {
        let mut h = Canonical(Sha256::new());
        h.bytes(VERSION);
        match tenant {
            None => h.tag(b'g'),
            Some(TenantId::Local) => h.tag(b'l'),
            Some(TenantId::Anonymous(ip)) => {
                h.tag(b'a');
                h.str(&ip.to_string());
            }
            Some(TenantId::ServiceKey(hash)) => {
                h.tag(b's');
                h.bytes(hash);
            }
            Some(TenantId::User(id)) => {
                h.tag(b'u');
                h.str(id);
            }
        }
        h.str(req.model.strip_suffix(":latest").unwrap_or(&req.model));
        match &req.input {
            Input::Chat(messages) => {
                h.tag(b'c');
                h.len(messages.len());
                for m in messages {
                    h.message(m);
                }
            }
            Input::Text { prompt, system, raw } => {
                h.tag(b't');
                h.str(prompt);
                h.opt(system.as_deref().map(str::as_bytes));
                h.tag(u8::from(*raw));
            }
        }
        h.sampling(&req.sampling);
        // Carried fields reach the upstream: they are part of what is asked. Their
        // names mean something in the client's dialect only, so it is in too.
        // Fields that do not change the answer (`user`, `metadata`, `keep_alive`) are out.
        let c = &req.carried;
        match c.dialect.filter(|_| !c.is_empty()) {
            None => h.tag(0),
            Some(dialect) => {
                h.tag(1);
                h.str(dialect.as_str());
                h.fields(c.fields.iter().filter(|(k, _)| bearing(dialect, k) != Bearing::Advisory));
                h.fields(c.options.iter().filter(|(k, _)| option_bearing(k) != Bearing::Advisory));
            }
        }
        h.extras(req);
        Key(h.0.finalize().into())
    }

    /// Lowercase hex, for Redis keys and logs.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", &self.hex()[..16])
    }
}

/// An unambiguous writer into the hash.
struct Canonical(Sha256);

impl Canonical {
    fn tag(&mut self, t: u8) {
        self.0.update([t]);
    }

    fn len(&mut self, n: usize) {
        self.0.update((n as u64).to_le_bytes());
    }

    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.0.update(b);
    }

    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    fn opt(&mut self, b: Option<&[u8]>) {
        match b {
            Some(b) => {
                self.tag(1);
                self.bytes(b);
            }
            None => self.tag(0),
        }
    }

    fn fields<'a>(&mut self, fields: impl Iterator<Item = (&'a String, &'a serde_json::Value)>) {
        // serde_json's maps are sorted by key: equal maps write equal bytes.
        for (k, v) in fields {
            self.tag(1);
            self.str(k);
            self.bytes(&serde_json::to_vec(v).unwrap_or_default());
        }
        self.tag(0);
    }

    fn float(&mut self, v: Option<f32>) {
        // -0.0 and 0.0 sample the same way.
        let bits = v.map(|v| if v == 0.0 { 0.0f32.to_bits() } else { v.to_bits() });
        self.opt(bits.map(u32::to_le_bytes).as_ref().map(|b| b.as_slice()));
    }

    fn int(&mut self, v: Option<i64>) {
        self.opt(v.map(i64::to_le_bytes).as_ref().map(|b| b.as_slice()));
    }

    fn message(&mut self, m: &Message) {
        // Destructured: a new message field is a compile error here, not a collision.
        let Message { role, content, extra, images, tool_calls, tool_call_id, name, reasoning } = m;
        self.str(role.as_str());
        self.str(content);
        self.fields(extra.iter());
        self.len(images.len());
        for i in images {
            self.str(&i.url);
            self.opt(i.detail.as_deref().map(str::as_bytes));
        }
        self.len(tool_calls.len());
        for c in tool_calls {
            self.str(&c.id);
            self.str(&c.name);
            self.str(&c.arguments);
        }
        self.opt(tool_call_id.as_deref().map(str::as_bytes));
        self.opt(name.as_deref().map(str::as_bytes));
        self.opt(reasoning.as_deref().map(str::as_bytes));
    }

    /// Everything a request asks besides input and sampling, as JSON: equal values
    /// encode equally, and the one length-prefixed blob cannot run into a neighbour.
    fn extras(&mut self, req: &ChatRequest) {
        let ChatRequest {
            model: _,
            input: _,
            sampling: _,
            stream: _,
            user: _,
            carried: _,
            tools,
            tool_choice,
            parallel_tool_calls,
            response_format,
            logprobs,
            think,
        } = req;
        let json =
            serde_json::to_vec(&(tools, tool_choice, parallel_tool_calls, response_format, logprobs, think))
                .unwrap_or_default();
        self.bytes(&json);
    }

    fn sampling(&mut self, s: &Sampling) {
        // Destructured so that a new sampling field is a compile error here, not a
        // silent key collision.
        let Sampling {
            max_tokens,
            temperature,
            top_p,
            top_k,
            min_p,
            repeat_penalty,
            presence_penalty,
            frequency_penalty,
            seed,
            stop,
        } = s;
        self.int(max_tokens.map(i64::from));
        self.float(*temperature);
        self.float(*top_p);
        self.int(top_k.map(i64::from));
        self.float(*min_p);
        self.float(*repeat_penalty);
        self.float(*presence_penalty);
        self.float(*frequency_penalty);
        self.int(*seed);
        self.len(stop.len());
        for s in stop {
            self.str(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        chat::Role,
        output::{ResponseFormat, Think},
        tools::{Tool, ToolCall, ToolChoice},
    };

    fn base() -> ChatRequest {
        ChatRequest {
            model: "m".into(),
            input: Input::Chat(vec![Message::new(Role::User, "hi")]),
            sampling: Sampling { temperature: Some(0.0), ..Sampling::default() },
            stream: true,
            ..ChatRequest::default()
        }
    }

    #[test]
    fn stream_flag_user_and_latest_tag_do_not_matter() {
        let k = Key::of(&base());
        let mut r = base();
        r.stream = false;
        r.user = Some("alice".into());
        assert_eq!(Key::of(&r), k);
        r.model = "m:latest".into();
        assert_eq!(Key::of(&r), k);
        r.sampling.temperature = Some(-0.0);
        assert_eq!(Key::of(&r), k);
    }

    #[test]
    fn every_output_field_matters() {
        let k = Key::of(&base());
        type Change = fn(&mut ChatRequest);
        let changes: Vec<(&str, Change)> = vec![
            ("model", |r| r.model = "m2".into()),
            ("content", |r| r.input = Input::Chat(vec![Message::new(Role::User, "ho")])),
            ("role", |r| r.input = Input::Chat(vec![Message::new(Role::System, "hi")])),
            ("image", |r| {
                let mut m = Message::new(Role::User, "hi");
                m.images.push(crate::media::Image { url: "https://x/a.png".into(), detail: None });
                r.input = Input::Chat(vec![m]);
            }),
            ("tool call", |r| {
                let mut m = Message::new(Role::User, "hi");
                m.tool_calls.push(ToolCall { id: "c".into(), name: "f".into(), arguments: "{}".into() });
                r.input = Input::Chat(vec![m]);
            }),
            ("tool call id", |r| {
                let mut m = Message::new(Role::User, "hi");
                m.tool_call_id = Some("c".into());
                r.input = Input::Chat(vec![m]);
            }),
            ("tools", |r| {
                r.tools = vec![Tool { name: "f".into(), description: None, parameters: None, strict: None }];
            }),
            ("tool choice", |r| r.tool_choice = Some(ToolChoice::Required)),
            ("parallel tool calls", |r| r.parallel_tool_calls = Some(false)),
            ("response format", |r| r.response_format = Some(ResponseFormat::JsonObject)),
            ("logprobs", |r| r.logprobs = Some(0)),
            ("top logprobs", |r| r.logprobs = Some(2)),
            ("think", |r| r.think = Some(Think::On)),
            ("kind", |r| r.input = Input::Text { prompt: "hi".into(), system: None, raw: false }),
            ("max_tokens", |r| r.sampling.max_tokens = Some(3)),
            ("temperature", |r| r.sampling.temperature = Some(0.5)),
            ("top_p", |r| r.sampling.top_p = Some(0.9)),
            ("top_k", |r| r.sampling.top_k = Some(4)),
            ("min_p", |r| r.sampling.min_p = Some(0.1)),
            ("repeat_penalty", |r| r.sampling.repeat_penalty = Some(1.1)),
            ("presence_penalty", |r| r.sampling.presence_penalty = Some(0.1)),
            ("frequency_penalty", |r| r.sampling.frequency_penalty = Some(0.1)),
            ("seed", |r| r.sampling.seed = Some(1)),
            ("stop", |r| r.sampling.stop = vec!["x".into()]),
            ("carried", |r| {
                r.carried = crate::carry::Carried::from(crate::carry::WireDialect::OpenAi);
                r.carried.fields.insert("logit_bias".into(), serde_json::json!({"1": 2}));
            }),
            ("message extra", |r| {
                let mut m = Message::new(Role::User, "hi");
                m.extra.insert("name".into(), serde_json::json!("bob"));
                r.input = Input::Chat(vec![m]);
            }),
        ];
        let mut seen = std::collections::HashSet::from([k]);
        for (what, change) in changes {
            let mut r = base();
            change(&mut r);
            assert!(seen.insert(Key::of(&r)), "changing {what} must change the key");
        }
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        let text = |prompt: &str, system: Option<&str>| {
            let mut r = base();
            r.input = Input::Text { prompt: prompt.into(), system: system.map(str::to_owned), raw: false };
            Key::of(&r)
        };
        assert_ne!(text("ab", Some("c")), text("a", Some("bc")));
        assert_ne!(text("a", None), text("a", Some("")));
        let chat = |parts: &[&str]| {
            let mut r = base();
            r.input = Input::Chat(parts.iter().map(|c| Message::new(Role::User, *c)).collect());
            Key::of(&r)
        };
        assert_ne!(chat(&["ab"]), chat(&["a", "b"]));
        assert_eq!(Key::of(&base()).hex().len(), 64);
    }

    #[test]
    fn each_tenant_has_its_own_keys() {
        let r = base();
        let tenants = [
            TenantId::Local,
            TenantId::Anonymous([10, 0, 0, 1].into()),
            TenantId::Anonymous([10, 0, 0, 2].into()),
            TenantId::ServiceKey([1; 32]),
            TenantId::User("alice".into()),
            TenantId::User("bob".into()),
        ];
        let mut seen = std::collections::HashSet::from([Key::of(&r)]);
        for t in &tenants {
            assert!(seen.insert(Key::scoped(&r, Some(t))), "{t} shares a key");
            assert_eq!(Key::scoped(&r, Some(t)), Key::scoped(&r, Some(&t.clone())), "stable");
        }
    }
}
