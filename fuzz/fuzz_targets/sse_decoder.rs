//! The SSE decoder on arbitrary bytes, fed in arbitrary splits: it may
//! reject the stream, never panic, and splitting the same bytes differently
//! never changes the events.
#![no_main]

use fleetbench_client::sse::{SseDecoder, SseError, SseEvent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else { return };
    let whole = {
        let mut d = SseDecoder::new(1 << 16);
        let mut out = Vec::new();
        let mut each = |ev: &SseEvent| {
            out.push(ev.clone());
            Ok::<_, SseError>(())
        };
        let ok = d.push(body, &mut each).and_then(|_| d.finish(&mut each)).is_ok();
        (ok, out)
    };
    let mut d = SseDecoder::new(1 << 16);
    let mut out = Vec::new();
    let mut each = |ev: &SseEvent| {
        out.push(ev.clone());
        Ok::<_, SseError>(())
    };
    let step = usize::from(split).max(1);
    let mut ok = true;
    for chunk in body.chunks(step) {
        if d.push(chunk, &mut each).is_err() {
            ok = false;
            break;
        }
    }
    if ok {
        ok = d.finish(&mut each).is_ok();
    }
    if ok && whole.0 {
        assert_eq!(out, whole.1, "events depend on how the bytes were split");
    }
});
