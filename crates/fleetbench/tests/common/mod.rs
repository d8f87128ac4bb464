//! What the binary's tests share: where the tiny llama.cpp server is, and a
//! plain HTTP GET for the dashboard's JSON. Each test file uses what it
//! needs of it.

#![allow(dead_code)]

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

/// GET `path` from `addr` (`127.0.0.1:PORT`, an `http://` prefix is
/// dropped) over plain HTTP/1.1; the body of a 200, else an error naming
/// the status line.
pub async fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = addr.trim_start_matches("http://").trim_end_matches('/');
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if !head.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("GET {path}: {head}")));
    }
    Ok(body.to_string())
}
