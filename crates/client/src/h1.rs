//! fleetbench's own HTTP/1.1 client, for plain `http://` on Linux: a pool
//! of keep-alive connections whose reads carry the kernel's receive stamps
//! ([`WireStamps`]), and an answer's body read by the task that awaits it.
//!
//! A streamed answer is hundreds of small chunks. A general client hands
//! each chunk from the connection's task to the request's over a channel,
//! two task switches a token; here the request's task reads the socket
//! itself and decodes every chunk a read brought in one pass, so a read of
//! fifty tokens costs one wake-up, not a hundred. What it speaks: requests
//! with a known length (one write of head and body), answers framed by
//! `Content-Length`, chunked transfer coding or the connection's end;
//! informational (1xx) answers skipped; keep-alive as HTTP/1.1 defines it.
//! No redirects, upgrades or pipelining (fleetbench asks for none).

use std::collections::HashMap;
use std::io::{self, IoSlice, Write as _};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;
use tokio::io::unix::AsyncFd;

use crate::transport::{error_chain, BoxError, Response, SendError, WireStamps};

/// Bytes asked of the kernel per read (a streamed answer of 200 tokens is
/// about 30 KB).
const READ_SIZE: usize = 32 * 1024;
/// Longest response head (status line and headers).
const MAX_HEAD: usize = 256 * 1024;
/// Most headers in a response head.
const MAX_HEADERS: usize = 128;
/// Longest chunk-size or trailer line.
const MAX_LINE: usize = 4096;

/// Where a connection goes: the host as the URL writes it (brackets
/// stripped from an IPv6 literal) and the port.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Origin {
    host: String,
    port: u16,
}

/// The pool: idle connections by origin, most recently used last.
#[derive(Clone, Debug)]
pub(crate) struct Pool {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    idle: Mutex<HashMap<Origin, Vec<Idle>>>,
    connect_timeout: Option<Duration>,
    idle_timeout: Duration,
}

#[derive(Debug)]
struct Idle {
    conn: Conn,
    since: Instant,
}

/// One TCP connection, read with `recvmsg` for its receive stamps.
#[derive(Debug)]
struct Conn {
    io: AsyncFd<TcpStream>,
    stamps: WireStamps,
    /// Bytes read and not yet used.
    buf: BytesMut,
}

impl Pool {
    pub(crate) fn new(connect_timeout: Option<Duration>, idle_timeout: Duration) -> Pool {
        Pool { shared: Arc::new(Shared { idle: Mutex::default(), connect_timeout, idle_timeout }) }
    }

    /// Sends `req` and returns once the answer's head has arrived.
    pub(crate) async fn send(&self, req: http::Request<Bytes>) -> Result<Response, SendError> {
        let (origin, head) =
            encode(&req).map_err(|why| SendError { connect: true, timeout: false, malformed: false, chain: why })?;
        let mut conn = match self.checkout(&origin) {
            Some(c) => c,
            None => self.connect(&origin).await?,
        };
        let broke = |e: io::Error| SendError {
            connect: false,
            timeout: false,
            malformed: e.kind() == io::ErrorKind::InvalidData,
            chain: error_chain(&e),
        };
        conn.write_all(&head, req.body()).await.map_err(broke)?;
        let (status, headers, framing, keep_alive) =
            read_head(&mut conn, req.method() == http::Method::HEAD).await.map_err(broke)?;
        let wire = Some(conn.stamps.clone());
        let body = Body {
            conn: Some(conn),
            framing,
            keep_alive,
            pool: self.shared.clone(),
            origin,
            out: Vec::new(),
            ended: false,
        };
        Ok(Response { status, headers, body: crate::transport::Body::Direct(body), wire })
    }

    /// An idle connection to `origin` that the server has not closed.
    fn checkout(&self, origin: &Origin) -> Option<Conn> {
        let mut idle = self.shared.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(origin)?;
        while let Some(Idle { conn, since }) = list.pop() {
            if since.elapsed() < self.shared.idle_timeout && conn.open() {
                return Some(conn);
            }
        }
        None
    }

    async fn connect(&self, origin: &Origin) -> Result<Conn, SendError> {
        let connecting = tokio::net::TcpStream::connect((origin.host.as_str(), origin.port));
        let failed = |e: io::Error| SendError {
            connect: true,
            timeout: e.kind() == io::ErrorKind::TimedOut,
            malformed: false,
            chain: format!("{}:{}: {}", origin.host, origin.port, error_chain(&e)),
        };
        let tcp = match self.shared.connect_timeout {
            Some(limit) => tokio::time::timeout(limit, connecting).await.unwrap_or_else(|_| {
                Err(io::Error::new(io::ErrorKind::TimedOut, format!("no connection within {limit:?}")))
            }),
            None => connecting.await,
        }
        .map_err(failed)?;
        Conn::new(tcp).map_err(failed)
    }
}

impl Shared {
    /// A connection whose answer was read to its end waits for the next
    /// request.
    fn release(&self, origin: Origin, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.entry(origin).or_default().push(Idle { conn, since: Instant::now() });
    }
}

impl Conn {
    fn new(tcp: tokio::net::TcpStream) -> io::Result<Conn> {
        tcp.set_nodelay(true)?;
        let std = tcp.into_std()?;
        crate::stamps::enable(&std)?;
        // SAFETY: the AsyncFd owns the socket, which stays open (and the
        // same descriptor) until the AsyncFd drops it.
        let io = unsafe { AsyncFd::register(std) }?;
        Ok(Conn { io, stamps: WireStamps::default(), buf: BytesMut::new() })
    }

    /// Is the connection still open, with nothing unasked-for to read? (A
    /// server closes idle connections at will; a request sent on one is
    /// lost.)
    fn open(&self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut byte = [0u8; 1];
        // SAFETY: a one-byte buffer for a non-blocking peek on an open socket.
        let n = unsafe {
            libc::recv(
                std::os::fd::AsRawFd::as_raw_fd(self.io.get_ref()),
                byte.as_mut_ptr().cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
    }

    /// Writes the head and the body; the first write is the request's
    /// send instant ([`WireStamps::writing`]).
    async fn write_all(&mut self, head: &[u8], body: &[u8]) -> io::Result<()> {
        let (mut head, mut body) = (head, body);
        self.stamps.writing();
        while !head.is_empty() || !body.is_empty() {
            let mut guard = self.io.writable().await?;
            let bufs = [IoSlice::new(head), IoSlice::new(body)];
            match guard.try_io(|s| s.get_ref().write_vectored(&bufs)) {
                Ok(Ok(0)) => return Err(io::Error::new(io::ErrorKind::WriteZero, "the socket took no bytes")),
                Ok(Ok(mut n)) => {
                    let h = n.min(head.len());
                    head = &head[h..];
                    n -= h;
                    body = &body[n..];
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    /// One read into `buf`: the bytes read, 0 at the connection's end.
    async fn fill(&mut self) -> io::Result<usize> {
        self.buf.reserve(READ_SIZE);
        loop {
            let mut guard = self.io.readable().await?;
            let spare = self.buf.spare_capacity_mut();
            let len = spare.len();
            match guard.try_io(|s| crate::stamps::recv(s, spare)) {
                Ok(Ok((n, stamp))) => {
                    if n > 0 {
                        self.stamps.received(stamp);
                        // A short read emptied the socket: wait for the
                        // next readiness rather than try a read that would
                        // block.
                        if n < len {
                            guard.clear_ready();
                        }
                    }
                    // SAFETY: the kernel wrote n bytes into the spare capacity.
                    unsafe { self.buf.set_len(self.buf.len() + n) };
                    return Ok(n);
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

/// The request's origin and its head, ready to write: request line, `Host`,
/// the request's headers and its length.
fn encode(req: &http::Request<Bytes>) -> Result<(Origin, Vec<u8>), String> {
    let uri = req.uri();
    if uri.scheme_str() != Some("http") {
        return Err(format!("{uri}: only http:// URLs take this path"));
    }
    let authority = uri.authority().ok_or_else(|| format!("{uri}: no host"))?;
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
    let origin = Origin { host, port: authority.port_u16().unwrap_or(80) };
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut head = Vec::with_capacity(256 + req.headers().len() * 48);
    head.extend_from_slice(req.method().as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    head.extend_from_slice(authority.as_str().as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in req.headers() {
        if name == http::header::HOST || name == http::header::CONTENT_LENGTH {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    let body = req.body().len();
    if body > 0 || !matches!(*req.method(), http::Method::GET | http::Method::HEAD) {
        // Writing into a Vec cannot fail.
        let _ = write!(head, "content-length: {body}\r\n");
    }
    head.extend_from_slice(b"\r\n");
    Ok((origin, head))
}

/// How an answer's body ends.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    /// This many bytes remain.
    Length(u64),
    /// Chunked transfer coding, in this state.
    Chunked(Chunked),
    /// At the connection's end.
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Chunked {
    /// Expecting a chunk-size line.
    Size,
    /// In a chunk's data, with this many bytes to go.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines up to an empty one.
    Trailers,
}

fn invalid(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

/// Reads up to the end of a final (non-1xx) response head: its status, its
/// headers, how its body is framed, and whether the connection may be
/// reused after it.
async fn read_head(conn: &mut Conn, head_request: bool) -> io::Result<(StatusCode, HeaderMap, Framing, bool)> {
    loop {
        let parsed = {
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut slots);
            match resp.parse(&conn.buf) {
                Ok(httparse::Status::Complete(len)) => Some(head_of(&resp).map(|h| (h, len))),
                Ok(httparse::Status::Partial) => None,
                Err(e) => return Err(invalid(format!("invalid HTTP response head: {e}"))),
            }
        };
        match parsed {
            Some(Ok((head, len))) => {
                conn.buf.advance(len);
                if head.status.is_informational() {
                    continue;
                }
                let (framing, keep_alive) = framing(&head, head_request)?;
                return Ok((head.status, head.headers, framing, keep_alive));
            }
            Some(Err(e)) => return Err(e),
            None => {
                if conn.buf.len() > MAX_HEAD {
                    return Err(invalid(format!("the response head exceeded {MAX_HEAD} bytes")));
                }
                if conn.fill().await? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        if conn.buf.is_empty() {
                            "connection closed before the response"
                        } else {
                            "connection closed inside the response head"
                        },
                    ));
                }
            }
        }
    }
}

struct Head {
    status: StatusCode,
    http10: bool,
    headers: HeaderMap,
}

fn head_of(resp: &httparse::Response<'_, '_>) -> io::Result<Head> {
    let code = resp.code.ok_or_else(|| invalid("no status code"))?;
    let status = StatusCode::from_u16(code).map_err(|_| invalid(format!("status {code} is out of range")))?;
    let mut headers = HeaderMap::with_capacity(resp.headers.len());
    for h in resp.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| invalid("an invalid header name"))?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| invalid("an invalid header value"))?;
        headers.append(name, value);
    }
    Ok(Head { status, http10: resp.version == Some(0), headers })
}

/// The body's framing and the connection's reuse, as RFC 9112 §6.3 has
/// them: no body for a HEAD answer, 204 or 304; chunked coding when it is
/// the last transfer coding; else `Content-Length` (copies must agree);
/// else the connection's end.
fn framing(head: &Head, head_request: bool) -> io::Result<(Framing, bool)> {
    let has_token = |name: HeaderName, token: &str| {
        head.headers
            .get_all(name)
            .iter()
            .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))))
    };
    let mut keep_alive = if head.http10 {
        has_token(http::header::CONNECTION, "keep-alive")
    } else {
        !has_token(http::header::CONNECTION, "close")
    };
    if head_request || head.status == StatusCode::NO_CONTENT || head.status == StatusCode::NOT_MODIFIED {
        return Ok((Framing::Length(0), keep_alive));
    }
    let codings: Vec<&str> = head
        .headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    if let Some(last) = codings.last() {
        if last.eq_ignore_ascii_case("chunked") && !head.http10 {
            // A length beside a transfer coding is ignored, and the
            // connection is not trusted again.
            if head.headers.contains_key(http::header::CONTENT_LENGTH) {
                keep_alive = false;
            }
            return Ok((Framing::Chunked(Chunked::Size), keep_alive));
        }
        return Ok((Framing::Close, false));
    }
    let mut length: Option<u64> = None;
    for v in head.headers.get_all(http::header::CONTENT_LENGTH) {
        for part in v.to_str().map_err(|_| invalid("an invalid Content-Length"))?.split(',') {
            let n: u64 =
                part.trim().parse().map_err(|_| invalid(format!("an invalid Content-Length {:?}", part.trim())))?;
            if length.is_some_and(|l| l != n) {
                return Err(invalid("Content-Length headers that disagree"));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(n) => (Framing::Length(n), keep_alive),
        None => (Framing::Close, false),
    })
}

/// An answer's body, read from its connection by whoever reads the body.
/// Read to its end, the connection goes back to the pool; dropped before,
/// the connection is closed.
#[derive(Debug)]
pub(crate) struct Body {
    conn: Option<Conn>,
    framing: Framing,
    keep_alive: bool,
    pool: Arc<Shared>,
    origin: Origin,
    /// The bytes handed out by the last [`Body::next`].
    out: Vec<u8>,
    ended: bool,
}

impl Body {
    /// The body's next bytes (everything decoded from one read, lent
    /// until the next call); `None` at its end.
    pub(crate) async fn next(&mut self) -> Option<Result<&[u8], BoxError>> {
        self.out.clear();
        loop {
            if self.ended {
                return None;
            }
            let conn = self.conn.as_mut()?;
            match decode(&mut self.framing, &mut conn.buf, &mut self.out) {
                Ok(true) => {
                    self.finish();
                    return (!self.out.is_empty()).then_some(Ok(&self.out[..]));
                }
                Ok(false) if !self.out.is_empty() => return Some(Ok(&self.out[..])),
                Ok(false) => {}
                Err(e) => return Some(Err(self.broken(e))),
            }
            match conn.fill().await {
                Ok(0) if self.framing == Framing::Close => {
                    self.conn = None;
                    self.ended = true;
                    return None;
                }
                Ok(0) => return Some(Err(self.broken(invalid("the connection closed before the body ended")))),
                Ok(_) => {}
                Err(e) => return Some(Err(self.broken(e))),
            }
        }
    }

    /// The body cannot be read on: its connection is closed.
    fn broken(&mut self, e: io::Error) -> BoxError {
        self.conn = None;
        self.ended = true;
        e.into()
    }

    /// The body ended: its connection goes back to the pool if it may be
    /// reused and nothing unasked-for followed the body.
    fn finish(&mut self) {
        self.ended = true;
        if let Some(conn) = self.conn.take() {
            if self.keep_alive && conn.buf.is_empty() {
                self.pool.release(self.origin.clone(), conn);
            }
        }
    }
}

/// Moves what `buf` holds of the body into `out`; true once the body has
/// ended (its last byte, or the chunked coding's last chunk and trailers,
/// consumed).
fn decode(framing: &mut Framing, buf: &mut BytesMut, out: &mut Vec<u8>) -> io::Result<bool> {
    loop {
        match framing {
            Framing::Length(0) => return Ok(true),
            Framing::Length(left) => {
                let n = (*left).min(buf.len() as u64) as usize;
                out.extend_from_slice(&buf[..n]);
                buf.advance(n);
                *left -= n as u64;
                return Ok(*left == 0);
            }
            Framing::Close => {
                out.extend_from_slice(buf);
                buf.clear();
                return Ok(false);
            }
            Framing::Chunked(state) => match *state {
                Chunked::Size => {
                    let Some((line, taken)) = line(buf)? else { return Ok(false) };
                    let size = chunk_size(line)?;
                    buf.advance(taken);
                    *state = if size == 0 { Chunked::Trailers } else { Chunked::Data(size) };
                }
                Chunked::Data(left) => {
                    if buf.is_empty() {
                        return Ok(false);
                    }
                    let n = left.min(buf.len() as u64) as usize;
                    out.extend_from_slice(&buf[..n]);
                    buf.advance(n);
                    *state = if left == n as u64 { Chunked::DataEnd } else { Chunked::Data(left - n as u64) };
                }
                Chunked::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(false);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(invalid("a chunk's data is not followed by CRLF"));
                    }
                    buf.advance(2);
                    *state = Chunked::Size;
                }
                Chunked::Trailers => {
                    let Some((line, taken)) = line(buf)? else { return Ok(false) };
                    let last = line.is_empty();
                    buf.advance(taken);
                    if last {
                        *framing = Framing::Length(0);
                    }
                }
            },
        }
    }
}

/// The next line of `buf` (ended by LF, a CR before it dropped) and how
/// many bytes it takes with its ending; `None` while it is incomplete.
fn line(buf: &[u8]) -> io::Result<Option<(&[u8], usize)>> {
    match memchr::memchr(b'\n', buf) {
        Some(i) if i <= MAX_LINE => {
            let l = &buf[..i];
            Ok(Some((l.strip_suffix(b"\r").unwrap_or(l), i + 1)))
        }
        None if buf.len() <= MAX_LINE => Ok(None),
        _ => Err(invalid(format!("a chunk-size or trailer line over {MAX_LINE} bytes"))),
    }
}

/// A chunk-size line's size (hexadecimal; extensions after `;` ignored).
fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
    let digits = digits.trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return Err(invalid(format!("an invalid chunk size {:?}", String::from_utf8_lossy(digits))));
    }
    let mut n = 0u64;
    for &d in digits {
        let v = (d as char)
            .to_digit(16)
            .ok_or_else(|| invalid(format!("an invalid chunk size {:?}", String::from_utf8_lossy(digits))))?;
        n = n * 16 + u64::from(v);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(framing: Framing, pieces: &[&[u8]]) -> io::Result<(Vec<u8>, bool, usize)> {
        let mut f = framing;
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut done = false;
        for p in pieces {
            buf.extend_from_slice(p);
            done = decode(&mut f, &mut buf, &mut out)?;
        }
        Ok((out, done, buf.len()))
    }

    #[test]
    fn chunked_bodies_decode_across_any_split() {
        let body = b"5\r\nhello\r\n1;ext=1\r\n \r\nB\r\nworld, SSE!\r\n0\r\nx-trailer: 1\r\n\r\n";
        for cut in 0..body.len() {
            for cut2 in cut..body.len() {
                let (out, done, left) =
                    decode_all(Framing::Chunked(Chunked::Size), &[&body[..cut], &body[cut..cut2], &body[cut2..]])
                        .unwrap();
                assert_eq!(out, b"hello world, SSE!", "cuts {cut} {cut2}");
                assert!(done);
                assert_eq!(left, 0);
            }
        }
    }

    #[test]
    fn a_chunked_body_ends_only_at_its_last_chunk() {
        let (out, done, _) = decode_all(Framing::Chunked(Chunked::Size), &[b"3\r\nabc\r\n0\r\n"]).unwrap();
        assert_eq!(out, b"abc");
        assert!(!done, "the trailer section's empty line is still to come");
        let (_, done, left) = decode_all(Framing::Chunked(Chunked::Size), &[b"0\r\n\r\nHTTP/1.1"]).unwrap();
        assert!(done);
        assert_eq!(left, 8, "bytes after the body stay in the buffer");
    }

    #[test]
    fn malformed_chunks_are_errors() {
        for bad in [&b"zz\r\n"[..], b"3\r\nabcXY", b"\r\n", b"1234567890abcdef0\r\n"] {
            assert!(decode_all(Framing::Chunked(Chunked::Size), &[bad]).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let long = vec![b'1'; MAX_LINE + 2];
        assert!(decode_all(Framing::Chunked(Chunked::Size), &[&long]).is_err());
    }

    #[test]
    fn length_and_close_framing() {
        let (out, done, left) = decode_all(Framing::Length(5), &[b"he", b"llo+next"]).unwrap();
        assert_eq!((out.as_slice(), done, left), (&b"hello"[..], true, 5));
        let (out, done, _) = decode_all(Framing::Close, &[b"all ", b"of it"]).unwrap();
        assert_eq!((out.as_slice(), done), (&b"all of it"[..], false));
        let (out, done, _) = decode_all(Framing::Length(0), &[b""]).unwrap();
        assert!(out.is_empty() && done);
    }

    fn head(status: u16, http10: bool, headers: &[(&str, &str)]) -> Head {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        Head { status: StatusCode::from_u16(status).unwrap(), http10, headers: map }
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let f = |h: Head| framing(&h, false).unwrap();
        assert_eq!(f(head(200, false, &[("transfer-encoding", "chunked")])), (Framing::Chunked(Chunked::Size), true));
        assert_eq!(
            f(head(200, false, &[("transfer-encoding", "chunked"), ("content-length", "3")])),
            (Framing::Chunked(Chunked::Size), false)
        );
        assert_eq!(f(head(200, false, &[("transfer-encoding", "gzip")])), (Framing::Close, false));
        assert_eq!(f(head(200, false, &[("content-length", "12")])), (Framing::Length(12), true));
        assert_eq!(f(head(200, false, &[("content-length", "4, 4")])), (Framing::Length(4), true));
        assert!(framing(&head(200, false, &[("content-length", "4"), ("content-length", "5")]), false).is_err());
        assert!(framing(&head(200, false, &[("content-length", "-1")]), false).is_err());
        assert_eq!(f(head(200, false, &[])), (Framing::Close, false));
        assert_eq!(f(head(204, false, &[])), (Framing::Length(0), true));
        assert_eq!(
            f(head(200, false, &[("connection", "Close"), ("content-length", "1")])),
            (Framing::Length(1), false)
        );
        assert_eq!(f(head(200, true, &[("content-length", "1")])), (Framing::Length(1), false));
        assert_eq!(
            f(head(200, true, &[("connection", "keep-alive"), ("content-length", "1")])),
            (Framing::Length(1), true)
        );
        assert_eq!(framing(&head(200, false, &[("content-length", "9")]), true).unwrap(), (Framing::Length(0), true));
    }

    #[test]
    fn requests_are_written_with_host_and_length() {
        let req = http::Request::builder()
            .method("POST")
            .uri("http://[::1]:8123/v1/chat/completions?x=1")
            .header("content-type", "application/json")
            .header("content-length", "999")
            .body(Bytes::from_static(b"{}"))
            .unwrap();
        let (origin, head) = encode(&req).unwrap();
        assert_eq!(origin, Origin { host: "::1".into(), port: 8123 });
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "POST /v1/chat/completions?x=1 HTTP/1.1\r\nhost: [::1]:8123\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n"
        );
        let get = http::Request::builder().uri("http://h/models").body(Bytes::new()).unwrap();
        let (origin, head) = encode(&get).unwrap();
        assert_eq!(origin.port, 80);
        assert_eq!(String::from_utf8(head).unwrap(), "GET /models HTTP/1.1\r\nhost: h\r\n\r\n");
        let https = http::Request::builder().uri("https://h/").body(Bytes::new()).unwrap();
        assert!(encode(&https).is_err());
    }
}
