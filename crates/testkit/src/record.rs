//! One builder for `RequestRecord` fixtures. Every time is absolute (seconds
//! on the run's clock) and set as given, so a fixture states exactly the
//! record it means; what is not set keeps `RequestRecord::default()`.

use fleetbench_core::{RequestError, RequestRecord, ServerTimings, TokenSource};

/// Builds a [`RequestRecord`]:
///
/// ```text
/// let r = RecordBuilder::ok(3).sent_at(1.0).first_token(1.1).last_token(1.3).end(1.3).tokens(10).build();
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct RecordBuilder(RequestRecord);

impl RecordBuilder {
    /// Request `index` (id `r{index}`) answered with HTTP 200; no times or
    /// tokens yet.
    pub fn ok(index: u64) -> Self {
        RecordBuilder(RequestRecord {
            index,
            request_id: format!("r{index}"),
            http_status: Some(200),
            ..RequestRecord::default()
        })
    }

    /// Request `index` (id `r{index}`) that ended with `error`; its HTTP
    /// status is the error's, if it has one.
    pub fn failed(index: u64, error: RequestError) -> Self {
        RecordBuilder(RequestRecord {
            index,
            request_id: format!("r{index}"),
            http_status: error.status,
            error: Some(error),
            ..RequestRecord::default()
        })
    }

    /// A record with every field at its default: only what is set later.
    pub fn bare(index: u64) -> Self {
        RecordBuilder(RequestRecord { index, ..RequestRecord::default() })
    }

    pub fn request_id(mut self, id: impl Into<String>) -> Self {
        self.0.request_id = id.into();
        self
    }

    pub fn agent(mut self, agent: u32) -> Self {
        self.0.agent = Some(agent);
        self
    }

    pub fn warmup(mut self) -> Self {
        self.0.warmup = true;
        self
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.0.label = Some(label.into());
        self
    }

    /// Scheduled and sent at `t` (no client queueing).
    pub fn sent_at(mut self, t: f64) -> Self {
        self.0.t_sched = t;
        self.0.t_send = t;
        self
    }

    /// Scheduled at `t` (after [`sent_at`](Self::sent_at), to add queueing).
    pub fn scheduled(mut self, t: f64) -> Self {
        self.0.t_sched = t;
        self
    }

    /// Sent at `t`, leaving the scheduled time as it is.
    pub fn send(mut self, t: f64) -> Self {
        self.0.t_send = t;
        self
    }

    pub fn first_byte(mut self, t: f64) -> Self {
        self.0.t_first_byte = Some(t);
        self
    }

    /// The first token, taken to be answer text (as from a model that
    /// neither reasons nor calls tools).
    pub fn first_token(mut self, t: f64) -> Self {
        self.0.t_first_token = Some(t);
        self.0.t_first_answer_token = Some(t);
        self
    }

    /// The first answer token, after reasoning (`None`: no answer text).
    pub fn first_answer_token(mut self, t: Option<f64>) -> Self {
        self.0.t_first_answer_token = t;
        self
    }

    /// A tool call whose first piece arrived at `t`.
    pub fn tool_call(mut self, t: f64, name: &str, arguments: &str) -> Self {
        self.0.t_first_tool_token.get_or_insert(t);
        let id = format!("call_{}", self.0.tool_calls.len());
        self.0.tool_calls.push(fleetbench_core::ToolCall { id, name: name.into(), arguments: arguments.into() });
        self
    }

    pub fn last_token(mut self, t: f64) -> Self {
        self.0.t_last_token = Some(t);
        self
    }

    /// When the client was done with the request.
    pub fn end(mut self, t: f64) -> Self {
        self.0.t_end = t;
        self
    }

    /// Gaps between token events, seconds.
    pub fn itl(mut self, gaps: impl Into<Vec<f64>>) -> Self {
        self.0.itl = gaps.into();
        self
    }

    /// `n` output tokens, seen as `n` token events.
    pub fn tokens(mut self, n: u64) -> Self {
        self.0.output_tokens = n;
        self.0.token_events = n;
        self.0.event_tokens = n;
        self
    }

    /// Output tokens alone (events untouched), e.g. a server's count.
    pub fn output_tokens(mut self, n: u64) -> Self {
        self.0.output_tokens = n;
        self
    }

    pub fn input_tokens(mut self, n: u64) -> Self {
        self.0.input_tokens = Some(n);
        self
    }

    pub fn reasoning_tokens(mut self, n: u64) -> Self {
        self.0.reasoning_tokens = Some(n);
        self
    }

    pub fn token_source(mut self, source: TokenSource) -> Self {
        self.0.token_source = source;
        self
    }

    pub fn finish(mut self, reason: impl Into<String>) -> Self {
        self.0.finish_reason = Some(reason.into());
        self
    }

    pub fn http_status(mut self, status: Option<u16>) -> Self {
        self.0.http_status = status;
        self
    }

    pub fn retries(mut self, n: u32) -> Self {
        self.0.retries = n;
        self
    }

    pub fn server_timings(mut self, timings: ServerTimings) -> Self {
        self.0.server_timings = Some(timings);
        self
    }

    pub fn error(mut self, error: RequestError) -> Self {
        self.0.error = Some(error);
        self
    }

    pub fn output_text(mut self, text: impl Into<String>) -> Self {
        self.0.output_text = Some(text.into());
        self
    }

    pub fn build(self) -> RequestRecord {
        self.0
    }
}

/// A request asking `text`, with default sampling and no label or context.
pub fn text_request(id: impl Into<String>, text: &str) -> fleetbench_core::RequestSpec {
    fleetbench_core::RequestSpec {
        id: id.into(),
        prompt: fleetbench_core::Prompt::Text(text.into()),
        sampling: Default::default(),
        expected_input_tokens: None,
        label: None,
        context: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetbench_core::ErrorKind;

    #[test]
    fn sets_exactly_what_it_is_told() {
        let r = RecordBuilder::ok(4)
            .agent(1)
            .sent_at(1.0)
            .scheduled(0.9)
            .first_byte(1.05)
            .first_token(1.1)
            .last_token(1.3)
            .end(1.31)
            .itl([0.1, 0.1])
            .tokens(3)
            .input_tokens(50)
            .token_source(TokenSource::Server)
            .finish("length")
            .build();
        let want = RequestRecord {
            index: 4,
            request_id: "r4".into(),
            agent: Some(1),
            t_sched: 0.9,
            t_send: 1.0,
            t_first_byte: Some(1.05),
            t_first_token: Some(1.1),
            t_first_answer_token: Some(1.1),
            t_last_token: Some(1.3),
            t_end: 1.31,
            itl: vec![0.1, 0.1],
            token_events: 3,
            event_tokens: 3,
            input_tokens: Some(50),
            output_tokens: 3,
            token_source: TokenSource::Server,
            finish_reason: Some("length".into()),
            http_status: Some(200),
            ..RequestRecord::default()
        };
        assert_eq!(r, want);
        assert!(r.ok());
    }

    #[test]
    fn a_failed_record_carries_its_error_and_status() {
        let e = RequestError::new(ErrorKind::HttpStatus, "busy").with_status(503);
        let r = RecordBuilder::failed(2, e.clone()).build();
        assert_eq!(r.error, Some(e));
        assert_eq!(r.http_status, Some(503));
        assert!(!r.ok());
        assert_eq!(RecordBuilder::bare(9).build(), RequestRecord { index: 9, ..RequestRecord::default() });
    }
}
