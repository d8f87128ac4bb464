//! What the real-server tests share: where the tiny llama.cpp server is.

/// The tiny server's base URL, from FLEETBENCH_TINY_URL (set by
/// `scripts/test.sh` through `scripts/tiny-server.sh`). Without it there is
/// nothing to measure and the caller returns, unless
/// FLEETBENCH_REQUIRE_TINY=1 (as in CI), where a missing server fails.
pub fn tiny_url() -> Option<String> {
    match std::env::var("FLEETBENCH_TINY_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var("FLEETBENCH_REQUIRE_TINY").as_deref() != Ok("1"),
                "FLEETBENCH_REQUIRE_TINY=1 but FLEETBENCH_TINY_URL is unset: start scripts/tiny-server.sh"
            );
            None
        }
    }
}
