//! Arrivals timed by the kernel's receive stamps: a client held off its
//! thread while a token arrives still records when the token arrived, and
//! the bench's lean exact-timing server speaks HTTP as the scripted one.

use std::time::Duration;

use fleetbench_client::{Client, ClientConfig};
use fleetbench_core::{ApiKind, RequestRecord, RequestSpec, RunClock};
use fleetbench_testkit::lean::{self, LeanScript};

fn spec(i: usize) -> RequestSpec {
    fleetbench_testkit::text_request(format!("r{i}"), "hello")
}

/// Starts the lean server on a thread and runtime of its own (so that
/// blocking the client's thread does not block it); returns its base URL.
fn lean_server(script: LeanScript) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("server runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            tx.send(listener.local_addr().expect("address")).expect("send the address");
            let _ = lean::serve(listener, script).await;
        });
    });
    let addr = rx.recv().expect("the server's address");
    format!("http://{addr}/v1")
}

/// One request on a single-threaded client runtime whose thread is
/// blocked from 20 ms to 250 ms after sending: the first token (due at
/// 50 ms) arrives while the client cannot read it; the second (at 350 ms)
/// after it can again.
fn send_while_blocked(url: &str, kernel_stamps: bool) -> RequestRecord {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("client runtime");
    rt.block_on(async {
        let mut cfg = ClientConfig::new(url, ApiKind::Chat, "m");
        cfg.kernel_stamps = kernel_stamps;
        let client = Client::new(cfg).expect("client");
        assert_eq!(client.kernel_stamps(), kernel_stamps && cfg!(target_os = "linux"));
        let clock = RunClock::start();
        let spec = spec(0);
        let request = client.send(&spec, &clock, 0.0);
        let block = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            // Holds the runtime's only thread, as a client busy with
            // thousands of other streams would.
            std::thread::sleep(Duration::from_millis(230));
        };
        let (rec, ()) = tokio::join!(request, block);
        rec
    })
}

fn figures(rec: &RequestRecord) -> (f64, f64) {
    assert!(rec.ok(), "{:?}", rec.error);
    assert_eq!(rec.token_events, 2);
    let ttft = rec.t_first_token.expect("a first token") - rec.t_send;
    (ttft, rec.itl[0])
}

const SCRIPT: LeanScript =
    LeanScript { ttft: Duration::from_millis(50), itl: Duration::from_millis(300), tokens: 2, prompt_tokens: 5 };

#[cfg(target_os = "linux")]
#[test]
fn kernel_stamps_keep_the_figures_of_a_client_held_off_its_thread() {
    let url = lean_server(SCRIPT);
    let (ttft, itl) = figures(&send_while_blocked(&url, true));
    // The token arrived at 50 ms; the client read it after 250 ms.
    assert!((0.050..0.150).contains(&ttft), "TTFT {ttft} s: the kernel's stamp, not the late read");
    assert!(itl > 0.25, "ITL {itl} s: from the first token's arrival, not its read");
}

#[test]
fn read_timestamps_show_the_clients_own_lag() {
    let url = lean_server(SCRIPT);
    let (ttft, itl) = figures(&send_while_blocked(&url, false));
    assert!(ttft >= 0.2, "TTFT {ttft} s: read after the block, at 250 ms");
    assert!(itl < 0.2, "ITL {itl} s: from the late read of the first token");
}

#[tokio::test]
async fn https_and_proxied_urls_are_read_timed() {
    let https = Client::new(ClientConfig::new("https://api.example.com/v1", ApiKind::Chat, "m")).unwrap();
    assert!(!https.kernel_stamps());
    let mut cfg = ClientConfig::new("http://127.0.0.1:9/v1", ApiKind::Chat, "m");
    cfg.kernel_stamps = false;
    assert!(!Client::new(cfg).unwrap().kernel_stamps());
}

#[tokio::test]
async fn the_lean_server_streams_reuses_connections_and_reports_its_lateness() {
    let script =
        LeanScript { ttft: Duration::from_millis(5), itl: Duration::from_millis(1), tokens: 4, prompt_tokens: 7 };
    let url = lean_server(script);
    let client = Client::new(ClientConfig::new(&url, ApiKind::Chat, "m")).unwrap();
    assert_eq!(client.preconnect(3, Duration::from_secs(5)).await, 3);
    let clock = RunClock::start();
    for i in 0..3 {
        let rec = client.send(&spec(i), &clock, clock.now()).await;
        assert!(rec.ok(), "{:?}", rec.error);
        assert_eq!((rec.token_events, rec.output_tokens, rec.input_tokens), (4, 4, Some(7)));
        assert_eq!(rec.finish_reason.as_deref(), Some("length"));
        let ttft = rec.t_first_token.unwrap() - rec.t_send;
        assert!(ttft >= 0.005, "TTFT {ttft} s before the scripted 5 ms");
    }
    let completions = Client::new(ClientConfig::new(&url, ApiKind::Completions, "m")).unwrap();
    let rec = completions.send(&spec(9), &clock, clock.now()).await;
    assert!(rec.ok(), "{:?}", rec.error);
    assert_eq!(rec.token_events, 4);

    // Raw HTTP: the lateness report (four first tokens, then none), an
    // unknown path, a request head that is not HTTP.
    let root = url.trim_end_matches("/v1").trim_start_matches("http://").to_string();
    let ask = |req: &'static str| {
        let root = root.clone();
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(root).await.unwrap();
            s.write_all(req.as_bytes()).await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        }
    };
    let report = ask("GET /lateness HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
    let body: serde_json::Value = serde_json::from_str(report.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["first_tokens"], 4, "{report}");
    assert!(body["mean_ms"].as_f64().unwrap() >= 0.0);
    let again = ask("GET /lateness HTTP/1.1\r\nconnection: close\r\n\r\n").await;
    assert!(again.contains("\"first_tokens\":0"), "{again}");
    assert!(ask("GET /nothing HTTP/1.1\r\nconnection: close\r\n\r\n").await.starts_with("HTTP/1.1 404"));
    assert!(ask("\u{1}\u{2} garbage\r\ntransfer-encoding: chunked\r\n\r\n").await.starts_with("HTTP/1.1 400"));
}
