//! Incremental newline-delimited JSON splitter: feed body frames, take out whole lines.

use bytes::{Bytes, BytesMut};

/// Upper bound on one line.
const MAX_LINE_BYTES: usize = 4 << 20;

/// Splits an NDJSON byte stream into lines.
#[derive(Debug, Default)]
pub struct LineDecoder {
    buf: BytesMut,
}

/// What a call to [`LineDecoder::next_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum LineItem {
    /// One non-empty line, without its newline.
    Line(Bytes),
    /// A line longer than the limit.
    TooLarge,
}

impl LineDecoder {
    /// Appends a frame of the body.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// Takes the next complete line, or `None` until more bytes arrive.
    pub fn next_line(&mut self) -> Option<LineItem> {
        loop {
            let Some(nl) = memchr::memchr(b'\n', &self.buf) else {
                return (self.buf.len() > MAX_LINE_BYTES).then_some(LineItem::TooLarge);
            };
            let mut line = self.buf.split_to(nl + 1).freeze();
            line.truncate(nl);
            if line.last() == Some(&b'\r') {
                line.truncate(nl - 1);
            }
            if !line.iter().all(u8::is_ascii_whitespace) {
                return Some(LineItem::Line(line));
            }
        }
    }

    /// At end of body: an unterminated last line, if any.
    pub fn finish(&mut self) -> Option<Bytes> {
        let rest = self.buf.split().freeze();
        (!rest.iter().all(u8::is_ascii_whitespace)).then_some(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_frames() {
        let mut d = LineDecoder::default();
        d.push(b"{\"a\":");
        assert_eq!(d.next_line(), None);
        d.push(b"1}\n\n{\"b\":2}\r\n{\"c\"");
        assert_eq!(d.next_line(), Some(LineItem::Line(Bytes::from_static(b"{\"a\":1}"))));
        assert_eq!(d.next_line(), Some(LineItem::Line(Bytes::from_static(b"{\"b\":2}"))));
        assert_eq!(d.next_line(), None);
        assert_eq!(d.finish(), Some(Bytes::from_static(b"{\"c\"")));
    }
}
