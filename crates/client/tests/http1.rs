//! The client's own HTTP/1.1 path (Linux, plain http://) against servers
//! written byte by byte: each answer's framing, keep-alive, a connection
//! the server closed while it idled, and answers broken at every stage.
#![cfg(target_os = "linux")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fleetbench_client::{Client, ClientConfig};
use fleetbench_core::{ApiKind, ErrorKind, RequestRecord, RunClock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SSE: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"hi\"}}]}\n\n\
data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" there\"},\"finish_reason\":\"stop\"}]}\n\n\
data: [DONE]\n\n";

/// What the server does with each request it reads (the connection's
/// number from 0, the request's number on it from 0); false closes the
/// connection.
type Answer = Arc<dyn Fn(usize, usize, &mut Vec<u8>) -> bool + Send + Sync>;

struct Raw {
    url: String,
    connections: Arc<AtomicUsize>,
}

/// A server that reads request heads (and bodies, by their length) and
/// writes what `answer` says.
async fn raw(answer: Answer) -> Raw {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(sock, n, answer.clone()));
        }
    });
    Raw { url, connections }
}

async fn serve(mut sock: TcpStream, conn: usize, answer: Answer) {
    let mut buf = Vec::new();
    let mut on_conn = 0;
    loop {
        let Some(end) = read_request(&mut sock, &mut buf).await else { return };
        buf.drain(..end);
        let mut out = Vec::new();
        let keep = answer(conn, on_conn, &mut out);
        on_conn += 1;
        if sock.write_all(&out).await.is_err() || !keep {
            return;
        }
    }
}

/// Reads one request; the length of its head and body in `buf`.
async fn read_request(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
            if buf.len() >= i + 4 + len {
                return Some(i + 4 + len);
            }
        }
        let mut chunk = [0u8; 4096];
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn chunked(body: &str, piece: usize) -> Vec<u8> {
    let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for p in body.as_bytes().chunks(piece) {
        out.extend_from_slice(format!("{:x}\r\n", p.len()).as_bytes());
        out.extend_from_slice(p);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

async fn send(url: &str, n: usize) -> Vec<RequestRecord> {
    let client = Client::new(ClientConfig::new(url, ApiKind::Chat, "m")).unwrap();
    assert!(client.kernel_stamps(), "plain http on Linux takes the stamping path");
    let clock = RunClock::start();
    let mut recs = Vec::new();
    for i in 0..n {
        let spec = fleetbench_testkit::text_request(format!("r{i}"), "hello");
        recs.push(client.send(&spec, &clock, clock.now()).await);
    }
    recs
}

fn assert_answered(rec: &RequestRecord) {
    assert!(rec.ok(), "{:?}", rec.error);
    assert_eq!(rec.token_events, 2);
    assert_eq!(rec.finish_reason.as_deref(), Some("stop"));
}

#[tokio::test]
async fn every_framing_and_1xx_answers_are_read() {
    let answers: Vec<Vec<u8>> = vec![
        // Chunks of one byte, and of the whole body.
        chunked(SSE, 1),
        chunked(SSE, 10_000),
        // A length.
        format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{SSE}", SSE.len()).into_bytes(),
        // Informational answers first.
        [b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n".to_vec(), chunked(SSE, 7)]
            .concat(),
        // Chunk extensions and trailers.
        [
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec(),
            format!("{:X};name=value\r\n{SSE}\r\n0\r\nx-checksum: 1\r\n\r\n", SSE.len()).into_bytes(),
        ]
        .concat(),
    ];
    let n = answers.len();
    let server = raw(Arc::new(move |_, i, out| {
        out.extend_from_slice(&answers[i]);
        true
    }))
    .await;
    for rec in send(&server.url, n).await {
        assert_answered(&rec);
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 1, "every answer left the connection reusable");
}

#[tokio::test]
async fn answers_that_end_with_the_connection_are_read_and_not_reused() {
    let server = raw(Arc::new(|_, _, out| {
        // No length, no chunks: the body ends with the connection.
        out.extend_from_slice(format!("HTTP/1.1 200 OK\r\n\r\n{SSE}").as_bytes());
        false
    }))
    .await;
    for rec in send(&server.url, 3).await {
        assert_answered(&rec);
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 3);

    let close = raw(Arc::new(|_, _, out| {
        out.extend_from_slice(
            format!("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{SSE}", SSE.len()).as_bytes(),
        );
        false
    }))
    .await;
    for rec in send(&close.url, 2).await {
        assert_answered(&rec);
    }
    assert_eq!(close.connections.load(Ordering::SeqCst), 2, "`connection: close` is honoured");
}

#[tokio::test]
async fn a_connection_closed_while_idle_is_not_used_again() {
    // Each connection answers one request and then closes, without saying so.
    let server = raw(Arc::new(|_, _, out| {
        out.extend_from_slice(&chunked(SSE, 40));
        false
    }))
    .await;
    let client = Client::new(ClientConfig::new(&server.url, ApiKind::Chat, "m")).unwrap();
    let clock = RunClock::start();
    for i in 0..4 {
        let spec = fleetbench_testkit::text_request(format!("r{i}"), "hello");
        let rec = client.send(&spec, &clock, clock.now()).await;
        assert_answered(&rec);
        // Let the server's close reach the client before the next request.
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(rec.retries, 0, "the closed connection was seen before a request was lost on it");
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn broken_answers_are_classified_and_nothing_panics() {
    let cases: Vec<(&str, Vec<u8>, ErrorKind)> = vec![
        ("garbage head", b"SSH-2.0-OpenSSH\r\n\r\n".to_vec(), ErrorKind::MalformedStream),
        ("no answer", Vec::new(), ErrorKind::TruncatedStream),
        ("head cut short", b"HTTP/1.1 200 OK\r\ncontent-ty".to_vec(), ErrorKind::TruncatedStream),
        ("body cut mid-chunk", chunked(SSE, 50)[..140].to_vec(), ErrorKind::TruncatedStream),
        (
            "a length longer than the body",
            format!("HTTP/1.1 200 OK\r\ncontent-length: 9999\r\n\r\n{}", &SSE[..90]).into_bytes(),
            ErrorKind::TruncatedStream,
        ),
        (
            "a chunk size that is not hex",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\ndata: x\r\n".to_vec(),
            ErrorKind::TruncatedStream,
        ),
        (
            "lengths that disagree",
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd".to_vec(),
            ErrorKind::MalformedStream,
        ),
        (
            "an error status",
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\nbusy".to_vec(),
            ErrorKind::HttpStatus,
        ),
    ];
    for (what, bytes, kind) in cases {
        let server = raw(Arc::new(move |_, _, out| {
            out.extend_from_slice(&bytes);
            false
        }))
        .await;
        let rec = send(&server.url, 1).await.remove(0);
        let err = rec.error.as_ref().unwrap_or_else(|| panic!("{what}: no error"));
        assert_eq!(err.kind, kind, "{what}: {}", err.message);
        if kind == ErrorKind::MalformedStream {
            assert_eq!(rec.retries, 0, "{what}: an answer that is not HTTP is not sent again");
            assert_eq!(server.connections.load(Ordering::SeqCst), 1);
        }
    }
}
