//! A model's answer through the lenient extractor and the validator: any
//! text parses or is rejected, never panics; what validates re-validates.
#![no_main]

use fleetbench_aiops::diagnosis::{parse_answer, validate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse_answer(&text);
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
        if let Ok(d) = validate(&v) {
            let again = serde_json::to_value(&d).expect("a diagnosis serialises");
            assert!(validate(&again).is_ok(), "a valid diagnosis does not re-validate: {again}");
        }
    }
});
