//! The PromQL engine on arbitrary queries (instant and range, over a few
//! DCGM-like series) and its OpenMetrics reader on arbitrary text: answer
//! or reject, never panic; an answer always renders as JSON.
#![no_main]

use fleetbench_promql::{promql_query, promql_range, Storage};
use libfuzzer_sys::fuzz_target;

const SERIES: &str = "\
DCGM_FI_DEV_GPU_TEMP{gpu=\"0\",Hostname=\"r01-n01\"} 51.5 1778544000
DCGM_FI_DEV_GPU_TEMP{gpu=\"0\",Hostname=\"r01-n01\"} 52 1778544015
DCGM_FI_DEV_GPU_TEMP{gpu=\"1\",Hostname=\"r01-n01\"} 70 1778544000
DCGM_FI_DEV_GPU_TEMP{gpu=\"1\",Hostname=\"r01-n01\"} NaN 1778544015
DCGM_FI_DEV_ECC_SBE_VOL_TOTAL{gpu=\"0\",Hostname=\"r01-n01\"} 10 1778544000
DCGM_FI_DEV_ECC_SBE_VOL_TOTAL{gpu=\"0\",Hostname=\"r01-n01\"} 2 1778544015
DCGM_FI_DEV_ECC_SBE_VOL_TOTAL{gpu=\"0\",Hostname=\"r01-n01\"} 9 1778544030
vllm:num_requests_waiting{Hostname=\"r01-n01\"} 3 1778544030
# EOF
";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = Storage::from_openmetrics(text);
    let Ok(storage) = Storage::from_openmetrics(SERIES) else { return };
    let t = 1_778_544_030_000;
    if let Ok(r) = promql_query(&storage, text, t) {
        assert!(r.to_json()["resultType"].is_string());
    }
    if let Ok(r) = promql_range(&storage, text, t - 60_000, t, 15_000) {
        assert_eq!(r.to_json()["resultType"], "matrix");
    }
});
