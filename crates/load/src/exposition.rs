//! fleetbench's own live figures in Prometheus' text format
//! (`--metrics-listen ADDR`), for a team's Prometheus and Grafana to scrape
//! beside the backend's and the GPUs' metrics: requests in flight, completed,
//! errors by kind, output tokens, and TTFT, TPOT and ITL histograms, each
//! labelled with the run (its `--run-id`, else its id) and the shard.
//!
//! Every error kind's counter is there from the start at 0, so a query over
//! errors has a series to show before the first one happens.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fleetbench_core::{ErrorKind, RequestRecord, SamplingParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::Workload;

/// Upper bounds (seconds) of the latency histograms' buckets.
const BUCKETS: [f64; 18] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0];

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Per bucket of [`BUCKETS`], then +Inf; not cumulative.
    counts: [u64; BUCKETS.len() + 1],
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        let i = BUCKETS.iter().position(|b| v <= *b).unwrap_or(BUCKETS.len());
        self.counts[i] += 1;
        self.sum += v;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c;
            let le = BUCKETS.get(i).map(|b| b.to_string()).unwrap_or_else(|| "+Inf".into());
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

#[derive(Debug, Default)]
struct Figures {
    run: String,
    shard: String,
    completed: u64,
    errors: BTreeMap<&'static str, u64>,
    output_tokens: u64,
    ttft: Histogram,
    tpot: Histogram,
    itl: Histogram,
}

/// The live figures of the runs of one command (a sweep's levels follow
/// one another under the same exporter, each with its own run label).
#[derive(Debug, Default)]
pub struct LiveMetrics {
    started: Arc<AtomicU64>,
    figures: Mutex<Figures>,
}

impl LiveMetrics {
    pub fn new() -> Arc<LiveMetrics> {
        let m = LiveMetrics::default();
        m.lock().errors = ErrorKind::ALL.iter().map(|k| (k.as_str(), 0)).collect();
        Arc::new(m)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Figures> {
        self.figures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new run starts: its label, and its shard (`I/N`, `0/1` alone).
    /// The counters go on from where the last run left them, as counters do.
    pub fn start_run(&self, run: &str, shard: &str) {
        let mut f = self.lock();
        f.run = run.to_string();
        f.shard = shard.to_string();
    }

    /// `workload`, counting each request as it is sent.
    pub fn counting(&self, workload: Arc<dyn Workload>) -> Arc<dyn Workload> {
        Arc::new(Counted { inner: workload, started: self.started.clone() })
    }

    /// One request sent outside a counted workload (the arena's
    /// investigations send their turns themselves).
    pub fn sent(&self) {
        self.started.fetch_add(1, Ordering::SeqCst);
    }

    /// A request counted by [`LiveMetrics::sent`] was abandoned before it
    /// ended (a deadline passed): it is no longer in flight, and counts as
    /// completed without a record.
    pub fn abandoned(&self) {
        self.lock().completed += 1;
    }

    /// One request ended.
    pub fn observe(&self, r: &RequestRecord) {
        let mut f = self.lock();
        f.completed += 1;
        match &r.error {
            Some(e) => *f.errors.entry(e.kind.as_str()).or_default() += 1,
            None => {
                f.output_tokens += r.output_tokens;
                if let Some(t) = r.ttft() {
                    f.ttft.observe(t);
                }
                if let Some(t) = r.tpot() {
                    f.tpot.observe(t);
                }
                for gap in &r.itl {
                    f.itl.observe(*gap);
                }
            }
        }
    }

    /// The figures in Prometheus' text exposition format (0.0.4).
    pub fn render(&self) -> String {
        let f = self.lock();
        let labels = format!("run=\"{}\",shard=\"{}\"", escape(&f.run), escape(&f.shard));
        let in_flight = self.started.load(Ordering::SeqCst).saturating_sub(f.completed);
        let mut out = String::new();
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(&mut out, "fleetbench_requests_in_flight", "gauge", "Requests sent and not yet ended.");
        let _ = writeln!(out, "fleetbench_requests_in_flight{{{labels}}} {in_flight}");
        head(&mut out, "fleetbench_requests_completed_total", "counter", "Requests ended, failed ones included.");
        let _ = writeln!(out, "fleetbench_requests_completed_total{{{labels}}} {}", f.completed);
        head(&mut out, "fleetbench_request_errors_total", "counter", "Failed requests by error kind.");
        for (kind, n) in &f.errors {
            let _ = writeln!(out, "fleetbench_request_errors_total{{{labels},kind=\"{kind}\"}} {n}");
        }
        head(&mut out, "fleetbench_output_tokens_total", "counter", "Output tokens of successful requests.");
        let _ = writeln!(out, "fleetbench_output_tokens_total{{{labels}}} {}", f.output_tokens);
        for (name, h, help) in [
            ("fleetbench_ttft_seconds", &f.ttft, "Time to first token of successful requests."),
            ("fleetbench_tpot_seconds", &f.tpot, "Time per output token after the first, per request."),
            ("fleetbench_itl_seconds", &f.itl, "Gaps between streamed tokens."),
        ] {
            head(&mut out, name, "histogram", help);
            h.render(&mut out, name, &labels);
        }
        out
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

struct Counted {
    inner: Arc<dyn Workload>,
    started: Arc<AtomicU64>,
}

impl Workload for Counted {
    fn request(&self, index: u64, sampling: &SamplingParams) -> fleetbench_core::RequestSpec {
        self.started.fetch_add(1, Ordering::SeqCst);
        self.inner.request(index, sampling)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn distinct_requests(&self) -> Option<u64> {
        self.inner.distinct_requests()
    }
}

/// The HTTP endpoint serving [`LiveMetrics`] at `/metrics`; stops when
/// dropped.
pub struct MetricsServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// Listens on `addr` (port 0: any free one).
    pub async fn start(addr: SocketAddr, metrics: Arc<LiveMetrics>) -> std::io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::with_capacity(1024);
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf);
                    let path = head.split_whitespace().nth(1).unwrap_or("");
                    let (status, body) = if head.starts_with("GET ") && path.split('?').next() == Some("/metrics") {
                        ("200 OK", metrics.render())
                    } else {
                        ("404 Not Found", "fleetbench serves /metrics only\n".to_string())
                    };
                    let reply = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(reply.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Ok(MetricsServer { addr, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetbench_core::RequestError;
    use fleetbench_testkit::RecordBuilder;

    #[tokio::test]
    async fn the_endpoint_serves_every_figure_with_its_labels() {
        let m = LiveMetrics::new();
        m.start_run("job \"7\"", "1/4");
        let ok = RecordBuilder::ok(0)
            .send(0.0)
            .first_token(0.2)
            .last_token(0.5)
            .end(0.5)
            .itl(vec![0.1, 0.2])
            .tokens(3)
            .build();
        m.observe(&ok);
        let mut failed = ok.clone();
        failed.error = Some(RequestError::new(ErrorKind::TimeoutTotal, "slow"));
        m.observe(&failed);
        let server = MetricsServer::start("127.0.0.1:0".parse().expect("addr"), m.clone()).await.expect("listen");
        let mut s = tokio::net::TcpStream::connect(server.addr()).await.expect("connect");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
        let mut text = String::new();
        s.read_to_string(&mut text).await.expect("read");
        let labels = "run=\"job \\\"7\\\"\",shard=\"1/4\"";
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        for line in [
            format!("fleetbench_requests_completed_total{{{labels}}} 2"),
            format!("fleetbench_request_errors_total{{{labels},kind=\"timeout_total\"}} 1"),
            format!("fleetbench_request_errors_total{{{labels},kind=\"connect\"}} 0"),
            format!("fleetbench_output_tokens_total{{{labels}}} 3"),
            format!("fleetbench_ttft_seconds_bucket{{{labels},le=\"0.25\"}} 1"),
            format!("fleetbench_ttft_seconds_bucket{{{labels},le=\"0.1\"}} 0"),
            format!("fleetbench_itl_seconds_count{{{labels}}} 2"),
            format!("fleetbench_requests_in_flight{{{labels}}} 0"),
        ] {
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
    }
}
