//! OpenAI and Anthropic stream events and whole bodies on arbitrary text:
//! parse or reject, never panic.
#![no_main]

use fleetbench_client::{anthropic, openai};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = openai::parse_chunk(text);
    let _ = openai::parse_body(text);
    let (event, body) = text.split_once('\n').unwrap_or(("message_delta", text));
    let _ = anthropic::parse_event(Some(event), body);
    let _ = anthropic::parse_event(None, text);
    let _ = anthropic::parse_body(text);
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
        let _ = openai::error_text(&v);
    }
});
