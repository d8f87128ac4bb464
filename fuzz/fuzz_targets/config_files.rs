//! The TOML a user hands over (price sheets, arena backends files): load or
//! reject with an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = fleetbench_econ::PriceSheet::from_toml_str(text, "fuzz");
    let _ = fleetbench_aiops::backends::parse_backends_toml(text);
});
