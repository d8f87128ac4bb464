//! How requests travel: the HTTP connection pool, and the instant each
//! piece of an answer arrived.
//!
//! A client that timestamps an answer when its task gets to it measures its
//! own lag as well as the server: with a thousand streams on one core, the
//! token that arrives behind a few hundred others waits for them to be
//! parsed. On Linux, over plain `http://` without a proxy (a local server,
//! where exactness matters most), fleetbench asks the kernel instead: its
//! own HTTP/1.1 client (`h1.rs`) has `SO_TIMESTAMPNS` on for every
//! connection, each read returns when its last TCP segment was received,
//! and [`WireStamps::arrived`] moves the client's clock back by the time
//! since. The figures then hold however busy the client
//! is. Over TLS, through a proxy or on another OS, reqwest carries the
//! request and the instant is when the client read it, as before.

use std::error::Error as StdError;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;

use crate::stamps;

pub(crate) type BoxError = Box<dyn StdError + Send + Sync>;

/// When the last request on one connection left and when the last bytes
/// read on it arrived, as nanoseconds of `CLOCK_REALTIME` (0: not yet).
/// Shared between the connection, which writes them, and the response read
/// from it. The connection notes an arrival before it hands the bytes on,
/// so whoever holds the bytes sees a stamp at least as late as theirs.
#[derive(Clone, Debug, Default)]
pub(crate) struct WireStamps(Arc<Stamps>);

#[derive(Debug, Default)]
struct Stamps {
    /// The kernel's receive stamp of the last segment read.
    rx: AtomicI64,
    /// When the first write of the last request was issued (0: the
    /// connection's first request).
    tx: AtomicI64,
    /// Has anything been read since the last write? (The next write then
    /// starts a new request.) Only the stamping connection (Linux) sets it.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    read_since_write: AtomicBool,
}

/// A stamp further back than this is not believed (the wall clock was
/// stepped): the client's own instant is used.
const MAX_LAG: Duration = Duration::from_secs(60);

impl WireStamps {
    /// Bytes were read; `stamp`: the kernel's receive stamp of the last.
    #[cfg(target_os = "linux")]
    pub(crate) fn received(&self, stamp: Option<i64>) {
        self.0.rx.store(stamp.unwrap_or(0), Ordering::Release);
        self.0.read_since_write.store(true, Ordering::Relaxed);
    }

    /// Bytes are about to be written: the first write after a read starts
    /// a request, and its instant is the request's. (The connection's
    /// first request has none: see [`WireStamps::left`].)
    #[cfg(target_os = "linux")]
    pub(crate) fn writing(&self) {
        if self.0.read_since_write.swap(false, Ordering::Relaxed) {
            self.0.tx.store(stamps::realtime_ns(), Ordering::Release);
        }
    }

    /// When the bytes last read arrived, on the run clock: `now` (the run
    /// clock's reading) moved back by how long ago the kernel received
    /// them, never before `floor` (the previous event) nor after `now`.
    pub(crate) fn arrived(&self, now: f64, floor: f64) -> f64 {
        back(self.0.rx.load(Ordering::Acquire), now, floor)
    }

    /// When the request was written to the socket, on the run clock, never
    /// before `floor` (when the client set out to send it) nor after `now`:
    /// a client busy with other streams may write it a little after it
    /// meant to, and the server's time counts from the write. `floor`
    /// itself where there is no stamp: no stamping transport, or the
    /// connection's first request (its connecting belongs to the request,
    /// as a cold start's does).
    pub(crate) fn left(&self, now: f64, floor: f64) -> f64 {
        match self.0.tx.load(Ordering::Acquire) {
            0 => floor,
            tx => back(tx, now, floor),
        }
    }
}

/// `now` moved back to a `CLOCK_REALTIME` stamp, within `[floor, now]`;
/// `now` itself for no stamp or one not believed ([`stamps::age`]).
fn back(stamp: i64, now: f64, floor: f64) -> f64 {
    match stamps::age(stamp, MAX_LAG) {
        Some(lag) => (now - lag.as_secs_f64()).max(floor).min(now),
        None => now,
    }
}

/// A request's failure before any answer: could it not connect, did a time
/// limit run out, and the error's whole chain for the message.
pub(crate) struct SendError {
    pub connect: bool,
    pub timeout: bool,
    /// What came back is not HTTP (sending again would not help).
    pub malformed: bool,
    pub chain: String,
}

/// An answer's head and its body, read frame by frame.
pub(crate) struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Body,
    /// The send and receive stamps of the connection it came on, where
    /// the transport has them.
    pub wire: Option<WireStamps>,
}

pub(crate) enum Body {
    /// reqwest's stream, and the bytes it gave last.
    Reqwest(BoxStream<'static, reqwest::Result<Bytes>>, Bytes),
    #[cfg(target_os = "linux")]
    Direct(crate::h1::Body),
}

impl Body {
    /// The body's next bytes, lent until the next call; `None` at its end.
    pub async fn next(&mut self) -> Option<Result<&[u8], BoxError>> {
        match self {
            Body::Reqwest(s, last) => match s.next().await? {
                Ok(b) => {
                    *last = b;
                    Some(Ok(&last[..]))
                }
                Err(e) => Some(Err(e.into())),
            },
            #[cfg(target_os = "linux")]
            Body::Direct(b) => b.next().await,
        }
    }
}

/// The connection pool: reqwest's, or (Linux, plain HTTP, no proxy) one
/// whose connections stamp what they receive.
#[derive(Clone, Debug)]
pub(crate) enum Transport {
    Reqwest(reqwest::Client),
    #[cfg(target_os = "linux")]
    Direct(crate::h1::Pool),
}

/// How the pool is set up.
pub(crate) struct Options {
    pub connect_timeout: Option<Duration>,
    /// Stamp arrivals with the kernel's receive time where possible.
    pub kernel_stamps: bool,
    /// The URL is `http://` (no TLS).
    pub plain_http: bool,
    /// The host is this machine (no proxy applies).
    pub loopback: bool,
}

const POOL_IDLE: Duration = Duration::from_secs(90);

impl Transport {
    pub fn new(opts: &Options) -> Result<Transport, String> {
        #[cfg(target_os = "linux")]
        if opts.kernel_stamps && opts.plain_http && (opts.loopback || !proxy_configured()) {
            return Ok(Transport::Direct(crate::h1::Pool::new(opts.connect_timeout, POOL_IDLE)));
        }
        let mut b = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(usize::MAX)
            .pool_idle_timeout(POOL_IDLE);
        if let Some(c) = opts.connect_timeout {
            b = b.connect_timeout(c);
        }
        if opts.loopback {
            b = b.no_proxy();
        }
        b.build().map(Transport::Reqwest).map_err(|e| e.to_string())
    }

    /// Does this pool stamp arrivals with the kernel's receive time?
    pub fn kernel_stamps(&self) -> bool {
        match self {
            Transport::Reqwest(_) => false,
            #[cfg(target_os = "linux")]
            Transport::Direct(_) => true,
        }
    }

    /// Sends one request and returns the answer's head once it arrived.
    pub async fn send(&self, req: http::Request<Bytes>) -> Result<Response, SendError> {
        match self {
            Transport::Reqwest(c) => {
                let req = reqwest::Request::try_from(req.map(reqwest::Body::from)).map_err(|e| SendError {
                    connect: false,
                    timeout: false,
                    malformed: false,
                    chain: error_chain(&e),
                })?;
                let mut resp = c.execute(req).await.map_err(|e| SendError {
                    connect: e.is_connect(),
                    timeout: e.is_timeout(),
                    malformed: false,
                    chain: error_chain(&e),
                })?;
                let status = resp.status();
                let headers = std::mem::take(resp.headers_mut());
                Ok(Response {
                    status,
                    headers,
                    body: Body::Reqwest(resp.bytes_stream().boxed(), Bytes::new()),
                    wire: None,
                })
            }
            #[cfg(target_os = "linux")]
            Transport::Direct(pool) => pool.send(req).await,
        }
    }
}

/// Would reqwest send a plain-HTTP request through a proxy? (It reads these
/// variables; `NO_PROXY` can only exempt hosts, so leaving it to reqwest
/// whenever one is set is safe.)
#[cfg(target_os = "linux")]
fn proxy_configured() -> bool {
    ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// An error and its sources, each once, as one line.
pub(crate) fn error_chain(e: &dyn StdError) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without stamps, arrivals are the client's instant and a request
    /// leaves when the client set out to send it; with them, both move back
    /// by the stamp's age, within their bounds.
    #[test]
    fn stamps_move_instants_back_within_bounds() {
        let none = WireStamps::default();
        assert_eq!(none.arrived(5.0, 1.0), 5.0);
        assert_eq!(none.left(5.0, 1.0), 1.0, "no send stamp: the instant the client meant to send");

        let stamped = WireStamps::default();
        let ago = |ms: i64| stamps::realtime_ns() - ms * 1_000_000;
        stamped.0.rx.store(ago(200), Ordering::Relaxed);
        stamped.0.tx.store(ago(300), Ordering::Relaxed);
        let arrived = stamped.arrived(5.0, 1.0);
        assert!((4.79..=4.81).contains(&arrived), "{arrived}");
        let left = stamped.left(5.0, 1.0);
        assert!((4.69..=4.71).contains(&left), "{left}");
        // Never before the previous event, never after now.
        assert_eq!(stamped.arrived(5.0, 4.9), 4.9);
        stamped.0.rx.store(stamps::realtime_ns() + 1_000_000_000, Ordering::Relaxed);
        assert_eq!(stamped.arrived(5.0, 1.0), 5.0, "a stamp in the future is now");
        stamped.0.rx.store(ago(120_000), Ordering::Relaxed);
        assert_eq!(stamped.arrived(500.0, 1.0), 500.0, "a stamp minutes old is not believed");
    }
}
