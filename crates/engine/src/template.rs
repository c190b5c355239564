//! Chat prompts rendered from the model's own Jinja template (`tokenizer.chat_template`
//! in the GGUF metadata) with minijinja, the way `transformers` renders them.
//! llama.cpp's built-in `apply_chat_template` only pattern-matches well-known
//! templates and drops details such as SmolLM2's default system prompt.

use minijinja::{Environment, ErrorKind, context};

use crate::{ChatMessage, EngineError};

const TEMPLATE_NAME: &str = "chat";

/// Most template instructions one render may run: a template that loops (or that a
/// conversation makes loop) stops with an error. SmolLM2's template spends about
/// 60 per message (a test below checks it), so this renders some 300,000 messages,
/// more than a maximal request body holds.
pub const TEMPLATE_FUEL: u64 = 20_000_000;

/// Longest rendered prompt: far past any context window, so only a runaway template
/// or conversation meets it.
pub const MAX_RENDERED_BYTES: usize = 64 << 20;

/// Used when a model carries no template: plain ChatML.
pub(crate) const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// A compiled chat template plus the special tokens it may refer to.
#[derive(Debug)]
pub(crate) struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    /// Compiles `source`; fails if it is not valid Jinja.
    pub(crate) fn new(source: String, bos_token: String, eos_token: String) -> Result<Self, EngineError> {
        let mut env = Environment::new();
        // `transformers` renders with trim_blocks and lstrip_blocks; templates are
        // written against that whitespace behaviour.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        // Python string/dict methods (`.strip()`, `.items()`, ...) used by HF templates.
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.add_template_owned(TEMPLATE_NAME, source)
            .map_err(|err| EngineError::Template(err.to_string()))?;
        Ok(Self { env, bos_token, eos_token })
    }

    /// Whether rendered text already begins with the BOS token, so none must be added.
    pub(crate) fn starts_with_bos(&self, text: &str) -> bool {
        !self.bos_token.is_empty() && text.starts_with(&self.bos_token)
    }

    /// Renders a conversation, ending with the assistant's generation prompt. `tools`
    /// (OpenAI-shaped function definitions) are the template's `tools`, left undefined
    /// when there are none, as `transformers` passes `tools=None`.
    pub(crate) fn render(
        &self,
        messages: &[ChatMessage],
        tools: &[serde_json::Value],
    ) -> Result<String, EngineError> {
        if messages.is_empty() {
            return Err(EngineError::InvalidRequest("no messages".into()));
        }
        let template =
            self.env.get_template(TEMPLATE_NAME).map_err(|err| EngineError::Template(err.to_string()))?;
        let tools = (!tools.is_empty()).then_some(tools);
        let ctx = context! {
            messages => messages,
            tools => tools,
            add_generation_prompt => true,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        };
        let mut out = CappedWriter { bytes: Vec::new() };
        template.render_captured_to(ctx, &mut out).map_err(|err| match err.kind() {
            // The template itself refused the conversation (e.g. roles out of order).
            ErrorKind::InvalidOperation => EngineError::InvalidRequest(err.to_string()),
            ErrorKind::OutOfFuel => EngineError::InvalidRequest(format!(
                "the chat template ran more than {TEMPLATE_FUEL} instructions on this conversation"
            )),
            ErrorKind::WriteFailure => EngineError::InvalidRequest(format!(
                "the chat template rendered more than {MAX_RENDERED_BYTES} bytes for this conversation"
            )),
            _ => EngineError::Template(err.to_string()),
        })?;
        String::from_utf8(out.bytes).map_err(|e| EngineError::Template(e.to_string()))
    }
}

/// Collects rendered output, refusing to grow past [`MAX_RENDERED_BYTES`].
struct CappedWriter {
    bytes: Vec<u8>,
}

impl std::io::Write for CappedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > MAX_RENDERED_BYTES {
            return Err(std::io::Error::other("rendered prompt too long"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Compiles the chat template `source` and renders `messages` with it, exactly as the
/// engine renders a conversation for a model carrying that template; for fuzzing and
/// tests, which have no model file.
pub fn render_chat_template(
    source: &str,
    bos_token: &str,
    eos_token: &str,
    messages: &[ChatMessage],
) -> Result<String, EngineError> {
    ChatTemplate::new(source.to_owned(), bos_token.to_owned(), eos_token.to_owned())?.render(messages, &[])
}

fn raise_exception(message: String) -> Result<String, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-135M-Instruct's template, as stored in its GGUF metadata.
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    /// Fuel SmolLM2's template may spend per message.
    const FUEL_PER_SMOLLM2_MESSAGE: u64 = 60;

    fn smollm2() -> ChatTemplate {
        ChatTemplate::new(SMOLLM2.into(), "<|im_start|>".into(), "<|im_end|>".into()).unwrap()
    }

    #[test]
    fn smollm2_adds_its_default_system_prompt() {
        let out = smollm2().render(&[ChatMessage::user("Hi")], &[]).unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn explicit_system_prompt_replaces_the_default() {
        let out =
            smollm2().render(&[ChatMessage::system("Be brief."), ChatMessage::user("Hi")], &[]).unwrap();
        assert!(out.starts_with("<|im_start|>system\nBe brief.<|im_end|>\n"));
        assert!(!out.contains("SmolLM"));
    }

    #[test]
    fn chatml_fallback_renders_every_turn() {
        let tpl = ChatTemplate::new(CHATML.into(), String::new(), String::new()).unwrap();
        let out = tpl
            .render(&[ChatMessage::user("a"), ChatMessage::assistant("b"), ChatMessage::user("c")], &[])
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nb<|im_end|>\n\
             <|im_start|>user\nc<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn python_methods_and_block_trimming_work() {
        let src = "{% for m in messages %}\n  {{ m.content.strip() | upper }}|{{ bos_token }}\n{% endfor %}";
        let tpl = ChatTemplate::new(src.into(), "<s>".into(), "</s>".into()).unwrap();
        let out = tpl.render(&[ChatMessage::user("  hi  ")], &[]).unwrap();
        assert_eq!(out, "  HI|<s>\n");
    }

    #[test]
    fn raise_exception_is_a_client_error() {
        let src =
            "{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}ok";
        let tpl = ChatTemplate::new(src.into(), String::new(), String::new()).unwrap();
        let err = tpl.render(&[ChatMessage::assistant("x")], &[]).unwrap_err();
        assert!(
            matches!(err, EngineError::InvalidRequest(ref m) if m.contains("first must be user")),
            "{err:?}"
        );
        assert_eq!(tpl.render(&[ChatMessage::user("x")], &[]).unwrap(), "ok");
    }

    /// A short Hermes-style template, as a test would supply one.
    const HERMES: &str = "{% if tools %}<tools>{% for t in tools %}{{ t.function.name }}:{{ t.function.parameters | tojson }}{% endfor %}</tools>\n{% endif %}{% for m in messages %}{% if m.tool_calls is defined %}{% for c in m.tool_calls %}<tool_call>{{ c.function.name }} {{ c.function.arguments | tojson }}</tool_call>{% endfor %}{% elif m.role == 'tool' %}<tool_response>{{ m.tool_call_id }}={{ m.content }}</tool_response>{% else %}{{ m.role }}: {{ m.content }}{% endif %}\n{% endfor %}";

    #[test]
    fn tools_calls_and_results_reach_the_template_as_transformers_passes_them() {
        let tpl = ChatTemplate::new(HERMES.into(), String::new(), String::new()).unwrap();
        let tools = [
            serde_json::json!({"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}),
        ];
        let call = serde_json::json!({"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}});
        let messages = [
            ChatMessage::user("hi"),
            ChatMessage { tool_calls: vec![call], ..ChatMessage::assistant("") },
            ChatMessage { tool_call_id: Some("c1".into()), ..ChatMessage::new("tool", "42") },
        ];
        let out = tpl.render(&messages, &tools).unwrap();
        assert_eq!(
            out,
            // trim_blocks eats the newline after `{% endif %}`, as in `transformers`.
            "<tools>f:{\"type\":\"object\"}</tools>\nuser: hi<tool_call>f {\"x\":1}</tool_call><tool_response>c1=42</tool_response>"
        );
        let without = tpl.render(&messages[..1], &[]).unwrap();
        assert_eq!(without, "user: hi", "no tools: the template sees none");
    }

    #[test]
    fn bad_template_fails_to_compile() {
        assert!(ChatTemplate::new("{% for %}".into(), String::new(), String::new()).is_err());
    }

    #[test]
    fn a_template_that_loops_runs_out_of_fuel() {
        let src = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
        let tpl = ChatTemplate::new(src.into(), String::new(), String::new()).unwrap();
        let err = tpl.render(&[ChatMessage::user("x")], &[]).unwrap_err();
        assert!(matches!(err, EngineError::InvalidRequest(ref m) if m.contains("instructions")), "{err:?}");
    }

    #[test]
    fn a_runaway_rendering_is_cut_at_the_size_cap() {
        // 100 x 1 MB of output: fuel allows it, the size cap does not.
        let src = "{% for i in range(100) %}{{ 'x' * 1000000 }}{% endfor %}";
        let tpl = ChatTemplate::new(src.into(), String::new(), String::new()).unwrap();
        let err = tpl.render(&[ChatMessage::user("x")], &[]).unwrap_err();
        assert!(matches!(err, EngineError::InvalidRequest(ref m) if m.contains("bytes")), "{err:?}");
    }

    #[test]
    fn the_fuel_covers_a_conversation_as_large_as_a_request_body() {
        // A 4 MiB body holds at most ~140,000 messages (`{"role":"user","content":""},`).
        let messages = vec![ChatMessage::user(""); 140_000];
        assert!(smollm2().render(&messages, &[]).is_ok());
        let per_message = {
            let env = &smollm2().env;
            let tpl = env.get_template(TEMPLATE_NAME).unwrap();
            let captured =
                tpl.render_captured(context! { messages => vec![ChatMessage::user("a"); 100] }).unwrap();
            let (consumed, _) = captured.state().fuel_levels().unwrap();
            consumed / 100
        };
        assert!(per_message <= FUEL_PER_SMOLLM2_MESSAGE, "{per_message} fuel per message");
    }

    #[test]
    fn empty_conversation_is_rejected() {
        assert!(matches!(smollm2().render(&[], &[]), Err(EngineError::InvalidRequest(_))));
    }
}
