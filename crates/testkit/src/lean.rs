//! The exact-timing server of the peer bench, with as little work per
//! token as HTTP allows. The scripted server ([`crate::start`]) streams
//! through axum: a channel per answer, a task hop per token, hyper's
//! chunk encoding. At 1,000 streams of one token per 10 ms that kept the
//! server's one core busy, so its own lateness (reading a request late,
//! writing a token late) counted as latency the client under test added.
//! Here one task owns each connection, parses the request head itself and
//! writes each token as one chunk at its deadline: `ttft` after the request
//! arrived, then one every `itl`. On Linux "arrived" is the kernel's receive
//! stamp of the request's last segment, so a server busy with other streams
//! that reads a request late still counts from its arrival; elsewhere it is
//! the read. The wire shape is the scripted server's
//! (role chunk at once, one event per token, finish reason, usage,
//! `[DONE]`), for the chat and completions APIs; `GET …/models` answers an
//! empty list. No faults: those are the scripted server's job.
//!
//! Where the server itself falls behind (its core busy with the kernel's
//! work of sending 100,000 tokens a second), the client under test is not
//! to blame: `GET /lateness` answers how late the server wrote the first
//! tokens (after the request's arrival plus `ttft`) since the last such
//! call (count, mean, median, p99 and max in ms) and starts counting anew,
//! so a bench can tell the two apart.

use std::sync::{Arc, Mutex};
use std::time::Duration;

#[cfg(not(target_os = "linux"))]
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::precise;

/// What every answer looks like.
#[derive(Debug, Clone, Copy)]
pub struct LeanScript {
    pub ttft: Duration,
    pub itl: Duration,
    pub tokens: u32,
    pub prompt_tokens: u32,
}

/// Largest request head or body read.
const MAX_REQUEST: usize = 1 << 20;

/// How late the first tokens were written, in microseconds, since the
/// last [`Lateness::take`].
#[derive(Default)]
struct Lateness(Mutex<Vec<u64>>);

impl Lateness {
    fn note(&self, late: Duration) {
        if let Ok(mut v) = self.0.lock() {
            v.push(late.as_micros() as u64);
        }
    }

    /// The figures as JSON, and a fresh start.
    fn take(&self) -> String {
        let mut v = self.0.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default();
        v.sort_unstable();
        let ms = |us: u64| us as f64 / 1000.0;
        let at = |q: f64| v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1))).copied().map(ms);
        let mean = (!v.is_empty()).then(|| ms(v.iter().sum::<u64>()) / v.len() as f64);
        let num = |x: Option<f64>| x.map_or("null".to_string(), |x| format!("{x:.3}"));
        format!(
            "{{\"first_tokens\":{},\"mean_ms\":{},\"median_ms\":{},\"p99_ms\":{},\"max_ms\":{}}}",
            v.len(),
            num(mean),
            num(at(0.5)),
            num(at(0.99)),
            num(v.last().copied().map(ms))
        )
    }
}

/// Serves on `listener` until the process ends.
pub async fn serve(listener: TcpListener, script: LeanScript) -> std::io::Result<()> {
    let script = Arc::new(script);
    let lateness = Arc::new(Lateness::default());
    loop {
        let (socket, _) = listener.accept().await?;
        let _ = socket.set_nodelay(true);
        #[cfg(target_os = "linux")]
        let _ = fleetbench_client::stamps::enable(&socket);
        let (script, lateness) = (script.clone(), lateness.clone());
        tokio::spawn(async move {
            let _ = connection(socket, &script, &lateness).await;
        });
    }
}

/// What a request asked for.
enum Route {
    Models,
    Lateness,
    Stream { chat: bool },
    NotFound,
}

/// One request head: its route, body length, and whether the client
/// closes after it.
struct Head {
    route: Route,
    body: usize,
    close: bool,
}

fn parse_head(head: &[u8]) -> Option<Head> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path, version) = (first.next()?, first.next()?, first.next()?);
    let path = path.split('?').next().unwrap_or(path);
    let mut body = 0;
    let mut close = version == "HTTP/1.0";
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            body = value.parse().ok()?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return None; // chunked request bodies: not spoken here
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    let route = match method {
        "GET" if path.ends_with("/models") => Route::Models,
        "GET" if path == "/lateness" => Route::Lateness,
        "POST" if path.ends_with("/chat/completions") => Route::Stream { chat: true },
        "POST" if path.ends_with("/completions") => Route::Stream { chat: false },
        _ => Route::NotFound,
    };
    Some(Head { route, body, close })
}

async fn connection(mut socket: TcpStream, script: &LeanScript, lateness: &Lateness) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut out: Vec<u8> = Vec::with_capacity(512);
    // When the bytes last read arrived.
    let mut arrived = Instant::now();
    loop {
        let head_end = loop {
            if let Some(at) = memchr::memmem::find(&buf, b"\r\n\r\n") {
                break at + 4;
            }
            if buf.len() > MAX_REQUEST || read(&mut socket, &mut buf, &mut arrived).await? == 0 {
                return Ok(());
            }
        };
        let Some(head) = parse_head(&buf[..head_end]) else {
            socket.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await?;
            return Ok(());
        };
        if head.body > MAX_REQUEST {
            return Ok(());
        }
        while buf.len() < head_end + head.body {
            if read(&mut socket, &mut buf, &mut arrived).await? == 0 {
                return Ok(());
            }
        }
        // The request is complete: the time to first token counts from its
        // last bytes' arrival.
        let start = arrived;
        buf.drain(..head_end + head.body);
        match head.route {
            Route::Models => json(&mut socket, "{\"object\":\"list\",\"data\":[]}").await?,
            Route::Lateness => json(&mut socket, &lateness.take()).await?,
            Route::NotFound => {
                socket.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").await?;
            }
            Route::Stream { chat } => stream(&mut socket, &mut out, script, chat, start, lateness).await?,
        }
        if head.close {
            return Ok(());
        }
    }
}

/// Reads what is there into `buf`; `arrived`: when it arrived (the
/// kernel's receive stamp where there is one, else now).
async fn read(socket: &mut TcpStream, buf: &mut Vec<u8>, arrived: &mut Instant) -> std::io::Result<usize> {
    #[cfg(target_os = "linux")]
    {
        buf.reserve(4096);
        loop {
            socket.readable().await?;
            let spare = buf.spare_capacity_mut();
            match socket.try_io(tokio::io::Interest::READABLE, || fleetbench_client::stamps::recv(&*socket, spare)) {
                Ok((n, stamp)) => {
                    // SAFETY: recvmsg initialised the first n spare bytes.
                    unsafe { buf.set_len(buf.len() + n) };
                    let now = Instant::now();
                    // A stamp in the future or further back than a second
                    // (the wall clock moved) is not believed.
                    let ago = stamp.and_then(|s| fleetbench_client::stamps::age(s, Duration::from_secs(1)));
                    *arrived = ago.and_then(|ago| now.checked_sub(ago)).unwrap_or(now);
                    return Ok(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let n = socket.read_buf(buf).await?;
        *arrived = Instant::now();
        Ok(n)
    }
}

async fn json(socket: &mut TcpStream, body: &str) -> std::io::Result<()> {
    let answer =
        format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len());
    socket.write_all(answer.as_bytes()).await
}

/// Appends one SSE event as one HTTP chunk.
fn push_event(out: &mut Vec<u8>, data: &str) {
    use std::io::Write;
    let len = "data: ".len() + data.len() + 2;
    let _ = write!(out, "{len:x}\r\ndata: {data}\n\n\r\n");
}

async fn stream(
    socket: &mut TcpStream,
    out: &mut Vec<u8>,
    script: &LeanScript,
    chat: bool,
    start: Instant,
    lateness: &Lateness,
) -> std::io::Result<()> {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n");
    if chat {
        push_event(out, "{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}");
    }
    socket.write_all(out).await?;
    for i in 0..script.tokens {
        let at = start + script.ttft + script.itl * i;
        let last = i + 1 == script.tokens;
        // The first and last tokens decide TTFT and end-to-end latency: the
        // precise timer's thread writes them at their deadlines; those
        // between wait on tokio's timer.
        let precise = i == 0 || last;
        if !precise {
            tokio::time::sleep_until(at).await;
        }
        out.clear();
        let event = if chat {
            format!("{{\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"t{i} \"}},\"finish_reason\":null}}]}}")
        } else {
            format!("{{\"object\":\"text_completion\",\"choices\":[{{\"index\":0,\"text\":\"t{i} \",\"finish_reason\":null}}]}}")
        };
        push_event(out, &event);
        if last {
            push_event(
                out,
                if chat {
                    "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}"
                } else {
                    "{\"choices\":[{\"index\":0,\"text\":\"\",\"finish_reason\":\"length\"}]}"
                },
            );
            let (p, n) = (script.prompt_tokens, script.tokens);
            let total = p + n;
            push_event(
                out,
                &format!("{{\"choices\":[],\"usage\":{{\"prompt_tokens\":{p},\"completion_tokens\":{n},\"total_tokens\":{total}}}}}"),
            );
            push_event(out, "[DONE]");
            out.extend_from_slice(b"0\r\n\r\n");
        }
        let (sent, written) = if precise { precise::send_at(at, socket, out.clone()).await } else { (0, None) };
        if sent < out.len() {
            if precise && sent == 0 {
                // No timer thread: wait here.
                precise::sleep_until(at).await;
            }
            socket.write_all(&out[sent..]).await?;
        }
        if i == 0 {
            let written = written.filter(|_| sent == out.len()).unwrap_or_else(|| Instant::now().into_std());
            lateness.note(written.saturating_duration_since(at.into_std()));
        }
    }
    if script.tokens == 0 {
        out.clear();
        push_event(out, "[DONE]");
        out.extend_from_slice(b"0\r\n\r\n");
        socket.write_all(out).await?;
    }
    Ok(())
}
