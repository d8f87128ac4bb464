//! The Prometheus text parser and the server-state summary on arbitrary
//! text: parse or reject, never panic; every parsed sample has a name.
#![no_main]

use fleetbench_client::prom::{parse, ServerState};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(samples) = parse(text) {
        assert!(samples.iter().all(|s| !s.name.is_empty()), "a sample without a name");
        let _ = ServerState::from_samples(&samples, 0.0);
    }
});
