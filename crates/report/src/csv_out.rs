//! One CSV row per request, every instant and figure of docs/METRICS.md.

use std::io::Write;

use fleetbench_core::RequestRecord;

use crate::ReportError;

/// Column names of the per-request CSV (pinned by a test).
pub const COLUMNS: &[&str] = &[
    "index",
    "request_id",
    "agent",
    "warmup",
    "label",
    "t_sched",
    "t_send",
    "t_first_byte",
    "t_first_token",
    "t_last_token",
    "t_end",
    "client_queue_ms",
    "ttft_ms",
    "tpot_ms",
    "e2el_ms",
    "tok_s",
    "task_tok_s",
    "input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "token_source",
    "token_events",
    "finish_reason",
    "http_status",
    "retries",
    "error_kind",
    "error_message",
    "itl_ms",
    "prefix_group",
    "conversation",
    "turn",
    "context_tokens",
];

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.6}")).unwrap_or_default()
}

fn ms(v: Option<f64>) -> String {
    v.map(|x| format!("{:.3}", x * 1000.0)).unwrap_or_default()
}

/// Writes the records as CSV with a header row.
pub fn write_requests_csv<W: Write>(out: W, records: &[RequestRecord]) -> Result<(), ReportError> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(COLUMNS)?;
    for r in records {
        let itl = r.itl.iter().map(|g| format!("{:.3}", g * 1000.0)).collect::<Vec<_>>().join(" ");
        w.write_record([
            r.index.to_string(),
            r.request_id.clone(),
            r.agent.map(|a| a.to_string()).unwrap_or_default(),
            r.warmup.to_string(),
            r.label.clone().unwrap_or_default(),
            format!("{:.6}", r.t_sched),
            format!("{:.6}", r.t_send),
            opt(r.t_first_byte),
            opt(r.t_first_token),
            opt(r.t_last_token),
            format!("{:.6}", r.t_end),
            format!("{:.3}", r.client_queue_time() * 1000.0),
            ms(r.ttft()),
            ms(r.tpot()),
            ms(r.e2el()),
            r.tok_s().map(|x| format!("{x:.3}")).unwrap_or_default(),
            r.task_tok_s().map(|x| format!("{x:.3}")).unwrap_or_default(),
            r.input_tokens.map(|x| x.to_string()).unwrap_or_default(),
            r.output_tokens.to_string(),
            r.reasoning_tokens.map(|x| x.to_string()).unwrap_or_default(),
            r.token_source.as_str().to_string(),
            r.token_events.to_string(),
            r.finish_reason.clone().unwrap_or_default(),
            r.http_status.map(|x| x.to_string()).unwrap_or_default(),
            r.retries.to_string(),
            r.error.as_ref().map(|e| e.label()).unwrap_or_default(),
            r.error.as_ref().map(|e| e.message.clone()).unwrap_or_default(),
            itl,
            r.context.prefix_group.clone().unwrap_or_default(),
            r.context.conversation.clone().unwrap_or_default(),
            r.context.turn.map(|x| x.to_string()).unwrap_or_default(),
            r.context.context_tokens.map(|x| x.to_string()).unwrap_or_default(),
        ])?;
    }
    w.flush()?;
    Ok(())
}
