//! Incremental server-sent-events decoder: feed it body frames as they come, take out
//! the `data` payload of each complete event. Events may be split across frames.

use bytes::{Buf, Bytes, BytesMut};

/// Upper bound on one event, so a garbage upstream cannot grow memory without limit.
const MAX_EVENT_BYTES: usize = 4 << 20;

/// Splits an SSE byte stream into event payloads.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buf: BytesMut,
    data: Vec<u8>,
    has_data: bool,
}

/// What a call to [`SseDecoder::next_event`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum SseItem {
    /// The `data` of one complete event (multi-line data joined by `\n`).
    Data(Bytes),
    /// The buffered event is larger than the limit.
    TooLarge,
}

impl SseDecoder {
    /// Appends a frame of the body.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// Takes the next complete event's data, or `None` until more bytes arrive.
    pub fn next_event(&mut self) -> Option<SseItem> {
        loop {
            let Some(nl) = memchr::memchr(b'\n', &self.buf) else {
                return (self.buf.len() + self.data.len() > MAX_EVENT_BYTES).then_some(SseItem::TooLarge);
            };
            let mut line = self.buf.split_to(nl + 1);
            line.truncate(nl);
            if line.last() == Some(&b'\r') {
                line.truncate(nl - 1);
            }
            if line.is_empty() {
                if self.has_data {
                    self.has_data = false;
                    let data = std::mem::take(&mut self.data);
                    return Some(SseItem::Data(Bytes::from(data)));
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix(b"data:") {
                let rest = rest.strip_prefix(b" ").unwrap_or(rest);
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(rest);
                self.has_data = true;
                if self.data.len() > MAX_EVENT_BYTES {
                    return Some(SseItem::TooLarge);
                }
            }
            // Comments (`:`), `event:`, `id:` and `retry:` lines carry nothing we use.
        }
    }

    /// At end of body: the data of an unterminated last event, if any.
    pub fn finish(&mut self) -> Option<Bytes> {
        if !self.buf.is_empty() {
            let rest = self.buf.split();
            let line = rest.chunk().strip_suffix(b"\r").unwrap_or(rest.chunk());
            if let Some(d) = line.strip_prefix(b"data:") {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(d.strip_prefix(b" ").unwrap_or(d));
                self.has_data = true;
            }
        }
        self.has_data.then(|| {
            self.has_data = false;
            Bytes::from(std::mem::take(&mut self.data))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(s: &str) -> Option<SseItem> {
        Some(SseItem::Data(Bytes::copy_from_slice(s.as_bytes())))
    }

    #[test]
    fn events_split_across_frames() {
        let mut d = SseDecoder::default();
        d.push(b"data: {\"a\"");
        assert_eq!(d.next_event(), None);
        d.push(b":1}\n\ndata: [DONE]\r\n\r\n: keep-alive\n\n");
        assert_eq!(d.next_event(), data("{\"a\":1}"));
        assert_eq!(d.next_event(), data("[DONE]"));
        assert_eq!(d.next_event(), None);
    }

    #[test]
    fn multiline_data_and_other_fields() {
        let mut d = SseDecoder::default();
        d.push(b"event: message\nid: 7\ndata: a\ndata:b\n\n");
        assert_eq!(d.next_event(), data("a\nb"));
    }

    #[test]
    fn unterminated_last_event_is_kept_for_finish() {
        let mut d = SseDecoder::default();
        d.push(b"data: x");
        assert_eq!(d.next_event(), None);
        assert_eq!(d.finish(), Some(Bytes::from_static(b"x")));
    }

    #[test]
    fn oversized_event_is_refused() {
        let mut d = SseDecoder::default();
        d.push(&vec![b'a'; MAX_EVENT_BYTES + 1]);
        assert_eq!(d.next_event(), Some(SseItem::TooLarge));
    }
}
