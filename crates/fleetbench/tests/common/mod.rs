//! What the binary's tests share: where the tiny llama.cpp server is, and a
//! plain HTTP GET for the dashboard's JSON. Each test file uses what it
//! needs of it.

#![allow(dead_code)]

/// The tiny server's base URL, from FLEETBENCH_TINY_URL (set by
/// `scripts/test.sh` through `scripts/tiny-server.sh`). The tests that need
/// it are `#[ignore]`d in a plain `cargo test` and run by `scripts/test.sh`
/// with `--include-ignored`; one that runs without it fails, saying how to
/// start the server.
pub fn tiny_url() -> String {
    match std::env::var("FLEETBENCH_TINY_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => panic!(
            "FLEETBENCH_TINY_URL is unset: this test needs the tiny llama.cpp server (SmolLM2-135M). \
             Run scripts/test.sh, which starts it, or start it yourself with \
             `scripts/tiny-server.sh --port 8080 --parallel 4 --background` and export \
             FLEETBENCH_TINY_URL=<the URL it prints> (and FLEETBENCH_TINY_SLOTS=4)"
        ),
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

/// The fleetbench binary with no API keys and no database from the
/// environment (cli.rs adds `--quiet` where it wants it).
pub fn bin() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_fleetbench"));
    c.env_remove("OPENAI_API_KEY").env_remove("ANTHROPIC_API_KEY").env_remove("FLEETBENCH_DB");
    c
}

/// The binary with `--quiet`.
pub fn quiet_bin() -> std::process::Command {
    let mut c = bin();
    c.arg("--quiet");
    c
}

/// A fresh directory under the system temp dir, named by the test file
/// (`tag`), the process and `name`.
pub fn tempdir(tag: &str, name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("fb-{tag}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create a temp dir");
    d
}

/// Runs a command off the async runtime and returns what it printed.
pub async fn output(mut c: std::process::Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || c.output().expect("run fleetbench")).await.expect("join the runner")
}

/// Standard output and error together, for failure messages.
pub fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Runs a command and returns its standard output, failing the test with
/// both outputs when it does not succeed.
pub fn run_ok(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().expect("run fleetbench");
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
