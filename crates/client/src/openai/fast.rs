//! A hand-written reader for the usual OpenAI stream chunk, the one every
//! token of a stream brings: `{"id":…,"choices":[{"index":0,"delta":
//! {"content":"…"},"finish_reason":null}]}` and its relatives (vLLM, SGLang,
//! llama.cpp, OpenAI). It finds what [`super::reduce`] needs without
//! building serde's structures, and borrows strings without escapes from the
//! event.
//!
//! It never answers differently from serde: anything it does not recognise
//! with certainty makes it give up (`None`), and the caller then parses the
//! event with serde, which gives the record, or the error, it always gave.
//! It gives up on keys with escapes, a known key twice (serde refuses
//! that), a value of a type serde would refuse, a lone surrogate in a
//! `\u` escape, `error` and `message` at the top (an error event), nesting
//! deeper than [`MAX_DEPTH`], and any JSON syntax error. Every value it
//! skips is checked as strictly as serde checks what it ignores, or more
//! strictly. The rare members `usage`, `timings` and `tool_calls` are found
//! by hand and their text is read by serde into the same types as the full
//! parse.

use std::borrow::Cow;

use serde::de::DeserializeOwned;

use super::{absorb_choice, timings_of, usage_of, Chunk, WireChoice, WireDelta, WireTimings, WireToolCall, WireUsage};

/// Deepest nesting read here (serde's own limit is 128, so whatever is
/// handed to serde from inside stays well within it).
const MAX_DEPTH: u32 = 64;

/// Reads the chunk in `data` (already trimmed, not `[DONE]`) into `c`, a
/// default one; `None` to have serde parse it (`c` is then to be dropped).
pub(super) fn parse<'a>(data: &'a str, c: &mut Chunk<'a>) -> Option<()> {
    let mut p = Reader { src: data, i: 0, depth: 0 };
    p.chunk(c)?;
    p.ws();
    (p.i == data.len()).then_some(())
}

struct Reader<'a> {
    src: &'a str,
    i: usize,
    depth: u32,
}

/// Marks a member as seen; `None` when it was already.
fn once(seen: &mut bool) -> Option<()> {
    (!std::mem::replace(seen, true)).then_some(())
}

/// The bytes that end the plain part of a string: `"`, `\` and the
/// control characters (which a JSON string may not hold).
static STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = true;
        c += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Where the plain part of a string starting at `b[from]` ends.
fn plain_end(b: &[u8], from: usize) -> Option<usize> {
    Some(from + b.get(from..)?.iter().position(|&c| STOP[usize::from(c)])?)
}

fn hex4(b: &[u8], at: usize) -> Option<u32> {
    let digits = b.get(at..at + 4)?;
    digits.iter().try_fold(0u32, |n, &d| Some(n * 16 + char::from(d).to_digit(16)?))
}

impl<'a> Reader<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.src.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.i).copied()
    }

    fn rest(&self) -> &'a [u8] {
        self.bytes().get(self.i..).unwrap_or_default()
    }

    /// Skips JSON whitespace (exactly what serde_json skips).
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// The top-level object.
    fn chunk(&mut self, c: &mut Chunk<'a>) -> Option<()> {
        self.open(b'{')?;
        let (mut choices, mut usage, mut timings, mut object) = (false, false, false, false);
        let mut key = self.first_key()?;
        while let Some(k) = key {
            match k {
                "choices" => {
                    once(&mut choices)?;
                    self.open(b'[')?;
                    let mut more = self.first_item()?;
                    while more {
                        let mut ch = WireChoice { delta: None, message: None, text: None, finish_reason: None };
                        self.choice(&mut ch)?;
                        absorb_choice(c, &mut ch);
                        more = self.next_item()?;
                    }
                }
                "usage" => {
                    once(&mut usage)?;
                    c.usage = self.by_serde::<Option<WireUsage>>()?.map(usage_of);
                }
                "timings" => {
                    once(&mut timings)?;
                    c.timings = self.by_serde::<Option<WireTimings>>()?.map(timings_of);
                }
                "object" => {
                    once(&mut object)?;
                    if self.nullable(Self::string)?.as_deref() == Some("error") {
                        return None;
                    }
                }
                "error" | "message" => return None,
                _ => self.skip()?,
            }
            key = self.next_key()?;
        }
        Some(())
    }

    /// One element of `choices`, into `ch` (all `None`).
    fn choice(&mut self, ch: &mut WireChoice<'a>) -> Option<()> {
        self.open(b'{')?;
        let mut seen = [false; 4];
        let mut key = self.first_key()?;
        while let Some(k) = key {
            match k {
                "delta" => {
                    once(&mut seen[0])?;
                    self.delta(&mut ch.delta)?;
                }
                "message" => {
                    once(&mut seen[1])?;
                    self.delta(&mut ch.message)?;
                }
                "text" => {
                    once(&mut seen[2])?;
                    ch.text = self.nullable(Self::string)?;
                }
                "finish_reason" => {
                    once(&mut seen[3])?;
                    ch.finish_reason = self.nullable(Self::string)?.map(Cow::into_owned);
                }
                _ => self.skip()?,
            }
            key = self.next_key()?;
        }
        Some(())
    }

    /// A `delta` (or `message`) object or `null`, into `slot` (`None`).
    fn delta(&mut self, slot: &mut Option<WireDelta<'a>>) -> Option<()> {
        self.ws();
        if self.rest().starts_with(b"null") {
            self.i += 4;
            return Some(());
        }
        self.open(b'{')?;
        let d = slot.insert(WireDelta { content: None, reasoning_content: None, reasoning: None, tool_calls: None });
        let mut seen = [false; 4];
        let mut key = self.first_key()?;
        while let Some(k) = key {
            match k {
                "content" => {
                    once(&mut seen[0])?;
                    d.content = self.nullable(Self::string)?;
                }
                "reasoning_content" => {
                    once(&mut seen[1])?;
                    d.reasoning_content = self.nullable(Self::string)?;
                }
                "reasoning" => {
                    once(&mut seen[2])?;
                    d.reasoning = self.nullable(Self::string)?;
                }
                "tool_calls" => {
                    once(&mut seen[3])?;
                    d.tool_calls = self.by_serde::<Option<Vec<WireToolCall>>>()?;
                }
                _ => self.skip()?,
            }
            key = self.next_key()?;
        }
        Some(())
    }

    /// The next value, checked here and read by serde from its own text.
    fn by_serde<T: DeserializeOwned>(&mut self) -> Option<T> {
        self.ws();
        let start = self.i;
        self.skip()?;
        serde_json::from_str(self.src.get(start..self.i)?).ok()
    }

    /// `null` as `None`, else what `read` reads.
    fn nullable<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        self.ws();
        if self.rest().starts_with(b"null") {
            self.i += 4;
            return Some(None);
        }
        read(self).map(Some)
    }

    /// Enters an object or array that must start here.
    fn open(&mut self, bracket: u8) -> Option<()> {
        self.ws();
        if self.peek()? != bracket || self.depth >= MAX_DEPTH {
            return None;
        }
        self.i += 1;
        self.depth += 1;
        Some(())
    }

    /// After `{`: its first key, or `None` for `{}`.
    fn first_key(&mut self) -> Option<Option<&'a str>> {
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            self.depth -= 1;
            return Some(None);
        }
        self.key().map(Some)
    }

    /// After a member: the next key, or `None` at the closing `}`.
    fn next_key(&mut self) -> Option<Option<&'a str>> {
        self.ws();
        match self.peek()? {
            b',' => {
                self.i += 1;
                self.ws();
                self.key().map(Some)
            }
            b'}' => {
                self.i += 1;
                self.depth -= 1;
                Some(None)
            }
            _ => None,
        }
    }

    /// A key without escapes and the `:` after it.
    fn key(&mut self) -> Option<&'a str> {
        let Cow::Borrowed(k) = self.string()? else { return None };
        self.ws();
        if self.peek()? != b':' {
            return None;
        }
        self.i += 1;
        Some(k)
    }

    /// After `[`: whether an element follows (`false` for `[]`).
    fn first_item(&mut self) -> Option<bool> {
        self.ws();
        if self.peek()? == b']' {
            self.i += 1;
            self.depth -= 1;
            return Some(false);
        }
        Some(true)
    }

    /// After an element: whether another follows, or the array ends.
    fn next_item(&mut self) -> Option<bool> {
        self.ws();
        match self.peek()? {
            b',' => {
                self.i += 1;
                Some(true)
            }
            b']' => {
                self.i += 1;
                self.depth -= 1;
                Some(false)
            }
            _ => None,
        }
    }

    /// A string that must start here, borrowed when it has no escapes.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.ws();
        let b = self.bytes();
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.i + 1;
        let mut j = plain_end(b, start)?;
        match b[j] {
            b'"' => {
                self.i = j + 1;
                return Some(Cow::Borrowed(self.src.get(start..j)?));
            }
            b'\\' => {}
            _ => return None,
        }
        let mut out = String::with_capacity(j - start + 16);
        out.push_str(self.src.get(start..j)?);
        loop {
            match *b.get(j)? {
                b'"' => {
                    self.i = j + 1;
                    return Some(Cow::Owned(out));
                }
                b'\\' => {
                    let escape = *b.get(j + 1)?;
                    j += 2;
                    let c = match escape {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let first = hex4(b, j)?;
                            j += 4;
                            let code = match first {
                                0xD800..=0xDBFF => {
                                    if b.get(j..j + 2)? != b"\\u" {
                                        return None;
                                    }
                                    let second = hex4(b, j + 2)?;
                                    if !(0xDC00..=0xDFFF).contains(&second) {
                                        return None;
                                    }
                                    j += 6;
                                    0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                                }
                                0xDC00..=0xDFFF => return None,
                                code => code,
                            };
                            char::from_u32(code)?
                        }
                        _ => return None,
                    };
                    out.push(c);
                }
                c if c < 0x20 => return None,
                _ => {
                    // A run of plain bytes: it ends at an ASCII byte, never
                    // inside a UTF-8 sequence.
                    let run = j;
                    j = plain_end(b, j)?;
                    out.push_str(self.src.get(run..j)?);
                }
            }
        }
    }

    /// Skips one value of any kind, checking it.
    fn skip(&mut self) -> Option<()> {
        self.ws();
        match self.peek()? {
            b'"' => {
                self.string()?;
            }
            b'{' => {
                self.open(b'{')?;
                let mut key = self.first_key()?;
                while key.is_some() {
                    self.skip()?;
                    key = self.next_key()?;
                }
            }
            b'[' => {
                self.open(b'[')?;
                let mut more = self.first_item()?;
                while more {
                    self.skip()?;
                    more = self.next_item()?;
                }
            }
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            b'-' | b'0'..=b'9' => self.number()?,
            _ => return None,
        }
        Some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if !self.rest().starts_with(word) {
            return None;
        }
        self.i += word.len();
        Some(())
    }

    /// A number by JSON's grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Option<()> {
        let b = self.bytes();
        let mut j = self.i;
        let digits = |j: &mut usize| {
            let from = *j;
            while let Some(b'0'..=b'9') = b.get(*j) {
                *j += 1;
            }
            (*j > from).then_some(())
        };
        if b.get(j) == Some(&b'-') {
            j += 1;
        }
        match b.get(j)? {
            b'0' => j += 1,
            b'1'..=b'9' => digits(&mut j)?,
            _ => return None,
        }
        if b.get(j) == Some(&b'.') {
            j += 1;
            digits(&mut j)?;
        }
        if let Some(b'e' | b'E') = b.get(j) {
            j += 1;
            if let Some(b'+' | b'-') = b.get(j) {
                j += 1;
            }
            digits(&mut j)?;
        }
        self.i = j;
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::{reduce, WireChunk};

    /// What the serde path makes of `data` (`None`: an error).
    fn by_serde(data: &str) -> Option<Chunk<'_>> {
        serde_json::from_str::<WireChunk>(data).ok().map(reduce)
    }

    fn fast(data: &str) -> Option<Chunk<'_>> {
        let mut c = Chunk::default();
        parse(data, &mut c).map(|()| c)
    }

    /// The fast path's reading of `data`, which must be serde's whenever
    /// the fast path gives one.
    fn agree(data: &str) -> Option<Chunk<'_>> {
        let fast = fast(data);
        if let Some(f) = &fast {
            assert_eq!(Some(f), by_serde(data).as_ref(), "the fast path and serde disagree on {data:?}");
        }
        fast
    }

    /// Chunks as servers send them: all read by the fast path.
    const READ_HERE: &[&str] = &[
        // fleetbench-fixed-server and the test servers
        r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":" tok"},"finish_reason":null}]}"#,
        r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
        r#"{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#,
        r#"{"choices":[],"usage":{"prompt_tokens":32,"completion_tokens":200,"total_tokens":232}}"#,
        r#"{"object":"text_completion","choices":[{"index":0,"text":"t3 ","finish_reason":null}]}"#,
        // the fuzz seeds (fuzz/seeds/stream_events)
        r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":" tok"},"finish_reason":null}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#,
        // vLLM
        r#"{"id":"chatcmpl-8f3a","object":"chat.completion.chunk","created":1718000000,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":" world"},"logprobs":null,"finish_reason":null}]}"#,
        r#"{"id":"chatcmpl-8f3a","object":"chat.completion.chunk","created":1718000000,"model":"m","choices":[{"index":0,"delta":{"content":" a"},"logprobs":null,"finish_reason":null}],"usage":{"prompt_tokens":12,"total_tokens":20,"completion_tokens":8}}"#,
        r#"{"id":"chatcmpl-8f3a","object":"chat.completion.chunk","created":1718000000,"model":"m","choices":[{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"length","stop_reason":null}]}"#,
        r#"{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":32,"total_tokens":232,"completion_tokens":200,"prompt_tokens_details":null}}"#,
        r#"{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"reasoning":"hmm"},"logprobs":null,"finish_reason":null}]}"#,
        r#"{"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":" tok","logprobs":null,"finish_reason":null,"stop_reason":null}],"usage":null}"#,
        // SGLang
        r#"{"id":"5b1c","object":"chat.completion.chunk","created":1718000000,"model":"default","choices":[{"index":0,"delta":{"role":null,"content":" the","reasoning_content":null,"tool_calls":null},"logprobs":null,"finish_reason":null,"matched_stop":null}],"usage":null}"#,
        r#"{"id":"5b1c","object":"chat.completion.chunk","created":1718000000,"model":"default","choices":[{"index":0,"delta":{"role":null,"content":null,"reasoning_content":"Let me think","tool_calls":null},"logprobs":null,"finish_reason":null,"matched_stop":null}],"usage":null}"#,
        r#"{"id":"5b1c","object":"chat.completion.chunk","created":1,"model":"default","choices":[{"index":0,"delta":{"role":null,"content":null,"reasoning_content":null,"tool_calls":null},"logprobs":null,"finish_reason":"stop","matched_stop":128009}],"usage":{"prompt_tokens":8,"total_tokens":18,"completion_tokens":10,"prompt_tokens_details":null,"reasoning_tokens":0}}"#,
        // llama.cpp
        r#"{"choices":[{"finish_reason":null,"index":0,"delta":{"content":" Hello"}}],"created":1718000000,"id":"chatcmpl-abc","model":"gpt-3.5-turbo","system_fingerprint":"b4000-abc","object":"chat.completion.chunk"}"#,
        r#"{"choices":[{"finish_reason":"stop","index":0,"delta":{}}],"created":1,"id":"x","model":"m","system_fingerprint":"b1","object":"chat.completion.chunk","usage":{"completion_tokens":10,"prompt_tokens":5,"total_tokens":15},"timings":{"prompt_n":5,"prompt_ms":12.5,"prompt_per_token_ms":2.5,"prompt_per_second":400.0,"predicted_n":10,"predicted_ms":100.25,"predicted_per_token_ms":10.025,"predicted_per_second":99.75,"cache_n":3}}"#,
        r#"{"choices":[],"timings":null}"#,
        // OpenAI
        r#"{"id":"chatcmpl-A","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"content":"Hi","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"abc"}"#,
        r#"{"id":"chatcmpl-A","object":"chat.completion.chunk","created":1,"model":"o3","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":20,"total_tokens":30,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":7,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}"#,
        r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_abc","type":"function","function":{"name":"get_weather","arguments":""}}],"refusal":null},"logprobs":null,"finish_reason":null}]}"#,
        r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"location\": \"Par"}}]}}]}"#,
        r#"{"choices":[{"delta":{"tool_calls":[{"function":{"name":"f","arguments":{"x":[1,2.5e3,-0.0,true,null]}}}]}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"content":"\n"},"logprobs":{"content":[{"token":"\n","logprob":-0.0001,"bytes":[10],"top_logprobs":[{"token":"\n","logprob":-1.5E-4,"bytes":[10]}]}]},"finish_reason":null}]}"#,
        // escapes and unicode
        r#"{"choices":[{"delta":{"content":"line\nnext \"quoted\" back\\slash \/ \b\f\r\t \u00e9 \u4E2D \ud83d\ude00 \u0000"}}]}"#,
        r#"{"choices":[{"delta":{"content":"héllo ✓ 中文 😀"}}]}"#,
        r#"{"choices":[{"delta":{"reasoning_content":"\u00e9\u00e9","content":null}}]}"#,
        r#"{"id":"a\"b\\c\u00e9","choices":[]}"#,
        // layout and the less usual
        "{ \"choices\" : [ { \"index\" : 0 ,\n\t\"delta\" : { \"content\" : \"x\" } } ] \r\n}",
        r#"{"choices":[{"index":0,"delta":{"content":"a"}},{"index":1,"delta":{"content":"b"},"finish_reason":"stop"}]}"#,
        r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"whole"},"finish_reason":"stop"}]}"#,
        r#"{"choices":[{"delta":{"content":"d"},"message":{"content":"m"}}]}"#,
        r#"{"choices":[{"delta":null,"message":{"content":"m"}}]}"#,
        r#"{"choices":[{"index":0,"delta":null,"finish_reason":"stop"}]}"#,
        r#"{"choices":[{"text":""},{"text":"x"}]}"#,
        r#"{"object":null,"choices":[]}"#,
        r#"{"created":-1.5e+10,"n":0,"m":[0.0,1E5,-0,[],{}],"t":true,"f":false,"choices":[]}"#,
        r#"{}"#,
        r#"{"choices":[]}"#,
    ];

    /// Chunks the fast path leaves to serde (which may read or refuse them).
    const LEFT_TO_SERDE: &[&str] = &[
        r#"{"error":{"message":"out of memory","code":500}}"#,
        r#"{"error":{"message":"rate limited","type":"rate_limit"}}"#,
        r#"{"object":"error","message":"bad"}"#,
        r#"{"choices":[{"delta":{"content":"x"}}],"error":null}"#,
        r#"{"message":"hi","choices":[]}"#,
        r#"{"choices":[],"choices":[]}"#,
        r#"{"usage":null,"usage":null}"#,
        r#"{"choices":[{"delta":{"content":"a","content":"b"}}]}"#,
        r#"{"choices":[{"delta":{},"delta":{}}]}"#,
        r#"{"cho\u0069ces":[{"delta":{"content":"x"}}]}"#,
        r#"{"choices":[{"delta":{"content":"\ud800"}}]}"#,
        r#"{"choices":[{"delta":{"content":"\udc00x"}}]}"#,
        r#"{"choices":[{"delta":{"content":"\ud800\u0041"}}]}"#,
        r#"{"choices":[{"delta":{"content":"\u12"}}]}"#,
        r#"{"choices":null}"#,
        r#"{"choices":{}}"#,
        r#"{"choices":[[]]}"#,
        r#"{"choices":[{"delta":{"content":5}}]}"#,
        r#"{"choices":[{"delta":[]}]}"#,
        r#"{"choices":[{"finish_reason":1}]}"#,
        r#"{"choices":[],"usage":{"prompt_tokens":-1}}"#,
        r#"{"choices":[],"usage":{"prompt_tokens":1.0}}"#,
        r#"{"choices":[],"usage":{"prompt_tokens":18446744073709551616}}"#,
        r#"{"choices":[],"timings":{"prompt_ms":"x"}}"#,
        r#"{"choices":[{"delta":{"tool_calls":[{"index":-1}]}}]}"#,
        "{not json",
        "[1,2]",
        "[]",
        "\"text\"",
        "null",
        r#"{"choices":[],}"#,
        r#"{"choices":[]} x"#,
        r#"{"choices":[]}{}"#,
        r#"{"a":01}"#,
        r#"{"a":1.}"#,
        r#"{"a":.5}"#,
        r#"{"a":-}"#,
        r#"{"a":1e}"#,
        r#"{"a":+1}"#,
        r#"{"a":tru}"#,
        r#"{"a":nul}"#,
        r#"{"a":NaN}"#,
        "{\"a\":\"tab\there\"}",
        r#"{"a":"\x"}"#,
        r#"{"a" 1}"#,
        r#"{,}"#,
        r#"{"a":1,,"b":2}"#,
        r#"{"a":[1,]}"#,
        r#"{"choices":[{"delta":{"content":"x"}}]"#,
        r#"{"choices":[{"delta":{"content":"x}}]}"#,
        "{'choices':[]}",
    ];

    #[test]
    fn server_chunks_are_read_here_exactly_as_serde_reads_them() {
        for data in READ_HERE {
            assert!(agree(data).is_some(), "the fast path gave up on {data}");
        }
        let find = |part: &str| READ_HERE.iter().find(|d| d.contains(part)).and_then(|d| agree(d)).unwrap_or_default();
        let c = find(r#""content":" tok""#);
        assert!(c.has_token && c.answer && c.text == " tok");
        let c = find(r#""timings":{"#);
        assert_eq!(c.timings.and_then(|t| t.predicted_per_token_ms), Some(10.025));
        assert_eq!(c.usage.and_then(|u| u.completion_tokens), Some(10));
        let c = find(r#""content":"line"#);
        assert_eq!(c.text, "line\nnext \"quoted\" back\\slash / \u{8}\u{c}\r\t é 中 😀 \0");
    }

    #[test]
    fn what_is_not_certain_is_left_to_serde() {
        for data in LEFT_TO_SERDE {
            assert_eq!(fast(data), None, "the fast path read {data}");
        }
        let deep = format!("{{\"choices\":[],\"x\":{}{}}}", "[".repeat(100), "]".repeat(100));
        assert_eq!(fast(&deep), None);
    }

    /// Every prefix, suffix, deletion, insertion and replacement of a
    /// character in every sample: wherever the fast path reads the result,
    /// serde reads the same.
    #[test]
    fn cut_and_mutated_chunks_agree() {
        let extra = [
            '"', '\\', '{', '}', '[', ']', ',', ':', ' ', '\n', '0', '1', '-', '+', '.', 'e', 'E', 'n', 't', 'u', 'x',
            '\u{1}', '\u{7f}', 'é', '😀',
        ];
        for data in READ_HERE.iter().chain(LEFT_TO_SERDE) {
            let at: Vec<usize> = (0..=data.len()).filter(|&i| data.is_char_boundary(i)).collect();
            for (k, &i) in at.iter().enumerate() {
                agree(&data[..i]);
                agree(&data[i..]);
                let next = at.get(k + 1).copied();
                if let Some(j) = next {
                    agree(&format!("{}{}", &data[..i], &data[j..]));
                }
                for c in extra {
                    agree(&format!("{}{c}{}", &data[..i], &data[i..]));
                    if let Some(j) = next {
                        agree(&format!("{}{c}{}", &data[..i], &data[j..]));
                    }
                }
            }
        }
    }

    /// Strings made of random pieces (plain text, every escape, surrogate
    /// pairs good and bad, control characters) in every string position.
    #[test]
    fn random_strings_agree() {
        let pieces = [
            "a",
            " ",
            "tok",
            "é",
            "中",
            "😀",
            "\\n",
            "\\\"",
            "\\\\",
            "\\/",
            "\\b",
            "\\f",
            "\\r",
            "\\t",
            "\\u0041",
            "\\u00e9",
            "\\u4e2d",
            "\\uD83D\\uDE00",
            "\\ud83d",
            "\\ude00",
            "\\u",
            "\\uzzzz",
            "\\q",
            "\\",
            "\u{1}",
            "\t",
            "\"",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let shapes = [
            "{\"choices\":[{\"delta\":{\"content\":\"S\"}}]}",
            "{\"choices\":[{\"delta\":{\"reasoning_content\":\"S\",\"content\":null}}]}",
            "{\"choices\":[{\"index\":0,\"text\":\"S\",\"finish_reason\":\"S\"}]}",
            "{\"id\":\"S\",\"choices\":[{\"delta\":{\"role\":\"S\",\"content\":\"S\"}}]}",
            "{\"object\":\"S\",\"choices\":[]}",
            "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"S\"}}]}}]}",
        ];
        let mut read = 0;
        for round in 0..20_000 {
            let shape = shapes[round % shapes.len()];
            let mut data = String::new();
            for part in shape.split_inclusive('S') {
                match part.strip_suffix('S') {
                    Some(head) => {
                        data.push_str(head);
                        for _ in 0..next(6) {
                            data.push_str(pieces[next(pieces.len())]);
                        }
                    }
                    None => data.push_str(part),
                }
            }
            read += usize::from(agree(&data).is_some());
        }
        assert!(read > 2_000, "the fast path read only {read} of 20,000");
    }
}
