//! A real Prometheus serving one episode's telemetry: the episode is written
//! as OpenMetrics text with timestamps ([`super::series::write_openmetrics`]),
//! backfilled into a TSDB block directory with `promtool tsdb
//! create-blocks-from openmetrics FILE DIR`, and served by `prometheus
//! --storage.tsdb.path=DIR` on a free loopback port with no scrape targets.
//! Both binaries are spawned with fixed argument lists (nothing a model
//! writes reaches them). Dropping the [`PromServer`] stops the process and
//! removes its folder.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::world::World;

/// How long Prometheus may take to load the blocks and answer `/-/ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest query evaluation Prometheus allows (`--query.timeout`).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong finding, filling or starting Prometheus.
#[derive(Debug, thiserror::Error)]
pub enum PromServerError {
    #[error(
        "`{binary}` is not installed: install Debian's `prometheus` package (scripts/ensure-prometheus.sh), \
         set {env} to its path, or use --promql embedded"
    )]
    Missing { binary: &'static str, env: &'static str },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("promtool could not backfill the episode ({status}): {stderr}")]
    Backfill { status: String, stderr: String },
    #[error("prometheus exited before it was ready ({status}); its log ends: {log}")]
    Exited { status: String, log: String },
    #[error("the Prometheus API client: {0}")]
    Client(String),
    #[error("prometheus did not answer /-/ready within {0} s; its log ends: {1}")]
    NotReady(u64, String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PromServerError {
    let what = what.into();
    move |source| PromServerError::Io { what, source }
}

/// The `prometheus` and `promtool` binaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromBins {
    pub prometheus: PathBuf,
    pub promtool: PathBuf,
}

impl PromBins {
    /// `FLEETBENCH_PROMETHEUS_BIN` and `FLEETBENCH_PROMTOOL` (or `PROMTOOL`)
    /// when set, else the first `prometheus` and `promtool` on `PATH`.
    pub fn find() -> Result<PromBins, PromServerError> {
        let prometheus = locate("prometheus", &["FLEETBENCH_PROMETHEUS_BIN"])?;
        let promtool = locate("promtool", &["FLEETBENCH_PROMTOOL", "PROMTOOL"])?;
        Ok(PromBins { prometheus, promtool })
    }
}

fn locate(binary: &'static str, envs: &[&'static str]) -> Result<PathBuf, PromServerError> {
    let missing = PromServerError::Missing { binary, env: envs[0] };
    if let Some(p) = envs.iter().find_map(std::env::var_os) {
        let p = PathBuf::from(p);
        return if p.is_file() { Ok(p) } else { Err(missing) };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join(binary)).find(|p| p.is_file()).ok_or(missing)
}

/// A running Prometheus over one episode.
#[derive(Debug)]
pub struct PromServer {
    child: Child,
    dir: PathBuf,
    url: String,
}

static SERIAL: AtomicU64 = AtomicU64::new(0);

impl PromServer {
    /// Exports `world`, backfills it and starts Prometheus over it; returns
    /// once the server answers `/-/ready`.
    pub fn start(world: &World, bins: &PromBins) -> Result<PromServer, PromServerError> {
        let dir = std::env::temp_dir().join(format!(
            "fleetbench-prom-{}-{}",
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let data = dir.join("data");
        std::fs::create_dir_all(&data).map_err(io(format!("creating {}", data.display())))?;
        // From here on the folder is removed on every path (Cleanup's drop).
        let cleanup = Cleanup(dir.clone());
        let om = dir.join("episode.om");
        export(world, &om)?;
        let out = Command::new(&bins.promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&om)
            .arg(&data)
            .stdin(Stdio::null())
            .output()
            .map_err(io(format!("running {}", bins.promtool.display())))?;
        if !out.status.success() {
            return Err(PromServerError::Backfill {
                status: out.status.to_string(),
                stderr: tail(&String::from_utf8_lossy(&out.stderr)),
            });
        }
        let _ = std::fs::remove_file(&om);
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, "global:\n  scrape_interval: 1m\nscrape_configs: []\n")
            .map_err(io(format!("writing {}", config.display())))?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(io("finding a free loopback port"))?
            .port();
        let log_path = dir.join("prometheus.log");
        let log = std::fs::File::create(&log_path).map_err(io(format!("creating {}", log_path.display())))?;
        let child = Command::new(&bins.prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            // The blocks are in the episode's past: keep them all.
            .arg("--storage.tsdb.retention.time=100y")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // The embedded engine's semantics and bounds.
            .arg(format!("--query.lookback-delta={}s", fleetbench_promql::LOOKBACK_MS / 1000))
            .arg("--query.max-samples=20000000")
            .arg(format!("--query.timeout={}s", QUERY_TIMEOUT.as_secs()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(io(format!("starting {}", bins.prometheus.display())))?;
        std::mem::forget(cleanup);
        let mut server = PromServer { child, dir, url: format!("http://127.0.0.1:{port}") };
        server.wait_ready(port)?;
        Ok(server)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn wait_ready(&mut self, port: u16) -> Result<(), PromServerError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if ready(port) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(PromServerError::Exited { status: status.to_string(), log: self.log_tail() });
            }
            if Instant::now() > deadline {
                return Err(PromServerError::NotReady(READY_TIMEOUT.as_secs(), self.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_tail(&self) -> String {
        tail(&std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default())
    }
}

impl Drop for PromServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes a folder when dropped (until forgotten).
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn export(world: &World, path: &Path) -> Result<(), PromServerError> {
    let file = std::fs::File::create(path).map_err(io(format!("creating {}", path.display())))?;
    let mut w = std::io::BufWriter::new(file);
    super::series::write_openmetrics(world, &mut w).map_err(io(format!("writing {}", path.display())))?;
    w.flush().map_err(io(format!("writing {}", path.display())))
}

fn ready(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /-/ready HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200")
}

/// The last 2,000 characters of a log.
fn tail(s: &str) -> String {
    let s = s.trim();
    let mut start = s.len().saturating_sub(2_000);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_string()
}
