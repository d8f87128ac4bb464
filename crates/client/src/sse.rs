//! Server-sent events decoding: bytes in, complete events out, whatever the
//! read boundaries. Follows the WHATWG event-stream rules for lines (`\n`,
//! `\r\n` or `\r`), comments, fields and dispatch on a blank line.

use memchr::memchr2;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, when the server named the event type.
    pub event: Option<String>,
    /// The `data:` lines joined by `\n`.
    pub data: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("the event stream is not valid UTF-8")]
    InvalidUtf8,
    #[error("one event exceeded {limit} bytes")]
    EventTooLarge { limit: usize },
}

/// Incremental decoder. Feed it every chunk as it arrives with [`push`];
/// call [`finish`] at end of stream.
///
/// [`push`]: SseDecoder::push
/// [`finish`]: SseDecoder::finish
#[derive(Debug)]
pub struct SseDecoder {
    /// Bytes of the current, not yet terminated line.
    line: Vec<u8>,
    /// A `\r` ended the previous chunk: a `\n` starting the next one belongs
    /// to the same line ending.
    after_cr: bool,
    data: Vec<u8>,
    has_data: bool,
    event: Option<String>,
    max_event_bytes: usize,
    /// Emptied buffers of handled events (see [`recycle`]), each reused for
    /// the data of a later event instead of a new allocation.
    ///
    /// [`recycle`]: SseDecoder::recycle
    spare: Vec<Vec<u8>>,
}

/// Most buffers kept for reuse, and the largest one kept.
const SPARE_BUFFERS: usize = 16;
const SPARE_BYTES: usize = 4096;

impl SseDecoder {
    pub fn new(max_event_bytes: usize) -> SseDecoder {
        SseDecoder {
            line: Vec::new(),
            after_cr: false,
            data: Vec::new(),
            has_data: false,
            event: None,
            max_event_bytes,
            spare: Vec::new(),
        }
    }

    /// Takes back the buffers of events that were handled, leaving `events`
    /// empty: the next events' data goes into them.
    pub fn recycle(&mut self, events: &mut Vec<SseEvent>) {
        for ev in events.drain(..) {
            let mut buf = ev.data.into_bytes();
            if self.spare.len() < SPARE_BUFFERS && buf.capacity() <= SPARE_BYTES {
                buf.clear();
                self.spare.push(buf);
            }
        }
    }

    /// Decodes `chunk`, appending every event it completes to `out`.
    pub fn push(&mut self, mut chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if self.after_cr {
            self.after_cr = false;
            if let Some(b'\n') = chunk.first() {
                chunk = &chunk[1..];
            }
        }
        while let Some(i) = memchr2(b'\n', b'\r', chunk) {
            let is_cr = chunk[i] == b'\r';
            if self.line.is_empty() {
                self.handle_line(&chunk[..i], out)?;
            } else {
                self.line.extend_from_slice(&chunk[..i]);
                let line = std::mem::take(&mut self.line);
                self.handle_line(&line, out)?;
                self.line = line;
                self.line.clear();
            }
            chunk = &chunk[i + 1..];
            if is_cr {
                match chunk.first() {
                    Some(b'\n') => chunk = &chunk[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        if self.line.len() + chunk.len() + self.data.len() > self.max_event_bytes {
            return Err(SseError::EventTooLarge { limit: self.max_event_bytes });
        }
        self.line.extend_from_slice(chunk);
        Ok(())
    }

    /// Ends the stream: an unterminated last line is taken as complete and a
    /// pending event is dispatched (servers that close without the final
    /// blank line lose nothing). Returns whether anything was pending.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) -> Result<bool, SseError> {
        let mut pending = false;
        if !self.line.is_empty() {
            pending = true;
            let line = std::mem::take(&mut self.line);
            self.handle_line(&line, out)?;
        }
        if self.has_data {
            pending = true;
            self.dispatch(out)?;
        }
        Ok(pending)
    }

    fn handle_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if line.is_empty() {
            if self.has_data {
                self.dispatch(out)?;
            } else {
                self.event = None;
            }
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(()); // comment or keep-alive
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.data.len() + value.len() > self.max_event_bytes {
                    return Err(SseError::EventTooLarge { limit: self.max_event_bytes });
                }
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => {
                let v = std::str::from_utf8(value).map_err(|_| SseError::InvalidUtf8)?;
                self.event = Some(v.to_string());
            }
            _ => {} // id, retry and unknown fields carry nothing we use
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let bytes = std::mem::replace(&mut self.data, self.spare.pop().unwrap_or_default());
        self.has_data = false;
        let data = String::from_utf8(bytes).map_err(|_| SseError::InvalidUtf8)?;
        out.push(SseEvent { event: self.event.take(), data });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(input: &[u8], piece: usize) -> Vec<SseEvent> {
        let mut d = SseDecoder::new(1 << 20);
        let mut out = Vec::new();
        for c in input.chunks(piece.max(1)) {
            d.push(c, &mut out).unwrap();
        }
        d.finish(&mut out).unwrap();
        out
    }

    const STREAM: &[u8] = b": keep-alive\r\n\r\ndata: {\"a\":1}\r\n\r\nevent: ping\r\ndata: x\r\ndata: y\r\n\r\n: comment\n\ndata:no-space\n\ndata: [DONE]\n\n";

    #[test]
    fn same_events_whatever_the_read_boundaries() {
        let whole = decode_in_pieces(STREAM, STREAM.len());
        assert_eq!(whole.len(), 4);
        assert_eq!(whole[0].data, "{\"a\":1}");
        assert_eq!(whole[1].event.as_deref(), Some("ping"));
        assert_eq!(whole[1].data, "x\ny");
        assert_eq!(whole[2].data, "no-space");
        assert_eq!(whole[3].data, "[DONE]");
        for piece in 1..STREAM.len() {
            assert_eq!(decode_in_pieces(STREAM, piece), whole, "piece size {piece}");
        }
    }

    #[test]
    fn recycled_buffers_change_nothing() {
        let whole = decode_in_pieces(STREAM, STREAM.len());
        for piece in 1..STREAM.len() {
            let mut d = SseDecoder::new(1 << 20);
            let (mut out, mut events) = (Vec::new(), Vec::new());
            for c in STREAM.chunks(piece) {
                d.push(c, &mut events).unwrap();
                out.extend(events.iter().cloned());
                d.recycle(&mut events);
                assert!(events.is_empty());
            }
            d.finish(&mut out).unwrap();
            assert_eq!(out, whole, "piece size {piece}");
        }
    }

    #[test]
    fn bare_cr_line_endings_work() {
        let ev = decode_in_pieces(b"data: a\r\rdata: b\r\r", 1);
        assert_eq!(ev.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn unterminated_last_event_is_kept() {
        let ev = decode_in_pieces(b"data: a\n\ndata: [DONE]", 3);
        assert_eq!(ev.last().unwrap().data, "[DONE]");
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut d = SseDecoder::new(1024);
        let mut out = Vec::new();
        let r = d.push(b"data: \xff\xfe\n\n", &mut out);
        assert_eq!(r, Err(SseError::InvalidUtf8));
    }

    #[test]
    fn a_multibyte_char_split_across_reads_is_fine() {
        let s = "data: héllo ✓\n\n".as_bytes();
        for piece in 1..s.len() {
            assert_eq!(decode_in_pieces(s, piece)[0].data, "héllo ✓");
        }
    }

    #[test]
    fn oversized_events_are_refused() {
        let mut d = SseDecoder::new(16);
        let mut out = Vec::new();
        let r = d.push(&[b'x'; 64], &mut out);
        assert!(matches!(r, Err(SseError::EventTooLarge { .. })));
        let mut d = SseDecoder::new(16);
        let r = d.push(b"data: 0123456789\ndata: 0123456789\n", &mut out);
        assert!(matches!(r, Err(SseError::EventTooLarge { .. })));
    }
}
