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
/// call [`finish`] at end of stream. Each complete event is lent to a
/// callback as soon as it is decoded, in one buffer reused for the next:
/// a stream of thousands of events allocates nothing per event.
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
    /// The event being lent (its buffers go back to `data` and
    /// `event_spare` afterwards).
    ready: SseEvent,
    /// An emptied `event:` buffer, for the next named event.
    event_spare: String,
}

impl SseDecoder {
    pub fn new(max_event_bytes: usize) -> SseDecoder {
        SseDecoder {
            line: Vec::new(),
            after_cr: false,
            data: Vec::new(),
            has_data: false,
            event: None,
            max_event_bytes,
            ready: SseEvent { event: None, data: String::new() },
            event_spare: String::new(),
        }
    }

    /// Decodes `chunk`, calling `each` with every event it completes, in
    /// order. An error of `each` stops the decoding and is returned.
    pub fn push<E: From<SseError>>(
        &mut self,
        mut chunk: &[u8],
        each: &mut impl FnMut(&SseEvent) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.after_cr {
            self.after_cr = false;
            if let Some(b'\n') = chunk.first() {
                chunk = &chunk[1..];
            }
        }
        while let Some(i) = memchr2(b'\n', b'\r', chunk) {
            let is_cr = chunk[i] == b'\r';
            if self.line.is_empty() {
                self.handle_line(&chunk[..i], each)?;
            } else {
                self.line.extend_from_slice(&chunk[..i]);
                let line = std::mem::take(&mut self.line);
                let handled = self.handle_line(&line, each);
                self.line = line;
                self.line.clear();
                handled?;
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
            return Err(SseError::EventTooLarge { limit: self.max_event_bytes }.into());
        }
        self.line.extend_from_slice(chunk);
        Ok(())
    }

    /// Ends the stream: an unterminated last line is taken as complete and a
    /// pending event is dispatched (servers that close without the final
    /// blank line lose nothing). Returns whether anything was pending.
    pub fn finish<E: From<SseError>>(&mut self, each: &mut impl FnMut(&SseEvent) -> Result<(), E>) -> Result<bool, E> {
        let mut pending = false;
        if !self.line.is_empty() {
            pending = true;
            let line = std::mem::take(&mut self.line);
            self.handle_line(&line, each)?;
        }
        if self.has_data {
            pending = true;
            self.dispatch(each)?;
        }
        Ok(pending)
    }

    fn handle_line<E: From<SseError>>(
        &mut self,
        line: &[u8],
        each: &mut impl FnMut(&SseEvent) -> Result<(), E>,
    ) -> Result<(), E> {
        if line.is_empty() {
            if self.has_data {
                self.dispatch(each)?;
            } else if let Some(e) = self.event.take() {
                self.spare_event(e);
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
                    return Err(SseError::EventTooLarge { limit: self.max_event_bytes }.into());
                }
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => {
                let v = std::str::from_utf8(value).map_err(|_| SseError::InvalidUtf8)?;
                let mut name = match self.event.take() {
                    Some(old) => old,
                    None => std::mem::take(&mut self.event_spare),
                };
                name.clear();
                name.push_str(v);
                self.event = Some(name);
            }
            _ => {} // id, retry and unknown fields carry nothing we use
        }
        Ok(())
    }

    fn spare_event(&mut self, mut e: String) {
        e.clear();
        self.event_spare = e;
    }

    /// An event's data buffer, emptied, takes the next event's data.
    fn spare_data(&mut self, mut bytes: Vec<u8>) {
        bytes.clear();
        self.data = bytes;
    }

    fn dispatch<E: From<SseError>>(&mut self, each: &mut impl FnMut(&SseEvent) -> Result<(), E>) -> Result<(), E> {
        self.has_data = false;
        let bytes = std::mem::take(&mut self.data);
        let data = match String::from_utf8(bytes) {
            Ok(d) => d,
            Err(e) => {
                self.spare_data(e.into_bytes());
                return Err(SseError::InvalidUtf8.into());
            }
        };
        self.ready.data = data;
        self.ready.event = self.event.take();
        let handled = each(&self.ready);
        let lent = std::mem::take(&mut self.ready.data).into_bytes();
        self.spare_data(lent);
        if let Some(e) = self.ready.event.take() {
            self.spare_event(e);
        }
        handled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(out: &mut Vec<SseEvent>) -> impl FnMut(&SseEvent) -> Result<(), SseError> + '_ {
        |ev| {
            out.push(ev.clone());
            Ok(())
        }
    }

    fn decode_in_pieces(input: &[u8], piece: usize) -> Vec<SseEvent> {
        let mut d = SseDecoder::new(1 << 20);
        let mut out = Vec::new();
        for c in input.chunks(piece.max(1)) {
            d.push(c, &mut collect(&mut out)).unwrap();
        }
        d.finish(&mut collect(&mut out)).unwrap();
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
    fn a_callback_error_stops_decoding_and_the_decoder_goes_on() {
        let mut d = SseDecoder::new(1 << 20);
        let mut seen = Vec::new();
        let mut stop_at_b = |ev: &SseEvent| {
            seen.push(ev.data.clone());
            if ev.data == "b" {
                Err(SseError::InvalidUtf8)
            } else {
                Ok(())
            }
        };
        assert!(d.push(b"event: x\ndata: a\n\ndata: b\n\ndata: c\n\n", &mut stop_at_b).is_err());
        assert_eq!(seen, ["a", "b"]);
        // The reused buffers hold nothing of the events lent before.
        let rest = decode_with(&mut d, b"data: d\n\nevent: y\ndata: e\n\n");
        assert_eq!(
            rest.iter().map(|e| (e.event.as_deref(), e.data.as_str())).collect::<Vec<_>>(),
            [(None, "d"), (Some("y"), "e")]
        );
    }

    fn decode_with(d: &mut SseDecoder, input: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        d.push(input, &mut collect(&mut out)).unwrap();
        out
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
        let r = d.push(b"data: \xff\xfe\n\n", &mut collect(&mut out));
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
        let r = d.push(&[b'x'; 64], &mut collect(&mut out));
        assert!(matches!(r, Err(SseError::EventTooLarge { .. })));
        let mut d = SseDecoder::new(16);
        let r = d.push(b"data: 0123456789\ndata: 0123456789\n", &mut collect(&mut out));
        assert!(matches!(r, Err(SseError::EventTooLarge { .. })));
    }
}
