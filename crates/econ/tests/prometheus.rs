//! The Prometheus meter against a real Prometheus server, which scrapes a
//! small DCGM-like `/metrics` endpoint this test serves. Needs the
//! `prometheus` binary: ignored by a plain `cargo test`, run by
//! `scripts/test.sh` (`--include-ignored`), which installs it through
//! `scripts/ensure-prometheus.sh`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use fleetbench_econ::energy::{open_meter, MeterKind, MeterProbe, MeterSpec, PrometheusMeter};
use fleetbench_econ::EnergyMeter;

/// What the fake DCGM exporter serves: energy counters (mJ) per GPU.
#[derive(Clone)]
struct Exporter {
    energy_mj: Arc<Mutex<[u64; 2]>>,
}

async fn metrics(State(x): State<Exporter>) -> String {
    let e = *x.energy_mj.lock().unwrap_or_else(|p| p.into_inner());
    format!(
        "# HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).\n\
         # TYPE DCGM_FI_DEV_POWER_USAGE gauge\n\
         DCGM_FI_DEV_POWER_USAGE{{gpu=\"0\",UUID=\"GPU-aaaa\",Hostname=\"node1\"}} 250.5\n\
         DCGM_FI_DEV_POWER_USAGE{{gpu=\"1\",UUID=\"GPU-bbbb\",Hostname=\"node1\"}} 149.5\n\
         # HELP DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION Total energy consumption since boot (in mJ).\n\
         # TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter\n\
         DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{gpu=\"0\",UUID=\"GPU-aaaa\",Hostname=\"node1\"}} {}\n\
         DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{gpu=\"1\",UUID=\"GPU-bbbb\",Hostname=\"node1\"}} {}\n",
        e[0], e[1]
    )
}

struct Prometheus {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn prometheus_binary() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("bash")
        .arg(root.join("scripts/ensure-prometheus.sh"))
        .output()
        .expect("run scripts/ensure-prometheus.sh");
    assert!(
        out.status.success(),
        "this test needs a Prometheus server binary, and scripts/ensure-prometheus.sh could not provide one \
         ({}; it installs the Debian package `prometheus` with apt-get, as root; scripts/test.sh runs it): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_prometheus(target: &str) -> Prometheus {
    let bin = prometheus_binary();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("fleetbench-econ-prom-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let config = format!(
        "global:\n  scrape_interval: 200ms\n  scrape_timeout: 150ms\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: dcgm\n    static_configs:\n      - targets: ['{target}']\n"
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new(bin)
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    Prometheus { child, dir, url: format!("http://127.0.0.1:{port}") }
}

/// Reads until `want` holds, or fails after `limit` with the last reading.
async fn read_until(
    meter: &mut PrometheusMeter,
    limit: Duration,
    want: impl Fn(Option<f64>, Option<f64>) -> bool,
) -> (Option<f64>, Option<f64>) {
    let mut last = String::new();
    fleetbench_testkit::wait_for(limit, Duration::from_millis(100), async || match meter.read().await {
        Ok(r) if want(r.power_w, r.energy_j) => Some((r.power_w, r.energy_j)),
        Ok(r) => {
            last = format!("{r:?}");
            None
        }
        Err(e) => {
            last = e.to_string();
            None
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; last reading: {last}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Prometheus: scripts/test.sh installs it (scripts/ensure-prometheus.sh)"]
async fn prometheus_meter_reads_dcgm_series_from_a_real_server() {
    let exporter = Exporter { energy_mj: Arc::new(Mutex::new([1_000_000, 2_000_000])) };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let app = Router::new().route("/metrics", get(metrics)).with_state(exporter.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let prom = start_prometheus(&target);
    let limit = Duration::from_secs(60);

    let mut meter = PrometheusMeter::new(&prom.url, "{Hostname=\"node1\"}", Duration::from_secs(2)).unwrap();
    // Wait for the first scrape: both GPUs' power, summed.
    let (power, energy) = read_until(&mut meter, limit, |p, e| p.is_some() && e.is_some()).await;
    assert_eq!(power, Some(400.0));
    let base = energy.unwrap();
    assert!(meter.description().contains("2 GPU series"), "{}", meter.description());

    // GPU 0 uses 1,500 J and GPU 1 500 J more: the meter counts 2,000 J.
    *exporter.energy_mj.lock().unwrap() = [2_500_000, 2_500_000];
    let (_, e) = read_until(&mut meter, limit, |_, e| e.is_some_and(|e| e > base)).await;
    assert_eq!(e.unwrap() - base, 2000.0);

    // GPU 1's exporter restarts: its counter starts again from 0 (then 700 J).
    *exporter.energy_mj.lock().unwrap() = [2_500_000, 700_000];
    let (_, e) = read_until(&mut meter, limit, |_, e| e.is_some_and(|e| e > base + 2000.0)).await;
    assert_eq!(e.unwrap() - base, 2700.0);

    // A selector that matches nothing says what is missing.
    let mut other = PrometheusMeter::new(&prom.url, "{Hostname=\"node9\"}", Duration::from_secs(2)).unwrap();
    let err = other.read().await.unwrap_err().to_string();
    assert!(err.contains("no DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION") && err.contains("node9"), "{err}");

    // --meter prometheus=URL opens it through the same path as `fleetbench run`.
    let choice = open_meter(&MeterSpec::Prometheus { url: prom.url.clone() }, &MeterProbe::default()).await.unwrap();
    assert_eq!(choice.meter.as_ref().map(|m| m.kind()), Some(MeterKind::Prometheus));
}

#[tokio::test]
async fn unreachable_prometheus_is_unavailable_not_a_panic() {
    let port = free_port();
    let spec = MeterSpec::Prometheus { url: format!("http://127.0.0.1:{port}") };
    let e = open_meter(&spec, &MeterProbe::default()).await.unwrap_err().to_string();
    assert!(e.contains("prometheus meter unavailable") && e.contains("cannot reach"), "{e}");
}
