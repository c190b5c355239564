//! Secrets out of upstream messages: an upstream's error message is passed to the
//! client as it was written, except for anything that looks like a credential (API
//! keys, bearer tokens, `key=...` query parameters, JWTs, long random tokens), which
//! becomes `[redacted]`.

/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";

/// Prefixes of well-known API key formats (OpenAI, Anthropic, Groq, xAI, Hugging
/// Face, GitHub, AWS, Google, JWTs).
const KEY_PREFIXES: &[&str] = &[
    "sk-",
    "sk_",
    "pk-",
    "rk-",
    "sess-",
    "gsk_",
    "xai-",
    "hf_",
    "ghp_",
    "gho_",
    "github_pat_",
    "AKIA",
    "AIza",
    "eyJ",
];

/// Words after which the next word is a credential.
const INTRODUCERS: &[&str] = &["bearer", "basic"];

/// Names whose `name=value` or `name: value` value is a credential.
const SECRET_NAMES: &[&str] =
    &["key", "api_key", "apikey", "api-key", "token", "access_token", "secret", "password", "auth"];

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'+' | b'/' | b'*')
}

/// True for a word that looks like a credential on its own.
fn looks_secret(word: &str) -> bool {
    if word.len() >= 8 && KEY_PREFIXES.iter().any(|p| word.starts_with(p)) {
        return true;
    }
    // Long random tokens: letters and digits mixed, no spaces, 32 characters or more.
    let letters = word.bytes().filter(u8::is_ascii_alphabetic).count();
    let digits = word.bytes().filter(u8::is_ascii_digit).count();
    word.len() >= 32 && letters >= 8 && digits >= 4
}

/// `text` with every credential-looking word replaced by [`REDACTED`].
pub fn scrub(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    // The previous word, lowercased, when it introduces a credential.
    let mut introduced = false;
    while i < bytes.len() {
        if !is_word_byte(bytes[i]) {
            let c = text[i..].chars().next().unwrap_or(' ');
            // `key=value`, `"token": "value"`: the separator keeps what came before it.
            if !matches!(c, '=' | ':' | '"' | '\'' | ' ') {
                introduced = false;
            }
            out.push(c);
            i += c.len_utf8();
            continue;
        }
        let start = i;
        while i < bytes.len() && is_word_byte(bytes[i]) {
            i += 1;
        }
        // A sentence's full stop is not part of the word.
        let word = text[start..i].trim_end_matches('.');
        let stop = &text[start + word.len()..i];
        if introduced || looks_secret(word) {
            out.push_str(REDACTED);
            out.push_str(stop);
            introduced = false;
            continue;
        }
        out.push_str(word);
        out.push_str(stop);
        let lower = word.to_ascii_lowercase();
        introduced = INTRODUCERS.contains(&lower.as_str()) || SECRET_NAMES.contains(&lower.as_str());
        // "api key" / "key provided": a noun, not a `name=value`; only `=`/`:` follow it.
        if SECRET_NAMES.contains(&lower.as_str()) && !INTRODUCERS.contains(&lower.as_str()) {
            let rest = text[i..].trim_start_matches(['"', '\'']);
            introduced = rest.starts_with('=') || rest.starts_with(':');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_tokens_are_redacted() {
        let cases = [
            (
                "Incorrect API key provided: sk-proj-abc123DEF456. You can find your API key at https://x.",
                "Incorrect API key provided: [redacted]. You can find your API key at https://x.",
            ),
            ("Authorization: Bearer abc.def.ghi rejected", "Authorization: Bearer [redacted] rejected"),
            ("GET /v1/models?key=AIzaSyA123&x=1 failed", "GET /v1/models?key=[redacted]&x=1 failed"),
            (r#"{"api_key": "hunter2"}"#, r#"{"api_key": "[redacted]"}"#),
            ("token 0123456789abcdefABCDEF0123456789ab expired", "token [redacted] expired"),
            ("jwt eyJhbGciOiJIUzI1NiJ9.e30.sig", "jwt [redacted]"),
        ];
        for (input, want) in cases {
            assert_eq!(scrub(input), want, "{input}");
        }
    }

    #[test]
    fn ordinary_messages_are_kept_exactly() {
        for text in [
            "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.",
            "The model `gpt-9` does not exist or you do not have access to it.",
            "Rate limit reached for gpt-4o in organization org-123 on tokens per min (TPM): Limit 30000.",
            "invalid key in JSON: 'foo' is not valid",
            "ünïcode — fine",
        ] {
            assert_eq!(scrub(text), text);
        }
    }
}
