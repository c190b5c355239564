//! Reassembles token bytes into text: a token may end in the middle of a UTF-8
//! character, so incomplete trailing bytes wait for the next token.

/// Turns a stream of byte pieces into whole-character text.
#[derive(Debug, Default)]
pub(crate) struct Utf8Buffer {
    pending: Vec<u8>,
}

impl Utf8Buffer {
    /// Appends `bytes` and returns every complete character now available. Invalid
    /// bytes become U+FFFD; an incomplete character at the end is kept for later.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(text) => {
                    out.push_str(text);
                    self.pending.clear();
                    return out;
                }
                Err(err) => {
                    let valid = err.valid_up_to();
                    out.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match err.error_len() {
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Ends the stream: an incomplete character left over becomes U+FFFD.
    pub(crate) fn finish(&mut self) -> String {
        let rest = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn character_split_across_pieces_is_emitted_whole() {
        let bytes = "日本".as_bytes();
        let mut buf = Utf8Buffer::default();
        assert_eq!(buf.push(&bytes[..2]), "");
        assert_eq!(buf.push(&bytes[2..4]), "日");
        assert_eq!(buf.push(&bytes[4..]), "本");
        assert_eq!(buf.finish(), "");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut buf = Utf8Buffer::default();
        assert_eq!(buf.push(b"a\xffb"), "a\u{fffd}b");
    }

    #[test]
    fn dangling_prefix_is_flushed_lossily() {
        let mut buf = Utf8Buffer::default();
        assert_eq!(buf.push(b"ok\xe6\x97"), "ok");
        assert_eq!(buf.finish(), "\u{fffd}");
    }
}
